/**
 * Page codecs, chosen page by page.
 *
 * Batch layout (the payload of ckpt_pages / ckpt_blocks), little-endian:
 *
 *   u32 count
 *   count x ( u32 pageNo | u8 codec | u32 len | len bytes )
 *
 * codec   len        body
 * ZERO    0          none: the page is all zero
 * RAW     4096       the page
 * LZ4     1..4095    LZ4 block of the page
 * XOR_LZ4 1..4095    LZ4 block of (page XOR the copy of that page last sent)
 * SPARSE  8..4092    runs of non-zero 32-bit words: per run a u32 (first word | count << 16)
 *                    then its words, runs ascending; the words between runs are zero
 * XOR_SPARSE 0..4092 SPARSE of (page XOR the copy of that page last sent); 0: unchanged
 *
 * The encoder picks per page: ZERO if all zero; SPARSE (or XOR_SPARSE, for a page whose
 * previous copy it holds) when that body is at most 256 bytes: a word scan is an order of
 * magnitude cheaper than an LZ4 call, and mostly-zero pages are what a guest's untouched
 * heap looks like. Else the smaller of LZ4 and XOR_LZ4 (XOR_LZ4 only when it holds the
 * page's previous copy; a delta of at most 128 bytes is taken without trying LZ4); RAW when
 * neither is smaller than the page.
 *
 * XOR_LZ4 (like QEMU's XBZRLE) needs the receiver to hold exactly the copy the sender
 * last sent: the encoder's cache assumes every batch it produced is applied. When a
 * batch or checkpoint is lost or refused, call `forget()` (or `forgetPages`) so the
 * next send of those pages is self-contained.
 */
import { MAX_MEMORY_BYTES, PAGE_BYTES } from '@ftvm/guest-abi';
import { ProtocolError, malformed } from './errors.js';
import { lz4Compress, lz4Decompress } from './lz4.js';

export const Codec = { ZERO: 0, RAW: 1, LZ4: 2, XOR_LZ4: 3, SPARSE: 4, XOR_SPARSE: 5 } as const;
export type CodecName = keyof typeof Codec;
const CODEC_NAMES: CodecName[] = ['ZERO', 'RAW', 'LZ4', 'XOR_LZ4', 'SPARSE', 'XOR_SPARSE'];

/** Largest SPARSE / XOR_SPARSE body the encoder produces, bytes. */
const SPARSE_MAX_BYTES = 256;
const PAGE_WORDS = PAGE_BYTES / 4;

/**
 * Writes the SPARSE body of the page `w[off .. off + 1024)` into `dst` (words); returns its
 * length in bytes (0: all zero), or -1 when it would exceed `dst` (the scan stops there).
 */
export function sparseEncode(w: Int32Array, off: number, dst: Int32Array): number {
  let n = 0;
  const cap = dst.length;
  for (let i = 0; i < PAGE_WORDS; ) {
    // Eight words at a time while they are zero (~4 GB/s here; a word at a time ran ~0.6).
    // Past the page end the OR may read the next page's words or undefined: either only
    // stops the skip, and the run scan below never leaves the page.
    const b = off + i;
    if ((w[b]! | w[b + 1]! | w[b + 2]! | w[b + 3]! | w[b + 4]! | w[b + 5]! | w[b + 6]! | w[b + 7]!) === 0) {
      i += 8;
      continue;
    }
    const end = Math.min(i + 8, PAGE_WORDS);
    while (i < end) {
      if (w[off + i] === 0) {
        i++;
        continue;
      }
      let j = i + 1;
      while (j < PAGE_WORDS && w[off + j] !== 0) j++;
      const count = j - i;
      if (n + 1 + count > cap) return -1;
      dst[n++] = i | (count << 16);
      for (let k = i; k < j; k++) dst[n++] = w[off + k]!;
      i = j;
    }
  }
  return n * 4;
}

/** Applies a SPARSE body (`b`, words) onto a zeroed page `w`; false when malformed. */
function sparseDecode(b: Int32Array, w: Int32Array): boolean {
  let prevEnd = 0;
  for (let n = 0; n < b.length; ) {
    const h = b[n++]!;
    const first = h & 0xffff;
    const count = h >>> 16;
    if (count < 1 || first < prevEnd || first + count > PAGE_WORDS || n + count > b.length) return false;
    for (let k = 0; k < count; k++) w[first + k] = b[n++]!;
    prevEnd = first + count;
  }
  return true;
}

