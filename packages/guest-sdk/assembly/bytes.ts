// Byte-level building blocks for network guests: a bounded per-connection input
// buffer, a growable output writer and a hash map keyed by byte strings.
// InputBuffer and ByteWriter hold unmanaged memory (heap.alloc): the GC never moves
// or frees it, so call free() when done (e.g. in onClose).

import { sendBytes } from "./io";

/** Bytes [ptr, ptr+len) equal [ptr2, ptr2+len2)? */
export function bytesEqual(a: usize, alen: i32, b: usize, blen: i32): bool {
  return alen == blen && memory.compare(a, b, <usize>alen) == 0;
}

/** Bytes equal the ASCII string s (case-insensitive when ci)? s must be ASCII. */
export function bytesEqualAscii(ptr: usize, len: i32, s: string, ci: bool = false): bool {
  if (len != s.length) return false;
  for (let i = 0; i < len; i++) {
    let a = <u32>load<u8>(ptr + <usize>i);
    let b = <u32>s.charCodeAt(i);
    if (ci) {
      if (a - 65 < 26) a |= 32;
      if (b - 65 < 26) b |= 32;
    }
    if (a != b) return false;
  }
  return true;
}

/** FNV-1a, 32 bits, over [ptr, ptr+len). */
export function hashBytes(ptr: usize, len: i32): u32 {
  let h: u32 = 0x811c9dc5;
  for (let i = 0; i < len; i++) {
    h = (h ^ <u32>load<u8>(ptr + <usize>i)) * 0x01000193;
  }
  return h;
}

/** A managed copy of [ptr, ptr+len). */
export function copyBytes(ptr: usize, len: i32): ArrayBuffer {
  let b = new ArrayBuffer(len);
  memory.copy(changetype<usize>(b), ptr, <usize>len);
  return b;
}

/** Result flag of the last parseI64 call (AssemblyScript has no tuples). */
export let parseOk: bool = false;

/**
 * Parses a base-10 signed 64-bit integer that fills [ptr, ptr+len) exactly: optional
 * '-', digits, no spaces, no '+', no leading zeros (except "0"), in range. Sets
 * parseOk; returns 0 on failure.
 */
export function parseI64(ptr: usize, len: i32): i64 {
  parseOk = false;
  if (len <= 0 || len > 20) return 0;
  let i = 0;
  let neg = false;
  if (load<u8>(ptr) == 45) { neg = true; i = 1; if (len == 1) return 0; }
  let first = load<u8>(ptr + <usize>i);
  if (first == 48 && len > i + 1) return 0;
  if (neg && first == 48) return 0;
  // Accumulate as a negative number: |i64.MIN| does not fit in a positive i64.
  let acc: i64 = 0;
  for (; i < len; i++) {
    let d = <i32>load<u8>(ptr + <usize>i) - 48;
    if (d < 0 || d > 9) return 0;
    if (acc < (i64.MIN_VALUE + d) / 10) return 0;
    acc = acc * 10 - d;
  }
  if (!neg) {
    if (acc == i64.MIN_VALUE) return 0;
    acc = -acc;
  }
  parseOk = true;
  return acc;
}

/** Bytes held by every InputBuffer's storage together (their capacities). */
let inputHeld: i64 = 0;
/** The most all InputBuffers together may hold; a growth past it fails like the per-buffer limit. */
let inputBudget: i64 = i64.MAX_VALUE;

/**
 * Caps the memory of all pending input together (a guest calls it once at start): a hostile
 * client sending partial requests on many connections cannot grow memory past it.
 */
export function setInputBudget(bytes: i64): void { inputBudget = bytes; }
/** Bytes of storage every InputBuffer holds now. */
export function inputHeldBytes(): i64 { return inputHeld; }

/**
 * A bounded, growable input buffer for one connection: take() (or append) what
 * arrives, parse from data(), consume() what was used, settle() before returning
 * from onData. Never holds more than `limit` bytes of pending input: append and
 * settle return false instead.
 *
 * take() parses a delivery in place when nothing is pending, the usual case: then the
 * connection's own buffer is neither copied to nor written, so a request dirties no
 * page of it, and every checkpoint of a server with many connections stays smaller
 * (one page per active connection and epoch otherwise).
 */
