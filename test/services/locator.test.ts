/**
 * The consortium index: which node holds a record (the ledger's
 * record.created events) and the members other nodes publish (member.added
 * with public keys), read into the metadata store as lookups need them.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Block, buildBlock } from '../../anchor/block.ts';
import type { LedgerEvent } from '../../anchor/events.ts';
import { FileLedger } from '../../anchor/file-ledger.ts';
import { verifyReceipt } from '../../anchor/receipt.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { X25519Identity } from '../../crypto/x25519.ts';
import { ConsortiumIndex } from '../../services/vault/consortium-index.ts';
import { Metadata } from '../../services/vault/metadata.ts';
import { nodeKeyEvent } from '../../services/vault/node-key.ts';
import { id, sampleEvent } from '../anchor/fixtures.ts';
import { tempDir } from '../helpers.ts';

const dir = tempDir('medvault-locator-');
const ledger = await FileLedger.open(join(dir, 'ledger.mvl'));
const signer = SigningKey.generate();
afterAll(() => ledger.close());

async function append(events: LedgerEvent[], by = signer): Promise<void> {
  const { block } = buildBlock((await ledger.head()) ?? null, events, by);
  await ledger.append([block]);
}

const created = () => sampleEvent('record.created') as LedgerEvent & { recordId: string; node: string };

const SELF = id(); // the node reading the ledger

describe('consortium index: where records are', () => {
  it('answers from the ledger, reads blocks appended since, and keeps what it read across restarts', async () => {
    const a = created();
    const b = created();
    await append([a, sampleEvent('record.accessed'), b]);
    const metadata = new Metadata(join(dir, 'metadata.db'));
    const locator = new ConsortiumIndex(ledger, metadata, SELF);
    expect(await locator.holder(a.recordId)).toBe(a.node);
    expect(await locator.holder(b.recordId)).toBe(b.node);
    expect(await locator.holder('0'.repeat(32))).toBeUndefined();

    // A record anchored after the last read is found: the miss reads the new blocks.
    const later = created();
    await append([sampleEvent('acl.granted'), later]);
    expect(await locator.holder(later.recordId)).toBe(later.node);
    expect(metadata.locatorNextHeight()).toBe(2);

    // Concurrent misses share one read of the ledger.
    const reads: number[] = [];
    const counting = {
      head: () => ledger.head(),
      blocks: (from?: number): AsyncIterable<Block> => {
        reads.push(from ?? 0);
        return ledger.blocks(from);
      },
    } as unknown as FileLedger;
    const shared = new ConsortiumIndex(counting, metadata, SELF);
    const more = created();
    await append([more]);
    expect(await Promise.all([shared.holder(more.recordId), shared.holder(more.recordId)])).toEqual([
      more.node,
      more.node,
    ]);
    expect(reads).toEqual([2]);
    metadata.close();

    // After a restart, what was read is not read again.
    const reopened = new Metadata(join(dir, 'metadata.db'));
    reads.length = 0;
    const again = new ConsortiumIndex(counting, reopened, SELF);
    expect(await again.holder(a.recordId)).toBe(a.node);
    expect(await again.holder('1'.repeat(32))).toBeUndefined(); // a miss at the head reads nothing
    expect(reads).toEqual([]);
    reopened.close();
  });
});

/** A member.added as `node` publishes one of its members: public keys, no name. */
function published(node: SigningKey, role = 'reader') {
  const key = SigningKey.generate();
  const identity = X25519Identity.generate();
  const event = {
    type: 'member.added',
    at: Date.now(),
    member: key.id,
    role,
    by: id(),
    signingKey: Buffer.from(key.publicKey).toString('hex'),
    recipient: Buffer.from(identity.recipient.publicKey).toString('hex'),
    node: node.id,
  } as LedgerEvent;
  return { key, identity, event };
}

/**
 * A ledger of its own read by a fresh index for this node: two other nodes, B and C, to sign
 * blocks, and `add` appending events in a block signed by one of them.
 */
