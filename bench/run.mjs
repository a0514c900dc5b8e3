#!/usr/bin/env node
// ftvm replication benchmark: `npm run bench -- [--quick|--full] [--only a,b] [--out dir] [--repeat N]`.
// Starts the roles as real processes from the built CLI, drives them with real clients
// (redis-benchmark, wrk, the dirtier line protocol), scrapes each role's /metrics, and writes
// tables (Markdown), plots (SVG) and the raw numbers (JSON). See bench/README.md.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { incrAcrossKill, lineClient, redisBenchmark, wrk } from './lib/clients.mjs';
import { openWindow, startNative, startProtected, startUnprotected, startUnprotectedProxy } from './lib/cluster.mjs';
import { CLI, installCleanup, killAll, sleep } from './lib/proc.mjs';
import { topFunctions } from './lib/profile.mjs';
import { writeReport } from './lib/report.mjs';
import { summarizeTests } from './lib/stats.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const POLICIES = {
  'periodic-25': ['--policy', 'periodic', '--interval-ms', '25'],
  'periodic-100': ['--policy', 'periodic', '--interval-ms', '100'],
  'sync-io': ['--policy', 'sync-io'],
  adaptive: ['--policy', 'adaptive'],
};
/** Every configuration: the baseline, each policy, each policy without delta/LZ4 encoding. */
export const CONFIGS = {
  // Baselines (no replication): Debian's native redis-server (the kv workloads' reference row),
  // `ftvm run` serving clients itself, and a primary without a secondary behind the proxy (the
  // same path as the protected runs, minus the protection).
  native: null,
  unprotected: null,
  'unprotected-proxy': null,
  ...POLICIES,
  ...Object.fromEntries(Object.entries(POLICIES).map(([k, v]) => [`${k}-nocomp`, [...v, '--compression', 'off']])),
  // The early copy off: every dirty page copied inside the epoch's hold (the behaviour before 2ab3fae).
  'adaptive-noearly': [...POLICIES.adaptive, '--early-copy', 'off'],
  // The vCPU thread on SCHED_FIFO (needs root): no other process's time slice stretches a hold.
  'adaptive-fifo': [...POLICIES.adaptive, '--vcpu-sched', 'fifo'],
  // Group commit: output waits while a checkpoint awaits its ack (one epoch per round trip).
  'adaptive-gc': [...POLICIES.adaptive, '--group-commit', 'on'],
};
const PARTS = ['paired', 'paired-split', 'sweep', 'crash', 'profile'];
/**
 * Configurations fast enough (5-250k req/s) to take the larger request counts (`fastRequests`):
 * at 2,500 requests a command lasts a fraction of a second and the ratio between two of them is
 * mostly start-up noise.
 */
const FAST = new Set(['native', 'unprotected', 'unprotected-proxy', 'adaptive', 'adaptive-nocomp', 'adaptive-noearly', 'adaptive-fifo', 'adaptive-gc']);
const sized = (opts, name) => {
  const { fastRequests, ...rest } = opts;
  return FAST.has(name) && fastRequests ? { ...rest, requests: fastRequests } : rest;
};

/** Failure-detection flags of every measured system (--detection-ms); empty: the roles' defaults. */
const detection = { node: [], proxy: [] };

