/**
 * The secondary's disk commit: a redo journal, so that after a crash at any instant the
 * disk file holds exactly epoch N-1 or epoch N, never a mix.
 *
 * Protocol for epoch N (file `<disk>.journal`):
 *   1. stage: while N streams in, each block is appended as u32 block | 4096 bytes;
 *   2. seal: a commit record (magic, epoch, full flag, size, block count, crc32 of every
 *      byte before it) is appended; fsync(journal)  <- the commit point;
 *   3. apply: full checkpoints first empty the file (truncate to 0, then to its size:
 *      every block not in the journal is zero); each block is written in place; fsync(disk);
 *   4. clear: truncate the journal to 0 (not synced: see clear()).
 * An incremental epoch without blocks skips all four (two fsyncs per epoch that wrote the disk).
 * At start, recover(): a journal whose commit record is complete and whose crc matches is
 * applied again (steps 3-4 are idempotent), anything else is discarded (the disk was not
 * touched before step 2 finished). A crash before the commit point leaves N-1, after it N.
 *
 * Every size is bounded: a journal holds at most the disk's blocks plus its header and
 * commit record; staging refuses block numbers outside the disk and more blocks than it has.
 */
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { fsync } from 'node:fs';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
// guest-abi, not the vmm package root: that loads binaryen (~1 s), and a journal is opened by small tools and tests too.
import { PAGE_BYTES } from '@ftvm/guest-abi';
import type { DiskSpec } from '@ftvm/vmm';
import { SecondaryError } from './errors.js';

/** Disk block, bytes (the VMM's DISK_BLOCK_BYTES). */
const DISK_BLOCK_BYTES = PAGE_BYTES;
const RECORD_BYTES = 4 + DISK_BLOCK_BYTES;
/** Commit record: magic u32 | epoch f64 | full u32 | blocks u32 | count u32 | crc u32. */
const COMMIT_BYTES = 4 + 8 + 4 + 4 + 4 + 4;
const COMMIT_MAGIC = 0x4b4d4f43; // "COMK"
/** Records buffered per journal write (and read per apply read): 1 MiB. */
const RECORDS_PER_WRITE = 256;

/** Test hook: the step after which a test process kills itself (see the crash tests). */
export type JournalCrashPoint = 'staged' | 'sealed' | 'applying' | 'applied';

const fsyncAsync = promisify(fsync);

export const journalPath = (disk: string): string => `${disk}.journal`;

function writeAll(fd: number, b: Uint8Array, pos: number): void {
  let done = 0;
  while (done < b.length) done += writeSync(fd, b, done, b.length - done, pos + done);
}

