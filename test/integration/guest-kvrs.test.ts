/**
 * The Rust guest (kvrs, packages/guests/rust/kvrs.rs) served by a protected cluster to real
 * clients, with a SIGKILL of the primary in the middle: `redis-cli -r N INCR` on one
 * connection through the proxy prints every reply 1..N, none lost or repeated, and
 * `redis-benchmark` run across the failover finishes without errors.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { useCluster } from '../helpers/cluster.js';
import { redisBenchmark, redisCli } from '../helpers/redis.js';
import { haveTool } from '../helpers/tools.js';

const enabled = haveTool('redis-cli') && haveTool('redis-benchmark');
const N = 4000;

describe.runIf(enabled)('kvrs (Rust guest): real clients through the proxy across a SIGKILL of the primary', () => {
  const cluster = useCluster({ guest: 'kvrs' });

  const killPrimaryAndRecover = () => cluster.killPrimaryAndRecover();

  it(`redis-cli -r ${N} INCR prints 1..${N} across the kill; a key set before it is served after`, async () => {
    expect(await redisCli(cluster.ports.proxy, 'SET', 'before-kill', 'rust')).toBe('OK');
    const cli = spawn('redis-cli', ['-p', String(cluster.ports.proxy), '-r', String(N), 'INCR', 'ctr'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    cli.stdout.on('data', (d) => (out += d));
    cli.stderr.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((r) => cli.once('exit', r));
    // Kill once a few hundred replies have come back.
    const t0 = Date.now();
    while (out.split('\n').length < 300 && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 20));
    const repliesAtKill = out.trim().split('\n').length;
    const killed = killPrimaryAndRecover();
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 180_000))]);
    if (code === 'timeout') cli.kill('SIGKILL');
    await killed;
    expect(code, err).toBe(0);
    expect(repliesAtKill, 'the kill came in the middle of the run').toBeLessThan(N / 2);
    const lines = out.trim().split('\n');
    expect(lines.length, err).toBe(N);
    const bad = lines.findIndex((l, i) => l.trim() !== String(i + 1));
    expect(bad, `reply ${bad} is ${lines[bad]}`).toBe(-1);
    expect(await redisCli(cluster.ports.proxy, 'GET', 'ctr')).toBe(`"${N}"`);
    expect(await redisCli(cluster.ports.proxy, 'GET', 'before-kill')).toBe('"rust"');
  }, 300_000);

  it('redis-benchmark run across a second kill finishes without errors', async () => {
    const bench = redisBenchmark(cluster.ports.proxy, ['-t', 'set,get,incr', '-n', '30000', '-c', '8', '-q'], 240_000);
    let finished = false;
    void bench.finally(() => (finished = true)).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 3000));
    const kill = killPrimaryAndRecover();
    expect(finished, 'the kill came in the middle of the run').toBe(false);
    await kill;
    const { stdout, stderr } = await bench;
    expect(stdout + stderr).not.toMatch(/error/i);
    for (const t of ['SET', 'GET', 'INCR']) expect(stdout).toMatch(new RegExp(`${t}: [\\d.]+ requests per second`));
  }, 300_000);
});
