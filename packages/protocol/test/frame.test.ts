import { describe, expect, it } from 'vitest';
import { Packr } from 'msgpackr';
import {
  FrameReader, PAYLOAD_TYPES, decodeFrame, encodeFrame, encodeStreamFrame, validateMessage,
  type Message,
} from '../src/index.js';
import { SCHEMAS } from '../src/schema.js';
import { sampleMessages } from './fuzz-helpers.js';

const packr = new Packr({ useRecords: false });

/** A frame with an arbitrary header object, bypassing encode-side validation. */
function rawFrame(header: unknown, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const h = packr.pack(header);
  const out = new Uint8Array(4 + h.length + payload.length);
  new DataView(out.buffer).setUint32(0, h.length, true);
  out.set(h, 4);
  out.set(payload, 4 + h.length);
  return out;
}

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as { code: string }).code;
  }
  return 'no error';
}

describe('frames', () => {
  it('round-trips a sample of every message type with its payload', () => {
    const samples = sampleMessages();
    const types = new Set(samples.map((s) => s.msg.t));
    expect([...types].sort()).toEqual(Object.keys(SCHEMAS).sort());
    for (const { msg, payload } of samples) {
      const { msg: back, payload: p } = decodeFrame(encodeFrame(msg, payload));
      expect(back).toEqual(msg);
      expect(Array.from(p)).toEqual(Array.from(payload ?? []));
    }
  });

  it('keeps i64 globals as bigint and f64 globals as numbers', () => {
    const msg = sampleMessages().find((s) => s.msg.t === 'ckpt_begin')!.msg as Extract<Message, { t: 'ckpt_begin' }>;
    const back = decodeFrame(encodeFrame(msg)).msg as typeof msg;
    expect(back.globals.map((g) => typeof g)).toEqual(['number', 'number', 'bigint', 'bigint', 'number']);
    expect(back.globals[3]).toBe(2n ** 64n - 1n);
    expect(Number.isNaN(back.globals[4])).toBe(true);
  });

  it('refuses a frame shorter than its header length as truncated', () => {
    const f = encodeFrame({ t: 'fence', term: 1 });
    for (let n = 0; n < f.length; n++) {
      expect(codeOf(() => decodeFrame(f.subarray(0, n)))).toMatch(/FTVM_ERR_FRAME_(TRUNCATED|MALFORMED)/);
    }
    expect(codeOf(() => decodeFrame(f.subarray(0, 3)))).toBe('FTVM_ERR_FRAME_TRUNCATED');
    expect(codeOf(() => decodeFrame(f.subarray(0, f.length - 1)))).toBe('FTVM_ERR_FRAME_TRUNCATED');
  });

  it('refuses an oversized header length before reading the header', () => {
    const f = new Uint8Array(8);
    new DataView(f.buffer).setUint32(0, 64 * 1024 + 1, true);
    expect(codeOf(() => decodeFrame(f))).toBe('FTVM_ERR_FRAME_TOO_LARGE');
    expect(codeOf(() => decodeFrame(encodeFrame({ t: 'fence', term: 1 }), { maxHeaderBytes: 32, maxPayloadBytes: 16 }))).toBe('no error');
  });

  it('refuses a payload over maxPayloadBytes on decode and on encode', () => {
    const big = new Uint8Array(1025);
    const f = encodeFrame({ t: 'input', term: 5, conn: 1, offset: 0 }, big);
    expect(codeOf(() => decodeFrame(f, { maxPayloadBytes: 1024 }))).toBe('FTVM_ERR_FRAME_TOO_LARGE');
    expect(codeOf(() => encodeFrame({ t: 'input', term: 5, conn: 1, offset: 0 }, big, { maxPayloadBytes: 1024 }))).toBe('FTVM_ERR_FRAME_TOO_LARGE');
  });

  it('refuses a header over maxHeaderBytes on encode', () => {
    const msg: Message = { t: 'status', role: 'primary', term: 0, epoch: 0, state: 'x', detail: { s: 'y'.repeat(2000) } };
    expect(codeOf(() => encodeFrame(msg, undefined, { maxHeaderBytes: 1024 }))).toBe('FTVM_ERR_FRAME_TOO_LARGE');
  });

  it('refuses an unknown message type', () => {
    expect(codeOf(() => decodeFrame(rawFrame({ t: 'explode' })))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => decodeFrame(rawFrame({ term: 1 })))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => decodeFrame(rawFrame([1, 2])))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => decodeFrame(rawFrame({ t: 'toString' })))).toBe('FTVM_ERR_FRAME_MALFORMED');
  });

  it('refuses missing, extra and wrong-typed fields of every message type', () => {
    for (const { msg, payload } of sampleMessages()) {
      const fields = Object.keys(msg).filter((k) => k !== 't');
      for (const k of fields) {
        const spec = (SCHEMAS as Record<string, Record<string, { optional?: boolean }>>)[msg.t]![k]!;
        if (!spec.optional) {
          const missing = { ...msg } as Record<string, unknown>;
          delete missing[k];
          expect(codeOf(() => decodeFrame(rawFrame(missing, payload))), `${msg.t} without ${k}`).toBe('FTVM_ERR_FRAME_MALFORMED');
        }
        // Opaque fields take any plain data; every other field has one type.
        if (['devices', 'clock', 'detail'].includes(k)) continue;
        for (const wrong of [-1, 1.5, 'x', true, 2n ** 60n, [1], { a: 1 }, new Uint8Array(3)]) {
          const current = (msg as unknown as Record<string, unknown>)[k];
          if (typeof wrong === typeof current && !(wrong instanceof Uint8Array) && !Array.isArray(wrong)) {
            if (typeof wrong === 'boolean' || typeof wrong === 'string') continue;
          }
          const bad = { ...msg, [k]: wrong };
          let accepted = false;
          try {
            decodeFrame(rawFrame(bad, payload));
            accepted = true;
          } catch (e) {
            expect((e as { code: string }).code).toBe('FTVM_ERR_FRAME_MALFORMED');
          }
          // Only a value of the field's own kind may pass (e.g. 1.5 for a number in globals).
          if (accepted) expect(typeof wrong, `${msg.t}.${k} accepted ${String(wrong)}`).toBe(typeof current);
        }
      }
      expect(codeOf(() => decodeFrame(rawFrame({ ...msg, extra: 1 }, payload))), `${msg.t} with an extra field`).toBe('FTVM_ERR_FRAME_MALFORMED');
    }
  });

  it('refuses unsafe and negative integers, and strings over their limit', () => {
    expect(codeOf(() => validateMessage({ t: 'fence', term: 2 ** 53 }))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => validateMessage({ t: 'fence', term: -1 }))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => validateMessage({ t: 'fence', term: 1n }))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => validateMessage({ t: 'open', term: 5, conn: 1, remote: 'x'.repeat(257) }))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => validateMessage({ t: 'reject', code: 'nope', message: '' }))).toBe('FTVM_ERR_FRAME_MALFORMED');
  });

  it('names the field that failed, however deep, and validates the next message the fast way again', () => {
    const conn = (c: number) => ({ conn: c, offset: 0 });
    const bad = { t: 'resend', term: 1, conns: [conn(1), { ...conn(2), offset: -1 }] };
    expect(() => validateMessage(bad)).toThrow('resend.conns[1].offset must be a safe non-negative integer, got number -1');
    expect(() => validateMessage({ ...bad, conns: [conn(1), { conn: 2 }] })).toThrow('resend.conns[1].offset is missing');
    expect(() => validateMessage({ t: 'status', role: 'cli', term: 0, epoch: 0, state: 's', detail: { a: [1, { b: new Date(0) }] } })).toThrow(
      'status.detail.a[1].b must be plain data',
    );
    // A good message after a bad one: same clean copy as before (the path pass is over).
    const good = { ...bad, conns: [conn(1), conn(2)] };
    expect(validateMessage(good)).toEqual(good);
    expect(validateMessage(good)).not.toBe(good);
  });

  it('refuses opaque values nested too deep or holding non-plain objects', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    expect(codeOf(() => validateMessage({ t: 'status', role: 'cli', term: 0, epoch: 0, state: 's', detail: deep }))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => validateMessage({ t: 'status', role: 'cli', term: 0, epoch: 0, state: 's', detail: new Date(0) }))).toBe('FTVM_ERR_FRAME_MALFORMED');
    // msgpack timestamp extension -> Date on decode: refused as non-plain data.
    const withDate = rawFrame({ t: 'status', role: 'cli', term: 0, epoch: 0, state: 's', detail: new Date(0) });
    expect(codeOf(() => decodeFrame(withDate))).toBe('FTVM_ERR_FRAME_MALFORMED');
  });

  it('refuses a payload on a message type that carries none', () => {
    expect(codeOf(() => decodeFrame(rawFrame({ t: 'fence', term: 1 }, new Uint8Array(1))))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => encodeFrame({ t: 'fence', term: 1 }, new Uint8Array(1)))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(PAYLOAD_TYPES.has('ckpt_pages')).toBe(true);
  });

  it('refuses trailing bytes inside the declared header', () => {
    const f = encodeFrame({ t: 'fence', term: 1 });
    const g = new Uint8Array(f.length + 1);
    g.set(f);
    new DataView(g.buffer).setUint32(0, f.length - 4 + 1, true);
    expect(codeOf(() => decodeFrame(g))).toBe('FTVM_ERR_FRAME_MALFORMED');
  });

  it('enforces scrub hash lengths against the count', () => {
    expect(codeOf(() => validateMessage({ t: 'scrub_res', term: 0, epoch: 0, fromPage: 0, count: 3, hashes: new Uint8Array(16) }))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => validateMessage({ t: 'scrub_req', term: 0, epoch: 0, fromPage: 0, count: 0 }))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => validateMessage({ t: 'scrub_req', term: 0, epoch: 0, fromPage: 0, count: 4097 }))).toBe('FTVM_ERR_FRAME_MALFORMED');
  });
});

