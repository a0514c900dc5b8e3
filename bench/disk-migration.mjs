#!/usr/bin/env node
// Migration of a guest with a 1 GiB virtual disk (issue 9), real processes on this machine:
// `ftvm run --guest dirtier --disk … --control` as the source, `ftvm receive --disk …` as the
// target, `ftvm migrate`. The dirtier fills every block of its disk (incompressible data),
// writes `disk_rate` random blocks/s and dirties 64 MiB of memory at 2,000 pages/s while it
// moves. Modes: copy (PUSH during the rounds, the dirty bitmap with the stop-and-copy, PULL
// after) and shared (the target opens the source's file: no block sent).
// Right after the guest arrives, a client runs DISKCHECK over the whole disk on the target
// (in 32 MiB pieces): blocks PULL has not delivered yet are read on demand, and every block is
// compared with the version the guest's memory holds.
// Usage: node bench/disk-migration.mjs [--quick]   (after npm run build)
// Writes bench/results/disk-migration.md and disk-migration.json.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const quick = process.argv.includes('--quick');
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url));
const CLI = process.env.FTVM_BENCH_CLI ?? fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url));
const env = { ...process.env, FTVM_TOKEN: 'bench-disk-migration', FTVM_LOG_FORMAT: 'json' };
const DISK_BLOCKS = quick ? 16384 : 262144; // 64 MiB quick, 1 GiB full
const CHUNK = 8192; // blocks per DISKFILL / DISKCHECK command (32 MiB: one event each, under the event timeout)
const MEM_PAGES = 16384; // 64 MiB of memory working set
const MiB = 1024 * 1024;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

function start(args) {
  const proc = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  const feed = (d) => lines.push(...d.toString().split('\n').filter(Boolean));
  proc.stdout.on('data', feed);
  proc.stderr.on('data', feed);
  const exited = new Promise((r) => proc.once('exit', (code) => r(code)));
  return {
    proc, lines, exited,
    async waitFor(re, ms = 120_000) {
      const end = Date.now() + ms;
      for (;;) {
        const hit = lines.find((l) => re.test(l));
        if (hit) return hit;
        if (proc.exitCode !== null) throw new Error(`${args[0]} exited ${proc.exitCode} before ${re}:\n${lines.slice(-10).join('\n')}`);
        if (Date.now() > end) throw new Error(`timeout waiting for ${re}:\n${lines.slice(-10).join('\n')}`);
        await sleep(20);
      }
    },
    kill() {
      if (proc.exitCode === null) proc.kill('SIGKILL');
    },
  };
}

/** One line-protocol conversation: each line's reply, with the time it took. */
async function ask(port, lines) {
  const s = connect(port, '127.0.0.1');
  await new Promise((r, j) => (s.once('connect', r), s.once('error', j)));
  s.setEncoding('utf8');
  let buf = '';
  const replies = [];
  let closed = false;
  s.once('close', () => (closed = true));
  for (const line of lines) {
    const t0 = performance.now();
    s.write(`${line}\n`);
    const reply = await new Promise((resolve, reject) => {
      const onClose = () => reject(new Error(`connection closed waiting for the reply to ${line}`));
      const on = (d) => {
        buf += d;
        const i = buf.indexOf('\n');
        if (i < 0) return;
        const r = buf.slice(0, i);
        buf = buf.slice(i + 1);
        s.off('data', on);
        s.off('close', onClose);
        resolve(r);
      };
      if (closed) return onClose();
      s.on('data', on);
      s.once('close', onClose);
    });
    replies.push({ line, reply, ms: performance.now() - t0 });
  }
  s.destroy();
  return replies;
}

const json = (line) => JSON.parse(line.slice(line.indexOf('{')));

