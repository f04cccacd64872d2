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

export interface MemberCredentials {
  signing: SigningKey;
  identity: X25519Identity;
}

export function generateMemberKeys(): MemberCredentials {
  return { signing: SigningKey.generate(), identity: X25519Identity.generate() };
}

/** The text of a member key file: an age identity file with the signing seed in a comment. */
export function memberKeyFileText(name: string, keys: MemberCredentials): string {
  return [
    `# medvault member key for ${name}: keep it secret (it signs requests and decrypts records)`,
    `# member id: ${keys.signing.id}`,
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
  return { signing: new SigningKey(new Uint8Array(seed)), identity };
}

/** What a member sends to be added: its public keys. */
export function memberPublic(keys: MemberCredentials): { signingKey: string; recipient: string } {
  return {
    signingKey: Buffer.from(keys.signing.publicKey).toString('base64'),
    recipient: String(keys.identity.recipient),
  };
}
