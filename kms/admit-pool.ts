/**
 * Uploads admitted off the node's main thread. Admitting an upload (kms.ts `admitWith`: the
 * custodian's stanza unwrapped, the payload's first and last chunks opened, the header wrapped
 * to each reader) is X25519 agreements, a key generation per reader and HKDF: ~250 µs, a fifth
 * of the main thread's time under many small uploads, and the main thread is a node's serial
 * part. Here it can run on worker threads (kms/admit-worker.ts), shared by every KMS in the
 * process; the main thread then spends ~50 µs sending the request and taking the answer.
 *
 * How many: `MEDVAULT_ADMIT_THREADS`, by default the cores beyond two (at most four), so none on
 * a 2-core machine: there the worker's messages and thread switches cost the node 0.1-1 ms of
 * CPU per upload more than they freed, and uploads/s fell 9-18 % in two of three alternating
 * runs, with clients and node sharing both cores (docs/benchmarks.md, session 17). With no
 * thread, admission runs on the calling thread, as it does for readers that are not X25519
 * recipients (none in the vault; a caller's own kinds).
 *
 * What crosses to a worker: the custodian's key as OpenSSL holds it (the key object is shared
 * with the worker, no secret bytes are copied or parsed again), the client's header, the
 * readers' public recipients and the payload sample. Errors come back with their code and
 * message. A worker that stops fails its pending requests INTERNAL and is replaced at the next.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Recipient } from '../crypto/header.ts';
import type { PayloadSample } from '../crypto/stream.ts';
import { type HeldX25519Key, type X25519Identity, X25519Recipient } from '../crypto/x25519.ts';
import { check, type ErrorCode, MedvaultError } from '../errors.ts';
import { admitWith } from './kms.ts';

export interface AdmitRequest {
  id: number;
  custodian: HeldX25519Key;
  header: Uint8Array;
  readers: string[];
  sample: PayloadSample;
}

export type AdmitReply = { id: number; header: Uint8Array } | { id: number; code: ErrorCode; message: string };

// Run from source (tests, benchmarks: Node strips the types) or from dist/.
const WORKER = new URL(import.meta.url.endsWith('.ts') ? './admit-worker.ts' : './admit-worker.js', import.meta.url);

/** The worker threads to admit on: MEDVAULT_ADMIT_THREADS (0-16), else the cores beyond two, at most four. */
function configuredThreads(): number {
  const setting = process.env.MEDVAULT_ADMIT_THREADS;
  if (setting === undefined || setting === '') return Math.max(0, Math.min(4, availableParallelism() - 2));
  const n = Number(setting);
  check(
    Number.isInteger(n) && n >= 0 && n <= 16,
    'INVALID_ARGUMENT',
    'MEDVAULT_ADMIT_THREADS is a whole number, 0 to 16',
  );
  return n;
}

let threads: number | undefined;

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
      this.#worker.postMessage(request);
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
  if (workers.length < Math.max(1, threads ?? 1)) {
    const started = new AdmitWorker();
    workers.push(started);
    return started;
  }
  return workers.reduce((a, b) => (b.load < a.load ? b : a));
}

/** How many worker threads admit: as set, else as configured (INVALID_ARGUMENT for a bad setting). */
export function admitThreads(): number {
  threads ??= configuredThreads();
  return threads;
}

/** `admitWith`, on a worker thread when there are any (module comment). */
export async function admitUpload(
  custodian: X25519Identity,
  header: Uint8Array,
  readers: readonly Recipient[],
  sample: PayloadSample,
): Promise<Uint8Array> {
  if (admitThreads() === 0 || !readers.every((r) => r instanceof X25519Recipient)) {
    return admitWith(custodian, header, readers, sample);
  }
  return worker().run({ id: nextId++, custodian: custodian.held(), header, readers: readers.map(String), sample });
}

/** Sets how many worker threads admit (0: the calling thread); none given: as configured (above). */
export function setAdmitThreads(n?: number): void {
  check(
    n === undefined || (Number.isInteger(n) && n >= 0 && n <= 16),
    'INVALID_ARGUMENT',
    'admission threads: a whole number, 0 to 16',
  );
  threads = n;
}

/** Stops the workers (their pending requests fail INTERNAL); the next admission starts new ones. */
export async function stopAdmitWorkers(): Promise<void> {
  const stopping = workers;
  workers = [];
  await Promise.all(stopping.map((w) => w.terminate()));
}
