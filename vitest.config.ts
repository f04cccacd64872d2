import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
    // Request logs are noise in test output; a test that reads logs sets its own level.
    env: { MEDVAULT_LOG_LEVEL: process.env.MEDVAULT_LOG_LEVEL ?? 'warn' },
  },
});
