import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NODE_FLAGS } from '../src/node-flags.js';

const read = (rel: string) => readFileSync(new URL(`../../../${rel}`, import.meta.url), 'utf8');

/** Every way a role starts carries NODE_FLAGS (ftvm up's children: test/integration/metrics-up.test.ts). */
describe('the V8 flags of the roles', () => {
  it('are flags node takes on its command line', () => {
    expect(NODE_FLAGS.length).toBeGreaterThan(0);
    for (const f of NODE_FLAGS) expect(f).toMatch(/^--[a-z][a-z0-9-]*(=[^\s]+)?$/);
  });

  it('the ftvm bin passes them (shebang of the committed bin and of main.ts, kept by tsc in dist/main.js)', () => {
    const shebang = `#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}`;
    expect(read('packages/cli/bin/ftvm.js').split('\n')[0]).toBe(shebang);
    expect(read('packages/cli/src/main.ts').split('\n')[0]).toBe(shebang);
    const pkg = JSON.parse(read('packages/cli/package.json')) as { bin: Record<string, string> };
    expect(pkg.bin.ftvm).toBe('bin/ftvm.js');
  });

  it('the pause micro-benchmark runs the vCPU with them (npm run bench:pause)', () => {
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    expect(scripts['bench:pause']).toBe(`node ${NODE_FLAGS.join(' ')} bench/pause.mjs`);
  });

  it('the container images pass them, between node and main.js', () => {
    const list = NODE_FLAGS.map((f) => `"${f}"`).join(', ');
    expect(read('deploy/Dockerfile')).toContain(`ENTRYPOINT ["node", ${list}, "/app/packages/cli/dist/main.js"]`);
    expect(read('deploy/image/build.sh')).toContain(`ENTRYPOINT ["/usr/local/bin/node", ${list}, "/app/packages/cli/dist/main.js"]`);
  });
});
