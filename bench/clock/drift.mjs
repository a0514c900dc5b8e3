#!/usr/bin/env node
// Guest clock drift under FT pauses and across failover, on real processes.
//
// Steady state: a protected cluster (secondary, primary, proxy) runs the clockprobe guest with
// a 10 ms guest self-timer (TICK 10) for --seconds per configuration: epoch policy (adaptive,
// periodic 25 ms, periodic 100 ms) x clock mode (freeze, step, slew). Every 100 ms the harness
//  - reads guest time through the proxy (TIME) and compares it with its own wall clock, and
//  - scrapes the primary's ftvm_clock_drift_seconds (the compensator's guest minus reference,
//    updated at every vCPU resume and slew tick, so it bounds |drift| until the next update).
// Failover: the secondary runs with its host clock 2 s behind or ahead (--clock-skew-ms);
// the primary is SIGKILLed after 3 s; guest time is read every 50 ms for --failover-seconds.
//
// usage: node bench/clock/drift.mjs [--seconds 60] [--failover-seconds 42] [--out bench/results/clock.md]
//        [--only steady|failover [--merge <earlier .json>]] [--report-from <earlier .json>]
// Needs a build (npm run build, or npx tsc -b packages/cli). Writes the table to --out and JSON next to it.
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProtected } from '../lib/cluster.mjs';
import { freePort, installCleanup, sleep, startFtvm } from '../lib/proc.mjs';
import { scrape } from '../lib/prom.mjs';

const argv = process.argv.slice(2);
const arg = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : def;
};
const SECONDS = Number(arg('seconds', 60));
const FAILOVER_SECONDS = Number(arg('failover-seconds', 42));
const OUT = arg('out', 'bench/results/clock.md');
const ONLY = arg('only', 'all');
/** Goal of step and slew in steady state: |drift| <= 100 us. */
const GOAL_NS = 100_000;

installCleanup();

const wallNs = () => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;

/** A line client on the proxy: one request at a time. */
class Probe {
  static connect(port) {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new Probe(s)));
      s.once('error', reject);
    });
  }
  constructor(socket) {
    this.socket = socket;
    this.buf = '';
    this.waiting = [];
    socket.setNoDelay(true);
    socket.setEncoding('utf8');
    socket.on('data', (d) => {
      this.buf += d;
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        this.waiting.shift()?.resolve(line);
      }
    });
    socket.on('close', () => {
      for (const w of this.waiting.splice(0)) w.reject(new Error('connection closed'));
    });
    socket.on('error', () => undefined);
  }
  cmd(line, timeoutMs = 30_000) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no reply to ${line} within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.push({ resolve: (l) => (clearTimeout(t), resolve(l)), reject: (e) => (clearTimeout(t), reject(e)) });
      this.socket.write(`${line}\n`);
    });
  }
  async time() {
    const sent = wallNs();
    const g = BigInt(await this.cmd('TIME'));
    return { sent, recv: wallNs(), g };
  }
  end() {
    this.socket.destroy();
  }
}

const ms = (ns) => Number(ns) / 1e6;
const fmt = (v, d = 3) => (v === null || v === undefined || Number.isNaN(v) ? '–' : v.toFixed(d));

