// Slowdown of the shipped kv guest (packages/guests/build/kv.wasm, a Redis-protocol subset)
// under instrumentation: pipelined RESP SET / GET / INCR / HSET / LPUSH batches, plain vs instrumented.
// Usage: npm run build --workspace @ftvm/guests && npx tsc -b packages/instrument &&
//        node bench/instrument/kv-guest.mjs [--runs 7] [--procs 3] [--ops 200000]
import { existsSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FUEL_IMPORT, instrument } from '../../packages/instrument/dist/index.js';

const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) || dflt : dflt);
const RUNS = opt('--runs', 7);
const PROCS = opt('--procs', 3);
const OPS = opt('--ops', 200000);
const guestPath = fileURLToPath(new URL('../../packages/guests/build/kv.wasm', import.meta.url));
if (!existsSync(guestPath)) {
  console.error(`${guestPath} is missing: run npm run build --workspace @ftvm/guests first`);
  process.exit(2);
}

if (!args.includes('--child')) {
  const self = fileURLToPath(import.meta.url);
  const all = [];
  for (let p = 0; p < PROCS; p++) {
    all.push(JSON.parse(execFileSync(process.execPath, [self, '--child', '--runs', String(RUNS), '--ops', String(OPS)], { encoding: 'utf8' })));
  }
  const rows = all[0].rows.map((r, i) => ({ ...r, ms: Object.fromEntries(Object.keys(r.ms).map((v) => [v, Math.min(...all.map((a) => a.rows[i].ms[v]))])) }));
  if (args.includes('--json')) {
    console.log(JSON.stringify({ runs: RUNS, procs: PROCS, ops: OPS, rows, stats: all[0].stats }));
    process.exit(0);
  }
  const vs = Object.keys(rows[0].ms).filter((v) => v !== 'plain');
  console.log(`| kv workload | plain ms | ${vs.map((v) => `${v} ms (x)`).join(' | ')} |`);
  console.log(`|---|---:|${vs.map(() => '---:').join('|')}|`);
  for (const r of rows) console.log(`| ${r.name} | ${r.ms.plain.toFixed(1)} | ${vs.map((v) => `${r.ms[v].toFixed(1)} (${(r.ms[v] / r.ms.plain).toFixed(2)}x)`).join(' | ')} |`);
  console.log(`\n${OPS} commands per run, pipelined 500 per ftvm_on_data call; min over ${PROCS} processes of the median of ${RUNS} interleaved runs.`);
  const s = all[0].stats;
  console.log(`kv.wasm: ${s.stores} stores (${s.storeGroups} coalesced runs), ${s.bulkOps} bulk ops; ${s.inputBytes} -> ${s.outputBytes} bytes.`);
  process.exit(0);
}

const wasm = readFileSync(guestPath);
const variants = [
  { name: 'plain', bytes: wasm },
  { name: 'default', bytes: instrument(wasm).wasm },
  { name: 'no-fuel', bytes: instrument(wasm, { fuel: false }).wasm },
  { name: 'no-coalesce', bytes: instrument(wasm, { coalesce: false }).wasm },
  { name: 'align', bytes: instrument(wasm, { precise: false }).wasm },
];
const stats = instrument(wasm).stats;

async function boot(bytes) {
  let mem;
  let sent = 0;
  const ftvm = {
    send: (_c, _p, len) => { sent += len; },
    close: () => {},
    clock_register: () => {},
    rdtsc: () => BigInt(Math.round(performance.now() * 1e6)),
    timer_set: () => {},
    disk_read: () => -1,
    disk_write: () => -1,
    disk_blocks: () => 0,
    random: (p, n) => { new Uint8Array(mem.buffer, p, n).fill(7); },
    log: () => {},
  };
  const { instance } = await WebAssembly.instantiate(bytes, { ftvm, [FUEL_IMPORT.module]: { [FUEL_IMPORT.name]: () => 1 << 20 } });
  const ex = instance.exports;
  mem = ex.memory;
  ex.ftvm_init();
  ex.ftvm_on_open(1);
  return {
    feed(buf) {
      const p = ex.ftvm_alloc(buf.length);
      new Uint8Array(mem.buffer, p, buf.length).set(buf);
      ex.ftvm_on_data(1, p, buf.length);
    },
    get sent() { return sent; },
  };
}

const resp = (...parts) => `*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join('')}`;
const workloads = [
  { name: 'SET 64 B values', cmd: (i) => resp('SET', `key:${i % 50000}`, 'v'.repeat(48) + String(i).padStart(16, '0')) },
  { name: 'GET', cmd: (i) => resp('GET', `key:${i % 50000}`) },
  { name: 'INCR', cmd: (i) => resp('INCR', `ctr:${i % 1000}`) },
  { name: 'HSET', cmd: (i) => resp('HSET', `h:${i % 100}`, `f${i % 5000}`, String(i)) },
  { name: 'LPUSH', cmd: (i) => resp('LPUSH', `l:${i % 100}`, String(i)) },
];
const BATCH = 500;
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const rows = [];
const guests = [];
for (const v of variants) guests.push(await boot(v.bytes));
for (const w of workloads) {
  const batches = [];
  for (let i = 0; i < OPS; i += BATCH) {
    let s = '';
    for (let k = i; k < Math.min(OPS, i + BATCH); k++) s += w.cmd(k);
    batches.push(Buffer.from(s));
  }
  const times = variants.map(() => []);
  const outputs = variants.map(() => []);
  for (let round = 0; round < RUNS + 1; round++) {
    for (let v = 0; v < variants.length; v++) {
      const before = guests[v].sent;
      const t0 = performance.now();
      for (const b of batches) guests[v].feed(b);
      if (round > 0) times[v].push(performance.now() - t0);
      outputs[v].push(guests[v].sent - before);
    }
  }
  if (new Set(outputs.map((o) => o.join())).size !== 1) throw new Error(`${w.name}: variants produced different output sizes`);
  rows.push({ name: w.name, ms: Object.fromEntries(variants.map((v, i) => [v.name, median(times[i])])) });
}
console.log(JSON.stringify({ rows, stats }));
