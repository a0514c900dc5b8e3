import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  ABI_VERSION, IMPORT_MODULE, IMPORT_SIGNATURES, EXPORT_SIGNATURES, REQUIRED_EXPORTS, EXPORT_ABI_VERSION,
  RESERVED_BYTES, PAGE_BYTES, PAGE_SHIFT, WASM_PAGE_BYTES, PVCLOCK, LogLevel, PREBUILT_GUESTS,
} from '@ftvm/guest-abi';
import { GUEST_NAMES, guestWasmPath, loadGuestWasm, isGuestName } from '../src/index.js';
import { GuestHarness } from './harness.js';
import { readWasm } from './wasm-reader.js';

describe.each(GUEST_NAMES.map((n) => [n]))('guest %s satisfies ABI v1', (name) => {
  const bytes = loadGuestWasm(name);
  const info = readWasm(bytes);

  it('imports only functions of module "ftvm", each with its ABI signature', () => {
    expect(info.imports.length).toBeGreaterThan(0);
    for (const imp of info.imports) {
      expect(imp.module, imp.name).toBe(IMPORT_MODULE);
      expect(imp.kind, imp.name).toBe(0);
      expect(imp.sig, imp.name).toEqual(IMPORT_SIGNATURES[imp.name]);
    }
  });

  it('exports every required function with its signature, and the memory', () => {
    for (const [fn, sig] of Object.entries(EXPORT_SIGNATURES)) {
      const e = info.exports.find((x) => x.name === fn);
      expect(e, fn).toBeDefined();
      expect(e!.sig, fn).toEqual(sig);
    }
    expect(info.exports.find((x) => x.name === REQUIRED_EXPORTS.memory)?.kind).toBe(2);
  });

  it('exports ftvm_abi_version as an immutable i32 global equal to 1', () => {
    const e = info.exports.find((x) => x.name === EXPORT_ABI_VERSION);
    expect(e?.kind).toBe(3);
    expect(e?.mutable).toBe(false);
    const h = GuestHarness.load(name);
    const g = h.exports[EXPORT_ABI_VERSION] as WebAssembly.Global;
    expect(g.value).toBe(ABI_VERSION);
    expect(g.value).toBe(1);
  });

  it('places no data in the reserved first MiB', () => {
    expect(info.dataOffsets.length).toBeGreaterThan(0);
    for (const off of info.dataOffsets) expect(off).toBeGreaterThanOrEqual(RESERVED_BYTES);
  });

  it('boots: ftvm_init registers the clock and leaves the reserved region untouched', () => {
    const h = GuestHarness.load(name);
    const reservedBefore = h.mem().slice(0, RESERVED_BYTES);
    expect(reservedBefore.every((b) => b === 0)).toBe(true);
    h.init();
    h.open(1);
    h.data(1, 'PING\r\n');
    h.closeConn(1);
    expect(h.pvclockPtr).toBeGreaterThanOrEqual(RESERVED_BYTES);
    expect(h.mem().subarray(0, RESERVED_BYTES).every((b) => b === 0)).toBe(true);
  });
});

describe('guest package', () => {
  it('resolves and loads every shipped guest', () => {
    for (const n of GUEST_NAMES) {
      expect(guestWasmPath(n)).toMatch(new RegExp(`/${PREBUILT_GUESTS.includes(n) ? 'prebuilt' : 'build'}/${n}\\.wasm$`));
      expect(WebAssembly.validate(loadGuestWasm(n))).toBe(true);
    }
    expect(isGuestName('kv')).toBe(true);
    expect(isGuestName('redis')).toBe(false);
  });

  it('refuses an unknown guest name with a coded error', () => {
    expect(() => loadGuestWasm('nope')).toThrow(expect.objectContaining({ code: 'FTVM_ERR_GUEST_UNKNOWN' }));
  });
});

describe('guest-sdk abi.ts', () => {
  const src = readFileSync(fileURLToPath(new URL('../../guest-sdk/assembly/abi.ts', import.meta.url)), 'utf8');
  const consts = new Map<string, number>();
  for (const m of src.matchAll(/export const (\w+): \w+ = ([^;]+);/g)) {
    const expr = m[2]!.replace(/<\w+>/g, '');
    expect(expr, m[1]).toMatch(/^[\d\s<>()|]+$/);
    consts.set(m[1]!, Function(`return (${expr})`)() as number);
  }

  it('mirrors the ABI constants of @ftvm/guest-abi', () => {
    expect(consts.get('ABI_VERSION')).toBe(ABI_VERSION);
    expect(consts.get('WASM_PAGE_BYTES')).toBe(WASM_PAGE_BYTES);
    expect(consts.get('PAGE_BYTES')).toBe(PAGE_BYTES);
    expect(consts.get('PAGE_SHIFT')).toBe(PAGE_SHIFT);
    expect(consts.get('RESERVED_BYTES')).toBe(RESERVED_BYTES);
    expect(consts.get('LOG_ERROR')).toBe(LogLevel.error);
    expect(consts.get('LOG_DEBUG')).toBe(LogLevel.debug);
    expect(consts.get('PVCLOCK_SIZE')).toBe(PVCLOCK.size);
    expect(consts.get('PVCLOCK_VERSION')).toBe(PVCLOCK.version);
    expect(consts.get('PVCLOCK_TSC_TIMESTAMP')).toBe(PVCLOCK.tscTimestamp);
    expect(consts.get('PVCLOCK_SYSTEM_TIME')).toBe(PVCLOCK.systemTime);
    expect(consts.get('PVCLOCK_TSC_TO_SYSTEM_MUL')).toBe(PVCLOCK.tscToSystemMul);
    expect(consts.get('PVCLOCK_TSC_SHIFT')).toBe(PVCLOCK.tscShift);
    expect(consts.get('PVCLOCK_FLAGS')).toBe(PVCLOCK.flags);
    expect(consts.get('PVCLOCK_FLAG_TSC_STABLE')).toBe(PVCLOCK.FLAG_TSC_STABLE);
    expect(consts.get('PVCLOCK_FLAG_GUEST_STOPPED')).toBe(PVCLOCK.FLAG_GUEST_STOPPED);
  });

  it('declares every host import of IMPORT_SIGNATURES with the same wasm types', () => {
    const wasmType: Record<string, string> = { i32: 'i32', usize: 'i32', i64: 'i64' };
    for (const [imp, sig] of Object.entries(IMPORT_SIGNATURES)) {
      const re = new RegExp(`@external\\("ftvm", "${imp}"\\) export declare function \\w+\\(([^)]*)\\): (\\w+);`);
      const m = re.exec(src);
      expect(m, imp).not.toBeNull();
      const params = m![1]!.trim() === '' ? [] : m![1]!.split(',').map((p) => wasmType[p.split(':')[1]!.trim()]);
      const results = m![2] === 'void' ? [] : [wasmType[m![2]!]];
      expect({ params, results }, imp).toEqual(sig);
    }
  });
});
