// Guest slowdown from dirty-log instrumentation: uninstrumented vs instrumented, per routine.
// Usage: npx tsc -b packages/instrument && node bench/instrument/overhead.mjs [--runs 7] [--procs 3] [--json]
// Each of --procs child processes times every variant --runs times, interleaved, after 2
// warm-up runs, and reports the median; the table shows the minimum over processes of
// those medians (the machine is shared, so the minimum is the least disturbed estimate).
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { buildGuest } from './build-guest.mjs';
import { FUEL_IMPORT, instrument } from '../../packages/instrument/dist/index.js';

const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) || dflt : dflt);
const RUNS = opt('--runs', 7);
const PROCS = opt('--procs', 3);
const JSON_OUT = args.includes('--json');
const CHILD = args.includes('--child');

const wasm = readFileSync(buildGuest());
const variants = [
  { name: 'plain', bytes: wasm },
  { name: 'default', ...pick(instrument(wasm)) },
  { name: 'no-fuel', ...pick(instrument(wasm, { fuel: false })) },
  { name: 'no-coalesce', ...pick(instrument(wasm, { coalesce: false })) },
  { name: 'align', ...pick(instrument(wasm, { precise: false })) },
  { name: 'default+opt', ...pick(instrument(wasm, { optimize: true })) },
];
function pick(r) {
  if (r.mode !== 'bytemap') throw new Error(`bench guest fell back to ${r.mode}: ${r.warnings.join('; ')}`);
  return { bytes: r.wasm, stats: r.stats };
}

const MiB = 1 << 20;
const routines = [
  { name: 'kvInsert', kind: 'store-heavy', args: [2_000_000, 20] },
  { name: 'sortRun', kind: 'store-heavy', args: [1_000_000] },
  { name: 'matmul', kind: 'store-heavy', args: [280] },
  { name: 'seqWrite', kind: 'worst case', args: [16 * MiB, 6] },
  { name: 'hashRead', kind: 'loads only', args: [16 * MiB, 6] },
  { name: 'mandel', kind: 'compute only', args: [300, 200] },
];

if (!CHILD) {
  // Parent: run the children one after another and keep the per-cell minimum of medians.
  const self = fileURLToPath(import.meta.url);
  const all = [];
  for (let p = 0; p < PROCS; p++) {
    all.push(JSON.parse(execFileSync(process.execPath, [self, '--child', '--runs', String(RUNS)], { encoding: 'utf8', maxBuffer: 1 << 24 })));
  }
  const rows = all[0].rows.map((row, i) => ({
    ...row,
    ms: Object.fromEntries(Object.keys(row.ms).map((v) => [v, Math.min(...all.map((a) => a.rows[i].ms[v]))])),
  }));
  report(rows, all[0].stats);
  process.exit(0);
}

const instances = [];
for (const v of variants) {
  const { instance } = await WebAssembly.instantiate(v.bytes, { [FUEL_IMPORT.module]: { [FUEL_IMPORT.name]: () => 1 << 20 } });
  instances.push(instance.exports);
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[s.length >> 1]; };
const rows = [];
for (const r of routines) {
  const times = variants.map(() => []);
  const results = new Set();
  for (let round = 0; round < RUNS + 2; round++) {
    for (let v = 0; v < variants.length; v++) {
      const t0 = performance.now();
      const res = instances[v][r.name](...r.args);
      const dt = performance.now() - t0;
      results.add(String(res));
      if (round >= 2) times[v].push(dt);
    }
  }
  if (results.size !== 1) throw new Error(`${r.name}: variants disagree: ${[...results].join(' / ')}`);
  const med = times.map(median);
  rows.push({ routine: r.name, kind: r.kind, ms: Object.fromEntries(variants.map((v, i) => [v.name, med[i]])) });
}

console.log(JSON.stringify({ runs: RUNS, rows, stats: variants[1].stats }));

function report(rows, stats) {
  const geo = (xs) => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);
  const ratio = (row, v) => row.ms[v] / row.ms.plain;
  if (JSON_OUT) {
    console.log(JSON.stringify({ runs: RUNS, procs: PROCS, rows, stats }, null, 2));
    return;
  }
  const vs = Object.keys(rows[0].ms).filter((v) => v !== 'plain');
  console.log(`| routine | kind | plain ms | ${vs.map((v) => `${v} ms (x)`).join(' | ')} |`);
  console.log(`|---|---|---:|${vs.map(() => '---:').join('|')}|`);
  for (const row of rows) {
    console.log(`| ${row.routine} | ${row.kind} | ${row.ms.plain.toFixed(1)} | ${vs.map((v) => `${row.ms[v].toFixed(1)} (${ratio(row, v).toFixed(2)}x)`).join(' | ')} |`);
  }
  const heavy = rows.filter((r) => r.kind === 'store-heavy');
  console.log(`| **store-heavy geomean** | kv, sort, matmul | | ${vs.map((v) => `**${geo(heavy.map((r) => ratio(r, v))).toFixed(2)}x**`).join(' | ')} |`);
  console.log(`\nmin over ${PROCS} processes of the median of ${RUNS} interleaved runs (after 2 warm-up runs); x = instrumented / plain.`);
  console.log(`instrumented guest: ${stats.stores} stores (${stats.storeGroups} coalesced runs), ${stats.bulkOps} bulk ops, ${stats.inputBytes} -> ${stats.outputBytes} bytes, instrument() ${stats.ms.toFixed(1)} ms`);
}
