/**
 * The vault's CLI as an operator and members use it, against a real
 * `medvault serve`: init, members, upload (a patient id pseudonymised on the
 * client), fetch, grant, revoke, break-glass, audit, a scheduled erasure
 * cancelled, an erasure with its certificate verified by `medvault verify`,
 * the sweep, and typed one-line errors. Every command runs as its own
 * process (asynchronously: the server is a child of this test too).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, CLI, stopProcess, tempDir } from '../helpers.ts';

const run = promisify(execFile);
const dir = tempDir('medvault-cli-vault-');
const data = join(dir, 'node');
let serve: ChildProcess;
let env: NodeJS.ProcessEnv;

/** Runs `medvault ARGS`; resolves with exit code, stdout and stderr (never rejects). */
async function medvault(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env, maxBuffer: 1 << 26 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(async () => {
  env = { ...process.env, MEDVAULT_LOG_LEVEL: 'warn' };
  const init = await medvault('init', '--data', data, '--port', '0');
  expect(init.code).toBe(0);
  serve = spawn(process.execPath, [CLI, 'serve', '--data', data], { env });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    serve.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const found = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (found) resolve(found[1] as string);
    });
    serve.on('exit', (code) => reject(new Error(`serve exited ${code}`)));
  });
  env = { ...env, MEDVAULT_NODE: url }; // patient ids are pseudonymised with the subject key the node seals
  const admin = join(data, 'admin.key');
  for (const [name, role] of [
    ['hospital', 'uploader'],
    ['clinic', 'uploader'],
    ['insurer', 'reader'],
    ['dpo', 'dpo'],
  ]) {
    const added = await medvault(
      'member',
      'add',
      name as string,
      '--role',
      role as string,
      '-o',
      join(dir, `${name}.key`),
      '--key',
      admin,
    );
    expect(added.stdout).toMatch(new RegExp(`^added ${name} as ${role}: member id [0-9a-f]{32}`));
  }
}, 60_000);
afterAll(() => stopProcess(serve));

const key = (name: string) => join(dir, `${name}.key`);

