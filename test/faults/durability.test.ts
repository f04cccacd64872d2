/**
 * Nothing is acknowledged before it is on the disk. The file ledger's append,
 * the fs store's put and the sealed keystore's rewrite run in a child process
 * under strace (Debian's), which records every write, sync and rename with
 * the file it touched; each acknowledgement is a write to stdout. For each:
 * the data's last write is followed by a sync of that very file before the
 * acknowledgement, and a file renamed into place has its directory synced
 * after the rename and before the acknowledgement, and a directory made for it
 * has its own entry synced into its parent. Removing any of those
 * syncs fails this test (checked by doing it).
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, tempDir } from '../helpers.ts';
import { type Call, isSync, isWrite, readCalls, straceFlags } from './strace.ts';

/** What strace saw the fixture do. */
function traced(dir: string): Call[] {
  const log = join(dir, 'strace.log');
  const run = spawnSync(
    'strace',
    [...straceFlags(log), process.execPath, join(ROOT, 'test/faults/fixtures/durability.ts'), dir],
    { encoding: 'utf8', timeout: 60_000 },
  );
  if (run.status !== 0) throw new Error(`strace run failed (${run.status}): ${run.stderr}`);
  return readCalls(log);
}

describe('durability: synced before acknowledged', () => {
  const dir = tempDir('medvault-durability-');
  const calls = traced(dir);
  const ackAt = (what: string) => {
    const i = calls.findIndex((c) => isWrite(c) && c.text.includes(`"ACK ${what}`));
    expect(i, `the acknowledgement of ${what}`).toBeGreaterThan(0);
    return i;
  };
  /** Asserts that the last write to a file matching `file` before `ack` is followed by its sync before `ack`. */
  const syncedBefore = (file: RegExp, ack: number) => {
    const writes = calls
      .slice(0, ack)
      .map((c, i) => ({ c, i }))
      .filter(({ c }) => isWrite(c) && file.test(c.path));
    expect(writes.length, `writes to ${file}`).toBeGreaterThan(0);
    const last = (writes.at(-1) as { i: number }).i;
    const sync = calls.slice(last + 1, ack).find((c) => isSync(c) && file.test(c.path));
    expect(sync, `a sync of ${file} after its last write and before the acknowledgement`).toBeDefined();
  };
  /** Asserts a rename to `target` before `ack`, then a sync of its directory before `ack`. */
  const renamedAndDirSynced = (target: RegExp, dirOf: (line: string) => string, ack: number) => {
    const rename = calls.slice(0, ack).findIndex((c) => c.call.startsWith('rename') && target.test(c.text));
    expect(rename, `a rename to ${target}`).toBeGreaterThanOrEqual(0);
    const directory = dirOf(calls[rename]?.text as string);
    const sync = calls.slice(rename + 1, ack).find((c) => isSync(c) && c.path === directory);
    expect(sync, `a sync of ${directory} after the rename and before the acknowledgement`).toBeDefined();
  };

  it('the file ledger: the appended record is synced before the append resolves', () => {
    syncedBefore(/ledger\.mvl$/, ackAt('ledger'));
  });

  it('the fs store: the blob is synced, renamed into place and its directory synced before the put resolves', () => {
    const ack = ackAt('blob');
    const ref = /"ACK blob ([0-9a-f]{64})/.exec(calls[ack]?.text as string)?.[1] as string;
    syncedBefore(/\/blobs\/tmp\/[0-9a-f]+$/, ack);
    renamedAndDirSynced(
      new RegExp(`${ref}"`),
      () => join(dir, 'blobs', 'blobs', ref.slice(0, 2), ref.slice(2, 4)),
      ack,
    );
  });

  it('the fs store: a put of bytes already held syncs their directory before it resolves', () => {
    // The put that placed them may not have synced their directory yet: the repeat is
    // acknowledged on the same durability.
    const first = ackAt('blob ');
    const held = ackAt('blob held');
    const ref = /"ACK blob ([0-9a-f]{64})/.exec(calls[first]?.text as string)?.[1] as string;
    const directory = join(dir, 'blobs', 'blobs', ref.slice(0, 2), ref.slice(2, 4));
    const sync = calls.slice(first + 1, held).find((c) => isSync(c) && c.path === directory);
    expect(sync, `a sync of ${directory} between the two acknowledgements`).toBeDefined();
  });

  it('the fs store: each shard directory a put creates has its entry synced into its parent before the put resolves', () => {
    const ack = ackAt('blob');
    const made = calls
      .slice(0, ack)
      .map((c, i) => ({ c, i }))
      .filter(({ c }) => /^mkdir(at)?$/.test(c.call) && / = 0$/.test(c.text) && c.text.includes('/blobs/blobs/'));
    // A fresh store: the blob's two shard levels (blobs/aa, blobs/aa/bb) are made by this put.
    expect(made.length).toBe(2);
    for (const { c, i } of made) {
      const created = /"([^"]+)"/.exec(c.text)?.[1] as string;
      const sync = calls.slice(i + 1, ack).find((s) => isSync(s) && s.path === dirname(created));
      expect(
        sync,
        `a sync of ${dirname(created)} after ${created} was made and before the acknowledgement`,
      ).toBeDefined();
    }
  });

  it('the keystore: the sealed file is synced, renamed over the old one and its directory synced before the change resolves', () => {
    const ack = ackAt('keystore');
    syncedBefore(/keystore\.sealed\.[0-9a-f]+\.tmp$/, ack);
    renamedAndDirSynced(/keystore\.sealed"/, () => dir, ack);
  });
});
