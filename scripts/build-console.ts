/**
 * Builds the web console (console/) into dist/console/: index.html and console.css copied,
 * console/app/main.ts bundled with esbuild into one console.js. The page runs medvault's own
 * protocol code (request signing, member key files, the age decryptor and encryptor, receipts,
 * certificates, blocks): the few modules that reach node:crypto's OpenSSL are swapped for
 * console/platform/ twins with the same exports over @noble, and Node's Buffer is the `buffer`
 * package. Nothing is fetched at build or run time from anywhere but this repository.
 *
 *   scripts/node scripts/build-console.ts [OUTDIR]
 */
import { copyFile, mkdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PLATFORM = join(ROOT, 'console', 'platform');

/** Project modules the page gets a browser twin of, by their path under the repository. */
const TWINS: Record<string, string> = {
  'crypto/primitives.ts': 'primitives.ts',
  'crypto/ed25519.ts': 'ed25519.ts',
  'crypto/reclaim.ts': 'reclaim.ts',
};

/** Node built-ins the shared modules import. */
const BUILTINS: Record<string, string> = {
  'node:crypto': 'node-crypto.ts',
  'node:buffer': 'node-builtins.ts',
  'node:stream': 'node-builtins.ts',
};

const browserTwins: Plugin = {
  name: 'medvault-browser-twins',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) => {
      const twin = BUILTINS[args.path];
      if (!twin) return { errors: [{ text: `${args.path} (from ${args.importer}) has no browser twin` }] };
      return { path: join(PLATFORM, twin) };
    });
    b.onResolve({ filter: /\.ts$/ }, (args) => {
      if (!args.path.startsWith('.')) return undefined;
      const target = resolve(args.resolveDir, args.path);
      const twin = TWINS[target.slice(ROOT.length + 1)];
      return twin ? { path: join(PLATFORM, twin) } : undefined;
    });
  },
};

export async function buildConsole(outdir = join(ROOT, 'dist', 'console')): Promise<{ bytes: number }> {
  await mkdir(outdir, { recursive: true });
  await build({
    entryPoints: [join(ROOT, 'console', 'app', 'main.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'chrome120',
    outfile: join(outdir, 'console.js'),
    minify: true,
    sourcemap: true,
    legalComments: 'linked',
    inject: [join(PLATFORM, 'buffer-global.ts')],
    define: { 'process.env.NODE_ENV': '"production"' },
    plugins: [browserTwins],
    logLevel: 'warning',
  });
  for (const file of ['index.html', 'console.css']) await copyFile(join(ROOT, 'console', file), join(outdir, file));
  let bytes = 0;
  for (const file of ['index.html', 'console.css', 'console.js']) bytes += (await stat(join(outdir, file))).size;
  return { bytes };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { bytes } = await buildConsole(process.argv[2]);
  console.log(`console built: ${(bytes / 1024).toFixed(0)} KiB`);
}
