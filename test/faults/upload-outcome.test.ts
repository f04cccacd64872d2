/**
 * Exactly-once upload outcomes. An upload whose anchoring outcome is unknown
 * (the ledger did not answer; it may still commit) is never rolled back as if
 * it had failed: it stays pending, the client gets OUTCOME_PENDING with the
 * record id, and the node settles it by reading the ledger: anchored, it is
 * completed; not anchored once the ledger has moved past the height it was
 * tried at, it is rolled back (row and blob). An idempotency key makes a
 * retry return the first upload's record instead of a duplicate.
 *
 * The faults are injected between the node and its real file ledger: an
 * append that commits and then reports an unknown outcome (a leader that
 * commits after its client gave up), and one that reports an unknown outcome
 * and never commits. The same on a real etcd cluster losing its quorum is in
 * etcd-quorum.test.ts.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Block } from '../../anchor/block.ts';
import type { Ledger } from '../../anchor/ledger.ts';
import { decrypt, encrypt } from '../../crypto/age.ts';
import { X25519Recipient } from '../../crypto/x25519.ts';
import { fail } from '../../errors.ts';
import { generateMemberKeys } from '../../services/protocol/member-keys.ts';
import type { MemberRow } from '../../services/protocol/views.ts';
import { VaultClient } from '../../services/sdk/client.ts';
import type { BlobStore } from '../../storage/blob-store.ts';
import { bytes, codeOf, filesUnder, tempDir } from '../helpers.ts';
import {
  DAY,
  SUBJECT,
  served,
  startNode,
  type TestMember,
  type TestNode,
  treatment,
} from '../services/vault-fixture.ts';

type Fault = 'commit-then-unknown' | 'unknown-never-commits' | 'unavailable' | null;

/** A ledger that passes everything through, but fails its next append as `fault` says. */
class FaultyLedger implements Ledger {
  readonly kind: Ledger['kind'];
  /** The faults of the next appends, in order. */
  faults: Fault[] = [];
  /** Appends started (a test waits on it to know one is in flight). */
  started = 0;
  /** How long a faulty append takes to fail. */
  delayMs = 0;
  readonly #inner: Ledger;
  constructor(inner: Ledger) {
    this.#inner = inner;
    this.kind = inner.kind;
  }
  head() {
    return this.#inner.head();
  }
  get(height: number) {
    return this.#inner.get(height);
  }
  blocks(from?: number) {
    return this.#inner.blocks(from);
  }
  set next(fault: Fault) {
    this.faults = fault ? [fault] : [];
  }
  async append(blocks: readonly Block[]): Promise<void> {
    const fault = this.faults.shift() ?? null;
    this.started++;
    if (fault === 'unavailable') fail('LEDGER_UNAVAILABLE', 'injected: the append certainly failed');
    if (fault === 'commit-then-unknown') await this.#inner.append(blocks);
    if (fault) {
      await new Promise((r) => setTimeout(r, this.delayMs));
      const first = (blocks[0] as Block).header;
      fail('LEDGER_OUTCOME_UNKNOWN', 'injected', {
        info: { from: first.height, to: (blocks.at(-1) as Block).header.height, prev: first.prev },
      });
    }
    return this.#inner.append(blocks);
  }
  close() {
    return this.#inner.close();
  }
}

const out = tempDir();
let node: TestNode;
let ledger: FaultyLedger;
let hospital: TestMember;
let reader: TestMember;

const upload = (seed: number, idempotencyKey?: string) =>
  hospital.client.upload(bytes(20_000, seed), {
    subject: SUBJECT,
    readers: [reader.id],
    purpose: 'treatment',
    expiresAt: Date.now() + DAY,
    ...(idempotencyKey ? { idempotencyKey } : {}),
  });

/** Every record.created on the ledger, by record id. */
async function createdOnLedger(): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  for await (const block of ledger.blocks(0)) {
    for (const e of block.events) {
      if (e.type === 'record.created') found.set(e.recordId as string, (found.get(e.recordId as string) ?? 0) + 1);
    }
  }
  return found;
}

