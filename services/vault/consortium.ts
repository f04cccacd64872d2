/**
 * Founding, inviting and joining: how a node becomes part of a consortium and
 * receives its shared secret, the subject key (the HMAC key that turns a
 * patient identifier into the subject pseudonym every node uses).
 *
 *   found   the first node makes the subject key, keeps it in its keystore,
 *           and announces itself (node.joined) in block 0's consortium.
 *   request a joining node makes its keys first (medvault consortium request):
 *           its node key id, signing key and age recipient are public.
 *   invite  an admin of a member node asks its node to invite that key: the
 *           node seals an invite to the joining node's age recipient (only
 *           that node can open it) and anchors node.invited with the
 *           invite's digest, so the invite cannot be altered in transit.
 *   join    the new node opens the invite, checks the ledger's block 0 is
 *           the consortium's and that a node of the consortium anchored that
 *           very invite for it, keeps the subject key in its keystore and
 *           announces itself (node.joined). Every node then takes it as a peer
 *           (services/vault/consortium-index.ts).
 *
 * A member that computes pseudonyms on its own machine (an uploader, a DPO)
 * gets the subject key the same way: sealed to its own age recipient by its
 * node, opened in memory by the SDK. The key is never written to a log, a
 * loose file or the ledger.
 */
import { blockHash } from '../../anchor/block.ts';
import type { Receipt } from '../../anchor/receipt.ts';
import type { X25519Identity } from '../../crypto/x25519.ts';
import { check, fail } from '../../errors.ts';
import type { LocalKms } from '../../kms/local-kms.ts';
import { logger } from '../../log.ts';
import {
  checkJoinRequest,
  inviteDigest,
  type JoinRequest,
  makeInvite,
  sealInvite,
  sealSecret,
} from '../protocol/invites.ts';
import { certFingerprint, type TlsIdentity } from '../protocol/tls.ts';
import { votesNeeded } from './consortium-index.ts';
import type { VaultCore } from './core.ts';
import type { ConsortiumNodeRow, MemberRow } from './metadata.ts';
import { authorize } from './policy.ts';

export type { Invite, JoinRequest } from '../protocol/invites.ts';
export { checkJoinRequest, inviteDigest, openInvite } from '../protocol/invites.ts';

/** The keystore name of the consortium's subject key (kms/local-kms.ts sharedSecret). */
export const SUBJECT_KEY = 'subject';

/** How long an invite can be used, unless the admin says otherwise. */
export const INVITE_DEFAULT_MS = 7 * 86_400_000;

/** What a node knows of its consortium for inviting: the ledger it is on and that ledger's block 0. */
export interface ConsortiumInfo {
  /** The ledger URI the node was opened on. */
  ledger: string;
  /** The hash of block 0 (medvault.json ledgerGenesis). */
  genesis: string | undefined;
  /** The certificate the node serves with: its fingerprint is announced for peers to pin. */
  tls?: TlsIdentity | undefined;
}

/** A node's part in the consortium: its announcement, the invites it makes, the subject key it hands its members. */
export class Consortium {
  readonly #c: VaultCore;
  readonly #keystore: LocalKms | undefined;
  readonly #info: ConsortiumInfo;
  readonly #catchUp: () => Promise<void>;

  /** `catchUp` reads what the ledger says of the nodes since the last read. */
  constructor(core: VaultCore, keystore: LocalKms | undefined, info: ConsortiumInfo, catchUp: () => Promise<void>) {
    this.#c = core;
    this.#keystore = keystore;
    this.#info = info;
    this.#catchUp = catchUp;
  }

  /** The consortium's nodes as the ledger says, this one included. */
  async nodes(): Promise<ConsortiumNodeRow[]> {
    await this.#catchUp();
    return this.#c.m.consortiumNodes();
  }

