/**
 * Events (closed schemas, canonical bytes), blocks and receipts: a receipt
 * verifies offline, and any change to it, or a block signed by an untrusted
 * key, is refused with a reason.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Block, blockHash, buildBlock, serializeBlock, verifyBlock } from '../../anchor/block.ts';
import {
  canonicalJson,
  EVENT_TYPES,
  encodeEvent,
  eventJson,
  type LedgerEvent,
  validateEvent,
} from '../../anchor/events.ts';
import { makeReceipt, type Receipt, verifyReceipt } from '../../anchor/receipt.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { codeOf } from '../helpers.ts';
import { hash, id, sampleEvent } from './fixtures.ts';

describe('events', () => {
  it.each(EVENT_TYPES)('%s: a well-formed event validates', (type) => {
    expect(codeOf(() => validateEvent(sampleEvent(type)))).toBe('no error');
  });

  it.each<[string, Record<string, unknown>]>([
    ['an unknown type', { type: 'record.deleted' }],
    ['a property beyond the schema (personal data smuggled in)', { patientName: 'Jane Doe' }],
    ['a record id that is not 128-bit hex', { recordId: 'MRN-12345' }],
    ['an upper-case hash', { ciphertextHash: hash().toUpperCase() }],
    ['one upper-case digit in an id', { uploader: `${id().slice(0, 31)}A` }],
    ['an id one digit short', { recordId: id().slice(1) }],
    ['an id one digit long', { node: `${id()}0` }],
    ['a hash with a non-hex digit last', { headerHash: `${hash().slice(0, 63)}g` }],
    ['a hash with a non-hex digit first', { headerHash: `z${hash().slice(1)}` }],
    ['a hash with a non-ASCII character', { ciphertextHash: `${hash().slice(0, 62)}é0` }],
    ['an id given as a number', { recordId: 1234 }],
    ['a subject that is not a 256-bit pseudonym', { subject: 'jane.doe@example.org' }],
    ['a fractional time', { at: 1.5 }],
    ['a negative size', { size: -1 }],
    ['a missing field', { headerHash: undefined }],
  ])('refuses %s', (_name, patch) => {
    const event = { ...sampleEvent('record.created'), ...patch };
    for (const key of Object.keys(patch)) if (patch[key] === undefined) delete (event as Record<string, unknown>)[key];
    expect(codeOf(() => validateEvent(event))).toBe('EVENT_INVALID');
  });

  it.each([
    ['credentials in it', 'https://admin:secret@node-b.example:7400'],
    ['a query', 'https://node-b.example:7400/?patient=MRN-555'],
    ['another scheme', 'ftp://node-b.example'],
    ['a space', 'https://node b.example'],
    ['no host', 'https://'],
  ])('node.joined refuses a URL with %s', (_name, url) => {
    expect(codeOf(() => validateEvent({ ...sampleEvent('node.joined'), url }))).toBe('EVENT_INVALID');
  });

  it('the fast encoding is exactly RFC 8785 (the canonicalize library) for every event type', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...EVENT_TYPES),
        fc.nat({ max: 8.64e15 }),
        fc.boolean(),
        fc.stringMatching(/^[a-z][a-z0-9._-]{0,39}$/),
        fc.constantFrom('uploader', 'reader', 'dpo', 'admin'),
        fc.constantFrom('subject', 'record'),
        fc.boolean(),
        (type, number, flag, code, role, scope, directory) => {
          // Every value kind an event holds: numbers up to the time limit, flags, codes, enums.
          const event = sampleEvent(type, 0) as Record<string, unknown>;
          for (const [key, value] of Object.entries(event)) {
            if (typeof value === 'number') event[key] = number;
            if (typeof value === 'boolean') event[key] = flag;
          }
          if ('purpose' in event) event.purpose = code;
          if ('role' in event) event.role = role;
          if ('scope' in event) event.scope = scope;
          // member.added with and without its optional directory fields
          if (type === 'member.added' && directory)
            Object.assign(event, { signingKey: hash(), recipient: hash(), node: id() });
          const valid = event as LedgerEvent;
          expect(Buffer.from(encodeEvent(valid)).toString()).toBe(canonicalJson(valid));
        },
      ),
    );
  });

  it('encodes canonically: key order does not matter', () => {
    const event = sampleEvent('acl.granted');
    const reversed = Object.fromEntries(Object.entries(event).reverse()) as typeof event;
    expect(Buffer.from(encodeEvent(reversed)).toString()).toBe(Buffer.from(encodeEvent(event)).toString());
    expect(Buffer.from(encodeEvent(event)).toString()).toMatch(/^\{"at":\d+,"expiresAt":/);
  });
});

describe('blocks and receipts', () => {
  const signer = SigningKey.generate();
  const events = Array.from({ length: 7 }, (_, i) => sampleEvent(EVENT_TYPES[i % EVENT_TYPES.length]));
  const { block, tree } = buildBlock(null, events, signer);
  const receipts = events.map((_, i) => makeReceipt(block, tree, i));
  const copy = (r: Receipt): Receipt => JSON.parse(JSON.stringify(r));

  it('a stored block is the JSON of its header and canonical events, whatever its characters', () => {
    const plain = (b: Block) =>
      Buffer.from(`{"header":${JSON.stringify(b.header)},"events":[${b.events.map(eventJson).join(',')}]}`, 'utf8');
    for (const n of [1, 2, 7, 1000]) {
      const built = buildBlock(
        null,
        Array.from({ length: n }, () => sampleEvent()),
        signer,
      ).block;
      expect(serializeBlock(built)).toEqual(plain(built));
      expect(JSON.parse(serializeBlock(built).toString())).toEqual(built);
    }
    // Characters beyond ASCII (no valid block has them) are still encoded as UTF-8,
    // wherever they are and however many bytes they take.
    for (const odd of ['é', '€', '𝄞', '\ud800', 'ЖЖЖЖЖЖЖЖЖЖЖЖЖЖЖЖЖЖЖЖ']) {
      for (const field of ['prev', 'sig'] as const) {
        const strange = { header: { ...block.header, [field]: `${block.header[field]}${odd}` }, events: block.events };
        expect(serializeBlock(strange)).toEqual(plain(strange));
      }
    }
  });

  it('every receipt verifies offline and names its block', () => {
    for (const r of receipts) {
      const v = verifyReceipt(copy(r), { trusted: [signer.id] });
      expect(v).toMatchObject({ height: 0, blockHash: blockHash(block.header), signer: signer.id });
    }
  });

  it.each<[string, (r: Receipt) => void]>([
    [
      'a changed event field',
      (r) => {
        r.event.recordId = id();
      },
    ],
    [
      'a changed event type',
      (r) => {
        r.event.type = 'record.accessed';
      },
    ],
    [
      'another leaf index',
      (r) => {
        r.leafIndex = (r.leafIndex + 1) % 7;
      },
    ],
    [
      'a changed audit path element',
      (r) => {
        r.auditPath[0] = hash();
      },
    ],
    ['a dropped audit path element', (r) => void r.auditPath.pop()],
    [
      'a changed root',
      (r) => {
        r.block.root = hash();
      },
    ],
    [
      'a changed count',
      (r) => {
        r.block.count = 8;
      },
    ],
    [
      'a changed time',
      (r) => {
        r.block.time += 1;
      },
    ],
    [
      'a changed height',
      (r) => {
        r.block.height = 1;
      },
    ],
    [
      'a signature by another key',
      (r) => {
        const other = SigningKey.generate();
        r.block.signerKey = Buffer.from(other.publicKey).toString('base64');
        r.block.signer = other.id;
      },
    ],
    [
      'a signer id that is not its key',
      (r) => {
        r.block.signer = id();
      },
    ],
    ['an extra property', (r) => void Object.assign(r, { note: 'x' })],
    ['a missing block', (r) => void delete (r as Partial<Receipt>).block],
  ])('refuses %s', (_name, tamper) => {
    const r = copy(receipts[3] as Receipt);
    tamper(r);
    expect(codeOf(() => verifyReceipt(r))).toBe('RECEIPT_INVALID');
  });

  it('refuses a block signed by a key outside the trusted list', () => {
    expect(codeOf(() => verifyReceipt(copy(receipts[0] as Receipt), { trusted: [id()] }))).toBe('RECEIPT_INVALID');
  });

  it('verifyBlock checks link, root, count and signature', () => {
    expect(codeOf(() => verifyBlock(block, null))).toBe('no error');
    const next = buildBlock(block.header, [sampleEvent()], signer).block;
    expect(codeOf(() => verifyBlock(next, block.header))).toBe('no error');
    expect(codeOf(() => verifyBlock(next, null))).toBe('BLOCK_INVALID');
    expect(codeOf(() => verifyBlock({ ...block, events: events.slice(1) }, null))).toBe('BLOCK_INVALID');
    expect(codeOf(() => verifyBlock({ ...block, events: [...events].reverse() }, null))).toBe('BLOCK_INVALID');
    expect(codeOf(() => verifyBlock({ ...block, header: { ...block.header, time: 1 } }, null))).toBe('BLOCK_INVALID');
  });
});