/** Sizes of each mode. Durations in s, working sets in 4 KiB pages, rates in pages/s. */
const MODES = {
  quick: {
    configs: ['native', 'unprotected', 'unprotected-proxy', 'periodic-25', 'periodic-100', 'sync-io', 'adaptive', 'adaptive-nocomp'],
    kv: { requests: 1000, tests: ['set', 'get'] },
    kvPipe: { requests: 4000, tests: ['set', 'get'], pipeline: 16 },
    kv1: { requests: 100, fastRequests: 1000, tests: ['set', 'get'], clients: 1 },
    httpSeconds: 1,
    repeat: 1,
    // One policy is enough to check the dirtier path; --full sweeps all four.
    sweep: { policies: ['adaptive'], wsPages: [1024], rates: [1000], seconds: 2 },
    crashTrials: [{ variant: 'default timeouts', trials: 1 }],
    pairs: 1,
    profile: false,
    deadlineMs: 10 * 60_000,
  },
  full: {
    configs: Object.keys(CONFIGS),
    // Sized so the slowest configurations (~500 req/s unpipelined) keep the run under ~25 min.
    kv: { requests: 2500, fastRequests: 25000, tests: ['set', 'get', 'incr', 'lpush'] },
    kvPipe: { requests: 16000, fastRequests: 200000, tests: ['set', 'get', 'incr', 'lpush'], pipeline: 16 },
    // One client: the latency a request pays for protection when nothing queues (periodic-100
    // answers ~10 requests a second here, hence the small count for the slow configurations).
    kv1: { requests: 300, fastRequests: 5000, tests: ['set', 'get'], clients: 1 },
    httpSeconds: 5,
    repeat: 3,
    // The rate that gives ~1,000 dirty pages per adaptive epoch (the pause goal's point) runs
    // longer: ~230 holds instead of ~58, so its p99 is a 99th percentile, not its slowest hold.
    sweep: { policies: [...Object.keys(POLICIES), 'adaptive-fifo'], wsPages: [16384, 262144], rates: [10, 100, 1000, 10000, 20000, 50000], seconds: 3, goal: { rate: 20000, seconds: 12 } },
    crashTrials: [
      { variant: 'default timeouts', trials: 5 },
      { variant: 'timeouts 200 ms', trials: 5, nodeArgs: ['--detection-timeout-ms', '200'], proxyArgs: ['--failover-timeout-ms', '200'] },
    ],
    pairs: 5,
    profile: true,
    deadlineMs: 45 * 60_000,
  },
};

function usage(msg) {
  process.stderr.write(
    `${msg ? `bench: ${msg}\n` : ''}usage: npm run bench -- [--quick | --full] [--only <name,...>] [--out <dir>] [--repeat N]\n` +
      `  --quick       one short run per configuration (CI; checks the harness, not the speed)\n` +
      `  --full        every configuration, repeats, the dirtier sweep, crash timing, profiles (default)\n` +
      `  --only        configurations and parts to run: ${[...Object.keys(CONFIGS), ...PARTS].join(', ')}\n` +
      `  --out         output directory (default: bench/results for --full, a temp dir for --quick)\n` +
      `  --repeat N    runs of each client workload per configuration (median and spread are reported)\n` +
      `  --pairs N     paired runs per workload and topology (default: 1 quick, 5 full)\n` +
      `  --detection-ms N  failure-detection timeout of every measured system: nodes --detection-timeout-ms, proxy\n` +
      `                --failover-timeout-ms (default: the roles' own, 1000 ms; the crash variants set their own)\n`,
  );
  process.exit(2);
}

function parseArgs(argv) {
  const o = { mode: 'full', only: null, out: null, repeat: null, pairs: null, detectionMs: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) usage(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') o.mode = 'quick';
    else if (a === '--full') o.mode = 'full';
    else if (a === '--only') {
      o.only = val().split(',').map((s) => s.trim()).filter(Boolean);
      const bad = o.only.filter((n) => !(n in CONFIGS) && !PARTS.includes(n));
      if (bad.length || o.only.length === 0) usage(`--only: unknown name(s) ${bad.join(', ')}`);
    } else if (a === '--out') o.out = resolve(val());
    else if (a === '--repeat') {
      o.repeat = Number(val());
      if (!Number.isInteger(o.repeat) || o.repeat < 1 || o.repeat > 20) usage('--repeat must be an integer in 1..20');
    } else if (a === '--pairs') {
      o.pairs = Number(val());
      if (!Number.isInteger(o.pairs) || o.pairs < 1 || o.pairs > 20) usage('--pairs must be an integer in 1..20');
    } else if (a === '--detection-ms') {
      o.detectionMs = Number(val());
      if (!Number.isInteger(o.detectionMs) || o.detectionMs < 10 || o.detectionMs > 600_000) usage('--detection-ms must be an integer in 10..600000');
    } else if (a === '-h' || a === '--help') usage();
    else usage(`unknown flag '${a}'`);
  }
  return o;
}