async function runOne(mode, diskRate, dir, bandwidth = null) {
  const [port, ctl, mig, tport] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const srcDisk = join(dir, `src-${mode}-${diskRate}.disk`);
  const dstDisk = mode === 'shared' ? srcDisk : join(dir, `dst-${mode}-${diskRate}.disk`);
  const src = start(['run', '--guest', 'dirtier', '--port', String(port), '--control', `127.0.0.1:${ctl}`, '--disk', srcDisk, '--disk-size', String(DISK_BLOCKS * 4096)]);
  const procs = [src];
  try {
    await src.waitFor(/ftvm control: listening/);
    // Memory: 64 MiB working set, written at 2,000 pages/s; disk: every block written once.
    const setup = [`SET ws_pages=${MEM_PAGES} disk_ws=${DISK_BLOCKS}`, 'FILL'];
    for (let b = 0; b < DISK_BLOCKS; b += CHUNK) setup.push(`DISKFILL ${b} ${Math.min(CHUNK, DISK_BLOCKS - b)}`);
    setup.push(`SET rate=2000 disk_rate=${diskRate} pattern=random`);
    for (const r of await ask(port, setup)) if (!r.reply.startsWith('OK')) throw new Error(`${r.line}: ${r.reply}`);
    await sleep(500);
    const dst = start(['receive', '--guest', 'dirtier', '--listen', `127.0.0.1:${mig}`, '--port', String(tport), '--disk', dstDisk]);
    procs.push(dst);
    await dst.waitFor(/migration listener on/);
    const t0 = performance.now();
    const m = start(['migrate', '--from', `ws://127.0.0.1:${ctl}`, '--to', `ws://127.0.0.1:${mig}`, '--disk-migration', mode, ...(bandwidth ? ['--bandwidth-limit', bandwidth] : [])]);
    procs.push(m);
    await dst.waitFor(/ftvm receive: listening on/, 600_000);
    const arrivedMs = performance.now() - t0;
    // On the target, while PULL runs: stop the writes, then read back and verify every block.
    const check = ['STOP'];
    for (let b = 0; b < DISK_BLOCKS; b += CHUNK) check.push(`DISKCHECK ${b} ${Math.min(CHUNK, DISK_BLOCKS - b)}`);
    const replies = await ask(tport, check);
    const bad = replies.filter((r) => r.line.startsWith('DISKCHECK') && !r.reply.startsWith('OK'));
    const checkMs = replies.slice(1).reduce((n, r) => n + r.ms, 0);
    await m.waitFor(/"msg":"(migrated|migration failed)/, 600_000);
    const sum = json(m.lines.find((l) => /"msg":"(migrated|migration failed)/.test(l)));
    const pullLine = dst.lines.find((l) => /PULL done/.test(l));
    const recvPull = pullLine ? json(pullLine) : null;
    const d = sum.disk ?? {};
    const pull = d.pull ?? { demandBlocks: 0, pushedBlocks: 0, wireBytes: 0, ms: 0 };
    const pushMs = sum.totalMs - sum.downtimeMs - (pull.ms ?? 0);
    return {
      mode, diskRate, bandwidth, ok: sum.ok, reason: sum.reason, rounds: sum.rounds,
      totalMs: sum.totalMs, downtimeMs: sum.downtimeMs, downtimeParts: sum.downtimeParts ?? null, arrivedMs,
      targetStartMs: json(dst.lines.find((l) => /guest arrived/.test(l)) ?? "{}").startMs ?? null,
      push: { ms: pushMs, memWireBytes: sum.wireBytes - (d.pushWireBytes ?? 0) - (pull.wireBytes ?? 0), diskBlocks: d.pushBlocks ?? 0, diskWireBytes: d.pushWireBytes ?? 0 },
      stop: { ms: sum.downtimeMs, finalPages: sum.finalPages, missingBlocks: d.missingBlocks ?? 0, bitmapBytes: mode === 'copy' ? Math.ceil(DISK_BLOCKS / 8) : 0 },
      pull: { ms: pull.ms ?? 0, demandBlocks: pull.demandBlocks ?? 0, pushedBlocks: pull.pushedBlocks ?? 0, wireBytes: pull.wireBytes ?? 0, askedByTarget: recvPull?.onDemand ?? 0 },
      wireBytes: sum.wireBytes,
      check: { ok: bad.length === 0, ms: checkMs, first: bad[0]?.reply ?? null },
    };
  } finally {
    for (const p of procs) p.kill();
    await sleep(300);
    rmSync(srcDisk, { force: true });
    if (dstDisk !== srcDisk) rmSync(dstDisk, { force: true });
  }
}

const rates = quick ? [0, 1000] : [0, 200, 1000, 5000];
const modes = ['copy', 'shared'];
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-dmig-'));
const rows = [];
for (const rate of rates) {
  for (const mode of modes) {
    process.stderr.write(`disk-migration: ${mode}, disk_rate ${rate} blocks/s ...\n`);
    const r = await runOne(mode, rate, dir);
    process.stderr.write(`  ok=${r.ok} total ${Math.round(r.totalMs)} ms, downtime ${r.downtimeMs} ms, missing ${r.stop.missingBlocks}, pull ${Math.round(r.pull.ms)} ms (${r.pull.demandBlocks} on demand), DISKCHECK ${r.check.ok ? 'OK' : r.check.first}\n`);
    rows.push(r);
  }
}
// A link of ~1 Gbit/s (--bandwidth-limit 100M, PUSH and PULL alike): PULL's background push is
// slow enough that the target's reads of missing blocks are answered on demand first.
{
  const rate = rates.at(-1);
  process.stderr.write(`disk-migration: copy, disk_rate ${rate} blocks/s, --bandwidth-limit 100M ...\n`);
  const r = await runOne('copy', rate, dir, '100M');
  process.stderr.write(`  ok=${r.ok} total ${Math.round(r.totalMs)} ms, downtime ${r.downtimeMs} ms, missing ${r.stop.missingBlocks}, pull ${Math.round(r.pull.ms)} ms (${r.pull.demandBlocks} on demand), DISKCHECK ${r.check.ok ? 'OK' : r.check.first}\n`);
  rows.push(r);
}
rmSync(dir, { recursive: true, force: true });

// A frozen copy of a checkout (no .git) names its commit in FTVM_BENCH_COMMIT.
let commit = process.env.FTVM_BENCH_COMMIT ?? 'unknown';
if (!process.env.FTVM_BENCH_COMMIT) try {
  commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: fileURLToPath(new URL('..', import.meta.url)) }).toString().trim();
} catch {
  /* not a checkout */
}
const mb = (b) => (b / MiB).toFixed(1);
const s = (ms) => (ms / 1000).toFixed(2);
const out = [
  `# Migration of a guest with a ${DISK_BLOCKS / 262144 >= 1 ? `${DISK_BLOCKS / 262144} GiB` : `${(DISK_BLOCKS * 4096) / MiB} MiB`} virtual disk: PUSH / stop-and-copy / PULL vs shared storage`,
  '',
  `Command: \`node bench/disk-migration.mjs${quick ? ' --quick' : ''}\` (after \`npm run build\`) at ${commit}. ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, load average at the end ${loadavg().map((x) => x.toFixed(1)).join(' / ')}.`,
  'Real processes on one machine: `ftvm run --guest dirtier --disk` (source), `ftvm receive --disk` (target), `ftvm migrate --disk-migration copy|shared`, over loopback with no bandwidth limit (the last row: `--bandwidth-limit 100M`, a ~1 Gbit/s link); stop rule mp, downtime limit 300 ms.',
  `The dirtier fills all ${DISK_BLOCKS} disk blocks with incompressible data, then writes \`disk_rate\` random blocks/s and 2,000 random memory pages/s (64 MiB working set) while it moves.`,
  'Phases: **PUSH** = the live rounds (memory pages, and every disk block in round 0, then the blocks written since); **stop-and-copy** = the vCPU held: the last memory pages, the device state and the bitmap of disk blocks written since their last push, until the target has started the guest (the downtime); **PULL** = the target runs while the source pushes the blocks of that bitmap, answering the target\'s requests for the ones its guest touches first.',
  'Right after the guest arrived, a client ran DISKCHECK over the whole disk on the target (32 MiB per command): every block read and compared with the version the guest\'s memory holds, blocks not yet pulled fetched on demand ("asked" = blocks the target requested; "on demand" = those the source sent in answer rather than in its background push).',
  '',
  '| disk writes (blocks/s) | disk | PUSH s | PUSH memory MiB | PUSH disk blocks / MiB | downtime ms (hold + last round + target start) | final pages | blocks left to PULL | PULL s | PULL MiB | PULL on demand / background | asked by target | total s | total MiB | DISKCHECK on target during PULL |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.diskRate} | ${r.mode}${r.bandwidth ? ` (${r.bandwidth}B/s)` : ''} | ${s(r.push.ms)} | ${mb(r.push.memWireBytes)} | ${r.push.diskBlocks} / ${mb(r.push.diskWireBytes)} | ${Math.round(r.downtimeMs)}${r.downtimeParts ? ` (${r.downtimeParts.holdMs} + ${r.downtimeParts.sendMs} + ${r.downtimeParts.startMs})` : ''} | ${r.stop.finalPages} | ${r.stop.missingBlocks} | ${s(r.pull.ms)} | ${mb(r.pull.wireBytes)} | ${r.pull.demandBlocks} / ${r.pull.pushedBlocks} | ${r.pull.askedByTarget} | ${s(r.totalMs)} | ${mb(r.wireBytes)} | ${r.check.ok ? `OK (${s(r.check.ms)} s)` : `FAILED: ${r.check.first}`} |`),
  '',
  'A failed row (ok = false) would say why here: ' + (rows.filter((r) => !r.ok).map((r) => `${r.mode}/${r.diskRate}: ${r.reason}`).join('; ') || 'none failed') + '.',
  '',
];
writeFileSync(join(RESULTS, 'disk-migration.md'), out.join('\n'));
writeFileSync(join(RESULTS, 'disk-migration.json'), JSON.stringify({ commit, quick, diskBlocks: DISK_BLOCKS, rows }, null, 2));
process.stderr.write(`wrote bench/results/disk-migration.md\n`);
if (rows.some((r) => !r.ok || !r.check.ok)) process.exitCode = 1;