/** An XOR_LZ4 body at most this long (bytes) is sent without also trying plain LZ4. */
const SMALL_DELTA_BYTES = 128;

/** Bytes before each page body: pageNo, codec, len. */
export const ENTRY_HEADER_BYTES = 9;
/** Most pages in one batch: 8192 pages = 32 MiB raw, so a RAW batch fits a 64 MiB payload. */
export const MAX_BATCH_PAGES = 8192;
/** Highest page number + 1 (4 GiB of 4 KiB pages). */
export const MAX_PAGES = MAX_MEMORY_BYTES / PAGE_BYTES;

export interface CodecStats { pages: number; bytes: number }

export interface EncodedBatch {
  payload: Uint8Array;
  /** payload.length, bytes. */
  wireBytes: number;
  /** pages * 4096, bytes. */
  rawBytes: number;
  /** Pages per codec and their encoded body bytes (without the 9-byte entry headers), as @ftvm/metrics counts them. */
  byCodec: Record<CodecName, CodecStats>;
}

export interface PageEncoderOptions {
  /** false: ZERO and RAW only (no CPU spent compressing). Default true. */
  compression?: boolean;
  /**
   * Keep a copy of every page last sent, for XOR_LZ4. The cache grows to the highest
   * page sent: its memory equals the guest image. Default true (ignored without compression).
   */
  keepPrevious?: boolean;
  /** Try SPARSE / XOR_SPARSE before LZ4 (ignored without compression). Default true. */
  sparse?: boolean;
}

const ZERO_PAGE = new Uint8Array(PAGE_BYTES);

const isZeroPage = (page: Uint8Array): boolean => Buffer.compare(page, ZERO_PAGE) === 0;

function emptyStats(): Record<CodecName, CodecStats> {
  return { ZERO: { pages: 0, bytes: 0 }, RAW: { pages: 0, bytes: 0 }, LZ4: { pages: 0, bytes: 0 }, XOR_LZ4: { pages: 0, bytes: 0 }, SPARSE: { pages: 0, bytes: 0 }, XOR_SPARSE: { pages: 0, bytes: 0 } };
}

function checkPageNo(pageNo: number, what: string): void {
  if (!Number.isInteger(pageNo) || pageNo < 0 || pageNo >= MAX_PAGES) throw new ProtocolError('FTVM_ERR_INVALID_OPTION', `${what} ${pageNo} is outside 0..${MAX_PAGES - 1}`);
}

type ResizableArrayBuffer = ArrayBuffer & { resize(n: number): void };
type ResizableArrayBufferCtor = new (bytes: number, opts: { maxByteLength: number }) => ResizableArrayBuffer;

/**
 * A byte image that grows by doubling up to a cap, for caches and receive images. Unshared,
 * it is a resizable buffer reserving the cap, grown in place (its view tracks the length): a
 * copy on growth held the primary's event loop ~1 s when its encoder's cache went from 128 to
 * 256 MiB on this VM (every page of the new buffer faulted in at once). Shared, it is copied
 * into a bigger SharedArrayBuffer.
 */
class GrowableImage {
  bytes: Uint8Array = new Uint8Array(0);
  private buf: ResizableArrayBuffer | null = null;
  constructor(private readonly maxBytes: number, private readonly shared = false) {}
  ensure(byteLength: number): void {
    if (byteLength <= this.bytes.length) return;
    if (byteLength > this.maxBytes) throw malformed(`image of ${byteLength} bytes exceeds the limit ${this.maxBytes}`);
    const n = Math.min(this.maxBytes, Math.max(byteLength, this.bytes.length * 2, 16 * PAGE_BYTES));
    if (!this.shared) {
      // Reserved on the first growth only: encoders and decoders that never hold pages reserve nothing.
      if (this.buf === null) {
        this.buf = new (ArrayBuffer as unknown as ResizableArrayBufferCtor)(0, { maxByteLength: this.maxBytes });
        this.bytes = new Uint8Array(this.buf);
      }
      this.buf.resize(n);
      return;
    }
    const next = new Uint8Array(new SharedArrayBuffer(n));
    next.set(this.bytes);
    this.bytes = next;
  }
  /** Drops the bytes (and the reservation). */
  clear(): void {
    this.buf = null;
    this.bytes = new Uint8Array(0);
  }
}

