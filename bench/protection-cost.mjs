#!/usr/bin/env node
// Where a protected request's CPU goes: `node bench/protection-cost.mjs [--requests N] [--repeat N]
// [--profile dir] [--out file.json]`. Runs native redis-server, `ftvm run --guest kv` and the
// protected trio (adaptive), drives each with redis-benchmark SET (random keys) at 50 clients and
// at one client, and reads every process's and every thread's utime+stime from /proc before and
// after each run. --profile writes a --cpu-prof profile of each role of one loaded protected run.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { redisBenchmark } from './lib/clients.mjs';
import { startNative, startProtected, startUnprotected } from './lib/cluster.mjs';
import { installCleanup, killAll, sleep, threadCpuSeconds } from './lib/proc.mjs';
import { topFunctions } from './lib/profile.mjs';

function args(argv) {
  const o = { requests: 50000, oneRequests: 5000, repeat: 2, profile: null, profileLoad: 'c50', out: null };
  for (let i = 0; i < argv.length; i++) {
    const v = () => argv[++i];
    if (argv[i] === '--requests') o.requests = Number(v());
    else if (argv[i] === '--one-requests') o.oneRequests = Number(v());
    else if (argv[i] === '--repeat') o.repeat = Number(v());
    else if (argv[i] === '--profile') o.profile = resolve(v());
    else if (argv[i] === '--profile-load') o.profileLoad = v();
    else if (argv[i] === '--out') o.out = resolve(v());
    else {
      process.stderr.write(`usage: node bench/protection-cost.mjs [--requests N] [--one-requests N] [--repeat N] [--profile dir] [--profile-load c50|c1] [--out file.json]\n`);
      process.exit(2);
    }
  }
  return o;
}

/** Runs fn with per-thread CPU of every process in procs measured around it; µs per request. */
async function measure(procs, fn) {
  const before = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, threadCpuSeconds(pid)]));
  const r = await fn();
  const after = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, threadCpuSeconds(pid)]));
  const requests = r.tests.reduce((s, t) => s + t.requests, 0);
  const roles = {};
  for (const [k, a] of Object.entries(after)) {
    const perThread = {};
    let total = 0;
    for (const [tid, t] of Object.entries(a)) {
      const d = t.s - (before[k][tid]?.s ?? 0);
      total += d;
      if (d > 0) perThread[`${tid} ${t.comm}`] = (1e6 * d) / requests;
    }
    roles[k] = { us: (1e6 * total) / requests, perThread };
  }
  const sum = Object.values(roles).reduce((s, x) => s + x.us, 0);
  return { rps: r.tests[0].rps, p50Ms: r.tests[0].p50Ms, p99Ms: r.tests[0].p99Ms, requests, sumUs: sum, roles };
}

const SYSTEMS = {
  native: () => startNative(),
  run: () => startUnprotected({ guest: 'kv' }),
  protected: (nodeFlags) => startProtected({ guest: 'kv', nodeArgs: ['--policy', 'adaptive'], nodeFlags }),
};

const LOADS = {
  c50: (o) => ({ clients: 50, requests: o.requests }),
  c1: (o) => ({ clients: 1, requests: o.oneRequests }),
};

async function once(name, load, o) {
  const sys = await SYSTEMS[name]();
  try {
    const pids = Object.fromEntries(Object.entries(sys.procs).map(([k, p]) => [k, p.proc.pid]));
    // A warm-up run (JIT, first epochs) before the measured one.
    await redisBenchmark({ port: sys.port, clients: 50, requests: 5000, tests: ['set'], timeoutMs: 120_000 });
    const l = LOADS[load](o);
    return await measure(pids, () => redisBenchmark({ port: sys.port, ...l, tests: ['set'], random: 100000, timeoutMs: 300_000 }));
  } finally {
    await sys.stop();
  }
}

async function profileRun(o) {
  mkdirSync(o.profile, { recursive: true });
  const flags = (role) => ['--cpu-prof', '--cpu-prof-dir', o.profile, '--cpu-prof-name', `${role}.cpuprofile`];
  const sys = await SYSTEMS.protected({ primary: flags('primary'), secondary: flags('secondary'), proxy: flags('proxy') });
  let r;
  try {
    await redisBenchmark({ port: sys.port, clients: 50, requests: 5000, tests: ['set'], timeoutMs: 120_000 });
    const pids = Object.fromEntries(Object.entries(sys.procs).map(([k, p]) => [k, p.proc.pid]));
    r = await measure(pids, () => redisBenchmark({ port: sys.port, ...LOADS[o.profileLoad](o), tests: ['set'], random: 100000, timeoutMs: 300_000 }));
  } finally {
    await sys.stop();
  }
  const tops = {};
  for (const role of ['primary', 'secondary', 'proxy']) {
    try {
      tops[role] = topFunctions(JSON.parse(readFileSync(join(o.profile, `${role}.cpuprofile`), 'utf8')), 25);
    } catch (e) {
      tops[role] = String(e);
    }
  }
  return { run: r, tops };
}

const o = args(process.argv.slice(2));
installCleanup();
const res = { started: new Date().toISOString(), options: o, runs: [] };
try {
  for (let i = 0; i < o.repeat; i++) {
    // Interleaved: each repeat runs every system once per load, so drift hits all alike.
    for (const load of Object.keys(LOADS)) {
      for (const name of Object.keys(SYSTEMS)) {
        const r = await once(name, load, o);
        res.runs.push({ name, load, ...r });
        const roles = Object.entries(r.roles).map(([k, v]) => `${k} ${v.us.toFixed(1)}`).join(', ');
        process.stderr.write(`${load} ${name}: ${r.rps.toFixed(0)} req/s p50 ${r.p50Ms} ms p99 ${r.p99Ms} ms; CPU µs/req ${r.sumUs.toFixed(1)} (${roles})\n`);
        await sleep(500);
      }
    }
  }
  if (o.profile) res.profile = await profileRun(o);
} finally {
  killAll();
}
const text = JSON.stringify(res, null, 1);
if (o.out) writeFileSync(o.out, text);
else process.stdout.write(text);
