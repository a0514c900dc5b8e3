/**
 * LZ4 block compression through lz4-napi (a Node-API binding of lz4_flex). Its calls take
 * and return whole buffers with the decoded size prepended (4 bytes, little-endian); these
 * two functions strip and add that prefix, so the wire carries the bare LZ4 block.
 */
import { requireNative } from './native.js';

interface Lz4Napi {
  /** The decoded size (u32 LE), then the LZ4 block of `data`. */
  compressSync(data: Uint8Array): Buffer;
  /** Decodes a size-prefixed block; throws on a corrupt block or one that decodes past the size. */
  uncompressSync(data: Uint8Array): Buffer;
}

const lz4 = requireNative<Lz4Napi>('lz4-napi', import.meta.url);
const SIZE_BYTES = 4;
/** The decoder's input: the size prefix, then the block (reused; grown on demand). */
let input = Buffer.alloc(SIZE_BYTES + 4096);

/** Compresses src into dst; returns the block's size, or 0 when it does not fit dst. */
export function lz4Compress(src: Uint8Array, dst: Uint8Array): number {
  const out = lz4.compressSync(src);
  const n = out.length - SIZE_BYTES;
  if (n > dst.length) return 0;
  dst.set(out.subarray(SIZE_BYTES));
  return n;
}

/** Decompresses the block src into dst (at most dst.length bytes); returns the decoded size, < 0 on bad input. */
export function lz4Decompress(src: Uint8Array, dst: Uint8Array): number {
  if (input.length < SIZE_BYTES + src.length) input = Buffer.alloc(SIZE_BYTES + src.length);
  input.writeUInt32LE(dst.length, 0);
  input.set(src, SIZE_BYTES);
  let out: Buffer;
  try {
    out = lz4.uncompressSync(input.subarray(0, SIZE_BYTES + src.length));
  } catch {
    return -1;
  }
  dst.set(out);
  return out.length;
}