async function steady(policy, intervalMs, mode) {
  const nodeArgs = ['--policy', policy, '--clock-mode', mode];
  if (intervalMs) nodeArgs.push('--interval-ms', String(intervalMs));
  const c = await startProtected({ guest: 'clockprobe', nodeArgs });
  try {
    const p = await Probe.connect(c.port);
    await p.cmd('TICK 10');
    const m0 = await scrape(c.metrics.primary);
    const t0 = performance.now();
    let maxInt = 0;
    const absInt = [];
    let maxExtHi = 0;
    let last = null;
    let lastInt = null;
    const rtts = [];
    while (performance.now() - t0 < SECONDS * 1000) {
      const tick = performance.now();
      const [s, m] = await Promise.all([p.time(), scrape(c.metrics.primary, 1000)]);
      last = s;
      rtts.push(ms(s.recv - s.sent));
      maxExtHi = Math.max(maxExtHi, Math.abs(ms(s.g - s.sent)));
      const d = m?.get('ftvm_clock_drift_seconds');
      if (d !== undefined) {
        lastInt = d * 1e3;
        absInt.push(Math.abs(lastInt));
        maxInt = Math.max(maxInt, Math.abs(lastInt));
      }
      await sleep(Math.max(0, 100 - (performance.now() - tick)));
    }
    const m1 = await scrape(c.metrics.primary);
    const stats = await p.cmd('STATS');
    p.end();
    const pauseSum = (m) => m?.get('ftvm_epoch_pause_seconds_sum') ?? 0;
    const pauseCount = (m) => m?.get('ftvm_epoch_pause_seconds_count') ?? 0;
    rtts.sort((a, b) => a - b);
    absInt.sort((a, b) => a - b);
    const q = (xs, f) => (xs.length ? xs[Math.min(xs.length - 1, Math.floor(f * xs.length))] : null);
    return {
      policy: intervalMs ? `${policy}-${intervalMs}` : policy,
      mode,
      seconds: (performance.now() - t0) / 1000,
      epochs: pauseCount(m1) - pauseCount(m0),
      pauseSumMs: (pauseSum(m1) - pauseSum(m0)) * 1000,
      pauseSumSinceBootMs: pauseSum(m1) * 1000,
      driftEndMs: lastInt,
      maxAbsDriftMs: maxInt,
      p50AbsDriftMs: q(absInt, 0.5),
      p99AbsDriftMs: q(absInt, 0.99),
      extEndLoMs: ms(last.g - last.recv),
      extEndHiMs: ms(last.g - last.sent),
      extMaxAbsHiMs: maxExtHi,
      rttP50Ms: rtts[Math.floor(rtts.length / 2)],
      guestStats: stats,
    };
  } finally {
    await c.stop();
  }
}

/** Secondary with a skewed host clock, primary on the true clock, proxy; all with metrics. */
async function startSkewed(skewMs, mode) {
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-clock-bench-'));
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  const [pa, pb, pp, ma, mb] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const urlA = `ws://127.0.0.1:${pa}`;
  const urlB = `ws://127.0.0.1:${pb}`;
  // info: the harness waits for the PROTECTED and PROMOTED lines.
  const common = ['--guest', 'clockprobe', '--token-file', tokenFile, '--log-level', 'info', '--clock-mode', mode];
  const procs = {};
  const stop = async () => {
    await Promise.all(Object.values(procs).map((x) => x.stop('SIGKILL', 2000)));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    procs.b = startFtvm(['secondary', '--listen', `127.0.0.1:${pb}`, '--node-id', 'b', '--metrics-port', String(mb), '--peer', urlA, `--clock-skew-ms=${skewMs}`, ...common], { name: 'b' });
    await procs.b.waitFor(/listening on/, 60_000);
    procs.a = startFtvm(['primary', '--listen', `127.0.0.1:${pa}`, '--node-id', 'a', '--metrics-port', String(ma), '--secondary', urlB, ...common], { name: 'a' });
    await procs.a.waitFor(/listening on/, 60_000);
    await procs.a.waitFor(/ PROTECTED:/, 60_000);
    procs.proxy = startFtvm(['proxy', '--port', String(pp), '--nodes', `${urlA},${urlB}`, '--token-file', tokenFile, '--log-level', 'warn'], { name: 'proxy' });
    await procs.proxy.waitFor(/listening on/, 60_000);
  } catch (e) {
    await stop();
    throw e;
  }
  return { procs, port: pp, metricsB: mb, stop };
}

