/**
 * Uploads admitted off the node's main thread. Admitting an upload (kms.ts `admitWith`: the
 * custodian's stanza unwrapped, the payload's first and last chunks opened, the header wrapped
 * to each reader) is X25519 agreements, a key generation per reader and HKDF: a fifth of the
 * main thread's time under many small uploads, the node's serial part (docs/benchmarks.md,
 * session 17). Here it runs on worker threads (kms/admit-worker.ts), one fewer than the cores
 * (at least one, at most four), shared by every KMS in the process; the main thread only sends
 * the request and takes the answer.
 *
 * What crosses to a worker: a copy of the custodian's 32-byte secret (zeroed on both sides once
 * sent or used), the client's header, the readers' public recipients and the payload sample.
 * Errors come back with their code and message. A worker that stops fails its pending requests
 * INTERNAL and is replaced at the next one. Readers that are not X25519 recipients (none in the
 * vault; a caller's own kinds) are admitted on the calling thread.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Recipient } from '../crypto/header.ts';
import type { PayloadSample } from '../crypto/stream.ts';
import { type X25519Identity, X25519Recipient } from '../crypto/x25519.ts';
import { type ErrorCode, MedvaultError } from '../errors.ts';
import { admitWith } from './kms.ts';

export interface AdmitRequest {
  id: number;
  secret: Uint8Array;
  header: Uint8Array;
  readers: string[];
  sample: PayloadSample;
}

export type AdmitReply = { id: number; header: Uint8Array } | { id: number; code: ErrorCode; message: string };

// Run from source (tests, benchmarks: Node strips the types) or from dist/.
const WORKER = new URL(import.meta.url.endsWith('.ts') ? './admit-worker.ts' : './admit-worker.js', import.meta.url);
const SIZE = Math.max(1, Math.min(4, availableParallelism() - 1));

/** The error a worker's reply carries, as thrown there: same code, same message. */
function replyError(code: ErrorCode, message: string): MedvaultError {
  const err = new MedvaultError(code);
  return Object.defineProperty(err, 'message', { value: message, enumerable: false, writable: true });
}

class AdmitWorker {
  readonly #worker = new Worker(WORKER);
  readonly #pending = new Map<number, { resolve: (header: Uint8Array) => void; reject: (err: unknown) => void }>();
  stopped = false;

  constructor() {
    this.#worker.unref(); // referenced only while it owes answers
    this.#worker.on('message', (reply: AdmitReply) => {
      const waiting = this.#pending.get(reply.id);
      if (!waiting) return;
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) this.#worker.unref();
      if ('header' in reply) waiting.resolve(reply.header);
      else waiting.reject(replyError(reply.code, reply.message));
    });
    this.#worker.on('error', (err) => this.#stop(err.message));
    this.#worker.on('exit', (code) => this.#stop(`exited with code ${code}`));
  }

  get load(): number {
    return this.#pending.size;
  }

  run(request: AdmitRequest): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      this.#pending.set(request.id, { resolve, reject });
      if (this.#pending.size === 1) this.#worker.ref();
      this.#worker.postMessage(request); // cloned now: the caller may zero its secret at once
    });
  }

  #stop(why: string): void {
    this.stopped = true;
    const failure = new MedvaultError('INTERNAL', `the key-wrapping worker stopped (${why})`);
    for (const { reject } of this.#pending.values()) reject(failure);
    this.#pending.clear();
  }

  terminate(): Promise<number> {
    return this.#worker.terminate();
  }
}

let workers: AdmitWorker[] = [];
let nextId = 0;

/** The least busy worker, started or replaced as needed. */
function worker(): AdmitWorker {
  workers = workers.filter((w) => !w.stopped);
  if (workers.length < SIZE) {
    const started = new AdmitWorker();
    workers.push(started);
    return started;
  }
  return workers.reduce((a, b) => (b.load < a.load ? b : a));
}

/** `admitWith`, on a worker thread (module comment). */
export async function admitOffThread(
  custodian: X25519Identity,
  header: Uint8Array,
  readers: readonly Recipient[],
  sample: PayloadSample,
): Promise<Uint8Array> {
  if (!readers.every((r) => r instanceof X25519Recipient)) return admitWith(custodian, header, readers, sample);
  const secret = custodian.secretBytes();
  try {
    const id = nextId++;
    const answer = worker().run({ id, secret, header, readers: readers.map(String), sample });
    secret.fill(0);
    return await answer;
  } finally {
    secret.fill(0);
  }
}

/** Stops the workers (their pending requests fail INTERNAL); the next admission starts new ones. */
export async function stopAdmitWorkers(): Promise<void> {
  const stopping = workers;
  workers = [];
  await Promise.all(stopping.map((w) => w.terminate()));
}
