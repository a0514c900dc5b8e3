// dirtier: dirties a configurable working set at a configurable rate, the workload
// of the snapshot and migration benchmarks. Controlled by lines on any connection:
//   SET ws_pages=<n> rate=<pages/s> [pattern=seq|random|hot] [seed=<n>] [tick_ms=<n>]  -> OK
//   STATS   -> pages_written=.. bytes=.. ticks=.. ws_pages=.. rate=.. pattern=.. tick_ms=.. mem_pages=..
//   STOP    -> OK                      (rate 0: no more writes, timer disarmed)
//   FILL    -> OK pages=<n>            (writes every working-set page once, now)
//   DIGEST  -> digest=<16 hex> pages=<n>   (FNV-1a over every 8-byte word of the working set)
// With a virtual disk (the disk workload of the disk-migration benchmark):
//   SET disk_ws=<blocks> disk_rate=<blocks/s>   (blocks [0, disk_ws) written at random, whole)
//   DISKFILL <from> <count>  -> OK blocks=<n>   (writes each block of the range once, now)
//   DISKCHECK <from> <count> -> OK blocks=<n> | ERR block <b> differs (version <v>)
// Every disk block's version lives in memory; its contents are a function of (block,
// version), so DISKCHECK proves the disk holds exactly what memory says was written (zeros
// for a block never written) - after a migration, while its blocks are still being pulled.
// Every tick of guest time it writes rate * elapsed pages (one 8-byte store per 4 KiB
// page dirties it; values vary so no page is left zero), disk_rate * elapsed blocks, and
// re-arms its timer.
// Unknown or malformed lines get `ERR <why>`.

import {
  Guest, setGuest, now, setTimer, cancelTimer, InputBuffer, ByteWriter, bytesEqualAscii, parseI64, parseOk,
  close, indexOfByte, PAGE_BYTES, WASM_PAGE_BYTES, host_disk_read, host_disk_write, host_disk_blocks,
} from "@ftvm/guest-sdk/assembly";
export * from "@ftvm/guest-sdk/assembly/exports";

/** Working set limit, 4 KiB pages (3 GiB: the bytemap covers 4 GiB of memory in all). */
const MAX_WS_PAGES: i64 = 3 << 18;
/** Rate limit, pages/s (40 GB/s: far above what a vCPU tick can write). */
const MAX_RATE: i64 = 10_000_000;
const MAX_LINE_BYTES: i32 = 4096;
/** Working-set memory comes in chunks of this many 4 KiB pages (16 MiB), taken with
 *  memory.grow, so they are page aligned and outside the allocator's heap. */
const CHUNK_PAGES: i32 = 4096;
const CHUNK_SHIFT: i32 = 12;
/** Elapsed time one tick may catch up on, ns: after a long pause (a checkpoint, a
 *  failover) the dirtier resumes its rate instead of writing a burst. */
const MAX_CATCHUP_NS: i64 = 100_000_000;

const P_SEQ: i32 = 0;
const P_RANDOM: i32 = 1;
const P_HOT: i32 = 2;

let chunks = new Array<usize>();
let wsPages: i32 = 0;
let rate: i64 = 0;
let pattern: i32 = P_SEQ;
let tickNs: i64 = 10_000_000;
let rng: u64 = 0x9e3779b97f4a7c15;
let seqCursor: i32 = 0;

let pagesWritten: i64 = 0;
let ticks: i64 = 0;
/** Writes owed, in page·ns units (pages × 1e9): the fractional remainder between ticks. */
let owed: i64 = 0;
let lastTickNs: i64 = 0;
let nextDeadline: i64 = 0;
let timerId: i32 = 0;

class Conn {
  input: InputBuffer = new InputBuffer(MAX_LINE_BYTES);
}
let conns = new Map<i32, Conn>();

// ---- disk workload ----
/** Blocks per multi-block disk request of DISKFILL / DISKCHECK (256 KiB). */
const DISK_BATCH: i32 = 64;
let diskWs: i32 = 0;
let diskRate: i64 = 0;
let diskOwed: i64 = 0;
let diskWritten: i64 = 0;
/** Version of each block of the disk working set (0: never written, all zero). */
let diskVer = new Uint32Array(0);
let diskBuf: usize = 0;