function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 }).trim();
  } catch (e) {
    return `${e.stdout ?? ''}${e.stderr ?? ''}`.trim() || 'unavailable';
  }
}

/** Which build ran: the tree's commit, or the frozen copy FTVM_BENCH_CLI names (COMMIT/DIRTY/TAKEN files at its root). */
function buildInfo() {
  const snap = resolve(CLI, '..', '..', '..', '..');
  const read = (f) => (existsSync(join(snap, f)) ? readFileSync(join(snap, f), 'utf8').trim() : null);
  if (process.env.FTVM_BENCH_CLI && read('COMMIT'))
    return { cli: CLI, commit: read('COMMIT'), dirty: (read('DIRTY') ?? '').length > 0, dirtyFiles: read('DIRTY'), snapshotTaken: read('TAKEN') };
  return {
    cli: CLI,
    commit: sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']),
    dirty: sh('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no']).length > 0,
  };
}

function machine() {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  return {
    nproc: os.availableParallelism(),
    cpu: cpuinfo.match(/model name\s*:\s*(.+)/)?.[1] ?? os.cpus()[0]?.model ?? 'unknown',
    ramGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    redisBenchmark: sh('redis-benchmark', ['--version']),
    wrk: sh('wrk', ['-v']).split('\n')[0],
    ...buildInfo(),
  };
}

const log = (msg) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

/**
 * Runs one client workload inside a measurement window on a running system. CPU per request:
 * each process's utime+stime (every thread) over the window, divided by the requests served.
 */
async function measured(sys, fn) {
  const w = await openWindow(sys);
  const r = await fn();
  const window = await w.close();
  const requests = r.tests.reduce((s, t) => s + (t.requests || 0), 0);
  if (requests > 0) {
    window.cpuUs = Object.fromEntries(Object.entries(window.cpuSec).map(([k, s]) => [k, s === null ? null : (1e6 * s) / requests]));
    window.cpuSumUs = Object.values(window.cpuUs).every((v) => v !== null) ? Object.values(window.cpuUs).reduce((s, v) => s + v, 0) : null;
  }
  return { ...r, window };
}

/**
 * Where the processes of a paired run may run. `shared`: anywhere (the kernel spreads every
 * process over every CPU). `split`: two hosts emulated on a 2-CPU machine, the deployment the
 * design assumes (the secondary on a machine of its own): the primary, the proxy and the client
 * on CPU 0, the secondary alone on CPU 1. The unprotected side gets CPU 0 only, as it would get
 * the primary's host only.
 */
const TOPOLOGIES = {
  shared: { roles: {}, client: undefined },
  split: { roles: { primary: '0', proxy: '0', secondary: '1' }, client: '0' },
};

/** Starts configuration `name` serving `guest` (the guest each workload drives: GUEST_OF); `cpus`: TOPOLOGIES[..].roles. */
function startConfig(name, guest, cpus = {}) {
  if (name === 'native') return startNative({ cpus: cpus.primary });
  if (name === 'unprotected') return startUnprotected({ guest, cpus: cpus.primary });
  if (name === 'unprotected-proxy') return startUnprotectedProxy({ guest, cpus });
  return startProtected({ guest, nodeArgs: [...CONFIGS[name], ...detection.node], proxyArgs: detection.proxy, cpus });
}

const GUEST_OF = { kv: 'kv', kvPipe: 'kv', kv1: 'kv', http: 'http' };
/** Workloads of the paired runs (the throughput goal; one client is a latency, not a throughput). */
const PAIRED = ['kv', 'kvPipe', 'http'];

/** One client run of workload `w` against a running system of configuration `name`; `cpus`: the client's CPUs. */
function runWorkload(w, sys, mode, name, cpus) {
  if (w === 'http') return wrk({ port: sys.port, seconds: mode.httpSeconds, cpus });
  return redisBenchmark({ port: sys.port, ...sized(mode[w], name), timeoutMs: 300_000, cpus });
}

