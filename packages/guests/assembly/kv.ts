// kv: a Redis-protocol (RESP2) server, a subset large enough for redis-cli and
// redis-benchmark. Strings, lists, sets and hashes; TTLs in guest time, so a
// failover (which continues guest time) neither resets nor skips them.
//
// With a virtual disk (ftvm --disk) kv is persistent: every write command is appended
// to a log on the disk (with the guest time and random seed it ran with, so a replay
// reaches the same state) before it runs, and a first boot replays the log. DISKCHECK
// answers +OK when the disk's log is exactly the one memory knows of (the same records,
// nothing more), else -ERR with what differs.

import {
  Guest, setGuest, now, after, randomU64,
  InputBuffer, ByteWriter, BytesMap, setInputBudget, BytesEntry, bytesEqualAscii, copyBytes, parseI64, parseOk,
  sendBytes, close, hashBytes, logInfo, logError,
} from "@ftvm/guest-sdk/assembly";
import { DiskLog, LOG_FRESH, LOG_OPENED, LOG_NO_DISK } from "@ftvm/guest-sdk/assembly/disklog";
export * from "@ftvm/guest-sdk/assembly/exports";

// ---- limits -------------------------------------------------------------------

/** Pending (unparsed) input per connection, bytes. One request may not exceed it. */
const MAX_REQUEST_BYTES: i32 = 64 << 20;
/**
 * Pending input of all connections together, bytes: one request of the largest size and
 * then some. Clients each sending a partial 48 MiB bulk are refused once their sum passes
 * it (the connection that would pass it gets an error and is closed), not held in memory.
 */
const MAX_TOTAL_INPUT_BYTES: i64 = 80 << 20;
setInputBudget(MAX_TOTAL_INPUT_BYTES);
/** An inline command line or a `*`/`$` header line, bytes (Redis: 64 KiB). */
const MAX_LINE_BYTES: i32 = 64 << 10;
/** Arguments of one command (Redis: 1024*1024). */
const MAX_ARGS: i32 = 1024 * 1024;
/** Replies are sent once they reach this many bytes, so the writer stays bounded. */
const FLUSH_BYTES: i32 = 1 << 20;
/** Active expiry: one sweep every this many ms visits at most this many buckets. */
const EXPIRE_SWEEP_MS: i64 = 100;
const EXPIRE_SWEEP_BUCKETS: i32 = 4096;

// ---- values -------------------------------------------------------------------

const T_STRING: u8 = 0;
const T_LIST: u8 = 1;
const T_SET: u8 = 2;
const T_HASH: u8 = 3;
const T_ZSET: u8 = 4;
const T_STREAM: u8 = 5;

abstract class Value {
  constructor(public type: u8) {}
}

class StrV extends Value {
  constructor(public data: ArrayBuffer) { super(T_STRING); }
}

/** A ring-buffer deque: O(1) push/pop at both ends and O(1) index. */
class ListV extends Value {
  items: StaticArray<ArrayBuffer | null> = new StaticArray<ArrayBuffer | null>(8);
  head: i32 = 0;
  len: i32 = 0;
  constructor() { super(T_LIST); }

  private grow(): void {
    let cap = this.items.length;
    let n = new StaticArray<ArrayBuffer | null>(cap * 2);
    for (let i = 0; i < this.len; i++) unchecked(n[i] = this.items[(this.head + i) & (cap - 1)]);
    this.items = n;
    this.head = 0;
  }
  at(i: i32): ArrayBuffer {
    return changetype<ArrayBuffer>(unchecked(this.items[(this.head + i) & (this.items.length - 1)]));
  }
  pushLeft(v: ArrayBuffer): void {
    if (this.len == this.items.length) this.grow();
    this.head = (this.head - 1) & (this.items.length - 1);
    unchecked(this.items[this.head] = v);
    this.len++;
  }
  pushRight(v: ArrayBuffer): void {
    if (this.len == this.items.length) this.grow();
    unchecked(this.items[(this.head + this.len) & (this.items.length - 1)] = v);
    this.len++;
  }
  popLeft(): ArrayBuffer {
    let v = this.at(0);
    unchecked(this.items[this.head] = null);
    this.head = (this.head + 1) & (this.items.length - 1);
    this.len--;
    return v;
  }
  popRight(): ArrayBuffer {
    let idx = (this.head + this.len - 1) & (this.items.length - 1);
    let v = changetype<ArrayBuffer>(unchecked(this.items[idx]));
    unchecked(this.items[idx] = null);
    this.len--;
    return v;
  }
}

class SetV extends Value {
  m: BytesMap<u8> = new BytesMap<u8>();
  constructor() { super(T_SET); }
}

class HashV extends Value {
  m: BytesMap<ArrayBuffer> = new BytesMap<ArrayBuffer>();
  constructor() { super(T_HASH); }
}

class ZItem {
  constructor(public score: f64, public member: ArrayBuffer) {}
}

/** Orders by score, then member bytes (as Redis does). */
function zcmp(score: f64, m: usize, mlen: i32, it: ZItem): i32 {
  if (score < it.score) return -1;
  if (score > it.score) return 1;
  let ilen = it.member.byteLength;
  let c = memory.compare(m, changetype<usize>(it.member), <usize>min(mlen, ilen));
  if (c != 0) return c;
  return mlen - ilen;
}

/** A sorted set: member -> score map plus an array kept sorted (insert O(n)). */
class ZSetV extends Value {
  dict: BytesMap<f64> = new BytesMap<f64>();
  sorted: Array<ZItem> = new Array<ZItem>();
  constructor() { super(T_ZSET); }

  /** Index of the first item not less than (score, member). */
  private lowerBound(score: f64, m: usize, mlen: i32): i32 {
    let lo = 0, hi = this.sorted.length;
    while (lo < hi) {
      let mid = (lo + hi) >>> 1;
      if (zcmp(score, m, mlen, unchecked(this.sorted[mid])) > 0) lo = mid + 1; else hi = mid;
    }
    return lo;
  }
  insert(score: f64, member: ArrayBuffer): void {
    let m = changetype<usize>(member);
    let idx = this.lowerBound(score, m, member.byteLength);
    this.sorted.push(new ZItem(score, member));
    for (let i = this.sorted.length - 1; i > idx; i--) unchecked(this.sorted[i] = this.sorted[i - 1]);
    unchecked(this.sorted[idx] = new ZItem(score, member));
  }
  remove(score: f64, member: ArrayBuffer): void {
    let idx = this.lowerBound(score, changetype<usize>(member), member.byteLength);
    if (idx < this.sorted.length) this.sorted.splice(idx, 1);
  }
}

class StreamEntry {
  constructor(public ms: i64, public seq: i64, public fields: Array<ArrayBuffer>) {}
}

class StreamV extends Value {
  entries: Array<StreamEntry> = new Array<StreamEntry>();
  lastMs: i64 = 0;
  lastSeq: i64 = 0;
  constructor() { super(T_STREAM); }
}

// ---- state --------------------------------------------------------------------

/** The keyspace. entry.aux: absolute expiry in guest ns, 0 = persistent. */
let db = new BytesMap<Value>();
/** Keys with a TTL (an upper bound: lazily expired keys are subtracted when seen). */
let volatileKeys: i32 = 0;
let sweepArmed = false;
let sweepCursor: i32 = 0;

