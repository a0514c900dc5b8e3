/**
 * `ftvm inspect <guest.wasm>`: what the VMM would see of a guest module. The CLI package
 * prints `report.text`; the structured fields serve `--json`.
 */
import { ABI_VERSION, isFtvmError, WASM_PAGE_BYTES } from '@ftvm/guest-abi';
import { checkAbi, type AbiReport } from './abi.js';
import { instrument, type InstrumentResult } from './instrument.js';
import { sigToString, readWasm } from './wasm-reader.js';

export interface InspectReport {
  /** The ABI check's result, or its error (code + message) when the module fails it. */
  abi: { ok: true; report: AbiReport } | { ok: false; code: string; message: string };
  /** Instrumentation outcome (run with the ABI check off, so a failing guest still shows it). */
  instrument?: Omit<InstrumentResult, 'wasm'>;
  /** Printable multi-line report. */
  text: string;
}

function mib(pages: number): string {
  const v = (pages * WASM_PAGE_BYTES) / (1 << 20);
  return `${Number.isInteger(v) ? v : v.toFixed(2)} MiB`;
}

export function inspectModule(wasm: Uint8Array): InspectReport {
  const lines: string[] = [];
  let abi: InspectReport['abi'];
  try {
    abi = { ok: true, report: checkAbi(wasm) };
  } catch (e) {
    if (!isFtvmError(e)) throw e;
    abi = { ok: false, code: e.code, message: e.message };
  }
  if (abi.ok) {
    const r = abi.report;
    lines.push(`ABI:          version ${r.version} (host supports ${ABI_VERSION}) - ok`);
  } else {
    lines.push(`ABI:          FAILED ${abi.code}: ${abi.message}`);
    if (abi.code === 'FTVM_ERR_WASM_INVALID') return { abi, text: lines.join('\n') };
  }
  const s = readWasm(wasm);
  const mem = s.memories[0];
  lines.push(
    mem
      ? `Memory:       ${mem.imported ? 'imported' : 'defined'}, initial ${mem.initial} pages (${mib(mem.initial)}), max ${mem.maximum === undefined ? 'none' : `${mem.maximum} pages (${mib(mem.maximum)})`}${mem.shared ? ', shared' : ''}${mem.is64 ? ', memory64' : ''}`
      : 'Memory:       none',
  );
  lines.push(`Imports (${s.imports.length}):`);
  for (const i of s.imports) lines.push(`  ${i.module}.${i.name}  ${i.kind}${i.kind === 'func' ? ` ${sigToString(i.type)}` : ''}`);
  lines.push(`Exports (${s.exports.length}):`);
  for (const e of s.exports) lines.push(`  ${e.name}  ${e.kind}${e.kind === 'func' ? ` ${sigToString(s.functionTypes[e.index])}` : ''}`);

  let r: InstrumentResult;
  try {
    r = instrument(wasm, { checkAbi: false });
  } catch (e) {
    if (!isFtvmError(e)) throw e;
    lines.push(`Dirty log:    cannot instrument: ${e.code}: ${e.message}`);
    return { abi, text: lines.join('\n') };
  }
  const { wasm: _out, ...info } = r;
  const st = r.stats;
  lines.push(`Dirty log:    ${r.mode === 'bytemap' ? 'bytemap (inline marks, O(dirty pages) per epoch)' : 'shadow compare (O(memory) per epoch)'}`);
  for (const w of r.warnings) lines.push(`  warning: ${w}`);
  lines.push(
    `Rewritten:    ${st.functions} functions; ${st.stores} stores, ${st.atomicRmw} atomic RMW, ${st.atomicCmpxchg} cmpxchg, ${st.simdLaneStores} SIMD lane stores, ${st.bulkOps} bulk ops`,
  );
  lines.push(`Globals:      ${st.mutableGlobals} mutable: ${st.globalExports.map((g) => `${g.name}=#${g.index}:${g.type}`).join(', ') || '-'}`);
  lines.push(`Size:         ${st.inputBytes} -> ${st.outputBytes} bytes (+${(((st.outputBytes - st.inputBytes) / Math.max(1, st.inputBytes)) * 100).toFixed(1)}%), ${st.ms.toFixed(1)} ms`);
  return { abi, instrument: info, text: lines.join('\n') };
}
