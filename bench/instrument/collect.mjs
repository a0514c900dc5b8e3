// Per-epoch dirty-log cost: collect() + copy of 1,000 dirty pages, bytemap vs shadow compare,
// at 64 MiB / 256 MiB / 1 GiB of guest memory.
// Usage: npx tsc -b packages/instrument && node bench/instrument/collect.mjs [--iters 40] [--dirty 1000] [--sizes 64,256,1024] [--json]
import { BytemapDirtyLog, ShadowDirtyLog, copyPages } from '../../packages/instrument/dist/index.js';
import { PAGE_BYTES, RESERVED_PAGES, WASM_PAGE_BYTES } from '../../packages/guest-abi/dist/index.js';

const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const ITERS = Number(opt('--iters', 40));
const DIRTY = Number(opt('--dirty', 1000));
const SIZES = String(opt('--sizes', '64,256,1024')).split(',').map(Number);
const JSON_OUT = args.includes('--json');

let seed = 0x1234567;
const rand = (n) => {
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed % n;
};
const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[s.length >> 1], p95: s[Math.min(s.length - 1, Math.floor(s.length * 0.95))] };
};

/** Dirties DIRTY distinct random pages above the reserved region: writes a byte, and marks the bytemap. */
function dirty(mem, nPages, mark) {
  const pages = new Set();
  while (pages.size < DIRTY) pages.add(RESERVED_PAGES + rand(nPages - RESERVED_PAGES));
  for (const p of pages) {
    mem[p * PAGE_BYTES + rand(PAGE_BYTES)] ^= 0x5a | 1;
    if (mark) mem[p] = 1;
  }
}

const rows = [];
const out = new Uint8Array(DIRTY * PAGE_BYTES);
for (const mib of SIZES) {
  const memory = new WebAssembly.Memory({ initial: (mib << 20) / WASM_PAGE_BYTES });
  const mem = new Uint8Array(memory.buffer);
  const nPages = mem.length / PAGE_BYTES;
  const row = { mib };

  const bm = new BytemapDirtyLog();
  const tScan = [], tCopy = [];
  for (let i = 0; i < ITERS + 3; i++) {
    dirty(mem, nPages, true);
    const t0 = performance.now();
    const { pages } = bm.collect(mem);
    const t1 = performance.now();
    copyPages(mem, pages, out);
    const t2 = performance.now();
    if (pages.length !== DIRTY) throw new Error(`bytemap collected ${pages.length} pages, expected ${DIRTY}`);
    if (i >= 3) { tScan.push(t1 - t0); tCopy.push(t2 - t1); }
  }
  row.bytemap = { collect: stats(tScan), copy: stats(tCopy), total: stats(tScan.map((x, i) => x + tCopy[i])) };
  mem.fill(0, 0, nPages); // clear the bytemap marks the shadow run would otherwise count as changes

  const shadowIters = Math.max(5, Math.min(ITERS, Math.floor(ITERS * 64 / mib)));
  const sh = new ShadowDirtyLog(mem);
  const sScan = [], sCopy = [];
  for (let i = 0; i < shadowIters + 2; i++) {
    dirty(mem, nPages, false);
    const t0 = performance.now();
    const { pages } = sh.collect(mem);
    const t1 = performance.now();
    copyPages(mem, pages, out);
    const t2 = performance.now();
    if (pages.length !== DIRTY) throw new Error(`shadow collected ${pages.length} pages, expected ${DIRTY}`);
    if (i >= 2) { sScan.push(t1 - t0); sCopy.push(t2 - t1); }
  }
  row.shadow = { collect: stats(sScan), copy: stats(sCopy), total: stats(sScan.map((x, i) => x + sCopy[i])), iters: shadowIters };
  rows.push(row);
}

if (JSON_OUT) console.log(JSON.stringify({ iters: ITERS, dirty: DIRTY, rows }, null, 2));
else {
  const f = (s) => `${s.median.toFixed(3)} / ${s.p95.toFixed(3)}`;
  console.log(`| memory | bytemap collect ms | bytemap copy ms | **bytemap total ms** | shadow collect ms | shadow total ms |`);
  console.log(`|---:|---:|---:|---:|---:|---:|`);
  for (const r of rows) {
    console.log(`| ${r.mib} MiB | ${f(r.bytemap.collect)} | ${f(r.bytemap.copy)} | **${f(r.bytemap.total)}** | ${f(r.shadow.collect)} | ${f(r.shadow.total)} |`);
  }
  console.log(`\n${DIRTY} random dirty pages per epoch; cells are median / p95 over ${ITERS} epochs (shadow: fewer at large sizes) after warm-up; copy = copyPages into a preallocated buffer.`);
}
