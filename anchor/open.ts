/**
 * Opens a ledger from a URI:
 *   file:PATH                                  the embedded file ledger
 *   etcd://HOST:PORT[,HOST:PORT…][/PREFIX]     a ledger on an etcd cluster
 *   etcds://[USER@]HOST:PORT[,…][/PREFIX]      the same over TLS: the CA in MEDVAULT_ETCD_CA,
 *                                              a client certificate and key (a cluster with
 *                                              --client-cert-auth) in MEDVAULT_ETCD_CERT and
 *                                              MEDVAULT_ETCD_KEY (PEM files); USER's password
 *                                              (a cluster with auth enabled) in MEDVAULT_ETCD_PASSWORD
 *   evm://HOST:PORT/0xCONTRACT                 the Anchor contract on an EVM chain
 *                                              (JSON-RPC over HTTP); appends need
 *                                              MEDVAULT_EVM_PRIVATE_KEY, reads do not
 */
import { readFile } from 'node:fs/promises';
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
  const etcd = /^etcd(s?):\/\/(?:([^/@:]+)@)?([^/@]+)(\/.*)?$/.exec(uri);
  if (etcd) {
    const secure = etcd[1] === 's';
    const hosts = (etcd[3] as string).split(',').map((h) => `${secure ? 'https' : 'http'}://${h}`);
    const prefix = etcd[4]?.slice(1) || undefined;
    const username = etcd[2];
    const password = process.env.MEDVAULT_ETCD_PASSWORD;
    if (username && !password) fail('INVALID_ARGUMENT', `${username}'s etcd password goes in MEDVAULT_ETCD_PASSWORD`);
    return new EtcdLedger({
      hosts,
      ...(prefix ? { prefix } : {}),
      ...(secure ? { tls: await etcdTls() } : {}),
      ...(username ? { auth: { username, password: password as string } } : {}),
    });
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
    `unknown ledger URI ${JSON.stringify(uri)} (file:PATH, etcd[s]://HOST:PORT,…[/PREFIX] or evm://HOST:PORT/0xCONTRACT)`,
  );
}

/** The TLS files of an etcds:// ledger, from the environment (module comment). */
async function etcdTls(): Promise<{ ca: Buffer; cert?: Buffer; key?: Buffer }> {
  const read = async (variable: string) => {
    const path = process.env[variable];
    if (!path) return undefined;
    try {
      return await readFile(path);
    } catch (err) {
      return fail('INVALID_ARGUMENT', `${variable}: cannot read ${path}: ${(err as Error).message}`);
    }
  };
  const ca = await read('MEDVAULT_ETCD_CA');
  if (!ca) fail('INVALID_ARGUMENT', "an etcds:// ledger needs the CA of the members' certificates in MEDVAULT_ETCD_CA");
  const cert = await read('MEDVAULT_ETCD_CERT');
  const key = await read('MEDVAULT_ETCD_KEY');
  if (!cert !== !key) fail('INVALID_ARGUMENT', 'give MEDVAULT_ETCD_CERT and MEDVAULT_ETCD_KEY together');
  return { ca, ...(cert && key ? { cert, key } : {}) };
}