async function benchConfig(name, mode, repeat, res) {
  const out = name === 'native' ? { kv: [], kvPipe: [], kv1: [] } : { kv: [], kvPipe: [], kv1: [], http: [] };
  res.configs[name] = out;
  const start = (guest) => startConfig(name, guest);
  // kv: redis-benchmark without and with pipelining, and with one client, on one kv system.
  let sys = await start('kv');
  try {
    for (let r = 0; r < repeat; r++) {
      out.kv.push(await measured(sys, () => runWorkload('kv', sys, mode, name)));
      out.kvPipe.push(await measured(sys, () => runWorkload('kvPipe', sys, mode, name)));
      out.kv1.push(await measured(sys, () => runWorkload('kv1', sys, mode, name)));
    }
  } finally {
    if (sys.logTail) (res.logs ??= {})[`config ${name} kv`] = sys.logTail();
    await sys.stop();
  }
  // The native reference serves the kv workloads only.
  if (name === 'native') return;
  // http: wrk against GET /counter.
  sys = await start('http');
  try {
    for (let r = 0; r < repeat; r++) out.http.push(await measured(sys, () => runWorkload('http', sys, mode, name)));
  } finally {
    if (sys.logTail) (res.logs ??= {})[`config ${name} http`] = sys.logTail();
    await sys.stop();
  }
}

/**
 * The throughput goal as paired runs: `unprotected` (`ftvm run`) and `adaptive` measured back to back,
 * alternating which goes first, each on a system started for that run and stopped after it, so
 * both sides of a ratio see the same state of a shared machine (here the same configuration's
 * throughput moves by up to ±30 % from one minute to the next, which a ratio of medians taken
 * minutes apart carries whole). One ratio per pair; the goal row gives their median.
 */
async function pairedThroughput(mode, res, topology = 'shared') {
  const sides = { base: 'unprotected', prot: 'adaptive' };
  const where = TOPOLOGIES[topology];
  const out = topology === 'shared' ? res.paired : (res.pairedSplit = {});
  const tag = topology === 'shared' ? '' : ` ${topology}`;
  for (const w of PAIRED) {
    const pairs = (out[w] = []);
    for (let i = 0; i < mode.pairs; i++) {
      const pair = {};
      for (const side of i % 2 === 0 ? ['base', 'prot'] : ['prot', 'base']) {
        const sys = await startConfig(sides[side], GUEST_OF[w], where.roles);
        try {
          pair[side] = await measured(sys, () => runWorkload(w, sys, mode, sides[side], where.client));
        } finally {
          if (sys.logTail) (res.logs ??= {})[`paired${tag} ${w} ${side} ${i + 1}`] = sys.logTail();
          await sys.stop();
        }
      }
      const rps = (r) => summarizeTests(r.tests).rps;
      pair.ratio = rps(pair.prot) / rps(pair.base);
      pairs.push(pair);
      log(`paired${tag} ${w} ${i + 1}/${mode.pairs}: unprotected ${rps(pair.base).toFixed(0)} req/s, adaptive ${rps(pair.prot).toFixed(0)} req/s, ratio ${pair.ratio.toFixed(2)}`);
    }
  }
}

/** Sets the working set in steps: growing guest memory by 1 GiB in one event stalls the node. */
async function growWorkingSet(conn, from, to) {
  const STEP_PAGES = 16384; // 64 MiB per SET: each grow is one short event and one epoch
  for (let p = Math.min(to, from + STEP_PAGES); ; p = Math.min(to, p + STEP_PAGES)) {
    const r = await conn.cmd(`SET ws_pages=${p} rate=0`, 60_000);
    if (r !== 'OK') throw new Error(`dirtier: SET ws_pages=${p}: ${r}`);
    if (p >= to) return;
  }
}

const statsOf = (line) => Object.fromEntries(line.split(' ').map((kv) => kv.split('=')).map(([k, v]) => [k, Number.isNaN(Number(v)) ? v : Number(v)]));

