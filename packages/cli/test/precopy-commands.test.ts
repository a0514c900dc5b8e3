import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnFtvm, type Spawned } from '../../../test/helpers/ftvm.js';
import { RespClient } from '../../../test/helpers/resp.js';
import { freePorts } from '../../../test/helpers/cluster.js';
import { haveTool } from '../../../test/helpers/tools.js';
import { redisBenchmark } from '../../../test/helpers/redis.js';

const env = { FTVM_TOKEN: 'precopy-cli-test' };
const value = (i: number) => `value-${i}-${'q'.repeat(i % 800)}`;

async function fill(port: number, n: number): Promise<void> {
  const c = await RespClient.connect(port);
  for (let i = 0; i < n; i++) c.send('SET', `key:${i}`, value(i));
  const r = await c.waitReplies(n);
  c.end();
  expect(r.filter((x) => x !== 'OK')).toEqual([]);
}

async function check(port: number, n: number): Promise<string[]> {
  const c = await RespClient.connect(port);
  for (let i = 0; i < n; i++) c.send('GET', `key:${i}`);
  const r = await c.waitReplies(n);
  c.end();
  return Array.from({ length: n }, (_, i) => i).filter((i) => r[i] !== value(i)).map((i) => `key:${i}`);
}

describe('ftvm snapshot / restore / migrate / receive', () => {
  const procs: Spawned[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-cli-precopy-'));
  afterAll(async () => {
    for (const p of procs) await p.stop();
  });

  it('migrates a running ftvm run under redis-benchmark load to ftvm receive, which then serves the same data', async () => {
    const [port, ctl, mig, tport] = freePorts(4);
    const src = spawnFtvm(['run', '--guest', 'kv', '--port', String(port), '--control', `127.0.0.1:${ctl}`], env);
    procs.push(src);
    await src.waitFor(/ftvm control: listening on (\S+)/);
    const dst = spawnFtvm(['receive', '--listen', `127.0.0.1:${mig}`, '--port', String(tport), '--guest', 'kv'], env);
    procs.push(dst);
    await dst.waitFor(/migration listener on/);
    await fill(port, 5000);
    // Noise load from the real client while the migration runs (its connections end with the source).
    const noise = haveTool('redis-benchmark') ? redisBenchmark(port, ['-t', 'set', '-r', '100000', '-n', '2000000', '-c', '4', '-q'], 60_000).catch(() => null) : null;
    await new Promise((r) => setTimeout(r, 500));
    const m = spawnFtvm(['migrate', '--from', `ws://127.0.0.1:${ctl}`, '--to', `ws://127.0.0.1:${mig}`, '--stop-rule', 'mp'], env);
    procs.push(m);
    const done = await m.waitFor(/ftvm migrate: done in (\d+) ms, downtime ([\d.]+) ms/, 60_000);
    expect(Number(done[2])).toBeGreaterThan(0);
    await dst.waitFor(/ftvm receive: listening on/);
    // The source exits once the guest moved.
    expect(await new Promise((r) => src.proc.once('exit', r))).toBe(0);
    await noise;
    expect(await check(tport!, 5000)).toEqual([]);
  });

  it('takes a live snapshot under load and a stop-the-world one; ftvm restore serves the same data; a corrupt file is refused', async () => {
    const [port, ctl, rport] = freePorts(3);
    const src = spawnFtvm(['run', '--guest', 'kv', '--port', String(port), '--control', `127.0.0.1:${ctl}`, '--snapshot-dir', dir], env);
    procs.push(src);
    await src.waitFor(/ftvm control: listening on/);
    await fill(port, 3000);
    const live = join(dir, 'live.snap');
    const s1 = spawnFtvm(['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--live', '--throttle', 'auto', '-o', live], env);
    procs.push(s1);
    await s1.waitFor(/ftvm snapshot: wrote/, 60_000);
    const stw = join(dir, 'stw.snap');
    const s2 = spawnFtvm(['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--stop-the-world', '-o', stw], env);
    procs.push(s2);
    await s2.waitFor(/ftvm snapshot: wrote/, 60_000);
    const r = spawnFtvm(['restore', live, '--port', String(rport)], env);
    procs.push(r);
    await r.waitFor(/ftvm restore: listening on/);
    expect(await check(rport!, 3000)).toEqual([]);
    await r.stop();
    const bad = Buffer.from(readFileSync(stw));
    bad[Math.floor(bad.length / 2)]! ^= 0x10;
    const badPath = join(dir, 'bad.snap');
    writeFileSync(badPath, bad);
    const r2 = spawnFtvm(['restore', badPath, '--port', '0'], env);
    procs.push(r2);
    const code = await new Promise((res) => r2.proc.once('exit', res));
    expect(code).not.toBe(0);
    // The MAC over the whole file catches the flip before any section is parsed.
    expect(r2.err.join('\n')).toMatch(/FTVM_ERR_SNAPSHOT_AUTH/);
  });
});