describe('FrameReader', () => {
  const frames = sampleMessages().map(({ msg, payload }) => ({ msg, payload, bytes: encodeStreamFrame(msg, payload) }));
  const stream = Buffer.concat(frames.map((f) => f.bytes));

  it('parses frames split at every byte boundary', () => {
    for (let cut = 0; cut <= stream.length; cut += 7) {
      const r = new FrameReader();
      const got = [...r.push(stream.subarray(0, cut)), ...r.push(stream.subarray(cut))];
      r.end();
      expect(got.map((g) => g.msg)).toEqual(frames.map((f) => f.msg));
    }
  });

  it('parses a stream fed one byte at a time', () => {
    const r = new FrameReader();
    const got = [];
    for (let i = 0; i < stream.length; i++) got.push(...r.push(stream.subarray(i, i + 1)));
    r.end();
    expect(got.map((g) => g.msg)).toEqual(frames.map((f) => f.msg));
    expect(got.map((g) => Array.from(g.payload))).toEqual(frames.map((f) => Array.from(f.payload ?? [])));
  });

  it('reports a stream cut inside a frame as truncated at end()', () => {
    const one = frames[0]!.bytes;
    for (let n = 1; n < one.length; n++) {
      const r = new FrameReader();
      expect(r.push(one.subarray(0, n))).toEqual([]);
      expect(codeOf(() => r.end())).toBe('FTVM_ERR_FRAME_TRUNCATED');
    }
  });

  it('refuses a length prefix over the limit before buffering the frame', () => {
    const r = new FrameReader({ maxHeaderBytes: 1024, maxPayloadBytes: 1024 });
    const prefix = new Uint8Array(4);
    new DataView(prefix.buffer).setUint32(0, 4 + 1024 + 1024 + 1, true);
    expect(codeOf(() => r.push(prefix))).toBe('FTVM_ERR_FRAME_TOO_LARGE');
    expect(r.bufferedBytes).toBe(0);
    // A failed reader stays failed: the stream cannot resynchronise.
    expect(codeOf(() => r.push(frames[0]!.bytes))).toBe('FTVM_ERR_FRAME_TOO_LARGE');
  });

  it('never buffers more than one frame', () => {
    const r = new FrameReader();
    let max = 0;
    for (let i = 0; i < stream.length; i += 13) {
      r.push(stream.subarray(i, i + 13));
      max = Math.max(max, r.bufferedBytes);
    }
    expect(max).toBeLessThanOrEqual(Math.max(...frames.map((f) => f.bytes.length)));
  });

  it('validates options naming the option', () => {
    expect(() => new FrameReader({ maxHeaderBytes: -1 })).toThrow(/maxHeaderBytes/);
  });
});