async function failover(skewMs, mode) {
  const c = await startSkewed(skewMs, mode);
  try {
    const p = await Probe.connect(c.port);
    await p.cmd('TICK 10');
    const samples = [];
    const sampleFor = async (msTotal, every) => {
      const t0 = performance.now();
      while (performance.now() - t0 < msTotal) {
        const tick = performance.now();
        samples.push(await p.time());
        await sleep(Math.max(0, every - (performance.now() - tick)));
      }
    };
    await sampleFor(3000, 50);
    const nBefore = samples.length;
    const killedNs = wallNs();
    c.procs.a.proc.kill('SIGKILL');
    const promoted = c.procs.b.waitFor(/PROMOTED to primary/, 30_000);
    // Sample across the failover (requests wait in the proxy until the promoted node answers).
    const intDrift = [];
    let promotedAt = null;
    void promoted.then(() => (promotedAt = performance.now()));
    const t0 = performance.now();
    while (performance.now() - t0 < FAILOVER_SECONDS * 1000) {
      const tick = performance.now();
      const [s, m] = await Promise.all([p.time(), promotedAt !== null ? scrape(c.metricsB, 1000) : Promise.resolve(null)]);
      samples.push(s);
      const d = m?.get('ftvm_clock_drift_seconds');
      if (d !== undefined && promotedAt !== null) intDrift.push({ t: performance.now() - promotedAt, ms: d * 1e3 });
      await sleep(Math.max(0, 50 - (performance.now() - tick)));
    }
    await promoted;
    p.end();
    let decreases = 0;
    for (let i = 1; i < samples.length; i++) if (samples[i].g < samples[i - 1].g) decreases++;
    const before = samples[nBefore - 1];
    const firstAfter = samples.find((s) => s.sent > killedNs);
    const end = samples.at(-1);
    // Converged: the compensator's drift within `ms` of the new host's reference, and staying there.
    // 1 ms is the scale of one FT pause (slew shows each pause's lag until the next tick); 0.1 ms is the steady-state goal.
    const convergedWithin = (limitMs) => {
      let at = null;
      for (let i = intDrift.length - 1; i >= 0; i--) {
        if (Math.abs(intDrift[i].ms) > limitMs) break;
        at = intDrift[i].t;
      }
      return at;
    };
    return {
      skewMs,
      mode,
      samples: samples.length,
      decreases,
      guestBeforeKillMinusWallMs: ms(before.g - before.sent),
      firstAfterMinusWallMs: ms(firstAfter.g - firstAfter.sent),
      firstAfterMinusBeforeMs: ms(firstAfter.g - before.g),
      endMinusWallMs: ms(end.g - end.sent),
      intDriftFirstMs: intDrift[0]?.ms ?? null,
      intDriftEndMs: intDrift.at(-1)?.ms ?? null,
      convergedAfterMs: convergedWithin(GOAL_NS / 1e6),
      converged1msAfterMs: convergedWithin(1),
    };
  } finally {
    await c.stop();
  }
}

function machine() {
  return `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}, Node ${process.version}`;
}

const load = () => os.loadavg().map((v) => v.toFixed(1)).join(' / ');

