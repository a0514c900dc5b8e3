import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { crc32 } from 'node:zlib';
import { createHmac } from 'node:crypto';
import { Section, SNAPSHOT_VERSION } from '@ftvm/precopy';
import { connect } from '@ftvm/protocol';
import { join } from 'node:path';
import { spawnFtvm, type Spawned } from '../../../test/helpers/ftvm.js';
import { RespClient } from '../../../test/helpers/resp.js';
import { freePorts } from '../../../test/helpers/cluster.js';

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

/**
 * Real client load: pipelined SETs of load:<i> = v<i> on one connection, 16 in flight, until
 * stop(). Every reply must be OK; a reply means the guest ran that SET.
 */
async function startLoad(port: number) {
  const c = await RespClient.connect(port);
  let sent = 0;
  let running = true;
  const done = (async () => {
    while (running && !c.closed) {
      for (; sent - c.replies.length < 16; sent++) c.send('SET', `load:${sent}`, `v${sent}`);
      await c.waitReplies(c.replies.length + 1, 1000);
    }
  })();
  return {
    get acked(): number {
      return c.replies.length;
    },
    /** Stops sending; waits for the replies in flight unless the connection closed. */
    async stop(): Promise<{ acked: number; bad: string[]; closed: boolean }> {
      running = false;
      await done;
      if (!c.closed) await c.waitReplies(sent, 20_000);
      const r = { acked: c.replies.length, bad: c.replies.filter((x) => x !== 'OK'), closed: c.closed };
      c.end();
      return r;
    },
  };
}

/** The load keys 0..n-1 that the guest on `port` does not hold with their value. */
async function checkLoad(port: number, n: number): Promise<string[]> {
  const c = await RespClient.connect(port);
  for (let i = 0; i < n; i++) c.send('GET', `load:${i}`);
  const r = await c.waitReplies(n, 60_000);
  c.end();
  return Array.from({ length: n }, (_, i) => i).filter((i) => r[i] !== `v${i}`).map((i) => `load:${i}`);
}

