// The memcached guest (C) under `ftvm run` against native memcached, driven by the same load
// generator with the same arguments: memcaslap (libmemcached-tools), ascii protocol, its default
// 90% get / 10% set mix, 100-byte values. Rounds are interleaved (the order rotates each round)
// because the machine is shared; the table gives every run, the medians and the per-round
// ratios. Writes bench/results/memcached.md (or --out <file>; --quick: 1 round of 2 s, printed).
//
// Usage: npm run build && node bench/memcached.mjs [--rounds N] [--seconds S] [--worker] [--quick] [--out file]
// --worker adds `ftvm run --vcpu worker` (the vCPU in a worker thread; the default is inline).

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { cpus, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const quick = args.includes('--quick');
const ROUNDS = Number(opt('--rounds', quick ? 1 : 5));
const SECONDS = Number(opt('--seconds', quick ? 2 : 10));
const OUT = opt('--out', quick ? null : fileURLToPath(new URL('./results/memcached.md', import.meta.url)));
const CLI = fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url));
const CONCURRENCIES = String(opt('--concurrency', quick ? '16' : '16,64')).split(',').map(Number);
let port = 31000 + Math.floor(Math.random() * 2000);

const CONFIGS = {
  'ftvm run --guest memcached': (p) => [process.execPath, [CLI, 'run', '--guest', 'memcached', '--port', String(p)]],
  'memcached -t 1': (p) => ['memcached', ['-u', 'root', '-l', '127.0.0.1', '-p', String(p), '-m', '64', '-t', '1']],
  'memcached (default -t 4)': (p) => ['memcached', ['-u', 'root', '-l', '127.0.0.1', '-p', String(p), '-m', '64']],
};
if (args.includes('--worker'))
  CONFIGS['ftvm run --guest memcached --vcpu worker'] = (p) => [process.execPath, [CLI, 'run', '--guest', 'memcached', '--port', String(p), '--vcpu', 'worker']];
const loadArgs = (p, c) => ['-s', `127.0.0.1:${p}`, '-T', '1', '-c', String(c), '-t', `${SECONDS}s`, '-X', '100'];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitPort(p, ms = 60_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise((r) => {
      const s = connect(p, '127.0.0.1', () => {
        s.end();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await sleep(200);
  }
  throw new Error(`port ${p} never opened`);
}

function memcaslap(p, conc) {
  return new Promise((resolve, reject) => {
    const c = spawn('memcaslap', loadArgs(p, conc), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (out += d));
    const t = setTimeout(() => c.kill('SIGKILL'), (SECONDS + 60) * 1000);
    c.on('exit', () => {
      clearTimeout(t);
      const m = /Run time: ([\d.]+)s Ops: (\d+) TPS: (\d+)/.exec(out);
      if (!m) reject(new Error(`memcaslap printed no result:\n${out}`));
      else resolve({ tps: Number(m[3]), ops: Number(m[2]), secs: Number(m[1]), misses: Number(/get_misses: (\d+)/.exec(out)?.[1] ?? -1) });
    });
  });
}

async function runOne(name, conc) {
  const p = port++;
  const [cmd, argv] = CONFIGS[name](p);
  const srv = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'ignore'] });
  try {
    await waitPort(p);
    await sleep(300);
    return await memcaslap(p, conc);
  } finally {
    srv.kill('SIGTERM');
    await new Promise((r) => (srv.exitCode !== null ? r() : srv.once('exit', r)));
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const names = Object.keys(CONFIGS);
const runsBy = {};
const order = [];
const load0 = loadavg()[0];
for (let r = 0; r < ROUNDS; r++) {
  const rot = names.map((_, i) => names[(i + r) % names.length]);
  order.push(rot);
  for (const conc of CONCURRENCIES) {
    const runs = (runsBy[conc] ??= Object.fromEntries(names.map((n) => [n, []])));
    for (const n of rot) {
      const res = await runOne(n, conc);
      runs[n].push(res);
      console.log(`round ${r + 1}/${ROUNDS} -c ${conc} ${n}: ${res.tps} ops/s (${res.ops} ops in ${res.secs} s)`);
    }
  }
}

const ftvm = names[0];
const ratio = (runs, ref) => runs[ftvm].map((x, i) => x.tps / runs[ref][i].tps);
const fmt = (x) => x.toFixed(2);
const rng = (xs) => `${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))}`;
const version = (cmd, a) => {
  try {
    return execFileSync(cmd, a, { encoding: 'utf8' }).trim().split('\n')[0];
  } catch {
    return '?';
  }
};
const lines = [];
lines.push('# memcached guest (C) under `ftvm run` vs native memcached');
lines.push('');
lines.push(`Written by \`node bench/memcached.mjs${args.length ? ' ' + args.join(' ') : ''}\` (after \`npm run build\`) on ${new Date().toISOString().slice(0, 10)}.`);
lines.push('');
lines.push(`- machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, shared with other engineers' test runs (1-min load average ${load0.toFixed(1)} at the start); Node ${process.version}; ${version('memcached', ['-V'])}; ${version('memcaslap', ['-V'])}`);
lines.push(`- load: \`memcaslap ${loadArgs('PORT', 'C').join(' ')}\` with C = ${CONCURRENCIES.join(' and ')} (one load thread, C connections, each with one request in flight; ascii; 90% get / 10% set, 100-byte values), the same for every server`);
lines.push(`- servers: ${names.map((n) => `\`${CONFIGS[n]('PORT')[0] === process.execPath ? 'ftvm ' + CONFIGS[n]('PORT')[1].slice(1).join(' ') : 'memcached ' + CONFIGS[n]('PORT')[1].join(' ')}\``).join('; ')}`);
lines.push(`- ${ROUNDS} rounds of ${SECONDS} s per server, interleaved: the order rotates every round (${order.map((o) => o.map((n) => names.indexOf(n) + 1).join('→')).join(', ')} with ${names.map((n, i) => `${i + 1} = ${n}`).join(', ')})`);
lines.push('');
for (const conc of CONCURRENCIES) {
  const runs = runsBy[conc];
  lines.push(`## ${conc} connections`);
  lines.push('');
  lines.push('| server | ops/s per round | median ops/s (min–max) |');
  lines.push('|---|---|---|');
  for (const n of names) {
    const t = runs[n].map((x) => x.tps);
    lines.push(`| ${n} | ${t.join(', ')} | ${Math.round(median(t))} (${Math.min(...t)}–${Math.max(...t)}) |`);
  }
  lines.push('');
  lines.push('| ratio | per round | median (min–max) | goal | |');
  lines.push('|---|---|---|---|---|');
  for (const ref of names.slice(1)) {
    const r = ratio(runs, ref);
    const m = median(r);
    const goal = ref.startsWith('memcached');
    lines.push(`| ftvm / ${ref} | ${r.map(fmt).join(', ')} | ${fmt(m)} (${rng(r)}) | ${goal ? '≥ 0.6' : ''} | ${goal ? (m >= 0.6 ? 'met' : '**MISSED**') : ''} |`);
  }
  lines.push('');
}
// Hand-written analysis below a '## Notes' heading survives a rerun.
let notes = '';
if (OUT && existsSync(OUT)) {
  const old = readFileSync(OUT, 'utf8');
  const i = old.indexOf('\n## Notes');
  if (i >= 0) notes = old.slice(i + 1);
}
const text = lines.join('\n') + '\n' + (notes ? '\n' + notes.replace(/^\n+/, '') : '');
if (OUT) {
  writeFileSync(OUT, text);
  console.log(`wrote ${OUT}`);
} else {
  console.log(text);
}