function diskBuffer(): usize {
  if (diskBuf == 0) diskBuf = heap.alloc(<usize>(DISK_BATCH * PAGE_BYTES));
  return diskBuf;
}

/** Block `b` at version `v` (v > 0): 512 words, each a function of (b, v, word). */
function fillBlock(p: usize, b: i32, v: u32): void {
  let base = (<u64>b << 32) ^ (<u64>v << 12);
  for (let k = 0; k < PAGE_BYTES / 8; k++) store<u64>(p + (<usize>k << 3), mix(base + <u64>k) | 1);
}

function blockMatches(p: usize, b: i32, v: u32): bool {
  if (v == 0) {
    for (let k = 0; k < PAGE_BYTES / 8; k++) if (load<u64>(p + (<usize>k << 3)) != 0) return false;
    return true;
  }
  let base = (<u64>b << 32) ^ (<u64>v << 12);
  for (let k = 0; k < PAGE_BYTES / 8; k++) if (load<u64>(p + (<usize>k << 3)) != (mix(base + <u64>k) | 1)) return false;
  return true;
}

/** Writes blocks [from, from + n) (n <= DISK_BATCH), each at its next version; false on an I/O error. */
function writeBlocks(from: i32, n: i32): bool {
  let buf = diskBuffer();
  for (let i = 0; i < n; i++) {
    let v = unchecked(diskVer[from + i]) + 1;
    fillBlock(buf + (<usize>i * <usize>PAGE_BYTES), from + i, v);
  }
  if (host_disk_write(from, buf, n) < 0) return false;
  for (let i = 0; i < n; i++) unchecked(diskVer[from + i] = diskVer[from + i] + 1);
  diskWritten += n;
  return true;
}

function writeRandomBlocks(n: i64): void {
  if (diskWs == 0) return;
  for (let k: i64 = 0; k < n; k++) {
    let b = <i32>((nextRandom() & 0xffffffff) % <u64>diskWs);
    if (!writeBlocks(b, 1)) return;
  }
}

/** Parses "<from> <count>" within the disk working set; -1 and an ERR line when it does not fit. */
function parseRange(p: usize, n: i32, out2: StaticArray<i32>): bool {
  let sp = indexOfByte(p, n, 32);
  if (sp <= 0) { out.ascii("ERR expected <from> <count>\n"); return false; }
  let a = parseI64(p, sp);
  if (!parseOk) { out.ascii("ERR <from> must be an integer\n"); return false; }
  let b = parseI64(p + <usize>(sp + 1), n - sp - 1);
  if (!parseOk) { out.ascii("ERR <count> must be an integer\n"); return false; }
  if (a < 0 || b < 0 || a + b > <i64>diskWs) { out.ascii("ERR range outside disk_ws=").int(diskWs).ascii("\n"); return false; }
  out2[0] = <i32>a;
  out2[1] = <i32>b;
  return true;
}

const range = new StaticArray<i32>(2);

function cmdDiskFill(p: usize, n: i32): void {
  if (!parseRange(p, n, range)) return;
  let from = range[0], count = range[1];
  for (let b = from; b < from + count; b += DISK_BATCH) {
    if (!writeBlocks(b, min(DISK_BATCH, from + count - b))) { out.ascii("ERR disk write failed at block ").int(b).ascii("\n"); return; }
  }
  out.ascii("OK blocks=").int(count).ascii("\n");
}

function cmdDiskCheck(p: usize, n: i32): void {
  if (!parseRange(p, n, range)) return;
  let from = range[0], count = range[1];
  let buf = diskBuffer();
  for (let b = from; b < from + count; b += DISK_BATCH) {
    let k = min(DISK_BATCH, from + count - b);
    if (host_disk_read(b, buf, k) < 0) { out.ascii("ERR disk read failed at block ").int(b).ascii("\n"); return; }
    for (let i = 0; i < k; i++) {
      let v = unchecked(diskVer[b + i]);
      if (!blockMatches(buf + (<usize>i * <usize>PAGE_BYTES), b + i, v)) {
        out.ascii("ERR block ").int(b + i).ascii(" differs (version ").int(v).ascii(")\n");
        return;
      }
    }
  }
  out.ascii("OK blocks=").int(count).ascii("\n");
}
const out = new ByteWriter();

