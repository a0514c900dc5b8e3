import { describe, expect, test } from 'vitest';
import binaryen from 'binaryen';
import { ABI_VERSION, GLOBAL_EXPORT_PREFIX, PAGE_BYTES, RESERVED_BYTES } from '@ftvm/guest-abi';
import { BytemapDirtyLog, checkAbi, FUEL_GLOBAL, FUEL_IMPORT, instrument, INSTRUMENTED_SECTION, type InstrumentResult } from '../src/index.js';
import { checkSetters } from '../src/rewrite.js';
import { ABI_BOILERPLATE, FUEL_HOST, guest, wat } from './fixtures.js';

const MEMORY = '(memory (export "memory") 20)';
const FNS = `
  (func (export "ftvm_init"))
  (func (export "ftvm_alloc") (param i32) (result i32) (i32.const 0))
  (func (export "ftvm_on_open") (param i32))
  (func (export "ftvm_on_data") (param i32 i32 i32))
  (func (export "ftvm_on_close") (param i32))
  (func (export "ftvm_on_timer"))`;
const VERSION = `(global (export "ftvm_abi_version") i32 (i32.const ${ABI_VERSION}))`;

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

function messageOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as Error).message;
  }
  return '';
}

describe('checkAbi', () => {
  test('accepts a complete guest and reports its version, exports and imports', () => {
    const r = checkAbi(guest('', MEMORY, '(import "ftvm" "send" (func (param i32 i32 i32)))'));
    expect(r.version).toBe(ABI_VERSION);
    expect(r.imports).toEqual([{ module: 'ftvm', name: 'send', kind: 'func', signature: { params: ['i32', 'i32', 'i32'], results: [] } }]);
    expect(r.exports.find((e) => e.name === 'ftvm_on_data')?.signature).toEqual({ params: ['i32', 'i32', 'i32'], results: [] });
    expect(r.memory).toMatchObject({ initial: 20, imported: false });
  });

  test('rejects bytes that are not wasm with FTVM_ERR_WASM_INVALID', () => {
    expect(codeOf(() => checkAbi(new TextEncoder().encode('hello world')))).toBe('FTVM_ERR_WASM_INVALID');
    const truncated = guest('', MEMORY).subarray(0, 40);
    expect(codeOf(() => checkAbi(truncated))).toBe('FTVM_ERR_WASM_INVALID');
  });

  test('names a missing version export', () => {
    const w = wat(`(module ${MEMORY} ${FNS})`);
    expect(codeOf(() => checkAbi(w))).toBe('FTVM_ERR_ABI_VERSION_MISSING');
    expect(messageOf(() => checkAbi(w))).toContain('ftvm_abi_version');
  });

  test('rejects a mutable version global as missing', () => {
    const w = wat(`(module ${MEMORY} ${FNS} (global (export "ftvm_abi_version") (mut i32) (i32.const 1)))`);
    expect(codeOf(() => checkAbi(w))).toBe('FTVM_ERR_ABI_VERSION_MISSING');
  });

  test('names found and expected versions on a mismatch', () => {
    const w = wat(`(module ${MEMORY} ${FNS} (global (export "ftvm_abi_version") i32 (i32.const 7)))`);
    expect(codeOf(() => checkAbi(w))).toBe('FTVM_ERR_ABI_VERSION_MISMATCH');
    expect(messageOf(() => checkAbi(w))).toMatch(/found 7, expected 1/);
  });

  test('names a missing required export', () => {
    const w = wat(`(module ${MEMORY} ${VERSION} ${FNS.replace('(func (export "ftvm_on_timer"))', '')})`);
    expect(codeOf(() => checkAbi(w))).toBe('FTVM_ERR_ABI_MISSING_EXPORT');
    expect(messageOf(() => checkAbi(w))).toContain('ftvm_on_timer');
    const noMem = wat(`(module (memory 20) ${VERSION} ${FNS})`);
    expect(messageOf(() => checkAbi(noMem))).toContain('"memory"');
  });

  test('names an export with the wrong signature', () => {
    const w = wat(`(module ${MEMORY} ${VERSION} ${FNS.replace('(func (export "ftvm_alloc") (param i32) (result i32) (i32.const 0))', '(func (export "ftvm_alloc") (param i64) (result i32) (i32.const 0))')})`);
    expect(codeOf(() => checkAbi(w))).toBe('FTVM_ERR_ABI_BAD_SIGNATURE');
    expect(messageOf(() => checkAbi(w))).toContain('ftvm_alloc');
  });

  test('rejects imports from other modules, unknown names and wrong signatures', () => {
    const other = guest('', MEMORY, '(import "env" "abort" (func (param i32 i32 i32 i32)))');
    expect(codeOf(() => checkAbi(other))).toBe('FTVM_ERR_ABI_UNKNOWN_IMPORT');
    expect(messageOf(() => checkAbi(other))).toContain('env.abort');
    const unknown = guest('', MEMORY, '(import "ftvm" "exec" (func))');
    expect(codeOf(() => checkAbi(unknown))).toBe('FTVM_ERR_ABI_UNKNOWN_IMPORT');
    const badSig = guest('', MEMORY, '(import "ftvm" "rdtsc" (func (result i32)))');
    expect(codeOf(() => checkAbi(badSig))).toBe('FTVM_ERR_ABI_UNKNOWN_IMPORT');
    expect(messageOf(() => checkAbi(badSig))).toContain('ftvm.rdtsc');
  });

  test('instrument runs the ABI check unless told not to', () => {
    const w = wat(`(module ${MEMORY} ${FNS})`);
    expect(codeOf(() => instrument(w))).toBe('FTVM_ERR_ABI_VERSION_MISSING');
    expect(instrument(w, { checkAbi: false }).mode).toBe('bytemap');
  });
});

