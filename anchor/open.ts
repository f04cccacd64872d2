/**
 * Opens a ledger from a URI:
 *   file:PATH                                  the embedded file ledger
 *   etcd://HOST:PORT[,HOST:PORT…][/PREFIX]     a ledger on an etcd cluster
 *   evm://HOST:PORT/0xCONTRACT                 the Anchor contract on an EVM chain
 *                                              (JSON-RPC over HTTP); appends need
 *                                              MEDVAULT_EVM_PRIVATE_KEY, reads do not
 */
import { fail } from '../errors.ts';
import type { Logger } from '../log.ts';
import { EtcdLedger } from './etcd-ledger.ts';
import { FileLedger } from './file-ledger.ts';
import type { Ledger } from './ledger.ts';

export interface OpenLedgerOptions {
  logger?: Logger;
  /** To read only: a file ledger takes no lock and cuts nothing (verification, `--ledger` checks). */
  readOnly?: boolean;
  /** The highest height this node acknowledged: a file ledger that lost it is refused (see FileLedger). */
  acknowledged?: number;
}

export async function openLedger(uri: string, options: OpenLedgerOptions = {}): Promise<Ledger> {
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
  const evm = /^evm:\/\/([^/]+)\/(0x[0-9a-fA-F]{40})$/.exec(uri);
  if (evm) {
    const { JsonRpcProvider, Wallet } = await import('ethers');
    const { EvmLedger } = await import('./evm-ledger.ts');
    const provider = new JsonRpcProvider(`http://${evm[1]}`, undefined, { staticNetwork: true });
    const key = process.env.MEDVAULT_EVM_PRIVATE_KEY;
    return new EvmLedger(evm[2] as string, key ? new Wallet(key, provider) : provider);
  }
  return fail(
    'INVALID_ARGUMENT',
    `unknown ledger URI ${JSON.stringify(uri)} (file:PATH, etcd://HOST:PORT,…[/PREFIX] or evm://HOST:PORT/0xCONTRACT)`,
  );
}
