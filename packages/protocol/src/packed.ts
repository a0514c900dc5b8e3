/**
 * Packed tables for what every epoch carries per connection: the connection offsets of a
 * `commit` / `offsets` (and of a checkpoint's device state) and the output chunks a
 * checkpoint retains. As msgpack maps they cost a map per entry to encode, decode and
 * validate (a commit lists every open connection: 50 maps for 50 clients, ~30 µs per hop per
 * epoch); packed, one byte string each, read with a DataView and checked in one pass.
 *
 * Connection table: 32 bytes per entry, little-endian float64s:
 *   conn | inConsumed | outProduced | closed (0 or 1)
 * Output table:
 *   u32 count | count x (f64 conn | f64 epoch | f64 offset | u32 length) | the chunks' bytes, in order
 *
 * Every number must be a safe non-negative integer; anything else is FRAME_MALFORMED.
 */
import { malformed } from './errors.js';
import { MAX_CONNS, type ConnOffsets } from './messages.js';

export const CONN_ENTRY_BYTES = 32;
const OUT_ENTRY_BYTES = 28;
/** Most chunks in one output table. */
export const MAX_OUTPUT_CHUNKS = 1 << 20;

const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

function uintAt(dv: DataView, at: number, what: string): number {
  const v = dv.getFloat64(at, true);
  if (!Number.isSafeInteger(v) || v < 0) throw malformed(`${what} must be a safe non-negative integer, got ${v}`);
  return v;
}

function putUint(dv: DataView, at: number, v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0) throw malformed(`${what} must be a safe non-negative integer, got ${String(v)}`);
  dv.setFloat64(at, v, true);
}

/** Packs connection offsets (checked as they are written). */
export function packConns(conns: readonly ConnOffsets[]): Uint8Array {
  if (conns.length > MAX_CONNS) throw malformed(`at most ${MAX_CONNS} connections, got ${conns.length}`);
  const out = new Uint8Array(conns.length * CONN_ENTRY_BYTES);
  const dv = view(out);
  for (let i = 0, at = 0; i < conns.length; i++, at += CONN_ENTRY_BYTES) {
    const c = conns[i]!;
    putUint(dv, at, c.conn, 'conn');
    putUint(dv, at + 8, c.inConsumed, 'inConsumed');
    putUint(dv, at + 16, c.outProduced, 'outProduced');
    if (typeof c.closed !== 'boolean') throw malformed(`closed must be a boolean, got ${typeof c.closed}`);
    dv.setFloat64(at + 24, c.closed ? 1 : 0, true);
  }
  return out;
}

/** Unpacks (and checks) a connection table; `what` names it in errors. */
export function unpackConns(bytes: unknown, what = 'conns'): ConnOffsets[] {
  if (!(bytes instanceof Uint8Array)) throw malformed(`${what} must be a packed connection table (bytes), got ${Array.isArray(bytes) ? 'an array' : typeof bytes}`);
  if (bytes.length % CONN_ENTRY_BYTES !== 0) throw malformed(`${what}: ${bytes.length} bytes is not a whole number of ${CONN_ENTRY_BYTES}-byte entries`);
  const n = bytes.length / CONN_ENTRY_BYTES;
  if (n > MAX_CONNS) throw malformed(`${what}: at most ${MAX_CONNS} connections, got ${n}`);
  const dv = view(bytes);
  const out: ConnOffsets[] = new Array(n);
  for (let i = 0, at = 0; i < n; i++, at += CONN_ENTRY_BYTES) {
    const closed = dv.getFloat64(at + 24, true);
    if (closed !== 0 && closed !== 1) throw malformed(`${what}[${i}].closed must be 0 or 1, got ${closed}`);
    out[i] = {
      conn: uintAt(dv, at, `${what}[${i}].conn`),
      inConsumed: uintAt(dv, at + 8, `${what}[${i}].inConsumed`),
      outProduced: uintAt(dv, at + 16, `${what}[${i}].outProduced`),
      closed: closed === 1,
    };
  }
  return out;
}

/** Output the guest produced: `data` are the chunk's bytes from output offset `offset` of `conn`. */
export interface OutputChunk {
  conn: number;
  epoch: number;
  /** Output byte offset of data[0] on the connection. */
  offset: number;
  data: Uint8Array;
}

export function packOutput(chunks: readonly OutputChunk[]): Uint8Array {
  if (chunks.length > MAX_OUTPUT_CHUNKS) throw malformed(`at most ${MAX_OUTPUT_CHUNKS} output chunks, got ${chunks.length}`);
  let dataBytes = 0;
  for (const c of chunks) dataBytes += c.data.length;
  const tableEnd = 4 + chunks.length * OUT_ENTRY_BYTES;
  const out = new Uint8Array(tableEnd + dataBytes);
  const dv = view(out);
  dv.setUint32(0, chunks.length, true);
  let at = 4;
  let data = tableEnd;
  for (const c of chunks) {
    putUint(dv, at, c.conn, 'output conn');
    putUint(dv, at + 8, c.epoch, 'output epoch');
    putUint(dv, at + 16, c.offset, 'output offset');
    dv.setUint32(at + 24, c.data.length, true);
    out.set(c.data, data);
    data += c.data.length;
    at += OUT_ENTRY_BYTES;
  }
  return out;
}

/** Unpacks (and checks) an output table; the chunks' data are views into `bytes`. */
export function unpackOutput(bytes: unknown, what = 'output'): OutputChunk[] {
  if (!(bytes instanceof Uint8Array)) throw malformed(`${what} must be a packed output table (bytes), got ${Array.isArray(bytes) ? 'an array' : typeof bytes}`);
  if (bytes.length < 4) throw malformed(`${what}: ${bytes.length} bytes is shorter than its count`);
  const dv = view(bytes);
  const n = dv.getUint32(0, true);
  if (n > MAX_OUTPUT_CHUNKS) throw malformed(`${what}: at most ${MAX_OUTPUT_CHUNKS} chunks, got ${n}`);
  const tableEnd = 4 + n * OUT_ENTRY_BYTES;
  if (tableEnd > bytes.length) throw malformed(`${what}: a table of ${n} chunks runs past its ${bytes.length} bytes`);
  const out: OutputChunk[] = new Array(n);
  let data = tableEnd;
  for (let i = 0, at = 4; i < n; i++, at += OUT_ENTRY_BYTES) {
    const len = dv.getUint32(at + 24, true);
    if (data + len > bytes.length) throw malformed(`${what}[${i}]: ${len} bytes run past the table's end`);
    out[i] = {
      conn: uintAt(dv, at, `${what}[${i}].conn`),
      epoch: uintAt(dv, at + 8, `${what}[${i}].epoch`),
      offset: uintAt(dv, at + 16, `${what}[${i}].offset`),
      data: bytes.subarray(data, data + len),
    };
    data += len;
  }
  if (data !== bytes.length) throw malformed(`${what}: ${bytes.length - data} bytes past the last chunk`);
  return out;
}