async function directory(prefix: string) {
  const dir = tempDir(prefix);
  const own = await FileLedger.open(join(dir, 'ledger.mvl'));
  const metadata = new Metadata(join(dir, 'metadata.db'));
  return {
    own,
    metadata,
    index: new ConsortiumIndex(own, metadata, SELF),
    nodeB: SigningKey.generate(),
    nodeC: SigningKey.generate(),
    add: async (events: LedgerEvent[], by: SigningKey) => {
      const { block } = buildBlock((await own.head()) ?? null, events, by);
      await own.append([block]);
    },
  };
}

describe('consortium index: members of other nodes', () => {
  it('takes the readers a node publishes in its own blocks, and their removal by that node only', async () => {
    const { own, metadata, index, nodeB, nodeC, add } = await directory('medvault-directory-');
    try {
      const reader = published(nodeB);
      const uploader = published(nodeB, 'uploader'); // only readers are ever members of another node here
      const forged = published(nodeB); // names node B, but node C signs the block
      const mismatched = published(nodeB);
      mismatched.event.member = id(); // the published key is not that member's
      const legacy = sampleEvent('member.added'); // anchored before the directory: no keys
      await add([reader.event, uploader.event, mismatched.event, legacy], nodeB);
      await add([forged.event], nodeC);
      await index.catchUp();
      const row = metadata.member(reader.key.id);
      expect(row).toMatchObject({
        role: 'reader',
        node: nodeB.id,
        signingKey: Buffer.from(reader.key.publicKey).toString('base64'),
        recipient: reader.identity.recipient.toString(),
        removedAt: null,
      });
      expect(row?.name).toBe(`${reader.key.id}@${nodeB.id}`);
      for (const other of [uploader, forged, mismatched]) expect(metadata.member(other.key.id)).toBeUndefined();
      expect(metadata.member(legacy.member as string)).toBeUndefined();
      expect(metadata.members()).toHaveLength(1);

      // This node's own members (published by itself) are not taken from the ledger.
      const mine = SigningKey.generate();
      const myMetadata = new Metadata(':memory:');
      const ownMember = published(mine);
      await add([ownMember.event], mine);
      await new ConsortiumIndex(own, myMetadata, mine.id).catchUp();
      expect(myMetadata.member(ownMember.key.id)).toBeUndefined(); // its own node keeps its own row
      myMetadata.close();
      await index.catchUp();
      expect(metadata.member(ownMember.key.id)?.node).toBe(mine.id); // the other nodes take it

      // A removal counts only from the member's own node.
      await add([{ type: 'member.removed', at: Date.now(), member: reader.key.id, by: id() } as LedgerEvent], nodeC);
      await index.catchUp();
      expect(metadata.member(reader.key.id)?.removedAt).toBeNull();
      const removedAt = Date.now();
      await add([{ type: 'member.removed', at: removedAt, member: reader.key.id, by: id() } as LedgerEvent], nodeB);
      await index.catchUp();
      expect(metadata.member(reader.key.id)?.removedAt).toBe(removedAt);
    } finally {
      metadata.close();
      await own.close();
    }
  });
});