class Conn {
  input: InputBuffer = new InputBuffer(MAX_REQUEST_BYTES);
  /** Don't re-parse before this many bytes are pending (a known bulk is incomplete). */
  need: i32 = 0;
  closing: bool = false;
}
let conns = new Map<i32, Conn>();

const out = new ByteWriter();
let curConn: i32 = 0;

// ---- persistence (the disk log) ----
const dlog = new DiskLog();
/** The disk log is open: write commands are logged before they run. */
let persist = false;
/** A boot replay is running: commands are not logged again and replies are dropped. */
let replaying = false;
/** The command's random seed (logged with it, so SPOP picks the same members on replay). */
let cmdSeed: u64 = 0;
const rec = new ByteWriter();
/** Guest time for this event, ns: one clock read per delivery. */
let tnow: i64 = 0;

// The parsed command: argument i is [argPtr[i], argPtr[i] + argLen[i]), pointing into
// the connection's input buffer; valid until the command is consumed.
let argPtr = new StaticArray<usize>(64);
let argLen = new StaticArray<i32>(64);
let argc: i32 = 0;

function pushArg(p: usize, n: i32): void {
  if (argc == argPtr.length) {
    let cap = argPtr.length * 2;
    let np = new StaticArray<usize>(cap);
    let nl = new StaticArray<i32>(cap);
    memory.copy(changetype<usize>(np), changetype<usize>(argPtr), <usize>argc * sizeof<usize>());
    memory.copy(changetype<usize>(nl), changetype<usize>(argLen), <usize>argc * 4);
    argPtr = np;
    argLen = nl;
  }
  unchecked(argPtr[argc] = p);
  unchecked(argLen[argc] = n);
  argc++;
}

// @ts-ignore: decorator
@inline function AP(i: i32): usize { return unchecked(argPtr[i]); }
// @ts-ignore: decorator
@inline function AL(i: i32): i32 { return unchecked(argLen[i]); }
function argIs(i: i32, s: string): bool { return bytesEqualAscii(AP(i), AL(i), s, true); }

// ---- replies ------------------------------------------------------------------

function rOk(): void { out.ascii("+OK\r\n"); }
function rSimple(s: string): void { out.byte(43).ascii(s).ascii("\r\n"); }
function rErr(s: string): void { out.byte(45).ascii(s).ascii("\r\n"); }
function rInt(v: i64): void { out.byte(58).int(v).ascii("\r\n"); }
function rNil(): void { out.ascii("$-1\r\n"); }
function rNilArray(): void { out.ascii("*-1\r\n"); }
function rArray(n: i32): void { out.byte(42).int(n).ascii("\r\n"); }
function rBulk(p: usize, n: i32): void { out.byte(36).int(n).ascii("\r\n").bytes(p, n).ascii("\r\n"); }
function rBulkBuf(b: ArrayBuffer): void { rBulk(changetype<usize>(b), b.byteLength); }
function rBulkStr(s: string): void { let b = String.UTF8.encode(s); rBulkBuf(b); }
function rArg(i: i32): void { rBulk(AP(i), AL(i)); }

function errWrongType(): void { rErr("WRONGTYPE Operation against a key holding the wrong kind of value"); }
function errNotInt(): void { rErr("ERR value is not an integer or out of range"); }
function errSyntax(): void { rErr("ERR syntax error"); }

/** Bytes as they may appear inside a one-line error: CR/LF become spaces (as Redis does). */
function sanitized(p: usize, n: i32, max: i32): void {
  let m = min(n, max);
  for (let i = 0; i < m; i++) {
    let c = <i32>load<u8>(p + <usize>i);
    out.byte(c == 13 || c == 10 ? 32 : c);
  }
}

function errArity(): void {
  out.ascii("-ERR wrong number of arguments for '");
  let p = AP(0);
  let n = min(AL(0), 128);
  for (let i = 0; i < n; i++) {
    let c = <i32>load<u8>(p + <usize>i);
    if (c >= 65 && c <= 90) c |= 32;
    out.byte(c == 13 || c == 10 ? 32 : c);
  }
  out.ascii("' command\r\n");
}

function errUnknown(): void {
  out.ascii("-ERR unknown command '");
  sanitized(AP(0), AL(0), 128);
  out.ascii("', with args beginning with: ");
  let used = 0;
  for (let i = 1; i < argc && used < 128; i++) {
    let n = min(AL(i), 128 - used);
    out.byte(39);
    sanitized(AP(i), n, n);
    out.ascii("' ");
    used += n + 3;
  }
  out.ascii("\r\n");
}

// ---- keyspace -----------------------------------------------------------------

/** The live entry for argument i, expiring it lazily; null when absent. */
function lookup(i: i32): BytesEntry<Value> | null {
  let e = db.find(AP(i), AL(i));
  if (e !== null && e.aux != 0 && e.aux <= tnow) {
    removeEntry(e);
    return null;
  }
  return e;
}

function removeEntry(e: BytesEntry<Value>): void {
  if (e.aux != 0) volatileKeys--;
  db.deleteEntry(e);
}

function setExpiry(e: BytesEntry<Value>, at: i64): void {
  if (e.aux == 0 && at != 0) volatileKeys++;
  else if (e.aux != 0 && at == 0) volatileKeys--;
  e.aux = at;
  if (at != 0) armSweep();
}

/** Sets key (argument i) to a string value, clearing its TTL unless keepTtl. */
function setString(i: i32, data: ArrayBuffer, keepTtl: bool): void {
  let e = lookup(i);
  if (e === null) {
    db.insertNew(copyBytes(AP(i), AL(i)), hashBytes(AP(i), AL(i)), new StrV(data));
    return;
  }
  e.value = new StrV(data);
  if (!keepTtl) setExpiry(e, 0);
}

/** The entry for argument i holding type t, created when absent; null (and a
 *  WRONGTYPE reply) when the key holds another type. */
function lookupOrCreate(i: i32, t: u8): BytesEntry<Value> | null {
  let e = lookup(i);
  if (e !== null) {
    if (e.value.type != t) { errWrongType(); return null; }
    return e;
  }
  let v: Value;
  if (t == T_LIST) v = new ListV();
  else if (t == T_SET) v = new SetV();
  else if (t == T_ZSET) v = new ZSetV();
  else if (t == T_STREAM) v = new StreamV();
  else v = new HashV();
  return db.insertNew(copyBytes(AP(i), AL(i)), hashBytes(AP(i), AL(i)), v);
}

/** The entry for argument i if it holds type t; null when absent; WRONGTYPE replied
 *  (and `wrongType` set) when it holds another type. */
let wrongType = false;
function lookupTyped(i: i32, t: u8): BytesEntry<Value> | null {
  wrongType = false;
  let e = lookup(i);
  if (e !== null && e.value.type != t) {
    wrongType = true;
    errWrongType();
    return null;
  }
  return e;
}

// Active expiry: a sweep visits a bounded slice of buckets per timer tick, so memory
// of keys nobody reads again is reclaimed. Only armed while volatile keys exist.
function armSweep(): void {
  if (!sweepArmed && volatileKeys > 0) {
    sweepArmed = true;
    after(EXPIRE_SWEEP_MS, 1);
  }
}

