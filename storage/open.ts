/**
 * Opens a blob store from a configuration object, so tests, tools and (later)
 * the vault's configuration name stores the same way.
 */
import { fail } from '../errors.ts';
import type { BlobStore } from './blob-store.ts';
import { FsBlobStore } from './fs-store.ts';
import { IpfsBlobStore, type IpfsStoreOptions } from './ipfs-store.ts';
import { ReplicatedBlobStore } from './replicated-store.ts';
import { S3BlobStore, type S3StoreOptions } from './s3-store.ts';

export type StoreConfig =
  | { kind: 'fs'; root: string }
  | ({ kind: 's3' } & S3StoreOptions)
  | ({ kind: 'ipfs' } & IpfsStoreOptions)
  | { kind: 'replicated'; replicas: Array<{ name: string; config: StoreConfig }>; minCopies?: number };

export async function openBlobStore(config: StoreConfig): Promise<BlobStore> {
  switch (config.kind) {
    case 'fs':
      return FsBlobStore.open(config.root);
    case 's3':
      return new S3BlobStore(config);
    case 'ipfs':
      return new IpfsBlobStore(config);
    case 'replicated': {
      const replicas = [];
      for (const r of config.replicas) replicas.push({ name: r.name, store: await openBlobStore(r.config) });
      return new ReplicatedBlobStore(replicas, config.minCopies === undefined ? {} : { minCopies: config.minCopies });
    }
    default:
      return fail('INVALID_ARGUMENT', `unknown blob store kind ${JSON.stringify((config as { kind: unknown }).kind)}`);
  }
}
