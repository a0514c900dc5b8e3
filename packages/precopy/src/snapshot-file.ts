/**
 * The snapshot file: a guest's complete state, written by a live or stop-the-world
 * snapshot and read by `ftvm restore`.
 *
 * Layout, little-endian:
 *
 *   header   "FTVMSNAP" | u32 version (1) | u32 crc32 of the 12 bytes before it
 *   section* u8 type | u8[3] zero | u32 bodyLength | u32 crc32(body) | body
 *
 * Sections, in this order: INFO (msgpack: guest name, module digest, mode, time), MODULE
 * (the original wasm, so a snapshot restores on its own), PAGES* and BLOCKS* in any mix (one
 * page batch each, the protocol's codec layout; later copies of a page replace earlier ones,
 * XOR deltas apply onto the copy before; BLOCKS carry the virtual disk's 4 KiB blocks the same
 * way), STATE (msgpack: epoch, memBytes, globals, device state, and for a guest with a disk
 * its size in blocks and the disk image's digest), END
 * (u32 sections before it | u32 memBytes | 32-byte image digest), then MAC: HMAC-SHA256 under
 * the cluster token of every byte before it, which must end the file.
 *
 * Written (mode 0600) to `<path>.tmp-<pid>-<n>`, fsynced, then linked to `<path>` (which
 * must not exist: a snapshot never replaces a file) and the directory fsynced: a crash
 * leaves no partial file under `path`. The reader first checks the MAC over the whole file
 * (a file nobody holding the token wrote is refused before it is parsed), then every
 * checksum, the section order and the image digest, and refuses anything else with a coded
 * error, before a byte of it reaches a VMM.
 */
import { link, open, unlink, type FileHandle } from 'node:fs/promises';
import { createHmac, timingSafeEqual, type Hmac } from 'node:crypto';
import { openSync, fsyncSync, closeSync, existsSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import { PAGE_BYTES, MAX_MEMORY_BYTES } from '@ftvm/guest-abi';
import { DIGEST_BYTES, MAX_BATCH_PAGES, PageDecoder, digestEquals, digestImage } from '@ftvm/protocol';
import { MAX_DISK_BYTES, moduleDigest, type Checkpoint } from '@ftvm/vmm';
import { PrecopyError, SnapshotError } from './errors.js';
import type { FinalState, PrecopySink, PullStats, RoundDisk } from './engine.js';
import { PageStream } from './page-stream.js';

export const SNAPSHOT_MAGIC = 'FTVMSNAP';
export const SNAPSHOT_VERSION = 2;
const HEADER_BYTES = 16;
const SECTION_HEADER_BYTES = 12;
export const Section = { INFO: 1, MODULE: 2, PAGES: 3, STATE: 4, END: 5, MAC: 6, BLOCKS: 7 } as const;
const SECTION_NAMES = ['?', 'INFO', 'MODULE', 'PAGES', 'STATE', 'END', 'MAC', 'BLOCKS'];
const MAC_BYTES = 32;
/** The MAC section with its header: the file's last bytes. */
const MAC_SECTION_BYTES = SECTION_HEADER_BYTES + MAC_BYTES;
/** Largest section body accepted, bytes: a full RAW batch (8192 pages) with entry headers, or a 64 MiB module. */
const MAX_SECTION_BYTES = 4 + MAX_BATCH_PAGES * (9 + PAGE_BYTES) + 1024;
const END_BYTES = 8 + DIGEST_BYTES;

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'bigint' });

export interface SnapshotInfo {
  guest: string;
  /** sha256 (hex) of the original module. */
  moduleDigest: string;
  mode: 'live' | 'stop-the-world';
  createdAtMs: number;
}

let tmpSeq = 0;

function sectionHeader(type: number, body: Uint8Array): Buffer {
  const h = Buffer.alloc(SECTION_HEADER_BYTES);
  h[0] = type;
  h.writeUInt32LE(body.length, 4);
  h.writeUInt32LE(crc32(body), 8);
  return h;
}

