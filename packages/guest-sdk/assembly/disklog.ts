// An append-only record log on the virtual disk: what a guest needs to persist its
// state as a journal of changes (kv logs its write commands and replays them at boot).
//
// Layout (4 KiB blocks): block 0 is a header (magic "FTVMLOG1", format version); records
// follow from byte 4096, back to back, each
//     u32 len (>= 1) | u32 check = FNV-1a 32 of the payload | len payload bytes
// and the log ends at the first u32 len of 0 (the disk is zero past the end: the log
// keeps the rest of its tail block zero). A record whose check fails (a write torn by a
// power loss) ends the log too; open() zeroes what follows it.
//
// The log's position and a running FNV-1a 64 of every record byte live in guest memory,
// so they are checkpointed with it: check() compares them with the disk, which is how a
// guest proves its disk and memory belong to the same instant (after a failover, after a
// restore).

import { host_disk_read, host_disk_write, host_disk_blocks, PAGE_BYTES } from "./abi";

const HEADER_MAGIC: u64 = 0x31474f4c4d565446; // "FTVMLOG1" little-endian
const FORMAT_VERSION: u32 = 1;
/** Bytes before each payload: len, check. */
export const RECORD_HEADER_BYTES: i32 = 8;
const FIRST_RECORD: i64 = 4096;

const FNV64_OFFSET: u64 = 0xcbf29ce484222325;
const FNV64_PRIME: u64 = 0x100000001b3;

function fnv32(p: usize, n: i32): u32 {
  let h: u32 = 0x811c9dc5;
  for (let i = 0; i < n; i++) h = (h ^ <u32>load<u8>(p + <usize>i)) * 0x01000193;
  return h;
}

function fnv64(h: u64, p: usize, n: i32): u64 {
  for (let i = 0; i < n; i++) h = (h ^ <u64>load<u8>(p + <usize>i)) * FNV64_PRIME;
  return h;
}

/** What open() found. */
export const LOG_FRESH: i32 = 0; // an all-zero disk, now formatted
export const LOG_OPENED: i32 = 1; // an existing log, records replayed
export const LOG_NO_DISK: i32 = -1; // the VMM has no disk
export const LOG_FOREIGN: i32 = -2; // block 0 is neither zero nor a log header
export const LOG_IO: i32 = -3; // a disk_read/disk_write failed

export class DiskLog {
  /** Disk size, blocks; 0 before open() or without a disk. */
  blocks: i32 = 0;
  /** Byte offset where the next record goes. */
  end: i64 = FIRST_RECORD;
  /** FNV-1a 64 of bytes [4096, end): every record appended or replayed. */
  hash: u64 = FNV64_OFFSET;
  records: i64 = 0;
  /** open() succeeded: append() and check() work. */
  ready: bool = false;
  /** The block holding `end`, as on disk (bytes past `end` are zero). Unmanaged, 4 KiB. */
  private tail: usize = 0;
  private scratch: usize = 0;
  private cached: i32 = -1;

  /**
   * Opens the log on the VMM's disk, formatting an all-zero disk, and calls `replay` with
   * each record's payload (valid during the call) in order. Returns a LOG_* code.
   */
  open(replay: (ptr: usize, len: i32) => void): i32 {
    this.blocks = host_disk_blocks();
    if (this.blocks < 2) return LOG_NO_DISK;
    this.tail = heap.alloc(<usize>PAGE_BYTES);
    this.scratch = heap.alloc(<usize>PAGE_BYTES);
    memory.fill(this.tail, 0, <usize>PAGE_BYTES);
    if (host_disk_read(0, this.scratch, 1) < 0) return LOG_IO;
    let magic = load<u64>(this.scratch);
    let fresh = false;
    if (magic == 0) {
      memory.fill(this.scratch, 0, <usize>PAGE_BYTES);
      store<u64>(this.scratch, HEADER_MAGIC);
      store<u32>(this.scratch, FORMAT_VERSION, 8);
      if (host_disk_write(0, this.scratch, 1) < 0) return LOG_IO;
      fresh = true;
    } else if (magic != HEADER_MAGIC || load<u32>(this.scratch, 8) != FORMAT_VERSION) {
      return LOG_FOREIGN;
    }
    this.cached = -1;
    let pos = FIRST_RECORD;
    let cap = this.capacity();
    let hdr = heap.alloc(8);
    while (!fresh && pos + <i64>RECORD_HEADER_BYTES <= cap) {
      if (!this.readAt(pos, hdr, 8)) { heap.free(hdr); return LOG_IO; }
      let len = load<u32>(hdr);
      if (len == 0 || <i64>len > cap - pos - <i64>RECORD_HEADER_BYTES) break;
      let payload = heap.alloc(<usize>len);
      if (!this.readAt(pos + 8, payload, <i32>len)) { heap.free(payload); heap.free(hdr); return LOG_IO; }
      if (fnv32(payload, <i32>len) != load<u32>(hdr, 4)) { heap.free(payload); break; }
      this.hash = fnv64(this.hash, hdr, 8);
      this.hash = fnv64(this.hash, payload, <i32>len);
      replay(payload, <i32>len);
      heap.free(payload);
      pos += <i64>RECORD_HEADER_BYTES + <i64>len;
      this.records++;
    }
    heap.free(hdr);
    this.end = pos;
    // The tail block as it must be: records up to `end`, zeros after (a torn record is cut off).
    let tb = <i32>(pos / PAGE_BYTES);
    if (tb < this.blocks) {
      if (host_disk_read(tb, this.tail, 1) < 0) return LOG_IO;
      let off = <i32>(pos % PAGE_BYTES);
      let dirty = false;
      for (let i = off; i < PAGE_BYTES; i++) if (load<u8>(this.tail + <usize>i) != 0) { dirty = true; break; }
      if (dirty) {
        memory.fill(this.tail + <usize>off, 0, <usize>(PAGE_BYTES - off));
        if (host_disk_write(tb, this.tail, 1) < 0) return LOG_IO;
      }
    }
    this.ready = true;
    return fresh ? LOG_FRESH : LOG_OPENED;
  }