export class PageEncoder {
  readonly compression: boolean;
  readonly keepPrevious: boolean;
  readonly useSparse: boolean;
  private readonly cache = new GrowableImage(MAX_MEMORY_BYTES);
  /** known[p] = 1 when the cache holds the copy of page p last sent. */
  private known = new Uint8Array(0);
  private readonly xor = new Uint8Array(PAGE_BYTES);
  private readonly xorWords = new Int32Array(this.xor.buffer);
  // Scratch outputs one byte short of a page: lz4 returns 0 when the result would
  // not be smaller than the page, which is exactly when RAW wins.
  private readonly lzA = Buffer.alloc(PAGE_BYTES - 1);
  private readonly lzB = Buffer.alloc(PAGE_BYTES - 1);
  private readonly sparse = new Int32Array(SPARSE_MAX_BYTES / 4);
  private readonly sparseBytes = new Uint8Array(this.sparse.buffer);
  private scratch = Buffer.alloc(0);

  constructor(opts: PageEncoderOptions = {}) {
    for (const key of ['compression', 'keepPrevious', 'sparse'] as const) {
      if (opts[key] !== undefined && typeof opts[key] !== 'boolean') throw new ProtocolError('FTVM_ERR_INVALID_OPTION', `${key} must be a boolean`);
    }
    this.compression = opts.compression ?? true;
    this.keepPrevious = this.compression && (opts.keepPrevious ?? true);
    this.useSparse = opts.sparse ?? true;
  }

  /** Bytes held by the previous-copy cache. */
  get cacheBytes(): number {
    return this.cache.bytes.length;
  }

  /** Drops every cached copy: the next batch is self-contained (full resync). */
  forget(): void {
    this.cache.clear();
    this.known = new Uint8Array(0);
  }

  /** Drops the cached copies of some pages (their last batch was not applied). */
  forgetPages(pages: ArrayLike<number>): void {
    for (let i = 0; i < pages.length; i++) {
      const p = pages[i]!;
      if (p < this.known.length) this.known[p] = 0;
    }
  }

