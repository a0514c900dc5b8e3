#!/usr/bin/env node
// Pre-copy benchmarks (issue 8), on the built packages (npm run build first):
//   migration: the dirtier guest at working sets x dirty rates, migrated over a real
//              WebSocket (protocol migration link, page codecs) with the plain and mp stop
//              rules, plus plain with a relaxed downtime limit (the paper's comparison).
//   snapshot:  a 1 GiB dirtier, live (mp, throttle auto) vs stop-the-world snapshot to a
//              local file at several dirty rates.
// Usage: node bench/migration.mjs [--only migration|snapshot] [--quick]
// Writes bench/results/migration.md + migration.svg, snapshot.md + snapshot.svg.
// Source and receiver share this process (one machine): the numbers include the
// receiver's decode on the same CPU; with 2 cores the vCPU worker gets its own.
import { mkdtempSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Vmm, prepareGuest, readGuest } from '../packages/vmm/dist/index.js';
import { PAGES_PER_MIB, bootFilledDirtier, dirtierLine } from './lib/dirtier.mjs';
import { MigrationReceiver, MigrationSender, VmmSource, runPrecopy, takeSnapshot } from '../packages/precopy/dist/index.js';
import { xyChart, barChart } from './lib/svg.mjs';

const args = process.argv.slice(2);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : null;
const quick = args.includes('--quick');
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url));
const token = new Uint8Array(Buffer.from('bench-migration'));
const MiB = 1024 * 1024;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Boots a dirtier with `wsMiB` of working set, grown in <= 64 MiB steps, filled, writing `rate` pages/s. */
async function dirtier(guest, wsMiB, rate) {
  const vmm = await bootFilledDirtier(guest, wsMiB);
  await dirtierLine(vmm, 1, `SET ws_pages=${wsMiB * PAGES_PER_MIB} rate=${rate} pattern=random`);
  await sleep(200);
  return vmm;
}

async function migrateOnce(guest, wsMiB, rate, opts) {
  const vmm = await dirtier(guest, wsMiB, rate);
  let restored = null;
  // As ftvm receive does: the target's vCPU boots during round 0, the downtime pays only the copy.
  let pre = null;
  const receiver = new MigrationReceiver({
    port: 0, token, moduleDigest: guest.digest,
    onBegin: (memBytes) => {
      pre = Vmm.prestart(guest, memBytes, { transferRestoreMemory: true });
      return pre;
    },
    onAbandoned: () => void pre?.then((v) => v.stop()),
    onComplete: async (ckpt) => {
      const v = await pre;
      await v.restoreInto(ckpt);
      restored = v;
    },
  });
  const l = await receiver.start();
  const sender = await MigrationSender.connect(l.url, { token, moduleDigest: guest.digest });
  const r = await runPrecopy(new VmmSource(vmm), sender, opts);
  sender.close();
  // The receiver checked every round's image digest against the sender's; the guest started.
  if (restored) await restored.stop();
  await vmm.stop();
  await receiver.close();
  return r;
}

function fmt(v, d = 0) {
  return Number.isFinite(v) ? v.toFixed(d) : '–';
}

async function migrationSweep(guest) {
  const wss = quick ? [16, 64] : [16, 64, 256];
  const rates = quick ? [0, 50_000, 400_000] : [0, 20_000, 100_000, 400_000];
  const limit = 50;
  const configs = [
    { name: 'plain', opts: { stopRule: 'plain', downtimeLimitMs: limit, maxRounds: 15 } },
    { name: 'mp', opts: { stopRule: 'mp', downtimeLimitMs: limit, maxRounds: 15 } },
    // The paper's comparison: plain given a relaxed limit (3x) so that it can succeed.
    { name: 'plain-relaxed', opts: { stopRule: 'plain', downtimeLimitMs: limit * 3, maxRounds: 15 } },
  ];
  const rows = [];
  for (const ws of wss) {
    for (const rate of rates) {
      for (const c of configs) {
        const r = await migrateOnce(guest, ws, rate, c.opts);
        rows.push({ ws, rate, config: c.name, ...r });
        console.error(`migration ws=${ws}MiB rate=${rate} ${c.name}: ok=${r.ok} ${r.reason} rounds=${r.rounds} total=${fmt(r.totalMs)}ms down=${fmt(r.downtimeMs, 1)}ms bytes=${r.wireBytes}`);
      }
    }
  }
  const table = [
    '| working set | dirty rate (pages/s) | rule | ok | stop reason | rounds | total ms | downtime ms | wire MiB | pages sent |',
    '|---:|---:|---|---|---|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.ws} MiB | ${r.rate} | ${r.config} | ${r.ok ? 'yes' : '**no**'} | ${r.ok ? r.reason : 'no convergence'} | ${r.rounds} | ${fmt(r.totalMs)} | ${r.ok ? fmt(r.downtimeMs, 1) : '–'} | ${(r.wireBytes / MiB).toFixed(2)} | ${r.pagesSent} |`),
  ];
  const succ = (cfg) => rows.filter((r) => r.config === cfg);
  const rate = (cfg) => `${succ(cfg).filter((r) => r.ok).length}/${succ(cfg).length}`;
  // mp against plain-relaxed where both succeeded.
  const pairs = rows.filter((r) => r.config === 'mp' && r.ok).map((m) => [m, rows.find((p) => p.config === 'plain-relaxed' && p.ws === m.ws && p.rate === m.rate)]).filter(([, p]) => p?.ok);
  const heavy = pairs.filter(([m]) => m.rate > 0 && m.reason !== 'fits');
  const sum = (xs, f) => xs.reduce((a, x) => a + f(x), 0);
  const saving = (f) => (heavy.length ? 1 - sum(heavy, ([m]) => f(m)) / sum(heavy, ([, p]) => f(p)) : NaN);
  const md = [
    '# Migration sweep: plain vs mp (dirtier guest)',
    '',
    `Command: \`node bench/migration.mjs --only migration${quick ? ' --quick' : ''}\` (after \`npm run build\`). Source VMM, WebSocket link and receiver in one process on this machine (${(await import('node:os')).cpus().length} cores); downtime limit ${limit} ms; max 15 rounds; no bandwidth limit (the link is localhost: the rounds are CPU-bound, read + encode + digest + decode ≈ the "bandwidth" both rules measure). Random pattern; every page of the working set filled before the run.`,
    '',
    `Success: plain ${rate('plain')}, mp ${rate('mp')}, plain with a 3x relaxed limit ${rate('plain-relaxed')}.`,
    '',
    heavy.length
      ? `Where mp stopped early (pattern or max-rounds) and plain-relaxed also succeeded (${heavy.length} cells), mp's total time and wire bytes relative to plain-relaxed: ${(-saving((r) => r.totalMs) * 100).toFixed(0)}% and ${(-saving((r) => r.wireBytes) * 100).toFixed(0)}% (negative: mp used less). Against strict plain, every cell plain failed cost it ${rows.filter((r) => r.config === 'plain' && !r.ok).map((r) => (r.totalMs / 1000).toFixed(1)).join(', ')} s of pre-copy for nothing.`
      : 'No cell where mp stopped early and plain-relaxed succeeded.',
    '',
    ...table,
    '',
    '![migration](migration.svg)',
    '',
  ];
  writeFileSync(join(RESULTS, 'migration.md'), md.join('\n'));
  const series = ['plain', 'mp', 'plain-relaxed'].flatMap((cfg) =>
    wss.map((ws) => ({ name: `${cfg} ${ws} MiB`, points: rows.filter((r) => r.config === cfg && r.ws === ws && r.ok).map((r) => ({ x: Math.max(r.rate, 1000), y: r.totalMs })) })),
  );
  writeFileSync(join(RESULTS, 'migration.svg'), xyChart({ title: 'Migration total time (successful runs only)', xLabel: 'dirty rate, pages/s (0 drawn at 1k)', yLabel: 'total ms', series, xLog: true, yLog: true }));
}