describe('ftvm snapshot / restore / migrate / receive', () => {
  const procs: Spawned[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-cli-precopy-'));
  afterAll(async () => {
    for (const p of procs) await p.stop();
  });

  it('migrates a running ftvm run under client load to ftvm receive, which then serves every write the source acknowledged', async () => {
    const [port, ctl, mig, tport] = freePorts(4);
    const src = spawnFtvm(['run', '--guest', 'kv', '--port', String(port), '--control', `127.0.0.1:${ctl}`], env);
    procs.push(src);
    await src.waitFor(/ftvm control: listening on (\S+)/);
    const dst = spawnFtvm(['receive', '--listen', `127.0.0.1:${mig}`, '--port', String(tport), '--guest', 'kv'], env);
    procs.push(dst);
    await dst.waitFor(/migration listener on/);
    // Each listener takes its own link kind only.
    const token = new Uint8Array(Buffer.from(env.FTVM_TOKEN));
    const kind = (url: string, link: 'control' | 'migration') =>
      connect(url, { token, role: 'cli', link, nodeId: 'probe', term: 0 }).then((l) => (l.close(), 'accepted'), (e: { code?: string }) => e.code);
    expect(await kind(`ws://127.0.0.1:${ctl}`, 'migration')).toBe('FTVM_ERR_UNEXPECTED_LINK');
    expect(await kind(`ws://127.0.0.1:${mig}`, 'control')).toBe('FTVM_ERR_UNEXPECTED_LINK');
    await fill(port, 5000);
    // Load from a real client while the migration runs; its connection ends with the source.
    const load = await startLoad(port!);
    const srcExit = new Promise((r) => src.proc.once('exit', r));
    await new Promise((r) => setTimeout(r, 500));
    const atStart = load.acked;
    const m = spawnFtvm(['migrate', '--from', `ws://127.0.0.1:${ctl}`, '--to', `ws://127.0.0.1:${mig}`, '--stop-rule', 'mp'], env);
    procs.push(m);
    const done = await m.waitFor(/ftvm migrate: done in (\d+) ms, downtime ([\d.]+) ms/, 60_000);
    expect(Number(done[2])).toBeGreaterThan(0);
    await dst.waitFor(/ftvm receive: listening on/);
    // The source exits once the guest moved.
    expect(await srcExit).toBe(0);
    const l = await load.stop();
    expect(l.bad).toEqual([]);
    expect(l.closed).toBe(true);
    // The load ran during the migration, and every SET it got an OK for moved with the guest.
    expect(l.acked).toBeGreaterThan(atStart);
    expect(await check(tport!, 5000)).toEqual([]);
    expect(await checkLoad(tport!, l.acked)).toEqual([]);
  });

  it('takes a live snapshot under client load and a stop-the-world one; ftvm restore serves the same data from each; bad paths, an unwritable directory and damaged files are refused with their codes', async () => {
    const [port, ctl, rport, sport] = freePorts(4);
    const src = spawnFtvm(['run', '--guest', 'kv', '--port', String(port), '--control', `127.0.0.1:${ctl}`, '--snapshot-dir', dir], env);
    procs.push(src);
    await src.waitFor(/ftvm control: listening on/);
    await fill(port, 3000);
    const load = await startLoad(port!);
    await new Promise((r) => setTimeout(r, 300));
    const live = join(dir, 'live.snap');
    const before = load.acked;
    const s1 = spawnFtvm(['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--live', '--throttle', 'auto', '-o', live], env);
    procs.push(s1);
    await s1.waitFor(/ftvm snapshot: wrote/, 60_000);
    const during = load.acked - before;
    const l = await load.stop();
    expect(l.bad).toEqual([]);
    expect(l.closed).toBe(false);
    // The guest kept answering the load while the live snapshot ran.
    expect(during).toBeGreaterThan(0);
    const stw = join(dir, 'stw.snap');
    const s2 = spawnFtvm(['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--stop-the-world', '-o', stw], env);
    procs.push(s2);
    await s2.waitFor(/ftvm snapshot: wrote/, 60_000);
    // The live snapshot holds everything acknowledged before it began.
    const r = spawnFtvm(['restore', live, '--port', String(rport)], env);
    procs.push(r);
    await r.waitFor(/ftvm restore: listening on/);
    expect(await check(rport!, 3000)).toEqual([]);
    expect(await checkLoad(rport!, before)).toEqual([]);
    await r.stop();
    // The stop-the-world one, taken after the load stopped, holds every acknowledged write.
    const rs = spawnFtvm(['restore', stw, '--port', String(sport)], env);
    procs.push(rs);
    await rs.waitFor(/ftvm restore: listening on/);
    expect(await check(sport!, 3000)).toEqual([]);
    expect(await checkLoad(sport!, l.acked)).toEqual([]);
    await rs.stop();
    // A path outside the snapshot directory, and an existing file: refused, the guest runs on.
    const outside = spawnFtvm(['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--stop-the-world', '-o', join(dir, 'no', 'such', 'dir', 'x.snap')], env);
    procs.push(outside);
    expect(await outside.exited).toBe(1);
    expect(outside.err.join('\n')).toMatch(/snapshot failed.*FTVM_ERR_SNAPSHOT_PATH/);
    const again = spawnFtvm(['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--stop-the-world', '-o', stw], env);
    procs.push(again);
    expect(await again.exited).toBe(1);
    expect(again.err.join('\n')).toMatch(/snapshot failed.*FTVM_ERR_SNAPSHOT_EXISTS/);
    expect(await check(port!, 10)).toEqual([]);
    // A snapshot directory no file can be created in (procfs refuses even root): the write fails with its code.
    const [port2, ctl2] = freePorts(2);
    const ro = spawnFtvm(['run', '--guest', 'kv', '--port', String(port2), '--control', `127.0.0.1:${ctl2}`, '--snapshot-dir', '/proc'], env);
    procs.push(ro);
    await ro.waitFor(/ftvm control: listening on/);
    const unwritable = spawnFtvm(['snapshot', '--from', `ws://127.0.0.1:${ctl2}`, '--stop-the-world', '-o', 'x.snap'], env);
    procs.push(unwritable);
    expect(await unwritable.exited).toBe(1);
    expect(unwritable.err.join('\n')).toMatch(/snapshot failed.*FTVM_ERR_SNAPSHOT_WRITE/);
    await ro.stop();
    // Damaged files: each defect is refused by ftvm restore with its own code.
    const file = readFileSync(stw);
    // Each edit is re-MACed under the token (as a token holder could) so the check behind the MAC is reached.
    const damaged = async (name: string, edit: (b: Buffer) => void, remac = true): Promise<string> => {
      const b = Buffer.from(file);
      edit(b);
      if (remac) createHmac('sha256', Buffer.from(env.FTVM_TOKEN)).update(b.subarray(0, b.length - 44)).digest().copy(b, b.length - 32);
      const path = join(dir, name);
      writeFileSync(path, b);
      const r2 = spawnFtvm(['restore', path, '--port', '0'], env);
      procs.push(r2);
      expect(await r2.exited).toBe(1);
      return r2.err.join('\n');
    };
    // Header: u32 version at 8, its crc32 at 12; sections: u8 type, u32 length at 4, crc32 at 8, body at 12.
    const sections: Array<{ type: number; body: number; len: number }> = [];
    for (let at = 16; at < file.length; at += 12 + file.readUInt32LE(at + 4)) sections.push({ type: file[at]!, body: at + 12, len: file.readUInt32LE(at + 4) });
    const pages = sections.find((x) => x.type === Section.PAGES)!;
    const end = sections.find((x) => x.type === Section.END)!;
    expect(pages && end).toBeTruthy();
    const [forged, version, flipped, digest] = await Promise.all([
      // Without the token, any change fails the MAC over the whole file before a section is parsed.
      damaged('forged.snap', (b) => (b[pages.body + (pages.len >> 1)]! ^= 0x10), false),
      damaged('version.snap', (b) => (b.writeUInt32LE(SNAPSHOT_VERSION + 1, 8), b.writeUInt32LE(crc32(b.subarray(0, 12)), 12))),
      damaged('flipped.snap', (b) => (b[pages.body + (pages.len >> 1)]! ^= 0x10)),
      // A checksummed END whose image digest is not the pages': only the digest can tell.
      damaged('digest.snap', (b) => (b[end.body + 8]! ^= 0x01, b.writeUInt32LE(crc32(b.subarray(end.body, end.body + end.len)), end.body - 4))),
    ]);
    expect(forged).toMatch(/FTVM_ERR_SNAPSHOT_AUTH/);
    expect(version).toMatch(/FTVM_ERR_SNAPSHOT_VERSION/);
    expect(flipped).toMatch(/FTVM_ERR_SNAPSHOT_CORRUPT: .*checksum mismatch/);
    expect(digest).toMatch(/FTVM_ERR_SNAPSHOT_DIGEST/);
  });
});
