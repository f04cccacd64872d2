/**
 * Backups that do not undo erasure (services/vault/backup.ts), on the suite's real 3-member
 * etcd ledger: a backup holds no secret in the clear; an erasure after it is re-applied when
 * the backup is restored, before the restored node serves (no second tombstone); once its
 * backup key's retention ends, the backup cannot be opened; a file-ledger node is not restored
 * onto the backup's own (shorter) ledger unless told to.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLedger } from '../../anchor/open.ts';
import { buildServer } from '../../services/http/server.ts';
import { VaultClient } from '../../services/sdk/client.ts';
import { openKeystore, openNode } from '../../services/vault/node.ts';
import type { Vault } from '../../services/vault/vault.ts';
import { bytes, filesUnder, runCli, tempDir } from '../helpers.ts';
import { EtcdCluster } from '../servers/etcd.ts';
import { startNode, type TestMember, type TestNode, treatment } from './vault-fixture.ts';

const S = '5'.repeat(64); // the subject erased after the backup
const T = '6'.repeat(64); // a subject that stays
let cluster: EtcdCluster;
let node: TestNode;
let hospital: TestMember;
let dpo: TestMember;
let restored: Vault | undefined;
const dir = tempDir('medvault-backup-');

beforeAll(async () => {
  cluster = await EtcdCluster.start(3);
  node = await startNode({ overrides: { ledger: `${cluster.uri}/backups` } });
  hospital = await node.addMember('hospital', 'uploader');
  dpo = await node.addMember('dpo', 'dpo');
}, 120_000);
afterAll(async () => {
  await restored?.close();
  await node?.stop();
  await cluster?.stop();
});

/** A record's header as the node keeps it (the custodian's and readers' wrapped file keys). */
function storedHeader(data: string, id: string): Buffer {
  const db = new DatabaseSync(join(data, 'metadata.db'), { readOnly: true });
  try {
    return Buffer.from(
      (db.prepare('SELECT header FROM records WHERE id = ?').get(id) as { header: Uint8Array }).header,
    );
  } finally {
    db.close();
  }
}

describe('backups', () => {
  let backup: string;
  let keyId: string;
  let expiresAt: number;
  let erased: string;
  let kept: string;
  const plainT = bytes(30_000, 2);

  it('hold no secret in the clear: keystore, key, headers and pseudonyms are sealed to a backup key', async () => {
    erased = (await hospital.client.upload(bytes(20_000, 1), { ...treatment([]), subject: S })).record.id;
    kept = (await hospital.client.upload(plainT, { ...treatment([]), subject: T })).record.id;
    const { path, manifest } = await node.admin.client.backup();
    backup = path;
    keyId = manifest.backupKey.id;
    expiresAt = manifest.backupKey.expiresAt;
    expect(expiresAt - manifest.takenAt).toBe(30 * 86_400_000); // the default retention
    const secrets = [
      readFileSync(join(node.data, 'keystore.key')),
      readFileSync(join(node.data, 'keystore.sealed')),
      Buffer.from(S),
      Buffer.from(T),
      storedHeader(node.data, erased),
    ];
    for (const file of filesUnder(backup)) {
      const content = readFileSync(file);
      for (const secret of secrets) expect(content.includes(secret), file).toBe(false);
    }
    expect(existsSync(join(backup, 'files', 'medvault.json'))).toBe(true);
    const listed = await runCli(['backup', 'keys', '--data', node.data]);
    expect(listed.stdout).toContain(keyId);
    expect((await node.admin.client.backupKeys()).keys.map((k) => k.id)).toEqual([keyId]);
    // Only an admin takes backups.
    await expect(dpo.client.backup()).rejects.toMatchObject({ code: 'FORBIDDEN' });
  });

  it('an erasure after the backup is re-applied when it is restored, before the node serves', async () => {
    const certificate = await dpo.client.erase({ subject: S });
    expect(certificate.backupsUntil).toBe(expiresAt); // "complete for backups after …"
    const keyFile = join(dir, 'backup.key');
    expect((await runCli(['backup', 'keys', '--data', node.data, '--export', keyId, '-o', keyFile])).code).toBe(0);
    await node.stop();

    const data = join(dir, 'restored');
    const restore = await runCli(['restore', '--from', backup, '--data', data, '--backup-key', keyFile]);
    expect(restore.code, restore.stderr).toBe(0);
    // What the backup brings back: the subject's custodian key, destroyed since.
    expect(await (await openKeystore(data)).holds(S)).not.toEqual([]);

    restored = await openNode(data);
    expect(await (await openKeystore(data)).holds(S)).toEqual([]);
    expect(existsSync(join(data, 'restored.json'))).toBe(false);
    const app = await buildServer(restored);
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const address = app.server.address();
      const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
      const client = new VaultClient(url, hospital.keys);
      await expect(client.record(erased)).rejects.toMatchObject({ code: 'RECORD_ERASED' });
      const out = join(dir, 'kept.bin');
      await client.fetch(kept, { path: out });
      expect(readFileSync(out).equals(Buffer.from(plainT))).toBe(true);
    } finally {
      await app.close();
    }
    // The tombstone anchored before was indexed, not anchored again.
    const ledger = await openLedger(`${cluster.uri}/backups`);
    let tombstones = 0;
    for await (const block of ledger.blocks(0)) {
      tombstones += block.events.filter((e) => e.type === 'record.erased' && e.recordId === erased).length;
    }
    await ledger.close();
    expect(tombstones).toBe(1);
  });

  it('once its key is past retention the backup cannot be opened', async () => {
    const vault = restored as Vault;
    expect(await vault.backups?.expire(expiresAt - 1)).toEqual([]);
    expect(await vault.backups?.expire(expiresAt)).toEqual([keyId]);
    const again = await runCli([
      'restore',
      '--from',
      backup,
      '--data',
      join(dir, 'again'),
      '--keys-from',
      join(dir, 'restored'),
    ]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('BACKUP_KEY_GONE');
    expect(existsSync(join(dir, 'again'))).toBe(false);
  });

  it('a tampered backup is refused, and a file-ledger node is not restored onto its stale ledger unasked', async () => {
    const single = await startNode();
    try {
      const { path, manifest } = await single.admin.client.backup();
      const keyFile = join(dir, 'single.key');
      await runCli(['backup', 'keys', '--data', single.data, '--export', manifest.backupKey.id, '-o', keyFile]);
      const stale = await runCli(['restore', '--from', path, '--data', join(dir, 'single'), '--backup-key', keyFile]);
      expect(stale.stderr).toContain('--ledger FILE');
      expect(existsSync(join(dir, 'single'))).toBe(false);
      const current = join(single.data, 'ledger.mvl');
      const ok = await runCli([
        'restore',
        '--from',
        path,
        '--data',
        join(dir, 'single'),
        '--backup-key',
        keyFile,
        '--ledger',
        current,
      ]);
      expect(ok.code, ok.stderr).toBe(0);
      writeFileSync(join(path, 'files', 'medvault.json'), '{"tampered":true}');
      const bad = await runCli([
        'restore',
        '--from',
        path,
        '--data',
        join(dir, 'single2'),
        '--backup-key',
        keyFile,
        '--ledger',
        current,
      ]);
      expect(bad.stderr).toContain('BACKUP_INVALID');
    } finally {
      await single.stop();
    }
  });
});