  /** Encodes `pages` (page numbers) whose contents are `data` (pages.length * 4096 bytes, in order). */
  encodeBatch(pages: ArrayLike<number>, data: Uint8Array): EncodedBatch {
    const count = pages.length;
    if (count > MAX_BATCH_PAGES) throw new ProtocolError('FTVM_ERR_INVALID_OPTION', `a batch holds at most ${MAX_BATCH_PAGES} pages, got ${count}`);
    if (data.length !== count * PAGE_BYTES) throw new ProtocolError('FTVM_ERR_INVALID_OPTION', `data must be ${count} pages (${count * PAGE_BYTES} bytes), got ${data.length}`);
    const worst = 4 + count * (ENTRY_HEADER_BYTES + PAGE_BYTES);
    // A warm scratch buffer: fresh multi-MiB allocations cost more in page faults than encoding.
    if (this.scratch.length < worst) this.scratch = Buffer.allocUnsafe(Math.max(worst, this.scratch.length * 2));
    const out = this.scratch;
    out.writeUInt32LE(count, 0);
    let at = 4;
    const byCodec = emptyStats();
    const words = data.byteOffset % 4 === 0 ? new Int32Array(data.buffer, data.byteOffset, data.length >>> 2) : null;
    for (let i = 0; i < count; i++) {
      const pageNo = pages[i]!;
      checkPageNo(pageNo, 'page number');
      const page = data.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES);
      let codec: number = Codec.RAW;
      let body: Uint8Array = page;
      if (isZeroPage(page)) {
        codec = Codec.ZERO;
        body = ZERO_PAGE.subarray(0, 0);
      } else if (this.compression) {
        const known = this.keepPrevious && this.isKnown(pageNo);
        let sparse = -1;
        if (known) {
          this.xorWithCached(pageNo, page);
          if (this.useSparse) sparse = sparseEncode(this.xorWords, 0, this.sparse);
        } else if (words && this.useSparse) {
          sparse = sparseEncode(words, i * PAGE_WORDS, this.sparse);
        }
        if (sparse >= 0) {
          codec = known ? Codec.XOR_SPARSE : Codec.SPARSE;
          body = this.sparseBytes.subarray(0, sparse);
        } else {
          const delta = known ? lz4Compress(this.xor, this.lzB) : 0;
          // A delta this small cannot lose to plain LZ4 by more than a few bytes: skip that attempt.
          const plain = delta > 0 && delta <= SMALL_DELTA_BYTES ? 0 : lz4Compress(page, this.lzA);
          if (delta > 0 && (plain === 0 || delta < plain)) {
            codec = Codec.XOR_LZ4;
            body = this.lzB.subarray(0, delta);
          } else if (plain > 0) {
            codec = Codec.LZ4;
            body = this.lzA.subarray(0, plain);
          }
        }
      }
      out.writeUInt32LE(pageNo, at);
      out[at + 4] = codec;
      out.writeUInt32LE(body.length, at + 5);
      out.set(body, at + ENTRY_HEADER_BYTES);
      at += ENTRY_HEADER_BYTES + body.length;
      const stats = byCodec[CODEC_NAMES[codec]!];
      stats.pages++;
      stats.bytes += body.length;
      // A SPARSE page is cheap to send again as it is: no cached copy (a 4 KiB copy per page, and
      // the cache's memory). A cached copy is kept for every other codec (XOR needs it).
      if (codec === Codec.SPARSE || codec === Codec.ZERO) this.forgetPage(pageNo);
      else if (this.keepPrevious) this.remember(pageNo, page);
    }
    const payload = new Uint8Array(out.subarray(0, at));
    return { payload, wireBytes: payload.length, rawBytes: count * PAGE_BYTES, byCodec };
  }

  private forgetPage(pageNo: number): void {
    if (pageNo < this.known.length) this.known[pageNo] = 0;
  }

  private isKnown(pageNo: number): boolean {
    return pageNo < this.known.length && this.known[pageNo] === 1;
  }

  private remember(pageNo: number, page: Uint8Array): void {
    this.cache.ensure((pageNo + 1) * PAGE_BYTES);
    this.cache.bytes.set(page, pageNo * PAGE_BYTES);
    if (pageNo >= this.known.length) {
      const next = new Uint8Array(Math.max(pageNo + 1, this.known.length * 2));
      next.set(this.known);
      this.known = next;
    }
    this.known[pageNo] = 1;
  }

  private xorWithCached(pageNo: number, page: Uint8Array): void {
    // Copy the cached page out first: the cache is a resizable ArrayBuffer, and a word loop
    // over a view of one runs 2-3x slower in this V8 than a native copy plus a loop over a
    // plain buffer (measured: ~4 µs against ~0.7 µs per page).
    const x = this.xor;
    x.set(this.cache.bytes.subarray(pageNo * PAGE_BYTES, (pageNo + 1) * PAGE_BYTES));
    if (page.byteOffset % 4 === 0) {
      const xw = this.xorWords;
      const n = xw.length;
      const cur = new Int32Array(page.buffer, page.byteOffset, n);
      for (let i = 0; i < n; i++) xw[i] ^= cur[i]!;
    } else {
      for (let i = 0, n = x.length; i < n; i++) x[i] ^= page[i]!;
    }
  }
}

/** Where decoded pages go when not into the decoder's own image. */
export interface PageSink {
  /** The copy of `pageNo` last received (XOR_LZ4 applies onto it); undefined = zeros. */
  base(pageNo: number): Uint8Array | undefined;
  /** A decoded page; `page` (4096 bytes) is only valid during the call. */
  put(pageNo: number, page: Uint8Array): void;
}

export interface DecodedBatch {
  count: number;
  /** Page numbers in batch order. */
  pages: Uint32Array;
  wireBytes: number;
  rawBytes: number;
}

export interface PageDecoderOptions {
  /** Largest image the decoder's own image may grow to, bytes. Default 4 GiB. */
  maxImageBytes?: number;
  /** Most pages accepted in one batch. Default MAX_BATCH_PAGES. */
  maxBatchPages?: number;
  /**
   * Keep the decoder's own image in a SharedArrayBuffer, so a received image can be handed
   * to a worker thread (a vCPU) without a copy. Default false.
   */
  shared?: boolean;
}

interface Entry { pageNo: number; codec: number; start: number; len: number }