export class InputBuffer {
  ptr: usize = 0;
  cap: i32 = 0;
  start: i32 = 0;
  end: i32 = 0;
  /** The delivery being parsed in place (start/end index it); 0: none. */
  lent: usize = 0;

  constructor(public limit: i32) {}

  /** Address of the first unconsumed byte. */
  data(): usize { return (this.lent != 0 ? this.lent : this.ptr) + <usize>this.start; }
  /** Unconsumed bytes. */
  get length(): i32 { return this.end - this.start; }

  /** Appends [src, src+len); false (and nothing appended) when it would exceed limit. */
  append(src: usize, len: i32): bool {
    if (len <= 0) return true;
    if (this.lent != 0) abort("InputBuffer.append during a take (settle first)");
    let pending = this.end - this.start;
    if (<i64>pending + <i64>len > <i64>this.limit) return false;
    if (this.end + len > this.cap) {
      if (pending + len <= this.cap && this.start > 0) {
        memory.copy(this.ptr, this.ptr + <usize>this.start, <usize>pending);
      } else {
        let want = max(max(this.cap * 2, pending + len), 4096);
        if (want > this.limit) want = max(this.limit, pending + len);
        // Within the budget of all buffers: the exact size if doubling would not fit.
        if (inputHeld - <i64>this.cap + <i64>want > inputBudget) want = pending + len;
        if (inputHeld - <i64>this.cap + <i64>want > inputBudget) return false;
        this.regrow(want);
      }
      this.start = 0;
      this.end = pending;
    }
    memory.copy(this.ptr + <usize>this.end, src, <usize>len);
    this.end += len;
    return true;
  }

  /** Drops n bytes from the front. An emptied large buffer is released, so idle
   *  connections do not pin the memory of their largest request. */
  consume(n: i32): void {
    this.start += n;
    if (this.start >= this.end) {
      this.start = 0;
      this.end = 0;
      this.lent = 0;
      if (this.cap > 65536) this.free();
    }
  }

  /**
   * Takes the delivery [src, src+len), valid until settle(): parsed in place when nothing
   * is pending, appended otherwise. false (nothing taken) as append.
   */
  take(src: usize, len: i32): bool {
    if (len <= 0) return true;
    if (this.lent != 0) abort("InputBuffer.take twice (settle first)");
    if (this.end > this.start) return this.append(src, len);
    this.lent = src;
    this.start = 0;
    this.end = len;
    return true;
  }

  /**
   * Ends a take: the delivery's unconsumed bytes (an incomplete request) are copied into
   * the connection's buffer, as the delivery's memory goes back to the host. false when
   * they exceed limit (they are dropped, the buffer is empty).
   */
  settle(): bool {
    if (this.lent == 0) return true;
    let src = this.lent + <usize>this.start;
    let n = this.end - this.start;
    this.lent = 0;
    this.start = 0;
    this.end = 0;
    return this.append(src, n);
  }

  /**
   * Makes room for `total` pending bytes in one exact allocation (a request whose size is
   * declared, like a bulk string), so a large request does not grow by doubling and leave a
   * trail of freed blocks in the heap. false when `total` passes limit or the input budget.
   */
  reserve(total: i32): bool {
    if (this.lent != 0) abort("InputBuffer.reserve during a take (settle first)");
    if (<i64>total > <i64>this.limit) return false;
    let pending = this.end - this.start;
    if (total <= this.cap) {
      if (this.start > 0 && total > this.cap - this.start) {
        memory.copy(this.ptr, this.ptr + <usize>this.start, <usize>pending);
        this.start = 0;
        this.end = pending;
      }
      return true;
    }
    if (inputHeld - <i64>this.cap + <i64>total > inputBudget) return false;
    this.regrow(total);
    return true;
  }

  /** Moves the pending bytes to the front of a new allocation of `cap` bytes. */
  private regrow(cap: i32): void {
    let pending = this.end - this.start;
    inputHeld += <i64>cap - <i64>this.cap;
    let np = heap.alloc(<usize>cap);
    if (pending > 0) memory.copy(np, this.ptr + <usize>this.start, <usize>pending);
    if (this.ptr != 0) heap.free(this.ptr);
    this.ptr = np;
    this.cap = cap;
    this.start = 0;
    this.end = pending;
  }

