// Child processes of the benchmark: every one is tracked and killed when the harness exits
// (normal exit, error, Ctrl-C), and every wait is bounded in time.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * The built CLI the roles run. FTVM_BENCH_CLI points at a frozen copy of the build (see
 * README: on a shared tree someone may rebuild `dist/` in the middle of a long run).
 */
export const CLI = process.env.FTVM_BENCH_CLI ? resolve(process.env.FTVM_BENCH_CLI) : fileURLToPath(new URL('../../packages/cli/dist/main.js', import.meta.url));

/** Lines kept per child stream (the tail is what a failure report shows). */
const MAX_LINES = 2000;

const live = new Set();

export function killAll() {
  for (const p of live) {
    try {
      p.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

let hooked = false;
/** Installs exit/signal hooks once: no child outlives the harness. */
export function installCleanup() {
  if (hooked) return;
  hooked = true;
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      killAll();
      process.stderr.write(`bench: ${sig}, children killed\n`);
      process.exit(130);
    });
  }
}

/** A port that was free a moment ago (bind to 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts a process; stdout+stderr lines are kept (bounded) and matched against waiters.
 * `nodeArgs` go before the CLI path (e.g. --cpu-prof).
 */
export function start(cmd, args, { name = cmd, env = {} } = {}) {
  const proc = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  const lines = [];
  const waiters = [];
  let partial = '';
  const feed = (chunk) => {
    const parts = (partial + chunk.toString()).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      if (lines.length >= MAX_LINES) lines.shift();
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  };
  proc.stdout.on('data', feed);
  proc.stderr.on('data', feed);
  const exited = new Promise((resolve) =>
    proc.once('exit', (code, signal) => {
      live.delete(proc);
      for (const w of waiters.splice(0)) w.reject(new Error(`${name} exited (${signal ?? code}) before /${w.re.source}/; last lines:\n${lines.slice(-15).join('\n')}`));
      resolve({ code, signal });
    }),
  );
  return {
    name,
    proc,
    lines,
    exited,
    get alive() {
      return proc.exitCode === null && proc.signalCode === null;
    },
    waitFor(re, timeoutMs = 30_000) {
      const hit = lines.find((l) => re.test(l));
      if (hit !== undefined) return Promise.resolve(hit);
      if (proc.exitCode !== null || proc.signalCode !== null) return Promise.reject(new Error(`${name} is not running`));
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`${name}: timed out after ${timeoutMs} ms waiting for /${re.source}/; last lines:\n${lines.slice(-15).join('\n')}`));
        }, timeoutMs);
        const w = {
          re,
          resolve: (l) => (clearTimeout(t), resolve(l)),
          reject: (e) => (clearTimeout(t), reject(e)),
        };
        waiters.push(w);
      });
    },
    /** SIGTERM, then SIGKILL after graceMs. */
    async stop(signal = 'SIGTERM', graceMs = 5000) {
      if (!this.alive) return exited;
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}

/** The V8 flags every role runs with, from the same build as CLI (see packages/cli/src/node-flags.ts). */
const { NODE_FLAGS } = await import(pathToFileURL(join(dirname(CLI), 'node-flags.js')).href);

/**
 * `cmd args` as it runs: plain, or confined to the CPU list `cpus` ("0", "1", "0-1") by
 * taskset, which execs it (same pid; every thread it starts inherits the list).
 */
export const onCpus = (cpus, cmd, args) => (cpus === undefined ? [cmd, args] : ['taskset', ['-c', cpus, cmd, ...args]]);

/**
 * `ftvm <args>` as a child process, started as the `ftvm` bin starts it (NODE_FLAGS), extra node
 * flags first; `cpus`: confined to those CPUs (see onCpus).
 */
export function startFtvm(args, { name, nodeFlags = [], cpus } = {}) {
  const [cmd, argv] = onCpus(cpus, process.execPath, [...NODE_FLAGS, ...nodeFlags, CLI, ...args]);
  return start(cmd, argv, { name: name ?? `ftvm ${args[0]}` });
}

/**
 * Runs a command to completion with a time bound; resolves { code, stdout, stderr, ms }.
 * A run that overstays is killed and rejected (a benchmark number never comes from a hung run).
 */
export function runBounded(cmd, args, timeoutMs) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(proc);
    const out = [];
    const err = [];
    let size = 0;
    const cap = (sink) => (d) => {
      // Client outputs are small; 16 MiB bounds a runaway one.
      if (size < 16 << 20) sink.push(d);
      size += d.length;
    };
    proc.stdout.on('data', cap(out));
    proc.stderr.on('data', cap(err));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')}: killed after ${timeoutMs} ms`));
    }, timeoutMs);
    proc.once('error', (e) => {
      clearTimeout(timer);
      live.delete(proc);
      reject(e);
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      live.delete(proc);
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), ms: performance.now() - t0 });
    });
  });
}

const CLK_TCK = 100; // Linux USER_HZ; /proc/<pid>/stat counts in these ticks

/** A /proc `stat` file's command name and CPU seconds (user + system). */
function readStat(path) {
  const stat = readFileSync(path, 'utf8');
  // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), s: (Number(rest[11]) + Number(rest[12])) / CLK_TCK };
}

/** CPU seconds (user + system, all threads) a live process has used, or null. */
export function cpuSeconds(pid) {
  try {
    return readStat(`/proc/${pid}/stat`).s;
  } catch {
    return null;
  }
}

/** CPU seconds of every thread of a live process: { tid: { comm, s } } (the main thread's comm ends in "(main)"). */
export function threadCpuSeconds(pid) {
  const out = {};
  let tids = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const { comm, s } = readStat(`/proc/${pid}/task/${tid}/stat`);
      out[tid] = { comm: Number(tid) === pid ? `${comm} (main)` : comm, s };
    } catch {
      // the thread ended
    }
  }
  return out;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
