/**
 * Guest ABI check: the version global, the required exports with their signatures,
 * and the imports (module `ftvm` only, names and signatures from IMPORT_SIGNATURES).
 */
import {
  ABI_VERSION,
  EXPORT_ABI_VERSION,
  EXPORT_SIGNATURES,
  IMPORT_MODULE,
  IMPORT_SIGNATURES,
  REQUIRED_EXPORTS,
} from '@ftvm/guest-abi';
import { AbiError } from './errors.js';
import { readWasm, sigToString, type ExternKind, type FuncType, type MemoryDesc, type WasmSummary } from './wasm-reader.js';

export interface AbiExport {
  name: string;
  kind: ExternKind;
  index: number;
  /** Function exports: the signature. */
  signature?: FuncType;
}

export interface AbiImport {
  module: string;
  name: string;
  kind: ExternKind;
  signature?: FuncType;
}

export interface AbiReport {
  /** Value of the exported `ftvm_abi_version` global. */
  version: number;
  exports: AbiExport[];
  imports: AbiImport[];
  /** The guest's (single) linear memory; `imported` true when the module imports it. */
  memory: MemoryDesc & { imported: boolean };
}

function sameSig(a: FuncType | undefined, b: { params: string[]; results: string[] }): boolean {
  return !!a && a.params.join(',') === b.params.join(',') && a.results.join(',') === b.results.join(',');
}

/** tsconfig has no DOM lib; Node provides WebAssembly at runtime. */
const wasmApi = (globalThis as unknown as { WebAssembly: { validate(bytes: Uint8Array): boolean } }).WebAssembly;

/**
 * V8's own validator runs first: the reader below only walks the sections it needs and
 * would accept a module whose code section is garbage.
 */
export function validateWasm(wasm: Uint8Array): WasmSummary {
  const summary = readWasm(wasm);
  if (!wasmApi.validate(wasm)) {
    throw new AbiError('FTVM_ERR_WASM_INVALID', 'not a valid wasm module: WebAssembly.validate() rejected it');
  }
  return summary;
}

/** Checks the guest ABI; throws AbiError with a code naming the first violation. */
export function checkAbi(wasm: Uint8Array): AbiReport {
  return checkAbiSummary(validateWasm(wasm));
}

export function checkAbiSummary(s: WasmSummary): AbiReport {
  const exports: AbiExport[] = s.exports.map((e) => {
    const sig = e.kind === 'func' ? s.functionTypes[e.index] : undefined;
    return { ...e, ...(sig ? { signature: sig } : {}) };
  });
  const byName = new Map(exports.map((e) => [e.name, e]));

  const v = byName.get(EXPORT_ABI_VERSION);
  if (!v) {
    throw new AbiError('FTVM_ERR_ABI_VERSION_MISSING', `export "${EXPORT_ABI_VERSION}" is missing (expected an immutable i32 global = ${ABI_VERSION})`);
  }
  const g = v.kind === 'global' ? s.globals[v.index] : undefined;
  if (!g || g.type !== 'i32' || g.mutable || g.i32Init === undefined) {
    throw new AbiError(
      'FTVM_ERR_ABI_VERSION_MISSING',
      `export "${EXPORT_ABI_VERSION}" must be an immutable i32 global initialised with i32.const ${ABI_VERSION}; found ${v.kind}${g ? ` ${g.mutable ? 'mutable ' : ''}${g.type}` : ''}`,
    );
  }
  if (g.i32Init !== ABI_VERSION) {
    throw new AbiError('FTVM_ERR_ABI_VERSION_MISMATCH', `guest ABI version ${g.i32Init} is not supported: found ${g.i32Init}, expected ${ABI_VERSION}`);
  }

  for (const name of Object.values(REQUIRED_EXPORTS)) {
    const e = byName.get(name);
    if (!e) throw new AbiError('FTVM_ERR_ABI_MISSING_EXPORT', `required export "${name}" is missing`);
    if (name === REQUIRED_EXPORTS.memory) {
      if (e.kind !== 'memory') throw new AbiError('FTVM_ERR_ABI_BAD_SIGNATURE', `export "${name}" must be a memory, found a ${e.kind}`);
      continue;
    }
    const want = EXPORT_SIGNATURES[name];
    if (!want) continue;
    if (e.kind !== 'func' || !sameSig(e.signature, want)) {
      throw new AbiError(
        'FTVM_ERR_ABI_BAD_SIGNATURE',
        `export "${name}" must be a function (${want.params.join(', ')}) -> (${want.results.join(', ')}), found ${e.kind === 'func' ? sigToString(e.signature) : `a ${e.kind}`}`,
      );
    }
  }

  const imports: AbiImport[] = [];
  for (const imp of s.imports) {
    imports.push({ module: imp.module, name: imp.name, kind: imp.kind, ...(imp.type ? { signature: imp.type } : {}) });
    // An imported memory passes the ABI check; instrument() then falls back to the shadow log.
    if (imp.kind === 'memory') continue;
    const want = imp.module === IMPORT_MODULE ? IMPORT_SIGNATURES[imp.name] : undefined;
    if (!want || imp.kind !== 'func') {
      throw new AbiError(
        'FTVM_ERR_ABI_UNKNOWN_IMPORT',
        `import "${imp.module}.${imp.name}" (${imp.kind}) is not part of the ftvm ABI (allowed: functions ${Object.keys(IMPORT_SIGNATURES).map((n) => `${IMPORT_MODULE}.${n}`).join(', ')})`,
      );
    }
    if (!sameSig(imp.type, want)) {
      throw new AbiError(
        'FTVM_ERR_ABI_UNKNOWN_IMPORT',
        `import "${imp.module}.${imp.name}" has signature ${sigToString(imp.type)}, the ABI defines (${want.params.join(', ')}) -> (${want.results.join(', ')})`,
      );
    }
  }

  if (s.memories.length !== 1) {
    throw new AbiError('FTVM_ERR_ABI_BAD_SIGNATURE', `a guest must have exactly one memory, found ${s.memories.length}`);
  }
  return { version: g.i32Init, exports, imports, memory: s.memories[0]! };
}