/** A PrecopySink writing a snapshot file. `finish()` makes it durable and visible under `path`. */
export class SnapshotWriter implements PrecopySink {
  readonly tmpPath: string;
  private fh: FileHandle | null = null;
  private sections = 0;
  private stream = new PageStream(true);
  /** The disk's blocks (a guest with a disk): no XOR cache, each block's last copy wins. */
  private blockStream = new PageStream(true, false);
  /** The disk's size in blocks (0: no disk), from the first round. */
  private diskBlocks = 0;
  /** A guest with a disk: the final state waits for pull() to write the remaining blocks. */
  private pendingState: FinalState | null = null;
  /** pull() runs while the source is still held: it is part of the snapshot's downtime. */
  readonly pullHeld = true;
  /** Bytes written to the file so far. */
  bytes = 0;
  private done = false;
  private readonly mac: Hmac;
  /** The MAC section itself is not covered by the MAC. */
  private macDone = false;

  private constructor(readonly path: string, key: Uint8Array) {
    this.tmpPath = `${path}.tmp-${process.pid}-${tmpSeq++}`;
    this.mac = createHmac('sha256', key);
  }

  /** Creates the temporary file and writes the header, INFO and MODULE. */
  static async create(path: string, info: SnapshotInfo, moduleWasm: Uint8Array, key: Uint8Array): Promise<SnapshotWriter> {
    const w = new SnapshotWriter(path, key);
    try {
      w.fh = await open(w.tmpPath, 'wx', 0o600);
    } catch (e) {
      throw new SnapshotError('FTVM_ERR_SNAPSHOT_WRITE', `cannot create ${w.tmpPath}: ${(e as Error).message}`, { cause: e });
    }
    const head = Buffer.alloc(HEADER_BYTES);
    head.write(SNAPSHOT_MAGIC, 0, 'latin1');
    head.writeUInt32LE(SNAPSHOT_VERSION, 8);
    head.writeUInt32LE(crc32(head.subarray(0, 12)), 12);
    await w.write(head);
    await w.section(Section.INFO, packr.pack(info));
    await w.section(Section.MODULE, moduleWasm);
    return w;
  }

  private async write(b: Uint8Array): Promise<void> {
    if (!this.fh) throw new SnapshotError('FTVM_ERR_SNAPSHOT_WRITE', `${this.tmpPath} is closed`);
    let off = 0;
    while (off < b.length) {
      const { bytesWritten } = await this.fh.write(b, off, b.length - off);
      off += bytesWritten;
    }
    if (!this.macDone) this.mac.update(b);
    this.bytes += b.length;
  }

  private async section(type: number, body: Uint8Array): Promise<void> {
    await this.write(sectionHeader(type, body));
    await this.write(body);
    this.sections++;
  }

  async beginRound(_round: number, _memBytes: number, _pageCount: number, _final: FinalState | null, disk?: RoundDisk): Promise<void> {
    if (!disk) return;
    if (disk.mode !== 'copy') throw new PrecopyError('FTVM_ERR_PRECOPY_DISK', 'a snapshot copies the disk into the file (disk mode copy), not shared storage');
    this.diskBlocks = disk.totalBlocks;
  }

  async pages(pages: Uint32Array, data: Uint8Array) {
    const e = this.stream.encode(pages, data);
    await this.section(Section.PAGES, e.payload);
    return { wireBytes: e.wireBytes + SECTION_HEADER_BYTES, nonZeroPages: e.nonZeroPages, nonZeroBytes: e.nonZeroBytes };
  }

  /** A batch of disk blocks: a BLOCKS section. */
  async blocks(blocks: Uint32Array, data: Uint8Array): Promise<{ wireBytes: number }> {
    const e = this.blockStream.encode(blocks, data);
    await this.section(Section.BLOCKS, e.payload);
    return { wireBytes: e.wireBytes + SECTION_HEADER_BYTES };
  }

