/**
 * On-disk cache of instrument() results, keyed by sha256(wasm) + instrumenter version +
 * options, so child processes skip binaryen (tens to hundreds of ms) on restart.
 *
 * File format (one file per key, written to a temp name then renamed, so readers never
 * see a partial file): u32 LE header length | header JSON | output wasm.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { instrument, INSTRUMENTER_VERSION, type InstrumentOptions, type InstrumentResult } from './instrument.js';

/** Largest header accepted from a cache file, bytes: anything bigger is corruption. */
const MAX_HEADER_BYTES = 1 << 20;

export function defaultCacheDir(): string {
  return process.env.FTVM_CACHE_DIR ? resolve(process.env.FTVM_CACHE_DIR) : resolve('node_modules', '.cache', 'ftvm-instrument');
}

export function cacheKey(wasm: Uint8Array, opts: InstrumentOptions = {}): string {
  const o = { precise: opts.precise ?? true, coalesce: opts.coalesce ?? true, optimize: opts.optimize ?? false, checkAbi: opts.checkAbi ?? true };
  return createHash('sha256')
    .update(`ftvm-instrument v${INSTRUMENTER_VERSION} ${JSON.stringify(o)}\n`)
    .update(wasm)
    .digest('hex');
}

export interface CachedInstrumentResult extends InstrumentResult {
  /** true when the result came from the cache file. */
  cached: boolean;
}

function readEntry(file: string): InstrumentResult | undefined {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch {
    return undefined;
  }
  if (buf.length < 4) return undefined;
  const hlen = buf.readUInt32LE(0);
  if (hlen > MAX_HEADER_BYTES || 4 + hlen > buf.length) return undefined;
  try {
    const header = JSON.parse(buf.subarray(4, 4 + hlen).toString('utf8')) as Omit<InstrumentResult, 'wasm'>;
    const wasm = new Uint8Array(buf.subarray(4 + hlen));
    if (header.stats?.outputBytes !== wasm.length) return undefined;
    return { ...header, wasm };
  } catch {
    return undefined;
  }
}

/**
 * instrument() with a disk cache. The ABI check and option validation still happen on a
 * miss; a hit returns what the miss stored (including warnings). Cache I/O failures
 * (read-only disk, corrupt file) never fail the call: it instruments and returns.
 */
export function instrumentCached(wasm: Uint8Array, cacheDir: string = defaultCacheDir(), opts: InstrumentOptions = {}): CachedInstrumentResult {
  const key = cacheKey(wasm, opts);
  const file = join(cacheDir, `${key}.bin`);
  const hit = readEntry(file);
  if (hit) return { ...hit, cached: true };
  const r = instrument(wasm, opts);
  const { wasm: out, ...header } = r;
  const hbytes = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(hbytes.length, 0);
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    mkdirSync(cacheDir, { recursive: true });
    writeFileSync(tmp, Buffer.concat([len, hbytes, out]));
    renameSync(tmp, file);
  } catch {
    try {
      unlinkSync(tmp);
    } catch {
      /* nothing was written */
    }
  }
  return { ...r, cached: false };
}
