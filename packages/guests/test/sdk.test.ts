// SDK behaviour through a test-only guest (test/fixtures/sdkprobe.ts) and the shipped ones.

import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
// @ts-expect-error: plain JS build script without type declarations
import { compileGuest } from '../scripts/build.mjs';
import { GuestHarness } from './harness.js';

const MS = 1_000_000;
const C = 1;
let wasm: Uint8Array;
let dir = '';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ftvm-sdkprobe-'));
  const out = join(dir, 'sdkprobe.wasm');
  await compileGuest(fileURLToPath(new URL('./fixtures/sdkprobe.ts', import.meta.url)), out);
  wasm = new Uint8Array(readFileSync(out));
}, 180_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function boot(): GuestHarness {
  const h = new GuestHarness(wasm).init();
  h.open(C);
  return h;
}

function say(h: GuestHarness, line: string): string {
  h.data(C, line + '\n');
  return h.text(C);
}

const fired = (h: GuestHarness) => h.logs.filter((l) => l.text.startsWith('fired ')).map((l) => l.text.slice(6));

describe('SDK timers', () => {
  it('multiplexes logical timers onto the one-shot host timer, earliest first', () => {
    const h = boot();
    const t0 = h.nowNs();
    say(h, 'AFTER 1 30');
    expect(h.timerDeadline).toBe(t0 + 30n * BigInt(MS));
    say(h, 'AFTER 2 10');
    say(h, 'AFTER 3 20');
    expect(h.timerDeadline).toBe(t0 + 10n * BigInt(MS));
    expect(say(h, 'COUNT')).toBe('3\n');
    expect(h.runFor(50 * MS)).toBe(3);
    expect(fired(h)).toEqual(['2', '3', '1']);
    // The one-shot host timer is spent; nothing re-armed it.
    expect(h.timerDeadline).toBe(0n);
    expect(h.timerHistory).toEqual([t0 + 30n * BigInt(MS), t0 + 10n * BigInt(MS), t0 + 20n * BigInt(MS), t0 + 30n * BigInt(MS)]);
  });

  it('fires timers due at the same moment in one host timer event', () => {
    const h = boot();
    say(h, 'AFTER 1 10');
    say(h, 'AFTER 2 10');
    say(h, 'AFTER 3 12');
    h.advance(15 * MS);
    expect(h.fireTimer()).toBe(true);
    expect(fired(h)).toEqual(['1', '2', '3']);
  });

  it('re-arms the host timer when the earliest logical timer is cancelled', () => {
    const h = boot();
    const t0 = h.nowNs();
    const id = Number(say(h, 'AFTER 1 5'));
    say(h, 'AFTER 2 40');
    expect(say(h, `CANCEL ${id}`)).toBe('1\n');
    expect(say(h, `CANCEL ${id}`)).toBe('0\n');
    expect(h.timerDeadline).toBe(t0 + 40n * BigInt(MS));
    h.runFor(100 * MS);
    expect(fired(h)).toEqual(['2']);
  });

  it('does not loop when a handler arms an already-due timer: it waits for the next host event', () => {
    const h = boot();
    say(h, 'AFTER 9 1');
    h.advance(2 * MS);
    expect(h.fireTimer()).toBe(true);
    expect(fired(h)).toEqual(['9']);
    expect(h.timerDeadline).toBeGreaterThan(0n);
    expect(h.fireTimer()).toBe(true);
    expect(fired(h)).toEqual(['9', '9']);
  });

  it('ignores a host timer that fires early and re-arms it', () => {
    const h = boot();
    const t0 = h.nowNs();
    say(h, 'AFTER 1 10');
    (h.exports.ftvm_on_timer as () => void)();
    expect(fired(h)).toEqual([]);
    expect(h.timerDeadline).toBe(t0 + 10n * BigInt(MS));
  });

  it('refuses more than MAX_TIMERS logical timers', () => {
    const h = boot();
    expect(say(h, 'FILLTIMERS')).toBe('1024\n');
  });
});

describe('SDK io and exports', () => {
  it('sends strings as UTF-8, typed arrays, ArrayBuffers and StaticArrays byte-exactly', () => {
    const h = boot();
    h.data(C, 'SENDS');
    expect(h.sends(C)).toBe(4);
    expect(Buffer.from(h.out(C)).toString('utf8')).toBe('sé|A|ab|Z');
  });

  it('draws randomness from the host random import', () => {
    const a = new GuestHarness(wasm, { seed: 1 }).init();
    const b = new GuestHarness(wasm, { seed: 1 }).init();
    const c = new GuestHarness(wasm, { seed: 2 }).init();
    const r = (h: GuestHarness) => {
      h.data(C, 'RAND');
      return h.text(C);
    };
    const ra = r(a);
    expect(ra).toMatch(/^[0-9a-f]+ [0-9a-f]+\n$/);
    expect(r(b)).toBe(ra);
    expect(r(c)).not.toBe(ra);
  });

  it('allows several outstanding ftvm_alloc buffers, consumed in any order', () => {
    const h = GuestHarness.load('kv').init();
    const alloc = h.exports.ftvm_alloc as (n: number) => number;
    const onData = h.exports.ftvm_on_data as (c: number, p: number, n: number) => void;
    const put = (conn: number, s: string) => {
      const bytes = Buffer.from(s);
      const p = alloc(bytes.length);
      h.mem().set(bytes, p);
      return [p, bytes.length] as const;
    };
    const a = put(1, 'PING\r\n');
    const b = put(2, 'ECHO hi\r\n');
    expect(a[0]).not.toBe(b[0]);
    onData(2, ...b);
    onData(1, ...a);
    expect(h.text(1)).toBe('+PONG\r\n');
    expect(h.text(2)).toBe('$2\r\nhi\r\n');
  });

  it('traps with a logged reason when the host leaks ftvm_alloc buffers', () => {
    const h = GuestHarness.load('kv').init();
    const alloc = h.exports.ftvm_alloc as (n: number) => number;
    for (let i = 0; i < 16; i++) alloc(10);
    expect(() => alloc(10)).toThrow(WebAssembly.RuntimeError);
    expect(h.logs.at(-1)?.text).toMatch(/^abort: ftvm_alloc: more than 16 buffers outstanding/);
  });

  it('traps with a logged reason on a negative ftvm_alloc length', () => {
    const h = GuestHarness.load('kv').init();
    expect(() => (h.exports.ftvm_alloc as (n: number) => number)(-1)).toThrow(WebAssembly.RuntimeError);
    expect(h.logs.at(-1)?.level).toBe(0);
    expect(h.logs.at(-1)?.text).toContain('ftvm_alloc: negative length');
  });
});