function sweep(): void {
  sweepArmed = false;
  tnow = now();
  let buckets = db.buckets;
  let n = buckets.length;
  for (let k = 0; k < EXPIRE_SWEEP_BUCKETS && k < n; k++) {
    let idx = (sweepCursor + k) & (n - 1);
    let e = unchecked(buckets[idx]);
    while (e !== null) {
      let next = e.next;
      if (e.aux != 0 && e.aux <= tnow) removeEntry(e);
      e = next;
    }
  }
  sweepCursor = (sweepCursor + EXPIRE_SWEEP_BUCKETS) & (n - 1);
  armSweep();
}

// ---- commands -----------------------------------------------------------------

function cmdPing(): void {
  if (argc > 2) { errArity(); return; }
  if (argc == 2) rArg(1); else rSimple("PONG");
}

/** Milliseconds → absolute guest-ns deadline; -1 when out of range. */
function deadlineFromMs(ms: i64): i64 {
  if (ms <= 0 || ms > (i64.MAX_VALUE - tnow) / 1_000_000) return -1;
  return tnow + ms * 1_000_000;
}

function cmdSet(): void {
  if (argc < 3) { errArity(); return; }
  let nx = false, xx = false, keepTtl = false, get = false;
  let expireAt: i64 = 0;
  let hasExpire = false;
  for (let i = 3; i < argc; i++) {
    if (argIs(i, "NX") && !xx) nx = true;
    else if (argIs(i, "XX") && !nx) xx = true;
    else if (argIs(i, "GET")) get = true;
    else if (argIs(i, "KEEPTTL") && !hasExpire) keepTtl = true;
    else if ((argIs(i, "EX") || argIs(i, "PX")) && !hasExpire && !keepTtl && i + 1 < argc) {
      let v = parseI64(AP(i + 1), AL(i + 1));
      if (!parseOk) { errNotInt(); return; }
      let ms = argIs(i, "EX") ? (v > i64.MAX_VALUE / 1000 || v < i64.MIN_VALUE / 1000 ? -1 : v * 1000) : v;
      expireAt = deadlineFromMs(ms);
      if (expireAt < 0) { rErr("ERR invalid expire time in 'set' command"); return; }
      hasExpire = true;
      i++;
    } else { errSyntax(); return; }
  }
  let e = lookup(1);
  if (get && e !== null && e.value.type != T_STRING) { errWrongType(); return; }
  let old: ArrayBuffer | null = e !== null && get ? (changetype<StrV>(e.value)).data : null;
  if ((nx && e !== null) || (xx && e === null)) {
    if (get) { if (old !== null) rBulkBuf(old); else rNil(); } else rNil();
    return;
  }
  setString(1, copyBytes(AP(2), AL(2)), keepTtl);
  if (hasExpire) setExpiry(changetype<BytesEntry<Value>>(db.find(AP(1), AL(1))), expireAt);
  if (get) { if (old !== null) rBulkBuf(old); else rNil(); } else rOk();
}

function cmdGet(): void {
  if (argc != 2) { errArity(); return; }
  let e = lookupTyped(1, T_STRING);
  if (wrongType) return;
  if (e === null) rNil(); else rBulkBuf(changetype<StrV>(e.value).data);
}

function cmdDel(): void {
  if (argc < 2) { errArity(); return; }
  let n = 0;
  for (let i = 1; i < argc; i++) {
    let e = lookup(i);
    if (e !== null) { removeEntry(e); n++; }
  }
  rInt(n);
}

function cmdExists(): void {
  if (argc < 2) { errArity(); return; }
  let n = 0;
  for (let i = 1; i < argc; i++) if (lookup(i) !== null) n++;
  rInt(n);
}

function incrBy(delta: i64): void {
  let e = lookupTyped(1, T_STRING);
  if (wrongType) return;
  let cur: i64 = 0;
  if (e !== null) {
    let d = changetype<StrV>(e.value).data;
    cur = parseI64(changetype<usize>(d), d.byteLength);
    if (!parseOk) { errNotInt(); return; }
  }
  if ((delta < 0 && cur < i64.MIN_VALUE - delta) || (delta > 0 && cur > i64.MAX_VALUE - delta)) {
    rErr("ERR increment or decrement would overflow");
    return;
  }
  let v = cur + delta;
  let w = new ByteWriter();
  w.int(v);
  let data = copyBytes(w.ptr, w.len);
  w.free();
  setString(1, data, true);
  rInt(v);
}

function cmdIncr(sign: i64): void {
  if (argc != 2) { errArity(); return; }
  incrBy(sign);
}

function cmdIncrBy(decr: bool): void {
  if (argc != 3) { errArity(); return; }
  let d = parseI64(AP(2), AL(2));
  if (!parseOk) { errNotInt(); return; }
  if (decr) {
    if (d == i64.MIN_VALUE) { rErr("ERR decrement would overflow"); return; }
    d = -d;
  }
  incrBy(d);
}

function cmdAppend(): void {
  if (argc != 3) { errArity(); return; }
  let e = lookupTyped(1, T_STRING);
  if (wrongType) return;
  if (e === null) {
    setString(1, copyBytes(AP(2), AL(2)), false);
    rInt(AL(2));
    return;
  }
  let s = changetype<StrV>(e.value);
  let oldLen = s.data.byteLength;
  if (<i64>oldLen + <i64>AL(2) > <i64>MAX_REQUEST_BYTES) { rErr("ERR string exceeds maximum allowed size"); return; }
  let nb = new ArrayBuffer(oldLen + AL(2));
  memory.copy(changetype<usize>(nb), changetype<usize>(s.data), <usize>oldLen);
  memory.copy(changetype<usize>(nb) + <usize>oldLen, AP(2), <usize>AL(2));
  s.data = nb;
  rInt(nb.byteLength);
}

function cmdStrlen(): void {
  if (argc != 2) { errArity(); return; }
  let e = lookupTyped(1, T_STRING);
  if (wrongType) return;
  rInt(e === null ? 0 : changetype<StrV>(e.value).data.byteLength);
}

function cmdMset(): void {
  if (argc < 3 || (argc & 1) == 0) { errArity(); return; }
  for (let i = 1; i < argc; i += 2) setString(i, copyBytes(AP(i + 1), AL(i + 1)), false);
  rOk();
}

function cmdMget(): void {
  if (argc < 2) { errArity(); return; }
  rArray(argc - 1);
  for (let i = 1; i < argc; i++) {
    let e = lookup(i);
    if (e === null || e.value.type != T_STRING) rNil();
    else rBulkBuf(changetype<StrV>(e.value).data);
  }
}

function cmdDbsize(): void {
  if (argc != 1) { errArity(); return; }
  rInt(db.size);
}

function cmdFlushall(): void {
  if (argc > 2 || (argc == 2 && !argIs(1, "ASYNC") && !argIs(1, "SYNC"))) { errSyntax(); return; }
  db = new BytesMap<Value>();
  volatileKeys = 0;
  rOk();
}

function cmdPush(left: bool): void {
  if (argc < 3) { errArity(); return; }
  let e = lookupOrCreate(1, T_LIST);
  if (e === null) return;
  let l = changetype<ListV>(e.value);
  for (let i = 2; i < argc; i++) {
    let v = copyBytes(AP(i), AL(i));
    if (left) l.pushLeft(v); else l.pushRight(v);
  }
  rInt(l.len);
}