  /** Bytes records may use: the disk minus the header block, minus room for the end marker. */
  capacity(): i64 {
    return <i64>this.blocks * PAGE_BYTES - 4;
  }

  /** Whether a payload of `len` bytes fits. */
  fits(len: i32): bool {
    return this.ready && this.end + <i64>RECORD_HEADER_BYTES + <i64>len <= this.capacity();
  }

  /** Appends a record; false if it does not fit or a disk write failed (nothing is counted then). */
  append(ptr: usize, len: i32): bool {
    if (len < 1 || !this.fits(len)) return false;
    let hdr = this.scratch;
    store<u32>(hdr, <u32>len);
    store<u32>(hdr, fnv32(ptr, len), 4);
    let start = this.end;
    if (!this.put(hdr, 8) || !this.put(ptr, len) || !this.flushTail()) {
      // A failed write leaves the log where it was in memory; open() after a restart cuts what the disk holds past it.
      this.end = start;
      return false;
    }
    this.hash = fnv64(this.hash, hdr, 8);
    this.hash = fnv64(this.hash, ptr, len);
    this.records++;
    return true;
  }

  /** Copies bytes into the tail block at `end`, writing each block it fills. */
  private put(p: usize, n: i32): bool {
    let done = 0;
    while (done < n) {
      let off = <i32>(this.end % PAGE_BYTES);
      let k = min(n - done, PAGE_BYTES - off);
      memory.copy(this.tail + <usize>off, p + <usize>done, <usize>k);
      done += k;
      this.end += <i64>k;
      if (off + k == PAGE_BYTES) {
        if (host_disk_write(<i32>((this.end - 1) / PAGE_BYTES), this.tail, 1) < 0) return false;
        memory.fill(this.tail, 0, <usize>PAGE_BYTES);
      }
    }
    return true;
  }

  private flushTail(): bool {
    if (this.end % PAGE_BYTES == 0) return true;
    return host_disk_write(<i32>(this.end / PAGE_BYTES), this.tail, 1) >= 0;
  }

  /** Reads n bytes at byte offset pos through a one-block cache. */
  private readAt(pos: i64, dst: usize, n: i32): bool {
    let done = 0;
    while (done < n) {
      let b = <i32>((pos + <i64>done) / PAGE_BYTES);
      let off = <i32>((pos + <i64>done) % PAGE_BYTES);
      if (b != this.cached) {
        if (host_disk_read(b, this.scratch, 1) < 0) { this.cached = -1; return false; }
        this.cached = b;
      }
      let k = min(n - done, PAGE_BYTES - off);
      memory.copy(dst + <usize>done, this.scratch + <usize>off, <usize>k);
      done += k;
    }
    return true;
  }

  /**
   * Compares the disk with this log's memory: the records on disk hash to `hash`, end at
   * `end`, and nothing follows them. "" when they agree, else what differs.
   */
  check(): string {
    if (!this.ready) return "no log open";
    this.cached = -1;
    let h = FNV64_OFFSET;
    let pos = FIRST_RECORD;
    let buf = heap.alloc(<usize>PAGE_BYTES);
    while (pos < this.end) {
      let n = <i32>min(<i64>PAGE_BYTES - pos % PAGE_BYTES, this.end - pos);
      if (!this.readAt(pos, buf, n)) { heap.free(buf); return "disk read failed"; }
      h = fnv64(h, buf, n);
      pos += <i64>n;
    }
    let tb = <i32>(this.end / PAGE_BYTES);
    let msg = "";
    if (h != this.hash) msg = "disk log differs from memory (" + this.records.toString() + " records, " + (this.end - FIRST_RECORD).toString() + " bytes in memory)";
    else if (tb < this.blocks) {
      if (host_disk_read(tb, buf, 1) < 0) msg = "disk read failed";
      else {
        for (let i = <i32>(this.end % PAGE_BYTES); i < PAGE_BYTES; i++) {
          if (load<u8>(buf + <usize>i) != 0) { msg = "disk holds data past the log end memory knows (" + this.end.toString() + ")"; break; }
        }
        if (msg.length == 0 && memory.compare(buf, this.tail, <usize>PAGE_BYTES) != 0) msg = "tail block differs from memory";
      }
    }
    this.cached = -1;
    heap.free(buf);
    return msg;
  }
}