describe('instrument', () => {
  test('finds a binaryen C setter for every child of every expression kind it walks', () => {
    expect(checkSetters()).toEqual([]);
  });

  test('rejects bad options by name', () => {
    expect(messageOf(() => instrument(guest(''), { precise: 'yes' as unknown as boolean }))).toContain('precise');
    expect(codeOf(() => instrument(guest(''), { optimize: 1 as unknown as boolean }))).toBe('FTVM_ERR_INSTRUMENT_OPTION');
  });

  test('exports every mutable global as ftvm_g<index> and lists already exported ones under their name', async () => {
    const w = guest(`
      (global $a (mut i32) (i32.const 5))
      (global $k i64 (i64.const 1))
      (global $b (export "counter") (mut i64) (i64.const 9))
      (global $c (mut f64) (f64.const 1.5))
      (func (export "bump") (global.set $a (i32.add (global.get $a) (i32.const 1))))`);
    const r = instrument(w);
    // global 0 is ftvm_abi_version (immutable), then $a=1, $k=2, $b=3, $c=4
    expect(r.stats.globalExports).toEqual([
      { name: `${GLOBAL_EXPORT_PREFIX}1`, index: 1, type: 'i32', added: true },
      { name: 'counter', index: 3, type: 'i64', added: false },
      { name: `${GLOBAL_EXPORT_PREFIX}4`, index: 4, type: 'f64', added: true },
    ]);
    expect(r.stats.mutableGlobals).toBe(3);
    const { instance } = await WebAssembly.instantiate(r.wasm, FUEL_HOST);
    const ex = instance.exports as Record<string, WebAssembly.Global & (() => void)>;
    (ex.bump as () => void)();
    expect(ex.ftvm_g1!.value).toBe(6);
    ex.ftvm_g1!.value = 40; // the VMM restores globals through the same export
    (ex.bump as () => void)();
    expect(ex.ftvm_g1!.value).toBe(41);
    expect(ex.ftvm_g4!.value).toBe(1.5);
  });

  test('falls back to shadow, with a warning, when the memory is imported', () => {
    const w = wat(`(module (import "env" "memory" (memory 20)) (export "memory" (memory 0)) ${VERSION} ${FNS}
      (global $g (mut i32) (i32.const 0)))`);
    const r = instrument(w);
    expect(r.mode).toBe('shadow');
    expect(r.warnings.join()).toMatch(/memory is imported/);
    expect(r.stats.globalExports.map((g) => g.name)).toEqual(['ftvm_g1']);
    expect(r.stats.stores).toBe(0);
  });

  test('falls back to shadow when an active data segment lies in the reserved region', () => {
    const w = guest(`(data (i32.const 1024) "hello") (func (export "st") (param i32) (i32.store (local.get 0) (i32.const 1)))`);
    const r = instrument(w);
    expect(r.mode).toBe('shadow');
    expect(r.warnings.join()).toMatch(/data segment 0 starts at byte 1024, inside the reserved bytemap region/);
    // Untouched apart from nothing-to-export: the input bytes come back.
    expect(Buffer.compare(Buffer.from(r.wasm), Buffer.from(w))).toBe(0);
  });

  test('accepts data at or above the reserved region', () => {
    const w = guest(`(data (i32.const ${RESERVED_BYTES}) "hello") (data "passive")`);
    expect(instrument(w).mode).toBe('bytemap');
  });

  test('counts each kind of rewritten access', () => {
    const w = guest(`(data $d "xyz")
      (func (export "f") (param $p i32)
        (i32.store (local.get $p) (i32.const 1))
        (i64.store8 offset=3 (local.get $p) (i64.const 1))
        (v128.store (local.get $p) (v128.const i64x2 1 2))
        (i32.atomic.store (local.get $p) (i32.const 1))
        (drop (i32.atomic.rmw.add (local.get $p) (i32.const 1)))
        (drop (i64.atomic.rmw.cmpxchg (local.get $p) (i64.const 1) (i64.const 2)))
        (v128.store16_lane 3 (local.get $p) (v128.const i64x2 1 2))
        (memory.fill (local.get $p) (i32.const 0) (i32.const 10))
        (memory.copy (local.get $p) (i32.const 0) (i32.const 10))
        (memory.init $d (local.get $p) (i32.const 0) (i32.const 3)))`);
    const s = instrument(w).stats;
    expect(s).toMatchObject({ stores: 4, atomicRmw: 1, atomicCmpxchg: 1, simdLaneStores: 1, bulkOps: 3 });
    expect(s.functions).toBe(7);
    expect(s.outputBytes).toBeGreaterThan(s.inputBytes);
  });

  test('lets only a run\'s first store have a value that may trap or call, and never one that changes the base', () => {
    const groups = (body: string) => instrument(guest(`(global $sp (mut i32) (i32.const 0)) (func $g (result i32) (i32.const 1)) (func (export "f") (param i32) ${body})`)).stats.storeGroups;
    const second = '(i32.store offset=4 (local.get 0) (i32.const 2))';
    expect(groups(`(i32.store (local.get 0) (i32.add (local.get 0) (i32.const 1))) ${second}`)).toBe(1);
    expect(groups(`(i32.store (local.get 0) (i32.div_s (i32.const 1) (local.get 0))) ${second}`)).toBe(1);
    expect(groups(`(i32.store (local.get 0) (call $g)) ${second}`)).toBe(1);
    expect(groups(`${second} (i32.store (local.get 0) (i32.div_s (i32.const 1) (local.get 0)))`)).toBe(0);
    expect(groups(`${second} (i32.store (local.get 0) (call $g))`)).toBe(0);
    expect(groups(`(i32.store (local.get 0) (local.tee 0 (i32.const 8))) ${second}`)).toBe(0);
    expect(groups('(i32.store (local.get 0) (i32.const 1)) (i32.store (i32.const 64) (i32.const 1))')).toBe(0);
    // A call may move a global base (the shadow-stack pointer), so it cannot open a global-based run.
    const gsecond = '(i32.store offset=4 (global.get $sp) (i32.const 2))';
    expect(groups(`(i32.store (global.get $sp) (i32.const 1)) ${gsecond}`)).toBe(1);
    expect(groups(`(i32.store (global.get $sp) (call $g)) ${gsecond}`)).toBe(0);
    expect(instrument(guest(`(func (export "f") (param i32) (i32.store (local.get 0) (i32.const 1)) ${second})`), { coalesce: false }).stats.storeGroups).toBe(0);
  });

  test('precise: false marks only the page of ea of a page-crossing store', async () => {
    const w = guest('(func (export "st") (param i32) (i64.store (local.get 0) (i64.const -1)))');
    const pagesAfter = async (r: InstrumentResult) => {
      const { instance } = await WebAssembly.instantiate(r.wasm, FUEL_HOST);
      const ex = instance.exports as { st: (p: number) => void; memory: WebAssembly.Memory };
      ex.st(RESERVED_BYTES + 4092);
      return [...new BytemapDirtyLog().collect(new Uint8Array(ex.memory.buffer)).pages];
    };
    expect(await pagesAfter(instrument(w))).toEqual([256, 257]);
    expect(await pagesAfter(instrument(w, { precise: false }))).toEqual([256]);
  });

  test('optimize: true gives a module that marks the same pages', async () => {
    const w = guest('(func (export "st") (param i32) (param i32) (i32.store offset=4094 (local.get 0) (local.get 1)) (memory.fill (local.get 1) (i32.const 1) (i32.const 5000)))');
    const r = instrument(w, { optimize: true });
    const { instance } = await WebAssembly.instantiate(r.wasm, FUEL_HOST);
    const ex = instance.exports as { st: (p: number, q: number) => void; memory: WebAssembly.Memory };
    ex.st(RESERVED_BYTES, RESERVED_BYTES + 10 * PAGE_BYTES + 4000);
    expect([...new BytemapDirtyLog().collect(new Uint8Array(ex.memory.buffer)).pages]).toEqual([256, 257, 266, 267, 268]);
  });

  test('keeps the function names of a module that has a name section', () => {
    const text = '(func $my_named_function (export "f") (param i32) (i32.store (local.get 0) (i32.const 1)))';
    binaryen.setDebugInfo(true);
    let named: Uint8Array;
    try {
      named = guest(text);
    } finally {
      binaryen.setDebugInfo(false);
    }
    const has = (w: Uint8Array) => Buffer.from(w).includes(Buffer.from('my_named_function'));
    expect(has(named)).toBe(true);
    expect(has(instrument(named).wasm)).toBe(true);
    expect(has(instrument(guest(text)).wasm)).toBe(false); // no name section in, none out
  });

  test('falls back to shadow instead of crashing on code nested too deeply to walk', () => {
    // Flat in the binary (a stack machine), 100,000 levels deep as an expression tree.
    const leb = (n: number) => {
      const o: number[] = [];
      do {
        let byte = n & 127;
        n >>>= 7;
        if (n) byte |= 128;
        o.push(byte);
      } while (n);
      return o;
    };
    const sec = (id: number, bytes: number[]) => [id, ...leb(bytes.length), ...bytes];
    const code = [0x00, 0x20, 0x00];
    for (let i = 0; i < 100_000; i++) code.push(0x41, 0x01, 0x6a);
    code.push(0x0b);
    const wasm = Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
      ...sec(1, [1, 0x60, 1, 0x7f, 1, 0x7f]), ...sec(3, [1, 0]), ...sec(5, [1, 0, 20]),
      ...sec(7, [1, 6, ...Buffer.from('memory'), 2, 0]), ...sec(10, [1, ...leb(code.length), ...code])]);
    const r = instrument(wasm, { checkAbi: false });
    expect(r.mode).toBe('shadow');
    expect(r.warnings.join()).toMatch(/nest too deeply/);
  });

  test('refuses an instrumented module, or one that forges the claim', () => {
    const plain = guest('(func (export "st") (param i32) (i32.store (local.get 0) (i32.const 1)))');
    const name = Buffer.from(INSTRUMENTED_SECTION);
    const forged = Buffer.concat([Buffer.from(plain), Buffer.from([0, name.length + 2, name.length]), name, Buffer.from([1])]);
    expect(codeOf(() => instrument(instrument(plain).wasm))).toBe('FTVM_ERR_INSTRUMENT_ALREADY');
    expect(codeOf(() => instrument(forged))).toBe('FTVM_ERR_INSTRUMENT_ALREADY');
    expect(messageOf(() => instrument(forged))).toContain('original guest module');
  });

  test('refuses a module whose export name the instrumenter needs for a mutable global is taken', () => {
    // Mutable global 1 (0 is ftvm_abi_version) would be exported as ftvm_g1; a function already has that name.
    const clash = guest('(global $g (mut i32) (i32.const 0)) (func (export "ftvm_g1") (global.set $g (i32.const 1)))');
    expect(codeOf(() => instrument(clash))).toBe('FTVM_ERR_INSTRUMENT_EXPORT_CLASH');
    expect(messageOf(() => instrument(clash))).toContain('export "ftvm_g1" already names something other than mutable global 1');
  });

  test('a store whose operands never complete is left as is and the module still validates', async () => {
    const w = guest(`(func (export "f") (param i32) (result i32)
      (block $out (result i32)
        (i32.store (local.get 0) (br $out (i32.const 7)))
        (i32.const 0)))`);
    const r = instrument(w);
    expect(r.mode).toBe('bytemap');
    const { instance } = await WebAssembly.instantiate(r.wasm, FUEL_HOST);
    expect((instance.exports.f as (p: number) => number)(RESERVED_BYTES)).toBe(7);
  });

  test('burns fuel at every loop iteration and function entry, and a refill that throws stops the guest', async () => {
    const w = guest(`
      (func $spin (export "spin") (loop $l (br $l)))
      (func $count (export "count") (param i32) (result i32)
        (local $i i32)
        (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (local.get 0))))
        (local.get $i))
      (func $down (export "down") (param i32) (result i32)
        (if (result i32) (local.get 0) (then (call $down (i32.sub (local.get 0) (i32.const 1)))) (else (i32.const 0))))`);
    const r = instrument(w);
    expect(r.mode).toBe('bytemap');
    expect(r.stats.tries).toBe(0);
    // The counter is the vCPU's: not among the globals a checkpoint carries.
    expect(r.stats.globalExports.map((g) => g.name)).not.toContain(FUEL_GLOBAL);
    let refills = 0;
    let allowance = 100;
    const host = { [FUEL_IMPORT.module]: { [FUEL_IMPORT.name]: (): number => {
      refills++;
      if (refills > 50) throw new Error('out of fuel');
      return allowance;
    } } };
    const { instance } = await WebAssembly.instantiate(r.wasm, host);
    const ex = instance.exports as Record<string, (n?: number) => number> & Record<string, WebAssembly.Global>;
    // 1,000 iterations and one entry at 100 units a refill: 10 refills (the first call starts empty).
    expect(ex.count!(1000)).toBe(1000);
    expect(refills).toBeGreaterThanOrEqual(10);
    expect(refills).toBeLessThanOrEqual(12);
    refills = 0;
    // Recursion without a loop burns fuel at each entry.
    expect(ex.down!(2000)).toBe(0);
    expect(refills).toBeGreaterThanOrEqual(20);
    // A loop that never ends ends when the refill throws.
    refills = 0;
    allowance = 1000;
    expect(() => ex.spin!()).toThrow('out of fuel');
    expect(refills).toBe(51);
  });

  test('counts try blocks (a guest that could catch the fuel\'s throw)', () => {
    const w = guest(`
      (tag $t)
      (func (export "f") (try (do (throw $t)) (catch_all)))`);
    const r = instrument(w);
    expect(r.mode).toBe('bytemap');
    expect(r.stats.tries).toBe(1);
  });
});
