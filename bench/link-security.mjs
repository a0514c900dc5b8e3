#!/usr/bin/env node
// What link security costs: `node bench/link-security.mjs [--rounds 5] [--requests 200000] [--baseline-cli path]`.
// 1. The frame MAC alone (HMAC-SHA256 per frame, links without TLS), per frame size, next to encoding the frame.
// 2. Replication end to end: a protected kv cluster (secondary, primary, proxy as real processes)
//    under redis-benchmark SET, with plain links (frames MACed) and with TLS links (wss://, mutual
//    TLS, no frame MAC); optionally a baseline build without either (--baseline-cli: another
//    checkout's packages/cli/dist/main.js). Throughput and CPU seconds per request of the three
//    roles together, variants interleaved round by round; medians and min-max.
// Writes bench/results/link-security.{md,json}.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { encodeFrame, frameTag } from '../packages/protocol/dist/index.js';
import { NODE_FLAGS } from '../packages/cli/dist/node-flags.js';
import { redisBenchmark } from './lib/clients.mjs';
import { CLI, cpuSeconds, freePort, installCleanup, killAll, start } from './lib/proc.mjs';

const { values: opt } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, requests: { type: 'string', default: '200000' }, 'baseline-cli': { type: 'string' } } });
const ROUNDS = Number(opt.rounds);
const REQUESTS = Number(opt.requests);
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url));
installCleanup();

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const spread = (xs) => `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;

// ---- 1. the frame MAC alone -------------------------------------------------------------
function micro() {
  const key = randomBytes(32);
  const rows = [];
  for (const size of [64, 1024, 64 * 1024, 1 << 20]) {
    const frame = encodeFrame({ t: 'input', term: 1, conn: 1, offset: 0 }, new Uint8Array(size));
    const iters = Math.max(200, Math.floor((16 << 20) / (size + 256)));
    const time = (fn) => {
      for (let i = 0; i < 100; i++) fn(i);
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < iters; i++) fn(i);
      return Number(process.hrtime.bigint() - t0) / iters;
    };
    const samples = [];
    for (let r = 0; r < 5; r++) {
      samples.push({
        mac: time((i) => frameTag(key, i, frame)),
        encode: time(() => encodeFrame({ t: 'input', term: 1, conn: 1, offset: 0 }, frame.subarray(frame.length - size))),
      });
    }
    const mac = median(samples.map((s) => s.mac));
    const enc = median(samples.map((s) => s.encode));
    rows.push({ payloadBytes: size, macNs: mac, macSpread: spread(samples.map((s) => s.mac)), encodeNs: enc, macMBps: (frame.length / mac) * 1e3 });
    console.error(`mac ${size} B: ${mac.toFixed(0)} ns/frame (${((frame.length / mac) * 1e3).toFixed(0)} MB/s), encode ${enc.toFixed(0)} ns`);
  }
  return rows;
}

// ---- 2. replication end to end ------------------------------------------------------------
function makeCerts(dir) {
  const ssl = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=bench-ca']);
  ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'node.key', '-out', 'node.csr', '-subj', '/CN=bench-node']);
  writeFileSync(join(dir, 'node.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  ssl(['x509', '-req', '-in', 'node.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'node.crt', '-days', '2', '-extfile', 'node.ext']);
  return ['--tls-cert', join(dir, 'node.crt'), '--tls-key', join(dir, 'node.key'), '--tls-ca', join(dir, 'ca.crt')];
}

async function cluster(cli, tlsArgs) {
  const dir = mkdtempSync(join(os.tmpdir(), 'ftvm-bench-sec-'));
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  const [pa, pb, pp] = [await freePort(), await freePort(), await freePort()];
  const scheme = tlsArgs.length ? 'wss' : 'ws';
  const common = ['--guest', 'kv', '--token-file', tokenFile, '--log-level', 'warn', '--policy', 'adaptive', ...tlsArgs];
  const ftvm = (name, args) => start(process.execPath, [...NODE_FLAGS, cli, ...args], { name });
  const procs = {};
  procs.secondary = ftvm('secondary', ['secondary', '--listen', `127.0.0.1:${pb}`, '--node-id', 'b', '--peer', `${scheme}://127.0.0.1:${pa}`, ...common]);
  await procs.secondary.waitFor(/listening on/, 60_000);
  procs.primary = ftvm('primary', ['primary', '--listen', `127.0.0.1:${pa}`, '--node-id', 'a', '--secondary', `${scheme}://127.0.0.1:${pb}`, '--log-level', 'info', ...common.filter((a) => a !== 'warn' && a !== '--log-level')]);
  await procs.primary.waitFor(/(^|[^N])PROTECTED:/, 60_000);
  procs.proxy = ftvm('proxy', ['proxy', '--port', String(pp), '--nodes', `${scheme}://127.0.0.1:${pa},${scheme}://127.0.0.1:${pb}`, '--token-file', tokenFile, '--log-level', 'warn', ...tlsArgs]);
  await procs.proxy.waitFor(/listening on/, 60_000);
  await procs.primary.waitFor(/proxy connected/, 30_000);
  return { port: pp, procs, stop: () => Promise.all(Object.values(procs).map((p) => p.stop('SIGTERM', 8000))) };
}

