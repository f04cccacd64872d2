/**
 * The node's logs never carry plaintext, keys, signatures or break-glass
 * reasons: a real `medvault serve` runs with debug logging while members
 * upload, fetch, fail to authenticate, break the glass and erase; then its
 * whole stderr is searched for every secret that passed through it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest } from '../../services/protocol/signing.ts';
import {
  generateMemberKeys,
  memberKeyFileText,
  memberPublic,
  parseMemberKeyFile,
  VaultClient,
} from '../../services/sdk/client.ts';
import { initNode } from '../../services/vault/node.ts';
import { CLI, stopProcess, tempDir } from '../helpers.ts';
import { DAY, SUBJECT } from './vault-fixture.ts';

const data = join(tempDir('medvault-logs-'), 'node');
let serve: ChildProcess;
let logs = '';
let url = '';

beforeAll(async () => {
  await initNode(data);
  serve = spawn(process.execPath, [CLI, 'serve', '--data', data, '--port', '0'], {
    env: { ...process.env, MEDVAULT_LOG_LEVEL: 'debug' },
  });
  serve.stderr?.on('data', (chunk: Buffer) => {
    logs += chunk.toString('utf8');
  });
  url = await new Promise<string>((resolve, reject) => {
    let out = '';
    serve.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      const found = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (found) resolve(found[1] as string);
    });
    serve.on('exit', (code) => reject(new Error(`serve exited ${code}: ${logs}`)));
  });
});
afterAll(() => stopProcess(serve));

describe('logs', () => {
  it('hold no plaintext, key, signature or reason after every kind of request', async () => {
    const adminKeys = parseMemberKeyFile(readFileSync(join(data, 'admin.key'), 'utf8'));
    const admin = new VaultClient(url, adminKeys);
    const hospitalKeys = generateMemberKeys();
    const readerKeys = generateMemberKeys();
    const dpoKeys = generateMemberKeys();
    await admin.addMember({ name: 'hospital', role: 'uploader', ...memberPublic(hospitalKeys) });
    const { member: reader } = await admin.addMember({ name: 'reader', role: 'reader', ...memberPublic(readerKeys) });
    await admin.setEmergencyAccess(reader.id, true); // the reader may break the glass below
    await admin.addMember({ name: 'dpo', role: 'dpo', ...memberPublic(dpoKeys) });
    const hospital = new VaultClient(url, hospitalKeys);
    const subjectKey = Buffer.from(await hospital.subjectKey()); // sealed to the hospital by the node
    const plaintext = 'PATIENT Jane Q. Example, born 1970-01-01, MRN 0012345: glioma, left temporal lobe';
    const { record } = await hospital.upload(Buffer.from(plaintext.repeat(100)), {
      subject: SUBJECT,
      readers: [reader.id],
      purpose: 'treatment',
      expiresAt: Date.now() + DAY,
    });
    const sink = join(data, '..', 'out.bin');
    await new VaultClient(url, readerKeys).fetch(record.id, { path: sink });
    const reason = 'Jane Q. Example collapsed in the waiting room, needs the MRI';
    await new VaultClient(url, generateMemberKeys()).members().catch(() => {}); // unknown key
    const signed = signRequest(hospitalKeys.signing, 'GET', '/v1/members', undefined);
    await fetch(`${url}/v1/members`, {
      headers: { ...signed, 'medvault-signature': signed['medvault-signature'] as string },
    });
    await fetch(`${url}/v1/members`, { headers: signed }); // a replay
    await new VaultClient(url, readerKeys).emergency(record.id, reason, { path: sink });
    await new VaultClient(url, dpoKeys).erase({ subject: SUBJECT });
    await new Promise((r) => setTimeout(r, 200)); // let the last lines reach the pipe

    expect(logs).toContain('"msg":"request completed"'); // the log is really there
    expect(logs).toContain('erasure executed');
    const secrets: Record<string, string> = {
      plaintext: 'Jane Q. Example',
      reason: 'collapsed in the waiting room',
      signature: signed['medvault-signature'] as string,
      'keystore key': readFileSync(join(data, 'keystore.key')).toString('base64'),
      'subject key (hex)': subjectKey.toString('hex'),
      'subject key (base64)': subjectKey.toString('base64'),
      // The subject's pseudonym: in the custodian URL and the upload query, and erased since.
      'subject pseudonym': SUBJECT,
    };
    for (const [name, keys] of Object.entries({ admin: adminKeys, hospital: hospitalKeys, reader: readerKeys })) {
      secrets[`${name} signing seed`] = Buffer.from(keys.signing.exportSeed()).toString('base64');
      secrets[`${name} age identity`] = String(keys.identity);
      const text = memberKeyFileText(name, keys);
      secrets[`${name} key file line`] = text.split('\n').find((l) => l.startsWith('# medvault-signing-key')) as string;
    }
    for (const [name, secret] of Object.entries(secrets)) expect(logs.includes(secret), name).toBe(false);
  });
});
