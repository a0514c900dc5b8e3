/**
 * A minimal reader of the wasm binary sections the ABI check and the global-export
 * patcher need (types, imports, functions, memories, globals, exports, data).
 * It never executes binaryen, so a hostile or broken module gives a coded error
 * instead of an abort that dumps megabytes to stderr.
 */
import { AbiError } from './errors.js';

export type ValType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128' | 'funcref' | 'externref' | 'ref';

export interface FuncType {
  params: ValType[];
  results: ValType[];
}

export type ExternKind = 'func' | 'table' | 'memory' | 'global' | 'tag';

export interface MemoryDesc {
  /** Initial size in 64 KiB wasm pages. */
  initial: number;
  /** Maximum size in 64 KiB wasm pages, when declared. */
  maximum?: number;
  shared: boolean;
  is64: boolean;
}

export interface GlobalDesc {
  type: ValType;
  mutable: boolean;
  imported: boolean;
  /** Value of an `i32.const N` initializer; undefined for any other initializer. */
  i32Init?: number;
}

export interface ImportDesc {
  module: string;
  name: string;
  kind: ExternKind;
  /** Function imports only. */
  type?: FuncType;
  memory?: MemoryDesc;
}

export interface ExportDesc {
  name: string;
  kind: ExternKind;
  index: number;
}

export interface DataSegmentDesc {
  passive: boolean;
  /** Constant start offset (bytes) of an active segment; undefined when not a plain i32.const. */
  offset?: number;
  length: number;
}

export interface SectionSpan {
  id: number;
  /** Byte offset of the section id byte. */
  start: number;
  /** Byte offset just past the section. */
  end: number;
  contentStart: number;
}

export interface WasmSummary {
  types: (FuncType | undefined)[];
  imports: ImportDesc[];
  /** Function index space (imports first): type of each function, undefined when not a plain func type. */
  functionTypes: (FuncType | undefined)[];
  memories: (MemoryDesc & { imported: boolean })[];
  /** Global index space (imports first). */
  globals: GlobalDesc[];
  exports: ExportDesc[];
  data: DataSegmentDesc[];
  sections: SectionSpan[];
  customSections: string[];
}

const KINDS: ExternKind[] = ['func', 'table', 'memory', 'global', 'tag'];

function invalid(detail: string): AbiError {
  return new AbiError('FTVM_ERR_WASM_INVALID', `not a valid wasm module: ${detail}`);
}

class Cursor {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    pos: number,
    readonly end: number,
  ) {
    this.pos = pos;
  }
  byte(): number {
    if (this.pos >= this.end) throw invalid(`unexpected end of data at byte ${this.pos}`);
    return this.buf[this.pos++]!;
  }
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.byte();
      if (shift === 28 && b > 0x0f) throw invalid(`u32 LEB too large at byte ${this.pos - 1}`);
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
  }
  /** Signed LEB up to `bits` bits; returns a number (exact for i32, approximate beyond 2^53 for i64). */
  sleb(bits: number): number {
    let result = 0;
    let shift = 0;
    let b: number;
    do {
      b = this.byte();
      if (shift >= bits + 7) throw invalid(`signed LEB too long at byte ${this.pos - 1}`);
      result += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    if (shift < bits + 7 && b & 0x40) result -= 2 ** shift;
    return result;
  }
  /** Unsigned LEB up to 64 bits (memory64 limits); exact below 2^53. */
  u64(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.byte();
      if (shift > 63) throw invalid(`u64 LEB too long at byte ${this.pos - 1}`);
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
  }
  skip(n: number): void {
    if (n < 0 || this.pos + n > this.end) throw invalid(`section overruns its size at byte ${this.pos}`);
    this.pos += n;
  }
  name(): string {
    const len = this.u32();
    const start = this.pos;
    this.skip(len);
    return new TextDecoder('utf-8', { fatal: false }).decode(this.buf.subarray(start, start + len));
  }
}

function valType(c: Cursor): ValType {
  const b = c.byte();
  switch (b) {
    case 0x7f: return 'i32';
    case 0x7e: return 'i64';
    case 0x7d: return 'f32';
    case 0x7c: return 'f64';
    case 0x7b: return 'v128';
    case 0x70: return 'funcref';
    case 0x6f: return 'externref';
    case 0x63:
    case 0x64:
      c.sleb(33); // heap type
      return 'ref';
    default:
      if (b >= 0x69 && b <= 0x74) return 'ref'; // abbreviated GC ref types
      throw invalid(`unknown value type 0x${b.toString(16)} at byte ${c.pos - 1}`);
  }
}