/**
 * Applies batches onto an image (`image`, growing as needed) or a `PageSink`. Every
 * length is checked before use; bad input is FTVM_ERR_FRAME_MALFORMED. The batch is
 * parsed fully before any page is written, but an LZ4 body found corrupt while
 * decoding leaves the earlier pages of the batch applied: discard the staged
 * checkpoint on any error.
 */
export class PageDecoder {
  private readonly store: GrowableImage;
  readonly maxBatchPages: number;
  private readonly page = new Uint8Array(PAGE_BYTES);
  private readonly delta = new Uint8Array(PAGE_BYTES);
  private readonly page32 = new Int32Array(this.page.buffer);
  private readonly delta32 = new Int32Array(this.delta.buffer);
  private readonly sparseIn = new Uint8Array(PAGE_BYTES);
  private readonly sparseIn32 = new Int32Array(this.sparseIn.buffer);

  constructor(opts: PageDecoderOptions = {}) {
    const maxImageBytes = opts.maxImageBytes ?? MAX_MEMORY_BYTES;
    if (!Number.isSafeInteger(maxImageBytes) || maxImageBytes < 0 || maxImageBytes > MAX_MEMORY_BYTES || maxImageBytes % PAGE_BYTES !== 0) {
      throw new ProtocolError('FTVM_ERR_INVALID_OPTION', `maxImageBytes must be a multiple of ${PAGE_BYTES} in 0..${MAX_MEMORY_BYTES}, got ${maxImageBytes}`);
    }
    const maxBatchPages = opts.maxBatchPages ?? MAX_BATCH_PAGES;
    if (!Number.isSafeInteger(maxBatchPages) || maxBatchPages < 1) throw new ProtocolError('FTVM_ERR_INVALID_OPTION', `maxBatchPages must be a positive integer, got ${maxBatchPages}`);
    if (opts.shared !== undefined && typeof opts.shared !== 'boolean') throw new ProtocolError('FTVM_ERR_INVALID_OPTION', 'shared must be a boolean');
    this.store = new GrowableImage(maxImageBytes, opts.shared ?? false);
    this.maxBatchPages = maxBatchPages;
  }

  /** The decoded image; its length is a multiple of 4096 and may exceed the guest memory. */
  get image(): Uint8Array {
    return this.store.bytes;
  }

  /** Makes the image at least `bytes` long (e.g. ckpt_begin.memBytes). */
  ensure(bytes: number): void {
    this.store.ensure(Math.ceil(bytes / PAGE_BYTES) * PAGE_BYTES);
  }

  /** Applies a batch onto the decoder's image. `expectedCount`: the header's count, checked. */
  apply(payload: Uint8Array, expectedCount?: number): DecodedBatch {
    const entries = this.parse(payload, expectedCount);
    let top = 0;
    for (const e of entries) top = Math.max(top, e.pageNo + 1);
    this.store.ensure(top * PAGE_BYTES);
    const img = this.store.bytes;
    return this.decode(payload, entries, {
      base: (p) => img.subarray(p * PAGE_BYTES, (p + 1) * PAGE_BYTES),
      put: (p, page) => img.set(page, p * PAGE_BYTES),
    });
  }

  /** Decodes a batch into a sink (e.g. a staging area over the last committed image). */
  decodeInto(payload: Uint8Array, sink: PageSink, expectedCount?: number): DecodedBatch {
    return this.decode(payload, this.parse(payload, expectedCount), sink);
  }