async function main() {
  const res = { machine: machine(), command: `node bench/clock/drift.mjs ${argv.join(' ')}`.trim(), seconds: SECONDS, steady: [], failover: [] };
  if (argv.includes('--merge')) {
    // Keeps the other part of an earlier run (e.g. --only failover --merge clock.json re-measures the failover rows).
    const old = JSON.parse(readFileSync(arg('merge'), 'utf8'));
    if (ONLY === 'failover') Object.assign(res, { steady: old.steady, seconds: old.seconds, steadyCommand: old.command, steadyLoad: `${old.loadBefore} → ${old.loadAfter}` });
    if (ONLY === 'steady') res.failover = old.failover;
  }
  const started = performance.now();
  res.loadBefore = load();
  if (ONLY === 'all' || ONLY === 'steady') {
    for (const [policy, interval] of [['adaptive', 0], ['periodic', 25], ['periodic', 100]]) {
      for (const mode of ['freeze', 'step', 'slew']) {
        process.stderr.write(`bench clock: ${policy}${interval ? `-${interval}` : ''} ${mode} (${SECONDS} s)\n`);
        try {
          res.steady.push(await steady(policy, interval, mode));
        } catch (e) {
          res.steady.push({ policy: interval ? `${policy}-${interval}` : policy, mode, error: String(e?.message ?? e).split('\n')[0] });
        }
        process.stderr.write(`  ${JSON.stringify(res.steady.at(-1))}\n`);
      }
    }
  }
  if (ONLY === 'all' || ONLY === 'failover') {
    for (const [skew, mode] of [[-2000, 'slew'], [-2000, 'step'], [2000, 'slew'], [2000, 'step']]) {
      process.stderr.write(`bench clock: failover, secondary ${skew} ms, ${mode}\n`);
      try {
        res.failover.push(await failover(skew, mode));
      } catch (e) {
        res.failover.push({ skewMs: skew, mode, error: String(e?.message ?? e).split('\n')[0] });
      }
      process.stderr.write(`  ${JSON.stringify(res.failover.at(-1))}\n`);
    }
  }
  res.totalSeconds = (performance.now() - started) / 1000;
  res.loadAfter = load();
  writeFileSync(OUT.replace(/\.md$/, '.json'), JSON.stringify(res, null, 2));
  writeFileSync(OUT, report(res));
  process.stderr.write(`bench clock: wrote ${OUT} (${Math.round(res.totalSeconds)} s)\n`);
}

