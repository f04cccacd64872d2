/**
 * Opens a blob store from a configuration object, so tests, tools and (later)
 * the vault's configuration name stores the same way.
 */
import { fail } from '../errors.ts';
import type { BlobStore } from './blob-store.ts';
import { FsBlobStore } from './fs-store.ts';
import { IpfsBlobStore, type IpfsStoreOptions } from './ipfs-store.ts';
import { measuredStore, type StoreMeter } from './measured-store.ts';
import { ReplicatedBlobStore } from './replicated-store.ts';
import { S3BlobStore, type S3StoreOptions } from './s3-store.ts';

export type StoreConfig =
  | { kind: 'fs'; root: string }
  | ({ kind: 's3' } & S3StoreOptions)
  | ({ kind: 'ipfs' } & IpfsStoreOptions)
  | { kind: 'replicated'; replicas: Array<{ name: string; config: StoreConfig }>; minCopies?: number };

/**
 * `meter`: each store's operations are timed and reported to it (storage/measured-store.ts),
 * a replicated store's replica by replica, labelled KIND/NAME; a single store by its kind.
 */
export async function openBlobStore(config: StoreConfig, meter?: StoreMeter, label?: string): Promise<BlobStore> {
  const measured = (store: BlobStore) => (meter ? measuredStore(store, label ?? config.kind, meter) : store);
  switch (config.kind) {
    case 'fs':
      return measured(await FsBlobStore.open(config.root));
    case 's3':
      return measured(new S3BlobStore(config));
    case 'ipfs':
      return measured(new IpfsBlobStore(config));
    case 'replicated': {
      const replicas = [];
      for (const r of config.replicas) {
        replicas.push({ name: r.name, store: await openBlobStore(r.config, meter, `${r.config.kind}/${r.name}`) });
      }
      return new ReplicatedBlobStore(replicas, config.minCopies === undefined ? {} : { minCopies: config.minCopies });
    }
    default:
      return fail('INVALID_ARGUMENT', `unknown blob store kind ${JSON.stringify((config as { kind: unknown }).kind)}`);
  }
}
