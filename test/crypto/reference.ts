/**
 * An independent, deliberately plain age v1 implementation on @noble (pure
 * JavaScript: ciphers, hashes, curves), written straight from the spec for
 * differential tests. It shares no code with crypto/: not the base64, not the
 * primitives, not the header or STREAM code. Whole files in memory only.
 */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bech32 } from '@scure/base';

const te = new TextEncoder();
const b64 = (b: Uint8Array) => btoa(String.fromCharCode(...b)).replace(/=+$/, '');
const unb64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
const kdf = (ikm: Uint8Array, salt: Uint8Array, info: string) => hkdf(sha256, ikm, salt, te.encode(info), 32);

export function refPublicKey(identity: string): string {
  const secret = bech32.fromWords(bech32.decode(identity.toLowerCase() as `${string}1${string}`, false).words);
  return bech32.encode('age', bech32.toWords(x25519.getPublicKey(secret)), false);
}

function chunkNonce(i: number, last: boolean): Uint8Array {
  const n = new Uint8Array(12);
  new DataView(n.buffer).setUint32(7, i); // counters here stay below 2^32
  n[11] = last ? 1 : 0;
  return n;
}

/** The STREAM payload for a given file key and payload nonce. */
export function refSealPayload(fileKey: Uint8Array, nonce: Uint8Array, plain: Uint8Array): Uint8Array {
  const key = kdf(fileKey, nonce, 'payload');
  const parts = [nonce];
  const count = Math.max(1, Math.ceil(plain.length / 65536));
  for (let i = 0; i < count; i++) {
    parts.push(
      chacha20poly1305(key, chunkNonce(i, i === count - 1)).encrypt(plain.subarray(i * 65536, (i + 1) * 65536)),
    );
  }
  return concat(...parts);
}

export function refEncrypt(recipients: string[], plain: Uint8Array): Uint8Array {
  const fileKey = crypto.getRandomValues(new Uint8Array(16));
  let header = 'age-encryption.org/v1\n';
  for (const r of recipients) {
    const pub = bech32.fromWords(bech32.decode(r as `${string}1${string}`, false).words);
    const eph = crypto.getRandomValues(new Uint8Array(32));
    const share = x25519.getPublicKey(eph);
    const wrap = kdf(x25519.getSharedSecret(eph, pub), concat(share, pub), 'age-encryption.org/v1/X25519');
    const body = b64(chacha20poly1305(wrap, new Uint8Array(12)).encrypt(fileKey));
    header += `-> X25519 ${b64(share)}\n`;
    for (let i = 0; i <= body.length; i += 64) header += `${body.slice(i, i + 64)}\n`;
  }
  header += '---';
  const mac = hmac(sha256, kdf(fileKey, new Uint8Array(0), 'header'), te.encode(header));
  header += ` ${b64(mac)}\n`;
  return concat(te.encode(header), refSealPayload(fileKey, crypto.getRandomValues(new Uint8Array(16)), plain));
}

export function refDecrypt(identities: string[], file: Uint8Array): Uint8Array {
  const text = new TextDecoder('latin1').decode(file.subarray(0, Math.min(file.length, 1 << 16)));
  const macAt = text.indexOf('\n---') + 1;
  const headerEnd = text.indexOf('\n', macAt) + 1;
  const lines = text.slice(0, macAt).split('\n');
  if (lines[0] !== 'age-encryption.org/v1') throw new Error('not age v1');
  let fileKey: Uint8Array | undefined;
  for (let i = 1; i < lines.length && !fileKey; i++) {
    const args = (lines[i] as string).split(' ');
    if (args[0] !== '->') continue;
    let body = '';
    for (let j = i + 1; ; j++) {
      body += lines[j];
      if ((lines[j] as string).length < 64) break;
    }
    if (args[1] !== 'X25519') continue;
    const share = unb64(args[2] as string);
    for (const id of identities) {
      const secret = bech32.fromWords(bech32.decode(id.toLowerCase() as `${string}1${string}`, false).words);
      const pub = x25519.getPublicKey(secret);
      const wrap = kdf(x25519.getSharedSecret(secret, share), concat(share, pub), 'age-encryption.org/v1/X25519');
      try {
        fileKey = chacha20poly1305(wrap, new Uint8Array(12)).decrypt(unb64(body));
        break;
      } catch {}
    }
  }
  if (!fileKey) throw new Error('no identity');
  const mac = hmac(
    sha256,
    kdf(fileKey, new Uint8Array(0), 'header'),
    te.encode(text.slice(0, text.indexOf('---', macAt - 1) + 3)),
  );
  if (b64(mac) !== text.slice(text.indexOf('---', macAt - 1) + 4, headerEnd - 1)) throw new Error('bad MAC');
  const payload = file.subarray(headerEnd);
  const key = kdf(fileKey, payload.subarray(0, 16), 'payload');
  const parts: Uint8Array[] = [];
  const sealed = payload.subarray(16);
  const count = Math.max(1, Math.ceil(sealed.length / 65552));
  for (let i = 0; i < count; i++) {
    const chunk = sealed.subarray(i * 65552, (i + 1) * 65552);
    parts.push(chacha20poly1305(key, chunkNonce(i, i === count - 1)).decrypt(chunk));
  }
  return concat(...parts);
}