  /** Releases the memory; the buffer stays usable (and empty). */
  free(): void {
    this.lent = 0;
    if (this.ptr != 0) heap.free(this.ptr);
    inputHeld -= <i64>this.cap;
    this.ptr = 0;
    this.cap = 0;
    this.start = 0;
    this.end = 0;
  }
}

/**
 * A growable output buffer: replies are appended and sent in one host call by
 * flush(). Callers bound its size by flushing (see `pending`).
 */
export class ByteWriter {
  ptr: usize = 0;
  cap: i32 = 0;
  len: i32 = 0;

  /** Makes room for n more bytes; returns the write address. */
  reserve(n: i32): usize {
    if (this.len + n > this.cap) {
      let want = max(max(this.cap * 2, this.len + n), 1024);
      this.ptr = this.ptr == 0 ? heap.alloc(<usize>want) : heap.realloc(this.ptr, <usize>want);
      this.cap = want;
    }
    return this.ptr + <usize>this.len;
  }

  byte(b: i32): ByteWriter {
    store<u8>(this.reserve(1), <u8>b);
    this.len += 1;
    return this;
  }

  bytes(src: usize, n: i32): ByteWriter {
    if (n > 0) {
      memory.copy(this.reserve(n), src, <usize>n);
      this.len += n;
    }
    return this;
  }

  buffer(b: ArrayBuffer): ByteWriter {
    return this.bytes(changetype<usize>(b), b.byteLength);
  }

  /** Appends an ASCII string byte by byte (chars above 0x7f are truncated: use utf8). */
  ascii(s: string): ByteWriter {
    let n = s.length;
    let p = this.reserve(n);
    for (let i = 0; i < n; i++) store<u8>(p + <usize>i, <u8>s.charCodeAt(i));
    this.len += n;
    return this;
  }

  utf8(s: string): ByteWriter {
    return this.buffer(String.UTF8.encode(s));
  }

  /** Appends the base-10 text of v. */
  int(v: i64): ByteWriter {
    let p = this.reserve(20);
    let u: u64;
    let n = 0;
    if (v < 0) {
      store<u8>(p, 45);
      n = 1;
      u = <u64>(-(v + 1)) + 1;
    } else {
      u = <u64>v;
    }
    let digits = 1;
    for (let t = u; t >= 10; t /= 10) digits++;
    for (let i = digits - 1; i >= 0; i--) {
      store<u8>(p + <usize>(n + i), <u8>(48 + <i32>(u % 10)));
      u /= 10;
    }
    this.len += n + digits;
    return this;
  }

  get pending(): i32 { return this.len; }

  /** Sends everything written so far on conn and empties the writer. */
  flush(conn: i32): void {
    if (this.len > 0) sendBytes(conn, this.ptr, this.len);
    this.len = 0;
    // A writer that once held a huge reply gives the memory back.
    if (this.cap > (1 << 20)) this.free();
  }

  /** Drops the content without sending it. */
  reset(): void { this.len = 0; }

  free(): void {
    if (this.ptr != 0) heap.free(this.ptr);
    this.ptr = 0;
    this.cap = 0;
    this.len = 0;
  }
}

/** One key of a BytesMap. `aux` is free for the owner (e.g. an expiry time). */
export class BytesEntry<V> {
  aux: i64 = 0;
  next: BytesEntry<V> | null = null;
  constructor(public key: ArrayBuffer, public hash: u32, public value: V) {}
}

/**
 * A chained hash map keyed by byte strings, looked up by (ptr, len) without copying
 * the key. Buckets double when the load reaches 1, up to MAX_BUCKETS.
 */
export class BytesMap<V> {
  static readonly MIN_BUCKETS: i32 = 16;
  static readonly MAX_BUCKETS: i32 = 1 << 24;
  buckets: StaticArray<BytesEntry<V> | null> = new StaticArray<BytesEntry<V> | null>(BytesMap.MIN_BUCKETS);
  size: i32 = 0;

  find(ptr: usize, len: i32): BytesEntry<V> | null {
    return this.findHashed(ptr, len, hashBytes(ptr, len));
  }

