// Runs the instrument benchmarks and writes bench/results/instrument.md.
// Usage: npx tsc -b packages/instrument && node bench/instrument/report.mjs [--quick]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const quick = process.argv.includes('--quick');
const run = (script, extra) => JSON.parse(execFileSync(process.execPath, [join(here, script), '--json', ...extra], { encoding: 'utf8', maxBuffer: 1 << 26 }));

const OVERHEAD_ARGS = quick ? ['--procs', '1', '--runs', '3'] : ['--procs', '5', '--runs', '7'];
const COLLECT_ARGS = quick ? ['--iters', '10'] : ['--iters', '60'];
const KV_ARGS = quick ? ['--procs', '1', '--runs', '3', '--ops', '50000'] : ['--procs', '5', '--runs', '5', '--ops', '100000'];

const cpuModel = (readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) ?? [])[1] ?? cpus()[0]?.model ?? 'unknown';
const nproc = execFileSync('nproc', { encoding: 'utf8' }).trim();
const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

const overhead = run('overhead.mjs', OVERHEAD_ARGS);
const collect = run('collect.mjs', COLLECT_ARGS);
const kvPath = join(root, 'packages', 'guests', 'build', 'kv.wasm');
const kv = existsSync(kvPath) ? run('kv-guest.mjs', KV_ARGS) : undefined;
const loadAfter = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

const geo = (xs) => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);
const x = (a, b) => `${(a / b).toFixed(2)}x`;
const L = [];
L.push('# instrument: dirty-logging overhead and dirty-log collection cost', '');
L.push(`Machine: ${nproc} vCPU, ${cpuModel}, Node ${process.version}, ${(readFileSync('/proc/meminfo', 'utf8').match(/MemTotal:\s*(\d+)/)[1] / 1048576).toFixed(0)} GiB RAM.`);
L.push(`Load average before / after the run: ${load} / ${loadAfter} (the machine is shared with other builds and tests: expect ±10–20% noise per cell).`);
L.push(`Generated ${new Date().toISOString()} by \`node bench/instrument/report.mjs${quick ? ' --quick' : ''}\`.`, '');
L.push('Reproduce:', '', '```sh', 'cd /work/main && npx tsc -b packages/guest-abi packages/instrument');
L.push(`node bench/instrument/overhead.mjs ${OVERHEAD_ARGS.join(' ')}   # (a) bench guest, compiled from bench/instrument/guest.ts`);
L.push(`node bench/instrument/collect.mjs ${COLLECT_ARGS.join(' ')}                 # (b) + (c)`);
L.push(`npm run build --workspace @ftvm/guests && node bench/instrument/kv-guest.mjs ${KV_ARGS.join(' ')}   # shipped kv guest`);
L.push('node bench/instrument/report.mjs                                   # all of the above into this file', '```', '');

L.push('## (a) Guest slowdown from instrumentation', '');
L.push('Bench guest `bench/instrument/guest.ts`, `asc -O3 --runtime stub --memoryBase 1048576 --noAssert --use abort= --initialMemory 1024`.');
L.push('Variants: `default` = `instrument(wasm)` (precise: both pages of a page-crossing store; adjacent stores through one pointer coalesced);');
L.push('`no-coalesce` = one pair of marks per store; `align` = `precise: false` (one mark per store, unsafe for unaligned page-crossing stores);');
L.push('`default+opt` = default plus binaryen function-local passes.', '');
const vs = Object.keys(overhead.rows[0].ms).filter((v) => v !== 'plain');
L.push(`| routine | kind | plain ms | ${vs.map((v) => `${v} ms (x)`).join(' | ')} |`);
L.push(`|---|---|---:|${vs.map(() => '---:').join('|')}|`);
for (const r of overhead.rows) L.push(`| ${r.routine} | ${r.kind} | ${r.ms.plain.toFixed(1)} | ${vs.map((v) => `${r.ms[v].toFixed(1)} (${x(r.ms[v], r.ms.plain)})`).join(' | ')} |`);
const heavy = overhead.rows.filter((r) => r.kind === 'store-heavy');
const g = Object.fromEntries(vs.map((v) => [v, geo(heavy.map((r) => r.ms[v] / r.ms.plain))]));
L.push(`| **store-heavy geomean** | kvInsert, sortRun, matmul | | ${vs.map((v) => `**${g[v].toFixed(2)}x**`).join(' | ')} |`, '');
L.push(`Min over ${overhead.procs} processes of the median of ${overhead.runs} interleaved runs (2 warm-up runs first).`, '');
const seq = overhead.rows.find((r) => r.routine === 'seqWrite');
const kvIns = overhead.rows.find((r) => r.routine === 'kvInsert');
L.push(`Goal (<= 15% on realistic store-heavy code), bench guest: store-heavy geomean ${((g.default - 1) * 100).toFixed(0)}% -> **${g.default <= 1.15 ? 'met' : 'missed'}**`
  + ` (kvInsert ${x(kvIns.ms.default, kvIns.ms.plain)}). Worst case seqWrite (one i32 store per 4 bytes, nothing to coalesce): ${x(seq.ms.default, seq.ms.plain)}.`, '');

