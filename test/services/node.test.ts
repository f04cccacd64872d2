/** A node's data directory: init, reopen, the keystore secret from a file, and refusals. */
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { initNode, openNode, readConfig } from '../../services/node.ts';
import { tempDir } from '../helpers.ts';

const root = tempDir('medvault-nodes-');
afterEach(() => {
  delete process.env.MEDVAULT_KEYSTORE_PASSPHRASE_FILE;
});

describe('a node data directory', () => {
  it('init makes config, sealed keystore, key file (0600) and the first admin; a second init is refused', async () => {
    const data = join(root, 'plain');
    const { nodeId, adminKeyFile } = await initNode(data, { name: 'hospital-a', port: 7499 });
    expect(nodeId).toMatch(/^[0-9a-f]{32}$/);
    expect(await readConfig(data)).toMatchObject({ name: 'hospital-a', listen: { host: '127.0.0.1', port: 7499 } });
    for (const secret of ['keystore.key', 'pseudonym.key', 'admin.key']) {
      expect(statSync(join(data, secret)).mode & 0o777, secret).toBe(0o600);
    }
    expect(adminKeyFile).toBe(join(data, 'admin.key'));
    const vault = await openNode(data);
    expect(vault.nodeId).toBe(nodeId);
    await vault.close();
    await expect(initNode(data)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(openNode(join(root, 'nothing-here'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
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
