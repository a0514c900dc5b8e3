/**
 * Framing. One frame = one WebSocket binary message:
 *
 *   u32 headerLength (LE) | msgpack(header) | payload bytes (to the end of the message)
 *
 * On a byte stream (raw TCP, snapshot files) each frame is prefixed by its length:
 *
 *   u32 frameLength (LE) | frame
 *
 * After the handshake a link may carry several frames in one message (a batch, below).
 *
 * Both decoders are pure, check every length against the limits before buffering or
 * allocating, and fail with a ProtocolError (FRAME_TRUNCATED, FRAME_TOO_LARGE,
 * FRAME_MALFORMED), never with another exception.
 */
import { Packr, Unpackr } from 'msgpackr';
import { ProtocolError, malformed, tooLarge, truncated } from './errors.js';
import { MAX_OPAQUE_DEPTH, PAYLOAD_TYPES, type Message } from './messages.js';
import { scanMsgpack } from './msgpack-scan.js';
import { packConns } from './packed.js';
import { validateMessage } from './schema.js';

export interface FrameLimits {
  /** Largest msgpack header, bytes. Default 64 KiB. */
  maxHeaderBytes: number;
  /** Largest payload, bytes. Default 64 MiB. */
  maxPayloadBytes: number;
}

export const DEFAULT_LIMITS: Readonly<FrameLimits> = Object.freeze({
  maxHeaderBytes: 64 * 1024,
  maxPayloadBytes: 64 * 1024 * 1024,
});

/** Bytes of the u32 length prefixes. */
export const PREFIX_BYTES = 4;

export interface DecodedFrame {
  msg: Message;
  /** A view into the frame's bytes (no copy); empty for messages without payload. */
  payload: Uint8Array;
}

/** Limits objects resolveLimits returned (frozen): passing one back costs nothing per frame. */
const RESOLVED = new WeakSet<object>([DEFAULT_LIMITS]);

/** Fills in defaults and rejects nonsense limits once, naming the option. */
export function resolveLimits(limits?: Partial<FrameLimits>): FrameLimits {
  if (limits !== undefined && RESOLVED.has(limits)) return limits as FrameLimits;
  const out = { ...DEFAULT_LIMITS, ...limits };
  for (const key of ['maxHeaderBytes', 'maxPayloadBytes'] as const) {
    const v = out[key];
    // 2^31 keeps every sum of lengths a safe small integer and below Buffer limits.
    if (!Number.isSafeInteger(v) || v < 16 || v > 2 ** 31) {
      throw new ProtocolError('FTVM_ERR_INVALID_OPTION', `${key} must be an integer in 16..2^31, got ${String(v)}`);
    }
  }
  const frozen = Object.freeze(out);
  RESOLVED.add(frozen);
  return frozen;
}

/** Largest frame (without the stream prefix) the limits admit, bytes. */
export function maxFrameBytes(limits: FrameLimits): number {
  return PREFIX_BYTES + limits.maxHeaderBytes + limits.maxPayloadBytes;
}

// No records/structures: every frame must decode on its own, with no state shared
// across frames. int64 values decode as bigint so i64 globals keep their type.
const packr = new Packr({ useRecords: false, moreTypes: false, bundleStrings: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, moreTypes: false, bundleStrings: false, mapsAsObjects: true, int64AsType: 'bigint' });

const EMPTY = new Uint8Array(0);

/** Encodes one frame. The message is validated like an incoming one. */
/** `tailBytes`: zero bytes left at the end for the caller (a link's frame MAC), so the frame is not copied again. */
export function encodeFrame(msg: Message, payload: Uint8Array = EMPTY, limits?: Partial<FrameLimits>, tailBytes = 0): Uint8Array {
  const lim = limits ? resolveLimits(limits) : DEFAULT_LIMITS;
  // Connection offsets travel as a packed table (packed.ts), which validation reads back.
  const packed = (msg.t === 'commit' || msg.t === 'offsets' || msg.t === 'rollback') && Array.isArray(msg.conns) ? packConns(msg.conns) : undefined;
  const clean = validateMessage(packed ? { ...msg, conns: packed } : msg);
  if (payload.length > 0 && !PAYLOAD_TYPES.has(clean.t)) throw malformed(`${clean.t} carries no payload, got ${payload.length} bytes`);
  if (payload.length > lim.maxPayloadBytes) throw tooLarge(`payload of ${payload.length} bytes exceeds maxPayloadBytes ${lim.maxPayloadBytes}`);
  const header = packr.pack(packed ? { ...clean, conns: packed } : clean);
  if (header.length > lim.maxHeaderBytes) throw tooLarge(`${clean.t} header of ${header.length} bytes exceeds maxHeaderBytes ${lim.maxHeaderBytes}`);
  const out = new Uint8Array(PREFIX_BYTES + header.length + payload.length + tailBytes);
  new DataView(out.buffer).setUint32(0, header.length, true);
  out.set(header, PREFIX_BYTES);
  out.set(payload, PREFIX_BYTES + header.length);
  return out;
}

