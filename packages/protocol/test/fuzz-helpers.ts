/**
 * Reusable fuzzing helpers: sample frames of every message type, a seeded mutator,
 * and `fuzzListener`, which throws bad frames at a live ftvm listener and checks that
 * each one ends in the close code the wire layer promises. Runtimes import this from
 * their own tests to fuzz their listeners.
 */
import { WebSocket } from 'ws';
import {
  ClientHandshake, CLOSE_CODES, LINK_MESSAGES, PREAUTH_MAX_MESSAGE_BYTES, PageEncoder, closeCodeFor, decodeFrame, encodeFrame, frameTag, maxFrameBytes, resolveLimits,
  type FrameLimits, type LinkKind, type Message, type Role,
} from '../src/index.js';

/** Deterministic PRNG (mulberry32): failures reproduce from the seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const b = (n: number, fill = 7): Uint8Array => new Uint8Array(n).fill(fill);

/** One valid message of every type (with a payload where the type carries one). */
export function sampleMessages(): { msg: Message; payload?: Uint8Array }[] {
  const pages = new PageEncoder().encodeBatch([3, 9], (() => {
    const d = new Uint8Array(8192);
    d.fill(0x41, 0, 100);
    return d;
  })()).payload;
  return [
    { msg: { t: 'challenge', version: 1, nonce: b(32) } },
    { msg: { t: 'hello', version: 1, role: 'primary', link: 'replication', nodeId: 'node-a', term: 3, epoch: 17, guestDigest: b(32, 1), nonce: b(32, 2), proof: b(32, 3) } },
    { msg: { t: 'hello', version: 1, role: 'proxy', link: 'net', nodeId: 'p', term: 0, nonce: b(32, 2), proof: b(32, 3) } },
    { msg: { t: 'welcome', nodeId: 'node-b', role: 'secondary', term: 3, epoch: 16, proof: b(32, 4) } },
    { msg: { t: 'reject', code: 'FTVM_ERR_STALE_TERM', message: 'term 2 < 3' } },
    {
      msg: {
        t: 'ckpt_begin', term: 3, epoch: 18, memBytes: 2 * 65536, pageCount: 2, globals: [1, 2.5, -(2n ** 63n), 2n ** 64n - 1n, NaN],
        devices: { net: { conns: [{ id: 1, in: 10, out: 20 }] }, blob: b(5), big: 2n ** 40n, flag: true, none: null },
        clock: { tsc: 123456789n, mode: 'slew' }, full: false,
      },
    },
    { msg: { t: 'ckpt_pages', term: 3, epoch: 18, seq: 0, count: 2 }, payload: pages },
    { msg: { t: 'ckpt_blocks', term: 3, epoch: 18, seq: 0, count: 2 }, payload: pages },
    { msg: { t: 'ckpt_end', term: 3, epoch: 18, pageCount: 2, digest: b(32, 9), wireBytes: 500, rawBytes: 8192 } },
    {
      msg: {
        t: 'ckpt', term: 3, epoch: 19, memBytes: 2 * 65536, pageCount: 2, globals: [1, 2n ** 40n], devices: { conns: b(32, 1), output: b(4) },
        full: false, digest: b(32, 9), wireBytes: 500, rawBytes: 8192,
      },
      payload: pages,
    },
    { msg: { t: 'ack', term: 3, epoch: 18, digest: b(32, 9) } },
    { msg: { t: 'nack', term: 3, epoch: 18, code: 'FTVM_ERR_DIGEST_MISMATCH', message: 'digest differs' } },
    { msg: { t: 'heartbeat', term: 3, epoch: 18, sentAtMs: 1_700_000_000_000 } },
    { msg: { t: 'scrub_req', term: 3, epoch: 18, fromPage: 256, count: 4 } },
    { msg: { t: 'scrub_res', term: 3, epoch: 18, fromPage: 256, count: 2, hashes: b(16, 5) } },
    { msg: { t: 'resync_req', term: 3, fromPage: 256, count: 8 } },
    { msg: { t: 'block_req', term: 3, fromBlock: 1000, count: 8 } },
    { msg: { t: 'block_map', term: 0, epoch: 4, totalBlocks: 20, count: 3 }, payload: new Uint8Array([0b101, 0, 0b1000]) },
    { msg: { t: 'open', term: 3, conn: 5, remote: '10.0.0.1:5555' } },
    { msg: { t: 'input', term: 3, conn: 5, offset: 0 }, payload: new TextEncoder().encode('*1\r\n$4\r\nPING\r\n') },
    { msg: { t: 'output', term: 3, conn: 5, epoch: 18, offset: 0 }, payload: new TextEncoder().encode('+PONG\r\n') },
    { msg: { t: 'close', term: 3, conn: 5, epoch: 19, offset: 7 } },
    { msg: { t: 'close', term: 3, conn: 6 } },
    { msg: { t: 'commit', term: 3, epoch: 18, acked: true, maxConnId: 6, conns: [{ conn: 5, inConsumed: 14, outProduced: 7, closed: false }] } },
    { msg: { t: 'confirm', term: 3, epoch: 18 } },
    { msg: { t: 'resend', term: 4, conns: [{ conn: 5, offset: 3 }] } },
    { msg: { t: 'promote', term: 4, fromEpoch: 18, reason: 'primary silent for 1000 ms' } },
    { msg: { t: 'promote_deny', term: 4, reason: 'no committed image' } },
    { msg: { t: 'fence', term: 4 } },
    { msg: { t: 'handover', term: 3, epoch: 18, to: 'ws://127.0.0.1:7003', ready: true, heldMs: 12 } },
    { msg: { t: 'offsets', term: 4, epoch: 18, maxConnId: 6, conns: [{ conn: 5, inConsumed: 14, outProduced: 7, closed: false }] } },
    { msg: { t: 'rollback', term: 4, epoch: 18, conn: 5, code: 'FTVM_ERR_GUEST_TRAP', maxConnId: 6, conns: [{ conn: 5, inConsumed: 14, outProduced: 7, closed: false }] } },
    { msg: { t: 'status', role: 'primary', term: 3, epoch: 18, state: 'active', detail: { lagMs: 3 } } },
  ];
}

