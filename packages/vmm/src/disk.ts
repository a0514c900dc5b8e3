/**
 * The virtual disk: a file of 4 KiB blocks with a dirty block bitmap.
 *
 * Writes go through to the file at once (synchronous fs on the vCPU thread: the guest is
 * blocked in disk_write exactly as a vCPU is in a synchronous virtio request), so a
 * process that dies keeps every write it made. Two things are layered on top:
 *
 * - the dirty bitmap: one byte per block written since the last takeDirty(); an epoch's
 *   dirty blocks travel in its checkpoint (O(dirty blocks) to collect, one word read per
 *   8 blocks to scan).
 * - an optional undo file (`ftvm run`'s local rollback): before the first write of a block
 *   since the last checkpoint, its old contents are appended to `<disk>.undo`. Rolling
 *   memory back to that checkpoint applies the undo file, so the disk rolls back with it.
 *   The record is written before the block, so a write cut short is covered too.
 */
import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, read, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { PAGE_BYTES } from '@ftvm/guest-abi';
import { VmmError } from './errors.js';

/** Disk block size, bytes: the dirty-log page size, so the page codecs carry blocks unchanged. */
export const DISK_BLOCK_BYTES = PAGE_BYTES;
/** Largest disk: 4 GiB (block numbers share the 4 GiB page-number space of the codecs; the ABI's block is an i32). */
export const MAX_DISK_BYTES = 4 * 1024 * 1024 * 1024;
export const MAX_DISK_BLOCKS = MAX_DISK_BYTES / DISK_BLOCK_BYTES;

/** Results of disk_read / disk_write, as the guest sees them. */
export const DiskStatus = {
  OK: 0,
  /** The VMM has no disk. */
  NO_DISK: -1,
  /** block < 0, n < 1 or block + n past the end of the disk. */
  BAD_RANGE: -2,
  /** [ptr, ptr + n * 4096) is outside guest memory (or, for a read, inside the reserved region). */
  BAD_BUFFER: -3,
  /** The host's read or write failed. */
  IO_ERROR: -4,
} as const;

/** A disk the VMM opens: its file and size in blocks (the file is at least that long). */
export interface DiskSpec {
  path: string;
  blocks: number;
}

/**
 * Creates or extends the disk file and returns its spec. `sizeBytes` undefined: the file
 * must exist and keeps its size. A size below the existing file's is refused (shrinking
 * would drop data the guest wrote); sizes are whole 4 KiB blocks up to 4 GiB.
 */
export function prepareDisk(path: string, sizeBytes?: number): DiskSpec {
  if (sizeBytes !== undefined && (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % DISK_BLOCK_BYTES !== 0 || sizeBytes > MAX_DISK_BYTES))
    throw new VmmError('FTVM_ERR_DISK_SIZE', `disk size must be a positive multiple of ${DISK_BLOCK_BYTES} bytes up to 4 GiB, got ${sizeBytes}`);
  let have = -1;
  if (existsSync(path)) {
    const st = statSync(path);
    if (!st.isFile()) throw new VmmError('FTVM_ERR_DISK_OPEN', `disk ${path} is not a regular file`);
    have = st.size;
    if (have % DISK_BLOCK_BYTES !== 0 || have > MAX_DISK_BYTES)
      throw new VmmError('FTVM_ERR_DISK_SIZE', `disk ${path} is ${have} bytes: not a whole number of ${DISK_BLOCK_BYTES}-byte blocks up to 4 GiB`);
  }
  if (have < 0 && sizeBytes === undefined) throw new VmmError('FTVM_ERR_DISK_SIZE', `disk ${path} does not exist: give its size (--disk-size) to create it`);
  if (sizeBytes !== undefined && have > sizeBytes)
    throw new VmmError('FTVM_ERR_DISK_SHRINK', `disk ${path} is ${have} bytes; --disk-size ${sizeBytes} would shrink it (refused: the guest's data would be cut)`);
  const size = sizeBytes ?? have;
  if (have !== size) {
    let fd: number;
    try {
      fd = openSync(path, have < 0 ? 'w+' : 'r+', 0o600);
    } catch (e) {
      throw new VmmError('FTVM_ERR_DISK_OPEN', `cannot create disk ${path}: ${(e as Error).message}`, { cause: e });
    }
    try {
      ftruncateSync(fd, size);
    } finally {
      closeSync(fd);
    }
  }
  if (size === 0) throw new VmmError('FTVM_ERR_DISK_SIZE', `disk ${path} is empty: give its size (--disk-size)`);
  return { path, blocks: size / DISK_BLOCK_BYTES };
}