/** Decodes one frame (a whole WebSocket message). */
export function decodeFrame(bytes: Uint8Array, limits?: Partial<FrameLimits>): DecodedFrame {
  const lim = limits ? resolveLimits(limits) : DEFAULT_LIMITS;
  if (bytes.length < PREFIX_BYTES) throw truncated(`frame of ${bytes.length} bytes is shorter than its ${PREFIX_BYTES}-byte header length`);
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
  if (headerLength > lim.maxHeaderBytes) throw tooLarge(`header length ${headerLength} exceeds maxHeaderBytes ${lim.maxHeaderBytes}`);
  if (headerLength === 0) throw malformed('header length is 0');
  const payloadStart = PREFIX_BYTES + headerLength;
  if (payloadStart > bytes.length) throw truncated(`header length ${headerLength} runs past the frame end (${bytes.length - PREFIX_BYTES} bytes left)`);
  const payloadLength = bytes.length - payloadStart;
  if (payloadLength > lim.maxPayloadBytes) throw tooLarge(`payload of ${payloadLength} bytes exceeds maxPayloadBytes ${lim.maxPayloadBytes}`);
  const headerBytes = bytes.subarray(PREFIX_BYTES, payloadStart);
  // Levels: the scan's root, the header map, then the opaque value's own levels.
  scanMsgpack(headerBytes, MAX_OPAQUE_DEPTH + 4);
  let header: unknown;
  try {
    header = unpackr.unpack(headerBytes);
  } catch (e) {
    // msgpackr throws plain Errors/RangeErrors (bad type byte, short data, deep nesting).
    throw new ProtocolError('FTVM_ERR_FRAME_MALFORMED', `header is not valid msgpack: ${(e as Error)?.message ?? String(e)}`.slice(0, 300));
  }
  const msg = validateMessage(header);
  if (payloadLength > 0 && !PAYLOAD_TYPES.has(msg.t)) throw malformed(`${msg.t} carries no payload, got ${payloadLength} bytes`);
  return { msg, payload: payloadLength > 0 ? bytes.subarray(payloadStart) : EMPTY };
}

/**
 * First u32 of a WebSocket message that carries several frames (protocol 6): above any
 * header length a frame can have (limits cap it at 2^31), so a lone frame is never read as one.
 * Layout: u32 BATCH_MARK | (u32 frameLength | frame)+.
 */
export const BATCH_MARK = 0xffffffff;

/** The message carries a batch of frames (starts with BATCH_MARK). */
export function isBatch(bytes: Uint8Array): boolean {
  return bytes.length >= PREFIX_BYTES && new DataView(bytes.buffer, bytes.byteOffset, PREFIX_BYTES).getUint32(0, true) === BATCH_MARK;
}

/** One message of `frames` (whole frames, at least one), with `tailBytes` zero bytes left at the end (a link's MAC). */
export function encodeBatch(frames: readonly Uint8Array[], tailBytes = 0): Uint8Array {
  let total = PREFIX_BYTES + tailBytes;
  for (const f of frames) total += PREFIX_BYTES + f.length;
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setUint32(0, BATCH_MARK, true);
  let at = PREFIX_BYTES;
  for (const f of frames) {
    view.setUint32(at, f.length, true);
    out.set(f, at + PREFIX_BYTES);
    at += PREFIX_BYTES + f.length;
  }
  return out;
}

