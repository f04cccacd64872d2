/**
 * Uploads may be admitted on worker threads (kms/admit-pool.ts; none by default on 2 cores,
 * one here): each answer must be its own request's, errors must keep their code and message, and a worker that stops must fail what
 * it owed with a typed error and be replaced.
 */
import { availableParallelism } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decrypt, encrypt, splitAgeFile } from '../../crypto/age.ts';
import { parseHeader } from '../../crypto/header.ts';
import { PayloadProbe } from '../../crypto/stream.ts';
import { X25519Identity } from '../../crypto/x25519.ts';
import { isMedvaultError } from '../../errors.ts';
import { admitThreads, admitUpload, setAdmitThreads, stopAdmitWorkers } from '../../kms/admit-pool.ts';
import { admitWith } from '../../kms/kms.ts';
import { bytes } from '../helpers.ts';

const codeOrValue = (f: () => number): number | string => {
  try {
    return f();
  } catch (err) {
    return isMedvaultError(err) ? err.code : String(err);
  }
};

const custodian = X25519Identity.generate();

function sampleOf(payload: Uint8Array) {
  const probe = new PayloadProbe();
  probe.take(payload);
  return probe.sample();
}

/** A document encrypted to the custodian alone (as the SDK uploads it): its header, payload and sample. */
function upload(document: Uint8Array) {
  const { header, payload } = splitAgeFile(encrypt([custodian.recipient], document));
  return { header, payload, sample: sampleOf(payload) };
}

describe('admission on worker threads', () => {
  beforeAll(() => setAdmitThreads(1)); // whatever this machine's cores would choose
  afterAll(() => setAdmitThreads());

  it('answers 64 concurrent admissions each with its own header: its reader opens its own document', async () => {
    const jobs = Array.from({ length: 64 }, (_, i) => {
      const document = bytes(500 + i * 37, i + 1);
      return { document, reader: X25519Identity.generate(), ...upload(document) };
    });
    const headers = await Promise.all(
      jobs.map((j) => admitUpload(custodian, j.header, [j.reader.recipient], j.sample)),
    );
    for (const [i, j] of jobs.entries()) {
      const admitted = headers[i] as Uint8Array;
      expect(parseHeader(admitted).stanzas).toHaveLength(2); // the reader's and the custodian's
      expect(Buffer.from(decrypt([j.reader], Buffer.concat([admitted, j.payload])))).toEqual(Buffer.from(j.document));
    }
  });

  it('gives back the error the same admission throws on the calling thread: code and message', async () => {
    const { header, payload, sample } = upload(bytes(3000, 9));
    const flipped = Uint8Array.from(payload);
    flipped[20] = (flipped[20] as number) ^ 1;
    const corrupt = sampleOf(flipped);
    const stranger = X25519Identity.generate();
    for (const [who, sampled] of [
      [custodian, corrupt],
      [stranger, sample],
    ] as const) {
      let here: unknown;
      try {
        admitWith(who, header, [], sampled);
      } catch (err) {
        here = err;
      }
      const there = await admitUpload(who, header, [], sampled).catch((err: unknown) => err);
      expect(isMedvaultError(there)).toBe(true);
      expect(isMedvaultError(here)).toBe(true);
      expect([(there as Error & { code: string }).code, (there as Error).message]).toEqual([
        (here as Error & { code: string }).code,
        (here as Error).message,
      ]);
    }
  });

  it('fails what a stopped worker owed INTERNAL, and admits again on a new one', async () => {
    await stopAdmitWorkers();
    // A new worker is started for these and stopped in the same turn, before it could load: it
    // owes all eight when it stops.
    const pending = Array.from({ length: 8 }, (_, i) => {
      const { header, sample } = upload(bytes(2000, 40 + i));
      return admitUpload(custodian, header, [X25519Identity.generate().recipient], sample).then(
        () => 'admitted',
        (err: unknown) => (isMedvaultError(err) ? `${err.code}: ${err.message}` : String(err)),
      );
    });
    const stopping = stopAdmitWorkers();
    const outcomes = await Promise.all(pending);
    await stopping;
    for (const outcome of outcomes) expect(outcome).toMatch(/^INTERNAL: .*key-wrapping worker stopped/);
    const reader = X25519Identity.generate();
    const document = bytes(1000, 50);
    const { header, payload, sample } = upload(document);
    const admitted = await admitUpload(custodian, header, [reader.recipient], sample);
    expect(Buffer.from(decrypt([reader], Buffer.concat([admitted, payload])))).toEqual(Buffer.from(document));
  });

  it('MEDVAULT_ADMIT_THREADS: a whole number 0-16, else INVALID_ARGUMENT; unset, the cores beyond two (at most four)', () => {
    const saved = process.env.MEDVAULT_ADMIT_THREADS;
    try {
      for (const [value, expected] of [
        ['3', 3],
        ['0', 0],
        ['', Math.max(0, Math.min(4, availableParallelism() - 2))],
        ['-1', 'INVALID_ARGUMENT'],
        ['2.5', 'INVALID_ARGUMENT'],
        ['17', 'INVALID_ARGUMENT'],
        ['four', 'INVALID_ARGUMENT'],
      ] as const) {
        process.env.MEDVAULT_ADMIT_THREADS = value;
        setAdmitThreads(); // read the setting again
        expect(
          codeOrValue(() => admitThreads()),
          value,
        ).toBe(expected);
      }
    } finally {
      if (saved === undefined) delete process.env.MEDVAULT_ADMIT_THREADS;
      else process.env.MEDVAULT_ADMIT_THREADS = saved;
      setAdmitThreads(1);
    }
  });
});
