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

/** Test hook: the step after which a test process kills itself (see the crash tests). */
export type JournalCrashPoint = 'staged' | 'sealed' | 'applying' | 'applied';

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
    this.apply(sealed.epoch, sealed.full, sealed.blocks, sealed.count);
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
    const rec = new Uint8Array(RECORD_BYTES);
    new DataView(rec.buffer).setUint32(0, block, true);
    rec.set(data.subarray(off, off + DISK_BLOCK_BYTES), 4);
    writeAll(this.jfd, rec, st.bytes);
    st.crc = crc32(rec, st.crc);
    st.bytes += RECORD_BYTES;
    st.count++;
  }

  get stagedBlocks(): number {
    return this.staging?.count ?? 0;
  }

  /** Drops the staged epoch (it failed verification or was abandoned). */
  discard(): void {
    this.staging = null;
    this.clear();
  }

  /** Seals, applies and clears the staged epoch: on return the disk file is that epoch, durably. */
  commit(): void {
    const st = this.staging;
    if (!st) throw new SecondaryError('FTVM_ERR_DISK_JOURNAL', 'commit without a staged epoch');
    this.staging = null;
    // An incremental epoch that wrote no block leaves the disk as it is: no record, no fsync.
    if (st.count === 0 && !st.full) return;
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
    fsyncSync(this.jfd);
    this.step('sealed', st.epoch);
    this.apply(st.epoch, st.full, this.spec.blocks, st.count);
    this.step('applied', st.epoch);
    this.clear();
  }

  /** Writes a sealed journal's blocks into the disk file and syncs it. Idempotent. */
  private apply(epoch: number, full: boolean, blocks: number, count: number): void {
    if (full) {
      // Every block the full checkpoint did not carry is zero.
      ftruncateSync(this.disk, 0);
      ftruncateSync(this.disk, blocks * DISK_BLOCK_BYTES);
    }
    const rec = new Uint8Array(RECORD_BYTES);
    const dv = new DataView(rec.buffer);
    for (let i = 0; i < count; i++) {
      readAll(this.jfd, rec, i * RECORD_BYTES);
      writeAll(this.disk, rec.subarray(4), dv.getUint32(0, true) * DISK_BLOCK_BYTES);
      if (i === count >> 1) this.step('applying', epoch);
    }
    fsyncSync(this.disk);
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
