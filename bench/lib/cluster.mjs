// The systems under test, as real processes: a protected trio (secondary, primary, proxy)
// or the unprotected baseline (`ftvm run`), and the measurement window around a workload.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuSeconds, freePort, onCpus, start, startFtvm } from './proc.mjs';
import { delta, histBucketOf, histDelta, histQuantile, histShareAtMost, scrape } from './prom.mjs';

/** Start-up bounds, ms: a role that does not print its listening line in time fails the configuration. */
const START_TIMEOUT_MS = 60_000;
const PROTECT_TIMEOUT_MS = 60_000;

/**
 * Starts secondary, primary and proxy. `nodeArgs` go to both nodes (policy, compression,
 * timeouts); `nodeFlags.primary` are node.js flags of the primary (e.g. --cpu-prof);
 * `cpus.primary` confines the primary to those CPUs (taskset), likewise secondary and proxy.
 */
export async function startProtected(opts) {
  // One retry: on a shared machine a start-up can fail for reasons outside the system under
  // test (a port taken between probe and bind); the first error is kept in the log.
  try {
    return await startProtectedOnce(opts);
  } catch (e) {
    process.stderr.write(`bench: start of a ${opts.guest} cluster failed, retrying once: ${String(e?.message ?? e).split('\n')[0]}\n`);
    return startProtectedOnce(opts);
  }
}

async function startProtectedOnce({ guest, nodeArgs = [], proxyArgs = [], nodeFlags = {}, secondary = true, cpus = {} }) {
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-'));
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  const [pa, pb, pp, ma, mb, mp] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const urlA = `ws://127.0.0.1:${pa}`;
  const urlB = `ws://127.0.0.1:${pb}`;
  const common = ['--guest', guest, '--token-file', tokenFile, '--log-level', 'warn', ...nodeArgs];
  const procs = {};
  const c = {
    guest,
    port: pp,
    metrics: { primary: ma, secondary: mb, proxy: mp },
    procs,
    dir,
    /** The last warn/error lines of every role (what went wrong during a run); without a secondary, errors only (its absence is warned about). */
    logTail(n = 20) {
      const bad = secondary ? /WARN|ERROR|FATAL/i : /ERROR|FATAL/i;
      return Object.fromEntries(Object.entries(procs).map(([k, p]) => [k, p.lines.filter((l) => bad.test(l)).slice(-n)]));
    },
    async stop() {
      await Promise.all(Object.values(procs).map((p) => p.stop('SIGTERM', 8000)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    if (secondary) procs.secondary = startFtvm(['secondary', '--listen', `127.0.0.1:${pb}`, '--node-id', 'b', '--metrics-port', String(mb), '--peer', urlA, ...common], {
      name: 'secondary',
      nodeFlags: nodeFlags.secondary ?? [],
      cpus: cpus.secondary,
    });
    // Without a secondary, nothing listens on urlB: the primary runs unprotected and keeps dialling.
    if (secondary) await procs.secondary.waitFor(/listening on/, START_TIMEOUT_MS);
    procs.primary = startFtvm(['primary', '--listen', `127.0.0.1:${pa}`, '--node-id', 'a', '--metrics-port', String(ma), '--secondary', urlB, ...common], {
      name: 'primary',
      nodeFlags: nodeFlags.primary ?? [],
      cpus: cpus.primary,
    });
    await procs.primary.waitFor(/listening on/, START_TIMEOUT_MS);
    if (secondary) await waitProtected(ma, PROTECT_TIMEOUT_MS);
    procs.proxy = startFtvm(
      ['proxy', '--port', String(pp), '--nodes', `${urlA},${urlB}`, '--token-file', tokenFile, '--metrics-port', String(mp), '--log-level', 'warn', ...proxyArgs],
      { name: 'proxy', nodeFlags: nodeFlags.proxy ?? [], cpus: cpus.proxy },
    );
    await procs.proxy.waitFor(/listening on/, START_TIMEOUT_MS);
    await waitReady(mp, 30_000);
  } catch (e) {
    await c.stop();
    throw e;
  }
  return c;
}

/** Polls the primary's metrics until `ftvm_protected 1`: the secondary holds a committed image. */
async function waitProtected(port, timeoutMs) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if ((await scrape(port, 1000))?.get('ftvm_protected') === 1) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`primary not protected within ${timeoutMs} ms`);
}

/** Polls /readyz until the proxy has an active node. */
async function waitReady(port, timeoutMs) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`proxy not ready within ${timeoutMs} ms`);
}

/**
 * The unprotected baseline on the protected path: a primary whose secondary never answers (it
 * runs unprotected, `--on-secondary-loss continue`, and keeps retrying the dial) behind the
 * proxy. Clients go through the same proxy and node link as in the protected runs.
 */
export function startUnprotectedProxy({ guest, cpus }) {
  return startProtected({ guest, nodeArgs: ['--policy', 'adaptive'], secondary: false, cpus });
}

