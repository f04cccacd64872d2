/**
 * Limits that hold before authentication, tried as an outsider would over raw
 * sockets: a request with no valid signature headers is refused before its
 * body is read; an address that keeps failing is refused outright; bodies
 * that trickle are cut off (a JSON body by a deadline, an upload by a
 * minimum rate); the node's own parser errors answer in the {code, message}
 * form; signature headers are decoded strictly; HEAD runs nothing; /metrics
 * answers only the monitoring addresses; an upload header with junk stanzas
 * is refused before any work.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signRequest, UNSIGNED_PAYLOAD } from '../../services/protocol/signing.ts';
import { bytes } from '../helpers.ts';
import { DAY, SUBJECT, startNode, type TestMember, type TestNode, treatment } from './vault-fixture.ts';

let node: TestNode;
let hospital: TestMember;
let reader: TestMember;
let record: string;

/** Sends `head` (and `body`, if any) on a raw connection; resolves with what comes back and when. */
function raw(
  url: string,
  head: string,
  body: Buffer | null = null,
  waitMs = 3_000,
): Promise<{ text: string; ms: number; closed: boolean }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = connect(Number(port), hostname);
    let text = '';
    let closed = false;
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      closed = true;
      resolve({ text, ms: Date.now() - started, closed });
    });
    socket.write(head);
    if (body) socket.write(body);
    setTimeout(() => {
      resolve({ text, ms: Date.now() - started, closed });
      socket.destroy();
    }, waitMs);
  });
}

const status = (text: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
const code = (text: string) => (JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4) || '{}') as { code?: string }).code;
const headersText = (headers: Record<string, string>) =>
  Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');

beforeAll(async () => {
  node = await startNode({
    bodyTimeoutMs: 1_000,
    minUploadBytesPerSecond: 64 * 1024,
    metricsAllow: ['192.0.2.1'],
  });
  hospital = await node.addMember('hospital', 'uploader');
  reader = await node.addMember('reader', 'reader');
  record = (await hospital.client.upload(bytes(1000, 1), treatment([reader.id]))).record.id;
});
afterAll(() => node?.stop());

/** The path of a signed upload of SUBJECT's record for the reader. */
const uploadPath = () =>
  `/v1/records?${new URLSearchParams({
    subject: SUBJECT,
    readers: reader.id,
    purpose: 'treatment',
    expiresAt: String(Date.now() + DAY),
  })}`;