  /**
   * The disk's remainder (every block for a stop-the-world snapshot, the ones written since
   * their last copy for a live one), read from the held source, then STATE and END.
   */
  async pull(missing: Uint32Array, read: (blocks: Uint32Array) => Promise<Uint8Array>): Promise<PullStats> {
    const t0 = performance.now();
    let wireBytes = 0;
    for (let i = 0; i < missing.length; i += MAX_BATCH_PAGES / 8) {
      const chunk = missing.subarray(i, Math.min(missing.length, i + MAX_BATCH_PAGES / 8));
      wireBytes += (await this.blocks(chunk, await read(chunk))).wireBytes;
    }
    const state = this.pendingState;
    if (!state) throw new SnapshotError('FTVM_ERR_SNAPSHOT_WRITE', 'the disk was written before the guest state');
    this.pendingState = null;
    await this.writeEnd(state);
    return { demandBlocks: 0, pushedBlocks: missing.length, wireBytes, ms: performance.now() - t0 };
  }

  async endRound(): Promise<void> {}

  /** Writes STATE and END (a guest with a disk: after pull()): the file is complete (not yet durable; see finish). */
  async commit(state: FinalState): Promise<void> {
    if (this.diskBlocks > 0) this.pendingState = state;
    else await this.writeEnd(state);
  }

  private async writeEnd(state: FinalState): Promise<void> {
    const disk = this.diskBlocks > 0 ? { blocks: this.diskBlocks, digest: this.blockStream.digest.value() } : undefined;
    await this.section(Section.STATE, packr.pack({ epoch: state.epoch, memBytes: state.memBytes, globals: state.globals, devices: state.devices, ...(disk ? { disk } : {}) }));
    const end = Buffer.alloc(END_BYTES);
    end.writeUInt32LE(this.sections, 0);
    end.writeUInt32LE(state.memBytes / PAGE_BYTES, 4);
    end.set(this.stream.digest.value(), 8);
    await this.section(Section.END, end);
    this.macDone = true;
    await this.section(Section.MAC, this.mac.digest());
  }

  /** fsync, link to `path` (FTVM_ERR_SNAPSHOT_EXISTS if it exists), fsync the directory. */
  async finish(): Promise<void> {
    if (!this.fh) throw new SnapshotError('FTVM_ERR_SNAPSHOT_WRITE', `${this.tmpPath} is closed`);
    await this.fh.sync();
    await this.fh.close();
    this.fh = null;
    try {
      await link(this.tmpPath, this.path);
    } catch (e) {
      await unlink(this.tmpPath).catch(() => undefined);
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'EEXIST') throw new SnapshotError('FTVM_ERR_SNAPSHOT_EXISTS', `${this.path} exists: a snapshot never replaces a file`);
      throw new SnapshotError('FTVM_ERR_SNAPSHOT_WRITE', `cannot create ${this.path}: ${err.message}`, { cause: e });
    }
    await unlink(this.tmpPath).catch(() => undefined);
    this.done = true;
    try {
      const d = openSync(dirname(this.path), 'r');
      try {
        fsyncSync(d);
      } finally {
        closeSync(d);
      }
    } catch {
      // Some filesystems refuse a directory fsync; the rename itself is atomic.
    }
  }

  async abort(): Promise<void> {
    if (this.done) return;
    await this.fh?.close().catch(() => undefined);
    this.fh = null;
    await unlink(this.tmpPath).catch(() => undefined);
  }
}

export interface ReadSnapshot {
  info: SnapshotInfo;
  /** The original module. */
  wasm: Uint8Array;
  checkpoint: Checkpoint;
  /** The virtual disk captured with the memory (a guest with a disk), digest-checked. */
  disk?: { blocks: number; image: Uint8Array };
  /** File size, bytes. */
  bytes: number;
}

function corrupt(msg: string): SnapshotError {
  return new SnapshotError('FTVM_ERR_SNAPSHOT_CORRUPT', msg);
}