function report(res) {
  const L = [];
  L.push('# Clock drift: freeze vs step vs slew under FT pauses, and across failover', '');
  L.push(`Machine: ${res.machine}; load average (1/5/15 min) ${res.loadBefore} at the start, ${res.loadAfter} at the end (a shared machine: other builds and tests ran at the same time).  `);
  L.push(`Command: \`${res.command}\` (after \`npx tsc -b packages/cli\`), ${Math.round(res.totalSeconds)} s in all.`);
  if (res.steadyCommand) L.push(`  Steady-state rows from an earlier run: \`${res.steadyCommand}\` (load ${res.steadyLoad}).`);
  L.push('');
  L.push('## Steady state', '');
  L.push(
    `clockprobe guest with a 10 ms guest self-timer (TICK 10), ${res.seconds} s per row, sampled every 100 ms. ` +
      '**drift** = guest time minus reference, from the primary\'s `ftvm_clock_drift_seconds` (the compensator\'s value at ' +
      'the last vCPU resume or slew tick; between updates |drift| only shrinks, so it bounds what the guest could read). ' +
      '**external** = guest time read with `TIME` through the proxy minus the harness\'s wall clock when the request was sent ' +
      '(an upper bound of the drift: the guest read its clock after that; it includes the input path, ~RTT/2, and output commit ' +
      'does not affect it). **pauses** = epochs and the summed vCPU hold over the window (`ftvm_epoch_pause_seconds`).',
    '',
  );
  L.push('| policy | mode | epochs | summed pause (ms) | drift at end (ms) | \\|drift\\| p50 / p99 / max (ms) | external at end (ms) | max \\|external\\| (ms) | RTT p50 (ms) | goal (\\|drift\\| <= 0.1 ms) |');
  L.push('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of res.steady) {
    if (r.error) {
      L.push(`| ${r.policy} | ${r.mode} | – | – | – | – | – | – | – | ERROR: ${r.error} |`);
      continue;
    }
    let goal;
    if (r.mode === 'freeze') {
      // Freeze shows the drift: it should equal minus the summed pause since boot.
      goal = `drifts by the pauses: ${fmt(r.driftEndMs, 1)} vs -${fmt(r.pauseSumSinceBootMs, 1)} summed since boot`;
    } else {
      goal =
        r.maxAbsDriftMs * 1e6 <= GOAL_NS
          ? 'met (max <= 0.1 ms)'
          : r.p99AbsDriftMs * 1e6 <= GOAL_NS
            ? `met at p99; MISSED at max (${fmt(r.maxAbsDriftMs)} ms)`
            : `MISSED (p99 ${fmt(r.p99AbsDriftMs)} ms, max ${fmt(r.maxAbsDriftMs)} ms)`;
    }
    L.push(
      `| ${r.policy} | ${r.mode} | ${r.epochs} | ${fmt(r.pauseSumMs, 1)} | ${fmt(r.driftEndMs)} | ${fmt(r.p50AbsDriftMs)} / ${fmt(r.p99AbsDriftMs)} / ${fmt(r.maxAbsDriftMs)} | ${fmt(r.extEndHiMs)} | ${fmt(r.extMaxAbsHiMs)} | ${fmt(r.rttP50Ms)} | ${goal} |`,
    );
  }
  L.push('', '## Failover to a secondary whose host clock is skewed', '');
  L.push(
    `Adaptive policy, default clock options (max slew 50000 ppm, step threshold 1000 ms). The secondary runs with \`--clock-skew-ms\`; the primary is SIGKILLed after 3 s; ` +
      `guest time is read through the proxy every 50 ms for ${FAILOVER_SECONDS} s (requests wait in the proxy during the failover). ` +
      'Offsets are guest time minus the harness\'s (true) wall clock at the request; the new host\'s reference is wall + skew. ' +
      '**drift** is the promoted node\'s compensator value (against its own reference).',
    '',
  );
  L.push('| secondary clock | mode | samples | decreases | before kill (ms) | first after (ms) | jump over the failover (ms) | at end (ms) | drift first / end (ms) | within 1 ms / 0.1 ms of the reference for good after |');
  L.push('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of res.failover) {
    if (r.error) {
      L.push(`| ${r.skewMs > 0 ? '+' : ''}${r.skewMs} ms | ${r.mode} | ERROR: ${r.error} |||||||`);
      continue;
    }
    L.push(
      `| ${r.skewMs > 0 ? '+' : ''}${r.skewMs} ms | ${r.mode} | ${r.samples} | ${r.decreases} | ${fmt(r.guestBeforeKillMinusWallMs, 1)} | ${fmt(r.firstAfterMinusWallMs, 1)} | ${fmt(r.firstAfterMinusBeforeMs, 1)} | ${fmt(r.endMinusWallMs, 1)} | ${fmt(r.intDriftFirstMs, 1)} / ${fmt(r.intDriftEndMs, 3)} | ${r.converged1msAfterMs == null ? 'not in the window' : `${(r.converged1msAfterMs / 1000).toFixed(1)} s`} / ${r.convergedAfterMs === null ? 'not in the window' : `${(r.convergedAfterMs / 1000).toFixed(1)} s`} |`,
    );
  }
  L.push('', '## Goals', '');
  const ok = (r) => r && !r.error;
  const freeze = res.steady.filter((r) => ok(r) && r.mode === 'freeze');
  const step = res.steady.filter((r) => ok(r) && r.mode === 'step');
  const slew = res.steady.filter((r) => ok(r) && r.mode === 'slew');
  L.push(
    `- **freeze drifts by the summed pause time (shown, not hidden)**: ${freeze.map((r) => `${r.policy} ${fmt(r.driftEndMs, 1)} ms vs ${fmt(-r.pauseSumSinceBootMs, 1)} ms summed pause since boot`).join('; ')}. ` +
      'Freeze is QEMU\'s behaviour: the lag grows without bound with the epoch rate and the pause length.',
  );
  const stepMax = Math.max(...step.map((r) => r.maxAbsDriftMs));
  L.push(
    `- **step keeps |drift| <= 100 us**: ${stepMax * 1e6 <= GOAL_NS ? 'met' : 'MISSED'} (max ${fmt(stepMax)} ms over ${step.length} runs): every resume sets guest time to the reference, and it then runs at the host rate.`,
  );
  const slewP50 = Math.max(...slew.map((r) => r.p50AbsDriftMs));
  const slewP99 = Math.max(...slew.map((r) => r.p99AbsDriftMs));
  const slewMax = Math.max(...slew.map((r) => r.maxAbsDriftMs));
  L.push(
    `- **slew keeps |drift| <= 100 us**: ${slewMax * 1e6 <= GOAL_NS ? 'met' : slewP50 * 1e6 <= GOAL_NS ? `met at the median (p50 <= ${fmt(slewP50)} ms), MISSED at p99 (${fmt(slewP99)} ms) and max (${fmt(slewMax)} ms)` : 'MISSED'}. ` +
      'Why: slew never jumps, so right after a resume the guest lags by that one hold (the samples catch the compensator right after resumes); ' +
      'the lag is gone one tick (10 ms) later. The p99/max are the longest single holds, which on this loaded 2-CPU machine reach 0.3–1+ ms ' +
      '(the summed pause / epochs is ~0.1 ms). Meeting 100 us at every instant needs every hold under 100 us, or step mode.',
  );
  const fo = res.failover.filter(ok);
  L.push(
    `- **failover: guest time after promotion >= before**: ${fo.every((r) => r.decreases === 0) ? 'met' : 'MISSED'} (${fo.map((r) => `${r.skewMs > 0 ? '+' : ''}${r.skewMs} ms ${r.mode}: ${r.decreases} decreases in ${r.samples} reads`).join('; ')}).`,
  );
  for (const r of fo.filter((x) => x.skewMs < 0)) {
    L.push(
      `- **${r.skewMs} ms, ${r.mode}: converges to the new reference within the slew bound**: the promoted guest started ${fmt(r.intDriftFirstMs, 0)} ms ahead of its reference and ran slower (at most 50000 ppm): ` +
        (r.converged1msAfterMs != null ? `met: within 1 ms of it for good after ${(r.converged1msAfterMs / 1000).toFixed(1)} s (${fmt(r.intDriftFirstMs, 0)} ms at 5 % takes ${(r.intDriftFirstMs / 50).toFixed(1)} s; the last ms goes at a proportional rate, and single pause lags of up to ~1 ms under load reset the 'for good').` : `still ${fmt(r.intDriftEndMs, 1)} ms ahead at the end of the window (expected: ${fmt(r.intDriftFirstMs, 0)} ms / 5 % ≈ ${Math.round(r.intDriftFirstMs / 50)} s).`),
    );
  }
  for (const r of fo.filter((x) => x.skewMs > 0)) {
    L.push(
      `- **+${r.skewMs} ms, ${r.mode}: steps or slews forward as configured**: ${r.mode === 'step' ? 'step mode steps at every resume' : 'the gap (+2 s skew + failover time) is over the 1000 ms step threshold'}, so guest time stepped forward by ${fmt(r.firstAfterMinusBeforeMs, 0)} ms at the resume (its first drift reading ${fmt(r.intDriftFirstMs, 3)} ms); drift ${fmt(r.intDriftEndMs, 3)} ms at the end. ` +
        'With a step threshold above the gap slew mode slews forward instead (test/integration/clock-failover.test.ts, at 500000 ppm).',
    );
  }
  L.push('');
  return L.join('\n');
}

if (argv.includes('--report-from')) {
  // Re-renders the table from a JSON written by an earlier run (no processes started).
  writeFileSync(OUT, report(JSON.parse(readFileSync(arg('report-from'), 'utf8'))));
} else {
  main().catch((e) => {
    process.stderr.write(`bench clock: ${e?.stack ?? e}\n`);
    process.exit(1);
  });
}
