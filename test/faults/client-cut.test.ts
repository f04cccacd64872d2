/**
 * What a client sees when the way to the node fails: a TCP relay on
 * 127.0.0.1 between the SDK and a real node cuts a fetch's answer mid-body,
 * or stands in for a proxy whose node is down and answers a bare 502/503
 * page. The SDK names both NODE_UNAVAILABLE (a client may retry), never an
 * untyped `TypeError: terminated` or INTERNAL, and a cut fetch leaves no
 * file, whole or partial. A relay that alters one byte of an upload is
 * caught by the upload's end-to-end signature: nothing is kept or anchored.
 */
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { request } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encrypt, splitAgeFile } from '../../crypto/age.ts';
import type { SigningKey } from '../../crypto/ed25519.ts';
import { X25519Recipient } from '../../crypto/x25519.ts';
import { BODY_TRAILER, bodyMessage, signRequestHash, UNSIGNED_PAYLOAD } from '../../services/protocol/signing.ts';
import { VaultClient } from '../../services/sdk/client.ts';
import { bytes, filesUnder, tempDir } from '../helpers.ts';
import { DAY, SUBJECT, startNode, type TestMember, type TestNode, treatment } from '../services/vault-fixture.ts';

type Mode = { cutAfter: number } | { answer: string } | { flipAfter: number };

let node: TestNode;
let hospital: TestMember;
let reader: TestMember;
let relay: Server;
let mode: Mode = { cutAfter: Number.POSITIVE_INFINITY };
const sockets = new Set<Socket>();
const out = tempDir();

/** Relays each connection to the node, passing at most `cutAfter` bytes of its answers; or answers `answer` itself. */
function startRelay(port: number): Promise<Server> {
  const server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    const now = mode;
    if ('answer' in now) {
      client.once('data', () => client.end(now.answer));
      return;
    }
    const limit = 'cutAfter' in now ? now.cutAfter : Number.POSITIVE_INFINITY;
    const upstream = connect(port, '127.0.0.1');
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    if ('flipAfter' in now) {
      // Alters one byte of what the client sends: the first non-ASCII byte past `flipAfter`,
      // which can only be body data (HTTP's headers and chunk framing are ASCII).
      let seen = 0;
      let flipped = false;
      client.on('data', (chunk: Buffer) => {
        if (!flipped && seen + chunk.length > now.flipAfter) {
          const at = chunk.findIndex((b, i) => seen + i >= now.flipAfter && b >= 0x80);
          if (at >= 0) {
            chunk[at] = (chunk[at] as number) ^ 0x01;
            flipped = true;
          }
        }
        seen += chunk.length;
        upstream.write(chunk);
      });
      client.on('end', () => upstream.end());
    } else {
      client.pipe(upstream);
    }
    let passed = 0;
    upstream.on('data', (chunk: Buffer) => {
      const room = limit - passed;
      if (chunk.length < room) {
        passed += chunk.length;
        client.write(chunk);
        return;
      }
      client.write(chunk.subarray(0, Math.max(0, room)), () => {
        client.destroy();
        upstream.destroy();
      });
      passed = limit;
    });
    upstream.on('end', () => client.end());
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** Sets how the relay behaves, for new connections only: open ones are closed (the client reconnects). */
async function relayMode(next: Mode): Promise<void> {
  mode = next;
  for (const s of sockets) s.destroy();
  await new Promise((r) => setTimeout(r, 50)); // the client sees its kept-alive sockets close
}

function relayUrl(): string {
  const address = relay.address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}

const bare = (status: string) =>
  `HTTP/1.1 ${status}\r\ncontent-type: text/html\r\ncontent-length: 13\r\nconnection: close\r\n\r\n<h1>down</h1>`;

let viaRelay: VaultClient;
let recordId: string;

beforeAll(async () => {
  node = await startNode();
  hospital = await node.addMember('hospital', 'uploader');
  reader = await node.addMember('reader', 'reader');
  const uploaded = await hospital.client.upload(bytes(2_000_000, 3), treatment([reader.id]));
  recordId = uploaded.record.id;
  relay = await startRelay(Number(new URL(node.url).port));
  viaRelay = new VaultClient(relayUrl(), reader.keys, { trusted: [node.vault.nodeId] });
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => relay?.close(r));
  await node?.stop();
});

