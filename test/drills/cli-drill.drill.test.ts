import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { DrillCluster } from './helpers/cluster.js';
import { canRunDrills } from './helpers/env.js';

const MAIN = fileURLToPath(new URL('../../packages/cli/dist/main.js', import.meta.url));

/** Runs the built `ftvm` with args; resolves with its exit code and output. */
function ftvm(args: string[], timeoutMs = 120_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe.runIf(canRunDrills())('ftvm drill --run against a running deployment', () => {
  const cluster = new DrillCluster();
  beforeAll(() => cluster.start());
  afterAll(() => cluster.stop());

  it('ftvm drill partition --run cuts the primary off, heals it, and reports 0 lost writes and 0 client errors', async () => {
    onTestFailed(() => console.error(`cluster at failure:\n${cluster.dump(60)}`));
    const ids = (['a', 'b'] as const).map((n) => cluster.nodes.get(n)!.getId());
    const r = await ftvm([
      'drill', 'partition', '--run', '--partition-ms', '2000',
      '--client', `127.0.0.1:${cluster.clientPort()}`,
      '--nodes', ids.join(','),
      '--node-metrics', `${cluster.metricsUrl('a')},${cluster.metricsUrl('b')}`,
      '--proxy', cluster.proxy.getId(),
      '--network', cluster.network.getName(),
    ]);
    cluster.note(`ftvm drill partition --run exited ${r.code}:\n${r.out}`);
    expect(r.out).toMatch(/acknowledged writes lost 0, client errors 0/);
    expect(r.code).toBe(0);
    // Healed under its alias: the old primary rejoins as secondary of b.
    await cluster.waitMetric('a', 'ftvm_role{role="secondary"}', (v) => v === 1, 60_000);
    await cluster.waitMetric('b', 'ftvm_protected', (v) => v === 1, 60_000);
  });

  it('ftvm drill without --run prints the docker commands of the drill', async () => {
    const r = await ftvm(['drill', 'primary-crash', '--network', 'mynet']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/docker kill <primary container>/);
    expect(r.out).toMatch(/--network mynet/);
  });
});
