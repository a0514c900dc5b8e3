/**
 * The memcached guest (C, packages/guests/c/memcached.c) under real processes and the real
 * conformance suite: `memccapable -a` against `ftvm run --guest memcached`, and through the
 * proxy of a protected cluster before and after a SIGKILL of the primary; a key set before
 * the kill is served after it. Snapshot/restore and migration with the C guest.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts, useCluster } from '../helpers/cluster.js';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { haveTool } from '../helpers/tools.js';
import { McClient, mcCheck, mcFill, memccapable, MEMCCAPABLE_ASCII_TESTS } from '../helpers/memcache.js';

const enabled = haveTool('memccapable');
const value = (i: number) => `value-${i}-${'m'.repeat(i % 700)}`;

function expectAllPassed(r: { code: number; out: string }): void {
  expect(r.out, r.out).toMatch(/All tests passed/);
  expect((r.out.match(/\[pass\]/g) ?? []).length, r.out).toBe(MEMCCAPABLE_ASCII_TESTS);
  expect(r.code, r.out).toBe(0);
}

describe.runIf(enabled)('memcached guest: memccapable -a against ftvm run', () => {
  const procs: Spawned[] = [];
  afterAll(async () => {
    for (const p of procs) await p.stop();
  });

  it('passes every ascii test', async () => {
    const [port] = freePorts(1);
    const run = spawnFtvm(['run', '--guest', 'memcached', '--port', String(port)]);
    procs.push(run);
    await run.waitFor(/listening on/, 60_000);
    expectAllPassed(await memccapable(port!));
  }, 180_000);
});

describe.runIf(enabled)('memcached guest: protected cluster, through the proxy, across a SIGKILL of the primary', () => {
  const cluster = useCluster({ guest: 'memcached' });

  it('memccapable -a passes before the kill; keys set before it are served after (a TTL still expiring on the guest clock); memccapable -a passes after', async () => {
    expectAllPassed(await memccapable(cluster.ports.proxy));

    expect(await mcFill(cluster.ports.proxy, 'pre:', 500, value)).toBe(500);
    const c = await McClient.connect(cluster.ports.proxy);
    expect(await c.request('set before-kill 7 0 5\r\nhello\r\n', (b) => b.endsWith('\r\n'))).toBe('STORED\r\n');
    expect(await c.request('set ttl-key 0 60 1\r\nt\r\n', (b) => b.endsWith('\r\n'))).toBe('STORED\r\n');

    const killed = await cluster.killPrimary();

    // Same connection, after the failover.
    expect(await c.request('get before-kill\r\n', (b) => b.endsWith('END\r\n'))).toBe('VALUE before-kill 7 5\r\nhello\r\nEND\r\n');
    // The TTL set before the kill holds on the new primary's guest clock, and expires on it.
    expect(await c.request('get ttl-key\r\n', (b) => b.endsWith('END\r\n'))).toBe('VALUE ttl-key 0 1\r\nt\r\nEND\r\n');
    expect(await c.request('touch ttl-key 1\r\n', (b) => b.endsWith('\r\n'))).toBe('TOUCHED\r\n');
    await new Promise((r) => setTimeout(r, 2500));
    expect(await c.request('get ttl-key\r\n', (b) => b.endsWith('END\r\n'))).toBe('END\r\n');
    expect(c.closed).toBe(false);
    c.end();
    expect(await mcCheck(cluster.ports.proxy, 'pre:', 500, value)).toEqual([]);

    await cluster.reprotect(killed);
    expectAllPassed(await memccapable(cluster.ports.proxy));
  }, 300_000);
});

describe('memcached guest: snapshot, restore and migration', () => {
  const env = { FTVM_TOKEN: 'memcached-guest-test' };
  const procs: Spawned[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-memcached-'));
  afterAll(async () => {
    for (const p of procs) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a live snapshot of ftvm run restores with every item; a migration to ftvm receive keeps them', async () => {
    const [port, ctl, rport, mig, tport] = freePorts(5);
    const src = spawnFtvm(['run', '--guest', 'memcached', '--port', String(port), '--control', `127.0.0.1:${ctl}`, '--snapshot-dir', dir], env);
    procs.push(src);
    await src.waitFor(/ftvm control: listening on/, 60_000);
    expect(await mcFill(port!, 'k:', 3000, value)).toBe(3000);

    const snap = join(dir, 'live.snap');
    const s = spawnFtvm(['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--live', '-o', snap], env);
    procs.push(s);
    await s.waitFor(/ftvm snapshot: wrote/, 60_000);
    const r = spawnFtvm(['restore', snap, '--port', String(rport)], env);
    procs.push(r);
    await r.waitFor(/ftvm restore: listening on/, 60_000);
    expect(await mcCheck(rport!, 'k:', 3000, value)).toEqual([]);
    await r.stop();

    const dst = spawnFtvm(['receive', '--listen', `127.0.0.1:${mig}`, '--port', String(tport), '--guest', 'memcached'], env);
    procs.push(dst);
    await dst.waitFor(/migration listener on/, 60_000);
    const m = spawnFtvm(['migrate', '--from', `ws://127.0.0.1:${ctl}`, '--to', `ws://127.0.0.1:${mig}`], env);
    procs.push(m);
    await m.waitFor(/ftvm migrate: done/, 60_000);
    await dst.waitFor(/ftvm receive: listening on/, 30_000);
    expect(await mcCheck(tport!, 'k:', 3000, value)).toEqual([]);
  }, 240_000);
});
