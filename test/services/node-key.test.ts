/**
 * A node replacing its own key (`medvault node rotate-key`, services/vault/node-key.ts), on a
 * real node over HTTP: refused while the node serves; after it, blocks are signed by the new
 * key, the node is known by its new id, and receipts from either side of the hand-over verify
 * against either id, through the key history the node names: in the SDK, `medvault verify
 * --keys`, `medvault ledger verify --trust` and the Python verifier. A keystore from before
 * the rotation is refused at start; a rotation SIGKILLed before or after its anchor is
 * finished by the node's next start, anchored exactly once.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Receipt } from '../../anchor/receipt.ts';
import { VaultClient } from '../../services/sdk/client.ts';
import { openNode, rotateNodeKey } from '../../services/vault/node.ts';
import { bytes, ROOT, runCli, tempDir } from '../helpers.ts';
import { serveAgain, startNode, type TestMember, type TestNode, treatment } from './vault-fixture.ts';

const work = tempDir('medvault-node-key-');
const quiet = { ...process.env, MEDVAULT_LOG_LEVEL: 'warn' };
const medvault = (...args: string[]) => runCli(args, quiet);
const write = (name: string, value: unknown) => {
  const file = join(work, name);
  writeFileSync(file, JSON.stringify(value));
  return file;
};
/** The node.key events on the node's ledger: [previous, successor] of each. */
async function handOvers(node: TestNode): Promise<Array<[string, string]>> {
  const found: Array<[string, string]> = [];
  for await (const block of node.vault.ledger.blocks(0)) {
    for (const e of block.events) if (e.type === 'node.key') found.push([e.node as string, e.successor as string]);
  }
  return found;
}

describe('a node replacing its own key', () => {
  let node: TestNode;
  let hospital: TestMember;
  let reader: TestMember;
  let before: { recordId: string; receipt: Receipt };

  beforeAll(async () => {
    node = await startNode();
    hospital = await node.addMember('hospital', 'uploader');
    reader = await node.addMember('clinic', 'reader');
    const { record, receipt } = await hospital.client.upload(bytes(20_000, 3), treatment([reader.id]));
    before = { recordId: record.id, receipt };
  });
  afterAll(() => node?.stop());

  it('signs with the new key after it; receipts of both keys verify against either id', async () => {
    const old = node.vault.nodeId;
    await expect(rotateNodeKey(node.data)).rejects.toMatchObject({ code: 'DATA_IN_USE' });
    await node.stop();
    const rotated = await medvault('node', 'rotate-key', '--data', node.data);
    expect(rotated.code, rotated.stderr).toBe(0);
    node = await serveAgain(node);
    const id = node.vault.nodeId;
    expect(id).not.toBe(old);
    expect(rotated.stdout).toContain(`node key ${old} handed over to ${id}`);
    expect(await handOvers(node)).toEqual([[old, id]]);

    const clientOf = (m: TestMember, trusted?: string[]) =>
      new VaultClient(node.url, m.keys, trusted ? { trusted } : {});
    const { record, receipt: after } = await clientOf(hospital).upload(bytes(30_000, 4), treatment([reader.id]));
    expect([before.receipt.block.signer, after.block.signer]).toEqual([old, id]);
    const info = await clientOf(hospital).node();
    expect(info.id).toBe(id);
    expect(info.keyHistory).toHaveLength(1);
    // The SDK trusts the node's id today and follows the history back; one pinned to the old id, forward.
    for (const trusted of [undefined, [old], [id]]) {
      const client = clientOf(hospital, trusted);
      await expect(client.verify(before.receipt)).resolves.toBeDefined();
      await expect(client.verify(after)).resolves.toBeDefined();
    }
    // Fetches check every receipt of the record: the one anchored before and the one after.
    for (const recordId of [before.recordId, record.id]) {
      await clientOf(reader).fetch(recordId, { path: join(work, `${recordId}.out`) });
    }

    // Offline: a verifier pinned to the old id needs the history for the new key's receipt.
    const receiptFile = write('after.json', after);
    const nodeFile = write('node.json', info);
    const pinned = await medvault('verify', receiptFile, '--trust', old);
    expect(pinned.code).not.toBe(0);
    expect(pinned.stderr).toMatch(/not a trusted member key/);
    const followed = await medvault('verify', receiptFile, '--trust', old, '--keys', nodeFile);
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stdout).toContain(`signed by ${id}`);
    const ledger = `file:${join(node.data, 'ledger.mvl')}`;
    const walk = await medvault('ledger', 'verify', '--ledger', ledger, '--trust', old);
    expect(walk.code, walk.stderr).toBe(0);
    const python = (...args: string[]) =>
      spawnSync('python3', [join(ROOT, 'verifier', 'medvault_verify.py'), 'receipt', receiptFile, ...args], {
        encoding: 'utf8',
        timeout: 30_000,
      }).status;
    expect(python('--trust', old)).toBe(1);
    expect(python('--trust', old, '--keys', nodeFile)).toBe(0);
  }, 60_000);

  it('refuses to start with a keystore from before a rotation: the old key signs nothing', async () => {
    const keystore = join(node.data, 'keystore.sealed');
    const saved = readFileSync(keystore);
    await node.stop();
    const rotated = await rotateNodeKey(node.data);
    const current = readFileSync(keystore);
    writeFileSync(keystore, saved); // as a restore of an older backup would
    await expect(openNode(node.data)).rejects.toMatchObject({
      code: 'NODE_KEY_RETIRED',
      message: expect.stringContaining(`handed over to ${rotated.node}`),
    });
    writeFileSync(keystore, current);
    node = await serveAgain(node);
    expect(node.vault.nodeId).toBe(rotated.node);
  }, 60_000);

  for (const point of ['node-key.prepared', 'node-key.anchored'] as const) {
    it(`finishes a rotation killed at ${point} at the next start, anchored once`, async () => {
      const old = node.vault.nodeId;
      const known = (await handOvers(node)).length;
      await node.stop();
      const killed = await runCli(['node', 'rotate-key', '--data', node.data], {
        ...quiet,
        MEDVAULT_TEST_CRASH_AT: point,
      });
      expect(killed.code).toBeNull(); // SIGKILLed
      node = await serveAgain(node);
      const all = await handOvers(node);
      expect(all).toHaveLength(known + 1);
      expect(all.at(-1)).toEqual([old, node.vault.nodeId]);
      const client = new VaultClient(node.url, hospital.keys); // the node's new port
      const { receipt } = await client.upload(bytes(5_000, 5), treatment([reader.id]));
      await expect(client.verify(receipt)).resolves.toBeDefined();
      expect(receipt.block.signer).toBe(node.vault.nodeId);
    }, 60_000);
  }
});
