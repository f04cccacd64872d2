/**
 * What a client sees when the way to the node fails: a TCP relay on
 * 127.0.0.1 between the SDK and a real node cuts a fetch's answer mid-body,
 * or stands in for a proxy whose node is down and answers a bare 502/503
 * page. The SDK names both NODE_UNAVAILABLE (a client may retry), never an
 * untyped `TypeError: terminated` or INTERNAL, and a cut fetch leaves no
 * file, whole or partial.
 */
import { readdirSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VaultClient } from '../../services/sdk/client.ts';
import { bytes, tempDir } from '../helpers.ts';
import { startNode, type TestMember, type TestNode, treatment } from '../services/vault-fixture.ts';

type Mode = { cutAfter: number } | { answer: string };

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
    const limit = now.cutAfter;
    const upstream = connect(port, '127.0.0.1');
    upstream.on('error', () => client.destroy());
    client.pipe(upstream);
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
  const address = relay.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  viaRelay = new VaultClient(`http://127.0.0.1:${port}`, reader.keys, { trusted: [node.vault.nodeId] });
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
});
