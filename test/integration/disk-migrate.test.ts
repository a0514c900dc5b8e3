/**
 * Migration of a guest with a virtual disk between real processes (`ftvm run --disk`,
 * `ftvm receive --disk`, `ftvm migrate`): PUSH / stop-and-copy / PULL, on-demand reads of
 * blocks that have not arrived, the two failure cases of PULL, shared storage, bad input.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { freePorts } from '../helpers/cluster.js';
import { LineClient } from '../helpers/lines.js';
import { RespClient } from '../helpers/resp.js';

// JSON logs: the test reads the migration's summary (per-phase blocks) from ftvm migrate's last record.
const env = { FTVM_TOKEN: 'disk-migrate-test', FTVM_LOG_FORMAT: 'json' };

/** Sends lines one at a time; returns the replies. */
async function ask(port: number, ...lines: string[]): Promise<string[]> {
  const c = await LineClient.connect(port);
  for (let i = 0; i < lines.length; i++) {
    c.send(`${lines[i]}\n`);
    await c.waitLines(i + 1, 60_000);
  }
  c.end();
  return c.lines;
}

/** The JSON summary `ftvm migrate` logs at its end. */
function migrateSummary(m: Spawned): { ok: boolean; code?: string; disk?: { missingBlocks: number; pushBlocks: number; pull?: { demandBlocks: number; pushedBlocks: number } } } {
  const line = [...m.err].reverse().find((l) => /"msg":"(migrated|migration failed[^"]*)"/.test(l));
  if (!line) throw new Error(`no migrate summary; stderr:\n${m.err.join('\n')}`);
  return JSON.parse(line);
}

const exited = (s: Spawned): Promise<number | null> =>
  s.proc.exitCode !== null || s.proc.signalCode !== null ? Promise.resolve(s.proc.exitCode) : new Promise((r) => s.proc.once('exit', (code) => r(code)));