if (kv) {
  L.push('### Shipped kv guest (Redis-protocol subset, AssemblyScript incremental runtime)', '');
  const kvs = Object.keys(kv.rows[0].ms).filter((v) => v !== 'plain');
  L.push(`| kv workload | plain ms | ${kvs.map((v) => `${v} ms (x)`).join(' | ')} |`);
  L.push(`|---|---:|${kvs.map(() => '---:').join('|')}|`);
  for (const r of kv.rows) L.push(`| ${r.name} | ${r.ms.plain.toFixed(1)} | ${kvs.map((v) => `${r.ms[v].toFixed(1)} (${x(r.ms[v], r.ms.plain)})`).join(' | ')} |`);
  const kg = Object.fromEntries(kvs.map((v) => [v, geo(kv.rows.map((r) => r.ms[v] / r.ms.plain))]));
  L.push(`| **geomean** | | ${kvs.map((v) => `**${kg[v].toFixed(2)}x**`).join(' | ')} |`, '');
  L.push(`${kv.ops} commands per run, pipelined 500 per \`ftvm_on_data\`; min over ${kv.procs} processes of the median of ${kv.runs} interleaved runs; stub host imports.`);
  L.push(`kv.wasm: ${kv.stats.stores} stores, ${kv.stats.storeGroups} coalesced runs (mostly on the shadow-stack pointer global), ${kv.stats.bulkOps} bulk ops; ${kv.stats.inputBytes} -> ${kv.stats.outputBytes} bytes.`, '');
  L.push(`Goal (<= 15%) on this real guest: geomean ${((kg.default - 1) * 100).toFixed(0)}% -> **${kg.default <= 1.15 ? 'met' : 'missed'}**`
    + `${kg.default <= 1.15 ? '' : ': AssemblyScript\'s incremental runtime stores GC roots to its shadow stack around nearly every call, and each such store is marked on its own'}.`, '');
}

L.push('## (b) Bytemap collect + page copy, and (c) ShadowDirtyLog, 1,000 dirty pages', '');
L.push('| memory | bytemap collect ms | bytemap copy ms | **bytemap total ms** | shadow collect ms | shadow total ms |');
L.push('|---:|---:|---:|---:|---:|---:|');
const f = (s) => `${s.median.toFixed(3)} / ${s.p95.toFixed(3)}`;
for (const r of collect.rows) L.push(`| ${r.mib} MiB | ${f(r.bytemap.collect)} | ${f(r.bytemap.copy)} | **${f(r.bytemap.total)}** | ${f(r.shadow.collect)} | ${f(r.shadow.total)} |`);
L.push('', `Cells: median / p95 over ${collect.iters} epochs (shadow: fewer at large sizes). ${collect.dirty} random pages above the reserved region are dirtied per epoch;`);
L.push('"collect" is `BytemapDirtyLog.collect` (scan + reset of the bytemap for the current memory size) or `ShadowDirtyLog.collect` (compare + shadow update);');
L.push('"copy" is `copyPages` of the dirty pages into a preallocated staging buffer.', '');
const c0 = collect.rows[0], c1 = collect.rows[collect.rows.length - 1];
L.push(`Flatness: bytemap collect grows ${x(c1.bytemap.collect.median, c0.bytemap.collect.median)} from ${c0.mib} MiB to ${c1.mib} MiB (the scan covers 1 bytemap byte per 4 KiB page, 8 per read), while shadow collect grows ${x(c1.shadow.collect.median, c0.shadow.collect.median)}.`);
const worst = Math.max(...collect.rows.map((r) => r.bytemap.total.median));
L.push(`Goal (flat, <= 1 ms for collect + copy): collect alone is <= ${Math.max(...collect.rows.map((r) => r.bytemap.collect.median)).toFixed(3)} ms at every size; collect + copy median is at most ${worst.toFixed(3)} ms -> **${worst <= 1 ? 'met' : 'missed'}**${worst <= 1 ? '' : ' (the 4 MB copy of 1,000 scattered pages dominates: memory bandwidth + a TLB miss per page)'}.`, '');

const notes = join(here, 'NOTES.md');
if (existsSync(notes)) L.push(readFileSync(notes, 'utf8'));
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
writeFileSync(join(root, 'bench', 'results', 'instrument.md'), L.join('\n') + '\n');
console.log(L.join('\n'));
