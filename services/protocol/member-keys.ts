/**
 * Member key files and credentials, shared by the SDK (which signs with
 * them) and the node (which makes the first admin's at init). A member key
 * file is a valid age identity file (the stock `age -i` reads it) whose
 * Ed25519 signing seed rides in a comment line age ignores.
 */
import { SigningKey } from '../../crypto/ed25519.ts';
import { parseIdentityFile, X25519Identity } from '../../crypto/x25519.ts';
import { fail } from '../../errors.ts';

const SIGNING_LINE = '# medvault-signing-key: ';
const MEMBER_LINE = '# member id: ';
const MEMBER_ID = /^[0-9a-f]{32}$/;

export interface MemberCredentials {
  signing: SigningKey;
  identity: X25519Identity;
  /**
   * The member's id, when it is not this signing key's id: a member keeps the id of its
   * first key when it rotates its keys (key.rotated). Absent: `signing.id`.
   */
  member?: string;
}

/** The id of the member these keys are of. */
export const memberIdOf = (keys: MemberCredentials): string => keys.member ?? keys.signing.id;

export function generateMemberKeys(): MemberCredentials {
  return { signing: SigningKey.generate(), identity: X25519Identity.generate() };
}

/** The text of a member key file: an age identity file with the signing seed in a comment. */
export function memberKeyFileText(name: string, keys: MemberCredentials): string {
  return [
    `# medvault member key for ${name}: keep it secret (it signs requests and decrypts records)`,
    `${MEMBER_LINE}${memberIdOf(keys)}`,
    `# public key: ${keys.identity.recipient}`,
    `${SIGNING_LINE}${Buffer.from(keys.signing.exportSeed()).toString('base64')}`,
    String(keys.identity),
    '',
  ].join('\n');
}

export function parseMemberKeyFile(text: string): MemberCredentials {
  const line = text.split('\n').find((l) => l.startsWith(SIGNING_LINE));
  if (!line) fail('KEY_INVALID', 'not a medvault member key file (no signing key line)');
  const seed = Buffer.from(line.slice(SIGNING_LINE.length).trim(), 'base64');
  const [identity] = parseIdentityFile(text);
  if (!identity) fail('KEY_INVALID', 'the member key file has no age identity');
  const signing = new SigningKey(new Uint8Array(seed));
  // The member id line is a comment to age, and was one here until keys could rotate: a
  // file whose line names another id than its key's is a rotated member's (or damaged).
  const member = text
    .split('\n')
    .find((l) => l.startsWith(MEMBER_LINE))
    ?.slice(MEMBER_LINE.length)
    .trim();
  if (member === undefined || member === signing.id) return { signing, identity };
  if (!MEMBER_ID.test(member)) fail('KEY_INVALID', 'the member key file names a malformed member id');
  return { signing, identity, member };
}

/** What a member sends to be added: its public keys. */
export function memberPublic(keys: MemberCredentials): { signingKey: string; recipient: string } {
  return {
    signingKey: Buffer.from(keys.signing.publicKey).toString('base64'),
    recipient: String(keys.identity.recipient),
  };
}

/**
 * What the new signing key signs when a member's keys are replaced (proof that whoever asks
 * holds it, and that it is meant for this member):
 *   "medvault-key-rotation-v1\n" MEMBER-ID "\n" SIGNING-KEY (base64) "\n" RECIPIENT (age1…)
 */
export function rotationMessage(member: string, keys: { signingKey: string; recipient: string }): Uint8Array {
  return Buffer.from(['medvault-key-rotation-v1', member, keys.signingKey, keys.recipient].join('\n'), 'utf8');
}

/** The public keys of `next` for member `member`, with their proof (rotationMessage signed by `next`). */
export function rotationRequest(
  member: string,
  next: MemberCredentials,
): { signingKey: string; recipient: string; proof: string } {
  const keys = memberPublic(next);
  const proof = Buffer.from(next.signing.sign(rotationMessage(member, keys))).toString('base64');
  return { ...keys, proof };
}
