import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createHmac } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { join } from 'node:path';
import { PAGE_BYTES, RESERVED_PAGES } from '@ftvm/guest-abi';
import { GuestImage, Vmm, checkpointDigest, prepareDisk, prepareGuest, readGuest, type Checkpoint, type PreparedGuest } from '@ftvm/vmm';
import { VmmSource } from '../src/vmm-source.js';
import { takeSnapshot } from '../src/snapshot.js';
import { readSnapshot, writeSnapshotDisk } from '../src/snapshot-file.js';
import type { FinalState } from '../src/engine.js';

const resp = (...args: string[]) => Buffer.from(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);

/** A source that also records the true state at the hold (full memory read while held). */
class Recording extends VmmSource {
  truth: string | null = null;
  override async stopAndCopy(): Promise<FinalState> {
    const f = await super.stopAndCopy();
    const memory = await this.vmm.readPages(0, f.memBytes / PAGE_BYTES);
    memory.fill(0, 0, RESERVED_PAGES * PAGE_BYTES);
    this.truth = checkpointDigest({ memory, memBytes: f.memBytes, globals: f.globals, devices: f.devices });
    return f;
  }
}

/** Sends SETs on conn 1 every ms until stopped: the guest writes while the snapshot runs. */
function load(vmm: Vmm): { stop: () => number } {
  let n = 0;
  const t = setInterval(() => {
    for (let i = 0; i < 50; i++, n++) vmm.input(1, resp('SET', `load:${n % 3000}`, `v${n}-${'x'.repeat(n % 500)}`));
  }, 1);
  return { stop: () => (clearInterval(t), n) };
}

async function get(vmm: Vmm, conn: number, key: string): Promise<string> {
  return new Promise((resolve) => {
    const on = (it: { conn: number; data: Uint8Array }) => {
      if (it.conn !== conn) return;
      vmm.off('output', on);
      resolve(Buffer.from(it.data).toString());
    };
    vmm.on('output', on);
    vmm.input(conn, resp('GET', key));
  });
}

/** The cluster token snapshots are MACed under in these tests. */
const KEY = new TextEncoder().encode('snapshot-test-token');