function cmdPop(left: bool): void {
  if (argc != 2 && argc != 3) { errArity(); return; }
  let count: i64 = 1;
  if (argc == 3) {
    count = parseI64(AP(2), AL(2));
    if (!parseOk || count < 0) { rErr("ERR value is out of range, must be positive"); return; }
  }
  let e = lookupTyped(1, T_LIST);
  if (wrongType) return;
  if (e === null) { if (argc == 3) rNilArray(); else rNil(); return; }
  let l = changetype<ListV>(e.value);
  if (argc == 2) {
    rBulkBuf(left ? l.popLeft() : l.popRight());
  } else {
    let n = <i32>min(count, <i64>l.len);
    rArray(n);
    for (let i = 0; i < n; i++) rBulkBuf(left ? l.popLeft() : l.popRight());
  }
  if (l.len == 0) removeEntry(e);
}

function cmdLlen(): void {
  if (argc != 2) { errArity(); return; }
  let e = lookupTyped(1, T_LIST);
  if (wrongType) return;
  rInt(e === null ? 0 : changetype<ListV>(e.value).len);
}

function cmdLrange(): void {
  if (argc != 4) { errArity(); return; }
  let start = parseI64(AP(2), AL(2));
  if (!parseOk) { errNotInt(); return; }
  let stop = parseI64(AP(3), AL(3));
  if (!parseOk) { errNotInt(); return; }
  let e = lookupTyped(1, T_LIST);
  if (wrongType) return;
  if (e === null) { rArray(0); return; }
  let l = changetype<ListV>(e.value);
  let n = <i64>l.len;
  if (start < 0) start += n;
  if (stop < 0) stop += n;
  if (start < 0) start = 0;
  if (start > stop || start >= n) { rArray(0); return; }
  if (stop >= n) stop = n - 1;
  rArray(<i32>(stop - start + 1));
  for (let i = <i32>start; i <= <i32>stop; i++) {
    rBulkBuf(l.at(i));
    if (out.pending >= FLUSH_BYTES) out.flush(curConn);
  }
}

function cmdSadd(): void {
  if (argc < 3) { errArity(); return; }
  let e = lookupOrCreate(1, T_SET);
  if (e === null) return;
  let m = changetype<SetV>(e.value).m;
  let added = 0;
  for (let i = 2; i < argc; i++) {
    let h = hashBytes(AP(i), AL(i));
    if (m.findHashed(AP(i), AL(i), h) === null) {
      m.insertNew(copyBytes(AP(i), AL(i)), h, 1);
      added++;
    }
  }
  rInt(added);
}

function cmdSpop(): void {
  if (argc != 2 && argc != 3) { errArity(); return; }
  let count: i64 = 1;
  if (argc == 3) {
    count = parseI64(AP(2), AL(2));
    if (!parseOk || count < 0) { rErr("ERR value is out of range, must be positive"); return; }
  }
  let e = lookupTyped(1, T_SET);
  if (wrongType) return;
  if (e === null) { if (argc == 3) rArray(0); else rNil(); return; }
  let m = changetype<SetV>(e.value).m;
  let n = argc == 3 ? <i32>min(count, <i64>m.size) : 1;
  if (argc == 3) rArray(n);
  for (let i = 0; i < n; i++) {
    // xorshift64 from the command's seed (logged with it when persisting): a replay removes the same members.
    if (!persist && !replaying) cmdSeed = randomU64() | 1;
    cmdSeed ^= cmdSeed << 13; cmdSeed ^= cmdSeed >> 7; cmdSeed ^= cmdSeed << 17;
    let r = m.randomEntry(<u32>(cmdSeed >> 32));
    if (r === null) break;
    rBulkBuf(r.key);
    m.deleteEntry(r);
  }
  if (m.size == 0) removeEntry(e);
}

function cmdScard(): void {
  if (argc != 2) { errArity(); return; }
  let e = lookupTyped(1, T_SET);
  if (wrongType) return;
  rInt(e === null ? 0 : changetype<SetV>(e.value).m.size);
}

function cmdSmembers(): void {
  if (argc != 2) { errArity(); return; }
  let e = lookupTyped(1, T_SET);
  if (wrongType) return;
  if (e === null) { rArray(0); return; }
  let all = changetype<SetV>(e.value).m.entries();
  rArray(all.length);
  for (let i = 0; i < all.length; i++) rBulkBuf(unchecked(all[i]).key);
}

function cmdSismember(): void {
  if (argc != 3) { errArity(); return; }
  let e = lookupTyped(1, T_SET);
  if (wrongType) return;
  rInt(e !== null && changetype<SetV>(e.value).m.find(AP(2), AL(2)) !== null ? 1 : 0);
}

function cmdHset(): void {
  if (argc < 4 || (argc & 1) != 0) { errArity(); return; }
  let e = lookupOrCreate(1, T_HASH);
  if (e === null) return;
  let m = changetype<HashV>(e.value).m;
  let added = 0;
  for (let i = 2; i < argc; i += 2) {
    let h = hashBytes(AP(i), AL(i));
    let f = m.findHashed(AP(i), AL(i), h);
    let v = copyBytes(AP(i + 1), AL(i + 1));
    if (f !== null) f.value = v;
    else { m.insertNew(copyBytes(AP(i), AL(i)), h, v); added++; }
  }
  rInt(added);
}

function cmdHget(): void {
  if (argc != 3) { errArity(); return; }
  let e = lookupTyped(1, T_HASH);
  if (wrongType) return;
  if (e === null) { rNil(); return; }
  let f = changetype<HashV>(e.value).m.find(AP(2), AL(2));
  if (f === null) rNil(); else rBulkBuf(f.value);
}

function cmdHgetall(): void {
  if (argc != 2) { errArity(); return; }
  let e = lookupTyped(1, T_HASH);
  if (wrongType) return;
  if (e === null) { rArray(0); return; }
  let all = changetype<HashV>(e.value).m.entries();
  rArray(all.length * 2);
  for (let i = 0; i < all.length; i++) {
    let f = unchecked(all[i]);
    rBulkBuf(f.key);
    rBulkBuf(f.value);
  }
}

function cmdHdel(): void {
  if (argc < 3) { errArity(); return; }
  let e = lookupTyped(1, T_HASH);
  if (wrongType) return;
  if (e === null) { rInt(0); return; }
  let m = changetype<HashV>(e.value).m;
  let n = 0;
  for (let i = 2; i < argc; i++) if (m.delete(AP(i), AL(i))) n++;
  if (m.size == 0) removeEntry(e);
  rInt(n);
}

function cmdHlen(): void {
  if (argc != 2) { errArity(); return; }
  let e = lookupTyped(1, T_HASH);
  if (wrongType) return;
  rInt(e === null ? 0 : changetype<HashV>(e.value).m.size);
}

// ---- sorted sets and streams (what redis-benchmark's default run needs) -------

