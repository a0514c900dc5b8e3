import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FtvmError } from '@ftvm/guest-abi';
import { PageDecoder, connect, decodeFrame, listen, type Listener } from '../src/index.js';
import { fuzzListener, mutateFrame, rng, sampleFrames, sampleMessages } from './fuzz-helpers.js';

/** Runs f; a coded error counts, any other exception is recorded as a crash. */
function classify(f: () => unknown, codes: Map<string, number>, crashes: string[], label: string): void {
  try {
    f();
    codes.set('ok', (codes.get('ok') ?? 0) + 1);
  } catch (e) {
    if (e instanceof FtvmError && e.code.startsWith('FTVM_ERR_')) codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
    else if (crashes.length < 20) crashes.push(`${label}: ${(e as Error)?.stack ?? String(e)}`);
  }
}

describe('fuzzing decodeFrame and PageDecoder in process', () => {
  it('returns or throws a coded error for 100,000 mutated and random frames', () => {
    const r = rng(20240601);
    const frames = sampleFrames();
    const codes = new Map<string, number>();
    const crashes: string[] = [];
    for (let i = 0; i < 100_000; i++) {
      const frame = mutateFrame(r, frames[Math.floor(r() * frames.length)]!);
      classify(() => {
        const { msg, payload } = decodeFrame(frame);
        if (msg.t === 'ckpt_pages' || msg.t === 'ckpt_blocks') new PageDecoder({ maxImageBytes: 64 << 20 }).apply(payload, msg.count);
      }, codes, crashes, `frame ${i}`);
    }
    expect(crashes).toEqual([]);
    // The mutator must mostly produce bad frames, and hit every failure class.
    expect(codes.get('FTVM_ERR_FRAME_MALFORMED')).toBeGreaterThan(10_000);
    expect(codes.get('FTVM_ERR_FRAME_TRUNCATED')).toBeGreaterThan(1_000);
    expect(codes.get('FTVM_ERR_FRAME_TOO_LARGE')).toBeGreaterThan(1_000);
  });

  it('returns or throws a coded error for 100,000 mutated page batches', () => {
    const r = rng(7);
    const batches = sampleMessages().filter((s) => s.msg.t === 'ckpt_pages').map((s) => s.payload!);
    const codes = new Map<string, number>();
    const crashes: string[] = [];
    const dec = new PageDecoder({ maxImageBytes: 64 << 20 });
    for (let i = 0; i < 100_000; i++) {
      const base = batches[0]!;
      // Mutate the batch alone: wrap it as a frame payload so the same mutator applies.
      const mutated = new Uint8Array(base);
      const n = 1 + Math.floor(r() * 4);
      for (let k = 0; k < n; k++) {
        const op = Math.floor(r() * 3);
        const at = Math.floor(r() * mutated.length);
        if (op === 0) mutated[at] ^= 1 << Math.floor(r() * 8);
        else if (op === 1) mutated[at] = Math.floor(r() * 256);
        else new DataView(mutated.buffer).setUint32(Math.min(at, mutated.length - 4), Math.floor(r() * 2 ** 32), true);
      }
      const cut = r() < 0.2 ? mutated.subarray(0, Math.floor(r() * mutated.length)) : mutated;
      classify(() => dec.apply(cut), codes, crashes, `batch ${i}`);
    }
    expect(crashes).toEqual([]);
    expect(codes.get('FTVM_ERR_FRAME_MALFORMED')).toBeGreaterThan(50_000);
  });
});

describe('fuzzing a live listener', () => {
  let listener: Listener;
  const token = new TextEncoder().encode('fuzz-token');
  const limits = { maxHeaderBytes: 8 * 1024, maxPayloadBytes: 64 * 1024 };

  beforeAll(async () => {
    listener = await listen({
      host: '127.0.0.1', port: 0, token, limits, handshakeTimeoutMs: 2000,
      identity: () => ({ nodeId: 'fuzz-target', role: 'primary', term: 0, epoch: 0 }),
      onLink: () => {},
    });
  });
  afterAll(async () => {
    await listener.close();
  });

  it('closes every bad handshake frame with its 4xxx code', async () => {
    const report = await fuzzListener(listener.url, 1500, { token, limits, seed: 11 });
    expect(report.failures.slice(0, 5)).toEqual([]);
    expect(report.sent).toBe(1500);
    // Every failure class reached the listener: version/auth/unexpected, malformed, truncated, too large.
    for (const code of [1009, 4002, 4003, 4004, 4006]) expect(report.closes[code], `close ${code}`).toBeGreaterThan(0);
  });

  it('closes every bad frame on an established link with its 4xxx code', async () => {
    const report = await fuzzListener(listener.url, 1500, { token, limits, seed: 12, link: 'replication', role: 'primary' });
    expect(report.failures.slice(0, 5)).toEqual([]);
    expect(report.valid).toBeGreaterThan(0);
    for (const code of [1009, 4002, 4003, 4004, 4006]) expect(report.closes[code], `close ${code}`).toBeGreaterThan(0);
  });

  it('still accepts new connections after the fuzzing', async () => {
    const link = await connect(listener.url, { token, role: 'cli', link: 'control', nodeId: 'after', term: 0, limits });
    expect(link.peer.nodeId).toBe('fuzz-target');
    link.close();
  });
});
