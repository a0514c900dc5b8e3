/**
 * `ftvm run --guest kv`, `ftvm restore` and `ftvm receive` roll a guest fault back onto an
 * exact image from the first event: after a poison request (DEBUG SEGFAULT, DEBUG SLEEP past
 * the event timeout) PING still answers PONG (a static reply string in the data segment) and
 * every key keeps its value. Real processes and sockets.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '../helpers/cluster.js';
import { type Spawned } from '../helpers/ftvm.js';
import { useProcesses } from '../helpers/procs.js';
import { RespClient } from '../helpers/resp.js';

const env = { FTVM_TOKEN: 'kv-fault-rollback-test' };
const KEYS = 50;

describe('a kv guest rolls a fault back onto an exact image', () => {
  const spawn = useProcesses(env);
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-kv-fault-'));

  async function fill(port: number): Promise<void> {
    const c = await RespClient.connect(port);
    for (let i = 0; i < KEYS; i++) c.send('SET', `k${i}`, `value-${i}`);
    const r = await c.waitReplies(KEYS);
    expect(r).toEqual(Array.from({ length: KEYS }, () => 'OK'));
    c.end();
  }

  /** Poison (trap, then a timeout) on their own connections; PING and every key afterwards. */
  async function poisonAndCheck(port: number, p: Spawned): Promise<void> {
    const good = await RespClient.connect(port);
    good.send('PING');
    expect(await good.waitReplies(1)).toEqual(['PONG']);
    for (const [poison, code] of [
      [['DEBUG', 'SEGFAULT'], /FTVM_ERR_GUEST_TRAP/],
      [['DEBUG', 'SLEEP', '5000'], /FTVM_ERR_GUEST_TIMEOUT/],
    ] as const) {
      const bad = await RespClient.connect(port);
      bad.send(...poison);
      await bad.waitReplies(1, 10_000);
      expect(bad.closed).toBe(true);
      expect(bad.replies).toEqual([]);
      await p.waitFor(code, 10_000);
    }
    const n = good.replies.length;
    good.send('PING');
    for (let i = 0; i < KEYS; i++) good.send('GET', `k${i}`);
    const r = await good.waitReplies(n + 1 + KEYS);
    expect(r.slice(n)).toEqual(['PONG', ...Array.from({ length: KEYS }, (_, i) => `value-${i}`)]);
    const fresh = await RespClient.connect(port);
    fresh.send('PING');
    expect(await fresh.waitReplies(1)).toEqual(['PONG']);
    fresh.end();
    good.end();
  }

  it('ftvm run --guest kv', { timeout: 60_000 }, async () => {
    const [port] = freePorts(1) as [number];
    const p = spawn(['run', '--guest', 'kv', '--port', String(port), '--event-timeout-ms', '500']);
    await p.waitFor(/listening on/, 30_000);
    await fill(port);
    await poisonAndCheck(port, p);
  });

  it('ftvm restore of a kv snapshot', { timeout: 60_000 }, async () => {
    const [port, ctl, port2] = freePorts(3) as [number, number, number];
    const src = spawn(['run', '--guest', 'kv', '--port', String(port), '--control', `127.0.0.1:${ctl}`, '--snapshot-dir', dir]);
    await src.waitFor(/ftvm control: listening/, 30_000);
    await fill(port);
    const file = join(dir, 'kv.snap');
    const snap = spawn(['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--live', '-o', file]);
    expect(await snap.exited).toBe(0);
    const restored = spawn(['restore', file, '--port', String(port2), '--event-timeout-ms', '500']);
    await restored.waitFor(/listening on/, 30_000);
    await poisonAndCheck(port2, restored);
  });

  it('ftvm receive of a kv migration', { timeout: 60_000 }, async () => {
    const [port, ctl, mig, port2] = freePorts(4) as [number, number, number, number];
    const src = spawn(['run', '--guest', 'kv', '--port', String(port), '--control', `127.0.0.1:${ctl}`]);
    await src.waitFor(/ftvm control: listening/, 30_000);
    await fill(port);
    const target = spawn(['receive', '--guest', 'kv', '--listen', `127.0.0.1:${mig}`, '--port', String(port2), '--event-timeout-ms', '500']);
    await target.waitFor(/migration listener on/, 30_000);
    const m = spawn(['migrate', '--from', `ws://127.0.0.1:${ctl}`, '--to', `ws://127.0.0.1:${mig}`]);
    expect(await m.exited).toBe(0);
    await target.waitFor(/ftvm receive: listening on/, 30_000);
    await poisonAndCheck(port2, target);
  });
});
