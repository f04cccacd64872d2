/**
 * A blob store whose operations are timed and their outcomes told to a meter: what the
 * node's /metrics reports per backend (services/http/metrics.ts), so an operator sees a
 * slow or failing MinIO, kubo or disk before the uploads' errors say it. A replicated
 * store's replicas are measured one by one (storage/open.ts), each under its own name.
 */
import type { Readable } from 'node:stream';
import type { BlobStore, ByteRange, DeleteResult, PutResult } from './blob-store.ts';

export type StoreOperation = 'put' | 'get' | 'stat' | 'has' | 'delete';

/** Told each operation's backend, outcome ('ok' or the error's code) and duration in seconds. */
export type StoreListener = (operation: StoreOperation, backend: string, outcome: string, seconds: number) => void;

/** Where a node's stores report to; the listener is set once something listens (the HTTP server). */
export class StoreMeter {
  listener: StoreListener | null = null;
}

const codeOf = (err: unknown): string => {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'INTERNAL';
};

/** `store`, its put, get, stat, has and delete reported to `meter` under `backend`. */
export function measuredStore(store: BlobStore, backend: string, meter: StoreMeter): BlobStore {
  const timed = async <T>(operation: StoreOperation, run: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    const report = (outcome: string) =>
      meter.listener?.(operation, backend, outcome, (performance.now() - started) / 1000);
    try {
      const result = await run();
      report('ok');
      return result;
    } catch (err) {
      report(codeOf(err));
      throw err;
    }
  };
  const measured: BlobStore = {
    kind: store.kind,
    put: (source: AsyncIterable<Uint8Array>): Promise<PutResult> => timed('put', () => store.put(source)),
    // A get is timed to its stream: the time to the first byte a reader waits.
    get: (ref: string, range?: ByteRange): Promise<Readable> => timed('get', () => store.get(ref, range)),
    stat: (ref: string) => timed('stat', () => store.stat(ref)),
    has: (ref: string) => timed('has', () => store.has(ref)),
    delete: (ref: string): Promise<DeleteResult> => timed('delete', () => store.delete(ref)),
    list: () => store.list(),
    close: () => store.close(),
  };
  const read = store.read?.bind(store);
  if (read) measured.read = (ref: string, size: number) => timed('get', () => read(ref, size));
  const collect = store.collectStrays?.bind(store);
  if (collect) measured.collectStrays = collect;
  return measured;
}
