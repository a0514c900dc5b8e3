/**
 * instrument(): ABI check, dirty-log rewrite (or the shadow fallback), mutable-global exports.
 */
import binaryen from 'binaryen';
import { ABI_VERSION, GLOBAL_EXPORT_PREFIX, RESERVED_BYTES } from '@ftvm/guest-abi';
import { checkAbiSummary, validateWasm } from './abi.js';
import { InstrumentError } from './errors.js';
import { FEATURES, rewriteModule, UnsupportedModule, type RewriteStats } from './rewrite.js';
import { FUEL_GLOBAL } from './fuel.js';
import { addGlobalExports, readWasm, type WasmSummary } from './wasm-reader.js';

/** Bumped whenever the rewrite's output changes; part of the cache key. */
export const INSTRUMENTER_VERSION = 3;

/** Name of the custom section that marks a module as already instrumented (content: version). */
export const INSTRUMENTED_SECTION = 'ftvm.instrumented';

export interface InstrumentOptions {
  /**
   * Mark both pages of a page-crossing access (the page of ea and of ea + bytes - 1).
   * false marks only the page of ea: about half the cost, but an unaligned access that
   * crosses a page boundary leaves its second page unmarked. Default true.
   */
  precise?: boolean;
  /**
   * Let a run of adjacent stores through the same pointer local, spanning at most one
   * page boundary, share one pair of marks after the run (with a probe load first, so a
   * run that would trap part-way traps before its first store). Marks stay exact; it
   * removes most of the cost on struct-field writes. Default true.
   */
  coalesce?: boolean;
  /**
   * Binaryen function-local clean-up passes after the rewrite (simplify-locals,
   * vacuum, ...). Default false: bench/instrument measured no gain (see bench/results/instrument.md).
   */
  optimize?: boolean;
  /** Run the guest ABI check (throws AbiError). Default true; false for tools and tests. */
  checkAbi?: boolean;
  /**
   * Add the fuel counter (FUEL_GLOBAL, FUEL_IMPORT) an inline vCPU stops runaway events with.
   * Default true; false only to measure its cost (bench/instrument).
   */
  fuel?: boolean;
}

export interface GlobalExport {
  /** Export name through which the VMM reads and writes the global. */
  name: string;
  /** Index in the module's global index space. */
  index: number;
  type: string;
  /** false when the guest already exported it under `name`. */
  added: boolean;
}

export interface InstrumentStats extends RewriteStats {
  mutableGlobals: number;
  globalExports: GlobalExport[];
  inputBytes: number;
  outputBytes: number;
  /** Wall time of instrument(), ms. */
  ms: number;
}

export interface InstrumentResult {
  /** 'bytemap': inline marks into the reserved low region; 'shadow': use ShadowDirtyLog. */
  mode: 'bytemap' | 'shadow';
  wasm: Uint8Array;
  stats: InstrumentStats;
  /** Why the module fell back to 'shadow', and other things an operator should know. */
  warnings: string[];
  /** The guest's ABI version (ABI_VERSION when the check is skipped and the export is absent). */
  abiVersion: number;
}

function validateOptions(opts: InstrumentOptions): Required<InstrumentOptions> {
  if (opts === null || typeof opts !== 'object') throw new InstrumentError('FTVM_ERR_INSTRUMENT_OPTION', 'options must be an object');
  for (const k of ['precise', 'coalesce', 'optimize', 'checkAbi', 'fuel'] as const) {
    if (opts[k] !== undefined && typeof opts[k] !== 'boolean') {
      throw new InstrumentError('FTVM_ERR_INSTRUMENT_OPTION', `${k} must be a boolean, got ${typeof opts[k]}`);
    }
  }
  return { precise: opts.precise ?? true, coalesce: opts.coalesce ?? true, optimize: opts.optimize ?? false, checkAbi: opts.checkAbi ?? true, fuel: opts.fuel ?? true };
}

/** Exports every mutable global not yet exported, as GLOBAL_EXPORT_PREFIX + index. */
function exportGlobals(wasm: Uint8Array, s: WasmSummary): { wasm: Uint8Array; list: GlobalExport[]; mutable: number } {
  const list: GlobalExport[] = [];
  const add: { name: string; index: number }[] = [];
  const taken = new Set(s.exports.map((e) => e.name));
  let mutable = 0;
  s.globals.forEach((g, index) => {
    if (!g.mutable) return;
    mutable++;
    const existing = s.exports.find((e) => e.kind === 'global' && e.index === index);
    // The fuel counter is the vCPU's, not the guest's state: never in a checkpoint.
    if (existing?.name === FUEL_GLOBAL) {
      mutable--;
      return;
    }
    if (existing) {
      list.push({ name: existing.name, index, type: g.type, added: false });
      return;
    }
    const name = `${GLOBAL_EXPORT_PREFIX}${index}`;
    if (taken.has(name)) {
      throw new InstrumentError('FTVM_ERR_INSTRUMENT_EXPORT_CLASH', `export "${name}" already names something other than mutable global ${index}`);
    }
    add.push({ name, index });
    list.push({ name, index, type: g.type, added: true });
  });
  return { wasm: addGlobalExports(wasm, s, add), list, mutable };
}

