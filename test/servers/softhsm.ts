/**
 * A fresh SoftHSM2 token for a suite: its own token directory and
 * configuration in a temp dir (SOFTHSM2_CONF set for this process), a token
 * initialised with softhsm2-util, removed at the end. Debian's `softhsm2`
 * (installed by scripts/setup.sh).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers.ts';

export const SOFTHSM_LIBRARY = '/usr/lib/softhsm/libsofthsm2.so';

export interface TestToken {
  library: string;
  token: string;
  pin: string;
  dir: string;
}

export function freshToken(label = 'medvault-test'): TestToken {
  if (!existsSync(SOFTHSM_LIBRARY)) throw new Error('SoftHSM2 is not installed: run scripts/setup.sh (apt softhsm2)');
  const dir = tempDir('medvault-softhsm-');
  mkdirSync(join(dir, 'tokens'));
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  process.env.SOFTHSM2_CONF = conf;
  const pin = randomBytes(4).toString('hex');
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', `${pin}so`], {
    env: { ...process.env, SOFTHSM2_CONF: conf },
    stdio: 'ignore',
  });
  return { library: SOFTHSM_LIBRARY, token: label, pin, dir };
}
