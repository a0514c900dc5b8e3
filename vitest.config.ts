import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';

const pkgs = ['guest-abi', 'clock', 'guests', 'instrument', 'protocol', 'vmm', 'core', 'precopy', 'metrics', 'primary', 'secondary', 'proxy', 'node', 'cli'];

// Tests run against sources; child processes and the vCPU worker run the built dist/ (npm test builds first).
export default defineConfig({
  resolve: {
    alias: Object.fromEntries(pkgs.map((p) => [`@ftvm/${p}`, fileURLToPath(new URL(`./packages/${p}/src/index.ts`, import.meta.url))])),
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['**/node_modules/**', 'test/drills/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Roles log JSON off a terminal; the tests read their human lines from stderr.
    env: { FTVM_LOG_FORMAT: 'human' },
  },
});
