/**
 * A node whose uploads are admitted on a worker thread (MEDVAULT_ADMIT_THREADS above 0: the
 * default on machines with more than two cores, so not on this one's other tests): the vault's
 * flow end to end through it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decrypt, splitAgeFile } from '../../crypto/age.ts';
import { parseHeader } from '../../crypto/header.ts';
import { setAdmitThreads } from '../../kms/admit-pool.ts';
import { bytes } from '../helpers.ts';
import { served, startNode, type TestMember, type TestNode, treatment } from './vault-fixture.ts';

let node: TestNode;
let hospital: TestMember;
let readers: TestMember[];

beforeAll(async () => {
  setAdmitThreads(1);
  node = await startNode({ rateLimit: 10_000 });
  hospital = await node.addMember('hospital', 'uploader');
  readers = [await node.addMember('ward', 'reader'), await node.addMember('lab', 'reader')];
});
afterAll(async () => {
  await node?.stop();
  setAdmitThreads();
});

describe('uploads admitted on a worker thread', () => {
  it('24 at once, small and streamed: each record opens for its own readers, with its own bytes', async () => {
    const jobs = Array.from({ length: 24 }, (_, i) => ({
      document: bytes(i % 4 === 0 ? 150_000 + i : 800 + i * 13, 100 + i),
      granted: i % 3 === 0 ? readers : [readers[i % 2] as TestMember],
    }));
    const records = await Promise.all(
      jobs.map((j) => hospital.client.upload(j.document, treatment(j.granted.map((r) => r.id))).then((r) => r.record)),
    );
    for (const [i, j] of jobs.entries()) {
      const record = records[i] as (typeof records)[number];
      for (const reader of j.granted) {
        const file = await served(reader, record.id);
        expect(parseHeader(splitAgeFile(file).header).stanzas).toHaveLength(j.granted.length + 2); // + the uploader, the custodian
        expect(Buffer.from(decrypt([reader.keys.identity], file))).toEqual(Buffer.from(j.document));
      }
    }
  });
});