/** Parses a Redis float argument: decimal/exponent notation or [+-]inf; sets parseOk. */
function parseScore(p: usize, n: i32): f64 {
  parseOk = false;
  if (n <= 0 || n > 64) return 0;
  if (bytesEqualAscii(p, n, "inf", true) || bytesEqualAscii(p, n, "+inf", true)) { parseOk = true; return Infinity; }
  if (bytesEqualAscii(p, n, "-inf", true)) { parseOk = true; return -Infinity; }
  let digits = 0;
  for (let i = 0; i < n; i++) {
    let c = load<u8>(p + <usize>i);
    if (c >= 48 && c <= 57) digits++;
    else if (c != 43 && c != 45 && c != 46 && c != 101 && c != 69) return 0;
  }
  if (digits == 0) return 0;
  let v = F64.parseFloat(String.UTF8.decodeUnsafe(p, <usize>n));
  if (isNaN(v)) return 0;
  parseOk = true;
  return v;
}

/** Redis' score text: integers without a fraction, inf/-inf, else the shortest round-trip form. */
function rScore(v: f64): void {
  if (v == Infinity) { rBulkStr("inf"); return; }
  if (v == -Infinity) { rBulkStr("-inf"); return; }
  if (v == Math.floor(v) && Math.abs(v) < 1e17) {
    let w = new ByteWriter();
    w.int(<i64>v);
    rBulk(w.ptr, w.len);
    w.free();
    return;
  }
  rBulkStr(v.toString());
}

function cmdZadd(): void {
  if (argc < 4) { errArity(); return; }
  let nx = false, xx = false, ch = false;
  let i = 2;
  for (; i < argc; i++) {
    if (argIs(i, "NX")) nx = true;
    else if (argIs(i, "XX")) xx = true;
    else if (argIs(i, "CH")) ch = true;
    else break;
  }
  if (nx && xx) { rErr("ERR XX and NX options at the same time are not compatible"); return; }
  if (i >= argc || ((argc - i) & 1) != 0) { errSyntax(); return; }
  for (let k = i; k < argc; k += 2) {
    parseScore(AP(k), AL(k));
    if (!parseOk) { rErr("ERR value is not a valid float"); return; }
  }
  let e = lookupTyped(1, T_ZSET);
  if (wrongType) return;
  if (e === null) {
    if (xx) { rInt(0); return; }
    e = lookupOrCreate(1, T_ZSET);
  }
  let z = changetype<ZSetV>(changetype<BytesEntry<Value>>(e).value);
  let added = 0, changed = 0;
  for (let k = i; k < argc; k += 2) {
    let score = parseScore(AP(k), AL(k));
    let mp = AP(k + 1), ml = AL(k + 1);
    let h = hashBytes(mp, ml);
    let f = z.dict.findHashed(mp, ml, h);
    if (f === null) {
      if (xx) continue;
      let member = copyBytes(mp, ml);
      z.dict.insertNew(member, h, score);
      z.insert(score, member);
      added++;
    } else if (!nx && f.value != score) {
      z.remove(f.value, f.key);
      f.value = score;
      z.insert(score, f.key);
      changed++;
    }
  }
  if (z.dict.size == 0) removeEntry(changetype<BytesEntry<Value>>(e));
  rInt(ch ? added + changed : added);
}

function cmdZpopmin(): void {
  if (argc != 2 && argc != 3) { errArity(); return; }
  let count: i64 = 1;
  if (argc == 3) {
    count = parseI64(AP(2), AL(2));
    if (!parseOk || count < 0) { rErr("ERR value is out of range, must be positive"); return; }
  }
  let e = lookupTyped(1, T_ZSET);
  if (wrongType) return;
  if (e === null) { rArray(0); return; }
  let z = changetype<ZSetV>(e.value);
  let n = <i32>min(count, <i64>z.sorted.length);
  rArray(n * 2);
  let items = z.sorted.slice(0, n);
  z.sorted.splice(0, n);
  for (let k = 0; k < n; k++) {
    let it = unchecked(items[k]);
    z.dict.delete(changetype<usize>(it.member), it.member.byteLength);
    rBulkBuf(it.member);
    rScore(it.score);
  }
  if (z.sorted.length == 0) removeEntry(e);
}

function cmdZcard(): void {
  if (argc != 2) { errArity(); return; }
  let e = lookupTyped(1, T_ZSET);
  if (wrongType) return;
  rInt(e === null ? 0 : changetype<ZSetV>(e.value).sorted.length);
}

function cmdZscore(): void {
  if (argc != 3) { errArity(); return; }
  let e = lookupTyped(1, T_ZSET);
  if (wrongType) return;
  if (e === null) { rNil(); return; }
  let f = changetype<ZSetV>(e.value).dict.find(AP(2), AL(2));
  if (f === null) rNil(); else rScore(f.value);
}

function cmdZrange(): void {
  if (argc != 4 && argc != 5) { errArity(); return; }
  let withScores = argc == 5;
  if (withScores && !argIs(4, "WITHSCORES")) { errSyntax(); return; }
  let start = parseI64(AP(2), AL(2));
  if (!parseOk) { errNotInt(); return; }
  let stop = parseI64(AP(3), AL(3));
  if (!parseOk) { errNotInt(); return; }
  let e = lookupTyped(1, T_ZSET);
  if (wrongType) return;
  if (e === null) { rArray(0); return; }
  let z = changetype<ZSetV>(e.value);
  let n = <i64>z.sorted.length;
  if (start < 0) start += n;
  if (stop < 0) stop += n;
  if (start < 0) start = 0;
  if (start > stop || start >= n) { rArray(0); return; }
  if (stop >= n) stop = n - 1;
  rArray(<i32>(stop - start + 1) * (withScores ? 2 : 1));
  for (let k = <i32>start; k <= <i32>stop; k++) {
    let it = unchecked(z.sorted[k]);
    rBulkBuf(it.member);
    if (withScores) rScore(it.score);
  }
}

/** Parses "<ms>" or "<ms>-<seq>" into xMs/xSeq; false when malformed. */
let xMs: i64 = 0;
let xSeq: i64 = 0;
function parseStreamId(p: usize, n: i32): bool {
  let dash = -1;
  for (let k = 0; k < n; k++) if (load<u8>(p + <usize>k) == 45) { dash = k; break; }
  if (dash < 0) {
    xMs = parseI64(p, n);
    xSeq = 0;
    return parseOk && xMs >= 0;
  }
  xMs = parseI64(p, dash);
  if (!parseOk || xMs < 0) return false;
  xSeq = parseI64(p + <usize>(dash + 1), n - dash - 1);
  return parseOk && xSeq >= 0;
}