async function snapshotSweep(guest) {
  const wsMiB = quick ? 256 : 1024;
  const rates = quick ? [0, 100_000] : [0, 20_000, 100_000, 400_000];
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-snap-'));
  const rows = [];
  const g = readGuest('dirtier');
  try {
    for (const rate of rates) {
      for (const mode of ['live', 'stop-the-world']) {
        const vmm = await dirtier(guest, wsMiB, rate);
        const path = join(dir, `${mode}-${rate}.snap`);
        const r = await takeSnapshot(new VmmSource(vmm), path, {
          live: mode === 'live', stopRule: 'mp', throttle: 'auto', downtimeLimitMs: 50, maxRounds: 30,
          guest: 'dirtier', moduleWasm: g.wasm, moduleDigest: guest.digest, macKey: token,
        });
        await vmm.stop();
        rows.push({ rate, mode, ...r, fileBytes: r.ok ? statSync(path).size : 0 });
        console.error(`snapshot ${wsMiB}MiB rate=${rate} ${mode}: ok=${r.ok} down=${fmt(r.downtimeMs, 1)}ms total=${fmt(r.totalMs)}ms file=${r.fileBytes}`);
        rmSync(path, { force: true });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const ratios = rates.map((rate) => {
    const l = rows.find((r) => r.rate === rate && r.mode === 'live');
    const s = rows.find((r) => r.rate === rate && r.mode === 'stop-the-world');
    return l && s ? l.downtimeMs / s.downtimeMs : NaN;
  });
  const md = [
    `# Snapshot: live vs stop-the-world (${wsMiB} MiB dirtier)`,
    '',
    `Command: \`node bench/migration.mjs --only snapshot${quick ? ' --quick' : ''}\`. Live: mp stop rule, throttle auto, downtime limit 50 ms. Downtime = the vCPU held (stop-and-copy until the file holds the complete image; the fsync and rename follow after the guest runs again, for both modes). Bytes = file size (page codecs: the dirtier's pages are one 8-byte store each, so they compress far below 4 KiB).`,
    '',
    '| dirty rate (pages/s) | mode | ok | rounds | downtime ms | total ms | file MiB | max throttle ms | live/stw downtime |',
    '|---:|---|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.rate} | ${r.mode} | ${r.ok ? 'yes' : 'no'} | ${r.rounds} | ${fmt(r.downtimeMs, 1)} | ${fmt(r.totalMs)} | ${(r.fileBytes / MiB).toFixed(1)} | ${r.maxThrottleMs} | ${r.mode === 'live' ? `${(ratios[rates.indexOf(r.rate)] * 100).toFixed(2)}%` : ''} |`),
    '',
    '![snapshot](snapshot.svg)',
    '',
  ];
  writeFileSync(join(RESULTS, 'snapshot.md'), md.join('\n'));
  writeFileSync(join(RESULTS, 'snapshot.svg'), barChart({
    title: `Snapshot downtime, ${wsMiB} MiB dirtier`, yLabel: 'downtime ms (log)', yLog: true,
    categories: rates.map((r) => `${r} p/s`),
    series: ['live', 'stop-the-world'].map((m) => ({ name: m, values: rates.map((rate) => Math.max(0.1, rows.find((r) => r.rate === rate && r.mode === m)?.downtimeMs ?? NaN)) })),
  }));
}

const { name, wasm } = readGuest('dirtier');
const guest = prepareGuest(name, wasm);
if (!only || only === 'migration') await migrationSweep(guest);
if (!only || only === 'snapshot') await snapshotSweep(guest);
process.exit(0);
