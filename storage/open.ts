/**
 * Opens a blob store from a configuration object, so tests, tools and (later)
 * the vault's configuration name stores the same way.
 */
import { fail } from '../errors.ts';
import type { BlobStore } from './blob-store.ts';
import { FsBlobStore } from './fs-store.ts';

export type StoreConfig = { kind: 'fs'; root: string };

export async function openBlobStore(config: StoreConfig): Promise<BlobStore> {
  switch (config.kind) {
    case 'fs':
      return FsBlobStore.open(config.root);
    default:
      return fail('INVALID_ARGUMENT', `unknown blob store kind ${JSON.stringify((config as { kind: unknown }).kind)}`);
  }
}