function limits(c: Cursor): MemoryDesc {
  const flags = c.byte();
  const is64 = (flags & 4) !== 0;
  const initial = is64 ? c.u64() : c.u32();
  const maximum = flags & 1 ? (is64 ? c.u64() : c.u32()) : undefined;
  if (flags & 8) c.u32(); // custom page size log2
  return { initial, ...(maximum !== undefined ? { maximum } : {}), shared: (flags & 2) !== 0, is64 };
}

/** Skips a constant expression; returns N when it is exactly `i32.const N; end`. */
function constExpr(c: Cursor): number | undefined {
  let value: number | undefined;
  let count = 0;
  for (;;) {
    const op = c.byte();
    count++;
    switch (op) {
      case 0x0b:
        return count === 2 ? value : undefined;
      case 0x41: value = c.sleb(32); break;
      case 0x42: c.sleb(64); value = undefined; break;
      case 0x43: c.skip(4); value = undefined; break;
      case 0x44: c.skip(8); value = undefined; break;
      case 0x23: case 0xd2: c.u32(); value = undefined; break;
      case 0xd0: c.sleb(33); value = undefined; break;
      case 0x6a: case 0x6b: case 0x6c: case 0x7c: case 0x7d: case 0x7e: value = undefined; break;
      case 0xfd: {
        const sub = c.u32();
        if (sub !== 12) throw invalid(`unsupported SIMD opcode ${sub} in constant expression`);
        c.skip(16);
        value = undefined;
        break;
      }
      case 0xfb: {
        // GC constant instructions (struct.new, array.new_fixed, ref.i31, ...): skip their immediates.
        const sub = c.u32();
        if (sub === 0 || sub === 1 || sub === 6 || sub === 7) c.u32();
        else if (sub === 8) { c.u32(); c.u32(); }
        else if (sub !== 28 && sub !== 26 && sub !== 27) throw invalid(`unsupported GC opcode ${sub} in constant expression`);
        value = undefined;
        break;
      }
      default:
        throw invalid(`unsupported opcode 0x${op.toString(16)} in constant expression at byte ${c.pos - 1}`);
    }
  }
}

/** Section order rank (custom sections excluded), as the spec requires them. */
export const SECTION_ORDER = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11];

export function readWasm(wasm: Uint8Array): WasmSummary {
  if (!(wasm instanceof Uint8Array)) throw invalid('input is not a Uint8Array');
  if (wasm.length < 8 || wasm[0] !== 0 || wasm[1] !== 0x61 || wasm[2] !== 0x73 || wasm[3] !== 0x6d) {
    throw invalid('missing the \\0asm magic number');
  }
  if (wasm[4] !== 1 || wasm[5] !== 0 || wasm[6] !== 0 || wasm[7] !== 0) {
    throw invalid(`unsupported binary version ${wasm[4]}.${wasm[5]}.${wasm[6]}.${wasm[7]} (expected 1)`);
  }
  const s: WasmSummary = {
    types: [], imports: [], functionTypes: [], memories: [], globals: [], exports: [], data: [], sections: [], customSections: [],
  };
  const top = new Cursor(wasm, 8, wasm.length);
  while (top.pos < wasm.length) {
    const start = top.pos;
    const id = top.byte();
    const size = top.u32();
    const contentStart = top.pos;
    top.skip(size);
    const end = top.pos;
    s.sections.push({ id, start, end, contentStart });
    const c = new Cursor(wasm, contentStart, end);
    switch (id) {
      case 0: s.customSections.push(c.name()); break;
      case 1: readTypes(c, s); break;
      case 2: readImports(c, s); break;
      case 3: {
        const n = c.u32();
        for (let i = 0; i < n; i++) s.functionTypes.push(s.types[c.u32()]);
        break;
      }
      case 5: {
        const n = c.u32();
        for (let i = 0; i < n; i++) s.memories.push({ ...limits(c), imported: false });
        break;
      }
      case 6: {
        const n = c.u32();
        for (let i = 0; i < n; i++) {
          const type = valType(c);
          const mutable = c.byte() === 1;
          const init = constExpr(c);
          s.globals.push({ type, mutable, imported: false, ...(type === 'i32' && init !== undefined ? { i32Init: init } : {}) });
        }
        break;
      }
      case 7: {
        const n = c.u32();
        for (let i = 0; i < n; i++) {
          const name = c.name();
          const k = c.byte();
          const kind = KINDS[k];
          if (!kind) throw invalid(`export "${name}" has unknown kind ${k}`);
          s.exports.push({ name, kind, index: c.u32() });
        }
        break;
      }
      case 11: readData(c, s); break;
      default: break; // table, start, element, code, data count, tag: not needed here
    }
    if (id !== 0 && id !== 4 && id !== 8 && id !== 9 && id !== 10 && id !== 12 && id !== 13 && c.pos !== end) {
      throw invalid(`section ${id} has ${end - c.pos} trailing bytes`);
    }
  }
  return s;
}