  /** This node's keys as a join request (what node.joined publishes). */
  get self(): JoinRequest {
    const identity = this.#nodeIdentity();
    const signingKey = Buffer.from(this.#c.node.publicKey).toString('base64');
    return { node: this.#c.node.id, signingKey, recipient: identity.recipient.toString() };
  }

  /**
   * Anchors node.joined for this node at `url`, unless the ledger already says it joined at
   * that URL. Founding (block 0 is this node's) or invited: the consortium index decides
   * whether it counts.
   */
  async announce(url: string): Promise<Receipt | null> {
    return this.#announce(url, await this.#own());
  }

  /** At start-up: announces this node again if it joined and its URL or TLS certificate changed since. */
  async reannounce(url: string): Promise<Receipt | null> {
    const own = await this.#own();
    return own?.state === 'joined' ? this.#announce(url, own) : null;
  }

  /** This node's row as the ledger says, read up to now. */
  async #own(): Promise<ConsortiumNodeRow | undefined> {
    return (await this.nodes()).find((n) => n.id === this.#c.node.id);
  }

  /** node.joined for this node at `url`, unless `own` (its row) says it joined with that URL and certificate. */
  async #announce(url: string, own: ConsortiumNodeRow | undefined): Promise<Receipt | null> {
    const tls = this.#tlsPin();
    if (own?.state === 'joined' && own.url === url && own.tls === tls) return null;
    check(
      !tls || url.startsWith('https://'),
      'INVALID_ARGUMENT',
      `a node that serves TLS is reached at https://…, not ${url}`,
    );
    const identity = this.#nodeIdentity();
    const receipt = await this.#c.anchor({
      type: 'node.joined',
      at: this.#c.now(),
      node: this.#c.node.id,
      signingKey: Buffer.from(this.#c.node.publicKey).toString('hex'),
      recipient: Buffer.from(identity.recipient.publicKey).toString('hex'),
      url,
      ...(tls ? { tls } : {}),
    });
    await this.#catchUp();
    logger.info({ node: this.#c.node.id, url }, 'this node announced itself to the consortium');
    return receipt;
  }

  #tlsPin(): string | null {
    return this.#info.tls ? certFingerprint(this.#info.tls.cert) : null;
  }

  /**
   * An admin invites the node that made `request` (medvault consortium request): anchors
   * node.invited with the invite's digest and returns the invite, sealed to that node.
   */
  async invite(
    actor: MemberRow,
    request: unknown,
    expiresInMs = INVITE_DEFAULT_MS,
  ): Promise<{ invite: string; node: string; expiresAt: number; receipt: Receipt }> {
    authorize(actor, 'consortium.invite');
    const joining = checkJoinRequest(request);
    check(
      Number.isSafeInteger(expiresInMs) && expiresInMs > 0 && expiresInMs <= 90 * 86_400_000,
      'REQUEST_INVALID',
      'an invite is valid for up to 90 days',
    );
    check(
      !this.#info.ledger.startsWith('file:'),
      'REQUEST_INVALID',
      "a file ledger is this node's alone: a consortium shares an etcd or EVM ledger",
    );
    const node = (await this.nodes()).find((n) => n.id === joining.node);
    if (node?.state === 'joined') fail('REQUEST_INVALID', `node ${joining.node} is already in the consortium`);
    const genesis = this.#info.genesis ?? blockHash((await this.#c.ledger.get(0))?.header ?? fail('LEDGER_EMPTY'));
    const expiresAt = this.#c.now() + expiresInMs;
    const invite = makeInvite({
      consortium: genesis,
      ledger: this.#info.ledger,
      inviter: this.#c.node.id,
      node: joining.node,
      subjectKey: Buffer.from(this.#subjectKey()).toString('hex'),
      expiresAt,
    });
    const sealed = sealInvite(invite, joining.recipient);
    const receipt = await this.#c.anchor({
      type: 'node.invited',
      at: this.#c.now(),
      node: joining.node,
      by: actor.id,
      invite: inviteDigest(invite),
    });
    logger.info({ node: joining.node, by: actor.id }, 'a node was invited into the consortium');
    return { invite: sealed, node: joining.node, expiresAt, receipt };
  }

  /**
   * This node leaves the consortium (admin): anchors node.left, after which no node takes it
   * as a peer (no forwarded fetch, no erasure order, no cosignature). Its records stay here:
   * erasures filed at other nodes no longer reach them, so erase or hand them over first.
   */
  async leave(actor: MemberRow): Promise<{ receipt: Receipt }> {
    authorize(actor, 'consortium.leave');
    if ((await this.#own())?.state !== 'joined') fail('REQUEST_INVALID', 'this node is not a member of a consortium');
    const receipt = await this.#c.anchor({ type: 'node.left', at: this.#c.now(), node: this.#c.node.id });
    await this.#catchUp();
    logger.warn({ node: this.#c.node.id, by: actor.id }, 'this node left the consortium');
    return { receipt };
  }

  /**
   * This node votes (admin) to remove node `id` from the consortium: anchors node.removal. Once
   * more than half of the other joined nodes voted, the node is removed (the ledger index
   * counts the votes: services/vault/consortium-index.ts) and no node takes it as a peer; this
   * answers where it stands: its state, the votes counted and how many it takes.
   */
  async voteRemoval(
    actor: MemberRow,
    id: string,
  ): Promise<{ receipt: Receipt; state: ConsortiumNodeRow['state']; votes: number; needed: number }> {
    authorize(actor, 'consortium.remove');
    check(id !== this.#c.node.id, 'REQUEST_INVALID', 'a node leaves by itself (consortium leave), it is not voted out');
    if ((await this.#own())?.state !== 'joined') fail('REQUEST_INVALID', 'this node is not a member of a consortium');
    const target = (await this.nodes()).find((n) => n.id === id);
    if (target?.state !== 'joined') fail('PEER_UNKNOWN', `node ${id} is not a joined node of the consortium`);
    const receipt = await this.#c.anchor({ type: 'node.removal', at: this.#c.now(), node: id, by: actor.id });
    await this.#catchUp();
    const nodes = await this.nodes();
    const others = nodes.filter((n) => n.state === 'joined' && n.id !== id).map((n) => n.id);
    const voters = this.#c.m.nodeVotes().get(id) ?? new Set<string>();
    const state = nodes.find((n) => n.id === id)?.state ?? 'joined';
    logger.warn({ node: id, by: actor.id, state }, 'this node voted to remove a node from the consortium');
    return {
      receipt,
      state,
      votes: others.filter((n) => voters.has(n)).length,
      needed: votesNeeded(others.length),
    };
  }

  /** The consortium's subject key sealed to `actor`'s own age recipient (uploaders, DPOs, admins). */
  subjectKeyFor(actor: MemberRow): { sealed: string } {
    authorize(actor, 'subject-key');
    return { sealed: sealSecret(this.#subjectKey(), actor.recipient) };
  }

  #subjectKey(): Uint8Array {
    if (!this.#keystore?.hasSharedSecret(SUBJECT_KEY)) {
      fail('KMS_NO_KEY', "this node was not given the consortium's subject key (made before it existed?)");
    }
    return this.#keystore.sharedSecret(SUBJECT_KEY);
  }

  #nodeIdentity(): X25519Identity {
    if (!this.#keystore) fail('KMS_NO_MEMBER', 'this vault has no node keystore');
    return this.#keystore.memberKeys(NODE_KEY).identity;
  }
}

/** The keystore name of the node's own keys. */
export const NODE_KEY = 'node';
