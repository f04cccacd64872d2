/**
 * The local KMS's files opened as an attacker holding the sealing secret would: the
 * keystore, and every custodian shard beside it (kms/custodian-shards.ts) under the shard
 * key the keystore holds, merged into one view of every custodian key still on disk.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readSealed, type SealingSecret } from '../../kms/sealed-file.ts';

export interface OpenedKeystore {
  keystore: { custodians: Record<string, unknown>; destroyed: Record<string, unknown>; shardKey: string };
  /** Every custodian key in the shards, by subject. */
  custodians: Record<string, { keyId: string; secret: string }>;
  /** The shard files' text, decrypted (to search for a secret or a pseudonym). */
  text: string;
}

export async function openKeystoreFiles(path: string, secret: SealingSecret): Promise<OpenedKeystore> {
  const keystore = (await readSealed<OpenedKeystore['keystore']>(path, secret)) as OpenedKeystore['keystore'];
  const custodians: OpenedKeystore['custodians'] = {};
  const key = { keyFile: new Uint8Array(Buffer.from(keystore.shardKey, 'base64')) };
  let text = JSON.stringify(keystore);
  const shards = existsSync(`${path}.custodians`) ? readdirSync(`${path}.custodians`) : [];
  for (const name of shards) {
    const shard = await readSealed<OpenedKeystore['custodians']>(join(`${path}.custodians`, name), key);
    Object.assign(custodians, shard);
    text += JSON.stringify(shard);
  }
  return { keystore, custodians, text };
}
