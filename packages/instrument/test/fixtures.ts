/** WAT fixtures for the instrument tests: ABI boilerplate plus store-kind functions. */
import binaryen from 'binaryen';
import { FUEL_IMPORT } from '../src/fuel.js';

export const ABI_BOILERPLATE = `
  (global (export "ftvm_abi_version") i32 (i32.const 1))
  (func (export "ftvm_init"))
  (func (export "ftvm_alloc") (param i32) (result i32) (i32.const 1048576))
  (func (export "ftvm_on_open") (param i32))
  (func (export "ftvm_on_data") (param i32 i32 i32))
  (func (export "ftvm_on_close") (param i32))
  (func (export "ftvm_on_timer"))
`;

/** Compiles WAT text (binaryen's parser) to a wasm binary. */
export function wat(text: string): Uint8Array {
  let m: binaryen.Module;
  try {
    m = binaryen.parseText(text);
  } catch (e) {
    const line = Number(/^(\d+):/.exec(String((e as Error).message ?? e))?.[1] ?? 0);
    throw new Error(`${String((e as Error).message ?? e)} in: ${text.split('\n')[line - 1]?.slice(0, 300)}`);
  }
  try {
    m.setFeatures(binaryen.Features.All & ~binaryen.Features.GC & ~binaryen.Features.Strings & ~binaryen.Features.MultiMemory & ~binaryen.Features.Memory64);
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}

/** A guest module with the full ABI around `body` (memory given in 64 KiB pages). */
export function guest(body: string, memory = '(memory (export "memory") 40 64)', imports = ''): Uint8Array {
  return wat(`(module ${imports} ${memory} ${ABI_BOILERPLATE} ${body})`);
}

export type OpKind = 'store' | 'rmw' | 'cmpxchg' | 'lane' | 'fill' | 'copy' | 'init' | 'nested' | 'group' | 'constbulk';

export interface OpDef {
  name: string;
  kind: OpKind;
  /** Access width in bytes (store-like ops). */
  bytes: number;
  offset: number;
  atomic: boolean;
  /** Bytes written relative to the pointer argument, as [offset, bytes] (store-like ops). */
  writes: [number, number][];
}

const I64_OF_SEED = '(i64.mul (i64.extend_i32_u (local.get $s)) (i64.const -7046029254386353131))';
const valueOf: Record<string, string> = {
  i32: '(local.get $s)',
  i64: I64_OF_SEED,
  f32: '(f32.reinterpret_i32 (local.get $s))',
  f64: `(f64.reinterpret_i64 ${I64_OF_SEED})`,
  v128: '(i32x4.splat (local.get $s))',
};

interface StoreSpec { op: string; type: string; bytes: number; atomic: boolean; kind: OpKind }
const STORE_SPECS: StoreSpec[] = [
  { op: 'i32.store', type: 'i32', bytes: 4, atomic: false, kind: 'store' },
  { op: 'i32.store8', type: 'i32', bytes: 1, atomic: false, kind: 'store' },
  { op: 'i32.store16', type: 'i32', bytes: 2, atomic: false, kind: 'store' },
  { op: 'i64.store', type: 'i64', bytes: 8, atomic: false, kind: 'store' },
  { op: 'i64.store8', type: 'i64', bytes: 1, atomic: false, kind: 'store' },
  { op: 'i64.store16', type: 'i64', bytes: 2, atomic: false, kind: 'store' },
  { op: 'i64.store32', type: 'i64', bytes: 4, atomic: false, kind: 'store' },
  { op: 'f32.store', type: 'f32', bytes: 4, atomic: false, kind: 'store' },
  { op: 'f64.store', type: 'f64', bytes: 8, atomic: false, kind: 'store' },
  { op: 'v128.store', type: 'v128', bytes: 16, atomic: false, kind: 'store' },
  { op: 'i32.atomic.store', type: 'i32', bytes: 4, atomic: true, kind: 'store' },
  { op: 'i32.atomic.store8', type: 'i32', bytes: 1, atomic: true, kind: 'store' },
  { op: 'i32.atomic.store16', type: 'i32', bytes: 2, atomic: true, kind: 'store' },
  { op: 'i64.atomic.store', type: 'i64', bytes: 8, atomic: true, kind: 'store' },
  { op: 'i64.atomic.store32', type: 'i64', bytes: 4, atomic: true, kind: 'store' },
  { op: 'i32.atomic.rmw.add', type: 'i32', bytes: 4, atomic: true, kind: 'rmw' },
  { op: 'i32.atomic.rmw8.xchg_u', type: 'i32', bytes: 1, atomic: true, kind: 'rmw' },
  { op: 'i64.atomic.rmw.or', type: 'i64', bytes: 8, atomic: true, kind: 'rmw' },
  { op: 'i64.atomic.rmw16.sub_u', type: 'i64', bytes: 2, atomic: true, kind: 'rmw' },
  { op: 'i32.atomic.rmw.cmpxchg', type: 'i32', bytes: 4, atomic: true, kind: 'cmpxchg' },
  { op: 'i64.atomic.rmw32.cmpxchg_u', type: 'i64', bytes: 4, atomic: true, kind: 'cmpxchg' },
  { op: 'v128.store8_lane', type: 'v128', bytes: 1, atomic: false, kind: 'lane' },
  { op: 'v128.store16_lane', type: 'v128', bytes: 2, atomic: false, kind: 'lane' },
  { op: 'v128.store32_lane', type: 'v128', bytes: 4, atomic: false, kind: 'lane' },
  { op: 'v128.store64_lane', type: 'v128', bytes: 8, atomic: false, kind: 'lane' },
];

/** RMW results are returned as i32 (low bits), so JS gets a number for every op. */
function wrapI64(type: string, expr: string): string {
  return type === 'i64' ? `(i32.wrap_i64 ${expr})` : expr;
}

/** Builds the store-kinds module: every op is `(func (param $a $s $c i32) (result i32))`. */
export function storeKindsModule(): { wasm: Uint8Array; ops: OpDef[]; segmentBytes: number } {
  const ops: OpDef[] = [];
  const funcs: string[] = [];
  const head = (name: string) => `(func (export "${name}") (param $a i32) (param $s i32) (param $c i32) (result i32)`;
  for (const spec of STORE_SPECS) {
    // Atomics trap unless ea is aligned; 4088 keeps every width aligned and can reach the next page.
    for (const offset of spec.atomic ? [0, 4088] : [0, 4093]) {
      const name = `${spec.op}_o${offset}`;
      const val = valueOf[spec.type]!;
      let body: string;
      if (spec.kind === 'store') body = `(${spec.op} offset=${offset} (local.get $a) ${val}) (i32.const 0)`;
      else if (spec.kind === 'rmw') body = wrapI64(spec.type, `(${spec.op} offset=${offset} (local.get $a) ${val})`);
      else if (spec.kind === 'cmpxchg') {
        // expected = current value read by a load, so the exchange happens and bytes change.
        const load = spec.type === 'i64' ? `(i64.atomic.load32_u offset=${offset} (local.get $a))` : `(i32.atomic.load offset=${offset} (local.get $a))`;
        body = wrapI64(spec.type, `(${spec.op} offset=${offset} (local.get $a) ${load} ${val})`);
      } else body = `(${spec.op} offset=${offset} 1 (local.get $a) ${val}) (i32.const 0)`;
      funcs.push(`${head(name)} ${body})`);
      ops.push({ name, kind: spec.kind, bytes: spec.bytes, offset, atomic: spec.atomic, writes: [[offset, spec.bytes]] });
    }
  }
  // A store nested in the value operand of another one: both pages must be marked, and the
  // outer store must still use its own pointer (temp locals are per nesting depth).
  funcs.push(`${head('nested')} (i32.store offset=1 (local.get $a) (block (result i32)
      (i64.store offset=8190 (local.get $a) ${I64_OF_SEED}) (local.get $s))) (i32.const 0))`);
  ops.push({ name: 'nested', kind: 'nested', bytes: 4, offset: 1, atomic: false, writes: [[1, 4], [8190, 8]] });
  // Runs of adjacent stores through one pointer local: the rewriter coalesces their marks.
  const groups: { name: string; body: string; writes: [number, number][] }[] = [
    {
      name: 'group_struct',
      body: `(i32.store (local.get $a) (local.get $s))
        (i32.store offset=4 (local.get $a) (i32.add (i32.load offset=4 (local.get $a)) (i32.const 1)))
        (i64.store offset=8 (local.get $a) (i64.add (i64.load offset=8 (local.get $a)) ${I64_OF_SEED}))`,
      writes: [[0, 4], [4, 4], [8, 8]],
    },
    {
      name: 'group_span4096',
      body: `(i32.store offset=4092 (local.get $a) (local.get $s)) (i32.store16 (local.get $a) (local.get $s))
        (v128.store offset=100 (local.get $a) (i32x4.splat (local.tee $c (i32.mul (local.get $s) (i32.const 3)))))`,
      writes: [[4092, 4], [0, 2], [100, 16]],
    },
    {
      name: 'group_split',
      body: `(i64.store offset=4090 (local.get $a) ${I64_OF_SEED}) (i32.store (local.get $a) (local.get $s))
        (i32.store16 offset=2000 (local.get $a) (i32.load offset=6000 (local.get $a)))
        (f64.store offset=9000 (local.get $a) (f64.const 1.5)) (i32.store8 offset=9001 (local.get $a) (local.get $s))`,
      writes: [[4090, 8], [0, 4], [2000, 2], [9000, 8], [9001, 1]],
    },
  ];
  groups.push(
    {
      // Base is a global (like AssemblyScript's shadow-stack pointer).
      name: 'group_global',
      body: `(global.set $gp (local.get $a)) (i32.store (global.get $gp) (local.get $s))
        (i64.store offset=4 (global.get $gp) (i64.load offset=4 (global.get $gp))) (i32.store16 offset=4094 (global.get $gp) (local.get $s))`,
      writes: [[0, 4], [4, 8], [4094, 2]],
    },
    {
      // The first value calls and stores (allowed: it runs before the run's first store).
      name: 'group_complex_first',
      body: `(i32.store offset=6 (local.get $a) (block (result i32)
          (i32.store offset=9000 (local.get $a) (local.get $s)) (call $id (local.get $s))))
        (i64.store offset=10 (local.get $a) (i64.load offset=2 (local.get $a)))`,
      writes: [[6, 4], [9000, 4], [10, 8]],
    },
  );
  funcs.push('(global $gp (mut i32) (i32.const 0)) (func $id (param i32) (result i32) (local.get 0))');
  for (const len of [0, 1, 4096, 4097]) {
    funcs.push(`${head(`fill_c${len}`)} (memory.fill (local.get $a) (local.get $s) (i32.const ${len})) (i32.const 0))`);
    ops.push({ name: `fill_c${len}`, kind: 'constbulk', bytes: len, offset: 0, atomic: false, writes: len ? [[0, len]] : [] });
  }
  funcs.push(`${head('copy_c3000')} (memory.copy (local.get $a) (i32.const ${1 << 20}) (i32.const 3000)) (i32.const 0))`);
  ops.push({ name: 'copy_c3000', kind: 'constbulk', bytes: 3000, offset: 0, atomic: false, writes: [[0, 3000]] });
  for (const g of groups) {
    funcs.push(`${head(g.name)} ${g.body} (i32.const 0))`);
    ops.push({ name: g.name, kind: 'group', bytes: 0, offset: 0, atomic: false, writes: g.writes });
  }
  funcs.push(`${head('fill')} (memory.fill (local.get $a) (local.get $s) (local.get $c)) (i32.const 0))`);
  ops.push({ name: 'fill', kind: 'fill', bytes: 0, offset: 0, atomic: false, writes: [] });
  funcs.push(`${head('copy')} (memory.copy (local.get $a) (local.get $s) (local.get $c)) (i32.const 0))`);
  ops.push({ name: 'copy', kind: 'copy', bytes: 0, offset: 0, atomic: false, writes: [] });
  funcs.push(`${head('init')} (memory.init $seg (local.get $a) (local.get $s) (local.get $c)) (i32.const 0))`);
  ops.push({ name: 'init', kind: 'init', bytes: 0, offset: 0, atomic: false, writes: [] });
  // Reserved-region probes: a store at any address, and an attempt to clear a bytemap byte.
  funcs.push(`${head('poke8')} (i32.store8 (local.get $a) (local.get $s)) (i32.const 0))`);
  const segmentBytes = 20000;
  let seg = '';
  for (let i = 0; i < segmentBytes; i++) seg += `\\${((i * 131 + 7) & 0xff).toString(16).padStart(2, '0')}`;
  const wasm = guest(`(data $seg "${seg}") ${funcs.join('\n')}`);
  return { wasm, ops, segmentBytes };
}

/** The imports an instrumented module adds: its fuel counter's refill (FUEL_IMPORT), refilling at once. */
export const FUEL_HOST = { [FUEL_IMPORT.module]: { [FUEL_IMPORT.name]: (): number => 1 << 20 } };
