/**
 * A member replaces its keys (key.rotated): a lost laptop, a leaving
 * employee's successor taking over a service account, a scheduled rotation.
 *
 * The member keeps its id (grants, audits and access reports name it), so
 * nothing on the ledger has to be rewritten; what changes is the key it signs
 * with (requests name the key's id: services/http/auth.ts finds the member by
 * it) and the recipient its records are wrapped to. The request carries the
 * new public keys and the new signing key's signature over them
 * (rotationMessage): whoever asks holds the new key, and meant it for this
 * member. The member itself asks (signing with its current key) or, for a key
 * that was lost, an admin of its node.
 *
 * Once anchored, the previous key signs nothing again here (it is retired for
 * good: no member is ever enrolled with it), and every header holding the
 * member's stanza is rewrapped to the new recipient: grants carry over. The
 * rotation is applied in one transaction with the member queued for those
 * rewraps (metadata key_rewraps), which run at once and, should the node stop
 * half-way, at the next settling or start. An anchor whose outcome is unknown
 * is applied at once all the same (fail closed: the old key is refused while
 * unsure) and the ledger brought to say it (services/vault/outcomes.ts).
 *
 * A reader in the consortium's directory has its new public keys in the event:
 * the other nodes holding records granted to it take them from the ledger, only
 * from a block its own node signed (services/vault/consortium-index.ts), and
 * rewrap their headers the same way.
 */
import type { Receipt } from '../../anchor/receipt.ts';
import { keyFingerprint, verifySignature } from '../../crypto/ed25519.ts';
import { X25519Recipient } from '../../crypto/x25519.ts';
import { check, fail, isMedvaultError } from '../../errors.ts';
import { logger } from '../../log.ts';
import { rotationMessage } from '../protocol/member-keys.ts';
import { ID, type VaultCore } from './core.ts';
import { crashPoint } from './crash-points.ts';
import type { MemberRow } from './metadata.ts';
import { anchorChange } from './outcomes.ts';
import { authorizeKeyRotation } from './policy.ts';

/** What a rotation asks for: the new public keys and their proof. */
export interface KeyRotationInput {
  /** The new Ed25519 public key, base64. */
  signingKey: string;
  /** The new age recipient (age1…). */
  recipient: string;
  /** base64 Ed25519 signature of rotationMessage(member, keys) by the new signing key. */
  proof: string;
}

export interface KeyRotationResult {
  member: MemberRow;
  receipt: Receipt;
  /** Records whose header was rewrapped to the new recipient. */
  rewrapped: number;
  /** Headers still to be rewrapped (a failure part-way; the node finishes them). */
  rewrapsPending: boolean;
}

/** The Ed25519 public key in a request, base64 of exactly 32 bytes; REQUEST_INVALID otherwise. */
export function signingKeyOf(base64: string): Buffer {
  const key = Buffer.from(base64, 'base64');
  check(
    key.length === 32 && key.toString('base64') === base64,
    'REQUEST_INVALID',
    'signingKey is a base64 Ed25519 key',
  );
  return key;
}

export class KeyRotations {
  readonly #c: VaultCore;
  /** Rewraps one record's header to its live readers as the member rows now say. */
  readonly #rewrapRecord: (recordId: string) => Promise<void>;

  constructor(core: VaultCore, rewrapRecord: (recordId: string) => Promise<void>) {
    this.#c = core;
    this.#rewrapRecord = rewrapRecord;
  }

  /** Replaces member `id`'s keys (the member itself, or an admin); anchored as key.rotated. */
  async rotate(actor: MemberRow, id: string, input: KeyRotationInput): Promise<KeyRotationResult> {
    check(ID.test(id), 'REQUEST_INVALID', 'a member is named by its id (32 hex digits)');
    const key = signingKeyOf(input.signingKey);
    const recipient = X25519Recipient.parse(input.recipient); // KEY_INVALID when malformed
    const proof = Buffer.from(input.proof, 'base64');
    const message = rotationMessage(id, { signingKey: input.signingKey, recipient: input.recipient });
    // One member's rotations one after another: two at once would both retire the same key.
    return this.#c.locked(`member:${id}`, async () => {
      const member = this.#c.m.member(id);
      if (!member || member.removedAt !== null) fail('MEMBER_NOT_FOUND', id);
      authorizeKeyRotation(actor, member);
      check(member.node === null, 'REQUEST_INVALID', 'a member of another node rotates its keys at its own node');
      if (proof.length !== 64 || !verifySignature(key, message, new Uint8Array(proof))) {
        fail('KEY_PROOF_INVALID', 'the proof is not the new signing key’s signature of this rotation');
      }
      const keyId = keyFingerprint(key);
      if (this.#c.m.keyEverUsed(keyId)) fail('MEMBER_EXISTS', 'that signing key was enrolled before');
      const at = this.#c.now();
      const keys = { signingKey: input.signingKey, recipient: recipient.toString() };
      const apply = () => {
        this.#c.m.rotateMemberKeys(id, keys, at);
      };
      const receipt = await anchorChange(
        this.#c,
        'rotation',
        {
          type: 'key.rotated',
          at,
          member: id,
          previousKey: member.keyId,
          newKey: keyId,
          by: actor.id,
          // A reader in the directory: the nodes it is granted records at need its new keys.
          ...(member.role === 'reader'
            ? { signingKey: key.toString('hex'), recipient: Buffer.from(recipient.publicKey).toString('hex') }
            : {}),
        },
        apply,
        id,
      ).catch(async (err: unknown) => {
        // Applied while the ledger settles it: the member's records open with the new key now.
        if (isMedvaultError(err, 'OUTCOME_PENDING')) await this.#rewrapSoon(id);
        throw err;
      });
      this.#c.m.transaction(() => {
        apply();
        this.#c.index(id, receipt);
      });
      logger.info({ member: id, by: actor.id, key: keyId }, 'member keys rotated');
      const rewrapped = await this.#rewrapSoon(id);
      return {
        member: this.#c.m.member(id) as MemberRow,
        receipt,
        rewrapped: rewrapped ?? 0,
        rewrapsPending: rewrapped === null,
      };
    });
  }

  /** Rewraps member `id`'s headers now; null when some are left for the next settling (logged). */
  async #rewrapSoon(id: string): Promise<number | null> {
    try {
      return await this.#rewrapAll(id);
    } catch (err) {
      logger.warn(
        { member: id, code: isMedvaultError(err) ? err.code : 'INTERNAL' },
        'headers not all rewrapped to the new key yet; finished later',
      );
      return null;
    }
  }

  /** Finishes the rewraps of every member still queued (a rotation cut short, or read from the ledger). */
  async resume(): Promise<number> {
    let count = 0;
    for (const id of this.#c.m.keyRewraps()) count += (await this.finish(id)) ?? 0;
    return count;
  }

  /** Finishes member `id`'s rewraps if it is queued: how many records were rewrapped; null when some are left. */
  finish(id: string): Promise<number | null> {
    return this.#c.locked(`member:${id}`, () => this.#rewrapSoon(id));
  }

  async #rewrapAll(id: string): Promise<number> {
    if (!this.#c.m.keyRewrapQueued(id)) return 0;
    const records = this.#c.m.recordsGrantedTo(id);
    for (const recordId of records) {
      await this.#rewrapRecord(recordId);
      crashPoint('rotation.rewrapping');
    }
    this.#c.m.keyRewrapDone(id);
    return records.length;
  }
}
