// Checkpoint pause at ~1,000 dirty pages per epoch: the vCPU's hold in each collect
// (Collected.pauseMs: from the event boundary to the end of the copy), with the early copy
// between events on and off, at 64 MiB and 1 GiB of guest memory; full collects (plain and
// background); and the hold after a memory.grow of 64 MiB / 1 GiB in one event.
//
//   npm run bench:pause [-- --quick]   (after `npm run build`: node with the roles' flags, see packages/cli/src/node-flags.ts)
//
// The dirtier writes `RATE` random pages/s of its working set (ticks of 1 ms of guest time);
// a collect every EPOCH_MS gives ~RATE * EPOCH_MS / 1000 dirty pages per epoch. One VMM in
// this process, no network: this measures the mechanism, not the replication pipeline.
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Vmm, prepareGuest, readGuest } from '../packages/vmm/dist/index.js';
import { PAGES_PER_MIB, bootFilledDirtier, dirtierLine } from './lib/dirtier.mjs';

const quick = process.argv.includes('--quick');
const unknown = process.argv.slice(2).filter((a) => a !== '--quick');
if (unknown.length) {
  console.error(`bench/pause.mjs: unknown argument ${unknown[0]} (only --quick)`);
  process.exit(2);
}
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url));
const EPOCH_MS = 100;
const RATE = 10_000;
const EPOCHS = quick ? 40 : 300;
const SIZES = quick ? [64] : [64, 1024];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const q = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};

async function run(guest, mib, earlyCopy) {
  const vmm = await bootFilledDirtier(guest, mib, { earlyCopy });
  try {
    await dirtierLine(vmm, 1, `SET ws_pages=${mib * PAGES_PER_MIB} rate=${RATE} pattern=random tick_ms=1`);
    await vmm.collect();
    const pause = [];
    const pages = [];
    let early = 0;
    for (let i = 0; i < EPOCHS; i++) {
      await sleep(EPOCH_MS);
      const c = await vmm.collect();
      pause.push(c.pauseMs);
      pages.push(c.pages.length);
      early += c.earlyPages;
      // As the primary does once an epoch is encoded: the buffer goes back for a later epoch's copy.
      vmm.recycle(c.data);
      if ((i + 1) % 50 === 0) process.stderr.write(`  ${mib} MiB early=${earlyCopy}: ${i + 1}/${EPOCHS} epochs\n`);
    }
    await dirtierLine(vmm, 1, 'STOP');
    const total = pages.reduce((a, b) => a + b, 0);
    return {
      mib,
      earlyCopy,
      epochs: EPOCHS,
      pagesP50: q(pages, 0.5),
      p50: q(pause, 0.5),
      p99: q(pause, 0.99),
      max: Math.max(...pause),
      le1: pause.filter((x) => x <= 1).length / pause.length,
      earlyShare: early / Math.max(1, total),
    };
  } finally {
    await vmm.stop();
  }
}

/** Full collects (a new secondary's full sync) while the dirtier writes: plain (all in the hold) vs background. */
async function runFull(guest, mib, background) {
  const vmm = await bootFilledDirtier(guest, mib);
  try {
    await dirtierLine(vmm, 1, `SET ws_pages=${mib * PAGES_PER_MIB} rate=${RATE} pattern=random tick_ms=1`);
    const hold = [];
    const total = [];
    for (let i = 0; i < FULL_REPEATS; i++) {
      await sleep(200);
      const t = performance.now();
      const c = await vmm.collect(true, true, undefined, { background });
      total.push(performance.now() - t);
      hold.push(c.pauseMs);
    }
    await dirtierLine(vmm, 1, 'STOP');
    return { mib, background, holdP50: q(hold, 0.5), holdMax: Math.max(...hold), totalP50: q(total, 0.5) };
  } finally {
    await vmm.stop();
  }
}
/**
 * memory.grow of `mib` in one guest event (the dirtier's `SET ws_pages` grows without writing):
 * the hold of the next collect and the pages it carries. Grown pages are zero until written, so
 * they are not dirty; they used to count as dirty, and a 1 GiB growth then held ~15 s in a cluster (NOTES.md).
 */