/** The frames of a batch message (views, no copy); each length is checked before it is used. */
export function splitBatch(bytes: Uint8Array, limits?: Partial<FrameLimits>): Uint8Array[] {
  const lim = limits ? resolveLimits(limits) : DEFAULT_LIMITS;
  if (!isBatch(bytes)) throw malformed('not a batch of frames');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Uint8Array[] = [];
  let at = PREFIX_BYTES;
  if (at === bytes.length) throw truncated('batch of no frames');
  while (at < bytes.length) {
    if (at + PREFIX_BYTES > bytes.length) throw truncated(`batch ends inside a frame length (${bytes.length - at} bytes left)`);
    const len = view.getUint32(at, true);
    at += PREFIX_BYTES;
    if (len > maxFrameBytes(lim)) throw tooLarge(`batched frame of ${len} bytes exceeds the limit ${maxFrameBytes(lim)}`);
    if (len < PREFIX_BYTES + 1) throw malformed(`batched frame length ${len} is below the smallest frame`);
    if (at + len > bytes.length) throw truncated(`batched frame of ${len} bytes runs past the message end (${bytes.length - at} bytes left)`);
    out.push(bytes.subarray(at, at + len));
    at += len;
  }
  return out;
}

/** Encodes a frame for a byte stream: u32 frameLength | frame. */
export function encodeStreamFrame(msg: Message, payload?: Uint8Array, limits?: Partial<FrameLimits>): Uint8Array {
  const frame = encodeFrame(msg, payload, limits);
  const out = new Uint8Array(PREFIX_BYTES + frame.length);
  new DataView(out.buffer).setUint32(0, frame.length, true);
  out.set(frame, PREFIX_BYTES);
  return out;
}

/**
 * Splits a byte stream into frames. Feed chunks of any size with `push`; call `end`
 * when the stream ends. Buffers at most one frame (<= 4 + maxFrameBytes bytes); a
 * length prefix above the limit fails before any of that frame is buffered. After
 * an error the reader stays failed: a byte stream cannot resynchronise.
 */
export class FrameReader {
  readonly limits: FrameLimits;
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  /** Length of the frame being assembled, or -1 while its prefix is incomplete. */
  private need = -1;
  private failed: ProtocolError | undefined;

  constructor(limits?: Partial<FrameLimits>) {
    this.limits = resolveLimits(limits);
  }

  /** Bytes held for the incomplete frame. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /**
   * Adds bytes; returns the frames they complete. Payloads may be views into pushed
   * chunks: do not overwrite a chunk while frames decoded from it are in use.
   */
  push(chunk: Uint8Array): DecodedFrame[] {
    if (this.failed) throw this.failed;
    const out: DecodedFrame[] = [];
    try {
      if (chunk.length > 0) {
        this.chunks.push(chunk);
        this.buffered += chunk.length;
      }
      for (;;) {
        if (this.need < 0) {
          if (this.buffered < PREFIX_BYTES) break;
          const prefix = this.take(PREFIX_BYTES);
          const len = new DataView(prefix.buffer, prefix.byteOffset, PREFIX_BYTES).getUint32(0, true);
          if (len > maxFrameBytes(this.limits)) throw tooLarge(`stream frame of ${len} bytes exceeds the limit ${maxFrameBytes(this.limits)}`);
          if (len < PREFIX_BYTES + 1) throw malformed(`stream frame length ${len} is below the smallest frame`);
          this.need = len;
        }
        if (this.buffered < this.need) break;
        const frame = this.take(this.need);
        this.need = -1;
        out.push(decodeFrame(frame, this.limits));
      }
    } catch (e) {
      this.failed = e instanceof ProtocolError ? e : malformed(String(e));
      this.chunks = [];
      this.buffered = 0;
      throw this.failed;
    }
    return out;
  }

  /** The stream ended: fails with FRAME_TRUNCATED when a frame was cut short. */
  end(): void {
    if (this.failed) throw this.failed;
    if (this.buffered > 0 || this.need >= 0) {
      this.failed = truncated(`stream ended inside a frame (${this.buffered} of ${this.need < 0 ? PREFIX_BYTES : this.need} bytes)`);
      throw this.failed;
    }
  }

  /** Removes n <= buffered bytes from the front; copies only when they span chunks. */
  private take(n: number): Uint8Array {
    const first = this.chunks[0]!;
    let out: Uint8Array;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = new Uint8Array(n);
      let at = 0;
      while (at < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - at);
        out.set(c.subarray(0, k), at);
        at += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    return out;
  }
}
