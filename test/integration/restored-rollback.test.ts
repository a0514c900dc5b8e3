/**
 * A guest that arrived by `ftvm restore` or `ftvm receive` rolls a fault back onto the state it
 * arrived with, not onto zeroed memory: the rollback point starts as the restored image.
 * Real processes; the `faulty` fixture guest keeps a value in a page only 'S' writes, so the
 * first local checkpoint after the restore does not carry that page.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileFixtureGuest } from '../helpers/asc.js';
import { freePorts } from '../helpers/cluster.js';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { LineClient } from '../helpers/lines.js';

const env = { FTVM_TOKEN: 'restored-rollback-test' };

describe('a restored or migrated guest rolls a fault back onto its arrived state', () => {
  let wasm = '';
  let procs: Spawned[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-restored-rollback-'));
  const spawn = (args: string[]): Spawned => {
    const p = spawnFtvm(args, env);
    procs.push(p);
    return p;
  };
  beforeAll(async () => {
    wasm = await compileFixtureGuest('faulty');
  }, 60_000);
  afterEach(async () => {
    for (const p of procs) await p.stop('SIGKILL');
    procs = [];
  });

  /** A source with counter 3 saved ('S') in its far page; returns its client and control ports. */
  async function source(): Promise<{ port: number; ctl: number }> {
    const [port, ctl] = freePorts(2) as [number, number];
    const src = spawn(['run', '--guest', wasm, '--port', String(port), '--control', `127.0.0.1:${ctl}`, '--snapshot-dir', dir]);
    await src.waitFor(/ftvm control: listening/, 30_000);
    const c = await LineClient.connect(port);
    for (const x of ['a', 'b', 'c', 'S']) c.send(x);
    expect(await c.waitLines(4)).toEqual(['1', '2', '3', 'saved 3']);
    c.end();
    return { port, ctl };
  }

  /** On the arrived guest: a trap (rolled back), then the saved value and the counter. */
  async function trapAndCheck(port: number, arrived: Spawned): Promise<void> {
    const c = await LineClient.connect(port);
    c.send('G');
    expect(await c.waitLines(1)).toEqual(['got 3']);
    // Let a local checkpoint (every 200 ms) cover the arrival; it carries only pages written since.
    await new Promise((r) => setTimeout(r, 600));
    const bad = await LineClient.connect(port);
    bad.send('T');
    expect(await bad.waitClosed(5000)).toBe(true);
    await arrived.waitFor(/FTVM_ERR_GUEST_TRAP/, 5000);
    c.send('G');
    c.send('d');
    expect(await c.waitLines(3)).toEqual(['got 3', 'got 3', '4']);
    c.end();
  }

  it('ftvm restore of a live snapshot', { timeout: 60_000 }, async () => {
    const { ctl } = await source();
    const file = join(dir, 'faulty.snap');
    const snap = spawn(['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--live', '-o', file]);
    expect(await snap.exited).toBe(0);
    const [port] = freePorts(1) as [number];
    const restored = spawn(['restore', file, '--port', String(port)]);
    await restored.waitFor(/listening on/, 30_000);
    await trapAndCheck(port, restored);
  });

  it('ftvm receive of a migration', { timeout: 60_000 }, async () => {
    const { ctl } = await source();
    const [mig, port] = freePorts(2) as [number, number];
    const target = spawn(['receive', '--guest', wasm, '--listen', `127.0.0.1:${mig}`, '--port', String(port)]);
    await target.waitFor(/migration listener on/, 30_000);
    const m = spawn(['migrate', '--from', `ws://127.0.0.1:${ctl}`, '--to', `ws://127.0.0.1:${mig}`]);
    expect(await m.exited).toBe(0);
    await target.waitFor(/ftvm receive: listening on/, 30_000);
    await trapAndCheck(port, target);
  });
});
