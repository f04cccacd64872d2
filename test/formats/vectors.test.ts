/**
 * docs/formats.md's vectors: medvault's code makes the same bytes as the file kept in the
 * repository (MEDVAULT_WRITE_VECTORS=1 rewrites it after a deliberate format change), and
 * every vector verifies with medvault's own verifiers.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { verifyBlock } from '../../anchor/block.ts';
import { verifyCheckpoint } from '../../anchor/checkpoint.ts';
import { verifyReceipt } from '../../anchor/receipt.ts';
import { verifyCertificate } from '../../services/protocol/certificate.ts';
import { makeVectors } from './vectors.ts';

const FILE = join(import.meta.dirname, 'vectors', 'formats.json');

describe('the format vectors', () => {
  const made = makeVectors();
  if (process.env.MEDVAULT_WRITE_VECTORS === '1') writeFileSync(FILE, `${JSON.stringify(made, null, 2)}\n`);

  it('medvault makes exactly the bytes kept in test/formats/vectors/formats.json', () => {
    expect(JSON.parse(readFileSync(FILE, 'utf8'))).toEqual(JSON.parse(JSON.stringify(made)));
  });

  it('every vector verifies with medvault itself', () => {
    const [first, second] = made.blocks;
    verifyBlock({ header: first?.header as never, events: first?.events as never }, null);
    verifyBlock({ header: second?.header as never, events: second?.events as never }, first?.header as never);
    const trusted = [made.keys.node.id];
    expect(verifyReceipt(made.receipt, { trusted }).event.type).toBe('acl.granted');
    expect(verifyCheckpoint(made.checkpoint, { quorum: 2 }).signers).toEqual([made.keys.node.id, made.keys.peer.id]);
    const cert = verifyCertificate(made.certificate, { trusted: [made.keys.node.id, made.keys.peer.id] });
    expect(cert).toMatchObject({ complete: true, records: 1, keyDestroyed: true, cosigners: [made.keys.peer.id] });
  });
});
