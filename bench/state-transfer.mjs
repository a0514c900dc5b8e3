#!/usr/bin/env node
// Where the time goes when a whole guest moves (issue 26): each stage of the pre-copy path
// timed on its own over a filled dirtier image, then the end-to-end runs it adds up to.
// Usage: node bench/state-transfer.mjs [--mib 256,1024] [--reps 3] [--only stages,migration,snapshot] [--chunk 1024] [--out file.json]
// (after npm run build).
import { writeFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { Vmm, prepareGuest, readGuest } from '../packages/vmm/dist/index.js';
import { PageEncoder, PageDecoder, ImageDigest, MAX_BATCH_PAGES } from '../packages/protocol/dist/index.js';
import { MigrationReceiver, MigrationSender, VmmSource, readSnapshot, runPrecopy, takeSnapshot } from '../packages/precopy/dist/index.js';
import { bootFilledDirtier, dirtierLine } from './lib/dirtier.mjs';

const args = process.argv.slice(2);
const opt = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
const mibs = opt('--mib', '256').split(',').map(Number);
const reps = Number(opt('--reps', '3'));
const out = opt('--out', null);
const only = opt('--only', null)?.split(',') ?? null;
const chunkPages = Number(opt('--chunk', '1024'));
const token = new Uint8Array(Buffer.from('bench-state-transfer'));
const { name, wasm } = readGuest('dirtier');
const guest = prepareGuest(name, wasm);
const now = () => performance.now();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function stages(vmm) {
  const n = vmm.memBytes / 4096;
  const all = new Uint32Array(n).map((_, i) => i);
  const t = { read: 0, encode: 0, digest: 0, decode: 0, rxDigest: 0 };
  const enc = new PageEncoder();
  const dig = new ImageDigest();
  const dec = new PageDecoder({ shared: true });
  const rx = new ImageDigest();
  dec.ensure(vmm.memBytes);
  const img = dec.image;
  const sink = { base: (p) => img.subarray(p * 4096, (p + 1) * 4096), put: (p, page) => { img.set(page, p * 4096); rx.update(p, page); } };
  let wire = 0;
  let spare;
  for (let i = 0; i < n; i += chunkPages) {
    const pages = all.subarray(i, Math.min(n, i + chunkPages));
    let a = now();
    // As VmmSource does: the buffer of the previous read is filled again (warm pages).
    const data = await vmm.readPageList(pages, spare);
    spare = undefined;
    let b = now(); t.read += b - a; a = b;
    const e = enc.encodeBatch(pages, data);
    b = now(); t.encode += b - a; a = b;
    for (let k = 0; k < pages.length; k++) dig.update(pages[k], data, k * 4096);
    b = now(); t.digest += b - a; a = b;
    // The receiver's decode with its digest: the sink's digest update is timed apart below.
    dec.decodeInto(e.payload, { base: sink.base, put: (p, page) => img.set(page, p * 4096) }, pages.length);
    b = now(); t.decode += b - a; a = b;
    for (let k = 0; k < pages.length; k++) rx.update(pages[k], img, pages[k] * 4096);
    b = now(); t.rxDigest += b - a;
    wire += e.wireBytes;
    if (data.byteOffset === 0) spare = data.buffer;
  }
  return { ...t, wire };
}

async function migrate(vmm) {
  let pre = null, restoreMs = 0, prestartMs = 0, waitMs = 0;
  const receiver = new MigrationReceiver({
    port: 0, token, moduleDigest: guest.digest,
    onBegin: (memBytes) => { const a = now(); pre = Vmm.prestart(guest, memBytes, { transferRestoreMemory: true }); pre.then(() => { prestartMs = now() - a; }); return pre; },
    onAbandoned: () => void pre?.then((v) => v.stop()),
    onComplete: async (ckpt) => { const w = now(); const v = await pre; const a = now(); waitMs = a - w; await v.restoreInto(ckpt); restoreMs = now() - a; await v.stop(); },
  });
  const l = await receiver.start();
  const sender = await MigrationSender.connect(l.url, { token, moduleDigest: guest.digest });
  const t0 = now();
  const marks = {};
  const r = await runPrecopy(new VmmSource(vmm), sender, {
    stopRule: 'mp', downtimeLimitMs: 50, maxRounds: 15,
    // When each phase first reported progress, ms after the start.
    onProgress: (p) => { const k = `${p.phase}${p.round}`; marks[k] ??= Math.round(now() - t0); marks[`${k}end`] = Math.round(now() - t0); },
  });
  sender.close();
  await receiver.close();
  return { totalMs: r.totalMs, downtimeMs: r.downtimeMs, round0Ms: r.roundStats[0]?.ms, rounds: r.rounds, prestartMs, waitPrestartMs: waitMs, restoreMs, wire: r.wireBytes, ok: r.ok, parts: r.downtimeParts, marks };
}

async function snapshot(vmm, dir, i) {
  const path = join(dir, `s${i}.snap`);
  const r = await takeSnapshot(new VmmSource(vmm), path, { live: false, guest: 'dirtier', moduleWasm: wasm, moduleDigest: guest.digest, macKey: token });
  const size = statSync(path).size;
  // A promotion's lower bound in this process: a verified image to a vCPU that answers (as
  // NodeHost.promote does: Vmm.restore of the committed image), decision -> first reply.
  const snap = await readSnapshot(path, token);
  rmSync(path);
  const a = now();
  const v = await Vmm.restore(guest, snap.checkpoint, { eventTimeoutMs: 30_000 });
  const restoredMs = now() - a;
  v.open(1000);
  await dirtierLine(v, 1000, 'STATS');
  const firstReplyMs = now() - a;
  await v.stop();
  return { downtimeMs: r.downtimeMs, totalMs: r.totalMs, fileBytes: size, ok: r.ok, promotion: { restoredMs, firstReplyMs } };
}

const res = { machine: `${cpus().length} x ${cpus()[0].model}, node ${process.version}`, chunkPages, runs: [] };
const dir = mkdtempSync(join(tmpdir(), 'ftvm-st-'));
try {
  for (const mib of mibs) {
    const vmm = await bootFilledDirtier(guest, mib);
    for (let r = 0; r < reps; r++) {
      const s = !only || only.includes('stages') ? await stages(vmm) : null;
      const m = !only || only.includes('migration') ? await migrate(vmm) : null;
      // A migration's stop-and-copy leaves the source held: resume it for the next run.
      if (m) vmm.resume();
      const sn = !only || only.includes('snapshot') ? await snapshot(vmm, dir, r) : null;
      const row = { mib, rep: r, stages: s, migration: m, snapshot: sn };
      res.runs.push(row);
      console.error(JSON.stringify(row));
    }
    await vmm.stop();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
if (out) writeFileSync(out, JSON.stringify(res, null, 1));
process.exit(0);