/** Checks the MAC ending the file under `key` (FTVM_ERR_SNAPSHOT_AUTH). */
async function verifyMac(fh: FileHandle, path: string, size: number, key: Uint8Array): Promise<void> {
  if (size < HEADER_BYTES + MAC_SECTION_BYTES) throw new SnapshotError('FTVM_ERR_SNAPSHOT_TRUNCATED', `${path} is ${size} bytes: shorter than a snapshot`);
  const h = createHmac('sha256', key);
  const buf = Buffer.allocUnsafe(1 << 20);
  const end = size - MAC_SECTION_BYTES;
  for (let at = 0; at < end; ) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, end - at), at);
    if (bytesRead === 0) throw new SnapshotError('FTVM_ERR_SNAPSHOT_TRUNCATED', `${path} ended while reading`);
    h.update(buf.subarray(0, bytesRead));
    at += bytesRead;
  }
  const tail = Buffer.alloc(MAC_SECTION_BYTES);
  await fh.read(tail, 0, MAC_SECTION_BYTES, end);
  const mac = tail.subarray(SECTION_HEADER_BYTES);
  if (tail[0] !== Section.MAC || tail.readUInt32LE(4) !== MAC_BYTES)
    throw new SnapshotError('FTVM_ERR_SNAPSHOT_TRUNCATED', `${path} does not end with its MAC section: an incomplete snapshot`);
  if (!timingSafeEqual(h.digest(), mac))
    throw new SnapshotError('FTVM_ERR_SNAPSHOT_AUTH', `${path} does not carry a valid MAC under this token: not written by a node holding it, or altered since`);
}

/**
 * Reads and verifies a snapshot file; any defect is a coded SnapshotError. `key` is the
 * cluster token the file's MAC was made under.
 */