describe('migration of a guest with a virtual disk (PUSH / stop-and-copy / PULL)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-disk-migrate-'));
  let procs: Spawned[] = [];
  const spawn = (args: string[]): Spawned => {
    const p = spawnFtvm(args, env);
    procs.push(p);
    return p;
  };
  afterEach(async () => {
    for (const p of procs) await p.stop('SIGKILL');
    procs = [];
  });
  afterAll(() => undefined);

  /** A dirtier with an 8 MiB disk (2,048 blocks), every block written once, writing `rate` random blocks/s. */
  async function dirtierSource(name: string, rate: number) {
    const [port, ctl, mig, tport] = freePorts(4) as [number, number, number, number];
    const src = spawn(['run', '--guest', 'dirtier', '--port', String(port), '--control', `127.0.0.1:${ctl}`, '--disk', join(dir, `${name}-src.disk`), '--disk-size', '8M']);
    await src.waitFor(/ftvm control: listening on/);
    expect(await ask(port, `SET disk_ws=2048 disk_rate=${rate} ws_pages=256 rate=500`, 'DISKFILL 0 2048')).toEqual(['OK', 'OK blocks=2048']);
    const dst = spawn(['receive', '--guest', 'dirtier', '--listen', `127.0.0.1:${mig}`, '--port', String(tport), '--disk', join(dir, `${name}-dst.disk`)]);
    await dst.waitFor(/migration listener on/);
    return { src, dst, port, ctl, mig, tport };
  }

  it('the destination serves reads of blocks not yet copied during PULL (fetched on demand); every block is right after', async () => {
    const { src, dst, ctl, mig, tport } = await dirtierSource('pull', 2000);
    // 4 MB/s: round 0 (8 MiB of disk) takes ~2 s while the guest rewrites most blocks, so most are left to PULL.
    const m = spawn(['migrate', '--from', `ws://127.0.0.1:${ctl}`, '--to', `ws://127.0.0.1:${mig}`, '--bandwidth-limit', '4M']);
    await dst.waitFor(/ftvm receive: listening on/, 60_000);
    // The guest runs on the target; PULL is under way. DISKCHECK reads every block and compares it
    // with the version memory holds: blocks still missing are fetched on demand.
    const during = await ask(tport, 'STOP', 'DISKCHECK 0 2048');
    expect(during).toEqual(['OK', 'OK blocks=2048']);
    await m.waitFor(/ftvm migrate: done/, 60_000);
    const s = migrateSummary(m);
    expect(s.ok).toBe(true);
    expect(s.disk!.pushBlocks).toBeGreaterThanOrEqual(2048);
    expect(s.disk!.missingBlocks).toBeGreaterThan(200);
    // DISKCHECK ran before the background push could have sent them: most came on demand.
    expect(s.disk!.pull!.demandBlocks).toBeGreaterThan(0);
    expect(s.disk!.pull!.demandBlocks + s.disk!.pull!.pushedBlocks).toBe(s.disk!.missingBlocks);
    await dst.waitFor(/disk complete: PULL done/);
    expect(await ask(tport, 'DISKCHECK 0 2048')).toEqual(['OK blocks=2048']);
    expect(await exited(src)).toBe(0);
  });

  it('kv under write load: DISKCHECK on the target is OK and every acknowledged SET is there', async () => {
    const [port, ctl, mig, tport] = freePorts(4) as [number, number, number, number];
    const src = spawn(['run', '--guest', 'kv', '--port', String(port), '--control', `127.0.0.1:${ctl}`, '--disk', join(dir, 'kv-src.disk'), '--disk-size', '16M']);
    await src.waitFor(/ftvm control: listening on/);
    const dst = spawn(['receive', '--guest', 'kv', '--listen', `127.0.0.1:${mig}`, '--port', String(tport), '--disk', join(dir, 'kv-dst.disk')]);
    await dst.waitFor(/migration listener on/);
    // A writer keeps 16 SETs in flight on the source until its connection ends with the migration.
    const w = await RespClient.connect(port);
    const sent: number[] = [];
    let stop = false;
    const writer = (async () => {
      let n = 0;
      while (!stop && !w.closed) {
        while (sent.length - w.replies.length < 16) {
          sent.push(n);
          w.send('SET', `k:${n % 3000}`, `v${n}:${'x'.repeat(n % 700)}`);
          n++;
        }
        await w.waitReplies(w.replies.length + 1, 1000);
      }
    })();
    await new Promise((r) => setTimeout(r, 700));
    const m = spawn(['migrate', '--from', `ws://127.0.0.1:${ctl}`, '--to', `ws://127.0.0.1:${mig}`]);
    await m.waitFor(/ftvm migrate: done/, 60_000);
    stop = true;
    await writer;
    const s = migrateSummary(m);
    expect(s.ok).toBe(true);
    expect(w.replies.filter((r) => r !== 'OK')).toEqual([]);
    expect(w.replies.length).toBeGreaterThan(100);
    const want = new Map<string, string>();
    for (let i = 0; i < w.replies.length; i++) want.set(`k:${sent[i]! % 3000}`, `v${sent[i]}:${'x'.repeat(sent[i]! % 700)}`);
    await dst.waitFor(/disk complete: PULL done/, 30_000);
    const t = await RespClient.connect(tport);
    t.send('DISKCHECK');
    const keys = [...want.keys()];
    for (const k of keys) t.send('GET', k);
    const got = await t.waitReplies(keys.length + 1);
    t.end();
    expect(got[0]).toBe('OK');
    expect(keys.filter((k, i) => got[i + 1] !== want.get(k))).toEqual([]);
  });

  it('the source dies during PULL: the destination stops serving (FTVM_ERR_MIGRATION_PULL_SOURCE_LOST) rather than serve a partial disk', async () => {
    const { src, dst, ctl, mig } = await dirtierSource('srcdies', 2000);
    spawn(['migrate', '--from', `ws://127.0.0.1:${ctl}`, '--to', `ws://127.0.0.1:${mig}`, '--bandwidth-limit', '2M']);
    await dst.waitFor(/ftvm receive: listening on/, 60_000);
    src.proc.kill('SIGKILL');
    expect(await exited(dst)).toBe(1);
    expect(dst.err.join('\n')).toMatch(/FTVM_ERR_MIGRATION_PULL_SOURCE_LOST/);
    expect(dst.err.join('\n')).not.toMatch(/disk complete: PULL done/);
  });

  it('the destination dies during PULL: the migration fails and the source resumes the guest with its disk intact', async () => {
    const { src, dst, port, ctl, mig } = await dirtierSource('dstdies', 2000);
    const m = spawn(['migrate', '--from', `ws://127.0.0.1:${ctl}`, '--to', `ws://127.0.0.1:${mig}`, '--bandwidth-limit', '2M']);
    await dst.waitFor(/ftvm receive: listening on/, 60_000);
    dst.proc.kill('SIGKILL');
    expect(await exited(m)).toBe(1);
    expect(migrateSummary(m).ok).toBe(false);
    expect(src.proc.exitCode).toBe(null);
    expect(await ask(port, 'STOP', 'DISKCHECK 0 2048')).toEqual(['OK', 'OK blocks=2048']);
  });

  it('shared storage: no block is sent; the target opens the source\'s file and the disk agrees with memory', async () => {
    const [port, ctl, mig, tport] = freePorts(4) as [number, number, number, number];
    const file = join(dir, 'shared.disk');
    const src = spawn(['run', '--guest', 'dirtier', '--port', String(port), '--control', `127.0.0.1:${ctl}`, '--disk', file, '--disk-size', '8M']);
    await src.waitFor(/ftvm control: listening on/);
    expect(await ask(port, 'SET disk_ws=2048 disk_rate=1000', 'DISKFILL 0 2048')).toEqual(['OK', 'OK blocks=2048']);
    const dst = spawn(['receive', '--guest', 'dirtier', '--listen', `127.0.0.1:${mig}`, '--port', String(tport), '--disk', file]);
    await dst.waitFor(/migration listener on/);
    const m = spawn(['migrate', '--from', `ws://127.0.0.1:${ctl}`, '--to', `ws://127.0.0.1:${mig}`, '--disk-migration', 'shared']);
    await m.waitFor(/ftvm migrate: done/, 60_000);
    const s = migrateSummary(m);
    expect(s.ok).toBe(true);
    expect(s.disk!.pushBlocks).toBe(0);
    expect(s.disk!.missingBlocks).toBe(0);
    expect(await exited(src)).toBe(0);
    expect(await ask(tport, 'STOP', 'DISKCHECK 0 2048')).toEqual(['OK', 'OK blocks=2048']);
  });

  it('refuses what it cannot do right (no --disk on the target, a non-empty target disk); a snapshot carries the disk to ftvm restore --disk', async () => {
    const [port, ctl, mig, mig2, tport] = freePorts(5) as [number, number, number, number, number];
    const src = spawn(['run', '--guest', 'kv', '--port', String(port), '--control', `127.0.0.1:${ctl}`, '--snapshot-dir', dir, '--disk', join(dir, 'refuse-src.disk'), '--disk-size', '4M']);
    await src.waitFor(/ftvm control: listening on/);
    const r = await RespClient.connect(port);
    r.send('SET', 'a', '1');
    expect(await r.waitReplies(1)).toEqual(['OK']);
    r.end();
    // 1. The target has no --disk.
    const noDisk = spawn(['receive', '--guest', 'kv', '--listen', `127.0.0.1:${mig}`, '--port', String(tport)]);
    await noDisk.waitFor(/migration listener on/);
    const m1 = spawn(['migrate', '--from', `ws://127.0.0.1:${ctl}`, '--to', `ws://127.0.0.1:${mig}`]);
    expect(await exited(m1)).toBe(1);
    expect(m1.err.join('\n')).toMatch(/FTVM_ERR_DISK_MISMATCH/);
    // 2. The target's file is not empty (it might be somebody's data).
    const busy = join(dir, 'refuse-busy.disk');
    writeFileSync(busy, Buffer.alloc(8192, 7));
    const full = spawn(['receive', '--guest', 'kv', '--listen', `127.0.0.1:${mig2}`, '--port', String(tport), '--disk', busy]);
    await full.waitFor(/migration listener on/);
    const m2 = spawn(['migrate', '--from', `ws://127.0.0.1:${ctl}`, '--to', `ws://127.0.0.1:${mig2}`]);
    expect(await exited(m2)).toBe(1);
    expect(m2.err.join('\n')).toMatch(/FTVM_ERR_DISK_EXISTS/);
    expect(readFileSync(busy).every((b) => b === 7)).toBe(true);
    // 3. A snapshot carries the disk (BLOCKS sections): ftvm restore needs a new --disk file for it.
    const snap = join(dir, 'refuse.snap');
    const sn = spawn(['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--live', '-o', snap]);
    expect(await exited(sn)).toBe(0);
    const [rport] = freePorts(1) as [number];
    const noDiskRestore = spawn(['restore', snap, '--port', String(rport)]);
    expect(await exited(noDiskRestore)).toBe(1);
    expect(noDiskRestore.err.join('\n')).toMatch(/FTVM_ERR_DISK_MISMATCH/);
    const restoredDisk = join(dir, 'restored.disk');
    const rs = spawn(['restore', snap, '--port', String(rport), '--disk', restoredDisk]);
    await rs.waitFor(/ftvm restore: listening on/);
    const rc = await RespClient.connect(rport);
    rc.send('GET', 'a');
    rc.send('DISKCHECK');
    expect(await rc.waitReplies(2)).toEqual(['1', 'OK']);
    rc.end();
    rs.proc.kill('SIGTERM');
    await exited(rs);
    expect(statSync(restoredDisk).size).toBe(4 * 1024 * 1024);
    // The source kept serving through all three.
    const again = await RespClient.connect(port);
    again.send('GET', 'a');
    again.send('DISKCHECK');
    expect(await again.waitReplies(2)).toEqual(['1', 'OK']);
    again.end();
    expect(statSync(join(dir, 'refuse-src.disk')).size).toBe(4 * 1024 * 1024);
  });
});