  private parse(payload: Uint8Array, expectedCount: number | undefined): Entry[] {
    if (payload.length < 4) throw malformed(`page batch of ${payload.length} bytes has no count`);
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    const count = view.getUint32(0, true);
    if (count > this.maxBatchPages) throw malformed(`page batch count ${count} exceeds ${this.maxBatchPages}`);
    if (expectedCount !== undefined && count !== expectedCount) throw malformed(`page batch holds ${count} pages, header says ${expectedCount}`);
    // Smallest possible batch for this count: every entry ZERO.
    if (4 + count * ENTRY_HEADER_BYTES > payload.length) throw malformed(`page batch of ${payload.length} bytes cannot hold ${count} pages`);
    const entries: Entry[] = new Array(count);
    let at = 4;
    for (let i = 0; i < count; i++) {
      if (at + ENTRY_HEADER_BYTES > payload.length) throw malformed(`page entry ${i} header runs past the batch end`);
      const pageNo = view.getUint32(at, true);
      const codec = view.getUint8(at + 4);
      const len = view.getUint32(at + 5, true);
      at += ENTRY_HEADER_BYTES;
      if (pageNo >= MAX_PAGES) throw malformed(`page entry ${i}: page ${pageNo} is beyond the 4 GiB address space`);
      switch (codec) {
        case Codec.ZERO:
          if (len !== 0) throw malformed(`page entry ${i}: ZERO with ${len} body bytes`);
          break;
        case Codec.RAW:
          if (len !== PAGE_BYTES) throw malformed(`page entry ${i}: RAW with ${len} body bytes, want ${PAGE_BYTES}`);
          break;
        case Codec.LZ4:
        case Codec.XOR_LZ4:
          if (len < 1 || len >= PAGE_BYTES) throw malformed(`page entry ${i}: ${CODEC_NAMES[codec]} body of ${len} bytes, want 1..${PAGE_BYTES - 1}`);
          break;
        case Codec.SPARSE:
        case Codec.XOR_SPARSE: {
          const min = codec === Codec.SPARSE ? 8 : 0;
          if (len < min || len >= PAGE_BYTES || len % 4 !== 0) throw malformed(`page entry ${i}: ${CODEC_NAMES[codec]} body of ${len} bytes, want a multiple of 4 in ${min}..${PAGE_BYTES - 4}`);
          break;
        }
        default:
          throw malformed(`page entry ${i}: unknown codec ${codec}`);
      }
      if (len > payload.length - at) throw malformed(`page entry ${i}: body of ${len} bytes runs past the batch end`);
      entries[i] = { pageNo, codec, start: at, len };
      at += len;
    }
    if (at !== payload.length) throw malformed(`page batch has ${payload.length - at} trailing bytes`);
    return entries;
  }

  private decode(payload: Uint8Array, entries: Entry[], sink: PageSink): DecodedBatch {
    const pages = new Uint32Array(entries.length);
    for (let i = 0; i < entries.length; i++) {
      const { pageNo, codec, start, len } = entries[i]!;
      const body = payload.subarray(start, start + len);
      const page = this.page;
      if (codec === Codec.ZERO) {
        page.fill(0);
      } else if (codec === Codec.RAW) {
        page.set(body);
      } else if (codec === Codec.SPARSE || codec === Codec.XOR_SPARSE) {
        const target = codec === Codec.SPARSE ? this.page32 : this.delta32;
        target.fill(0);
        // The body is copied out: it may sit at any byte offset of the payload.
        this.sparseIn.set(body);
        if (!sparseDecode(this.sparseIn32.subarray(0, len >>> 2), target)) throw malformed(`page entry ${i}: ${CODEC_NAMES[codec]} runs out of order or past the page`);
        if (codec === Codec.XOR_SPARSE) this.applyDelta(sink, pageNo);
      } else {
        const target = codec === Codec.LZ4 ? page : this.delta;
        let n: number;
        try {
          n = lz4Decompress(body, target);
        } catch {
          n = -1;
        }
        if (n !== PAGE_BYTES) throw malformed(`page entry ${i}: ${CODEC_NAMES[codec]} body decodes to ${n} bytes, want ${PAGE_BYTES}`);
        if (codec === Codec.XOR_LZ4) this.applyDelta(sink, pageNo);
      }
      sink.put(pageNo, page);
      pages[i] = pageNo;
    }
    return { count: entries.length, pages, wireBytes: payload.length, rawBytes: entries.length * PAGE_BYTES };
  }

  /** page = the sink's base copy of pageNo XOR this.delta (no base: zeros). */
  private applyDelta(sink: PageSink, pageNo: number): void {
    const page = this.page;
    const base = sink.base(pageNo);
    if (base !== undefined && base.length !== PAGE_BYTES) throw malformed(`page ${pageNo}: base copy is ${base.length} bytes`);
    if (base === undefined) page.set(this.delta);
    else {
      // A native copy of the base, then the delta's non-zero words onto it: the base
      // usually lies in a resizable image, where a word loop runs 2-3x slower.
      page.set(base);
      const p32 = this.page32;
      const d32 = this.delta32;
      for (let k = 0, n = d32.length; k < n; k++) {
        const d = d32[k]!;
        if (d !== 0) p32[k] ^= d;
      }
    }
  }
}
