#!/usr/bin/env node
// npm run drills [-- --soak] [-- <vitest filters>]
// Builds the ftvm image offline (deploy/image/build.sh, from the built project), then runs the
// drills in test/drills with vitest. --soak: only the primary-crash drill, 100 consecutive crashes.
// --no-build: use the existing image (FTVM_DRILL_IMAGE, default ftvm:local).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const args = process.argv.slice(2);
const soak = args.includes('--soak');
const build = !args.includes('--no-build');
const rest = args.filter((a) => a !== '--soak' && a !== '--no-build');
const env = { ...process.env, TESTCONTAINERS_RYUK_DISABLED: 'true', ...(soak ? { FTVM_DRILL_SOAK: '1' } : {}) };

if (build && !process.env.FTVM_DRILL_IMAGE) {
  const r = spawnSync('bash', ['deploy/image/build.sh'], { cwd: root, stdio: 'inherit', env });
  // Outside CI a missing engine only skips the drills (they print why); in CI it is a failure.
  if (r.status !== 0) {
    if (process.env.CI) process.exit(r.status ?? 1);
    console.warn('drills: could not build the image (no Docker engine?); the drills will skip with the reason');
  }
}
const filters = rest.length ? rest : soak ? ['test/drills/primary-crash'] : [];
const r = spawnSync('npx', ['vitest', 'run', '-c', 'vitest.drills.config.ts', ...filters], { cwd: root, stdio: 'inherit', env });
process.exit(r.status ?? 1);