/** The unprotected baseline: `ftvm run` (no replication; its own local rollback checkpoints on); `cpus`: taskset list. */
export async function startUnprotected({ guest, nodeFlags = [], cpus }) {
  const port = await freePort();
  const run = startFtvm(['run', '--guest', guest, '--port', String(port), '--log-level', 'warn'], { name: 'run', nodeFlags, cpus });
  await run.waitFor(/listening on/, START_TIMEOUT_MS);
  return {
    guest,
    port,
    metrics: {},
    procs: { run },
    async stop() {
      await run.stop('SIGTERM', 8000);
    },
  };
}

function snapshotCpu(c) {
  const out = {};
  for (const [k, p] of Object.entries(c.procs)) out[k] = p.alive ? cpuSeconds(p.proc.pid) : null;
  return out;
}

/** Opens a measurement window: counters and CPU now; `close()` diffs them. */
export async function openWindow(c) {
  const t0 = performance.now();
  const before = { primary: c.metrics.primary ? await scrape(c.metrics.primary) : null, proxy: c.metrics.proxy ? await scrape(c.metrics.proxy) : null };
  const cpu0 = snapshotCpu(c);
  return {
    async close() {
      const cpu1 = snapshotCpu(c);
      const seconds = (performance.now() - t0) / 1000;
      const after = { primary: c.metrics.primary ? await scrape(c.metrics.primary) : null, proxy: c.metrics.proxy ? await scrape(c.metrics.proxy) : null };
      const cpu = {};
      const cpuSec = {};
      for (const k of Object.keys(cpu0)) {
        cpuSec[k] = cpu0[k] !== null && cpu1[k] !== null ? cpu1[k] - cpu0[k] : null;
        cpu[k] = cpuSec[k] !== null ? (100 * cpuSec[k]) / seconds : null;
      }
      return { seconds, cpu, cpuSec, ...replication(before, after, seconds) };
    },
  };
}

/** Replication figures of one window (null fields when the role has no metrics, e.g. unprotected). */
export function replication(before, after, seconds) {
  if (!after.primary) return { repl: null };
  const b = before.primary;
  const a = after.primary;
  const epochs = ['periodic', 'sync-io', 'adaptive'].reduce((s, p) => s + delta(b, a, `ftvm_epochs_total{policy="${p}"}`), 0);
  const wire = delta(b, a, 'ftvm_replication_wire_bytes_total');
  const raw = delta(b, a, 'ftvm_replication_raw_bytes_total');
  const pause = histDelta(b, a, 'ftvm_epoch_pause_seconds');
  const dirtyPages = delta(b, a, 'ftvm_epoch_dirty_pages_sum');
  const dirtyCount = delta(b, a, 'ftvm_epoch_dirty_pages_count');
  const outDelay = after.proxy ? histDelta(before.proxy, after.proxy, 'ftvm_output_delay_seconds') : [];
  const ms = (v) => (v === null ? null : v * 1000);
  return {
    repl: {
      // A failover or lost protection inside the window makes its numbers meaningless (validate() flags it).
      failovers: after.proxy ? delta(before.proxy, after.proxy, 'ftvm_failovers_total') : 0,
      protectedAtEnd: a.get('ftvm_protected') === 1,
      epochs,
      epochsPerSec: epochs / seconds,
      wireBps: wire / seconds,
      rawBps: raw / seconds,
      wireOverRaw: raw > 0 ? wire / raw : null,
      dirtyPagesPerEpoch: dirtyCount > 0 ? dirtyPages / dirtyCount : null,
      dirtyPagesPerSec: dirtyPages / seconds,
      pauseP50Ms: ms(histQuantile(pause, 0.5)),
      pauseP99Ms: ms(histQuantile(pause, 0.99)),
      pauseP99BucketMs: histBucketOf(pause, 0.99)?.map((v) => v * 1000) ?? null,
      pauseShareAtMost1ms: histShareAtMost(pause, 0.001),
      pauses: pause.at(-1)?.count ?? 0,
      pauseMeanMs: pause.at(-1)?.count ? (1000 * delta(b, a, 'ftvm_epoch_pause_seconds_sum')) / pause.at(-1).count : null,
      outputDelayP50Ms: ms(histQuantile(outDelay, 0.5)),
      outputDelayP99Ms: ms(histQuantile(outDelay, 0.99)),
      ackLatencyP50Ms: ms(histQuantile(histDelta(b, a, 'ftvm_checkpoint_ack_latency_seconds'), 0.5)),
    },
  };
}

/** The reference row: Debian's native redis-server (no persistence) serving the kv workloads; `cpus`: taskset list. */
export async function startNative({ cpus } = {}) {
  const port = await freePort();
  const [cmd, args] = onCpus(cpus, 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  const p = start(cmd, args, { name: 'redis-server' });
  await p.waitFor(/Ready to accept connections/, START_TIMEOUT_MS);
  return {
    guest: 'kv',
    port,
    metrics: {},
    procs: { 'redis-server': p },
    async stop() {
      await p.stop('SIGTERM', 8000);
    },
  };
}
