/**
 * Image digest, maintained incrementally from per-page hashes.
 *
 * pageHash(page) is a 64-bit non-cryptographic hash (4 lanes of 32-bit multiply-rotate
 * over the page's words, then cross-lane mixing). Within a lane every step is a
 * bijection of the state for a fixed word, so a page differing in one 32-bit word
 * always hashes differently; random corruption of several words escapes with
 * probability about 2^-32. It guards against missed or misapplied pages, not against
 * an adversary (links are authenticated separately). Words are read little-endian
 * (every platform Node runs ftvm on).
 *
 * digest(image) = sum mod 2^256 over pages p whose hash is not the zero page's of
 * term(p, pageHash(page p)), a 256-bit mix of the page number and hash. The sum is
 * order-independent, so updating a page subtracts its old term and adds the new one:
 * O(dirty pages) per checkpoint. All-zero pages add nothing, so the digest does not
 * depend on how far memory extends with zeros (memBytes travels separately).
 */
import { MAX_MEMORY_BYTES, PAGE_BYTES } from '@ftvm/guest-abi';
import { ProtocolError } from './errors.js';
import { DIGEST_BYTES, PAGE_HASH_BYTES } from './messages.js';

const WORDS = PAGE_BYTES / 4;
const LANES = DIGEST_BYTES / 4;
const scratch = new Int32Array(WORDS);
const scratchBytes = new Uint8Array(scratch.buffer);

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function hashWords(w: Int32Array, off: number, out: Uint32Array, at: number): void {
  let a = 0x9e3779b1 | 0, b = 0x85ebca77 | 0, c = 0xc2b2ae3d | 0, d = 0x27d4eb2f | 0;
  for (let i = off, end = off + WORDS; i < end; i += 4) {
    a = Math.imul(a ^ w[i]!, 0x85ebca77); a = (a << 13) | (a >>> 19);
    b = Math.imul(b ^ w[i + 1]!, 0xc2b2ae3d); b = (b << 13) | (b >>> 19);
    c = Math.imul(c ^ w[i + 2]!, 0x27d4eb2f); c = (c << 13) | (c >>> 19);
    d = Math.imul(d ^ w[i + 3]!, 0x165667b1); d = (d << 13) | (d >>> 19);
  }
  // Cross-lane mixing: each output word depends on every lane.
  const x = fmix32(a ^ Math.imul(b, 0x9e3779b1) ^ fmix32(c + 0x7f4a7c15));
  out[at] = fmix32(x ^ d);
  out[at + 1] = fmix32(d ^ Math.imul(x, 0x27d4eb2f) ^ fmix32(a + b + c));
}

const one = new Uint32Array(2);

/** 64-bit hash of one 4096-byte page at `offset` of `bytes`, written to out[at], out[at+1]. */
export function pageHashInto(bytes: Uint8Array, offset: number, out: Uint32Array, at: number): void {
  if (offset < 0 || offset + PAGE_BYTES > bytes.length) throw new ProtocolError('FTVM_ERR_INVALID_OPTION', `page at byte ${offset} runs past ${bytes.length} bytes`);
  const abs = bytes.byteOffset + offset;
  if (abs % 4 === 0) {
    hashWords(new Int32Array(bytes.buffer, abs, WORDS), 0, out, at);
  } else {
    scratchBytes.set(bytes.subarray(offset, offset + PAGE_BYTES));
    hashWords(scratch, 0, out, at);
  }
}

/** The page hash as PAGE_HASH_BYTES bytes (the scrub wire form). */
export function pageHash(page: Uint8Array): Uint8Array {
  pageHashInto(page, 0, one, 0);
  const out = new Uint8Array(PAGE_HASH_BYTES);
  new DataView(out.buffer).setUint32(0, one[0]!, true);
  new DataView(out.buffer).setUint32(4, one[1]!, true);
  return out;
}

const ZERO_HASH = new Uint32Array(2);
pageHashInto(new Uint8Array(PAGE_BYTES), 0, ZERO_HASH, 0);
const Z0 = ZERO_HASH[0]!, Z1 = ZERO_HASH[1]!;

/** Adds (sign 1) or subtracts (sign -1) term(pageNo, h0:h1) to the 256-bit little-endian sum. */
function accumulate(sum: Uint32Array, pageNo: number, h0: number, h1: number, sign: 1 | -1): void {
  if (h0 === Z0 && h1 === Z1) return;
  const s0 = fmix32(h0 ^ Math.imul(pageNo, 0x9e3779b1));
  const s1 = fmix32(h1 ^ Math.imul(pageNo ^ 0x5bd1e995, 0x85ebca6b));
  let carry = 0;
  for (let i = 0; i < LANES; i++) {
    const lane = fmix32((s0 + Math.imul(i + 1, 0x27d4eb2f)) ^ fmix32(s1 ^ Math.imul(i + 1, 0x165667b1)));
    const v = sign === 1 ? sum[i]! + lane + carry : sum[i]! - lane - carry;
    sum[i] = v >>> 0;
    carry = sign === 1 ? (v > 0xffffffff ? 1 : 0) : (v < 0 ? 1 : 0);
  }
}

function sumToBytes(sum: Uint32Array): Uint8Array {
  const out = new Uint8Array(DIGEST_BYTES);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < LANES; i++) dv.setUint32(i * 4, sum[i]!, true);
  return out;
}

/** The digest of a whole image computed from scratch (length: a multiple of 4096). */
export function digestImage(image: Uint8Array): Uint8Array {
  if (image.length % PAGE_BYTES !== 0) throw new ProtocolError('FTVM_ERR_INVALID_OPTION', `image length ${image.length} is not a multiple of ${PAGE_BYTES}`);
  const sum = new Uint32Array(LANES);
  for (let p = 0, n = image.length / PAGE_BYTES; p < n; p++) {
    pageHashInto(image, p * PAGE_BYTES, one, 0);
    accumulate(sum, p, one[0]!, one[1]!, 1);
  }
  return sumToBytes(sum);
}

