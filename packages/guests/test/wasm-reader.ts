// A minimal reader of the wasm binary sections the ABI tests look at: types, imports,
// functions, globals, exports and active data segments. Test-only.

const VALTYPE: Record<number, string> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x7b: 'v128', 0x70: 'funcref', 0x6f: 'externref' };

export interface Sig {
  params: string[];
  results: string[];
}

export interface WasmInfo {
  imports: { module: string; name: string; kind: number; sig?: Sig }[];
  exports: { name: string; kind: number; index: number; sig?: Sig; mutable?: boolean }[];
  dataOffsets: number[];
  hasStart: boolean;
}

export function readWasm(bytes: Uint8Array): WasmInfo {
  let pos = 8;
  const u32 = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[pos++]!;
      result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result >>> 0;
      shift += 7;
    }
  };
  const i32 = (): number => {
    let result = 0;
    let shift = 0;
    let b: number;
    do {
      b = bytes[pos++]!;
      result |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    if (shift < 32 && b & 0x40) result |= ~0 << shift;
    return result;
  };
  const name = (): string => {
    const n = u32();
    const s = new TextDecoder().decode(bytes.subarray(pos, pos + n));
    pos += n;
    return s;
  };
  const types: Sig[] = [];
  const funcTypes: number[] = [];
  const globalMut: boolean[] = [];
  const info: WasmInfo = { imports: [], exports: [], dataOffsets: [], hasStart: false };
  const skipLimits = () => {
    const flags = u32();
    u32();
    if (flags & 1) u32();
  };
  const skipConstExpr = () => {
    for (;;) {
      const op = bytes[pos++]!;
      if (op === 0x0b) return;
      if (op === 0x41 || op === 0x42) i32();
      else if (op === 0x43) pos += 4;
      else if (op === 0x44) pos += 8;
      else if (op === 0x23 || op === 0xd2) u32();
      else if (op === 0xd0) pos++;
      else throw new Error(`unexpected opcode 0x${op.toString(16)} in a constant expression`);
    }
  };
  while (pos < bytes.length) {
    const id = bytes[pos++]!;
    const size = u32();
    const end = pos + size;
    if (id === 1) {
      for (let n = u32(); n > 0; n--) {
        if (bytes[pos++] !== 0x60) throw new Error('unexpected type form');
        const params = Array.from({ length: u32() }, () => VALTYPE[bytes[pos++]!]!);
        const results = Array.from({ length: u32() }, () => VALTYPE[bytes[pos++]!]!);
        types.push({ params, results });
      }
    } else if (id === 2) {
      for (let n = u32(); n > 0; n--) {
        const module = name();
        const field = name();
        const kind = bytes[pos++]!;
        if (kind === 0) {
          const t = u32();
          funcTypes.push(t);
          info.imports.push({ module, name: field, kind, sig: types[t] });
        } else {
          if (kind === 1) { pos++; skipLimits(); } else if (kind === 2) skipLimits(); else if (kind === 3) { pos++; globalMut.push(bytes[pos++] === 1); }
          info.imports.push({ module, name: field, kind });
        }
      }
    } else if (id === 3) {
      for (let n = u32(); n > 0; n--) funcTypes.push(u32());
    } else if (id === 6) {
      for (let n = u32(); n > 0; n--) {
        pos++; // value type
        globalMut.push(bytes[pos++] === 1);
        skipConstExpr();
      }
    } else if (id === 7) {
      for (let n = u32(); n > 0; n--) {
        const field = name();
        const kind = bytes[pos++]!;
        const index = u32();
        const e: WasmInfo['exports'][number] = { name: field, kind, index };
        if (kind === 0) e.sig = types[funcTypes[index]!];
        if (kind === 3) e.mutable = globalMut[index];
        info.exports.push(e);
      }
    } else if (id === 8) {
      info.hasStart = true;
    } else if (id === 11) {
      for (let n = u32(); n > 0; n--) {
        const flags = u32();
        if (flags === 1) {
          // (`pos += u32()` would add to the pos read before u32 advanced it)
          const len = u32();
          pos += len;
          continue;
        }
        if (flags === 2) u32();
        if (bytes[pos++] !== 0x41) throw new Error('data offset is not i32.const');
        info.dataOffsets.push(i32());
        if (bytes[pos++] !== 0x0b) throw new Error('data offset expression too long');
        const len = u32();
        pos += len;
      }
    }
    pos = end;
  }
  return info;
}