export async function readSnapshot(path: string, key: Uint8Array): Promise<ReadSnapshot> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw new SnapshotError('FTVM_ERR_SNAPSHOT_READ', `cannot open ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const fileSize = (await fh.stat()).size;
    // Parsed below only once the MAC holds; everything up to END, without the MAC section.
    const head0 = Buffer.alloc(Math.min(HEADER_BYTES, fileSize));
    await fh.read(head0, 0, head0.length, 0);
    if (head0.length >= 8 && head0.toString('latin1', 0, 8) !== SNAPSHOT_MAGIC) throw new SnapshotError('FTVM_ERR_SNAPSHOT_FORMAT', `${path} is not an ftvm snapshot (bad magic)`);
    if (head0.length === HEADER_BYTES && head0.readUInt32LE(12) === crc32(head0.subarray(0, 12)) && head0.readUInt32LE(8) !== SNAPSHOT_VERSION)
      throw new SnapshotError('FTVM_ERR_SNAPSHOT_VERSION', `${path} is snapshot format version ${head0.readUInt32LE(8)}; this ftvm reads version ${SNAPSHOT_VERSION}`);
    await verifyMac(fh, path, fileSize, key);
    const size = fileSize - MAC_SECTION_BYTES;
    let at = 0;
    const readExact = async (n: number, what: string): Promise<Buffer> => {
      if (at + n > size) throw new SnapshotError('FTVM_ERR_SNAPSHOT_TRUNCATED', `${path} ends inside ${what} (at byte ${at} of ${size}): an incomplete snapshot`);
      const b = Buffer.allocUnsafe(n);
      let got = 0;
      while (got < n) {
        const { bytesRead } = await fh.read(b, got, n - got, at + got);
        if (bytesRead === 0) throw new SnapshotError('FTVM_ERR_SNAPSHOT_TRUNCATED', `${path} ends inside ${what}`);
        got += bytesRead;
      }
      at += n;
      return b;
    };
    if (size < HEADER_BYTES) throw new SnapshotError('FTVM_ERR_SNAPSHOT_TRUNCATED', `${path} is ${size} bytes: shorter than a snapshot header`);
    const head = await readExact(HEADER_BYTES, 'the header');
    if (head.toString('latin1', 0, 8) !== SNAPSHOT_MAGIC) throw new SnapshotError('FTVM_ERR_SNAPSHOT_FORMAT', `${path} is not an ftvm snapshot (bad magic)`);
    if (head.readUInt32LE(12) !== crc32(head.subarray(0, 12))) throw corrupt(`${path}: header checksum mismatch`);
    const version = head.readUInt32LE(8);
    if (version !== SNAPSHOT_VERSION) throw new SnapshotError('FTVM_ERR_SNAPSHOT_VERSION', `${path} is snapshot format version ${version}; this ftvm reads version ${SNAPSHOT_VERSION}`);

    let info: SnapshotInfo | null = null;
    let wasm: Uint8Array | null = null;
    type State = { epoch: number; memBytes: number; globals: Checkpoint['globals']; devices: Checkpoint['devices']; disk?: { blocks: number; digest: Uint8Array } };
    let state: State | null = null as State | null;
    // Shared: ftvm restore hands the image to the vCPU worker and keeps it as its rollback point, no copy.
    const decoder = new PageDecoder({ shared: true });
    const diskDecoder = new PageDecoder({ maxImageBytes: MAX_DISK_BYTES });
    let sawBlocks = false;
    let sections = 0;
    let expected: number = Section.INFO;
    for (;;) {
      const sh = await readExact(SECTION_HEADER_BYTES, `section ${sections + 1}'s header`);
      const type = sh[0]!;
      const len = sh.readUInt32LE(4);
      if (((type < Section.INFO || type > Section.END) && type !== Section.BLOCKS) || sh[1] !== 0 || sh[2] !== 0 || sh[3] !== 0) throw corrupt(`${path}: section ${sections + 1} has unknown type ${type}`);
      if (len > MAX_SECTION_BYTES) throw corrupt(`${path}: section ${sections + 1} (${SECTION_NAMES[type]}) claims ${len} bytes, over the ${MAX_SECTION_BYTES} limit`);
      const body = await readExact(len, `section ${sections + 1} (${SECTION_NAMES[type]})`);
      if (crc32(body) !== sh.readUInt32LE(8)) throw corrupt(`${path}: section ${sections + 1} (${SECTION_NAMES[type]}) checksum mismatch`);
      // Order: INFO MODULE (PAGES | BLOCKS)* STATE END.
      const ok =
        type === expected ||
        ((type === Section.PAGES || type === Section.BLOCKS) && expected === Section.STATE) ||
        (type === Section.STATE && expected === Section.STATE);
      if (!ok) throw corrupt(`${path}: section ${sections + 1} is ${SECTION_NAMES[type]}, expected ${SECTION_NAMES[expected]}`);
      try {
        switch (type) {
          case Section.INFO:
            info = packr.unpack(body) as SnapshotInfo;
            if (!info || typeof info.moduleDigest !== 'string' || typeof info.guest !== 'string') throw new Error('INFO lacks guest or moduleDigest');
            expected = Section.MODULE;
            break;
          case Section.MODULE:
            wasm = new Uint8Array(body);
            if (moduleDigest(wasm) !== info!.moduleDigest) throw corrupt(`${path}: MODULE does not hash to INFO's module digest`);
            expected = Section.STATE;
            break;
          case Section.PAGES:
            decoder.apply(body);
            break;
          case Section.BLOCKS:
            diskDecoder.apply(body);
            sawBlocks = true;
            break;
          case Section.STATE:
            state = packr.unpack(body) as State | null;
            if (!state || !Number.isSafeInteger(state.memBytes) || state.memBytes % 65536 !== 0 || state.memBytes > MAX_MEMORY_BYTES || !Array.isArray(state.globals) || !state.devices)
              throw new Error('STATE lacks memBytes, globals or devices');
            if (state.disk !== undefined && (!state.disk || !Number.isSafeInteger(state.disk.blocks) || state.disk.blocks < 1 || state.disk.blocks * PAGE_BYTES > MAX_DISK_BYTES || !(state.disk.digest instanceof Uint8Array) || state.disk.digest.length !== DIGEST_BYTES))
              throw new Error('STATE has a malformed disk entry');
            if (sawBlocks && !state.disk) throw new Error('BLOCKS sections without a disk in STATE');
            expected = Section.END;
            break;
        }
      } catch (e) {
        if (e instanceof SnapshotError) throw e;
        throw corrupt(`${path}: section ${sections + 1} (${SECTION_NAMES[type]}) does not decode: ${(e as Error).message}`);
      }
      if (type === Section.END) {
        if (len !== END_BYTES) throw corrupt(`${path}: END is ${len} bytes, expected ${END_BYTES}`);
        if (body.readUInt32LE(0) !== sections) throw corrupt(`${path}: END counts ${body.readUInt32LE(0)} sections before it, the file has ${sections}`);
        if (at !== size) throw corrupt(`${path}: ${size - at} bytes after END`);
        const memBytes = state!.memBytes;
        if (body.readUInt32LE(4) !== memBytes / PAGE_BYTES) throw corrupt(`${path}: END says ${body.readUInt32LE(4)} pages, STATE ${memBytes / PAGE_BYTES}`);
        decoder.ensure(memBytes);
        const image = decoder.image.subarray(0, memBytes);
        // Pages beyond memBytes would be a writer bug: they must all be zero to be ignored.
        if (decoder.image.length > memBytes && decoder.image.subarray(memBytes).some((v) => v !== 0)) throw corrupt(`${path}: pages beyond memory (${memBytes} bytes)`);
        if (!digestEquals(digestImage(image), body.subarray(8, 8 + DIGEST_BYTES)))
          throw new SnapshotError('FTVM_ERR_SNAPSHOT_DIGEST', `${path}: the image digest does not match the one recorded at END`);
        let disk: ReadSnapshot['disk'];
        if (state!.disk) {
          const bytes = state!.disk.blocks * PAGE_BYTES;
          diskDecoder.ensure(bytes);
          if (diskDecoder.image.length > bytes && diskDecoder.image.subarray(bytes).some((v) => v !== 0)) throw corrupt(`${path}: disk blocks beyond the disk (${state!.disk.blocks} blocks)`);
          const image = diskDecoder.image.subarray(0, bytes);
          if (!digestEquals(digestImage(image), state!.disk.digest))
            throw new SnapshotError('FTVM_ERR_SNAPSHOT_DIGEST', `${path}: the disk's digest does not match the one recorded in STATE`);
          disk = { blocks: state!.disk.blocks, image };
        }
        const checkpoint: Checkpoint = {
          format: 1,
          moduleDigest: info!.moduleDigest,
          epoch: state!.epoch,
          memBytes,
          memory: new Uint8Array(image.buffer, image.byteOffset, memBytes),
          globals: state!.globals,
          devices: state!.devices,
        };
        return { info: info!, wasm: wasm!, checkpoint, ...(disk ? { disk } : {}), bytes: size };
      }
      sections++;
    }
  } finally {
    await fh.close();
  }
}