const blobs = () => filesUnder(join(node.data, 'blobs')).length;

/** The next put to finish tells `stored` and answers only once `go` resolves (null: none held). */
let heldPut: { stored: () => void; go: Promise<void> } | null = null;

/** Holds the next put back once stored: `reached` resolves then, and it answers once `go()` is called. */
function holdNextPut(): { reached: Promise<void>; go: () => void } {
  let stored = () => {};
  const reached = new Promise<void>((resolve) => {
    stored = resolve;
  });
  let go = () => {};
  heldPut = { stored, go: new Promise<void>((resolve) => (go = resolve)) };
  return { reached, go };
}

/** The node's store with its next put held back after storing, as heldPut says. */
const holdingPuts = (inner: BlobStore): BlobStore =>
  new Proxy(inner, {
    get(target, key) {
      if (key === 'put') {
        return async (source: AsyncIterable<Uint8Array>) => {
          const result = await target.put(source);
          const held = heldPut;
          heldPut = null;
          if (held) {
            held.stored();
            await held.go;
          }
          return result;
        };
      }
      const value = Reflect.get(target, key);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });

beforeAll(async () => {
  node = await startNode({
    overrides: {
      wrapLedger: (inner) => {
        ledger = new FaultyLedger(inner);
        return ledger;
      },
      wrapStore: holdingPuts,
    },
  });
  hospital = await node.addMember('hospital', 'uploader');
  reader = await node.addMember('reader', 'reader');
});
afterAll(() => node?.stop());

describe('an upload whose anchoring outcome is unknown', () => {
  it('that the ledger committed after all: pending, then completed; a retry with its key returns it', async () => {
    ledger.next = 'commit-then-unknown';
    const err = await upload(1, 'retry-key-0001').catch((e) => e);
    expect(err).toMatchObject({ code: 'OUTCOME_PENDING', info: { status: 503 } });
    const recordId = err.info.recordId as string;
    expect(recordId).toMatch(/^[0-9a-f]{32}$/);
    // Anchored, not yet known to the node: not served, not deleted.
    expect((await createdOnLedger()).get(recordId)).toBe(1);
    await expect(hospital.client.record(recordId)).rejects.toMatchObject({ code: 'RECORD_NOT_FOUND' });
    expect(await node.vault.settlePending()).toBe(0);
    expect((await hospital.client.record(recordId)).id).toBe(recordId);
    const fetched = await reader.client.fetch(recordId, { path: join(out, 'one') });
    expect(fetched.bytes).toBe(20_000);
    // The client retries after its error: the same record, no second one.
    const before = blobs();
    const again = await upload(1, 'retry-key-0001');
    expect(again).toMatchObject({ repeated: true, record: { id: recordId } });
    expect(blobs()).toBe(before);
    expect((await createdOnLedger()).get(recordId)).toBe(1);
  });

  it('that never committed: pending until the ledger moves past its height, then rolled back, row and blob', async () => {
    const blobsBefore = blobs();
    ledger.next = 'unknown-never-commits';
    const err = await upload(2, 'retry-key-0002').catch((e) => e);
    expect(err).toMatchObject({ code: 'OUTCOME_PENDING' });
    const recordId = err.info.recordId as string;
    expect(blobs()).toBe(blobsBefore + 1); // kept while the outcome is open
    expect(await node.vault.settlePending()).toBe(1); // the ledger has not moved: still open
    expect(blobs()).toBe(blobsBefore + 1);
    await upload(3); // the ledger moves past the height the lost append tried
    expect(await node.vault.settlePending()).toBe(0);
    expect((await createdOnLedger()).has(recordId)).toBe(false);
    expect(blobs()).toBe(blobsBefore + 1); // upload 3's blob; the lost one's is gone
    await expect(hospital.client.record(recordId)).rejects.toMatchObject({ code: 'RECORD_NOT_FOUND' });
    // A retry with the same key is a new upload now (the first left nothing).
    const retried = await upload(2, 'retry-key-0002');
    expect(retried.repeated).toBeUndefined();
    expect(retried.record.id).not.toBe(recordId);
  });

  it('one built on another lost append is rolled back once another block takes that height', async () => {
    // Two runs in flight: A's append at height h, B's on top of A's block at h + 1. Both are
    // lost. The next block lands at h, so the ledger never reaches h + 1 until another upload
    // comes; B's append (a compare-and-swap on A's block) can never land, and B is settled
    // now rather than left open on a quiet node.
    ledger.faults = ['unknown-never-commits', 'unknown-never-commits'];
    ledger.delayMs = 500;
    const startedBefore = ledger.started;
    const a = upload(7).catch((e) => e);
    for (let i = 0; i < 200 && ledger.started === startedBefore; i++) await new Promise((r) => setTimeout(r, 10));
    const b = upload(8).catch((e) => e);
    const [errA, errB] = await Promise.all([a, b]);
    expect([errA.code, errB.code]).toEqual(['OUTCOME_PENDING', 'OUTCOME_PENDING']);
    expect(ledger.started).toBe(startedBefore + 2); // two appends, B's pipelined on A's block
    ledger.delayMs = 0;
    const head = (await ledger.head())?.height as number;
    await upload(9); // lands at h, the height A tried
    expect((await ledger.head())?.height).toBe(head + 1);
    expect(await node.vault.settlePending()).toBe(0);
    for (const err of [errA, errB]) {
      await expect(hospital.client.record(err.info.recordId)).rejects.toMatchObject({ code: 'RECORD_NOT_FOUND' });
    }
  });

  it('a retry of a pending upload answers OUTCOME_PENDING for the same record, and makes nothing', async () => {
    ledger.next = 'unknown-never-commits';
    const first = await upload(4, 'retry-key-0004').catch((e) => e);
    const blobsBefore = blobs();
    const second = await upload(4, 'retry-key-0004').catch((e) => e);
    expect(second).toMatchObject({ code: 'OUTCOME_PENDING', info: { recordId: first.info.recordId } });
    expect(blobs()).toBe(blobsBefore);
    await upload(5); // settle it
    await node.vault.settlePending();
  });

  it('an upload repeated with its key after success returns the first record: one row, one blob, one anchor', async () => {
    const first = await upload(6, 'retry-key-0006');
    const blobsBefore = blobs();
    const second = await upload(6, 'retry-key-0006');
    expect(second).toMatchObject({ repeated: true, record: { id: first.record.id } });
    expect(second.receipt).toEqual(first.receipt);
    expect(blobs()).toBe(blobsBefore);
    expect((await createdOnLedger()).get(first.record.id)).toBe(1);
    // Another member's same key is its own.
    const other = await node.addMember('hospital-2', 'uploader');
    const theirs = await other.client.upload(bytes(100, 6), { ...treatment([]), idempotencyKey: 'retry-key-0006' });
    expect(theirs.record.id).not.toBe(first.record.id);
  });
});

describe('a grant or revocation whose anchoring outcome is unknown', () => {
  /** The acl events on the ledger for `recordId` and `reader`, in order. */
  async function aclOnLedger(recordId: string, readerId: string): Promise<string[]> {
    const found: string[] = [];
    for await (const block of ledger.blocks(0)) {
      for (const e of block.events) {
        if (e.recordId === recordId && e.reader === readerId && e.type.startsWith('acl.')) found.push(e.type);
      }
    }
    return found;
  }
  const fetches = (member: TestMember, recordId: string) =>
    member.client.fetch(recordId, { path: join(out, `f-${Math.random()}`) }).then(
      () => 'served',
      (e) => e.code as string,
    );

  it('a grant the ledger committed after all: pending, then in effect; one acl.granted', async () => {
    const { record } = await upload(20);
    const late = await node.addMember('late-reader', 'reader');
    ledger.next = 'commit-then-unknown';
    const err = await hospital.client
      .grant(record.id, late.id, { purpose: 'treatment', expiresAt: Date.now() + DAY })
      .catch((e) => e);
    expect(err).toMatchObject({ code: 'OUTCOME_PENDING', info: { recordId: record.id } });
    expect(await fetches(late, record.id)).toBe('NO_GRANT'); // not in effect until the ledger says so
    expect(await node.vault.settlePending()).toBe(0);
    expect(await fetches(late, record.id)).toBe('served');
    expect(await aclOnLedger(record.id, late.id)).toEqual(['acl.granted']);
  });

  it('a grant that never committed: dropped once the ledger moves past its height, nothing in effect', async () => {
    const { record } = await upload(21);
    const never = await node.addMember('never-reader', 'reader');
    ledger.next = 'unknown-never-commits';
    const err = await hospital.client
      .grant(record.id, never.id, { purpose: 'treatment', expiresAt: Date.now() + DAY })
      .catch((e) => e);
    expect(err).toMatchObject({ code: 'OUTCOME_PENDING' });
    expect(await node.vault.settlePending()).toBe(1); // the ledger has not moved: still open
    await upload(22); // the ledger moves past the height the lost append tried
    expect(await node.vault.settlePending()).toBe(0);
    expect(await fetches(never, record.id)).toBe('NO_GRANT');
    expect(await aclOnLedger(record.id, never.id)).toEqual([]);
  });

  it('a revocation takes effect at once; one the ledger never committed is anchored again, exactly once', async () => {
    const { record } = await upload(23);
    expect(await fetches(reader, record.id)).toBe('served');
    ledger.next = 'unknown-never-commits';
    const err = await hospital.client.revoke(record.id, reader.id).catch((e) => e);
    expect(err).toMatchObject({ code: 'OUTCOME_PENDING', info: { recordId: record.id } });
    expect(await fetches(reader, record.id)).toBe('NO_GRANT'); // fail closed while unsure
    await upload(24);
    expect(await node.vault.settlePending()).toBe(0);
    expect(await aclOnLedger(record.id, reader.id)).toEqual(['acl.granted', 'acl.revoked']);
    expect(await fetches(reader, record.id)).toBe('NO_GRANT');
  });

  it('a revocation the ledger committed after all is not anchored twice', async () => {
    const { record } = await upload(25);
    ledger.next = 'commit-then-unknown';
    const err = await hospital.client.revoke(record.id, reader.id).catch((e) => e);
    expect(err).toMatchObject({ code: 'OUTCOME_PENDING' });
    expect(await fetches(reader, record.id)).toBe('NO_GRANT');
    await upload(26);
    expect(await node.vault.settlePending()).toBe(0);
    expect(await aclOnLedger(record.id, reader.id)).toEqual(['acl.granted', 'acl.revoked']);
  });
});

describe('two uploads of the same bytes at once', () => {
  it('one that fails and removes the blob never leaves the other acknowledged without it', async () => {
    // The same age file twice (a client sending it again): one blob, content-addressed.
    const { recipient } = await hospital.client.custodian(SUBJECT);
    const readerRecipient = (node.vault.member(reader.id) as MemberRow).recipient;
    const file = encrypt([X25519Recipient.parse(recipient), X25519Recipient.parse(readerRecipient)], bytes(6_000, 95));
    const actor = node.vault.member(hospital.id) as MemberRow;
    const terms = treatment([reader.id]);
    const send = () => node.vault.upload(actor, terms, Readable.from([file]));
    const [blobsBefore, createdBefore] = [blobs(), (await createdOnLedger()).size];
    const pendingBefore = node.vault.operatorState().pendingUploads;
    const { reached, go } = holdNextPut();
    const second = send().catch((e) => e);
    await reached; // its blob is in the store; no row of it yet
    ledger.next = 'unavailable';
    await expect(send()).rejects.toMatchObject({ code: 'LEDGER_UNAVAILABLE' }); // drops the blob: no row uses it
    go();
    // The second finds its blob gone before anything is anchored: refused, nothing kept.
    expect(await second).toMatchObject({ code: 'UPLOAD_CONFLICT' });
    expect(blobs()).toBe(blobsBefore);
    expect((await createdOnLedger()).size).toBe(createdBefore);
    expect(node.vault.operatorState().pendingUploads).toBe(pendingBefore); // no row left to settle
    // Sent again, it is kept, anchored and opens.
    const { record } = await send();
    expect((await reader.client.fetch(record.id, { path: join(out, 'conflict-again') })).bytes).toBe(6_000);
  });
});

describe('an upload to a reader that rotates its keys meanwhile', () => {
  it('is rewrapped to the new key once it is active: the old identity opens nothing', async () => {
    const member = await node.addMember('rotating-mid-upload', 'reader');
    const { reached, go } = holdNextPut();
    const uploading = hospital.client.upload(bytes(3_000, 97), treatment([member.id]));
    await reached; // its header is wrapped to the reader's old recipient; the record is not active yet
    const old = member.keys;
    const rotated = await member.client.rotateKeys(generateMemberKeys());
    expect(rotated.rewrapped).toBe(0); // nothing of it to rewrap yet
    go();
    const { record } = await uploading;
    const file = await served(member, record.id);
    expect(Buffer.from(decrypt([rotated.keys.identity], file)).equals(bytes(3_000, 97))).toBe(true);
    expect(codeOf(() => decrypt([old.identity], file))).toBe('AGE_NO_IDENTITY');
  });

  it('one whose outcome was unknown is rewrapped when the settler completes it', async () => {
    const member = await node.addMember('rotating-while-pending', 'reader');
    ledger.next = 'commit-then-unknown';
    const err = await hospital.client.upload(bytes(3_000, 98), treatment([member.id])).catch((e) => e);
    expect(err).toMatchObject({ code: 'OUTCOME_PENDING' });
    const recordId = err.info.recordId as string;
    const old = member.keys;
    const rotated = await member.client.rotateKeys(generateMemberKeys());
    expect(rotated.rewrapped).toBe(0); // pending: not granted here yet
    expect(await node.vault.settlePending()).toBe(0);
    const file = await served(member, recordId);
    expect(Buffer.from(decrypt([rotated.keys.identity], file)).equals(bytes(3_000, 98))).toBe(true);
    expect(codeOf(() => decrypt([old.identity], file))).toBe('AGE_NO_IDENTITY');
  });
});

describe('a key rotation whose anchoring outcome is unknown', () => {
  /** The key.rotated events on the ledger for `memberId`, their new key ids in order. */
  async function rotationsOnLedger(memberId: string): Promise<string[]> {
    const found: string[] = [];
    for await (const block of ledger.blocks(0)) {
      for (const e of block.events)
        if (e.type === 'key.rotated' && e.member === memberId) found.push(e.newKey as string);
    }
    return found;
  }

  for (const fault of ['commit-then-unknown', 'unknown-never-commits'] as const) {
    it(`(${fault}) takes effect at once, records open with the new key, and is anchored exactly once`, async () => {
      const member = await node.addMember(`rotating-${fault}`, 'reader');
      const { record } = await hospital.client.upload(bytes(3_000, 40), treatment([member.id]));
      const old = new VaultClient(node.url, member.keys);
      const next = generateMemberKeys();
      ledger.next = fault;
      const err = await member.client.rotateKeys(next).catch((e) => e);
      expect(err).toMatchObject({ code: 'OUTCOME_PENDING', info: { memberId: member.id } });
      // Fail closed: the previous key is refused while unsure; the new one reads the member's records.
      await expect(old.members()).rejects.toMatchObject({ code: 'AUTH_INVALID' });
      expect(member.client.memberId).toBe(member.id);
      expect((await member.client.fetch(record.id, { path: join(out, `rot-${fault}`) })).bytes).toBe(3_000);
      await upload(41); // the ledger moves past the height the append tried
      expect(await node.vault.settlePending()).toBe(0);
      expect(await rotationsOnLedger(member.id)).toEqual([next.signing.id]);
      await expect(old.members()).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    });
  }
});

describe('an access whose anchoring outcome is unknown', () => {
  const accessed = async (recordId: string) => {
    let onLedger = 0;
    for await (const block of ledger.blocks(0)) {
      onLedger += block.events.filter((e) => e.type === 'record.accessed' && e.recordId === recordId).length;
    }
    const inTrail = (await hospital.client.audit(recordId)).filter((r) => r.event.type === 'record.accessed').length;
    return { onLedger, inTrail };
  };

  it('is not served; one the ledger committed after all joins the record’s trail once', async () => {
    const { record } = await upload(30);
    ledger.next = 'commit-then-unknown';
    const path = join(out, 'access-committed');
    const err = await reader.client.fetch(record.id, { path }).catch((e) => e);
    expect(err).toMatchObject({ code: 'OUTCOME_PENDING', info: { recordId: record.id } });
    expect(existsSync(path)).toBe(false);
    expect(await accessed(record.id)).toEqual({ onLedger: 1, inTrail: 0 });
    expect(await node.vault.settlePending()).toBe(0);
    expect(await accessed(record.id)).toEqual({ onLedger: 1, inTrail: 1 });
  });

  it('one that never committed leaves nothing once the ledger moves past its height', async () => {
    const { record } = await upload(31);
    ledger.next = 'unknown-never-commits';
    const err = await reader.client.fetch(record.id, { path: join(out, 'access-lost') }).catch((e) => e);
    expect(err).toMatchObject({ code: 'OUTCOME_PENDING' });
    expect(await node.vault.settlePending()).toBe(1); // the ledger has not moved
    await upload(32);
    expect(await node.vault.settlePending()).toBe(0);
    expect(await accessed(record.id)).toEqual({ onLedger: 0, inTrail: 0 });
  });
});

describe('a break-glass access whose anchoring outcome is unknown', () => {
  it('is not served; the DPO gets its review at once, and its trail the access if the ledger holds it', async () => {
    const { record } = await upload(33);
    const clinic = await node.addMember('clinic', 'reader');
    const dpo = await node.addMember('dpo', 'dpo');
    await node.admin.client.setEmergencyAccess(clinic.id, true);
    const trail = async () =>
      (await hospital.client.audit(record.id)).filter((r) => r.event.type === 'access.emergency').length;
    for (const [fault, landed] of [
      ['commit-then-unknown', 1],
      ['unknown-never-commits', 0],
    ] as const) {
      ledger.next = fault;
      const path = join(out, `glass-${fault}`);
      const err = await clinic.client.emergency(record.id, `patient unconscious (${fault})`, { path }).catch((e) => e);
      expect(err).toMatchObject({ code: 'OUTCOME_PENDING', info: { recordId: record.id } });
      expect(existsSync(path)).toBe(false);
      const review = (await dpo.client.reviews()).find((r) => r.reason === `patient unconscious (${fault})`);
      expect(review?.recordId).toBe(record.id);
      await upload(34 + landed); // the ledger moves on
      expect(await node.vault.settlePending()).toBe(0);
      // After the first, the access that landed is in the trail; the lost second adds nothing.
      expect(await trail()).toBe(1);
    }
  });
});

describe('an erasure whose anchoring outcome is unknown', () => {
  let dpo: TestMember;
  beforeAll(async () => {
    dpo = await node.addMember('erasure-dpo', 'dpo');
  });
  /** How many events of `type` for request or record `id` the ledger holds. */
  async function onLedger(type: string, id: string): Promise<number> {
    let n = 0;
    for await (const block of ledger.blocks(0)) {
      n += block.events.filter((e) => e.type === type && (e.requestId === id || e.recordId === id)).length;
    }
    return n;
  }
  const stateOf = async (requestId: string) => (await dpo.client.erasures()).find((e) => e.id === requestId)?.state;

  for (const [fault, seed] of [
    ['commit-then-unknown', 40],
    ['unknown-never-commits', 42],
  ] as const) {
    it(`a filing (${fault}) is kept as 'filing', filed exactly once, and then runs`, async () => {
      const { record } = await upload(seed);
      ledger.next = fault;
      const err = await dpo.client.erase({ recordId: record.id }).catch((e) => e);
      expect(err).toMatchObject({ code: 'OUTCOME_PENDING' });
      const requestId = err.info.requestId as string;
      expect(await stateOf(requestId)).toBe('filing');
      expect(await node.vault.erasures.runDue()).toEqual([]); // not filed yet: nothing runs
      await upload(seed + 1); // the ledger moves past the height the append tried
      expect(await node.vault.settlePending()).toBe(0);
      expect(await onLedger('erasure.filed', requestId)).toBe(1); // found, or filed again: once
      const [certificate] = await node.vault.erasures.runDue();
      expect(certificate?.requestId).toBe(requestId);
      expect(await stateOf(requestId)).toBe('done');
      expect(await onLedger('record.erased', record.id)).toBe(1);
      expect(await reader.client.fetch(record.id, { path: join(out, `erased-${seed}`) }).catch((e) => e.code)).toBe(
        'RECORD_ERASED',
      );
    });

    it(`a tombstone (${fault}) holds its erasure until settled, and is anchored exactly once`, async () => {
      const { record } = await upload(seed + 10);
      ledger.faults = [null, fault]; // the filing lands; the tombstone's outcome is unknown
      const err = await dpo.client.erase({ recordId: record.id }).catch((e) => e);
      expect(err).toMatchObject({ code: 'OUTCOME_PENDING', info: { recordId: record.id } });
      const requestId = (await dpo.client.erasures()).find((e) => e.target === record.id)?.id as string;
      expect(await stateOf(requestId)).toBe('executing');
      expect(await reader.client.fetch(record.id, { path: join(out, `t-${seed}`) }).catch((e) => e.code)).toBe(
        'RECORD_ERASED',
      );
      expect(await node.vault.erasures.runDue()).toEqual([]); // not tried again while unsure
      await upload(seed + 11);
      expect(await node.vault.settlePending()).toBe(0);
      const [certificate] = await node.vault.erasures.runDue();
      expect(certificate?.records.map((r) => r.recordId)).toEqual([record.id]);
      expect(await onLedger('record.erased', record.id)).toBe(1);
      expect(await stateOf(requestId)).toBe('done');
    });

    it(`a cancellation (${fault}) takes effect at once and is anchored exactly once`, async () => {
      const { record } = await upload(seed + 20);
      const { requestId } = await dpo.client.scheduleErasure({ recordId: record.id }, 3600);
      ledger.next = fault;
      const err = await dpo.client.cancelErasure(requestId).catch((e) => e);
      expect(err).toMatchObject({ code: 'OUTCOME_PENDING', info: { requestId } });
      expect(await stateOf(requestId)).toBe('cancelled'); // fail closed: nothing is erased while unsure
      await upload(seed + 21);
      expect(await node.vault.settlePending()).toBe(0);
      expect(await onLedger('erasure.cancelled', requestId)).toBe(1);
      expect(await stateOf(requestId)).toBe('cancelled');
      expect(await reader.client.fetch(record.id, { path: join(out, `c-${seed}`) }).then(() => 'served')).toBe(
        'served',
      );
    });
  }

  it('one that cannot finish (its tombstone refused) holds back no other erasure, and finishes later', async () => {
    const { record: stuck } = await upload(60);
    ledger.faults = [null, 'unavailable']; // filed; its tombstone certainly refused
    expect((await dpo.client.erase({ recordId: stuck.id }).catch((e) => e)).code).toBe('LEDGER_UNAVAILABLE');
    const stuckId = (await dpo.client.erasures()).find((e) => e.target === stuck.id)?.id as string;
    expect(await stateOf(stuckId)).toBe('executing');
    const { record: other } = await upload(61);
    const { requestId } = await dpo.client.scheduleErasure({ recordId: other.id }, 1);
    await new Promise((r) => setTimeout(r, 1100));
    ledger.faults = ['unavailable']; // the stuck one's tombstone refused again, first in the round
    const done = await node.vault.erasures.runDue();
    expect(done.map((c) => c.requestId)).toEqual([requestId]);
    expect(await stateOf(stuckId)).toBe('executing');
    expect((await node.vault.erasures.runDue()).map((c) => c.requestId)).toEqual([stuckId]); // the ledger is back
    expect(await onLedger('record.erased', stuck.id)).toBe(1);
  });
});