function nextRandom(): u64 {
  // xorshift64*
  let x = rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rng = x;
  return x * 0x2545f4914f6cdd1d;
}

function mix(v: u64): u64 {
  // splitmix64 finalizer: a distinct, non-trivial value per write
  v = (v ^ (v >> 30)) * 0xbf58476d1ce4e5b9;
  v = (v ^ (v >> 27)) * 0x94d049bb133111eb;
  return v ^ (v >> 31);
}

// @ts-ignore: decorator
@inline function pageAddr(i: i32): usize {
  return unchecked(chunks[i >> CHUNK_SHIFT]) + (<usize>(i & (CHUNK_PAGES - 1)) << 12);
}

/** Makes sure `pages` working-set pages are backed; false when memory.grow fails. */
function ensurePages(pages: i32): bool {
  let need = (pages + CHUNK_PAGES - 1) >> CHUNK_SHIFT;
  while (chunks.length < need) {
    let prev = memory.grow(CHUNK_PAGES * PAGE_BYTES / WASM_PAGE_BYTES);
    if (prev < 0) return false;
    chunks.push(<usize>prev * <usize>WASM_PAGE_BYTES);
  }
  return true;
}

/** The next working-set page the pattern picks. */
function pickPage(): i32 {
  if (pattern == P_SEQ) {
    let p = seqCursor;
    seqCursor = seqCursor + 1 >= wsPages ? 0 : seqCursor + 1;
    return p;
  }
  let r = nextRandom();
  if (pattern == P_HOT) {
    // 90% of writes go to the hottest 10% of the working set.
    let hot = max(wsPages / 10, 1);
    if (<u32>(r >> 32) % 10 != 0) return <i32>((r & 0xffffffff) % <u64>hot);
  }
  return <i32>((r & 0xffffffff) % <u64>wsPages);
}

function writePages(n: i64): void {
  if (wsPages == 0) return;
  for (let k: i64 = 0; k < n; k++) {
    let page = pickPage();
    let off = <usize>((pagesWritten & 511) << 3);
    store<u64>(pageAddr(page) + off, mix(<u64>pagesWritten + rng) | 1);
    pagesWritten++;
  }
}

function running(): bool {
  return (rate > 0 && wsPages > 0) || (diskRate > 0 && diskWs > 0);
}

function armTick(): void {
  if (timerId > 0) { cancelTimer(timerId); timerId = 0; }
  if (!running()) return;
  timerId = setTimer(nextDeadline, 1);
}

function onTick(): void {
  timerId = 0;
  if (!running()) return;
  let t = now();
  let elapsed = min(t - lastTickNs, MAX_CATCHUP_NS);
  lastTickNs = t;
  if (elapsed > 0) {
    owed += rate * elapsed;
    let pages = owed / 1_000_000_000;
    owed -= pages * 1_000_000_000;
    writePages(pages);
    diskOwed += diskRate * elapsed;
    let blocks = diskOwed / 1_000_000_000;
    diskOwed -= blocks * 1_000_000_000;
    writeRandomBlocks(blocks);
  }
  ticks++;
  // Keep the tick phase; after a long pause, restart it from now.
  nextDeadline += tickNs;
  if (nextDeadline <= t) nextDeadline = t + tickNs;
  armTick();
}

function digest(): u64 {
  let h: u64 = 0xcbf29ce484222325;
  for (let i = 0; i < wsPages; i++) {
    let p = pageAddr(i);
    for (let o: usize = 0; o < <usize>PAGE_BYTES; o += 8) {
      h = (h ^ load<u64>(p + o)) * 0x100000001b3;
    }
  }
  return h;
}

function hex64(v: u64): string {
  let s = "";
  for (let i = 60; i >= 0; i -= 4) s += String.fromCharCode(<i32>"0123456789abcdef".charCodeAt(<i32>((v >> <u64>i) & 15)));
  return s;
}

