import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';

const pkgs = ['guest-abi', 'clock', 'guests', 'instrument', 'protocol', 'vmm', 'core', 'precopy', 'metrics', 'primary', 'secondary', 'proxy', 'node', 'cli'];

// Tests run against sources; child processes and the vCPU worker run the built dist/ (npm test builds first).
export default defineConfig({
  resolve: {
    // Exact names (a package's subpath exports, e.g. @ftvm/instrument/dirty-log, map to their own source).
    alias: [
      ...pkgs.map((p) => ({ find: new RegExp(`^@ftvm/${p}$`), replacement: fileURLToPath(new URL(`./packages/${p}/src/index.ts`, import.meta.url)) })),
      { find: /^@ftvm\/([\w-]+)\/([\w-]+)$/, replacement: fileURLToPath(new URL('./packages/$1/src/$2.ts', import.meta.url)) },
    ],
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
