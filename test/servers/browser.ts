/**
 * Chromium for the console tests: Debian's `chromium` package (scripts/setup.sh installs it),
 * driven by playwright-core; nothing is downloaded. MEDVAULT_CHROMIUM names another binary.
 */
import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

const CANDIDATES = ['/usr/lib/chromium/chromium', '/usr/bin/chromium'];

export function chromiumPath(): string {
  const path = process.env.MEDVAULT_CHROMIUM ?? CANDIDATES.find((p) => existsSync(p));
  if (!path || !existsSync(path)) {
    throw new Error('Chromium is not installed: run scripts/setup.sh (Debian package chromium)');
  }
  return path;
}

export function launchChromium(): Promise<Browser> {
  // --no-sandbox: the tests run as root in CI, where Chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'], timeout: 60_000 });
}
