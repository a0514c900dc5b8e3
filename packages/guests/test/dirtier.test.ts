import { describe, it, expect } from 'vitest';
import { GuestHarness } from './harness.js';

const MS = 1_000_000;
const C = 3;

function boot(): GuestHarness {
  const h = GuestHarness.load('dirtier').init();
  h.open(C);
  return h;
}

function say(h: GuestHarness, line: string): string {
  h.data(C, line + '\n');
  return h.text(C);
}

function stats(h: GuestHarness): Record<string, string> {
  const line = say(h, 'STATS');
  expect(line.endsWith('\n')).toBe(true);
  return Object.fromEntries(line.trim().split(' ').map((kv) => kv.split('=') as [string, string]));
}

/** 4 KiB pages of [start, end) of guest memory that are not all zero. */
function nonZeroPages(h: GuestHarness, start: number, end: number): number[] {
  const mem = h.mem();
  const pages: number[] = [];
  for (let p = start; p < end; p += 4096) {
    const words = new BigUint64Array(mem.buffer, p, 512);
    if (words.some((w) => w !== 0n)) pages.push((p - start) / 4096);
  }
  return pages;
}

describe('dirtier guest', () => {
  it('writes rate x time pages of its working set on each 10 ms tick', () => {
    const h = boot();
    expect(say(h, 'SET ws_pages=100 rate=1000')).toBe('OK\n');
    expect(h.timerDeadline).toBeGreaterThan(0n);
    const fires = h.runFor(1000 * MS);
    expect(fires).toBe(100);
    const s = stats(h);
    expect(s).toMatchObject({ pages_written: '1000', bytes: '8000', ticks: '100', ws_pages: '100', rate: '1000', pattern: 'seq' });
  });

  it('carries fractional pages between ticks', () => {
    const h = boot();
    say(h, 'SET ws_pages=10 rate=150');
    h.runFor(1000 * MS);
    expect(stats(h).pages_written).toBe('150');
  });

  it('dirties every page of the working set with non-zero values (seq pattern)', () => {
    const h = boot();
    const base = h.mem().length;
    say(h, 'SET ws_pages=64 rate=6400');
    h.runFor(10 * MS);
    expect(nonZeroPages(h, base, base + 64 * 4096)).toEqual([...Array(64).keys()]);
  });

  it('concentrates writes on the hot tenth of the working set with pattern=hot', () => {
    const h = boot();
    const base = h.mem().length;
    say(h, 'SET ws_pages=1000 rate=100000 pattern=hot seed=7');
    h.runFor(10 * MS);
    expect(stats(h).pages_written).toBe('1000');
    const pages = nonZeroPages(h, base, base + 1000 * 4096);
    const hot = pages.filter((p) => p < 100).length;
    expect(hot).toBe(100);
    // ~100 of the 1000 writes land anywhere: uniform writes would have touched ~630 pages.
    expect(pages.length - hot).toBeLessThan(150);
  });

  it('stops writing and disarms its timer on STOP', () => {
    const h = boot();
    say(h, 'SET ws_pages=10 rate=1000');
    h.runFor(100 * MS);
    expect(say(h, 'STOP')).toBe('OK\n');
    const written = stats(h).pages_written;
    expect(h.runFor(1000 * MS)).toBe(0);
    expect(stats(h).pages_written).toBe(written);
    expect(h.timerDeadline).toBe(0n);
  });

  it('catches up at most 100 ms after a long pause instead of bursting', () => {
    const h = boot();
    say(h, 'SET ws_pages=10 rate=1000');
    h.advance(5000 * MS);
    expect(h.fireTimer()).toBe(true);
    expect(stats(h).pages_written).toBe('100');
  });

  it('reports a digest that changes with writes and matches a replica fed the same input', () => {
    const a = boot();
    const b = boot();
    for (const h of [a, b]) {
      say(h, 'SET ws_pages=50 rate=500 pattern=random seed=42');
      h.runFor(300 * MS);
      say(h, 'STOP');
    }
    const da = say(a, 'DIGEST');
    expect(da).toMatch(/^digest=[0-9a-f]{16} pages=50\n$/);
    expect(say(b, 'DIGEST')).toBe(da);
    expect(say(a, 'DIGEST')).toBe(da);
    say(a, 'FILL');
    expect(say(a, 'DIGEST')).not.toBe(da);
  });

  it('grows memory for a 1 GiB working set', () => {
    const h = boot();
    expect(say(h, 'SET ws_pages=262144 rate=0')).toBe('OK\n');
    expect(Number(stats(h).mem_pages)).toBeGreaterThanOrEqual(262144);
    expect(say(h, 'SET ws_pages=262145 rate=0')).toBe('OK\n');
  });

  it('rejects malformed commands with ERR and keeps working', () => {
    const h = boot();
    expect(say(h, 'SET ws_pages=-1')).toBe('ERR ws_pages must be a non-negative integer\n');
    expect(say(h, 'SET rate=fast')).toBe('ERR rate must be a non-negative integer\n');
    expect(say(h, 'SET pattern=zigzag')).toBe('ERR pattern must be seq, random or hot\n');
    expect(say(h, 'SET colour=red')).toBe("ERR unknown key 'colour'\n");
    expect(say(h, 'SET ws_pages=99999999')).toMatch(/^ERR ws_pages must be at most \d+\n$/);
    expect(say(h, 'JUMP')).toMatch(/^ERR unknown command/);
    expect(stats(h).ws_pages).toBe('0');
  });

  it('closes a connection that sends a line over 4 KiB', () => {
    const h = boot();
    h.data(C, 'x'.repeat(5000));
    expect(h.text(C)).toBe('ERR line longer than 4096 bytes\n');
    expect(h.closed.has(C)).toBe(true);
  });
});