describe('header msgpack pre-check', () => {
  it('refuses extension types, the unused type byte and values after the header value', () => {
    expect(codeOf(() => decodeFrame(rawFrame({ t: 'status', role: 'cli', term: 0, epoch: 0, state: 's', detail: new Date(0) })))).toBe('FTVM_ERR_FRAME_MALFORMED');
    const withC1 = new Uint8Array([1, 0, 0, 0, 0xc1]);
    expect(codeOf(() => decodeFrame(withC1))).toBe('FTVM_ERR_FRAME_MALFORMED');
    const two = new Uint8Array([2, 0, 0, 0, 0x80, 0x80]);
    expect(codeOf(() => decodeFrame(two))).toBe('FTVM_ERR_FRAME_MALFORMED');
  });

  it('refuses a huge claimed array count at the end of the data, without allocating it', () => {
    const f = new Uint8Array([5, 0, 0, 0, 0xdd, 0xff, 0xff, 0xff, 0xff]);
    expect(codeOf(() => decodeFrame(f))).toBe('FTVM_ERR_FRAME_MALFORMED');
    const map = new Uint8Array([5, 0, 0, 0, 0xdf, 0xff, 0xff, 0xff, 0xff]);
    expect(codeOf(() => decodeFrame(map))).toBe('FTVM_ERR_FRAME_MALFORMED');
  });

  it('refuses headers nested deeper than the opaque limit allows', () => {
    const depth = 1000;
    const h = new Uint8Array(depth + 1).fill(0x91);
    h[depth] = 0x01;
    const f = new Uint8Array(4 + h.length);
    new DataView(f.buffer).setUint32(0, h.length, true);
    f.set(h, 4);
    expect(codeOf(() => decodeFrame(f))).toBe('FTVM_ERR_FRAME_MALFORMED');
  });

  it('drops undefined properties of opaque values like JSON', () => {
    const msg = { t: 'status', role: 'cli', term: 0, epoch: 0, state: 's', detail: { a: 1, b: undefined } } as const;
    expect(decodeFrame(encodeFrame(msg as unknown as Message)).msg).toEqual({ ...msg, detail: { a: 1 } });
  });
});