async function runGrow(guest, mib) {
  const vmm = await Vmm.boot(guest, { eventTimeoutMs: 30_000 });
  try {
    vmm.open(1);
    await dirtierLine(vmm, 1, 'SET ws_pages=256 rate=0');
    await vmm.collect();
    const t = performance.now();
    await dirtierLine(vmm, 1, `SET ws_pages=${256 + mib * PAGES_PER_MIB} rate=0`);
    const eventMs = performance.now() - t;
    const c = await vmm.collect();
    return { mib, eventMs, holdMs: c.pauseMs, pages: c.pages.length };
  } finally {
    await vmm.stop();
  }
}
const FULL_REPEATS = quick ? 2 : 5;
const FULL_SIZES = quick ? [64] : [256, 1024];

const { name, wasm } = readGuest('dirtier');
const guest = prepareGuest(name, wasm);
const rows = [];
for (const mib of SIZES) {
  for (const earlyCopy of [false, true]) {
    process.stderr.write(`pause: ${mib} MiB, early copy ${earlyCopy ? 'on' : 'off'}\n`);
    rows.push(await run(guest, mib, earlyCopy));
  }
}
const fullRows = [];
for (const mib of FULL_SIZES) {
  for (const background of [false, true]) {
    process.stderr.write(`full collect: ${mib} MiB, ${background ? 'background' : 'plain'}\n`);
    fullRows.push(await runFull(guest, mib, background));
  }
}
const growRows = [];
for (const mib of SIZES) {
  process.stderr.write(`memory.grow: ${mib} MiB in one event\n`);
  growRows.push(await runGrow(guest, mib));
}
const f = (x) => x.toFixed(3);
const L = [
  '# Checkpoint pause at ~1,000 dirty pages per epoch',
  '',
  `Command: \`${['node', ...process.execArgv, 'bench/pause.mjs'].join(' ')}${quick ? ' --quick' : ''}\` (after \`npm run build\`; \`npm run bench:pause\` passes the roles' node flags). ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'}), Node ${process.version}, load average at the end ${loadavg().map((x) => x.toFixed(1)).join(' / ')}.`,
  `The dirtier writes ${RATE.toLocaleString('en')} random pages/s (1 ms ticks of guest time); a collect every ${EPOCH_MS} ms; ${EPOCHS} epochs per row.`,
  'Pause = `Collected.pauseMs`: the vCPU held from the event boundary to the end of the copy (dirty-log scan, copy, globals and device state).',
  'Early copy: between events the worker takes the dirty pages so far and copies them in 64-page slices, so the hold copies only what was written since. The buffer of each epoch is handed back once read (`Vmm.recycle`, as the primary does), so the copy reuses warm memory.',
  '',
  '| memory | early copy | dirty pages / epoch (p50) | copied early | pause p50 ms | pause p99 ms | max ms | pauses ≤ 1 ms |',
  '|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.mib} MiB | ${r.earlyCopy ? 'on' : 'off'} | ${r.pagesP50} | ${(r.earlyShare * 100).toFixed(0)} % | ${f(r.p50)} | ${f(r.p99)} | ${f(r.max)} | ${(r.le1 * 100).toFixed(1)} % |`),
  '',
  '## Full collect (a new secondary\'s full sync)',
  '',
  `The same dirtier writing ${RATE.toLocaleString('en')} pages/s; ${FULL_REPEATS} full collects per row, 200 ms apart. Plain: every page copied in the hold. Background (\`Vmm.collect(true, …, { background: true })\`, what the primary uses for a full sync): every page copied between events while the guest runs, then a hold that copies the pages written meanwhile.`,
  '',
  '| memory | full collect | hold p50 ms | hold max ms | collect call p50 ms |',
  '|---|---|---|---|---|',
  ...fullRows.map((r) => `| ${r.mib} MiB | ${r.background ? 'background' : 'plain'} | ${r.holdP50.toFixed(1)} | ${r.holdMax.toFixed(1)} | ${r.totalP50.toFixed(0)} |`),
  '',
  '## memory.grow in one event',
  '',
  'A dirtier with a 1 MiB working set grows it in one event (`SET ws_pages=…`: memory.grow, nothing written), then one collect. Grown pages read as zero on every image (it grows zero-filled), so the epoch carries only the pages the event wrote.',
  '',
  '| growth | event ms | collect hold ms | pages in the epoch |',
  '|---|---|---|---|',
  ...growRows.map((r) => `| ${r.mib} MiB | ${r.eventMs.toFixed(1)} | ${f(r.holdMs)} | ${r.pages} |`),
  '',
];
const out = L.join('\n');
console.log(out);
if (!quick) writeFileSync(`${RESULTS}pause.md`, out);