describe('snapshots of the kv guest', () => {
  let guest: PreparedGuest;
  let wasm: Uint8Array;
  let vmm: Vmm;
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-snap-'));
  beforeAll(async () => {
    const g = readGuest('kv');
    wasm = g.wasm;
    guest = prepareGuest(g.name, g.wasm);
    vmm = await Vmm.boot(guest);
    vmm.open(1);
    for (let i = 0; i < 2000; i++) vmm.input(1, resp('SET', `key:${i}`, `value-${i}-${'y'.repeat(i % 700)}`));
    await vmm.collect();
  });
  afterAll(async () => {
    await vmm?.stop();
  });

  for (const live of [true, false]) {
    it(`a ${live ? 'live' : 'stop-the-world'} snapshot taken under load restores to the exact state at its hold (digest equal) and serves the same data`, async () => {
      const path = join(dir, `kv-${live}.snap`);
      const source = new Recording(vmm);
      const l = load(vmm);
      await new Promise((r) => setTimeout(r, 30));
      const r = await takeSnapshot(source, path, { live, guest: 'kv', moduleWasm: wasm, moduleDigest: guest.digest, stopRule: 'mp', throttle: 'auto', macKey: KEY });
      const sent = l.stop();
      expect(r.ok, r.reason).toBe(true);
      expect(sent).toBeGreaterThan(0);
      expect(r.fileBytes).toBe(statSync(path).size);
      const snap = await readSnapshot(path, KEY);
      expect(snap.info.mode).toBe(live ? 'live' : 'stop-the-world');
      expect(checkpointDigest(snap.checkpoint)).toBe(source.truth);
      const restored = await Vmm.restore(prepareGuest('kv', snap.wasm), snap.checkpoint);
      try {
        restored.open(snap.checkpoint.devices.maxConnId + 1);
        const c = snap.checkpoint.devices.maxConnId + 1;
        expect(await get(restored, c, 'key:1234')).toBe(`$${`value-1234-${'y'.repeat(1234 % 700)}`.length}\r\nvalue-1234-${'y'.repeat(1234 % 700)}\r\n`);
      } finally {
        await restored.stop();
      }
      // Only the snapshot itself is left in the directory: no temporary file.
      expect(readdirSync(dir).filter((f) => f.startsWith(`kv-${live}.snap`))).toEqual([`kv-${live}.snap`]);
    });
  }

  it('refuses a truncated snapshot at every cut with FTVM_ERR_SNAPSHOT_TRUNCATED', async () => {
    const full = readFileSync(join(dir, 'kv-true.snap'));
    const cuts = [0, 5, 16, 20, 100, Math.floor(full.length / 3), Math.floor(full.length / 2), full.length - 45, full.length - 1];
    for (const cut of cuts) {
      const p = join(dir, `cut-${cut}.snap`);
      writeFileSync(p, full.subarray(0, cut));
      await expect(readSnapshot(p, KEY), `cut at ${cut}`).rejects.toMatchObject({ code: 'FTVM_ERR_SNAPSHOT_TRUNCATED' });
    }
  });

  it('refuses a bit-flipped snapshot wherever the flip is, with a coded FTVM_ERR_SNAPSHOT_* error', async () => {
    const full = readFileSync(join(dir, 'kv-true.snap'));
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) % full.length);
    const positions = [0, 8, 12, 16, 17, 20, 24, 40, full.length - 1, full.length - 20, ...Array.from({ length: 40 }, rand)];
    for (const pos of positions) {
      const bad = Buffer.from(full);
      bad[pos]! ^= 1 << (pos % 8);
      const p = join(dir, `flip.snap`);
      writeFileSync(p, bad);
      const err = await readSnapshot(p, KEY).then(() => null, (e: { code?: string }) => e);
      expect(err, `flip at ${pos}`).not.toBeNull();
      expect(err!.code, `flip at ${pos}`).toMatch(/^FTVM_ERR_SNAPSHOT_(CORRUPT|TRUNCATED|FORMAT|VERSION|DIGEST|AUTH)$/);
    }
  });

  it('snapshots a guest with a virtual disk (live and stop-the-world) and restores memory and disk, both digest-checked', async () => {
    const disk = prepareDisk(join(dir, 'guest.disk'), 1 << 20);
    const withDisk = await Vmm.boot(guest, { disk });
    const restored: Vmm[] = [];
    try {
      withDisk.open(1);
      withDisk.open(3);
      // kv writes every SET to its disk; the keys also stay in memory. GET on another connection runs after them.
      for (let i = 0; i < 200; i++) withDisk.input(3, resp('SET', `d:${i}`, `disk-${i}-${'y'.repeat(i)}`));
      expect(await get(withDisk, 1, 'd:199')).toBe(`$${`disk-199-${'y'.repeat(199)}`.length}\r\ndisk-199-${'y'.repeat(199)}\r\n`);
      const onDisk = readFileSync(disk.path);
      expect(onDisk.some((b) => b !== 0)).toBe(true);
      for (const live of [true, false]) {
        const path = join(dir, `disk-${live}.snap`);
        const r = await takeSnapshot(new VmmSource(withDisk), path, { live, guest: 'kv', moduleWasm: wasm, moduleDigest: guest.digest, macKey: KEY });
        expect(r.ok, r.error?.message).toBe(true);
        expect(r.disk?.totalBlocks).toBe(256);
        const snap = await readSnapshot(path, KEY);
        expect(snap.disk?.blocks).toBe(256);
        expect(Buffer.from(snap.disk!.image).equals(readFileSync(disk.path))).toBe(true);
        // Restoring needs a new file for the disk; it is written from the verified snapshot.
        expect(() => writeSnapshotDisk(snap, undefined)).toThrow(expect.objectContaining({ code: 'FTVM_ERR_DISK_MISMATCH' }));
        const busy = join(dir, `busy-${live}.disk`);
        writeFileSync(busy, 'data');
        expect(() => writeSnapshotDisk(snap, busy)).toThrow(expect.objectContaining({ code: 'FTVM_ERR_DISK_EXISTS' }));
        const spec = writeSnapshotDisk(snap, join(dir, `restored-${live}.disk`))!;
        const v = await Vmm.restore(prepareGuest('kv', snap.wasm), snap.checkpoint, { disk: spec });
        restored.push(v);
        v.open(4);
        expect(await get(v, 4, 'd:7')).toBe(`$${'disk-7-yyyyyyy'.length}\r\ndisk-7-yyyyyyy\r\n`);
        expect(readFileSync(spec.path).equals(onDisk)).toBe(true);
      }
      // Shared-storage disk mode means no block in the file: refused, no file left.
      const shared = await takeSnapshot(new VmmSource(withDisk), join(dir, 'shared.snap'), { diskMode: 'shared', guest: 'kv', moduleWasm: wasm, moduleDigest: guest.digest, macKey: KEY });
      expect(shared.error?.code).toBe('FTVM_ERR_PRECOPY_DISK');
      expect(readdirSync(dir).filter((f) => f.startsWith('shared.snap'))).toEqual([]);
      // A disk block moved to another block number (checksums and MAC made again, as a writer
      // bug would) decodes fine and fails the disk digest; nothing is restored from it.
      const file = Buffer.from(readFileSync(join(dir, 'disk-false.snap')));
      let moved = false;
      for (let at = 16; at < file.length - 44 && !moved; at += 12 + file.readUInt32LE(at + 4)) {
        if (file[at] !== 7) continue; // BLOCKS
        const body = file.subarray(at + 12, at + 12 + file.readUInt32LE(at + 4));
        for (let e = 4; e < body.length; e += 9 + body.readUInt32LE(e + 5)) {
          if (body[e + 4] === 0) continue; // a ZERO block: moving it might change nothing
          body.writeUInt32LE(255, e); // the last block, never written by 200 SETs
          moved = true;
          break;
        }
        file.writeUInt32LE(crc32(body), at + 8);
      }
      expect(moved).toBe(true);
      const macAt = file.length - 32;
      file.set(createHmac('sha256', KEY).update(file.subarray(0, macAt - 12)).digest(), macAt);
      file.writeUInt32LE(crc32(file.subarray(macAt)), macAt - 4);
      writeFileSync(join(dir, 'disk-moved.snap'), file);
      await expect(readSnapshot(join(dir, 'disk-moved.snap'), KEY)).rejects.toMatchObject({ code: 'FTVM_ERR_SNAPSHOT_DIGEST' });
      // A snapshot without a disk refuses a --disk file.
      const plain = await readSnapshot(join(dir, 'kv-true.snap'), KEY);
      expect(() => writeSnapshotDisk(plain, join(dir, 'x.disk'))).toThrow(expect.objectContaining({ code: 'FTVM_ERR_DISK_MISMATCH' }));
    } finally {
      for (const v of restored) await v.stop();
      await withDisk.stop();
    }
  });

  it('writes mode 0600, never over an existing file (SNAPSHOT_EXISTS), and restore refuses a file under another token (SNAPSHOT_AUTH)', async () => {
    const path = join(dir, 'kv-true.snap');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const before = readFileSync(path);
    const r = await takeSnapshot(new VmmSource(vmm), path, { guest: 'kv', moduleWasm: wasm, moduleDigest: guest.digest, macKey: KEY });
    expect(r.ok).toBe(false);
    expect(r.error?.code).toBe('FTVM_ERR_SNAPSHOT_EXISTS');
    expect(readFileSync(path).equals(before)).toBe(true);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
    await expect(readSnapshot(path, new TextEncoder().encode('another-token'))).rejects.toMatchObject({ code: 'FTVM_ERR_SNAPSHOT_AUTH' });
  });

  it('refuses a file that is not a snapshot, and a missing one', async () => {
    const p = join(dir, 'not.snap');
    writeFileSync(p, 'hello world, this is not a snapshot at all');
    await expect(readSnapshot(p, KEY)).rejects.toMatchObject({ code: 'FTVM_ERR_SNAPSHOT_FORMAT' });
    await expect(readSnapshot(join(dir, 'missing.snap'), KEY)).rejects.toMatchObject({ code: 'FTVM_ERR_SNAPSHOT_READ' });
    expect(existsSync(join(dir, 'missing.snap'))).toBe(false);
  });
});

