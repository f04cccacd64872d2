/**
 * `medvault upload DIR --recursive`: every file under DIR encrypted here and uploaded, several
 * at a time, each for the subject its path names (`--subject-from REGEX`, whose first group is
 * the patient id or pseudonym) or its line of a manifest (`--manifest FILE.csv`: path,subject).
 * Resumable: each file's idempotency key comes from its path, size, time, subject, readers and
 * purpose, so a run repeated after an interruption makes nothing twice (the node answers
 * "already uploaded"). A progress bar with files/s and MB/s on a terminal; a summary, with
 * every failure listed, at the end; exit status 1 when any file failed.
 */
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { check, fail } from '../../errors.ts';
import type { BulkItem, BulkResult, VaultClient } from '../sdk/client.ts';
import { subjectOf } from '../sdk/pseudonym.ts';
import { readText } from './io.ts';

export interface BulkOptions {
  subjectFrom?: string;
  manifest?: string;
  readers: string[];
  purpose: string;
  expiresAt: number;
  pseudonymKey?: string;
  concurrency: number;
  json?: boolean;
}

/** The key one file's upload is made under (the same as a single `medvault upload` of it). */
export function uploadKey(
  path: string,
  size: number,
  mtimeMs: number,
  subject: string,
  readers: string[],
  purpose: string,
) {
  return createHash('sha256')
    .update(JSON.stringify([resolve(path), size, mtimeMs, subject, [...readers].sort(), purpose]))
    .digest('hex')
    .slice(0, 32);
}

export async function bulkUpload(vault: VaultClient, dir: string, opts: BulkOptions): Promise<number> {
  check(
    !!opts.subjectFrom !== !!opts.manifest,
    'INVALID_ARGUMENT',
    'with --recursive give --subject-from REGEX or --manifest FILE',
  );
  const files = (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
  const subjectOfPath = await subjectSource(opts);
  const failures: BulkResult[] = [];
  const early: BulkResult[] = [];
  const items: BulkItem[] = [];
  for (const file of files) {
    const id = subjectOfPath(file);
    if (id === undefined) {
      early.push({ name: file, bytes: 0, error: { code: 'INVALID_ARGUMENT', message: 'no subject for this path' } });
      continue;
    }
    const path = join(dir, file);
    const info = await stat(path);
    const subject = await subjectOf(id, { keyFile: opts.pseudonymKey, client: vault });
    items.push({
      name: file,
      source: { path },
      options: {
        subject,
        readers: opts.readers,
        purpose: opts.purpose,
        expiresAt: opts.expiresAt,
        idempotencyKey: uploadKey(path, info.size, info.mtimeMs, subject, opts.readers, opts.purpose),
      },
    });
  }
  failures.push(...early);
  const bar = await filesBar(items.length, !opts.json);
  const started = Date.now();
  let bytes = 0;
  // A re-run: what the node already holds (by each file's key) is neither encrypted nor sent.
  const known = await vault.knownUploads(items.map((i) => i.options.idempotencyKey as string));
  const skipped: BulkResult[] = [];
  for (const item of items) {
    const record = known.get(item.options.idempotencyKey as string);
    if (!record) continue;
    const result = { name: item.name, recordId: record.recordId, repeated: true, bytes: record.size };
    skipped.push(result);
    bar.update(result, bytes, started);
  }
  const sent = await vault.uploadMany(
    items.filter((i) => !known.has(i.options.idempotencyKey as string)),
    {
      concurrency: opts.concurrency,
      onResult: (r) => {
        bytes += r.bytes;
        bar.update(r, bytes, started);
      },
    },
  );
  const byName = new Map([...skipped, ...sent].map((r) => [r.name, r]));
  const results = items.map((i) => byName.get(i.name) as BulkResult); // in the files' order
  bar.stop();
  failures.push(...results.filter((r) => r.error));
  const uploaded = results.filter((r) => !r.error && !r.repeated).length;
  const repeated = results.filter((r) => r.repeated).length;
  const seconds = (Date.now() - started) / 1000;
  if (opts.json) {
    process.stdout.write(
      `${JSON.stringify({ uploaded, repeated, failed: failures.length, seconds, results: [...results, ...early] }, null, 2)}\n`,
    );
  } else {
    process.stdout.write(
      `${uploaded} uploaded, ${repeated} already uploaded, ${failures.length} failed, in ${seconds.toFixed(1)} s ` +
        `(${(results.length / Math.max(seconds, 0.001)).toFixed(1)} files/s, ${(bytes / 1e6 / Math.max(seconds, 0.001)).toFixed(1)} MB/s)\n`,
    );
    for (const f of failures) process.stderr.write(`failed: ${f.name}: ${f.error?.message} [${f.error?.code}]\n`);
  }
  return failures.length > 0 ? 1 : 0;
}

/** The patient id or pseudonym of a path (relative to the directory), or undefined. */
async function subjectSource(opts: BulkOptions): Promise<(path: string) => string | undefined> {
  if (opts.subjectFrom) {
    let pattern: RegExp;
    try {
      pattern = new RegExp(opts.subjectFrom);
    } catch {
      return fail('INVALID_ARGUMENT', `--subject-from is not a regular expression: ${opts.subjectFrom}`);
    }
    return (path) => {
      const match = pattern.exec(path);
      return match ? (match[1] ?? match[0]) : undefined;
    };
  }
  const subjects = new Map<string, string>();
  for (const [i, line] of (await readText(opts.manifest as string, 'manifest')).split(/\r?\n/).entries()) {
    if (!line.trim() || (i === 0 && /^path\s*,/i.test(line))) continue;
    const comma = line.lastIndexOf(',');
    check(comma > 0, 'INVALID_ARGUMENT', `${opts.manifest} line ${i + 1}: expected path,subject`);
    subjects.set(line.slice(0, comma).trim(), line.slice(comma + 1).trim());
  }
  return (path) => subjects.get(path);
}

/** A bar of files done, with files/s and MB/s, on a terminal. */
async function filesBar(total: number, show: boolean) {
  if (!show || !process.stderr.isTTY) return { update(_r: BulkResult, _b: number, _s: number) {}, stop() {} };
  const { SingleBar } = await import('cli-progress');
  const bar = new SingleBar({
    format:
      'uploading [{bar}] {value}/{total} files | {fps} files/s | {mbps} MB/s | {failed} failed | {eta_formatted} left',
    stream: process.stderr,
  });
  let done = 0;
  let failed = 0;
  bar.start(total, 0, { fps: '0', mbps: '0', failed: 0 });
  return {
    update(r: BulkResult, bytes: number, started: number) {
      done++;
      if (r.error) failed++;
      const seconds = Math.max((Date.now() - started) / 1000, 0.001);
      bar.update(done, { fps: (done / seconds).toFixed(1), mbps: (bytes / 1e6 / seconds).toFixed(1), failed });
    },
    stop: () => bar.stop(),
  };
}