  findHashed(ptr: usize, len: i32, h: u32): BytesEntry<V> | null {
    let e = unchecked(this.buckets[<i32>(h & <u32>(this.buckets.length - 1))]);
    while (e !== null) {
      if (e.hash == h && e.key.byteLength == len && memory.compare(changetype<usize>(e.key), ptr, <usize>len) == 0) return e;
      e = e.next;
    }
    return null;
  }

  /** Inserts a new key (copied) or replaces the value of an existing one (aux kept). */
  set(ptr: usize, len: i32, value: V): BytesEntry<V> {
    let h = hashBytes(ptr, len);
    let e = this.findHashed(ptr, len, h);
    if (e !== null) {
      e.value = value;
      return e;
    }
    return this.insertNew(copyBytes(ptr, len), h, value);
  }

  /** Inserts a key known to be absent; `key` is taken, not copied. */
  insertNew(key: ArrayBuffer, h: u32, value: V): BytesEntry<V> {
    if (this.size >= this.buckets.length && this.buckets.length < BytesMap.MAX_BUCKETS) this.resize(this.buckets.length << 1);
    let ne = new BytesEntry<V>(key, h, value);
    let idx = <i32>(h & <u32>(this.buckets.length - 1));
    ne.next = unchecked(this.buckets[idx]);
    unchecked(this.buckets[idx] = ne);
    this.size++;
    return ne;
  }

  delete(ptr: usize, len: i32): bool {
    let e = this.find(ptr, len);
    if (e === null) return false;
    this.deleteEntry(e);
    return true;
  }

  deleteEntry(target: BytesEntry<V>): void {
    let idx = <i32>(target.hash & <u32>(this.buckets.length - 1));
    let e = unchecked(this.buckets[idx]);
    let prev: BytesEntry<V> | null = null;
    while (e !== null) {
      if (e === target) {
        if (prev === null) unchecked(this.buckets[idx] = e.next);
        else prev.next = e.next;
        this.size--;
        return;
      }
      prev = e;
      e = e.next;
    }
  }

  clear(): void {
    this.buckets = new StaticArray<BytesEntry<V> | null>(BytesMap.MIN_BUCKETS);
    this.size = 0;
  }

  /** All entries, in bucket order. */
  entries(): Array<BytesEntry<V>> {
    let out = new Array<BytesEntry<V>>(0);
    for (let i = 0, n = this.buckets.length; i < n; i++) {
      let e = unchecked(this.buckets[i]);
      while (e !== null) { out.push(e); e = e.next; }
    }
    return out;
  }

  /** Some entry, chosen from a random start bucket r; null when empty. */
  randomEntry(r: u32): BytesEntry<V> | null {
    if (this.size == 0) return null;
    let n = this.buckets.length;
    let start = <i32>(r & <u32>(n - 1));
    for (let k = 0; k < n; k++) {
      let e = unchecked(this.buckets[(start + k) & (n - 1)]);
      if (e !== null) return e;
    }
    return null;
  }

  private resize(n: i32): void {
    let nb = new StaticArray<BytesEntry<V> | null>(n);
    let old = this.buckets;
    for (let i = 0, m = old.length; i < m; i++) {
      let e = unchecked(old[i]);
      while (e !== null) {
        let next = e.next;
        let idx = <i32>(e.hash & <u32>(n - 1));
        e.next = unchecked(nb[idx]);
        unchecked(nb[idx] = e);
        e = next;
      }
    }
    this.buckets = nb;
  }
}

/** Index of the first `b` in [ptr, ptr+len), or -1. */
export function indexOfByte(ptr: usize, len: i32, b: u8): i32 {
  for (let i = 0; i < len; i++) if (load<u8>(ptr + <usize>i) == b) return i;
  return -1;
}

/** Index of the first occurrence of [needle, needle+nlen) in [ptr, ptr+len), or -1. */
export function indexOfBytes(ptr: usize, len: i32, needle: usize, nlen: i32): i32 {
  if (nlen == 0) return 0;
  let first = load<u8>(needle);
  for (let i = 0; i + nlen <= len; i++) {
    if (load<u8>(ptr + <usize>i) == first && memory.compare(ptr + <usize>i, needle, <usize>nlen) == 0) return i;
  }
  return -1;
}
