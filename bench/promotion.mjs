#!/usr/bin/env node
// Promotion after a SIGKILLed primary (issue 26, must show 2), real processes on loopback:
// secondary, primary and proxy with a dirtier guest filled to N MiB; one client on the proxy
// asks STATS, waits for the answer, the primary is SIGKILLed, and the client asks again at once.
// - crash -> first reply: from the SIGKILL to the answer of that request, at the client.
// - decision -> first event: the survivor's "promoted guest handled its first event" line
//   (from the promote decision to the first event batch the promoted guest answered).
// - restore: the PROMOTED line (decision -> vCPU running); inPlace: the ready vCPU was used.
// - RSS of each node before the kill (/proc/<pid>/status VmRSS).
// Usage: node bench/promotion.mjs [--mib 16,256,1024] [--reps 3] [--inproc] [--out file.json] (after npm run build).
// FTVM_BENCH_CLI=<other checkout>/packages/cli/dist/main.js runs another build (the "before").
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { startProtected } from './lib/cluster.mjs';
import { CLI, installCleanup, sleep } from './lib/proc.mjs';

installCleanup();
const args = process.argv.slice(2);
const opt = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
const mibs = opt('--mib', '16,256,1024').split(',').map(Number);
const reps = Number(opt('--reps', '3'));
const out = opt('--out', null);
const PAGES_PER_MIB = 256;