function readAll(fd: number, b: Uint8Array, pos: number): number {
  let done = 0;
  while (done < b.length) {
    const n = readSync(fd, b, done, b.length - done, pos + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

export interface DiskJournalOptions {
  /** Test hook: called after each step with its name; a test process kills itself there. */
  onStep?: (step: JournalCrashPoint, epoch: number) => void;
}

/** What recover() found at start. */
export type RecoverResult = { action: 'none' } | { action: 'discarded'; bytes: number } | { action: 'replayed'; epoch: number; blocks: number };

export class DiskJournal {
  private disk: number;
  private jfd: number;
  private staging: { epoch: number; full: boolean; count: number; bytes: number; crc: number; seen: Uint8Array } | null = null;
  /**
   * Records not yet written: the journal is written RECORDS_PER_WRITE records at a time (a
   * syscall per block kept a full sync of a 256 MiB disk from answering heartbeats).
   */
  private pending = new Uint8Array(RECORDS_PER_WRITE * RECORD_BYTES);
  private pendingBytes = 0;

  constructor(readonly spec: DiskSpec, private readonly opts: DiskJournalOptions = {}) {
    try {
      this.disk = openSync(spec.path, 'r+');
    } catch (e) {
      throw new SecondaryError('FTVM_ERR_DISK_OPEN', `cannot open disk ${spec.path}: ${(e as Error).message}`, { cause: e });
    }
    this.jfd = openSync(journalPath(spec.path), existsSync(journalPath(spec.path)) ? 'r+' : 'w+', 0o600);
  }

  /**
   * Finishes or discards what a crash left: a sealed journal is applied again, an unsealed
   * one dropped. Call once, before the first begin().
   */
  recover(): RecoverResult {
    const size = fstatSync(this.jfd).size;
    if (size === 0) return { action: 'none' };
    const sealed = this.readSeal(size);
    if (!sealed) {
      this.clear();
      return { action: 'discarded', bytes: size };
    }
    this.apply(sealed.epoch, sealed.full, sealed.count);
    this.clear();
    return { action: 'replayed', epoch: sealed.epoch, blocks: sealed.count };
  }

  /** A valid commit record at the end of a journal of `size` bytes, or null. */
  private readSeal(size: number): { epoch: number; full: boolean; blocks: number; count: number } | null {
    if (size < COMMIT_BYTES || (size - COMMIT_BYTES) % RECORD_BYTES !== 0) return null;
    const rec = new Uint8Array(COMMIT_BYTES);
    readAll(this.jfd, rec, size - COMMIT_BYTES);
    const dv = new DataView(rec.buffer);
    if (dv.getUint32(0, true) !== COMMIT_MAGIC) return null;
    const epoch = dv.getFloat64(4, true);
    const full = dv.getUint32(12, true) === 1;
    const blocks = dv.getUint32(16, true);
    const count = dv.getUint32(20, true);
    if (count * RECORD_BYTES !== size - COMMIT_BYTES || blocks !== this.spec.blocks) return null;
    let crc = 0;
    const buf = new Uint8Array(RECORD_BYTES * 64);
    for (let pos = 0; pos < size - COMMIT_BYTES; ) {
      const n = Math.min(buf.length, size - COMMIT_BYTES - pos);
      readAll(this.jfd, buf.subarray(0, n), pos);
      crc = crc32(buf.subarray(0, n), crc);
      pos += n;
    }
    // The crc covers the commit fields too (everything before the crc itself).
    crc = crc32(rec.subarray(0, COMMIT_BYTES - 4), crc);
    return crc === dv.getUint32(COMMIT_BYTES - 4, true) ? { epoch, full, blocks, count } : null;
  }

  /** Starts staging epoch `epoch` (dropping anything staged before). */
  begin(epoch: number, full: boolean): void {
    this.pendingBytes = 0;
    if (this.staging || fstatSync(this.jfd).size > 0) ftruncateSync(this.jfd, 0);
    this.staging = { epoch, full, count: 0, bytes: 0, crc: 0, seen: new Uint8Array(this.spec.blocks) };
  }

  /** Stages one block (4096 bytes at `off` of `data`); a block outside the disk or sent twice is refused. */
  add(block: number, data: Uint8Array, off = 0): void {
    const st = this.staging;
    if (!st) throw new SecondaryError('FTVM_ERR_DISK_JOURNAL', 'a disk block arrived outside a checkpoint');
    if (!Number.isInteger(block) || block < 0 || block >= this.spec.blocks)
      throw new SecondaryError('FTVM_ERR_DISK_JOURNAL', `disk block ${block} is outside the ${this.spec.blocks}-block disk`);
    if (st.seen[block]) throw new SecondaryError('FTVM_ERR_DISK_JOURNAL', `disk block ${block} sent twice in epoch ${st.epoch}`);
    st.seen[block] = 1;
    const rec = this.pending.subarray(this.pendingBytes, this.pendingBytes + RECORD_BYTES);
    new DataView(rec.buffer, rec.byteOffset, 4).setUint32(0, block, true);
    rec.set(data.subarray(off, off + DISK_BLOCK_BYTES), 4);
    st.crc = crc32(rec, st.crc);
    this.pendingBytes += RECORD_BYTES;
    st.count++;
    if (this.pendingBytes === this.pending.length) this.flushPending();
  }

  /** Writes the buffered records at the journal's end. */
  private flushPending(): void {
    const st = this.staging;
    if (!st || this.pendingBytes === 0) return;
    writeAll(this.jfd, this.pending.subarray(0, this.pendingBytes), st.bytes);
    st.bytes += this.pendingBytes;
    this.pendingBytes = 0;
  }

  get stagedBlocks(): number {
    return this.staging?.count ?? 0;
  }

  /** Drops the staged epoch (it failed verification or was abandoned). */
  discard(): void {
    this.staging = null;
    this.pendingBytes = 0;
    this.clear();
  }

  /** Seals, applies and clears the staged epoch: on return the disk file is that epoch, durably. */
  commit(): void {
    const sealed = this.seal();
    if (!sealed) return;
    fsyncSync(this.jfd);
    this.step('sealed', sealed.epoch);
    this.prepareApply(sealed.full);
    for (let i = 0; i < sealed.count; i += RECORDS_PER_WRITE) this.applyChunk(i, sealed.count, sealed.epoch);
    fsyncSync(this.disk);
    this.step('applied', sealed.epoch);
    this.clear();
  }

  /**
   * commit() for a runtime's event loop: the fsyncs run on the libuv pool and the apply
   * yields between 1 MiB chunks, so heartbeats keep flowing while a large epoch (a full
   * sync of the disk) commits. Nothing else may use the journal until it settles.
   */
  async commitAsync(): Promise<void> {
    const sealed = this.seal();
    if (!sealed) return;
    await fsyncAsync(this.jfd);
    this.step('sealed', sealed.epoch);
    this.prepareApply(sealed.full);
    for (let i = 0; i < sealed.count; i += RECORDS_PER_WRITE) {
      this.applyChunk(i, sealed.count, sealed.epoch);
      await new Promise<void>((r) => setImmediate(r));
    }
    await fsyncAsync(this.disk);
    this.step('applied', sealed.epoch);
    this.clear();
  }

  /** Writes the staged epoch's commit record (not yet synced); null when there is nothing to commit. */
  private seal(): { epoch: number; full: boolean; count: number } | null {
    const st = this.staging;
    if (!st) throw new SecondaryError('FTVM_ERR_DISK_JOURNAL', 'commit without a staged epoch');
    this.flushPending();
    this.staging = null;
    // An incremental epoch that wrote no block leaves the disk as it is: no record, no fsync.
    if (st.count === 0 && !st.full) return null;
    this.step('staged', st.epoch);
    const rec = new Uint8Array(COMMIT_BYTES);
    const dv = new DataView(rec.buffer);
    dv.setUint32(0, COMMIT_MAGIC, true);
    dv.setFloat64(4, st.epoch, true);
    dv.setUint32(12, st.full ? 1 : 0, true);
    dv.setUint32(16, this.spec.blocks, true);
    dv.setUint32(20, st.count, true);
    dv.setUint32(COMMIT_BYTES - 4, crc32(rec.subarray(0, COMMIT_BYTES - 4), st.crc), true);
    writeAll(this.jfd, rec, st.bytes);
    return { epoch: st.epoch, full: st.full, count: st.count };
  }

  /** Writes a sealed journal's blocks into the disk file and syncs it. Idempotent (recovery). */
  private apply(epoch: number, full: boolean, count: number): void {
    this.prepareApply(full);
    for (let i = 0; i < count; i += RECORDS_PER_WRITE) this.applyChunk(i, count, epoch);
    fsyncSync(this.disk);
  }

  private prepareApply(full: boolean): void {
    if (full) {
      // Every block the full checkpoint did not carry is zero.
      ftruncateSync(this.disk, 0);
      ftruncateSync(this.disk, this.spec.blocks * DISK_BLOCK_BYTES);
    }
  }

  private readonly chunk = new Uint8Array(RECORDS_PER_WRITE * RECORD_BYTES);
  private readonly run = new Uint8Array(RECORDS_PER_WRITE * DISK_BLOCK_BYTES);

  /** Applies records [i, i + RECORDS_PER_WRITE) of `count`. */
  private applyChunk(i: number, count: number, epoch: number): void {
    const buf = this.chunk;
    const run = this.run;
    const dv = new DataView(buf.buffer);
    const n = Math.min(RECORDS_PER_WRITE, count - i);
    readAll(this.jfd, buf.subarray(0, n * RECORD_BYTES), i * RECORD_BYTES);
    // Runs of consecutive blocks (a full sync is sorted) go out in one write.
    for (let k = 0; k < n; ) {
      const first = dv.getUint32(k * RECORD_BYTES, true);
      let len = 0;
      while (k + len < n && dv.getUint32((k + len) * RECORD_BYTES, true) === first + len) {
        run.set(buf.subarray((k + len) * RECORD_BYTES + 4, (k + len + 1) * RECORD_BYTES), len * DISK_BLOCK_BYTES);
        len++;
      }
      writeAll(this.disk, run.subarray(0, len * DISK_BLOCK_BYTES), first * DISK_BLOCK_BYTES);
      if (i + k <= count >> 1 && count >> 1 < i + k + len) this.step('applying', epoch);
      k += len;
    }
  }

  /**
   * Empties the journal. Not synced: if the truncation is lost in a crash, the sealed journal
   * of an epoch already applied (and synced) is applied again, which changes nothing; and a
   * next epoch's records written over it break its crc, so it is discarded.
   */
  private clear(): void {
    ftruncateSync(this.jfd, 0);
  }

  private step(s: JournalCrashPoint, epoch: number): void {
    this.opts.onStep?.(s, epoch);
  }

  close(): void {
    if (this.disk >= 0) closeSync(this.disk);
    if (this.jfd >= 0) closeSync(this.jfd);
    this.disk = -1;
    this.jfd = -1;
  }
}
