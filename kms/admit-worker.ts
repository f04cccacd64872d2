/**
 * The thread that admits uploads for kms/admit-pool.ts: `admitWith` (kms.ts) on what the
 * node's main thread sends, the answer (or the error's code and message) sent back. It keeps no
 * custodian key between requests.
 */
import { parentPort } from 'node:worker_threads';
import { LRUCache } from 'lru-cache';
import { X25519Identity, X25519Recipient } from '../crypto/x25519.ts';
import { isMedvaultError } from '../errors.ts';
import type { AdmitReply, AdmitRequest } from './admit-pool.ts';
import { admitWith } from './kms.ts';

const port = parentPort;
if (!port) throw new Error('kms/admit-worker.ts runs as a worker thread');

/** Readers' recipients as parsed lately (making a public key object costs ~20 µs). */
const recipients = new LRUCache<string, X25519Recipient>({ max: 4096 });
const recipient = (text: string): X25519Recipient => {
  let parsed = recipients.get(text);
  if (!parsed) {
    parsed = X25519Recipient.parse(text);
    recipients.set(text, parsed);
  }
  return parsed;
};

port.on('message', (request: AdmitRequest) => {
  let reply: AdmitReply;
  try {
    const custodian = new X25519Identity(request.custodian);
    reply = {
      id: request.id,
      header: admitWith(custodian, request.header, request.readers.map(recipient), request.sample),
    };
  } catch (err) {
    reply = isMedvaultError(err)
      ? { id: request.id, code: err.code, message: err.message }
      : { id: request.id, code: 'INTERNAL', message: String((err as Error)?.message ?? err) };
  }
  port.postMessage(reply);
});
