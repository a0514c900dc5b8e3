// The VMM's event path (issue 24): `ftvm run --guest kv` against Debian's native redis-server,
// the same redis-benchmark against each, and `ftvm run --guest http` under wrk against the same
// command from another build (--base: a checkout of an older head, built). Servers stay up for
// the whole run; each round runs the client against every server in turn, the order rotating
// every round (the machine is shared and noisy: the per-round ratio pairs runs seconds apart).
// Server CPU per request is utime+stime of the server process (every thread) over the client
// run, from /proc/<pid>/stat, divided by the requests.
//
// Usage: npm run build && node bench/event-path.mjs [--rounds N] [--requests N] [--base <checkout>]
//          [--only kv,latency,http] [--worker] [--quick] [--out file]
// --worker adds this build's `ftvm run --vcpu worker` (the vCPU in a worker thread) beside the
// default (inline) in the same rounds.
// Writes bench/results/event-path.md (--quick: 1 small round, printed only).

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { redisBenchmark, wrk } from './lib/clients.mjs';
import { cpuSeconds, freePort, installCleanup, start, startFtvm } from './lib/proc.mjs';
import { median, spread } from './lib/stats.mjs';

const args = process.argv.slice(2);
const KNOWN = new Set(['--rounds', '--requests', '--base', '--only', '--quick', '--out', '--seconds', '--worker']);
const FLAGS = new Set(['--quick', '--worker']);
for (let i = 0; i < args.length; i++) {
  if (!KNOWN.has(args[i])) {
    console.error(`event-path: unknown argument ${args[i]}`);
    process.exit(2);
  }
  if (!FLAGS.has(args[i])) i++;
}
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const quick = args.includes('--quick');
const ROUNDS = Number(opt('--rounds', quick ? 1 : 5));
const REQUESTS = Number(opt('--requests', quick ? 5000 : 100_000));
const WRK_SECONDS = Number(opt('--seconds', quick ? 2 : 5));
const BASE = opt('--base', null);
const WORKER = args.includes('--worker');
const ONLY = new Set(String(opt('--only', 'kv,latency,http')).split(','));
const OUT = opt('--out', quick ? null : fileURLToPath(new URL('./results/event-path.md', import.meta.url)));
const LAT_REQUESTS = quick ? 2000 : 20_000;

installCleanup();

async function ftvmServer(name, guest, cli, extra = []) {
  const port = await freePort();
  const runArgs = ['run', '--guest', guest, '--port', String(port), ...extra];
  const p = cli
    ? start(process.execPath, ['--min-semi-space-size=16', cli, ...runArgs], { name })
    : startFtvm(runArgs, { name });
  await p.waitFor(/listening|127\.0\.0\.1:\d+/i, 120_000);
  return { name, port, p };
}

async function redisServer() {
  const port = await freePort();
  const p = start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { name: 'redis-server' });
  await p.waitFor(/Ready to accept connections/, 30_000);
  return { name: 'redis-server (native)', port, p };
}

/** One client run against a server, with the server's CPU per request. */
async function measure(server, run) {
  const c0 = cpuSeconds(server.p.proc.pid);
  const r = await run(server.port);
  const c1 = cpuSeconds(server.p.proc.pid);
  const requests = r.tests.reduce((n, t) => n + (t.requests || 0), 0);
  return { ...r, cpuUsPerReq: c0 !== null && c1 !== null && requests ? ((c1 - c0) * 1e6) / requests : null };
}

const rotate = (xs, k) => xs.map((_, i) => xs[(i + k) % xs.length]);
const fmt = (x, d = 0) => (x === null || x === undefined ? '–' : x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));
const med = (xs, d = 0) => `${fmt(median(xs), d)} (${spread(xs) ? spread(xs).map((v) => fmt(v, d)).join('–') : '–'})`;

const md = [];
const log = (s = '') => {
  md.push(s);
  console.log(s);
};

