/**
 * The etcd ledger over TLS against a real etcd started with
 * --cert-file/--key-file/--trusted-ca-file/--client-cert-auth and
 * authentication enabled: an etcds:// URI with the CA, a client certificate
 * and a user's password appends and reads; a client certificate from another
 * CA, none at all, a wrong password or plain HTTP is refused, and a node
 * made on it keeps no password in its files.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildBlock } from '../../anchor/block.ts';
import type { Ledger } from '../../anchor/ledger.ts';
import { openLedger } from '../../anchor/open.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { initNode, openNode } from '../../services/vault/node.ts';
import { filesUnder, tempDir } from '../helpers.ts';
import { makeCa, type TestCa } from '../servers/certs.ts';
import { EtcdCluster } from '../servers/etcd.ts';
import { sampleEvent } from './fixtures.ts';

const PASSWORD = 'correct horse battery staple';
let ca: TestCa;
let cluster: EtcdCluster;
let client: { cert: string; key: string };
const env = { ...process.env };
const signer = SigningKey.generate();

beforeAll(async () => {
  ca = makeCa();
  client = ca.issue('medvault-node');
  cluster = await EtcdCluster.start(1, [], { ca: ca.cert, server: ca.issue('etcd'), client: ca.issue('etcd-admin') });
  const admin = cluster.client();
  try {
    await admin.role('root').create();
    await admin.user('root').create(PASSWORD);
    await admin.user('root').addRole('root');
    await admin.auth.authEnable();
  } finally {
    admin.close();
  }
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
});
afterEach(() => {
  process.env = { ...env };
});

const useTls = (files: Partial<{ ca: string; cert: string; key: string; password: string }>) => {
  for (const [name, value] of Object.entries({
    MEDVAULT_ETCD_CA: files.ca,
    MEDVAULT_ETCD_CERT: files.cert,
    MEDVAULT_ETCD_KEY: files.key,
    MEDVAULT_ETCD_PASSWORD: files.password,
  })) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
};
const uri = (prefix: string, user = 'root@') => `${cluster.uri.replace('etcds://', `etcds://${user}`)}/${prefix}`;

async function appendOne(ledger: Ledger): Promise<void> {
  const { block } = buildBlock((await ledger.head()) ?? null, [sampleEvent()], signer);
  await ledger.append([block]);
}

describe('the etcd ledger over TLS, with client certificates and a password', () => {
  it('appends and reads with the CA, a client certificate of that CA and the password', async () => {
    useTls({ ca: ca.cert, ...client, password: PASSWORD });
    const ledger = await openLedger(uri('tls-ok'));
    try {
      await appendOne(ledger);
      await appendOne(ledger);
      expect((await ledger.head())?.height).toBe(1);
      expect((await ledger.get(0))?.events).toHaveLength(1);
    } finally {
      await ledger.close();
    }
  });

  it.each([
    [
      'a client certificate of another CA',
      () => ({ ca: ca.cert, ...makeCa('rogue-ca').issue('rogue'), password: PASSWORD }),
    ],
    ['no client certificate', () => ({ ca: ca.cert, password: PASSWORD })],
    ['a CA that did not sign the members', () => ({ ca: makeCa('other').cert, ...client, password: PASSWORD })],
  ])(
    'refuses %s',
    async (_name, files) => {
      useTls(files());
      const ledger = await openLedger(uri('tls-refused'));
      try {
        const err = await ledger.head().catch((e) => e);
        expect(err).toMatchObject({ code: expect.stringMatching(/^LEDGER_(UNAVAILABLE|UNAUTHORIZED)$/) });
      } finally {
        await ledger.close();
      }
    },
    20_000,
  );

  it('refuses a wrong password at once: LEDGER_UNAUTHORIZED, not a retry until the deadline', async () => {
    useTls({ ca: ca.cert, ...client, password: 'guess' });
    const ledger = await openLedger(uri('tls-refused'));
    try {
      const started = Date.now();
      await expect(ledger.head()).rejects.toMatchObject({ code: 'LEDGER_UNAUTHORIZED' });
      const { block } = buildBlock(null, [sampleEvent()], signer);
      await expect(ledger.append([block])).rejects.toMatchObject({ code: 'LEDGER_UNAUTHORIZED' });
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      await ledger.close();
    }
  });

  it('is refused over plain HTTP, and without the CA or the password the URI names none', async () => {
    useTls({ ca: ca.cert, ...client, password: PASSWORD });
    const plain = await openLedger(uri('tls-plain').replace('etcds://', 'etcd://'));
    try {
      expect(await plain.head().catch((e) => e.code)).toMatch(/^LEDGER_(UNAVAILABLE|UNAUTHORIZED)$/);
    } finally {
      await plain.close();
    }
    useTls({ ...client, password: PASSWORD });
    await expect(openLedger(uri('x'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: /MEDVAULT_ETCD_CA/ });
    useTls({ ca: ca.cert, ...client });
    await expect(openLedger(uri('x'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: /PASSWORD/ });
    useTls({ ca: ca.cert, cert: client.cert, password: PASSWORD });
    await expect(openLedger(uri('x'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  }, 20_000);

  it('a node made on it records the URI, never the password, and serves from it', async () => {
    useTls({ ca: ca.cert, ...client, password: PASSWORD });
    const data = tempDir('medvault-tls-node-');
    process.env.MEDVAULT_LEDGER = uri('tls-node');
    await initNode(data);
    delete process.env.MEDVAULT_LEDGER;
    expect(JSON.parse(readFileSync(join(data, 'medvault.json'), 'utf8')).ledger).toBe(uri('tls-node'));
    for (const file of filesUnder(data)) expect(readFileSync(file).includes(PASSWORD), file).toBe(false);
    const vault = await openNode(data);
    try {
      expect((await vault.ledger.head())?.height).toBe(1);
    } finally {
      await vault.close();
    }
  });
});