function cmdXadd(): void {
  if (argc < 5) { errArity(); return; }
  let i = 2;
  let maxLen: i64 = -1;
  if (argIs(i, "MAXLEN")) {
    i++;
    if (i < argc && (argIs(i, "~") || argIs(i, "="))) i++;
    if (i >= argc) { errSyntax(); return; }
    maxLen = parseI64(AP(i), AL(i));
    if (!parseOk || maxLen < 0) { rErr("ERR The MAXLEN argument must be >= 0."); return; }
    i++;
  }
  if (i >= argc || ((argc - i - 1) & 1) != 0 || argc - i - 1 < 2) { errArity(); return; }
  let e = lookupTyped(1, T_STREAM);
  if (wrongType) return;
  let idArg = i;
  let auto = AL(idArg) == 1 && load<u8>(AP(idArg)) == 42;
  if (!auto && !parseStreamId(AP(idArg), AL(idArg))) { rErr("ERR Invalid stream ID specified as stream command argument"); return; }
  let lastMs: i64 = 0, lastSeq: i64 = 0;
  if (e !== null) {
    let cur = changetype<StreamV>(e.value);
    lastMs = cur.lastMs;
    lastSeq = cur.lastSeq;
  }
  let ms: i64, seq: i64;
  if (auto) {
    // Stream ids use guest time: ms since guest boot, not wall time.
    ms = tnow / 1_000_000;
    if (ms <= lastMs) { ms = lastMs; seq = lastSeq + 1; } else seq = 0;
  } else {
    ms = xMs;
    seq = xSeq;
    if (ms == 0 && seq == 0) { rErr("ERR The ID specified in XADD must be greater than 0-0"); return; }
    if (ms < lastMs || (ms == lastMs && seq <= lastSeq)) {
      rErr("ERR The ID specified in XADD is equal or smaller than the target stream top item");
      return;
    }
  }
  if (e === null) e = lookupOrCreate(1, T_STREAM);
  let st = changetype<StreamV>(changetype<BytesEntry<Value>>(e).value);
  let fields = new Array<ArrayBuffer>(0);
  for (let k = idArg + 1; k < argc; k++) fields.push(copyBytes(AP(k), AL(k)));
  st.entries.push(new StreamEntry(ms, seq, fields));
  st.lastMs = ms;
  st.lastSeq = seq;
  if (maxLen >= 0 && <i64>st.entries.length > maxLen) st.entries.splice(0, st.entries.length - <i32>maxLen);
  let w = new ByteWriter();
  w.int(ms).byte(45).int(seq);
  rBulk(w.ptr, w.len);
  w.free();
}

function cmdXlen(): void {
  if (argc != 2) { errArity(); return; }
  let e = lookupTyped(1, T_STREAM);
  if (wrongType) return;
  rInt(e === null ? 0 : changetype<StreamV>(e.value).entries.length);
}

function cmdExpire(unitMs: i64): void {
  if (argc < 3 || argc > 4) { errArity(); return; }
  let v = parseI64(AP(2), AL(2));
  if (!parseOk) { errNotInt(); return; }
  let nx = false, xx = false, gt = false, lt = false;
  if (argc == 4) {
    if (argIs(3, "NX")) nx = true;
    else if (argIs(3, "XX")) xx = true;
    else if (argIs(3, "GT")) gt = true;
    else if (argIs(3, "LT")) lt = true;
    else { rErr("ERR Unsupported option " + String.UTF8.decodeUnsafe(AP(3), <usize>min(AL(3), 64))); return; }
  }
  if ((v > 0 && v > i64.MAX_VALUE / unitMs) || (v < 0 && v < i64.MIN_VALUE / unitMs)) {
    rErr(unitMs == 1000 ? "ERR invalid expire time in 'expire' command" : "ERR invalid expire time in 'pexpire' command");
    return;
  }
  let ms = v * unitMs;
  let e = lookup(1);
  if (e === null) { rInt(0); return; }
  let cur = e.aux;
  // Redis: a persistent key counts as an infinite TTL for GT/LT.
  if ((nx && cur != 0) || (xx && cur == 0)) { rInt(0); return; }
  let at: i64 = ms <= 0 ? tnow : (ms > (i64.MAX_VALUE - tnow) / 1_000_000 ? -1 : tnow + ms * 1_000_000);
  if (at < 0) { rErr("ERR invalid expire time in 'expire' command"); return; }
  if (gt && (cur == 0 || at <= cur)) { rInt(0); return; }
  if (lt && cur != 0 && at >= cur) { rInt(0); return; }
  if (ms <= 0) removeEntry(e);
  else setExpiry(e, at);
  rInt(1);
}

function cmdTtl(unitNs: i64): void {
  if (argc != 2) { errArity(); return; }
  let e = lookup(1);
  if (e === null) { rInt(-2); return; }
  if (e.aux == 0) { rInt(-1); return; }
  let left = e.aux - tnow;
  // Redis rounds TTL seconds to the nearest second (ms + 500) / 1000.
  rInt((left + unitNs / 2) / unitNs);
}

function cmdPersist(): void {
  if (argc != 2) { errArity(); return; }
  let e = lookup(1);
  if (e === null || e.aux == 0) { rInt(0); return; }
  setExpiry(e, 0);
  rInt(1);
}

function cmdType(): void {
  if (argc != 2) { errArity(); return; }
  let e = lookup(1);
  if (e === null) { rSimple("none"); return; }
  let t = e.value.type;
  rSimple(t == T_STRING ? "string" : t == T_LIST ? "list" : t == T_SET ? "set" : t == T_ZSET ? "zset" : t == T_STREAM ? "stream" : "hash");
}

function cmdConfig(): void {
  if (argc < 2) { errArity(); return; }
  if (argIs(1, "GET")) {
    if (argc < 3) { errArity(); return; }
    // redis-benchmark asks for `save` and `appendonly`; answer as a persistence-less Redis.
    let n = 0;
    for (let i = 2; i < argc; i++) if (argIs(i, "save") || argIs(i, "appendonly") || argIs(i, "databases")) n++;
    rArray(n * 2);
    for (let i = 2; i < argc; i++) {
      if (argIs(i, "save")) { rBulkStr("save"); rBulkStr(""); }
      else if (argIs(i, "appendonly")) { rBulkStr("appendonly"); rBulkStr("no"); }
      else if (argIs(i, "databases")) { rBulkStr("databases"); rBulkStr("1"); }
    }
  } else if (argIs(1, "SET") || argIs(1, "RESETSTAT") || argIs(1, "REWRITE")) {
    rOk();
  } else {
    out.ascii("-ERR unknown subcommand '");
    sanitized(AP(1), AL(1), 128);
    out.ascii("'. Try CONFIG HELP.\r\n");
  }
}

function cmdCommand(): void {
  // Clients only use COMMAND for hints; an empty reply is valid and harmless.
  if (argc >= 2 && argIs(1, "COUNT")) rInt(0);
  else rArray(0);
}

function cmdClient(): void {
  if (argc < 2) { errArity(); return; }
  if (argIs(1, "ID")) rInt(curConn);
  else if (argIs(1, "GETNAME")) rNil();
  else if (argIs(1, "LIST") || argIs(1, "INFO")) rBulkStr("id=" + curConn.toString() + " db=0\n");
  else rOk();
}

function cmdSelect(): void {
  if (argc != 2) { errArity(); return; }
  let n = parseI64(AP(1), AL(1));
  if (!parseOk) { errNotInt(); return; }
  if (n != 0) { rErr("ERR DB index is out of range"); return; }
  rOk();
}

function cmdInfo(): void {
  let s = "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\nftvm_guest:kv\r\n" +
    "\r\n# Clients\r\nconnected_clients:" + conns.size.toString() + "\r\n" +
    "\r\n# Memory\r\nused_memory:" + (<i64>memory.size() << 16).toString() + "\r\n" +
    "\r\n# Persistence\r\nloading:0\r\naof_enabled:0\r\n" +
    "\r\n# Keyspace\r\n";
  if (db.size > 0) s += "db0:keys=" + db.size.toString() + ",expires=" + volatileKeys.toString() + ",avg_ttl=0\r\n";
  rBulkStr(s);
}

