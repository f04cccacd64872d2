/**
 * The web console's static files (built from console/ by scripts/build-console.ts into
 * dist/console/), served at /console/ under a strict content security policy: scripts and
 * styles from this node only, requests only to this node's signed /v1 API, no frames, no
 * forms posted anywhere. The page holds the member's key in memory and signs each request
 * itself; nothing here is authenticated because nothing here is secret.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { fail } from '../../errors.ts';
import { PUBLIC } from './context.ts';

/**
 * 'unsafe-eval': the bundle's JSON-schema validator (ajv, the same schemas the node checks
 * receipts and certificates with) compiles them to functions. No inline script is allowed.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self' 'unsafe-eval'",
  "style-src 'self'",
  "img-src 'self' blob: data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Where the built console is: dist/console beside the sources, or console/ beside dist's server. */
export function consoleDirectory(): string | null {
  for (const candidate of ['../../dist/console/', '../../console/']) {
    const dir = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(`${dir}index.html`) && existsSync(`${dir}console.js`)) return dir;
  }
  return null;
}

export async function consoleRoutes(app: FastifyInstance, dir: string | null): Promise<void> {
  app.get('/console', PUBLIC, async (_request, reply) => reply.redirect('/console/'));
  if (!dir) {
    app.get('/console/*', PUBLIC, async () => fail('REQUEST_INVALID', 'the web console is not built: npm run build'));
    return;
  }
  await app.register(fastifyStatic, {
    root: dir,
    prefix: '/console/',
    index: 'index.html',
    // The page must be fresh after an upgrade (it holds the signing code): revalidate each load.
    cacheControl: false,
    setHeaders: (reply) => {
      void reply.headers({
        'content-security-policy': CONSOLE_CSP,
        'cache-control': 'no-cache',
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
        'cross-origin-opener-policy': 'same-origin',
      });
    },
  });
}
