import { defineConfig } from 'vitest/config';

// Failover drills against real containers (npm run drills). One file at a time: every drill
// starts three or more containers on a shared 2-core machine, and timings must not interfere.
export default defineConfig({
  test: {
    include: ['test/drills/**/*.drill.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 180_000,
    fileParallelism: false,
    pool: 'forks',
    env: { TESTCONTAINERS_RYUK_DISABLED: 'true' },
  },
});