function readTypes(c: Cursor, s: WasmSummary): void {
  const n = c.u32();
  for (let i = 0; i < n; i++) {
    const form = c.byte();
    if (form === 0x60) {
      const params: ValType[] = [];
      const results: ValType[] = [];
      for (let k = c.u32(); k > 0; k--) params.push(valType(c));
      for (let k = c.u32(); k > 0; k--) results.push(valType(c));
      s.types.push({ params, results });
    } else {
      // rec groups / sub types (GC): the ABI needs none of them; stop reading types.
      throw invalid(`type form 0x${form.toString(16)} (GC types) is not supported by ftvm guests`);
    }
  }
}

function readImports(c: Cursor, s: WasmSummary): void {
  const n = c.u32();
  for (let i = 0; i < n; i++) {
    const module = c.name();
    const name = c.name();
    const k = c.byte();
    const kind = KINDS[k];
    if (!kind) throw invalid(`import "${module}.${name}" has unknown kind ${k}`);
    const imp: ImportDesc = { module, name, kind };
    switch (kind) {
      case 'func': {
        const t = s.types[c.u32()];
        if (t) imp.type = t;
        s.functionTypes.push(t);
        break;
      }
      case 'table': valType(c); limits(c); break;
      case 'memory': {
        const mem = limits(c);
        imp.memory = mem;
        s.memories.push({ ...mem, imported: true });
        break;
      }
      case 'global': {
        const type = valType(c);
        s.globals.push({ type, mutable: c.byte() === 1, imported: true });
        break;
      }
      case 'tag': c.byte(); c.u32(); break;
    }
    s.imports.push(imp);
  }
}

function readData(c: Cursor, s: WasmSummary): void {
  const n = c.u32();
  for (let i = 0; i < n; i++) {
    const flags = c.u32();
    if (flags === 1) {
      const length = c.u32();
      c.skip(length);
      s.data.push({ passive: true, length });
      continue;
    }
    if (flags === 2) c.u32(); // memory index
    else if (flags !== 0) throw invalid(`data segment ${i} has unknown flags ${flags}`);
    const offset = constExpr(c);
    const length = c.u32();
    c.skip(length);
    s.data.push({ passive: false, ...(offset !== undefined ? { offset: offset >>> 0 } : {}), length });
  }
}

export function sigToString(t: FuncType | undefined): string {
  if (!t) return '(unknown type)';
  return `(${t.params.join(', ')}) -> (${t.results.join(', ')})`;
}

// ---- writing ------------------------------------------------------------------------

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

function nameBytes(name: string): number[] {
  const bytes = new TextEncoder().encode(name);
  return [...uleb(bytes.length), ...bytes];
}

/**
 * Returns a copy of `wasm` whose export section also exports the given globals.
 * The rest of the module is byte-for-byte unchanged.
 */
export function addGlobalExports(wasm: Uint8Array, summary: WasmSummary, add: { name: string; index: number }[]): Uint8Array {
  if (add.length === 0) return wasm;
  const existing = summary.sections.find((sec) => sec.id === 7);
  const entries: number[] = [];
  for (const e of summary.exports) entries.push(...nameBytes(e.name), KINDS.indexOf(e.kind), ...uleb(e.index));
  for (const e of add) entries.push(...nameBytes(e.name), 3, ...uleb(e.index));
  const content = [...uleb(summary.exports.length + add.length), ...entries];
  const section = Uint8Array.from([7, ...uleb(content.length), ...content]);
  let cutStart: number;
  let cutEnd: number;
  if (existing) {
    cutStart = existing.start;
    cutEnd = existing.end;
  } else {
    const rank = SECTION_ORDER.indexOf(7);
    const after = summary.sections.find((sec) => sec.id !== 0 && SECTION_ORDER.indexOf(sec.id) > rank);
    cutStart = cutEnd = after ? after.start : wasm.length;
  }
  const out = new Uint8Array(wasm.length - (cutEnd - cutStart) + section.length);
  out.set(wasm.subarray(0, cutStart), 0);
  out.set(section, cutStart);
  out.set(wasm.subarray(cutEnd), cutStart + section.length);
  return out;
}
