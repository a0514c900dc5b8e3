/**
 * The two LZ4 block functions of the native `lz4` package (LZ4_compress_default and
 * LZ4_decompress_safe), typed. The package ships no types and is CommonJS.
 */
import { createRequire } from 'node:module';

interface Lz4Binding {
  /** Compresses src into dst; returns the compressed size, or 0 when it does not fit dst. */
  encodeBlock(src: Uint8Array, dst: Uint8Array): number;
  /** Decompresses src into dst (bounds-checked); returns the decoded size, < 0 on bad input. */
  decodeBlock(src: Uint8Array, dst: Uint8Array): number;
}

const lz4 = createRequire(import.meta.url)('lz4') as Lz4Binding;

export const lz4Compress = (src: Uint8Array, dst: Uint8Array): number => lz4.encodeBlock(src, dst);
export const lz4Decompress = (src: Uint8Array, dst: Uint8Array): number => lz4.decodeBlock(src, dst);
