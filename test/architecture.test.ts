/**
 * The layering of docs/architecture.md, checked on the import graph of the
 * product's sources (type-only imports included): no cycles, and each folder
 * imports only the folders below it. A tool such as dependency-cruiser or
 * madge would do this, but each parses TypeScript through the compiler's
 * JavaScript API, which TypeScript 7 (this project's compiler) no longer has;
 * the imports here are plain `from '…'` / `import('…')` specifiers.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers.ts';

const SOURCE_DIRS = ['crypto', 'kms', 'storage', 'anchor', 'services', 'experiments', 'console'];
const ROOT_MODULES = ['errors.ts', 'formats.ts', 'durable.ts', 'log.ts', 'index.ts'];

function walk(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) return walk(path);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Each source file's relative imports, as paths from the repository root. */
function importGraph(files: readonly string[], read: (file: string) => string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const specifier = /(?:\bfrom\s*|\bimport\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g;
  for (const file of files) {
    const text = read(file);
    const targets = [...text.matchAll(specifier)].map((m) => normalize(join(dirname(file), m[1] as string)));
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

/** The cycles of a graph (Tarjan's strongly connected components of more than one node, or a self-loop). */
function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const stack: string[] = [];
  const on = new Set<string>();
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v) as number, idx.get(w) as number));
    }
    if (low.get(v) === idx.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        on.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

/** The layer a file belongs to: its folder (services by subfolder), or `root` for the shared root modules. */
const layer = (file: string) => {
  const parts = file.split('/');
  if (parts.length === 1) return 'root';
  return parts[0] === 'services' ? `services/${parts[1]}` : (parts[0] as string);
};

/** What each layer may import besides itself. */
const ALLOWED: Record<string, readonly string[]> = {
  root: ['crypto', 'kms', 'storage', 'anchor'], // index.ts re-exports the lower layers
  crypto: ['root'],
  storage: ['root'],
  kms: ['root', 'crypto'],
  anchor: ['root', 'crypto'],
  'services/protocol': ['root', 'crypto', 'anchor'],
  'services/sdk': ['root', 'crypto', 'anchor', 'services/protocol'],
  'services/vault': ['root', 'crypto', 'kms', 'storage', 'anchor', 'services/protocol'],
  'services/http': ['root', 'crypto', 'anchor', 'services/protocol', 'services/vault'],
  'services/cli': [
    'root',
    'crypto',
    'kms',
    'storage',
    'anchor',
    'services/protocol',
    'services/sdk',
    'services/vault',
    'services/http',
  ],
  experiments: ['root', 'crypto', 'anchor'],
  // The web console runs the protocol's own code in the browser (scripts/build-console.ts).
  console: ['root', 'crypto', 'anchor', 'services/protocol', 'services/sdk'],
};

/** The (from → to) imports that break the layering. */
function layerViolations(graph: Map<string, string[]>): string[] {
  const bad: string[] = [];
  for (const [from, targets] of graph) {
    for (const to of targets) {
      const [a, b] = [layer(from), layer(to)];
      if (a === b) continue;
      if (!(ALLOWED[a] ?? []).includes(b)) bad.push(`${from} -> ${to} (${a} may not import ${b})`);
    }
  }
  return bad;
}

const files = [...ROOT_MODULES, ...SOURCE_DIRS.flatMap(walk)];
const graph = importGraph(files, (f) => readFileSync(join(ROOT, f), 'utf8'));

describe('the layering of the sources', () => {
  it('reads every import of every source file (the graph is not empty or partial)', () => {
    expect(graph.size).toBeGreaterThan(60);
    for (const [from, targets] of graph) {
      for (const to of targets) expect(files, `${from} imports ${to}, which is not a source file`).toContain(to);
    }
  });

  it('has no import cycle', () => {
    expect(cycles(graph)).toEqual([]);
  });

  it('imports only downward: services/cli → sdk, http → vault → protocol → anchor, kms → crypto', () => {
    expect(layerViolations(graph)).toEqual([]);
  });

  it('the checks catch what they are for', () => {
    // A cycle and an upward import, planted in a copy of the real graph.
    const planted = new Map(graph);
    planted.set('services/vault/core.ts', [...(graph.get('services/vault/core.ts') ?? []), 'services/vault/vault.ts']);
    planted.set('services/sdk/client.ts', [
      ...(graph.get('services/sdk/client.ts') ?? []),
      'services/vault/metadata.ts',
    ]);
    planted.set('crypto/age.ts', [...(graph.get('crypto/age.ts') ?? []), 'services/cli/main.ts']);
    expect(cycles(planted).some((c) => c.includes('services/vault/core.ts'))).toBe(true);
    const violations = layerViolations(planted);
    expect(violations.some((v) => v.startsWith('services/sdk/client.ts -> services/vault/metadata.ts'))).toBe(true);
    expect(violations.some((v) => v.startsWith('crypto/age.ts -> services/cli/main.ts'))).toBe(true);
  });

  it('nothing in the product imports the experiments or the CLI', () => {
    const product = files.filter((f) => !f.startsWith('experiments/') && !f.startsWith('services/cli/'));
    for (const from of product) {
      for (const to of graph.get(from) ?? []) {
        expect(to.startsWith('experiments/') || to.startsWith('services/cli/'), `${from} -> ${to}`).toBe(false);
      }
    }
  });
});

/**
 * What loading a module loads at once: its static value imports (not `import type`, not
 * `import()`), relative ones followed, packages named, over the whole closure.
 */
function eagerClosure(entry: string, read: (file: string) => string): { files: string[]; packages: string[] } {
  const statement = /^import\s+(?!type\s)(?:[^'";]*?\sfrom\s*)?['"]([^'"]+)['"]/gm;
  const seen = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const m of read(file).matchAll(statement)) {
      const spec = m[1] as string;
      if (spec.startsWith('.')) visit(normalize(join(dirname(file), spec)));
      else if (!spec.startsWith('node:')) packages.add(spec.startsWith('@') ? spec : (spec.split('/')[0] as string));
    }
  };
  visit(entry);
  return { files: [...seen].sort(), packages: [...packages].sort() };
}

describe("the CLI's start-up", () => {
  const read = (f: string) => readFileSync(join(ROOT, f), 'utf8');

  it('loads no ledger, schema, etcd, HTTP or logging module before a command asks for one (encrypt and decrypt start in tens of ms)', () => {
    const { files: loaded, packages } = eagerClosure('services/cli/main.ts', read);
    expect(loaded).toContain('crypto/age.ts'); // the closure is followed at all
    expect(loaded.filter((f) => f.startsWith('anchor/') || f.startsWith('services/vault/') || f === 'log.ts')).toEqual(
      [],
    );
    expect(packages).toEqual(['@scure/base', 'commander', 'lru-cache']); // bech32, arguments, key-object caches
  });

  it('the check sees a heavy module imported eagerly', () => {
    const planted = (f: string) =>
      f === 'services/cli/io.ts' ? `import { openLedger } from '../../anchor/open.ts';\n${read(f)}` : read(f);
    const { files: loaded, packages } = eagerClosure('services/cli/main.ts', planted);
    expect(loaded).toContain('anchor/etcd-ledger.ts');
    expect(packages).toContain('etcd3');
  });
});