async function sweepPolicy(policy, sw, res) {
  const sys = await startConfig(policy, 'dirtier');
  let conn = null;
  try {
    conn = await lineClient(sys.port);
    let ws = 0;
    for (const wsPages of sw.wsPages) {
      await growWorkingSet(conn, ws, wsPages);
      ws = wsPages;
      await sleep(1000); // let the growth epochs drain before measuring
      for (const rate of sw.rates) {
        const set = await conn.cmd(`SET ws_pages=${wsPages} rate=${rate} pattern=random`);
        if (set !== 'OK') throw new Error(`dirtier: ${set}`);
        await sleep(500);
        const s0 = statsOf(await conn.cmd('STATS'));
        const w = await openWindow(sys);
        await sleep((rate === sw.goal?.rate ? sw.goal.seconds : sw.seconds) * 1000);
        const win = await w.close();
        const s1 = statsOf(await conn.cmd('STATS'));
        const point = { policy, wsPages, memMiB: (wsPages * 4096) / 2 ** 20, rate, guestPagesPerSec: (s1.pages_written - s0.pages_written) / win.seconds, window: win };
        res.sweep.push(point);
        log(
          `  ${policy} ws=${point.memMiB} MiB rate=${rate}: wrote ${point.guestPagesPerSec.toFixed(0)} pages/s, ${win.repl?.epochsPerSec.toFixed(1)} epochs/s, ` +
            `wire ${((win.repl?.wireBps ?? 0) / 1e6).toFixed(2)} MB/s, pause p99 ${win.repl?.pauseP99Ms?.toFixed(3)} ms`,
        );
      }
      const stop = await conn.cmd(`SET ws_pages=${wsPages} rate=0`);
      if (stop !== 'OK') throw new Error(`dirtier: ${stop}`);
    }
  } finally {
    conn?.close();
    (res.logs ??= {})[`sweep ${policy}`] = sys.logTail();
    await sys.stop();
  }
}

async function crashTrials(spec, res) {
  const entry = { variant: spec.variant, nodeArgs: spec.nodeArgs ?? [], proxyArgs: spec.proxyArgs ?? [], trials: [] };
  res.crash.push(entry);
  for (let i = 0; i < spec.trials; i++) {
    const sys = await startProtected({ guest: 'kv', nodeArgs: ['--policy', 'adaptive', ...(spec.nodeArgs ?? [])], proxyArgs: spec.proxyArgs ?? [] });
    try {
      const r = await incrAcrossKill({ port: sys.port, key: `crash${i}`, warmupMs: 1500, kill: () => sys.procs.primary.proc.kill('SIGKILL') });
      entry.trials.push(r);
      log(`  crash (${spec.variant}) ${i + 1}/${spec.trials}: first reply ${r.crashToReplyMs.toFixed(1)} ms after SIGKILL, counter gapless: ${r.gapless}`);
    } finally {
      await sys.stop();
    }
  }
}

/** One adaptive kv run with --cpu-prof on every role: where the time goes. */
async function profileRun(mode, res) {
  const dir = mkdtempSync(join(os.tmpdir(), 'ftvm-prof-'));
  const flags = (role) => ['--cpu-prof', '--cpu-prof-dir', join(dir, role)];
  const sys = await startProtected({ guest: 'kv', nodeArgs: [...CONFIGS.adaptive, ...detection.node], proxyArgs: detection.proxy, nodeFlags: { primary: flags('primary'), secondary: flags('secondary'), proxy: flags('proxy') } });
  let run;
  const us = () => Number(process.hrtime.bigint() / 1000n);
  let window;
  try {
    const from = us();
    run = await measured(sys, () => redisBenchmark({ port: sys.port, ...sized(mode.kv, 'adaptive'), timeoutMs: 300_000 }));
    window = [from, us()];
  } finally {
    await sys.stop();
  }
  res.profile = { dir, run, roles: {}, windowed: true };
  for (const role of ['primary', 'secondary', 'proxy']) {
    const d = join(dir, role);
    if (!existsSync(d)) continue;
    for (const f of readdirSync(d).filter((x) => x.endsWith('.cpuprofile'))) {
      // Node names profiles CPU.<date>.<pid>.<thread id>.<seq>.cpuprofile; thread 0 is the main thread.
      const tid = f.split('.').at(-3);
      const prof = JSON.parse(readFileSync(join(d, f), 'utf8'));
      let top = topFunctions(prof, 12, window);
      if (top.length === 0) {
        // The profile clock did not line up with ours: whole-process samples, start-up included.
        top = topFunctions(prof, 12);
        res.profile.windowed = false;
      }
      res.profile.roles[`${role} ${tid === '0' ? 'main thread' : `worker thread ${tid}`}`] = top;
    }
  }
}

