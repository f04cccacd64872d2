/**
 * Request signatures are checked on the thread pool (crypto/ed25519.ts verifySignatureAsync),
 * so copies of one signed request can all be waiting on their checks at once. Here each check
 * is held back 25 ms, which makes that certain: the nonce must still pass only once.
 */
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { signRequest } from '../../services/protocol/signing.ts';
import { startNode, type TestMember, type TestNode } from './vault-fixture.ts';

vi.mock('../../crypto/ed25519.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../crypto/ed25519.ts')>();
  return {
    ...real,
    verifySignatureAsync: async (...args: Parameters<typeof real.verifySignatureAsync>) => {
      await new Promise((resolve) => setTimeout(resolve, 25));
      return real.verifySignatureAsync(...args);
    },
  };
});

let node: TestNode;
let reader: TestMember;

beforeAll(async () => {
  node = await startNode({ rateLimit: 1000 });
  reader = await node.addMember('reader', 'reader');
});
afterAll(() => node?.stop());

it('one signed request sent eight times at once, all waiting on their checks, is served once; seven are AUTH_REPLAY', async () => {
  const once = signRequest(reader.keys.signing, 'GET', '/v1/members', undefined);
  const answers = await Promise.all(
    Array.from({ length: 8 }, async () => {
      const response = await fetch(`${node.url}/v1/members`, { headers: once });
      return { status: response.status, code: ((await response.json()) as { code?: string }).code };
    }),
  );
  expect(answers.filter((a) => a.status === 200)).toHaveLength(1);
  expect(answers.filter((a) => a.status === 401 && a.code === 'AUTH_REPLAY')).toHaveLength(7);
});