describe('pre-copy dirty tracking in the VMM', () => {
  it('pages an epoch collect took still reach the next round, and pages a round took still reach the next epoch', async () => {
    const { name, wasm } = readGuest('kv');
    const vmm = await Vmm.boot(prepareGuest(name, wasm));
    try {
      const img = new GuestImage();
      img.apply(await vmm.collect(true));
      vmm.open(1);
      await vmm.startDirtyTracking();
      for (let i = 0; i < 300; i++) vmm.input(1, resp('SET', `a${i}`, 'z'.repeat(3000)));
      const epochA = await vmm.collect();
      img.apply(epochA);
      for (let i = 0; i < 300; i++) vmm.input(1, resp('SET', `b${i}`, 'w'.repeat(3000)));
      const round = await vmm.dirtyPages();
      // The round sees the pages of both batches, though the collect took the first.
      for (const p of epochA.pages) expect(round.includes(p)).toBe(true);
      expect(round.length).toBeGreaterThan(epochA.pages.length);
      const epochB = await vmm.collect();
      img.apply(epochB);
      // The epoch chain stays complete: the image equals live memory.
      const live: Checkpoint = await vmm.capture();
      expect(checkpointDigest({ ...live, memory: img.memory() })).toBe(checkpointDigest(live));
      await expect(vmm.dirtyPages()).resolves.toBeInstanceOf(Uint32Array);
      vmm.stopDirtyTracking();
      await expect(vmm.dirtyPages()).rejects.toMatchObject({ code: 'FTVM_ERR_PRECOPY_NOT_TRACKING' });
    } finally {
      await vmm.stop();
    }
  });
});