/**
 * Fault-injection hooks, as in Redis: `DEBUG SEGFAULT` traps (wasm `unreachable`), `DEBUG SLEEP
 * <ms>` spins for that many guest milliseconds in one event (past --event-timeout-ms it is a
 * guest timeout). They let tests send a poison request through a real client.
 */
function cmdDebug(): void {
  if (argc >= 2 && argIs(1, "SEGFAULT")) unreachable();
  if (argc == 3 && argIs(1, "SLEEP")) {
    let ms = parseI64(AP(2), AL(2));
    if (!parseOk || ms < 0) { errNotInt(); return; }
    let until = now() + ms * 1_000_000;
    while (now() < until) {}
    rOk();
    return;
  }
  rErr("ERR DEBUG subcommand must be SEGFAULT or SLEEP <ms>");
}

/** Runs the parsed command (argc >= 1). */
function dispatch(): void {
  let n = AL(0);
  if (n == 3) {
    if (argIs(0, "GET")) { cmdGet(); return; }
    if (argIs(0, "SET")) { cmdSet(); return; }
    if (argIs(0, "DEL")) { cmdDel(); return; }
    if (argIs(0, "TTL")) { cmdTtl(1_000_000_000); return; }
  } else if (n == 4) {
    if (argIs(0, "PING")) { cmdPing(); return; }
    if (argIs(0, "INCR")) { cmdIncr(1); return; }
    if (argIs(0, "DECR")) { cmdIncr(-1); return; }
    if (argIs(0, "ECHO")) { cmdEcho(); return; }
    if (argIs(0, "MSET")) { cmdMset(); return; }
    if (argIs(0, "MGET")) { cmdMget(); return; }
    if (argIs(0, "LPOP")) { cmdPop(true); return; }
    if (argIs(0, "RPOP")) { cmdPop(false); return; }
    if (argIs(0, "LLEN")) { cmdLlen(); return; }
    if (argIs(0, "SADD")) { cmdSadd(); return; }
    if (argIs(0, "SPOP")) { cmdSpop(); return; }
    if (argIs(0, "HSET")) { cmdHset(); return; }
    if (argIs(0, "HGET")) { cmdHget(); return; }
    if (argIs(0, "HDEL")) { cmdHdel(); return; }
    if (argIs(0, "HLEN")) { cmdHlen(); return; }
    if (argIs(0, "INFO")) { cmdInfo(); return; }
    if (argIs(0, "PTTL")) { cmdTtl(1_000_000); return; }
    if (argIs(0, "TYPE")) { cmdType(); return; }
    if (argIs(0, "ZADD")) { cmdZadd(); return; }
    if (argIs(0, "XADD")) { cmdXadd(); return; }
    if (argIs(0, "XLEN")) { cmdXlen(); return; }
    if (argIs(0, "QUIT")) { rOk(); conns.get(curConn).closing = true; return; }
  } else if (n == 5) {
    if (argIs(0, "LPUSH")) { cmdPush(true); return; }
    if (argIs(0, "RPUSH")) { cmdPush(false); return; }
    if (argIs(0, "SCARD")) { cmdScard(); return; }
    if (argIs(0, "ZCARD")) { cmdZcard(); return; }
    if (argIs(0, "DEBUG")) { cmdDebug(); return; }
  } else if (n == 6) {
    if (argIs(0, "EXISTS")) { cmdExists(); return; }
    if (argIs(0, "INCRBY")) { cmdIncrBy(false); return; }
    if (argIs(0, "DECRBY")) { cmdIncrBy(true); return; }
    if (argIs(0, "APPEND")) { cmdAppend(); return; }
    if (argIs(0, "STRLEN")) { cmdStrlen(); return; }
    if (argIs(0, "DBSIZE")) { cmdDbsize(); return; }
    if (argIs(0, "LRANGE")) { cmdLrange(); return; }
    if (argIs(0, "EXPIRE")) { cmdExpire(1000); return; }
    if (argIs(0, "CONFIG")) { cmdConfig(); return; }
    if (argIs(0, "CLIENT")) { cmdClient(); return; }
    if (argIs(0, "SELECT")) { cmdSelect(); return; }
    if (argIs(0, "ZSCORE")) { cmdZscore(); return; }
    if (argIs(0, "ZRANGE")) { cmdZrange(); return; }
  } else {
    if (argIs(0, "FLUSHALL") || argIs(0, "FLUSHDB")) { cmdFlushall(); return; }
    if (argIs(0, "SMEMBERS")) { cmdSmembers(); return; }
    if (argIs(0, "SISMEMBER")) { cmdSismember(); return; }
    if (argIs(0, "HGETALL")) { cmdHgetall(); return; }
    if (argIs(0, "PEXPIRE")) { cmdExpire(1); return; }
    if (argIs(0, "PERSIST")) { cmdPersist(); return; }
    if (argIs(0, "COMMAND")) { cmdCommand(); return; }
    if (argIs(0, "DISKCHECK")) { cmdDiskcheck(); return; }
    if (argIs(0, "ZPOPMIN")) { cmdZpopmin(); return; }
  }
  errUnknown();
}

/** Whether the parsed command changes the keyspace (and so is logged). */
function isWrite(): bool {
  let n = AL(0);
  if (n == 3) return argIs(0, "SET") || argIs(0, "DEL");
  if (n == 4) return argIs(0, "INCR") || argIs(0, "DECR") || argIs(0, "MSET") || argIs(0, "LPOP") || argIs(0, "RPOP") || argIs(0, "SADD")
    || argIs(0, "SPOP") || argIs(0, "HSET") || argIs(0, "HDEL") || argIs(0, "ZADD") || argIs(0, "XADD");
  if (n == 5) return argIs(0, "LPUSH") || argIs(0, "RPUSH");
  if (n == 6) return argIs(0, "INCRBY") || argIs(0, "DECRBY") || argIs(0, "APPEND") || argIs(0, "EXPIRE");
  return argIs(0, "FLUSHALL") || argIs(0, "FLUSHDB") || argIs(0, "PEXPIRE") || argIs(0, "PERSIST") || argIs(0, "ZPOPMIN");
}

/**
 * Runs the parsed command; a write is first appended to the disk log as
 * i64 guest time | u64 seed | the command in RESP. Refused (not run) when the log is full.
 */
function execute(): void {
  if (persist && !replaying && isWrite()) {
    cmdSeed = randomU64() | 1;
    rec.reset();
    store<i64>(rec.reserve(16), tnow);
    store<u64>(rec.ptr + 8, cmdSeed);
    rec.len = 16;
    rec.byte(42).int(argc).ascii("\r\n");
    for (let i = 0; i < argc; i++) rec.byte(36).int(AL(i)).ascii("\r\n").bytes(AP(i), AL(i)).ascii("\r\n");
    let ok = dlog.append(rec.ptr, rec.len);
    if (rec.cap > (1 << 20)) rec.free();
    if (!ok) { rErr(dlog.fits(rec.len) ? "ERR disk write failed" : "ERR disk log full"); return; }
  }
  dispatch();
}