/** A configuration that ran but produced no usable number is a failure too (the --quick contract). */
function validate(res) {
  const fail = (what, error) => res.failures.push({ what, error });
  for (const [name, c] of Object.entries(res.configs)) {
    if (res.failures.some((f) => f.what === `config ${name}`)) continue;
    for (const [w, runs] of Object.entries(c)) {
      if (runs.length === 0) fail(`config ${name} ${w}`, 'no runs');
      for (const r of runs) {
        if (!r.tests.every((t) => t.rps > 0 && Number.isFinite(t.p99Ms))) fail(`config ${name} ${w}`, 'a client run has no throughput or p99');
        if (CONFIGS[name] !== null && !(r.window.repl?.epochs > 0 && r.window.repl.wireBps > 0)) fail(`config ${name} ${w}`, 'no epochs or wire bytes in the primary metrics');
        else if (CONFIGS[name] !== null && (r.window.repl.failovers > 0 || !r.window.repl.protectedAtEnd))
          fail(`config ${name} ${w}`, `protection lost during the run (${r.window.repl.failovers} failover(s)); see the warnings section`);
      }
    }
  }
  for (const p of res.sweep) {
    if (!(p.window.repl?.epochs > 0)) fail(`sweep ${p.policy} ${p.memMiB} MiB ${p.rate}`, 'no epochs in the primary metrics');
    else if (p.window.repl.failovers > 0 || !p.window.repl.protectedAtEnd) fail(`sweep ${p.policy} ${p.memMiB} MiB ${p.rate}`, 'protection lost during the point; see the warnings section');
  }
  for (const [what, runs] of [['paired', res.paired], ['paired split', res.pairedSplit ?? {}]]) {
    for (const [w, pairs] of Object.entries(runs)) {
      for (const p of pairs) {
        if (!(p.ratio > 0 && Number.isFinite(p.ratio))) fail(`${what} ${w}`, 'a pair has no throughput ratio');
        else if (p.prot.window.repl?.failovers > 0 || !p.prot.window.repl?.protectedAtEnd) fail(`${what} ${w}`, 'protection lost during a protected run; see the warnings section');
      }
    }
  }
  for (const c of res.crash) for (const t of c.trials) if (!t.gapless) fail(`crash (${c.variant})`, 'the INCR counter skipped or repeated a value across the failover');
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const mode = opts.pairs === null ? MODES[opts.mode] : { ...MODES[opts.mode], pairs: opts.pairs };
  const repeat = opts.repeat ?? mode.repeat;
  if (opts.detectionMs !== null) {
    detection.node = ['--detection-timeout-ms', String(opts.detectionMs)];
    detection.proxy = ['--failover-timeout-ms', String(opts.detectionMs)];
  }
  const only = opts.only;
  const configs = only ? mode.configs.filter((c) => only.includes(c)).concat(only.filter((c) => c in CONFIGS && !mode.configs.includes(c))) : mode.configs;
  const runPart = (p) => (only ? only.includes(p) : p !== 'profile' || mode.profile);
  const outDir = opts.out ?? (opts.mode === 'full' ? join(ROOT, 'bench', 'results') : mkdtempSync(join(os.tmpdir(), 'ftvm-bench-quick-')));
  mkdirSync(outDir, { recursive: true });
  if (!existsSync(CLI)) usage(`${CLI} is missing: run 'npm run build' first`);
  for (const tool of ['redis-benchmark', 'wrk', 'redis-server']) if (sh('sh', ['-c', `command -v ${tool}`]) === 'unavailable') usage(`${tool} is not installed (Debian: apt-get install redis-tools redis-server wrk)`);
  installCleanup();

  const t0 = Date.now();
  const res = {
    meta: {
      mode: opts.mode,
      argv: process.argv.slice(2),
      command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
      started: new Date().toISOString(),
      machine: machine(),
      loadavgStart: os.loadavg(),
      repeat,
      detectionMs: opts.detectionMs,
      sizes: { kv: mode.kv, kvPipe: mode.kvPipe, kv1: mode.kv1, httpSeconds: mode.httpSeconds, sweep: mode.sweep },
    },
    configs: {},
    paired: {},
    pairedSplit: null,
    sweep: [],
    crash: [],
    profile: null,
    failures: [],
  };
  /** Writes the JSON and the report of what ran (validated: a missing part is a listed failure). */
  const write = () => {
    res.meta.finished = new Date().toISOString();
    res.meta.durationSec = (Date.now() - t0) / 1000;
    res.meta.loadavgEnd = os.loadavg();
    validate(res);
    writeFileSync(join(outDir, `results-${opts.mode}.json`), `${JSON.stringify(res, null, 1)}\n`);
    const files = writeReport(res, outDir);
    log(`wrote ${[`results-${opts.mode}.json`, ...files].map((f) => join(outDir, f)).join(', ')}`);
  };
  // Past the deadline the parts that finished are still written, with the deadline as a failure.
  const deadline = setTimeout(() => {
    log(`deadline of ${mode.deadlineMs / 60_000} min passed: stopping`);
    killAll();
    res.failures.push({ what: 'deadline', error: `the run passed ${mode.deadlineMs / 60_000} min; the parts not finished by then are missing or partial` });
    try {
      write();
    } catch (e) {
      log(`writing the partial results failed: ${e?.message ?? e}`);
    }
    process.exit(1);
  }, mode.deadlineMs);
  deadline.unref();
  const attempt = async (what, fn) => {
    const t = Date.now();
    log(`${what} ...`);
    try {
      await fn();
      log(`${what}: done in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    } catch (e) {
      res.failures.push({ what, error: String(e?.message ?? e).slice(0, 2000) });
      log(`${what}: FAILED: ${e?.message ?? e}`);
    }
  };

  for (const name of configs) await attempt(`config ${name}`, () => benchConfig(name, mode, repeat, res));
  if (runPart('paired')) await attempt(`paired throughput (unprotected vs adaptive, ${mode.pairs} pair(s) per workload)`, () => pairedThroughput(mode, res));
  if (runPart('paired-split'))
    await attempt(`paired throughput, secondary on a CPU of its own (${mode.pairs} pair(s) per workload)`, async () => {
      if (os.availableParallelism() < 2) throw new Error(`needs 2 CPUs (one per emulated host), this machine has ${os.availableParallelism()}`);
      await pairedThroughput(mode, res, 'split');
    });
  if (runPart('sweep')) {
    const pols = mode.sweep.policies.filter((p) => !only || !configs.some((c) => mode.sweep.policies.includes(c)) || configs.includes(p));
    for (const p of pols) await attempt(`dirtier sweep ${p}`, () => sweepPolicy(p, mode.sweep, res));
  }
  if (runPart('crash')) for (const spec of mode.crashTrials) await attempt(`crash-to-first-reply (${spec.variant})`, () => crashTrials(spec, res));
  if (runPart('profile')) await attempt('profile (adaptive kv, --cpu-prof on every role)', () => profileRun(mode, res));

  write();
  log(`total ${res.meta.durationSec.toFixed(0)} s, ${res.failures.length} failure(s)`);
  clearTimeout(deadline);
  killAll();
  process.exit(res.failures.length ? 1 : 0);
}

main().catch((e) => {
  process.stderr.write(`bench: ${e?.stack ?? e}\n`);
  killAll();
  process.exit(1);
});