/**
 * The digest of an image kept up to date page by page. Holds 8 bytes per page (the
 * page hashes, 0.2% of the image) so an update can subtract the old term.
 */
export class ImageDigest {
  private hashes = new Uint32Array(0);
  private readonly sum = new Uint32Array(LANES);
  private pages = 0;
  /**
   * An open transaction (begin .. commit/rollback): the sum and page count at begin, and
   * (hash index, old h0, old h1) for every hash changed since. A secondary stages an epoch
   * on its committed digest this way: O(pages changed), where a clone per epoch copied
   * 8 bytes for every page of the image (2 MiB per epoch at 1 GiB).
   */
  private txn: { sum: Uint32Array; pages: number; log: number[] } | null = null;

  /** Pages covered: pages at or beyond it are zero. */
  get pageCount(): number {
    return this.pages;
  }

  /** Sets page `pageNo` to the 4096 bytes at `offset` of `bytes`; grows the range as needed. */
  update(pageNo: number, bytes: Uint8Array, offset = 0): void {
    pageHashInto(bytes, offset, one, 0);
    this.setHash(pageNo, one[0]!, one[1]!);
  }

  /** Sets page `pageNo` from a known hash (e.g. computed off-thread). */
  setHash(pageNo: number, h0: number, h1: number): void {
    if (!Number.isSafeInteger(pageNo) || pageNo < 0 || pageNo >= MAX_MEMORY_BYTES / PAGE_BYTES) {
      throw new ProtocolError('FTVM_ERR_INVALID_OPTION', `page number ${pageNo} is outside the 4 GiB address space`);
    }
    if (pageNo >= this.pages) this.grow(pageNo + 1);
    const at = pageNo * 2;
    this.txn?.log.push(at, this.hashes[at]!, this.hashes[at + 1]!);
    accumulate(this.sum, pageNo, this.hashes[at]!, this.hashes[at + 1]!, -1);
    this.hashes[at] = h0 >>> 0;
    this.hashes[at + 1] = h1 >>> 0;
    accumulate(this.sum, pageNo, h0 >>> 0, h1 >>> 0, 1);
  }

  /** Page `pageNo` is zero again (it leaves the sum). */
  remove(pageNo: number): void {
    if (pageNo < this.pages) this.setHash(pageNo, Z0, Z1);
  }

  /** Covers `pageCount` pages; new pages are zero (they add nothing to the digest). */
  grow(pageCount: number): void {
    if (pageCount <= this.pages) return;
    if (pageCount * 2 > this.hashes.length) {
      const next = new Uint32Array(Math.max(pageCount * 2, this.hashes.length * 2, 64));
      next.set(this.hashes);
      for (let i = this.hashes.length; i < next.length; i += 2) {
        next[i] = Z0;
        next[i + 1] = Z1;
      }
      this.hashes = next;
    }
    this.pages = pageCount;
  }

  /** Drops pages >= pageCount (their terms leave the sum). */
  truncate(pageCount: number): void {
    for (let p = pageCount; p < this.pages; p++) {
      this.txn?.log.push(p * 2, this.hashes[p * 2]!, this.hashes[p * 2 + 1]!);
      accumulate(this.sum, p, this.hashes[p * 2]!, this.hashes[p * 2 + 1]!, -1);
      this.hashes[p * 2] = Z0;
      this.hashes[p * 2 + 1] = Z1;
    }
    this.pages = Math.min(this.pages, pageCount);
  }

  /** Per-page hashes of [fromPage, fromPage+count), PAGE_HASH_BYTES each (scrub_res.hashes). */
  hashes8(fromPage: number, count: number): Uint8Array {
    const out = new Uint8Array(count * PAGE_HASH_BYTES);
    const dv = new DataView(out.buffer);
    for (let i = 0; i < count; i++) {
      const p = fromPage + i;
      const inside = p < this.pages;
      dv.setUint32(i * 8, inside ? this.hashes[p * 2]! : Z0, true);
      dv.setUint32(i * 8 + 4, inside ? this.hashes[p * 2 + 1]! : Z1, true);
    }
    return out;
  }

  value(): Uint8Array {
    return sumToBytes(this.sum);
  }

  /** Starts recording changes, so that rollback() can undo them. One transaction at a time. */
  begin(): void {
    if (this.txn) throw new ProtocolError('FTVM_ERR_INVALID_OPTION', 'a digest transaction is already open');
    this.txn = { sum: this.sum.slice(), pages: this.pages, log: [] };
  }

  /** Keeps every change since begin() (no-op without a transaction). */
  commit(): void {
    this.txn = null;
  }

  /** Undoes every change since begin(), newest first (no-op without a transaction). */
  rollback(): void {
    const t = this.txn;
    if (!t) return;
    this.txn = null;
    for (let i = t.log.length - 3; i >= 0; i -= 3) {
      this.hashes[t.log[i]!] = t.log[i + 1]!;
      this.hashes[t.log[i]! + 1] = t.log[i + 2]!;
    }
    this.sum.set(t.sum);
    this.pages = t.pages;
  }

  /** A transaction is open. */
  get inTransaction(): boolean {
    return this.txn !== null;
  }

  /** An independent copy of the current state (an open transaction is not copied). */
  clone(): ImageDigest {
    const c = new ImageDigest();
    c.hashes = this.hashes.slice();
    c.sum.set(this.sum);
    c.pages = this.pages;
    return c;
  }
}

/** Equality of two digests (not secrets: no constant-time compare needed). */
export function digestEquals(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}