let head = '';
try {
  head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
} catch {
  head = '?';
}
const baseHead = BASE ? execFileSync('git', ['-C', BASE, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim() : null;
const redisVersion = execFileSync('redis-server', ['--version'], { encoding: 'utf8' }).trim().split(' ').find((w) => w.startsWith('v='));

log('# The VMM event path: `ftvm run` against native redis-server, and wrk against the http guest');
log();
log(`Written by \`node bench/event-path.mjs ${args.join(' ')}\` (after \`npm run build\`) on ${new Date().toISOString().slice(0, 10)}, head ${head}${BASE ? `, base ${baseHead} (${BASE})` : ''}.`);
log();
log(`- machine: ${cpus().length} × ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB, shared with other engineers' test runs (1-min load average ${loadavg()[0].toFixed(1)} at the start); Node ${process.version}; redis-server ${redisVersion}`);
log(`- ${ROUNDS} rounds; in each, every server in turn, the order rotating each round. Server CPU per request: /proc/<pid>/stat utime+stime of the server (all threads) over the client run / requests.`);
log();

const result = { head, base: baseHead, rounds: ROUNDS, kv: {}, latency: {}, http: {} };

if (ONLY.has('kv') || ONLY.has('latency')) {
  const servers = [await ftvmServer('ftvm run --guest kv', 'kv'), await redisServer()];
  if (WORKER) servers.push(await ftvmServer('ftvm run --guest kv --vcpu worker', 'kv', undefined, ['--vcpu', 'worker']));
  if (BASE) servers.push(await ftvmServer(`ftvm run --guest kv (base ${baseHead})`, 'kv', join(resolve(BASE), 'packages/cli/dist/main.js')));
  const kv = Object.fromEntries(servers.map((s) => [s.name, { SET: [], GET: [], cpu: [], p50: [] }]));
  const lat = Object.fromEntries(servers.map((s) => [s.name, { SET: [], GET: [] }]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const s of rotate(servers, r)) {
      if (ONLY.has('kv')) {
        const m = await measure(s, (port) => redisBenchmark({ port, clients: 50, requests: REQUESTS, tests: ['set', 'get'], timeoutMs: 600_000 }));
        for (const t of m.tests) kv[s.name][t.name]?.push(t.rps);
        kv[s.name].cpu.push(m.cpuUsPerReq);
        kv[s.name].p50.push(median(m.tests.map((t) => t.p50Ms)));
        console.error(`round ${r + 1} ${s.name}: ${m.tests.map((t) => `${t.name} ${t.rps}`).join(', ')}, ${fmt(m.cpuUsPerReq, 1)} µs/req`);
      }
      if (ONLY.has('latency')) {
        const m = await redisBenchmark({ port: s.port, clients: 1, requests: LAT_REQUESTS, tests: ['set', 'get'], timeoutMs: 600_000 });
        for (const t of m.tests) lat[s.name][t.name]?.push(t.p50Ms);
      }
    }
  }
  const native = 'redis-server (native)';
  const ftvm = 'ftvm run --guest kv';
  if (ONLY.has('kv')) {
    log(`## redis-benchmark -c 50 -n ${REQUESTS} -t set,get`);
    log();
    log('| server | SET req/s per round | SET median (min–max) | GET req/s per round | GET median (min–max) | server CPU µs/request, median (min–max) | p50 ms, median |');
    log('|---|---|---|---|---|---|---|');
    for (const s of servers) {
      const k = kv[s.name];
      log(`| ${s.name} | ${k.SET.map((x) => fmt(x)).join(', ')} | ${med(k.SET)} | ${k.GET.map((x) => fmt(x)).join(', ')} | ${med(k.GET)} | ${med(k.cpu, 1)} | ${fmt(median(k.p50), 3)} |`);
    }
    log();
    log('| ratio to native, pair by pair (same round) | per round | median (min–max) | goal |');
    log('|---|---|---|---|');
    for (const s of servers.filter((x) => x.name !== native)) {
      for (const t of ['SET', 'GET']) {
        const pairs = kv[s.name][t].map((x, i) => x / kv[native][t][i]);
        const goal = s.name === ftvm ? `≥ 0.7: ${median(pairs) >= 0.7 ? 'met' : '**missed**'}` : '';
        log(`| ${s.name} ${t} | ${pairs.map((x) => fmt(x, 2)).join(', ')} | ${med(pairs, 2)} | ${goal} |`);
      }
    }
    log();
    const cpu = median(kv[ftvm].cpu);
    log(`Server CPU per request of \`ftvm run\`: median ${fmt(cpu, 1)} µs (goal ≤ 25: ${cpu !== null && cpu <= 25 ? 'met' : '**missed**'}); native ${fmt(median(kv[native].cpu), 1)} µs.`);
    log();
    result.kv = kv;
  }
  if (ONLY.has('latency')) {
    log(`## Single client: redis-benchmark -c 1 -n ${LAT_REQUESTS} -t set,get, p50 (ms)`);
    log();
    log('| server | SET p50 per round | GET p50 per round | median of both |');
    log('|---|---|---|---|');
    for (const s of servers) log(`| ${s.name} | ${lat[s.name].SET.map((x) => fmt(x, 3)).join(', ')} | ${lat[s.name].GET.map((x) => fmt(x, 3)).join(', ')} | ${fmt(median([...lat[s.name].SET, ...lat[s.name].GET]), 3)} |`);
    const f = median([...lat[ftvm].SET, ...lat[ftvm].GET]);
    const n = median([...lat[native].SET, ...lat[native].GET]);
    log();
    log(`ftvm / native p50: ${fmt(f / n, 2)} (goal ≤ 2: ${f / n <= 2 ? 'met' : '**missed**'}).`);
    log();
    result.latency = lat;
  }
  for (const s of servers) await s.p.stop();
}

if (ONLY.has('http')) {
  if (!BASE) {
    log('## wrk against the http guest: skipped (no --base build to compare with)');
  } else {
    const servers = [await ftvmServer('ftvm run --guest http', 'http'), await ftvmServer(`ftvm run --guest http (base ${baseHead})`, 'http', join(resolve(BASE), 'packages/cli/dist/main.js'))];
    if (WORKER) servers.push(await ftvmServer('ftvm run --guest http --vcpu worker', 'http', undefined, ['--vcpu', 'worker']));
    const rps = Object.fromEntries(servers.map((s) => [s.name, { rps: [], cpu: [] }]));
    let command = '';
    for (let r = 0; r < ROUNDS; r++) {
      for (const s of rotate(servers, r)) {
        const m = await measure(s, (port) => wrk({ port, seconds: WRK_SECONDS, threads: 2, conns: 16 }));
        command = m.command;
        rps[s.name].rps.push(m.tests[0].rps);
        rps[s.name].cpu.push(m.cpuUsPerReq);
        console.error(`round ${r + 1} ${s.name}: ${m.tests[0].rps} req/s, ${fmt(m.cpuUsPerReq, 1)} µs/req`);
      }
    }
    log(`## wrk against the http guest: \`${command.replace(/127\.0\.0\.1:\d+/, '127.0.0.1:PORT')}\``);
    log();
    log('| server | req/s per round | median (min–max) | server CPU µs/request, median (min–max) |');
    log('|---|---|---|---|');
    for (const s of servers) log(`| ${s.name} | ${rps[s.name].rps.map((x) => fmt(x)).join(', ')} | ${med(rps[s.name].rps)} | ${med(rps[s.name].cpu, 1)} |`);
    const pairs = rps[servers[0].name].rps.map((x, i) => x / rps[servers[1].name].rps[i]);
    log();
    log(`this build / base, pair by pair: ${pairs.map((x) => fmt(x, 2)).join(', ')}; median ${fmt(median(pairs), 2)} (goal ≥ 1.5: ${median(pairs) >= 1.5 ? 'met' : '**missed**'}).`);
    log();
    result.http = rps;
    for (const s of servers) await s.p.stop();
  }
}

if (OUT) {
  writeFileSync(OUT, md.join('\n') + '\n');
  writeFileSync(OUT.replace(/\.md$/, '.json'), JSON.stringify(result, null, 1) + '\n');
  console.error(`wrote ${OUT}`);
}
process.exit(0);
