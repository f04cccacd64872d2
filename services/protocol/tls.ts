/**
 * TLS between nodes and to nodes, as both ends use it.
 *
 * A node that serves TLS publishes its certificate's fingerprint (SHA-256 of
 * its DER bytes, hex) on the ledger with its URL (node.joined `tls`). Another
 * node calling it accepts exactly that certificate and no other, whoever
 * signed it (a private CA or none): the pin is what the consortium's ledger
 * says about that node, so a CA cannot vouch for an impostor. The calling
 * node presents its own certificate (mutual TLS), which the called node
 * checks against the caller's pin the same way.
 *
 * Members' clients trust the node's certificate through a CA (`ca`), as any
 * HTTPS client does.
 */
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { Agent, buildConnector } from 'undici';
import { fail } from '../../errors.ts';

/** The PEM certificate and key a node serves with and presents to its peers. */
export interface TlsIdentity {
  cert: Buffer;
  key: Buffer;
}

/** SHA-256 of a certificate's DER bytes, hex: what node.joined publishes. */
export function certFingerprint(cert: Buffer | Uint8Array): string {
  return createHash('sha256').update(new X509Certificate(cert).raw).digest('hex');
}

/** The fingerprint of the certificate a TLS socket's other end presented, or null for none. */
export function peerFingerprint(socket: unknown): string | null {
  const peer = (socket as Partial<TLSSocket>).getPeerCertificate?.(true);
  return peer?.raw ? createHash('sha256').update(peer.raw).digest('hex') : null;
}

/**
 * A dispatcher (for fetch) that accepts only the server certificate whose fingerprint is
 * `pin`, presenting `own` as the client certificate.
 */
export function pinnedAgent(pin: string, own?: TlsIdentity): Agent {
  const connect = buildConnector({ rejectUnauthorized: false, ...(own ? { cert: own.cert, key: own.key } : {}) });
  return new Agent({
    connect: (options, callback) =>
      connect(options, (err, socket) => {
        if (err) return callback(err, null);
        const found = peerFingerprint(socket);
        if (found !== pin) {
          socket.destroy();
          return callback(
            new Error(`the node at ${options.hostname}:${options.port} presented certificate ${found}, not ${pin}`),
            null,
          );
        }
        callback(null, socket);
      }),
  });
}

/** A dispatcher that trusts the node certificates `ca` signed (members' clients). */
export function caAgent(ca: Buffer): Agent {
  return new Agent({ connect: { ca } });
}

/** The certificate and key in PEM, checked to be a pair; INVALID_ARGUMENT otherwise. */
export function checkTlsIdentity(cert: Buffer, key: Buffer): TlsIdentity {
  let parsed: X509Certificate;
  try {
    parsed = new X509Certificate(cert);
  } catch {
    fail('INVALID_ARGUMENT', 'the TLS certificate is not a PEM certificate');
  }
  let matches = false;
  try {
    matches = parsed.checkPrivateKey(createPrivateKey(key));
  } catch {}
  if (!matches) fail('INVALID_ARGUMENT', 'the TLS key is not the key of the certificate');
  return { cert, key };
}