function patternName(): string {
  return pattern == P_SEQ ? "seq" : pattern == P_RANDOM ? "random" : "hot";
}

// ---- commands -----------------------------------------------------------------

/** Parses `key=value` tokens of a SET line; replies OK or ERR. */
function cmdSet(p: usize, n: i32): void {
  let newWs = <i64>wsPages, newRate = rate, newPattern = pattern, newTick = tickNs;
  let newDiskWs = <i64>diskWs, newDiskRate = diskRate;
  let newSeed: u64 = 0;
  let hasSeed = false;
  let i = 0;
  while (i < n) {
    while (i < n && load<u8>(p + <usize>i) == 32) i++;
    if (i >= n) break;
    let s = i;
    while (i < n && load<u8>(p + <usize>i) != 32) i++;
    let tok = p + <usize>s;
    let tl = i - s;
    let eq = indexOfByte(tok, tl, 61);
    if (eq <= 0) { out.ascii("ERR expected key=value, got '").bytes(tok, tl).ascii("'\n"); return; }
    let vp = tok + <usize>(eq + 1);
    let vl = tl - eq - 1;
    if (bytesEqualAscii(tok, eq, "pattern")) {
      if (bytesEqualAscii(vp, vl, "seq")) newPattern = P_SEQ;
      else if (bytesEqualAscii(vp, vl, "random")) newPattern = P_RANDOM;
      else if (bytesEqualAscii(vp, vl, "hot")) newPattern = P_HOT;
      else { out.ascii("ERR pattern must be seq, random or hot\n"); return; }
      continue;
    }
    if (!bytesEqualAscii(tok, eq, "ws_pages") && !bytesEqualAscii(tok, eq, "rate") &&
        !bytesEqualAscii(tok, eq, "seed") && !bytesEqualAscii(tok, eq, "tick_ms") &&
        !bytesEqualAscii(tok, eq, "disk_ws") && !bytesEqualAscii(tok, eq, "disk_rate")) {
      out.ascii("ERR unknown key '").bytes(tok, eq).ascii("'\n");
      return;
    }
    let v = parseI64(vp, vl);
    if (!parseOk || v < 0) { out.ascii("ERR ").bytes(tok, eq).ascii(" must be a non-negative integer\n"); return; }
    if (bytesEqualAscii(tok, eq, "ws_pages")) {
      if (v > MAX_WS_PAGES) { out.ascii("ERR ws_pages must be at most ").int(MAX_WS_PAGES).ascii("\n"); return; }
      newWs = v;
    } else if (bytesEqualAscii(tok, eq, "rate")) {
      if (v > MAX_RATE) { out.ascii("ERR rate must be at most ").int(MAX_RATE).ascii(" pages/s\n"); return; }
      newRate = v;
    } else if (bytesEqualAscii(tok, eq, "seed")) {
      newSeed = <u64>v;
      hasSeed = true;
    } else if (bytesEqualAscii(tok, eq, "tick_ms")) {
      if (v < 1 || v > 10_000) { out.ascii("ERR tick_ms must be in 1..10000\n"); return; }
      newTick = v * 1_000_000;
    } else if (bytesEqualAscii(tok, eq, "disk_ws")) {
      if (v > <i64>host_disk_blocks()) { out.ascii("ERR disk_ws must be at most the disk's ").int(host_disk_blocks()).ascii(" blocks\n"); return; }
      newDiskWs = v;
    } else if (bytesEqualAscii(tok, eq, "disk_rate")) {
      if (v > MAX_RATE) { out.ascii("ERR disk_rate must be at most ").int(MAX_RATE).ascii(" blocks/s\n"); return; }
      newDiskRate = v;
    }
  }
  if (!ensurePages(<i32>newWs)) { out.ascii("ERR out of memory for ws_pages=").int(newWs).ascii("\n"); return; }
  let wasRunning = running();
  wsPages = <i32>newWs;
  rate = newRate;
  if (<i32>newDiskWs > diskVer.length) {
    // Versions of blocks already written are kept; a larger working set starts the rest at 0.
    let v = new Uint32Array(<i32>newDiskWs);
    for (let i = 0; i < diskVer.length; i++) unchecked(v[i] = diskVer[i]);
    diskVer = v;
  }
  diskWs = <i32>newDiskWs;
  diskRate = newDiskRate;
  pattern = newPattern;
  tickNs = newTick;
  if (hasSeed) rng = mix(newSeed) | 1;
  if (seqCursor >= wsPages) seqCursor = 0;
  if (running()) {
    if (!wasRunning) {
      lastTickNs = now();
      owed = 0;
    }
    nextDeadline = lastTickNs + tickNs;
    armTick();
  } else armTick();
  out.ascii("OK\n");
}