/** Path of the undo file of a disk (ftvm run's local rollback). */
export const undoPath = (disk: string): string => `${disk}.undo`;

/** Reads exactly len bytes at pos (a short read past the end of file reads zeros). */
function preadFull(fd: number, into: Uint8Array, off: number, len: number, pos: number): void {
  let done = 0;
  while (done < len) {
    const n = readSync(fd, into, off + done, len - done, pos + done);
    if (n === 0) {
      into.fill(0, off + done, off + len);
      return;
    }
    done += n;
  }
}

function pwriteFull(fd: number, from: Uint8Array, off: number, len: number, pos: number): void {
  let done = 0;
  while (done < len) done += writeSync(fd, from, off + done, len - done, pos + done);
}

const ZERO_BLOCK = new Uint8Array(DISK_BLOCK_BYTES);
const isZeroBlock = (b: Uint8Array, off: number): boolean => Buffer.compare(b.subarray(off, off + DISK_BLOCK_BYTES), ZERO_BLOCK) === 0;

/**
 * Reads the listed blocks of an open disk file without blocking the thread (libuv's pool):
 * block i at i * 4096 of the result; runs of consecutive blocks are one read. The main
 * thread's side of a pre-copy (PUSH rounds, PULL answers).
 */
export async function readBlocksAsync(fd: number, list: ArrayLike<number>): Promise<Uint8Array> {
  const out = new Uint8Array(list.length * DISK_BLOCK_BYTES);
  const readAt = (off: number, len: number, pos: number): Promise<number> =>
    new Promise((resolve, reject) => read(fd, out, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
  for (let i = 0; i < list.length; ) {
    let j = i + 1;
    while (j < list.length && list[j] === list[j - 1]! + 1 && j - i < 256) j++;
    const len = (j - i) * DISK_BLOCK_BYTES;
    let done = 0;
    while (done < len) {
      const n = await readAt(i * DISK_BLOCK_BYTES + done, len - done, list[i]! * DISK_BLOCK_BYTES + done);
      if (n === 0) break; // past the end of the file: zeros (out is zero-filled)
      done += n;
    }
    i = j;
  }
  return out;
}

/** Undo-file record: u32 block number (little-endian) + the block's old 4096 bytes. */
const UNDO_RECORD_BYTES = 4 + DISK_BLOCK_BYTES;

/**
 * Migration PULL (the destination runs before every block arrived): one Int32 per block,
 * shared between the VMM's main thread and the vCPU worker. PRESENT (0) is the default, so a
 * zeroed array is a complete disk. The main thread moves a block MISSING -> FILLING ->
 * PRESENT as its data arrives (Atomics.notify on the block); a guest read or write of a block
 * that is not PRESENT waits for it (Atomics.wait), after asking for it (BlockDeviceOptions.onFetch).
 * Writes wait too: a block's old contents are needed by the undo file, and a write of a
 * missing block must never be overwritten by the pushed copy that follows it.
 */
export const PullState = { PRESENT: 0, MISSING: 1, FILLING: 2 } as const;

export interface BlockDeviceOptions {
  /**
   * 'off': no undo file. 'fresh': keep one, discarding what an earlier VMM left (its
   * checkpoint is gone). 'apply': keep one, first rolling the disk back with what it holds
   * (a local rollback to the checkpoint of the last takeDirty()).
   */
  undo?: 'off' | 'fresh' | 'apply';
  /**
   * Descriptors opened by openDiskFds (the VMM's main thread owns them, so a vCPU worker
   * that is terminated leaks nothing and its successor reuses them). Default: open here
   * and close in close().
   */
  fds?: DiskFds;
  /** Migration PULL: per-block states (PullState), see there. */
  pull?: Int32Array;
  /** Called for a run of blocks a request needs that are MISSING (the vCPU then waits for them). */
  onFetch?: (block: number, n: number) => void;
  /** Called before and after the vCPU waits for fetched blocks (the watchdog must not count it). */
  onWait?: (waiting: boolean) => void;
}

/** The disk file and its undo file (-1: none), opened once per VMM. */
export interface DiskFds {
  disk: number;
  undo: number;
}

/** Opens a disk and (withUndo) its undo file for a VMM; close them with closeDiskFds. */
export function openDiskFds(spec: DiskSpec, withUndo: boolean): DiskFds {
  let disk: number;
  try {
    disk = openSync(spec.path, 'r+');
  } catch (e) {
    throw new VmmError('FTVM_ERR_DISK_OPEN', `cannot open disk ${spec.path}: ${(e as Error).message}`, { cause: e });
  }
  if (fstatSync(disk).size < spec.blocks * DISK_BLOCK_BYTES) {
    closeSync(disk);
    throw new VmmError('FTVM_ERR_DISK_SIZE', `disk ${spec.path} is shorter than ${spec.blocks} blocks`);
  }
  // An undo file from an earlier process belongs to a checkpoint that died with it: never applied.
  rmSync(undoPath(spec.path), { force: true });
  const undo = withUndo ? openSync(undoPath(spec.path), 'w+', 0o600) : -1;
  return { disk, undo };
}

export function closeDiskFds(fds: DiskFds, spec: DiskSpec): void {
  closeSync(fds.disk);
  if (fds.undo >= 0) {
    closeSync(fds.undo);
    rmSync(undoPath(spec.path), { force: true });
  }
}

/** A disk file opened for the vCPU: bounds-checked block I/O, the dirty bitmap, the undo file. */
export class BlockDevice {
  readonly blocks: number;
  private fd: number;
  private undoFd: number;
  private readonly owned: boolean;
  private undoBytes = 0;
  /** dirty[b] = 1: block b was written since the last takeDirty(). Padded to whole 8-byte words. */
  private dirty: Uint8Array;
  private dirtyWords: Float64Array;
  dirtyCount = 0;
  /** A pre-copy's dirty set (second consumer of writes, see takePrecopyDirty); null when not tracking. */
  private pcDirty: Uint8Array | null = null;
  private pcDirtyWords: Float64Array | null = null;
  private pcCount = 0;
  private readonly pull: Int32Array | null;
  private readonly onFetch: ((block: number, n: number) => void) | undefined;
  private readonly onWait: ((waiting: boolean) => void) | undefined;
  /** Blocks this device waited for (PULL), and the time it waited, ms. */
  fetchWaits = 0;
  fetchWaitMs = 0;

  constructor(readonly spec: DiskSpec, opts: BlockDeviceOptions = {}) {
    if (!Number.isInteger(spec.blocks) || spec.blocks < 1 || spec.blocks > MAX_DISK_BLOCKS)
      throw new VmmError('FTVM_ERR_DISK_SIZE', `disk blocks must be an integer in [1, ${MAX_DISK_BLOCKS}], got ${spec.blocks}`);
    this.blocks = spec.blocks;
    const undo = opts.undo ?? 'off';
    const fds = opts.fds ?? openDiskFds(spec, undo !== 'off');
    this.owned = !opts.fds;
    this.fd = fds.disk;
    this.undoFd = undo === 'off' ? -1 : fds.undo;
    const padded = Math.ceil(spec.blocks / 8) * 8;
    this.dirtyWords = new Float64Array(padded / 8);
    this.dirty = new Uint8Array(this.dirtyWords.buffer);
    this.pull = opts.pull ?? null;
    if (this.pull && this.pull.length < spec.blocks) throw new VmmError('FTVM_ERR_DISK_SIZE', `pull state covers ${this.pull.length} blocks, the disk has ${spec.blocks}`);
    this.onFetch = opts.onFetch;
    this.onWait = opts.onWait;
    if (this.undoFd >= 0) {
      if (undo === 'apply') this.applyUndo();
      ftruncateSync(this.undoFd, 0);
    }
  }

  /** Rolls the disk back with the undo file's records, newest first. */
  private applyUndo(): void {
    const size = fstatSync(this.undoFd).size;
    const n = Math.floor(size / UNDO_RECORD_BYTES);
    const rec = new Uint8Array(UNDO_RECORD_BYTES);
    const dv = new DataView(rec.buffer);
    for (let i = n - 1; i >= 0; i--) {
      preadFull(this.undoFd, rec, 0, UNDO_RECORD_BYTES, i * UNDO_RECORD_BYTES);
      const b = dv.getUint32(0, true);
      if (b < this.blocks) pwriteFull(this.fd, rec, 4, DISK_BLOCK_BYTES, b * DISK_BLOCK_BYTES);
    }
  }

  /** Checks a guest request: a DiskStatus error, or OK. */
  check(block: number, n: number): number {
    if (!Number.isInteger(block) || !Number.isInteger(n) || block < 0 || n < 1 || block + n > this.blocks) return DiskStatus.BAD_RANGE;
    return DiskStatus.OK;
  }

  /** Reads blocks [block, block + n) into `into` at `off`. */
  read(block: number, n: number, into: Uint8Array, off: number): number {
    const r = this.check(block, n);
    if (r !== DiskStatus.OK) return r;
    if (this.pull) this.awaitPresent(block, n);
    try {
      preadFull(this.fd, into, off, n * DISK_BLOCK_BYTES, block * DISK_BLOCK_BYTES);
    } catch {
      return DiskStatus.IO_ERROR;
    }
    return DiskStatus.OK;
  }

  /** Writes blocks [block, block + n) from `from` at `off`, marking them dirty. */
  write(block: number, n: number, from: Uint8Array, off: number): number {
    const r = this.check(block, n);
    if (r !== DiskStatus.OK) return r;
    if (this.pull) this.awaitPresent(block, n);
    try {
      if (this.undoFd >= 0) this.saveUndo(block, n);
      pwriteFull(this.fd, from, off, n * DISK_BLOCK_BYTES, block * DISK_BLOCK_BYTES);
    } catch {
      return DiskStatus.IO_ERROR;
    }
    for (let b = block; b < block + n; b++) {
      if (this.dirty[b] === 0) {
        this.dirty[b] = 1;
        this.dirtyCount++;
      }
    }
    const pc = this.pcDirty;
    if (pc) {
      for (let b = block; b < block + n; b++) {
        if (pc[b] === 0) {
          pc[b] = 1;
          this.pcCount++;
        }
      }
    }
    return DiskStatus.OK;
  }

  /** PULL: asks for the blocks of [block, block + n) that are not PRESENT and waits until they are. */
  private awaitPresent(block: number, n: number): void {
    const st = this.pull!;
    let first = -1;
    for (let b = block; b < block + n; b++) if (Atomics.load(st, b) !== PullState.PRESENT) { first = b; break; }
    if (first < 0) return;
    const t0 = performance.now();
    this.onWait?.(true);
    try {
      this.onFetch?.(first, block + n - first);
      for (let b = first; b < block + n; b++) {
        for (;;) {
          const s = Atomics.load(st, b);
          if (s === PullState.PRESENT) break;
          this.fetchWaits++;
          Atomics.wait(st, b, s, 1000);
        }
      }
    } finally {
      this.onWait?.(false);
      this.fetchWaitMs += performance.now() - t0;
    }
  }

  /** Starts a pre-copy's tracking of written blocks (a second bitmap: epoch collects keep theirs). */
  startPrecopyTracking(): void {
    const padded = Math.ceil(this.blocks / 8) * 8;
    this.pcDirtyWords = new Float64Array(padded / 8);
    this.pcDirty = new Uint8Array(this.pcDirtyWords.buffer);
    this.pcCount = 0;
  }

  /** Sorted blocks written since the previous call (or since startPrecopyTracking); [] when not tracking. */
  takePrecopyDirty(): Uint32Array {
    if (!this.pcDirty || !this.pcDirtyWords) return new Uint32Array(0);
    const out = new Uint32Array(this.pcCount);
    let k = 0;
    const words = this.pcDirtyWords;
    for (let w = 0; w < words.length && k < out.length; w++) {
      if (words[w] === 0) continue;
      for (let j = 0; j < 8; j++) if (this.pcDirty[w * 8 + j] !== 0) out[k++] = w * 8 + j;
      words[w] = 0;
    }
    this.pcDirty.fill(0);
    this.pcCount = 0;
    return out;
  }

  stopPrecopyTracking(): void {
    this.pcDirty = null;
    this.pcDirtyWords = null;
    this.pcCount = 0;
  }

  /** Old contents of the blocks first written since the last checkpoint, to the undo file. */
  private saveUndo(block: number, n: number): void {
    const rec = new Uint8Array(UNDO_RECORD_BYTES);
    const dv = new DataView(rec.buffer);
    for (let b = block; b < block + n; b++) {
      if (this.dirty[b] !== 0) continue;
      dv.setUint32(0, b, true);
      preadFull(this.fd, rec, 4, DISK_BLOCK_BYTES, b * DISK_BLOCK_BYTES);
      pwriteFull(this.undoFd, rec, 0, UNDO_RECORD_BYTES, this.undoBytes);
      this.undoBytes += UNDO_RECORD_BYTES;
    }
  }

  /** Sorted blocks written since the previous call; clears the bitmap (and the undo file: a checkpoint now covers them). */
  takeDirty(): Uint32Array {
    const out = new Uint32Array(this.dirtyCount);
    let k = 0;
    const words = this.dirtyWords;
    for (let w = 0; w < words.length && k < out.length; w++) {
      if (words[w] === 0) continue;
      for (let j = 0; j < 8; j++) if (this.dirty[w * 8 + j] !== 0) out[k++] = w * 8 + j;
      words[w] = 0;
    }
    this.dirty.fill(0);
    this.dirtyCount = 0;
    this.clearUndo();
    return out;
  }

  /** The checkpoint the undo file rolls back to is replaced by a newer one. */
  clearUndo(): void {
    if (this.undoFd < 0 || this.undoBytes === 0) return;
    ftruncateSync(this.undoFd, 0);
    this.undoBytes = 0;
  }

  /** Copies the listed blocks (sorted or not) into one buffer, block i at i * 4096; runs of blocks are one read. */
  readList(list: ArrayLike<number>): Uint8Array {
    const out = new Uint8Array(list.length * DISK_BLOCK_BYTES);
    for (let i = 0; i < list.length; ) {
      let j = i + 1;
      while (j < list.length && list[j] === list[j - 1]! + 1 && j - i < 256) j++;
      preadFull(this.fd, out, i * DISK_BLOCK_BYTES, (j - i) * DISK_BLOCK_BYTES, list[i]! * DISK_BLOCK_BYTES);
      i = j;
    }
    return out;
  }

  /** Every non-zero block and its data (a full sync: zero blocks are implied). Reads the whole disk. */
  readNonZero(): { blocks: Uint32Array; data: Uint8Array } {
    const chunkBlocks = 256;
    const chunk = new Uint8Array(chunkBlocks * DISK_BLOCK_BYTES);
    const list: number[] = [];
    const parts: Uint8Array[] = [];
    for (let b = 0; b < this.blocks; b += chunkBlocks) {
      const n = Math.min(chunkBlocks, this.blocks - b);
      preadFull(this.fd, chunk, 0, n * DISK_BLOCK_BYTES, b * DISK_BLOCK_BYTES);
      for (let i = 0; i < n; i++) {
        if (isZeroBlock(chunk, i * DISK_BLOCK_BYTES)) continue;
        list.push(b + i);
        parts.push(chunk.slice(i * DISK_BLOCK_BYTES, (i + 1) * DISK_BLOCK_BYTES));
      }
    }
    const data = new Uint8Array(list.length * DISK_BLOCK_BYTES);
    parts.forEach((p, i) => data.set(p, i * DISK_BLOCK_BYTES));
    return { blocks: Uint32Array.from(list), data };
  }

  /** Closes the files if this device opened them (descriptors given in `fds` stay open). */
  close(): void {
    if (this.owned && this.fd >= 0) closeDiskFds({ disk: this.fd, undo: this.undoFd }, this.spec);
    this.fd = -1;
    this.undoFd = -1;
  }
}