describe('the way to the node fails', () => {
  it('a fetch cut mid-body: NODE_UNAVAILABLE, and no file whole or partial', async () => {
    await relayMode({ cutAfter: 400_000 });
    const path = join(out, 'cut');
    const err = await viaRelay.fetch(recordId, { path }).catch((e) => e);
    expect(err).toMatchObject({ name: 'MedvaultError', code: 'NODE_UNAVAILABLE' });
    expect(String(err.message)).toMatch(/cut off mid-body/);
    expect(readdirSync(out)).toEqual([]);
    // Through the same relay, uncut, the same fetch works: the cut was the only fault.
    await relayMode({ cutAfter: Number.POSITIVE_INFINITY });
    expect((await viaRelay.fetch(recordId, { path })).bytes).toBe(2_000_000);
  });

  it('a proxy answering a bare 502, 503 or 504 page: NODE_UNAVAILABLE with the status; a bare 500 stays INTERNAL', async () => {
    for (const [status, code] of [
      ['502 Bad Gateway', 'NODE_UNAVAILABLE'],
      ['503 Service Unavailable', 'NODE_UNAVAILABLE'],
      ['504 Gateway Timeout', 'NODE_UNAVAILABLE'],
      ['500 Internal Server Error', 'INTERNAL'],
    ] as const) {
      await relayMode({ answer: bare(status) });
      const err = await viaRelay.record(recordId).catch((e) => e);
      expect(err, status).toMatchObject({ code, info: { status: Number(status.slice(0, 3)) } });
    }
    await relayMode({ cutAfter: Number.POSITIVE_INFINITY });
    expect((await viaRelay.record(recordId)).id).toBe(recordId);
  });

  it('a fetch refused for its receipts (an untrusted node key) lets go of the answer unread: its connection closes', async () => {
    await relayMode({ cutAfter: Number.POSITIVE_INFINITY });
    const untrusting = new VaultClient(relayUrl(), reader.keys, { trusted: ['00'.repeat(32)] });
    const before = readdirSync(out);
    const err = await untrusting.fetch(recordId, { path: join(out, 'untrusted') }).catch((e) => e);
    expect(err).toMatchObject({ code: 'RECEIPT_INVALID' });
    expect(readdirSync(out)).toEqual(before);
    // The 2 MB answer was not read: left waiting, its connection (and the node's reply) would
    // hang on until the process ends. Destroyed, the relay sees it close (idle ones stay open).
    const carrying = () => [...sockets].filter((s) => s.bytesWritten > 100_000).length;
    const until = Date.now() + 3000;
    while (carrying() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(carrying()).toBe(0);
  });
});

describe('a relay that alters an upload', () => {
  const blobs = () => filesUnder(join(node.data, 'blobs')).filter((f) => !f.includes('/tmp/'));
  let uploader: VaultClient;
  beforeAll(() => {
    uploader = new VaultClient(relayUrl(), hospital.keys, { trusted: [node.vault.nodeId] });
  });

  it('one byte changed on the way is refused (AUTH_INVALID): nothing kept, nothing anchored', async () => {
    const head = (await node.vault.ledger.head())?.height;
    const stored = blobs();
    await relayMode({ flipAfter: 300_000 });
    const err = await uploader.upload(bytes(1_000_000, 7), treatment([reader.id])).catch((e) => e);
    expect(err).toMatchObject({ code: 'AUTH_INVALID' });
    expect(String(err.message)).toMatch(/not the bytes the member signed/);
    expect((await node.vault.ledger.head())?.height).toBe(head);
    expect(blobs()).toEqual(stored);
    // The same upload, unaltered, through the same relay: it lands.
    await relayMode({ cutAfter: Number.POSITIVE_INFINITY });
    const { record } = await uploader.upload(bytes(1_000_000, 7), treatment([reader.id]));
    expect((await viaRelay.fetch(record.id, { path: join(out, 'unaltered') })).bytes).toBe(1_000_000);
  });

  /**
   * An upload of `file` sent by hand, with `trailer` made from its request signature, or
   * signed by `hash` (the console's way: a body held whole signs its SHA-256, no trailer).
   */
  function send(
    file: Uint8Array,
    trailer: (requestSignature: string) => Record<string, string>,
    hash: string = UNSIGNED_PAYLOAD,
  ) {
    const query = new URLSearchParams({
      subject: SUBJECT,
      readers: reader.id,
      purpose: 'treatment',
      expiresAt: String(Date.now() + DAY),
    });
    const path = `/v1/records?${query}`;
    return new Promise<{ status: number; body: string }>((resolve, reject) => {
      const headers = signRequestHash(hospital.keys.signing, 'POST', path, hash);
      const req = request(`${node.url}${path}`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/octet-stream' },
      });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.write(file);
      req.addTrailers(trailer(headers['medvault-signature'] as string));
      req.end();
    });
  }
  const signedBy = (key: SigningKey, file: Uint8Array) => (requestSignature: string) => ({
    [BODY_TRAILER]: Buffer.from(
      key.sign(bodyMessage(requestSignature, createHash('sha256').update(file).digest('hex'))),
    ).toString('base64'),
  });
  const ageFile = async (size: number) => {
    const { recipient } = await hospital.client.custodian(SUBJECT);
    return encrypt([X25519Recipient.parse(recipient), reader.keys.identity.recipient], bytes(size, 8));
  };

  it('an upload without its trailer, or with one another member signed, is refused and leaves nothing', async () => {
    const file = await ageFile(50_000);
    const head = (await node.vault.ledger.head())?.height;
    const stored = blobs();
    for (const [name, trailer] of [
      ['no trailer', () => ({})],
      ["another member's signature", signedBy(reader.keys.signing, file)],
      [
        'a signature over another request',
        (s: string) => signedBy(hospital.keys.signing, file)(`${s.slice(0, -4)}AAA=`),
      ],
    ] as const) {
      const answer = await send(file, trailer);
      expect(answer.status, name).toBe(401);
      expect(JSON.parse(answer.body).code, name).toBe('AUTH_INVALID');
    }
    expect((await node.vault.ledger.head())?.height).toBe(head);
    expect(blobs()).toEqual(stored);
    expect((await send(file, signedBy(hospital.keys.signing, file))).status).toBe(201); // the member's own
  });

  it('an upload signed by its hash (the console, no trailer): other bytes are refused and leave nothing', async () => {
    const file = await ageFile(50_000);
    const other = await ageFile(50_000);
    const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
    const head = (await node.vault.ledger.head())?.height;
    const stored = blobs();
    const answer = await send(other, () => ({}), sha(file));
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body)).toMatchObject({
      code: 'AUTH_INVALID',
      message: expect.stringMatching(/not the bytes the member signed/),
    });
    expect((await node.vault.ledger.head())?.height).toBe(head);
    expect(blobs()).toEqual(stored);
    expect((await send(file, () => ({}), sha(file))).status).toBe(201);
  });

  it('an upload no reader could decrypt is refused (AGE_PAYLOAD_CORRUPT) and leaves nothing, however well signed', async () => {
    const head = (await node.vault.ledger.head())?.height;
    const stored = blobs();
    const original = await ageFile(200_000); // four chunks
    const { header } = splitAgeFile(original);
    for (const [name, at] of [
      ['its first chunk', header.length + 16 + 100],
      ['its last chunk', original.length - 5],
    ] as const) {
      const file = Buffer.from(original);
      file[at] = (file[at] as number) ^ 0x01;
      const answer = await send(file, signedBy(hospital.keys.signing, file));
      expect(answer.status, name).toBe(400);
      expect(JSON.parse(answer.body).code, name).toBe('AGE_PAYLOAD_CORRUPT');
    }
    // A payload cut at a chunk boundary: its last chunk was sealed as not last.
    const cut = original.subarray(0, header.length + 16 + 2 * (65536 + 16));
    const answer = await send(cut, signedBy(hospital.keys.signing, cut));
    expect(JSON.parse(answer.body).code).toBe('AGE_PAYLOAD_CORRUPT');
    expect((await node.vault.ledger.head())?.height).toBe(head);
    expect(blobs()).toEqual(stored);
  });
});