describe('consortium index: key rotations of other nodes’ members', () => {
  const rotated = (
    member: string,
    previousKey: string,
    next = SigningKey.generate(),
    identity = X25519Identity.generate(),
  ) => ({
    next,
    identity,
    event: {
      type: 'key.rotated',
      at: Date.now(),
      member,
      previousKey,
      newKey: next.id,
      by: member,
      signingKey: Buffer.from(next.publicKey).toString('hex'),
      recipient: Buffer.from(identity.recipient.publicKey).toString('hex'),
    } as LedgerEvent,
  });

  it('takes a reader’s new keys from its own node only, retires the old key and queues its rewraps', async () => {
    const { own, metadata, index, nodeB, nodeC, add } = await directory('medvault-rotations-');
    try {
      const reader = published(nodeB);
      await add([reader.event], nodeB);
      const forged = rotated(reader.key.id, reader.key.id); // node C speaking for node B's member
      const mismatched = rotated(reader.key.id, reader.key.id);
      mismatched.event.newKey = id(); // the published key is not the new key it names
      await add([forged.event], nodeC);
      await add([mismatched.event], nodeB);
      await index.catchUp();
      expect(metadata.member(reader.key.id)?.keyId).toBe(reader.key.id);
      expect(metadata.keyRewraps()).toEqual([]);

      const real = rotated(reader.key.id, reader.key.id);
      await add([real.event], nodeB);
      await index.catchUp();
      expect(metadata.member(reader.key.id)).toMatchObject({
        keyId: real.next.id,
        signingKey: Buffer.from(real.next.publicKey).toString('base64'),
        recipient: real.identity.recipient.toString(),
      });
      expect(metadata.memberByKey(reader.key.id)).toBeUndefined(); // the old key names nobody now
      expect(metadata.memberByKey(real.next.id)?.id).toBe(reader.key.id);
      expect(metadata.keyEverUsed(reader.key.id)).toBe(true);
      expect(metadata.keyRewraps()).toEqual([reader.key.id]);
    } finally {
      metadata.close();
      await own.close();
    }
  });
});

