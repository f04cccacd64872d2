/**
 * Opens a ledger from a URI:
 *   file:PATH                                  the embedded file ledger
 *   etcd://HOST:PORT[,HOST:PORT…][/PREFIX]     a ledger on an etcd cluster
 */
import { fail } from '../errors.ts';
import type { Logger } from '../log.ts';
import { EtcdLedger } from './etcd-ledger.ts';
import { FileLedger } from './file-ledger.ts';
import type { Ledger } from './ledger.ts';

export async function openLedger(uri: string, options: { logger?: Logger } = {}): Promise<Ledger> {
  if (uri.startsWith('file:')) {
    const path = uri.slice('file:'.length);
    if (path === '') fail('INVALID_ARGUMENT', 'file: ledger URI needs a path');
    return FileLedger.open(path, options);
  }
  const etcd = /^etcd:\/\/([^/]+)(\/.*)?$/.exec(uri);
  if (etcd) {
    const hosts = (etcd[1] as string).split(',').map((h) => `http://${h}`);
    const prefix = etcd[2]?.slice(1) || undefined;
    return new EtcdLedger({ hosts, ...(prefix ? { prefix } : {}) });
  }
  return fail(
    'INVALID_ARGUMENT',
    `unknown ledger URI ${JSON.stringify(uri)} (file:PATH or etcd://HOST:PORT,…[/PREFIX])`,
  );
}