describe('before authentication', () => {
  it('an unsigned request with a 1 MB body held back is answered 401 at once, its body unread', async () => {
    const head = `POST /v1/members HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n`;
    const answer = await raw(node.url, head, Buffer.alloc(1000, 0x20));
    expect(status(answer.text)).toBe(401);
    expect(code(answer.text)).toBe('AUTH_REQUIRED');
    expect(answer.ms).toBeLessThan(2_500); // not the body's deadline, nor its end
    expect(answer.closed).toBe(true);
  });

  it('signature headers are decoded strictly: repeated, with junk around or inside, refused', async () => {
    const path = '/v1/members';
    const signed = signRequest(reader.keys.signing, 'GET', path, undefined);
    const sig = signed['medvault-signature'] as string;
    const ok = await fetch(`${node.url}${path}`, { headers: signed });
    expect(ok.status).toBe(200); // the same request as is verifies
    expect(sig).toMatch(/==$/);
    // Each request's own, valid signature with junk a lenient base64 decoder skips: after it,
    // inside it, or its padding dropped. Decoded leniently, each would still verify.
    const junk = [
      (s: string) => `${s}AA`,
      (s: string) => `${s.slice(0, 40)}*${s.slice(40)}`,
      (s: string) => s.slice(0, -2),
    ];
    for (const spoil of junk) {
      const fresh = signRequest(reader.keys.signing, 'GET', path, undefined);
      const bad = spoil(fresh['medvault-signature'] as string);
      const res = await fetch(`${node.url}${path}`, { headers: { ...fresh, 'medvault-signature': bad } });
      expect(res.status, JSON.stringify(bad)).toBe(401);
    }
    const fresh = signRequest(reader.keys.signing, 'GET', path, undefined);
    const twice = await raw(
      node.url,
      `GET ${path} HTTP/1.1\r\nhost: x\r\n${headersText(fresh)}medvault-signature: ${fresh['medvault-signature']}\r\n\r\n`,
    );
    expect(status(twice.text)).toBe(401);
    expect(code(twice.text)).toBe('AUTH_INVALID');
  });

  it('HEAD runs no route: a HEAD of a record content anchors no access', async () => {
    const path = `/v1/records/${record}/content`;
    const before = await node.vault.ledger.head();
    const res = await fetch(`${node.url}${path}`, {
      method: 'HEAD',
      headers: signRequest(reader.keys.signing, 'HEAD', path, undefined),
    });
    expect(res.status).toBe(404);
    expect(await node.vault.ledger.head()).toEqual(before);
  });

  it("the node's own parser errors answer {code, message}", async () => {
    const big = await raw(node.url, `GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(status(big.text)).toBe(431);
    expect(code(big.text)).toBe('HEADERS_TOO_LARGE');
    const garbage = await raw(node.url, 'NOT HTTP AT ALL\r\n\r\n');
    expect(status(garbage.text)).toBe(400);
    expect(code(garbage.text)).toBe('REQUEST_INVALID');
  });

  it('/metrics answers only the monitoring addresses', async () => {
    const res = await fetch(`${node.url}/metrics`);
    expect(res.status).toBe(403);
    expect(((await res.json()) as { code: string }).code).toBe('FORBIDDEN');
  });
});

describe('bodies that trickle', () => {
  it('a signed JSON body that does not arrive within its deadline ends the connection with a 408', async () => {
    const path = `/v1/records/${record}/grants`;
    const body = JSON.stringify({ reader: reader.id, purpose: 'treatment', expiresAt: Date.now() + DAY });
    const signed = signRequest(hospital.keys.signing, 'POST', path, body);
    const head = `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n${headersText(signed)}\r\n`;
    const answer = await raw(node.url, head, Buffer.from(body.slice(0, 10)), 4_000);
    expect(status(answer.text)).toBe(408);
    expect(code(answer.text)).toBe('REQUEST_TIMEOUT');
    expect(answer.ms).toBeGreaterThanOrEqual(900);
    expect(answer.ms).toBeLessThan(3_000);
  });

  it('an upload slower than the minimum rate is cut off, and leaves nothing', async () => {
    const path = uploadPath();
    const signed = signRequest(hospital.keys.signing, 'POST', path, UNSIGNED_PAYLOAD);
    const head = `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n${headersText(signed)}\r\n`;
    const before = await node.vault.ledger.head();
    const { hostname, port } = new URL(node.url);
    const started = Date.now();
    // The start of a well-formed age header, then a stanza body dripping in: the node waits for more.
    const start = `age-encryption.org/v1\n-> X25519 ${'A'.repeat(43)}\n`;
    const ended = await new Promise<number>((resolve) => {
      const socket = connect(Number(port), hostname);
      socket.on('error', () => {});
      socket.write(head);
      socket.write(`${start.length.toString(16)}\r\n${start}\r\n`);
      const drip = setInterval(() => socket.write('1\r\nA\r\n'), 500); // 2 bytes a second
      socket.on('close', () => {
        clearInterval(drip);
        resolve(Date.now() - started);
      });
      setTimeout(() => socket.destroy(), 20_000);
    });
    expect(ended).toBeGreaterThanOrEqual(4_500); // it was waited for, not refused for its content
    expect(ended).toBeLessThan(15_000); // one or two 5 s windows, not the 20 s the client would go on
    expect(await node.vault.ledger.head()).toEqual(before);
  }, 30_000);
});

describe('uploads', () => {
  it('a header with more stanzas than an upload needs is refused before any work', async () => {
    // 200 well-formed X25519 stanzas (the format allows 1,024): more than readers + custodian.
    const junk = Array.from({ length: 200 }, () => `-> X25519 ${'A'.repeat(43)}\n${'A'.repeat(43)}\n`).join('');
    const file = Buffer.from(`age-encryption.org/v1\n${junk}--- ${'A'.repeat(43)}\n`);
    const path = uploadPath();
    const res = await fetch(`${node.url}${path}`, {
      method: 'POST',
      headers: {
        ...signRequest(hospital.keys.signing, 'POST', path, UNSIGNED_PAYLOAD),
        'content-type': 'application/octet-stream',
      },
      body: file,
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { code: string }).code).toBe('AGE_HEADER_TOO_LARGE');
  });
});

describe('an address that keeps failing', () => {
  it('is refused with 429 after its failures, before anything else is looked at', async () => {
    // A node of its own: the other tests' refusals count against this address too.
    const fresh = await startNode({ failuresPerMinute: 8 });
    const member = await fresh.addMember('member', 'reader');
    try {
      await checkLimited(fresh, member);
    } finally {
      await fresh.stop();
    }
  });
});

async function checkLimited(node: TestNode, reader: TestMember): Promise<void> {
  {
    const codes: number[] = [];
    for (let i = 0; i < 12; i++) codes.push((await fetch(`${node.url}/v1/members`)).status);
    expect(codes.slice(0, 8).every((c) => c === 401)).toBe(true);
    expect(codes.slice(8).every((c) => c === 429)).toBe(true);
    // Even a good request from that address waits out the minute.
    const res = await fetch(`${node.url}/v1/members`, {
      headers: signRequest(reader.keys.signing, 'GET', '/v1/members', undefined),
    });
    expect(res.status).toBe(429);
    expect(((await res.json()) as { code: string }).code).toBe('ADDRESS_LIMITED');
  }
}