describe('consortium index: the nodes, by a chain of trust from block 0', () => {
  const joined = (node: SigningKey, url: string, key = node) =>
    ({
      type: 'node.joined',
      at: Date.now(),
      node: node.id,
      signingKey: Buffer.from(key.publicKey).toString('hex'),
      recipient: Buffer.from(X25519Identity.generate().recipient.publicKey).toString('hex'),
      url,
    }) as LedgerEvent;
  const invited = (node: SigningKey, invite = '1'.repeat(64)) =>
    ({ type: 'node.invited', at: Date.now(), node: node.id, by: id(), invite }) as LedgerEvent;

  it('takes the founder, and a node only once a joined node invited it; nobody speaks for another node', async () => {
    const dirN = tempDir('medvault-nodes-');
    const own = await FileLedger.open(join(dirN, 'ledger.mvl'));
    const add = async (events: LedgerEvent[], by: SigningKey, forge?: SigningKey) => {
      const { block } = buildBlock((await own.head()) ?? null, events, by);
      if (forge) block.header.signer = forge.id; // claims another signer: its signature no longer verifies
      await own.append([block]);
    };
    const founder = SigningKey.generate();
    const b = SigningKey.generate();
    const rogue = SigningKey.generate();
    const metadata = new Metadata(join(dirN, 'metadata.db'));
    const told: string[][] = [];
    const index = new ConsortiumIndex(own, metadata, SELF, (nodes) =>
      told.push(nodes.filter((n) => n.state === 'joined').map((n) => n.id)),
    );
    const state = () => Object.fromEntries(metadata.consortiumNodes().map((n) => [n.id, n.state]));
    try {
      await add([sampleEvent('member.added'), joined(founder, 'http://127.0.0.1:7400')], founder); // block 0
      await add([joined(rogue, 'http://127.0.0.1:9999')], rogue); // never invited
      await add([invited(b)], rogue); // an inviter that has not joined
      await add([joined(b, 'http://127.0.0.1:7401')], founder); // the founder speaking for B
      await index.catchUp();
      expect(state()).toEqual({ [founder.id]: 'joined' });
      expect(told).toEqual([[founder.id]]);

      await add([invited(b, '2'.repeat(64))], rogue, founder); // a block claiming the founder's signature
      await index.catchUp();
      expect(state()[b.id]).toBeUndefined();

      await add([invited(b, '3'.repeat(64))], founder);
      await add([joined(b, 'http://127.0.0.1:7401', rogue)], b); // publishes a key that is not B's
      await index.catchUp();
      expect(metadata.consortiumNodes().find((n) => n.id === b.id)).toMatchObject({
        state: 'invited',
        invitedBy: founder.id,
        invite: '3'.repeat(64),
        url: null,
      });

      await add([joined(b, 'http://127.0.0.1:7401')], b);
      await add([invited(b, '4'.repeat(64))], founder); // an invite does not undo a join
      await index.catchUp();
      const row = metadata.consortiumNodes().find((n) => n.id === b.id);
      expect(row).toMatchObject({
        state: 'joined',
        invitedBy: founder.id,
        invite: '3'.repeat(64),
        url: 'http://127.0.0.1:7401',
        signingKey: Buffer.from(b.publicKey).toString('base64'),
      });
      expect(told.at(-1)?.sort()).toEqual([founder.id, b.id].sort());

      // A new address is announced again; leaving counts only from the node itself.
      await add([joined(b, 'https://b.example:7443')], b);
      await add([{ type: 'node.left', at: Date.now(), node: b.id } as LedgerEvent], founder);
      await index.catchUp();
      expect(metadata.consortiumNodes().find((n) => n.id === b.id)).toMatchObject({
        state: 'joined',
        url: 'https://b.example:7443',
        since: row?.since,
      });
      await add([{ type: 'node.left', at: Date.now(), node: b.id } as LedgerEvent], b);
      await index.catchUp();
      expect(state()[b.id]).toBe('left');
    } finally {
      metadata.close();
      await own.close();
    }
  });

  it('removes a node once more than half of the other joined nodes voted, each once, in their own blocks, counted again as nodes leave', async () => {
    const { own, metadata, add } = await directory('medvault-votes-');
    const [founder, b, c, d, outsider] = Array.from({ length: 5 }, () => SigningKey.generate()) as [
      SigningKey,
      SigningKey,
      SigningKey,
      SigningKey,
      SigningKey,
    ];
    const vote = (node: SigningKey) =>
      ({ type: 'node.removal', at: Date.now(), node: node.id, by: id() }) as LedgerEvent;
    const state = () => Object.fromEntries(metadata.consortiumNodes().map((n) => [n.id, n.state]));
    // Each read by a fresh index: votes read in one read count with those of later ones.
    const read = () => new ConsortiumIndex(own, metadata, SELF).catchUp();
    try {
      await add([joined(founder, 'http://127.0.0.1:7400')], founder);
      await add([invited(b), invited(c), invited(d)], founder);
      for (const [n, port] of [
        [b, 7401],
        [c, 7402],
        [d, 7403],
      ] as const) {
        await add([joined(n, `http://127.0.0.1:${port}`)], n);
      }
      // Against D: the other joined nodes are the founder, B and C, so it takes two votes.
      await add([vote(d)], d); // a node does not vote itself out
      await add([vote(d)], outsider); // nor does a writer outside the consortium
      await add([vote(d), vote(d)], founder); // counted once
      await read();
      expect(state()[d.id]).toBe('joined');
      expect([...(metadata.nodeVotes().get(d.id) ?? [])]).toEqual([founder.id]);
      await add([vote(d)], b);
      await read();
      expect(state()[d.id]).toBe('removed');
      // A removed node neither comes back by announcing itself nor votes.
      await add([joined(d, 'http://127.0.0.1:7403')], d);
      await add([vote(c)], d);
      await add([vote(c)], founder);
      await read();
      expect(state()).toMatchObject({ [d.id]: 'removed', [c.id]: 'joined' });
      // Invited again, it starts with no votes against it: one more is not enough.
      await add([invited(d, '5'.repeat(64))], b);
      await add([joined(d, 'http://127.0.0.1:7403')], d);
      await read();
      expect(metadata.nodeVotes().get(d.id)).toBeUndefined();
      await add([vote(d)], c);
      await read();
      expect(state()[d.id]).toBe('joined');
      // Fewer others, the same votes: B leaves (C's vote is 1 of the 2 needed of the founder and
      // C), then the founder does: C's vote is all it takes of C alone, counted without a new vote.
      const left = (node: SigningKey) => ({ type: 'node.left', at: Date.now(), node: node.id }) as LedgerEvent;
      await add([left(b)], b);
      await read();
      expect(state()).toMatchObject({ [b.id]: 'left', [d.id]: 'joined' });
      await add([left(founder)], founder);
      await read();
      expect(state()).toMatchObject({ [founder.id]: 'left', [c.id]: 'joined', [d.id]: 'removed' });
    } finally {
      metadata.close();
      await own.close();
    }
  });
  it('follows a node key hand-over once, in a block the old key signs; the old key speaks for nobody after', async () => {
    const { own, metadata, add } = await directory('medvault-node-keys-');
    const keysOf = () => ({ signing: SigningKey.generate(), identity: X25519Identity.generate() });
    const [f, b, b2, c, y] = [keysOf(), keysOf(), keysOf(), keysOf(), keysOf()];
    const vote = (node: SigningKey) =>
      ({ type: 'node.removal', at: Date.now(), node: node.id, by: id() }) as LedgerEvent;
    const state = () => Object.fromEntries(metadata.consortiumNodes().map((n) => [n.id, n.state]));
    const read = () => new ConsortiumIndex(own, metadata, SELF).catchUp();
    try {
      await add([joined(f.signing, 'http://127.0.0.1:7400')], f.signing);
      await add([invited(b.signing), invited(c.signing)], f.signing);
      await add([joined(b.signing, 'http://127.0.0.1:7401')], b.signing);
      await add([joined(c.signing, 'http://127.0.0.1:7402')], c.signing);
      const record = { ...created(), node: b.signing.id };
      const reader = published(b.signing);
      await add([record, reader.event, vote(c.signing)], b.signing); // B votes against C before its hand-over
      await add([nodeKeyEvent(b, y, Date.now())], f.signing); // F cannot hand B's key over
      await add([nodeKeyEvent(b, b2, Date.now())], b.signing);
      await read();
      expect(state()).toEqual({ [f.signing.id]: 'joined', [b2.signing.id]: 'joined', [c.signing.id]: 'joined' });
      expect(metadata.consortiumNodes().find((n) => n.id === b2.signing.id)).toMatchObject({
        url: 'http://127.0.0.1:7401',
        signingKey: Buffer.from(b2.signing.publicKey).toString('base64'),
        recipient: b2.identity.recipient.toString(),
      });
      expect(metadata.recordLocation(record.recordId)).toBe(b2.signing.id);
      expect(metadata.member(reader.key.id)?.node).toBe(b2.signing.id);
      expect([...(metadata.nodeVotes().get(c.signing.id) ?? [])]).toEqual([b2.signing.id]);
      const history = metadata.nodeKeyHistory();
      expect(history.map((k) => [k.node, k.successor])).toEqual([[b.signing.id, b2.signing.id]]);
      expect(verifyReceipt(history[0]?.receipt).signer).toBe(b.signing.id);

      // The retired key: no second hand-over, no announcement, no reader, no vote.
      const later = published(b.signing);
      await add([nodeKeyEvent(b, y, Date.now()), joined(b.signing, 'http://127.0.0.1:7409')], b.signing);
      await add([later.event, vote(f.signing)], b.signing);
      await read();
      expect(state()).toEqual({ [f.signing.id]: 'joined', [b2.signing.id]: 'joined', [c.signing.id]: 'joined' });
      expect(metadata.member(later.key.id)).toBeUndefined();
      expect(metadata.nodeVotes().get(f.signing.id)).toBeUndefined();
      expect(metadata.nodeKeyHistory()).toHaveLength(1);
      // B's vote, carried to its new id, counts with F's: C is removed (2 of F and B).
      await add([vote(c.signing)], f.signing);
      await read();
      expect(state()[c.signing.id]).toBe('removed');
    } finally {
      metadata.close();
      await own.close();
    }
  });
});