async function endToEnd() {
  const certDir = mkdtempSync(join(os.tmpdir(), 'ftvm-bench-certs-'));
  const tlsArgs = makeCerts(certDir);
  const variants = [
    { name: 'plain (frame MAC)', cli: CLI, tls: [] },
    { name: 'tls (wss, mutual)', cli: CLI, tls: tlsArgs },
    ...(opt['baseline-cli'] ? [{ name: 'baseline (no MAC, no TLS)', cli: opt['baseline-cli'], tls: [] }] : []),
  ];
  const rows = [];
  for (let round = 0; round < ROUNDS; round++) {
    // Interleaved, the order rotating each round: the machine's drift lands on every variant.
    const order = variants.map((_, i) => variants[(i + round) % variants.length]);
    for (const v of order) {
      const c = await cluster(v.cli, v.tls);
      try {
        await redisBenchmark({ port: c.port, clients: 50, requests: 20_000, tests: ['set'], pipeline: 16, timeoutMs: 120_000 });
        const pids = Object.values(c.procs).map((p) => p.proc.pid);
        const cpu0 = pids.map(cpuSeconds);
        const r = await redisBenchmark({ port: c.port, clients: 50, requests: REQUESTS, tests: ['set'], pipeline: 16, timeoutMs: 300_000 });
        const cpu = pids.map((p, i) => cpuSeconds(p) - cpu0[i]);
        const t = r.tests[0];
        const row = { round, variant: v.name, rps: t.rps, p50Ms: t.p50Ms, p99Ms: t.p99Ms, cpuUsPerReq: (cpu.reduce((a, b) => a + b, 0) / t.requests) * 1e6, primaryUsPerReq: (cpu[1] / t.requests) * 1e6, command: r.command };
        rows.push(row);
        console.error(`round ${round} ${v.name}: ${t.rps.toFixed(0)} req/s, ${row.cpuUsPerReq.toFixed(1)} us CPU/req (primary ${row.primaryUsPerReq.toFixed(1)})`);
      } finally {
        await c.stop();
      }
    }
  }
  return { variants: variants.map((v) => v.name), rows };
}

const commit = (() => {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
})();
const baselineCommit = opt['baseline-cli'] ? (() => {
  try {
    return execFileSync('git', ['-C', join(opt['baseline-cli'], '..', '..', '..'), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
})() : null;
const loadAtStart = os.loadavg().map((l) => l.toFixed(1)).join(' ');
try {
  const microRows = micro();
  const e2e = await endToEnd();
  const machine = `${os.cpus()[0]?.model ?? '?'} x${os.cpus().length}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${os.release()}`;
  const summary = e2e.variants.map((name) => {
    const rs = e2e.rows.filter((r) => r.variant === name);
    return { variant: name, runs: rs.length, rps: median(rs.map((r) => r.rps)), rpsSpread: spread(rs.map((r) => r.rps)), cpuUsPerReq: median(rs.map((r) => r.cpuUsPerReq)), cpuSpread: spread(rs.map((r) => r.cpuUsPerReq)), primaryUsPerReq: median(rs.map((r) => r.primaryUsPerReq)), p99Ms: median(rs.map((r) => r.p99Ms)) };
  });
  writeFileSync(join(RESULTS, 'link-security.json'), JSON.stringify({ commit, baselineCommit, machine, date: new Date().toISOString(), micro: microRows, summary, rows: e2e.rows }, null, 2));
  const md = [
    '# Link security: the frame MAC and TLS',
    '',
    `Commit ${commit}${baselineCommit ? `, baseline ${baselineCommit}` : ''}; ${machine}; ${new Date().toISOString().slice(0, 16)} UTC; load average at start ${loadAtStart}. Shared machine (other engineers' tests ran meanwhile): medians, min-max spread.`,
    `Command: \`node bench/link-security.mjs --rounds ${ROUNDS} --requests ${REQUESTS}${opt['baseline-cli'] ? ' --baseline-cli <main checkout>/packages/cli/dist/main.js' : ''}\``,
    '',
    '## The frame MAC alone (HMAC-SHA256 over seq | frame, node:crypto)',
    '',
    '| payload | MAC ns/frame (spread) | MB/s | encodeFrame ns |',
    '|---:|---:|---:|---:|',
    ...microRows.map((r) => `| ${r.payloadBytes} B | ${r.macNs.toFixed(0)} (${r.macSpread}) | ${r.macMBps.toFixed(0)} | ${r.encodeNs.toFixed(0)} |`),
    '',
    '## Replication end to end: kv, redis-benchmark SET, 50 clients, pipeline 16, adaptive policy',
    '',
    'CPU is user + system seconds of secondary, primary and proxy together over the measured run, per request.',
    '',
    '| links | runs | req/s (spread) | CPU us/request (spread) | primary us/request | p99 ms |',
    '|---|---:|---:|---:|---:|---:|',
    ...summary.map((s) => `| ${s.variant} | ${s.runs} | ${s.rps.toFixed(0)} (${s.rpsSpread}) | ${s.cpuUsPerReq.toFixed(1)} (${s.cpuSpread}) | ${s.primaryUsPerReq.toFixed(1)} | ${s.p99Ms.toFixed(2)} |`),
    '',
  ].join('\n');
  writeFileSync(join(RESULTS, 'link-security.md'), md);
  console.log(md);
} finally {
  killAll();
}