/**
 * Writes a verified snapshot's disk to `path` (a new or empty file, mode 0600, fsynced) and
 * returns the disk to restore the guest with; undefined for a snapshot without a disk. A
 * snapshot with a disk and no path, or a path for a snapshot without one, is refused
 * (FTVM_ERR_DISK_MISMATCH), as is a file holding data (FTVM_ERR_DISK_EXISTS).
 */
export function writeSnapshotDisk(snap: ReadSnapshot, path: string | undefined): { path: string; blocks: number } | undefined {
  if (!snap.disk) {
    if (path !== undefined) throw new SnapshotError('FTVM_ERR_DISK_MISMATCH', `the snapshot holds no virtual disk: ${path} would stay unused`);
    return undefined;
  }
  if (path === undefined) throw new SnapshotError('FTVM_ERR_DISK_MISMATCH', `the snapshot holds a virtual disk of ${snap.disk.blocks} blocks: restore it with --disk <new file>`);
  if (existsSync(path) && statSync(path).size > 0) throw new SnapshotError('FTVM_ERR_DISK_EXISTS', `${path} exists and is not empty: a restored disk goes to a new file (remove it first)`);
  const fd = openSync(path, 'w', 0o600);
  try {
    const img = snap.disk.image;
    for (let at = 0; at < img.length; ) at += writeSync(fd, img, at, Math.min(img.length - at, 64 << 20), at);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return { path, blocks: snap.disk.blocks };
}
