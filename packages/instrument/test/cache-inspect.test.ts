import { describe, expect, test, afterEach } from 'vitest';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheKey, inspectModule, instrument, instrumentCached } from '../src/index.js';
import { guest, wat } from './fixtures.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'ftvm-instr-cache-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const W = guest('(global (mut i32) (i32.const 3)) (func (export "st") (param i32) (i32.store (local.get 0) (i32.const 1)))');

describe('instrumentCached', () => {
  test('returns the same result as instrument() and serves the second call from disk', () => {
    const dir = tmp();
    const first = instrumentCached(W, dir);
    const second = instrumentCached(W, dir);
    expect(first.cached).toBe(false);
    expect(second.cached).toBe(true);
    expect(Buffer.compare(Buffer.from(second.wasm), Buffer.from(instrument(W).wasm))).toBe(0);
    expect(second.stats.globalExports).toEqual(first.stats.globalExports);
    expect(second.mode).toBe('bytemap');
    expect(readdirSync(dir)).toEqual([`${cacheKey(W)}.bin`]); // no temp file left behind
  });

  test('keys on the options, so precise and non-precise results do not collide', () => {
    expect(cacheKey(W, { precise: false })).not.toBe(cacheKey(W));
    expect(cacheKey(W, { precise: true })).toBe(cacheKey(W));
  });

  test('recomputes over a corrupt cache file', () => {
    const dir = tmp();
    writeFileSync(join(dir, `${cacheKey(W)}.bin`), Buffer.from([255, 255, 0, 0, 1, 2, 3]));
    const r = instrumentCached(W, dir);
    expect(r.cached).toBe(false);
    expect(instrumentCached(W, dir).cached).toBe(true);
  });

  test('honours FTVM_CACHE_DIR', () => {
    const dir = tmp();
    const old = process.env.FTVM_CACHE_DIR;
    process.env.FTVM_CACHE_DIR = dir;
    try {
      instrumentCached(W);
      expect(readdirSync(dir).length).toBe(1);
    } finally {
      if (old === undefined) delete process.env.FTVM_CACHE_DIR;
      else process.env.FTVM_CACHE_DIR = old;
    }
  });
});

describe('inspectModule', () => {
  test('reports ABI, memory, imports, exports and instrumentation', () => {
    const r = inspectModule(guest('(global (mut i32) (i32.const 3))', '(memory (export "memory") 20 64)', '(import "ftvm" "rdtsc" (func (result i64)))'));
    expect(r.abi.ok).toBe(true);
    expect(r.text).toMatch(/ABI: +version 1/);
    expect(r.text).toMatch(/initial 20 pages \(1.25 MiB\), max 64 pages \(4 MiB\)/);
    expect(r.text).toContain('ftvm.rdtsc  func () -> (i64)');
    expect(r.text).toContain('ftvm_on_data  func (i32, i32, i32) -> ()');
    expect(r.text).toMatch(/Dirty log: +bytemap/);
    expect(r.text).toContain('ftvm_g1=#1:i32');
    expect(r.instrument?.mode).toBe('bytemap');
  });

  test('shows the ABI failure and still the instrumentation outcome', () => {
    const r = inspectModule(wat('(module (memory (export "memory") 20) (data (i32.const 8) "x"))'));
    expect(r.abi).toMatchObject({ ok: false, code: 'FTVM_ERR_ABI_VERSION_MISSING' });
    expect(r.text).toMatch(/Dirty log: +shadow/);
    expect(r.text).toMatch(/warning: .*data segment 0 starts at byte 8/);
  });

  test('stops at a module that is not wasm', () => {
    const r = inspectModule(new Uint8Array([1, 2, 3]));
    expect(r.abi).toMatchObject({ ok: false, code: 'FTVM_ERR_WASM_INVALID' });
    expect(r.instrument).toBeUndefined();
  });
});