function shadowReason(s: WasmSummary): string | undefined {
  const mem = s.memories[0];
  if (!mem) return 'the module has no memory';
  if (s.memories.length > 1) return `the module has ${s.memories.length} memories`;
  if (mem.imported) return 'the memory is imported, not defined by the module (the bytemap must live in guest-owned memory)';
  if (mem.is64) return 'memory64 is not supported by the bytemap';
  for (const [i, d] of s.data.entries()) {
    if (d.passive) continue;
    if (d.offset === undefined) return `active data segment ${i} has a non-constant offset; it might overlap the reserved bytemap region [0, ${RESERVED_BYTES})`;
    if (d.offset < RESERVED_BYTES && d.length > 0) {
      return `active data segment ${i} starts at byte ${d.offset}, inside the reserved bytemap region [0, ${RESERVED_BYTES}) (link with --memoryBase ${RESERVED_BYTES})`;
    }
  }
  return undefined;
}

function bytemapRewrite(wasm: Uint8Array, o: Required<InstrumentOptions>, keepNames: boolean): { wasm: Uint8Array; stats: RewriteStats } {
  let m: binaryen.Module;
  try {
    m = binaryen.readBinary(wasm);
  } catch (e) {
    throw new UnsupportedModule(`binaryen cannot read it: ${e instanceof Error ? e.message : String(e)}`);
  }
  try {
    m.setFeatures(FEATURES);
    const stats = rewriteModule(m, o.precise, o.coalesce, o.fuel);
    m.addCustomSection(INSTRUMENTED_SECTION, Uint8Array.of(INSTRUMENTER_VERSION));
    if (!m.validate()) throw new UnsupportedModule('binaryen rejected the rewritten module (validation failed)');
    if (o.optimize) {
      // Function-local passes only: global-level passes could renumber or drop globals.
      m.runPasses(['simplify-locals', 'vacuum', 'reorder-locals', 'coalesce-locals']);
    }
    // Keep the guest's function names (name section) for readable trap stack traces.
    const hadNames = binaryen.getDebugInfo();
    binaryen.setDebugInfo(keepNames);
    try {
      return { wasm: m.emitBinary(), stats };
    } finally {
      binaryen.setDebugInfo(hadNames);
    }
  } finally {
    m.dispose();
  }
}

const ZERO_REWRITE: RewriteStats = { functions: 0, stores: 0, storeGroups: 0, atomicRmw: 0, atomicCmpxchg: 0, simdLaneStores: 0, bulkOps: 0, tries: 0 };

/**
 * Rewrites a guest so every store-like instruction marks its 4 KiB page(s) in the dirty
 * bytemap, and exports its mutable globals. Falls back to mode 'shadow' (with a warning)
 * when the module cannot carry the bytemap. Throws AbiError when the ABI check fails.
 */
export function instrument(wasm: Uint8Array, opts: InstrumentOptions = {}): InstrumentResult {
  const t0 = performance.now();
  const o = validateOptions(opts);
  const input = validateWasm(wasm);
  // Instrumenting twice would mark the marks, i.e. report a reserved-region write on every
  // event; trusting the section to skip the rewrite would let a guest forge it and run with
  // no dirty logging at all. So a module carrying it is refused (before the ABI check, which
  // would name the fuel import an instrumented module has).
  if (input.customSections.includes(INSTRUMENTED_SECTION)) {
    throw new InstrumentError(
      'FTVM_ERR_INSTRUMENT_ALREADY',
      `module carries a "${INSTRUMENTED_SECTION}" section: pass the original guest module, not an instrumented one`,
    );
  }
  const abiVersion = o.checkAbi ? checkAbiSummary(input).version : ABI_VERSION;
  const warnings: string[] = [];

  let mode: 'bytemap' | 'shadow' = 'bytemap';
  let out = wasm;
  let rewrite = ZERO_REWRITE;
  {
    const reason = shadowReason(input);
    if (reason) {
      mode = 'shadow';
      warnings.push(`dirty logging falls back to shadow compare (O(memory) per epoch): ${reason}`);
    } else {
      try {
        const r = bytemapRewrite(wasm, o, input.customSections.includes('name'));
        out = r.wasm;
        rewrite = r.stats;
      } catch (e) {
        // Deeply nested code overflows the JS or binaryen stack: fall back rather than crash.
        if (e instanceof RangeError || (e instanceof Error && /call stack/i.test(e.message))) {
          e = new UnsupportedModule(`expressions nest too deeply to rewrite (${e.message})`);
        }
        if (!(e instanceof UnsupportedModule)) throw e;
        mode = 'shadow';
        const why = e instanceof Error ? e.message : String(e);
        warnings.push(`dirty logging falls back to shadow compare (O(memory) per epoch): the module cannot be rewritten: ${why}`);
      }
    }
  }

  const summary = out === wasm ? input : readWasm(out);
  const g = exportGlobals(out, summary);
  out = g.wasm;
  return {
    mode,
    wasm: out,
    stats: {
      ...rewrite,
      mutableGlobals: g.mutable,
      globalExports: g.list,
      inputBytes: wasm.length,
      outputBytes: out.length,
      ms: performance.now() - t0,
    },
    warnings,
    abiVersion,
  };
}