/** A line client on the proxy: ask(text) resolves with the next reply line. */
async function lineClient(port) {
  const s = connect(port, '127.0.0.1');
  await new Promise((r, j) => s.once('connect', r).once('error', j));
  s.setNoDelay(true);
  let buf = '';
  const waiting = [];
  s.on('data', (d) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      waiting.shift()?.(line);
    }
  });
  return {
    ask(text, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no reply to ${text} in ${timeoutMs} ms`)), timeoutMs);
        waiting.push((l) => {
          clearTimeout(t);
          if (l.startsWith('ERR')) reject(new Error(`dirtier: ${l}`));
          else resolve(l);
        });
        s.write(`${text}\n`);
      });
    },
    end: () => s.destroy(),
  };
}

const rssMiB = (pid) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : null;
};
const field = (line, k) => {
  const m = new RegExp(`${k}[=:]"?([\\w.]+)`).exec(line ?? '');
  return m ? m[1] : null;
};

async function once(mib) {
  // Link-close detection is immediate on a SIGKILL; the 1 s silence timeout is not what is measured.
  const c = await startProtected({ guest: 'dirtier', nodeArgs: ['--log-level', 'info', '--event-timeout-ms', '30000'] });
  try {
    const cl = await lineClient(c.port);
    for (let m = Math.min(64, mib); ; m = Math.min(mib, m + 64)) {
      await cl.ask(`SET ws_pages=${m * PAGES_PER_MIB} rate=0`);
      await cl.ask('FILL');
      if (m >= mib) break;
    }
    // Let the last epochs commit and the ready vCPU (if any) catch up.
    await sleep(3000);
    const rss = { primary: rssMiB(c.procs.primary.proc.pid), secondary: rssMiB(c.procs.secondary.proc.pid) };
    await cl.ask('STATS');
    const from = c.procs.secondary.lines.length;
    const killWall = Date.now();
    const t0 = performance.now();
    c.procs.primary.proc.kill('SIGKILL');
    const reply = cl.ask('STATS', 60_000);
    await reply;
    const crashToReplyMs = performance.now() - t0;
    // Lines after the kill only: a run where node b was promoted before it (a stall) is void.
    const after = async (re, ms) => {
      for (const end = Date.now() + ms; Date.now() < end; await sleep(20)) {
        const l = c.procs.secondary.lines.slice(from).find((x) => re.test(x));
        if (l !== undefined) return l;
      }
      return null;
    };
    const promoted = await after(/PROMOTED to primary/, 10_000);
    if (promoted === null) throw new Error('node b was not promoted after the kill (it was primary already?)');
    const first = await after(/promoted guest handled its first event/, 2000);
    cl.end();
    // The survivor's lines after the kill, at ms since it (their HH:MM:SS.mmm stamps, UTC).
    const day = killWall - (killWall % 86_400_000);
    const timeline = c.procs.secondary.lines.slice(from).flatMap((l) => {
      const m = /^(\d\d):(\d\d):(\d\d)\.(\d{3}) \S+\s+\[\w+\] (.{0,60})/.exec(l);
      return m ? [`${(day + ((+m[1] * 60 + +m[2]) * 60 + +m[3]) * 1000 + +m[4]) - killWall} ms ${m[5]}`] : [];
    });
    return {
      mib,
      crashToReplyMs: Math.round(crashToReplyMs * 10) / 10,
      decisionToFirstEventMs: first ? Number(field(first, 'sinceDecisionMs')) : null,
      restoreMs: Number(field(promoted, 'restoreMs')),
      inPlace: field(promoted, 'inPlace') === 'true',
      rssMiB: rss,
      timeline,
    };
  } catch (e) {
    for (const [k, p] of Object.entries(c.procs)) process.stderr.write(`--- ${k}\n${p.lines.slice(-25).join('\n')}\n`);
    throw e;
  } finally {
    await c.stop();
  }
}

/**
 * --inproc: the promotion's own part in one process, no proxy and no kill: a filled dirtier's
 * image written into a prestarted vCPU (as the secondary's ReadyVcpu does), then decision ->
 * restoreInto(..., { inPlace }) -> the first event (STATS on a new connection) answered.
 */
async function inproc(mib, reps) {
  const { Vmm, GuestImage, prepareGuest, readGuest } = await import('../packages/vmm/dist/index.js');
  const { bootFilledDirtier, dirtierLine } = await import('./lib/dirtier.mjs');
  const { name, wasm } = readGuest('dirtier');
  const guest = prepareGuest(name, wasm);
  const src = await bootFilledDirtier(guest, mib);
  const img = new GuestImage();
  img.apply(await src.collect(true));
  await src.stop();
  const rows = [];
  for (let r = 0; r < reps; r++) {
    const v = await Vmm.prestart(guest, 0, { eventTimeoutMs: 30_000 });
    // As ReadyVcpu copies: 16 MiB slices, at most 2 in flight, buffers reused.
    for (let at = 0; at < img.memBytes; at += 16 << 20) {
      while (v.imageWritesInFlight >= 2) await sleep(1);
      const data = v.imageBuffer(Math.min(img.memBytes, at + (16 << 20)) - at);
      data.set(img.memory().subarray(at, at + data.length));
      v.writeImage(img.memBytes, at, data);
    }
    while (v.imageWritesInFlight > 0) await sleep(10);
    await sleep(200);
    const meta = { format: 1, moduleDigest: guest.digest, epoch: img.epoch, memBytes: img.memBytes, memory: new Uint8Array(0), globals: img.globals, devices: img.devices };
    const a = performance.now();
    await v.restoreInto(meta, { inPlace: true });
    const b = performance.now();
    v.open(1000);
    await dirtierLine(v, 1000, 'STATS');
    const c = performance.now();
    await dirtierLine(v, 1000, 'STATS');
    const d = performance.now();
    const ms = (x) => Math.round(x * 100) / 100;
    rows.push({ mib, rep: r, startMs: ms(b - a), decisionToFirstEventMs: ms(c - a), secondEventMs: ms(d - c) });
    console.error(JSON.stringify(rows.at(-1)));
    await v.stop();
  }
  return rows;
}

if (args.includes('--inproc')) {
  const rows = [];
  for (const mib of mibs) rows.push(...(await inproc(mib, reps)));
  const res = { machine: `${cpus().length} x ${cpus()[0].model}, node ${process.version}`, loadavg: loadavg()[0], inproc: rows };
  if (out) writeFileSync(out, JSON.stringify(res, null, 1));
  process.exit(0);
}

const res = { machine: `${cpus().length} x ${cpus()[0].model}, node ${process.version}`, cli: CLI, loadavgStart: loadavg()[0], runs: [] };
// Sizes interleaved: each rep runs every size once.
for (let r = 0; r < reps; r++) {
  for (const mib of mibs) {
    const row = { rep: r, ...(await once(mib)) };
    res.runs.push(row);
    console.error(JSON.stringify(row));
  }
}
res.loadavgEnd = loadavg()[0];
if (out) writeFileSync(out, JSON.stringify(res, null, 1));
process.exit(0);