/** Replays one logged command at boot: same time and seed, replies dropped. */
function replayRecord(p: usize, n: i32): void {
  if (n < 16) return;
  tnow = load<i64>(p);
  let c = new Conn();
  let used = parse(c, p + 16, n - 16);
  if (used > 0 && argc > 0) {
    let seed = load<u64>(p + 8);
    replaying = true;
    cmdSeed = seed;
    dispatch();
    replaying = false;
  }
  out.reset();
}

/** Opens the disk log (formatting a blank disk) and replays it: the first boot's state is the disk's. */
function openDisk(): void {
  let r = dlog.open(replayRecord);
  if (r == LOG_NO_DISK) return;
  if (r == LOG_FRESH || r == LOG_OPENED) {
    persist = true;
    logInfo("kv: disk log " + (r == LOG_FRESH ? "created" : "replayed") + ": " + dlog.records.toString() + " commands, " + db.size.toString() + " keys");
  } else {
    logError("kv: the disk does not hold a kv log (code " + r.toString() + "): running without persistence");
  }
}

function cmdDiskcheck(): void {
  if (!persist) { rErr("ERR no disk log (run with --disk)"); return; }
  let msg = dlog.check();
  if (msg.length == 0) rOk(); else rErr("ERR " + msg);
}

function cmdEcho(): void {
  if (argc != 2) { errArity(); return; }
  rArg(1);
}

// ---- RESP parsing -------------------------------------------------------------

/** Why the last parse failed, for the protocol error reply. */
let protoError = "";

/** Index of "\r\n" at or after `from` in [p, p+n), or -1. */
function findCrlf(p: usize, n: i32, from: i32): i32 {
  for (let i = from; i + 1 < n; i++) {
    if (load<u8>(p + <usize>i) == 13 && load<u8>(p + <usize>(i + 1)) == 10) return i;
  }
  return -1;
}

// Outcome of parse(): > 0 bytes of one complete command (args set, argc may be 0 for
// an empty command); 0 incomplete; -1 protocol error (protoError set).
function parse(c: Conn, p: usize, n: i32): i32 {
  argc = 0;
  c.need = 0;
  if (load<u8>(p) == 42) return parseMultibulk(c, p, n);
  return parseInline(p, n);
}

function parseInline(p: usize, n: i32): i32 {
  let nl = -1;
  let lim = min(n, MAX_LINE_BYTES + 1);
  for (let i = 0; i < lim; i++) if (load<u8>(p + <usize>i) == 10) { nl = i; break; }
  if (nl < 0) {
    if (n > MAX_LINE_BYTES) { protoError = "Protocol error: too big inline request"; return -1; }
    return 0;
  }
  let end = nl;
  if (end > 0 && load<u8>(p + <usize>(end - 1)) == 13) end--;
  let i = 0;
  while (i < end) {
    while (i < end && isSpace(load<u8>(p + <usize>i))) i++;
    if (i >= end) break;
    let s = i;
    while (i < end && !isSpace(load<u8>(p + <usize>i))) i++;
    pushArg(p + <usize>s, i - s);
  }
  return nl + 1;
}

// @ts-ignore: decorator
@inline function isSpace(c: u8): bool { return c == 32 || c == 9 || c == 13 || c == 11 || c == 12; }

function parseMultibulk(c: Conn, p: usize, n: i32): i32 {
  let eol = findCrlf(p, min(n, MAX_LINE_BYTES), 1);
  if (eol < 0) {
    if (n >= MAX_LINE_BYTES) { protoError = "Protocol error: too big mbulk count string"; return -1; }
    return 0;
  }
  let count = parseI64(p + 1, eol - 1);
  if (!parseOk || count > <i64>MAX_ARGS) { protoError = "Protocol error: invalid multibulk length"; return -1; }
  let pos = eol + 2;
  // "*0" and "*-1" are empty commands: consumed without a reply, as Redis does.
  for (let k: i64 = 0; k < count; k++) {
    if (pos >= n) return 0;
    let b = load<u8>(p + <usize>pos);
    if (b != 36) {
      protoError = "Protocol error: expected '$', got '" + String.fromCharCode(<i32>b) + "'";
      return -1;
    }
    let lineEnd = findCrlf(p, min(n, pos + MAX_LINE_BYTES), pos + 1);
    if (lineEnd < 0) {
      if (n - pos >= MAX_LINE_BYTES) { protoError = "Protocol error: too big bulk count string"; return -1; }
      return 0;
    }
    let blen = parseI64(p + <usize>(pos + 1), lineEnd - pos - 1);
    if (!parseOk || blen < 0 || blen > <i64>(MAX_REQUEST_BYTES - 64)) { protoError = "Protocol error: invalid bulk length"; return -1; }
    let start = lineEnd + 2;
    let next = <i64>start + blen + 2;
    if (next > <i64>n) {
      // Wait for the whole bulk before parsing this command again.
      c.need = <i32>min(next, <i64>MAX_REQUEST_BYTES);
      return 0;
    }
    pushArg(p + <usize>start, <i32>blen);
    pos = <i32>next;
  }
  return pos;
}

// ---- connection events --------------------------------------------------------

class Kv extends Guest {
  onInit(): void {
    tnow = now();
    openDisk();
  }

  onOpen(conn: i32): void {
    conns.set(conn, new Conn());
  }

  onData(conn: i32, ptr: usize, len: i32): void {
    let c: Conn;
    if (conns.has(conn)) c = conns.get(conn);
    else { c = new Conn(); conns.set(conn, c); }
    if (c.closing) return;
    curConn = conn;
    tnow = now();
    // Parsed in place unless a partial request is pending (see InputBuffer.take).
    if (!c.input.take(ptr, len)) {
      tooLarge(c, conn);
      return;
    }
    let buf = c.input;
    while (buf.length > 0 && !c.closing) {
      if (c.need > 0 && buf.length < c.need) break;
      let used = parse(c, buf.data(), buf.length);
      if (used == 0) break;
      if (used < 0) {
        rErr("ERR " + protoError);
        hangUp(c, conn);
        return;
      }
      if (argc > 0) execute();
      buf.consume(used);
      if (out.pending >= FLUSH_BYTES) out.flush(conn);
    }
    // A bulk larger than what is pending is waited for in one buffer of its declared size.
    if (!c.closing && (!buf.settle() || (c.need > buf.length && !buf.reserve(c.need)))) {
      tooLarge(c, conn);
      return;
    }
    out.flush(conn);
    if (c.closing) hangUp(c, conn);
  }

  onClose(conn: i32): void {
    if (conns.has(conn)) {
      conns.get(conn).input.free();
      conns.delete(conn);
    }
  }

  onTimer(tag: i32): void {
    if (tag == 1) sweep();
  }
}

/** More pending input than a request may have: an error, and the connection closed. */
function tooLarge(c: Conn, conn: i32): void {
  rErr("ERR Protocol error: request exceeds " + MAX_REQUEST_BYTES.toString() + " bytes, or pending input of all clients exceeds " + MAX_TOTAL_INPUT_BYTES.toString());
  hangUp(c, conn);
}

/** Flushes pending replies, closes the connection and drops its input. */
function hangUp(c: Conn, conn: i32): void {
  out.flush(conn);
  c.closing = true;
  c.input.free();
  close(conn);
}

setGuest(new Kv());