function cmdStats(): void {
  out.ascii("pages_written=").int(pagesWritten)
    .ascii(" bytes=").int(pagesWritten * 8)
    .ascii(" ticks=").int(ticks)
    .ascii(" ws_pages=").int(wsPages)
    .ascii(" rate=").int(rate)
    .ascii(" pattern=").ascii(patternName())
    .ascii(" tick_ms=").int(tickNs / 1_000_000)
    .ascii(" mem_pages=").int(<i64>memory.size() * <i64>(WASM_PAGE_BYTES / PAGE_BYTES))
    .ascii(" disk_ws=").int(diskWs)
    .ascii(" disk_rate=").int(diskRate)
    .ascii(" disk_written=").int(diskWritten)
    .ascii("\n");
}

function line(p: usize, n: i32): void {
  if (n > 0 && load<u8>(p + <usize>(n - 1)) == 13) n--;
  let sp = indexOfByte(p, n, 32);
  let cl = sp < 0 ? n : sp;
  let rest = p + <usize>(cl + 1);
  let rl = sp < 0 ? 0 : n - cl - 1;
  if (bytesEqualAscii(p, cl, "SET", true)) cmdSet(rest, rl);
  else if (bytesEqualAscii(p, cl, "STATS", true)) cmdStats();
  else if (bytesEqualAscii(p, cl, "STOP", true)) { rate = 0; diskRate = 0; armTick(); out.ascii("OK\n"); }
  else if (bytesEqualAscii(p, cl, "DISKFILL", true)) cmdDiskFill(rest, rl);
  else if (bytesEqualAscii(p, cl, "DISKCHECK", true)) cmdDiskCheck(rest, rl);
  else if (bytesEqualAscii(p, cl, "FILL", true)) {
    let saved = pattern;
    pattern = P_SEQ;
    seqCursor = 0;
    writePages(wsPages);
    pattern = saved;
    out.ascii("OK pages=").int(wsPages).ascii("\n");
  } else if (bytesEqualAscii(p, cl, "DIGEST", true)) {
    out.ascii("digest=").ascii(hex64(digest())).ascii(" pages=").int(wsPages).ascii("\n");
  } else if (n == 0) {
    // empty line: ignored
  } else out.ascii("ERR unknown command (SET, STATS, STOP, FILL, DIGEST, DISKFILL, DISKCHECK)\n");
}

class Dirtier extends Guest {
  onData(conn: i32, ptr: usize, len: i32): void {
    let c: Conn;
    if (conns.has(conn)) c = conns.get(conn);
    else { c = new Conn(); conns.set(conn, c); }
    if (!c.input.append(ptr, len)) {
      out.ascii("ERR line longer than ").int(MAX_LINE_BYTES).ascii(" bytes\n").flush(conn);
      c.input.free();
      close(conn);
      return;
    }
    let buf = c.input;
    while (true) {
      let nl = indexOfByte(buf.data(), buf.length, 10);
      if (nl < 0) break;
      line(buf.data(), nl);
      buf.consume(nl + 1);
    }
    out.flush(conn);
  }

  onClose(conn: i32): void {
    if (conns.has(conn)) {
      conns.get(conn).input.free();
      conns.delete(conn);
    }
  }

  onTimer(tag: i32): void {
    if (tag == 1) onTick();
  }
}

setGuest(new Dirtier());