export function sampleFrames(): Uint8Array[] {
  return sampleMessages().map(({ msg, payload }) => encodeFrame(msg, payload));
}

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

/** msgpack fragments that are valid msgpack but wrong for a field (types, huge counts). */
const NASTY_MSGPACK: number[][] = [
  [0xc0], [0xc2], [0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0], [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
  [0xdd, 0xff, 0xff, 0xff, 0xff], [0xdf, 0xff, 0xff, 0xff, 0xff], [0xc6, 0xff, 0xff, 0xff, 0xff], [0xdb, 0x7f, 0xff, 0xff, 0xff],
  [0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0], [0xd6, 0xff, 0, 0, 0, 1], [0xc7, 5, 0x72, 1, 2, 3, 4, 5], [0x91, 0x91, 0x91, 0x91],
  [0xa1, 0x78], [0xff], [0xc1],
];

/**
 * One mutation of a valid frame: bit flips, byte edits, truncation, extension,
 * header-length lies, huge batch counts, splices of wrong-typed msgpack, random bytes.
 */
export function mutateFrame(r: () => number, frame: Uint8Array, limits: FrameLimits = resolveLimits()): Uint8Array {
  const out = new Uint8Array(frame);
  const dv = new DataView(out.buffer);
  // Frames already cut below one header byte only take the length-agnostic mutations.
  const kind = out.length < 5 ? pick(r, [1, 6, 7]) : Math.floor(r() * 11);
  switch (kind) {
    case 0: { // flip 1..8 bits anywhere
      for (let i = 0, n = 1 + Math.floor(r() * 8); i < n; i++) out[Math.floor(r() * out.length)]! ^= 1 << Math.floor(r() * 8);
      return out;
    }
    case 1: // truncate
      return out.subarray(0, Math.floor(r() * out.length));
    case 2: { // header length lies
      const lies = [0, 1, 3, dv.getUint32(0, true) - 1, dv.getUint32(0, true) + 1, out.length, limits.maxHeaderBytes + 1, 0xffffffff, Math.floor(r() * 2 ** 32)];
      if (out.length >= 4) dv.setUint32(0, pick(r, lies) >>> 0, true);
      return out;
    }
    case 3: { // random bytes in the header region
      const hl = Math.min(dv.getUint32(0, true), out.length - 4);
      for (let i = 0, n = 1 + Math.floor(r() * 4); i < n; i++) out[4 + Math.floor(r() * Math.max(1, hl))] = Math.floor(r() * 256);
      return out;
    }
    case 4: { // splice wrong-typed msgpack into the header, fixing the header length
      const hl = Math.min(dv.getUint32(0, true), out.length - 4);
      const at = 4 + Math.floor(r() * Math.max(1, hl));
      const frag = pick(r, NASTY_MSGPACK);
      const cut = Math.min(Math.floor(r() * 3), out.length - at);
      const res = new Uint8Array(out.length + frag.length - cut);
      res.set(out.subarray(0, at));
      res.set(frag, at);
      res.set(out.subarray(Math.min(out.length, at + cut)), at + frag.length);
      new DataView(res.buffer).setUint32(0, Math.max(0, hl + frag.length - cut), true);
      return res;
    }
    case 5: { // payload edits: batch count / entry lengths / codec bytes
      const hl = dv.getUint32(0, true);
      const p = 4 + hl;
      if (p + 4 <= out.length) {
        const which = Math.floor(r() * 4);
        if (which === 0) dv.setUint32(p, pick(r, [0, 1, 3, 8193, 0xffffffff, Math.floor(r() * 2 ** 32)]) >>> 0, true);
        else if (which === 1 && p + 13 <= out.length) dv.setUint32(p + 9, pick(r, [0, 1, 4095, 4096, 4097, 0xffffffff]) >>> 0, true);
        else if (which === 2 && p + 9 <= out.length) out[p + 8] = Math.floor(r() * 256);
        else out[p + Math.floor(r() * (out.length - p))] = Math.floor(r() * 256);
      }
      return out;
    }
    case 6: { // append garbage
      const extra = new Uint8Array(1 + Math.floor(r() * 64)).map(() => Math.floor(r() * 256));
      const res = new Uint8Array(out.length + extra.length);
      res.set(out);
      res.set(extra, out.length);
      return res;
    }
    case 7: { // entirely random bytes
      return new Uint8Array(Math.floor(r() * 200)).map(() => Math.floor(r() * 256));
    }
    case 8: { // a random valid-looking header over a random payload
      const res = new Uint8Array(out.length);
      res.set(out);
      for (let i = 0; i < 3; i++) res[Math.floor(r() * res.length)] = pick(r, [0x00, 0xff, 0x80, 0x7f, 0xc0, 0xd9]);
      return res;
    }
    case 10: { // inflate the payload to just past a size limit (skipped for limits over 1 MiB)
      const sizes = [PREAUTH_MAX_MESSAGE_BYTES + 1, limits.maxPayloadBytes + 1, maxFrameBytes(limits) + 1].filter((x) => x <= 1 << 20);
      const size = sizes.length > 0 ? pick(r, sizes) : out.length + 1;
      const res = new Uint8Array(Math.max(size, out.length));
      res.set(out);
      return res;
    }
    default: { // two mutations stacked
      return mutateFrame(r, mutateFrame(r, frame, limits), limits);
    }
  }
}

export interface FuzzListenerOptions {
  /** The listener's token (needed only with `link`). Default: empty. */
  token: Uint8Array;
  /** Authenticate first and fuzz an established link of this kind; undefined: fuzz the handshake. */
  link?: LinkKind;
  role?: Role;
  limits?: Partial<FrameLimits>;
  seed?: number;
  /** Connections in flight at once. Default 16. */
  concurrency?: number;
  /** Per-connection deadline, ms. Default 5000. */
  timeoutMs?: number;
  /**
   * Close codes the listener may also end a link with before reading the frame, for
   * reasons of its own (a runtime replacing an older link: 4000; a primary that already
   * has a secondary: FTVM_ERR_BUSY 4010).
   */
  alsoAccept?: number[];
}

export interface FuzzReport {
  sent: number;
  /** Frames our own decoder accepts (the listener may keep the link open). */
  valid: number;
  closes: Record<number, number>;
  /** Human-readable failures; empty when the listener kept every promise. */
  failures: string[];
}

/**
 * Sends `n` fuzzed frames to the listener at `url`, one connection per frame. For a
 * frame our decoder rejects, the listener must close with exactly closeCodeFor(code)
 * (or 1009 when the frame exceeds the transport ceiling: 16 KiB before the handshake). A frame the decoder accepts
 * but the link does not allow must close with 4006. A frame the link accepts may close
 * with any 4xxx code; if it does not close within 20 ms, a truncated frame follows and
 * the link must then close with a 4xxx code. Every connection must end before `timeoutMs`.
 */
export async function fuzzListener(url: string, n: number, options: Partial<FuzzListenerOptions> = {}): Promise<FuzzReport> {
  const opts: FuzzListenerOptions = { token: new Uint8Array(0), ...options };
  const limits = resolveLimits(opts.limits);
  const r = rng(opts.seed ?? 1);
  const frames = sampleFrames();
  const report: FuzzReport = { sent: 0, valid: 0, closes: {}, failures: [] };
  const concurrency = opts.concurrency ?? 16;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      const frame = r() < 0.05 ? pick(r, frames) : mutateFrame(r, pick(r, frames), limits);
      const failure = await fuzzOne(url, frame, limits, opts, report);
      report.sent++;
      if (failure) report.failures.push(`#${i}: ${failure} (frame ${Buffer.from(frame.subarray(0, 48)).toString('hex')})`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return report;
}

function expectation(frame: Uint8Array, limits: FrameLimits, link: LinkKind | undefined): { codes: number[] | 'any4xxx'; valid: boolean } {
  const ceiling = link === undefined ? Math.min(PREAUTH_MAX_MESSAGE_BYTES, maxFrameBytes(limits)) : maxFrameBytes(limits);
  if (frame.length > ceiling) return { codes: [1009], valid: false };
  try {
    const { msg } = decodeFrame(frame, limits);
    if (link === undefined) return { codes: 'any4xxx', valid: true }; // handshake: version/auth/unexpected
    if (!LINK_MESSAGES[link].has(msg.t)) return { codes: [CLOSE_CODES.FTVM_ERR_UNEXPECTED_MESSAGE], valid: true };
    // The listener's own handler may close for reasons of its own (e.g. a reject's code).
    return { codes: 'any4xxx', valid: true };
  } catch (e) {
    return { codes: [closeCodeFor((e as { code: string }).code)], valid: false };
  }
}

function fuzzOne(url: string, frame: Uint8Array, limits: FrameLimits, opts: FuzzListenerOptions, report: FuzzReport): Promise<string | undefined> {
  const exp = expectation(frame, limits, opts.link);
  if (exp.valid) report.valid++;
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: maxFrameBytes(limits) + 16 });
    let phase: 'handshake' | 'fuzzed' | 'followup' = opts.link === undefined ? 'fuzzed' : 'handshake';
    const hs = new ClientHandshake({ token: opts.token, hello: { role: opts.role ?? 'proxy', link: opts.link ?? 'net', nodeId: 'fuzzer', term: 0 } });
    let settled = false;
    const end = (failure: string | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.terminate();
      resolve(failure);
    };
    const timer = setTimeout(() => end(`no close within ${opts.timeoutMs ?? 5000} ms (phase ${phase})`), opts.timeoutMs ?? 5000);
    // After the handshake every frame carries the link's MAC: fuzzed frames get a valid one, so the decoder judges them.
    let seq = 0;
    const withTag = (f: Uint8Array): Uint8Array => (hs.keys ? Buffer.concat([f, frameTag(hs.keys.send, seq++, f)]) : f);
    const sendFuzz = (): void => {
      phase = 'fuzzed';
      ws.send(withTag(frame), { binary: true });
      if (exp.codes === 'any4xxx' && opts.link !== undefined) {
        // A valid frame may be accepted silently; a truncated frame must then close the link.
        setTimeout(() => {
          if (!settled && phase === 'fuzzed') {
            phase = 'followup';
            ws.send(withTag(new Uint8Array([1, 0, 0])), { binary: true });
          }
        }, 20);
      }
    };
    ws.on('message', (data: Buffer) => {
      if (phase !== 'handshake') return;
      try {
        const step = hs.receive(decodeFrame(data, limits).msg);
        if (step.reply) ws.send(encodeFrame(step.reply, undefined, limits));
        if (step.done) sendFuzz();
      } catch (e) {
        end(`handshake failed: ${(e as Error).message}`);
      }
    });
    ws.on('open', () => {
      if (opts.link === undefined) sendFuzz();
    });
    ws.on('error', () => {});
    ws.on('close', (code) => {
      report.closes[code] = (report.closes[code] ?? 0) + 1;
      if (phase === 'handshake') return end(`closed with ${code} during the handshake`);
      // The listener may have closed for the fuzzed frame itself (any 4xxx) just as the follow-up left.
      if (phase === 'followup') return end(code >= 4000 && code <= 4999 ? undefined : `follow-up bad frame closed with ${code}, want 4003`);
      if (exp.codes === 'any4xxx') return end(code >= 4000 && code <= 4999 ? undefined : `closed with ${code}, want 4xxx`);
      return end(exp.codes.includes(code) || (opts.alsoAccept ?? []).includes(code) ? undefined : `closed with ${code}, want ${exp.codes.join('|')}`);
    });
  });
}
