/** A node's data directory: init, reopen, the keystore secret from a file, and refusals. */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fail } from '../../errors.ts';
import { setAdmitThreads } from '../../kms/admit-pool.ts';
import {
  changeKeystorePassphrase,
  initNode,
  NODE_LOCK,
  openKeystore,
  openNode,
  readConfig,
} from '../../services/vault/node.ts';
import type { BlobStore } from '../../storage/blob-store.ts';
import { runCli, tempDir } from '../helpers.ts';

const root = tempDir('medvault-nodes-');
afterEach(() => {
  delete process.env.MEDVAULT_KEYSTORE_PASSPHRASE_FILE;
  delete process.env.MEDVAULT_KEYSTORE_PASSPHRASE;
  delete process.env.MEDVAULT_PEERS;
});

describe('a node data directory', () => {
  it('init makes config, sealed keystore, key file (0600) and the first admin; a second init is refused', async () => {
    const data = join(root, 'plain');
    const { nodeId, adminKeyFile } = await initNode(data, { name: 'hospital-a', port: 7499 });
    expect(nodeId).toMatch(/^[0-9a-f]{32}$/);
    expect(await readConfig(data)).toMatchObject({ name: 'hospital-a', listen: { host: '127.0.0.1', port: 7499 } });
    for (const secret of ['keystore.key', 'admin.key']) {
      expect(statSync(join(data, secret)).mode & 0o777, secret).toBe(0o600);
    }
    // The consortium's subject key is in the sealed keystore, not in a loose file beside it.
    expect(existsSync(join(data, 'pseudonym.key'))).toBe(false);
    expect(adminKeyFile).toBe(join(data, 'admin.key'));
    const vault = await openNode(data);
    expect(vault.nodeId).toBe(nodeId);
    await vault.close();
    await expect(initNode(data)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(openNode(join(root, 'nothing-here'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it("one node per data directory: a second open is DATA_IN_USE while the first runs; a dead holder's lock is taken over", async () => {
    const data = join(root, 'locked');
    await initNode(data);
    const first = await openNode(data);
    const second = await openNode(data).catch((e) => e);
    expect(second).toMatchObject({ code: 'DATA_IN_USE' });
    expect(String(second.message)).toContain(`process ${process.pid}`);
    expect(readFileSync(join(data, NODE_LOCK), 'utf8')).toBe(String(process.pid)); // the refusal left it alone
    await first.close();
    expect(existsSync(join(data, NODE_LOCK))).toBe(false);
    // A node killed without closing leaves its lock: a process that no longer exists holds nothing.
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    writeFileSync(join(data, NODE_LOCK), gone.stdout);
    const again = await openNode(data);
    expect(readFileSync(join(data, NODE_LOCK), 'utf8')).toBe(String(process.pid));
    await again.close();
  });

  it('the keystore passphrase changes with the node stopped; the old secret no longer opens it; custody is unchanged', async () => {
    const data = join(root, 'rekey');
    const { nodeId } = await initNode(data);
    const subject = randomBytes(32).toString('hex');
    const custodian = String((await (await openKeystore(data)).custodian(subject)).recipient);
    const before = await openNode(data);
    // While the node serves the directory: refused, and nothing changed.
    await expect(changeKeystorePassphrase(data, 'first passphrase, long enough')).rejects.toMatchObject({
      code: 'DATA_IN_USE',
    });
    expect(existsSync(join(data, 'keystore.key'))).toBe(true);
    await before.close();
    // From the key file to a passphrase: the key file goes.
    expect(await changeKeystorePassphrase(data, 'first passphrase, long enough')).toEqual({ keyFileRemoved: true });
    expect(existsSync(join(data, 'keystore.key'))).toBe(false);
    await expect(openNode(data)).rejects.toBeDefined();
    process.env.MEDVAULT_KEYSTORE_PASSPHRASE = 'first passphrase, long enough';
    // From one passphrase to the next: the old one opens nothing any more.
    expect(await changeKeystorePassphrase(data, 'second passphrase, longer')).toEqual({ keyFileRemoved: false });
    await expect(openNode(data)).rejects.toMatchObject({ code: 'KMS_LOCKED' });
    process.env.MEDVAULT_KEYSTORE_PASSPHRASE = 'second passphrase, longer';
    const after = await openNode(data);
    expect(after.nodeId).toBe(nodeId); // the node's own keys, unchanged
    await after.close();
    expect(String((await (await openKeystore(data)).custodian(subject)).recipient)).toBe(custodian); // custody too
    await expect(changeKeystorePassphrase(data, 'short')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    // The command: the new passphrase from a file, the current one as serve takes it.
    writeFileSync(join(root, 'third.txt'), 'third passphrase, longest\n');
    const cli = await runCli(
      ['keystore', 'passphrase', '--data', data, '--new-passphrase-file', join(root, 'third.txt')],
      {
        ...process.env,
        MEDVAULT_KEYSTORE_PASSPHRASE: 'second passphrase, longer',
      },
    );
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toContain('keystore sealed with the new passphrase');
    process.env.MEDVAULT_KEYSTORE_PASSPHRASE = 'third passphrase, longest';
    await (await openNode(data)).close();
  });

  it('a node whose ledger lost a block it acknowledged refuses to start, and cuts nothing', async () => {
    const data = join(root, 'lost-block');
    await initNode(data); // anchors the node (block 0) and the first admin (block 1): both acknowledged and indexed
    const ledger = join(data, 'ledger.mvl');
    const whole = readFileSync(ledger);
    truncateSync(ledger, whole.length - 20); // the tail of block 1, as a disk that lost it would
    const cut = readFileSync(ledger);
    const err = await openNode(data).catch((e) => e);
    expect(err).toMatchObject({ code: 'LEDGER_CORRUPT' });
    expect(err.message).toMatch(/acknowledged block 1/);
    expect(readFileSync(ledger).equals(cut)).toBe(true);
    // Another ledger than the node's (here an empty one) is refused the same way.
    writeFileSync(ledger, whole);
    const other = join(root, 'lost-block-other.mvl');
    writeFileSync(other, 'MVLEDG01');
    await expect(openNode(data, { ledger: `file:${other}` })).rejects.toMatchObject({ code: 'LEDGER_CORRUPT' });
    const vault = await openNode(data); // with its whole ledger back, it starts
    await vault.close();
  });

  it('init is all or nothing: a ledger it cannot reach leaves no directory, no key file, no staging', async () => {
    const data = join(root, 'never');
    const keyFile = join(root, 'never-admin.key');
    for (const ledger of [`file:${join(root, 'no-such-dir', 'ledger.mvl')}`, 'etcd://127.0.0.1:1/nowhere']) {
      await expect(initNode(data, { adminKeyFile: keyFile, overrides: { ledger } })).rejects.toMatchObject({
        code: expect.stringMatching(/^(LEDGER_UNAVAILABLE|INTERNAL)$|ENOENT/),
      });
      expect(existsSync(data), ledger).toBe(false);
      expect(existsSync(keyFile), ledger).toBe(false);
      expect(
        readdirSync(root).filter((n) => n.includes('never')),
        ledger,
      ).toEqual([]);
    }
    const made = await initNode(data, { adminKeyFile: keyFile }); // and a later init works
    expect(made.adminKeyFile).toBe(keyFile);
    expect(existsSync(join(data, 'medvault.json'))).toBe(true);
    expect(existsSync(join(data, 'admin.key'))).toBe(false);
  }, 60_000);

  it("medvault.json records the ledger and store given by the environment, and the ledger's block 0", async () => {
    const data = join(root, 'from-env');
    const elsewhere = join(root, 'from-env-ledger.mvl');
    process.env.MEDVAULT_LEDGER = `file:${elsewhere}`;
    try {
      await initNode(data);
    } finally {
      delete process.env.MEDVAULT_LEDGER;
    }
    const config = await readConfig(data);
    expect(config.ledger).toBe(`file:${elsewhere}`);
    expect(config.ledgerGenesis).toMatch(/^[0-9a-f]{64}$/);
    expect(existsSync(join(data, 'ledger.mvl'))).toBe(false); // no fresh ledger of its own
    const vault = await openNode(data); // without the variable: the recorded ledger
    expect((await vault.ledger.head())?.height).toBe(1); // node.joined, then the first admin's member.added
    await vault.close();
    // A ledger whose block 0 is another (another node's) is refused.
    const other = join(root, 'other-node');
    await initNode(other);
    await expect(openNode(data, { ledger: `file:${join(other, 'ledger.mvl')}` })).rejects.toMatchObject({
      code: 'LEDGER_MISMATCH',
    });
    // The refused start closed the ledger it opened: its lock is free again in this process.
    const again = await openNode(other);
    await again.close();
    // So does a start refused for its store, opened after the ledger.
    await expect(openNode(other, { store: { kind: 'fs', root: '/dev/null/blobs' } })).rejects.toThrow();
    const once = await openNode(other);
    await once.close();
    // And one that fails in the vault's own start-up (here: collecting unreferenced blobs).
    const unlistable = (s: BlobStore): BlobStore => ({
      kind: s.kind,
      put: (source) => s.put(source),
      get: (ref, range) => s.get(ref, range),
      stat: (ref) => s.stat(ref),
      has: (ref) => s.has(ref),
      delete: (ref) => s.delete(ref),
      close: () => s.close(),
      list: () => fail('STORE_UNAVAILABLE', 'listing refused by the test'),
    });
    await expect(openNode(other, { wrapStore: unlistable })).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    const twice = await openNode(other);
    await twice.close();
  });

  it('a malformed peer list refuses the start, naming the entry; a good one is kept', async () => {
    const data = join(root, 'peers');
    await initNode(data);
    const other = join(root, 'other');
    const { nodeId } = await initNode(other);
    const key = await (async () => {
      const vault = await openNode(other);
      const k = vault.nodeKey;
      await vault.close();
      return k;
    })();
    const good = { id: nodeId, url: 'http://127.0.0.1:7401', signingKey: key };
    const refused: Array<[string, unknown]> = [
      ['not a list', { id: nodeId }],
      ['a short id', [{ ...good, id: 'abc' }]],
      ['a url that is not http', [{ ...good, url: 'ftp://127.0.0.1/' }]],
      ['no url', [{ id: nodeId, signingKey: key }]],
      ['a key that is not that node’s', [{ ...good, signingKey: Buffer.alloc(32, 7).toString('base64') }]],
      ['a key that is not 32 bytes', [{ ...good, signingKey: 'AAAA' }]],
    ];
    for (const [name, peers] of refused) {
      await expect(openNode(data, { peers: peers as never }), name).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    process.env.MEDVAULT_PEERS = '[{"id":';
    await expect(openNode(data)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: /MEDVAULT_PEERS/ });
    process.env.MEDVAULT_PEERS = JSON.stringify([good]);
    const vault = await openNode(data); // a refused start held nothing: the ledger opens again
    expect(vault.peers.list).toEqual([good]);
    await vault.close();
  });

  it('a bad MEDVAULT_ADMIT_THREADS refuses the start (not every upload after it)', async () => {
    const data = join(root, 'admit-threads');
    await initNode(data);
    process.env.MEDVAULT_ADMIT_THREADS = 'many';
    setAdmitThreads(); // read the setting again
    try {
      await expect(openNode(data)).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: /MEDVAULT_ADMIT_THREADS/,
      });
    } finally {
      delete process.env.MEDVAULT_ADMIT_THREADS;
      setAdmitThreads();
    }
    const vault = await openNode(data); // a refused start held nothing
    await vault.close();
  });

  it('the keystore can be sealed with a passphrase from a file (a container secret): no key file is written', async () => {
    const data = join(root, 'secret');
    const secret = join(root, 'passphrase.txt');
    writeFileSync(secret, 'a long passphrase from a secret store\n');
    process.env.MEDVAULT_KEYSTORE_PASSPHRASE_FILE = secret;
    const { nodeId } = await initNode(data);
    expect(existsSync(join(data, 'keystore.key'))).toBe(false);
    const vault = await openNode(data);
    expect(vault.nodeId).toBe(nodeId);
    await vault.close();
    writeFileSync(secret, 'another passphrase\n');
    await expect(openNode(data)).rejects.toMatchObject({ code: 'KMS_LOCKED' });
  });
});