describe('medvault CLI against a node', () => {
  let record: string;
  const document = Buffer.from(bytes(2 * 1024 * 1024 + 3, 7));

  it('member list; upload with a patient id; fetch decrypts and checks the hash', async () => {
    const list = await medvault('member', 'list', '--key', key('hospital'));
    expect(list.stdout.split('\n').filter(Boolean)).toHaveLength(5);
    writeFileSync(join(dir, 'mri.dcm'), document);
    const up = await medvault(
      'upload',
      join(dir, 'mri.dcm'),
      '--subject',
      'MRN-0012345',
      '--reader',
      'insurer',
      '--purpose',
      'claims.review',
      '--expires',
      '7d',
      '--key',
      key('hospital'),
      '--json',
    );
    expect(up.code).toBe(0);
    const result = JSON.parse(up.stdout) as { record: { id: string; subject: string } };
    record = result.record.id;
    expect(result.record.subject).toMatch(/^[0-9a-f]{64}$/); // the MRN never left this machine
    expect(up.stdout).not.toContain('MRN-0012345');
    const fetched = await medvault('fetch', record, '-i', key('insurer'), '-o', join(dir, 'out.dcm'));
    expect(fetched.stdout).toMatch(/^fetched [0-9a-f]{32}: 2097155 bytes .* matches its receipt/);
    expect(Buffer.compare(readFileSync(join(dir, 'out.dcm')), document)).toBe(0);
    // An existing file is not replaced without --force; without -o the document goes to stdout.
    writeFileSync(join(dir, 'out.dcm'), 'keep me');
    const refused = await medvault('fetch', record, '-i', key('insurer'), '-o', join(dir, 'out.dcm'));
    expect(refused.stderr).toMatch(/exists: give --force .*\[IO_ERROR\]/);
    expect(readFileSync(join(dir, 'out.dcm'), 'utf8')).toBe('keep me');
    await medvault('fetch', record, '-i', key('insurer'), '-o', join(dir, 'out.dcm'), '--force');
    expect(Buffer.compare(readFileSync(join(dir, 'out.dcm')), document)).toBe(0);
    const piped = await run(process.execPath, [CLI, 'fetch', record, '-i', key('insurer')], {
      env,
      encoding: 'buffer',
      maxBuffer: 1 << 26,
    });
    expect(Buffer.compare(piped.stdout, document)).toBe(0);
    expect(piped.stderr.toString()).toMatch(/^fetched [0-9a-f]{32}: 2097155 bytes to stdout/);
  });

  it('--version, keygen -y, and role refusals in plain English', async () => {
    const { version } = JSON.parse(readFileSync(join(CLI, '../../../package.json'), 'utf8')) as { version: string };
    expect((await medvault('--version')).stdout.trim()).toBe(version);
    const publicKey = /# public key: (age1\w+)/.exec(readFileSync(key('insurer'), 'utf8'))?.[1];
    expect((await medvault('keygen', '-y', key('insurer'))).stdout.trim()).toBe(publicKey);
    expect((await medvault('erase', '--record', record, '--key', key('hospital'))).stderr).toMatch(
      /an uploader may not erase \[FORBIDDEN\]/,
    );
  });

  it('grant, revoke, break-glass, audit, and one-line typed errors', async () => {
    const granted = await medvault(
      'grant',
      record,
      '--reader',
      'clinic',
      '--purpose',
      'treatment',
      '--expires',
      '1d',
      '--key',
      key('hospital'),
    );
    expect(granted.stdout).toMatch(/^granted clinic read access/);
    const revoked = await medvault('revoke', record, '--reader', 'insurer', '--key', key('hospital'));
    expect(revoked.stdout).toMatch(/^revoked insurer/);
    const refused = await medvault('fetch', record, '-i', key('insurer'), '-o', join(dir, 'no.dcm'));
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/\[NO_GRANT\]/);
    const breakGlass = (who: string) =>
      medvault(
        'emergency',
        record,
        '--reason',
        'unconscious in the ER, prior MRI needed',
        '-i',
        key(who),
        '-o',
        join(dir, `er-${who}.dcm`),
      );
    // Break-glass needs the capability: the insurer never has it; the clinic gets it from the admin.
    const insurerTried = await breakGlass('insurer');
    expect(insurerTried.code).toBe(1);
    expect(insurerTried.stderr).toMatch(/has not been given break-glass access by an admin \[FORBIDDEN\]/);
    const given = await medvault('member', 'emergency-access', 'clinic', '--key', join(data, 'admin.key'));
    expect(given.stdout).toMatch(/^clinic may now use break-glass \(block \d+, leaf \d+\)/);
    const emergency = await breakGlass('clinic');
    expect(emergency.stdout).toMatch(/^EMERGENCY ACCESS to [0-9a-f]{32}: 2097155 bytes/);
    const reviews = await medvault('reviews', '--key', key('dpo'), '--json');
    const queued = JSON.parse(reviews.stdout) as Array<{ id: string; reason: string }>;
    expect(queued.map((r) => r.reason)).toContain('unconscious in the ER, prior MRI needed');
    const closed = await medvault(
      'reviews',
      '--close',
      queued[0]?.id as string,
      '--outcome',
      'justified',
      '--key',
      key('dpo'),
    );
    expect(closed.stdout).toMatch(/^review [0-9a-f]{32} closed: justified \(block \d+, leaf \d+\)/);
    const audit = await medvault('audit', record, '--key', key('hospital'));
    expect(audit.stdout).toMatch(/events for [0-9a-f]{32}, all receipts verified/);
    for (const type of [
      'record.created',
      'acl.granted',
      'record.accessed',
      'acl.revoked',
      'access.emergency',
      'review.closed',
    ]) {
      expect(audit.stdout).toContain(type);
    }
    const forbidden = await medvault('erase', '--record', record, '--key', key('hospital'));
    expect(forbidden.stderr).toMatch(/\[FORBIDDEN\]/);
  });

  it('a scheduled erasure is cancelled; an erasure runs, its certificate verifies, the sweep finds nothing', async () => {
    const scheduled = await medvault(
      'erase',
      '--subject',
      'MRN-0012345',
      '--delay',
      '3d',
      '--key',
      key('dpo'),
      '--json',
    );
    const { requestId } = JSON.parse(scheduled.stdout) as { requestId: string };
    expect((await medvault('erasure', 'cancel', requestId, '--key', key('dpo'))).stdout).toMatch(/cancelled/);
    const list = await medvault('erasure', 'list', '--key', key('dpo'));
    expect(list.stdout).toMatch(new RegExp(`${requestId}\\s+cancelled`));
    const cert = join(dir, 'cert.json');
    const erased = await medvault('erase', '--subject', 'MRN-0012345', '-o', cert, '--key', key('dpo'));
    expect(erased.stdout).toMatch(/^erasure [0-9a-f]{32} executed: 1 record\(s\)/);
    const nodeKey = JSON.parse(readFileSync(cert, 'utf8')).signer as string;
    const verified = await medvault('verify', cert, '--trust', nodeKey);
    expect(verified.stdout).toMatch(/^certificate OK: .* custodian key [0-9a-f]{32} destroyed \(local\)/);
    const id = JSON.parse(readFileSync(cert, 'utf8')).requestId as string;
    const shown = join(dir, 'shown.json');
    expect((await medvault('erasure', 'show', id, '-o', shown, '--key', key('dpo'))).code).toBe(0);
    expect(JSON.parse(readFileSync(shown, 'utf8')).sig).toBe(JSON.parse(readFileSync(cert, 'utf8')).sig);
    const sweep = await medvault('erasure', 'sweep', id, '--key', key('dpo'));
    expect(sweep.code).toBe(0);
    expect(sweep.stdout).toContain('nothing found: no trace of the erased records');
    const gone = await medvault('fetch', record, '-i', key('clinic'), '-o', join(dir, 'gone.dcm'));
    expect(gone.stderr).toMatch(/\[RECORD_ERASED\]/);
    const checkpointFile = join(dir, 'checkpoint.json');
    const made = await medvault('checkpoint', '-o', checkpointFile, '--key', key('dpo'));
    expect(made.stdout).toMatch(
      /^checkpoint of block \d+ \([0-9a-f]{16}…\), signed by 1 node\(s\): [0-9a-f]{32}; saved to /,
    );
    const checked = await medvault('verify', checkpointFile, '--trust', nodeKey);
    expect(checked.stdout).toMatch(new RegExp(`^checkpoint OK: block \\d+ .*, signed by ${nodeKey}`));
    expect((await medvault('checkpoint', '--key', key('hospital'))).stderr).toMatch(/\[FORBIDDEN\]/);
  });

  it('member add -o writes the key file before registering: an existing file registers nobody, a refusal leaves no file', async () => {
    const admin = join(data, 'admin.key');
    const taken = join(dir, 'taken.key');
    writeFileSync(taken, 'someone else');
    const refused = await medvault('member', 'add', 'lost-key', '--role', 'reader', '-o', taken, '--key', admin);
    expect(refused.code).toBe(1);
    expect(readFileSync(taken, 'utf8')).toBe('someone else');
    const list = await medvault('member', 'list', '--key', admin, '--json');
    expect((JSON.parse(list.stdout) as Array<{ name: string }>).map((m) => m.name)).not.toContain('lost-key');
    const fresh = join(dir, 'dup.key');
    const dup = await medvault('member', 'add', 'insurer', '--role', 'reader', '-o', fresh, '--key', admin);
    expect(dup.stderr).toMatch(/\[MEMBER_EXISTS\]/);
    expect(existsSync(fresh)).toBe(false);
  });

  it("member add --member-of registers another node's reader by its public keys", async () => {
    const { generateMemberKeys, memberPublic } = await import('../../services/sdk/client.ts');
    const theirs = memberPublic(generateMemberKeys());
    const node = 'e'.repeat(32);
    const common = ['--signing-key', theirs.signingKey, '--recipient', theirs.recipient, '--member-of', node];
    const added = await medvault(
      'member',
      'add',
      'reader-of-e',
      '--role',
      'reader',
      ...common,
      '--key',
      join(data, 'admin.key'),
      '--json',
    );
    expect(added.code).toBe(0);
    expect(JSON.parse(added.stdout).member).toMatchObject({ name: 'reader-of-e', role: 'reader', node });
    const uploader = await medvault(
      'member',
      'add',
      'uploader-of-e',
      '--role',
      'uploader',
      ...common,
      '--key',
      join(data, 'admin.key'),
    );
    expect(uploader.code).toBe(1);
    expect(uploader.stderr).toMatch(/added as a 'reader'/);
    expect(uploader.stderr).toMatch(/\[REQUEST_INVALID\]/);
  });
});
