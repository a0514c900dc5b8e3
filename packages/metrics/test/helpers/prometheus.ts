import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { findBinary } from './binaries.js';

export interface PromQLSample {
  metric: Record<string, string>;
  /** [unix seconds, value as text] */
  value: [number, string];
}

export interface PromQLResult {
  resultType: 'vector' | 'scalar' | 'matrix' | 'string';
  result: PromQLSample[] | [number, string];
}

export interface PrometheusInstance {
  /** e.g. http://127.0.0.1:40123 */
  readonly url: string;
  /** The config Prometheus actually loaded (after target rewriting). */
  readonly configText: string;
  /** Instant query; throws with Prometheus' error text on a bad expression. */
  queryPromQL(expr: string): Promise<PromQLResult>;
  /** Polls until every target is up (or throws after timeoutMs). */
  waitForTargetsUp(timeoutMs?: number): Promise<void>;
  /** Polls `expr` until `accept` holds on its result (or throws after timeoutMs). */
  waitFor(expr: string, accept: (r: PromQLResult) => boolean, timeoutMs?: number): Promise<PromQLResult>;
  stop(): Promise<void>;
}

export interface StartPrometheusOptions {
  /** A prometheus.yml to load (e.g. deploy/prometheus/prometheus.yml). Default: one generated from `jobs`. */
  configPath?: string;
  /** Textual rewrite of targets in configPath: { 'localhost:9101': '127.0.0.1:40001' }. */
  targets?: Record<string, string>;
  /** Without configPath: job name -> targets. */
  jobs?: Record<string, string[]>;
  /** Forces scrape_interval / evaluation_interval (seconds) so tests need not wait 5 s. Default 1. */
  scrapeIntervalSec?: number;
  /** Ready timeout, ms. Default 30000. */
  readyTimeoutMs?: number;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function generatedConfig(jobs: Record<string, string[]>): string {
  const lines = ['global:', '  scrape_interval: 5s', '  evaluation_interval: 5s', 'scrape_configs:'];
  for (const [job, targets] of Object.entries(jobs)) {
    lines.push(`  - job_name: ${JSON.stringify(job)}`, '    static_configs:', `      - targets: ${JSON.stringify(targets)}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * Runs the real `prometheus` binary on a free loopback port with a temporary TSDB, and waits
 * until /-/ready. Callers must `stop()` it (kills the process, deletes the temp dir).
 * Throws if the binary is missing: guard with requireBinary(ctx, ['prometheus'], 'prometheus').
 */
export async function startPrometheus(opts: StartPrometheusOptions): Promise<PrometheusInstance> {
  const bin = findBinary('prometheus');
  if (!bin) throw new Error('prometheus binary not found on PATH (apt-get install -y prometheus)');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ftvm-prom-'));
  let text = opts.configPath ? await readFile(opts.configPath, 'utf8') : generatedConfig(opts.jobs ?? {});
  for (const [from, to] of Object.entries(opts.targets ?? {})) text = text.split(from).join(to);
  const interval = `${opts.scrapeIntervalSec ?? 1}s`;
  text = text.replace(/scrape_interval: *\S+/g, `scrape_interval: ${interval}`)
    .replace(/evaluation_interval: *\S+/g, `evaluation_interval: ${interval}`)
    .replace(/scrape_timeout: *\S+/g, `scrape_timeout: ${interval}`);
  const configFile = path.join(dir, 'prometheus.yml');
  await writeFile(configFile, text);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let log = '';
  const child: ChildProcess = spawn(bin, [
    `--config.file=${configFile}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`,
    '--log.level=warn',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Keep only the tail of the log: bounded, enough to explain a failed start.
  const keep = (b: Buffer): void => { log = (log + b.toString()).slice(-8192); };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let dead = false;
  void exited.then(() => { dead = true; });

  const stop = async (): Promise<void> => {
    if (!dead) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    await rm(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  for (;;) {
    if (dead) {
      await stop();
      throw new Error(`prometheus exited before ready:\n${log}`);
    }
    try {
      if ((await fetch(`${url}/-/ready`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus not ready after ${opts.readyTimeoutMs ?? 30_000} ms:\n${log}`);
    }
    await sleep(100);
  }

  const queryPromQL = async (expr: string): Promise<PromQLResult> => {
    const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = (await res.json()) as { status: string; data?: PromQLResult; error?: string };
    if (body.status !== 'success' || !body.data) throw new Error(`PromQL '${expr}' failed: ${body.error ?? res.status}`);
    return body.data;
  };

  const waitFor = async (expr: string, accept: (r: PromQLResult) => boolean, timeoutMs = 20_000): Promise<PromQLResult> => {
    const end = Date.now() + timeoutMs;
    let last: PromQLResult | undefined;
    for (;;) {
      last = await queryPromQL(expr);
      if (accept(last)) return last;
      if (Date.now() > end) throw new Error(`'${expr}' not accepted after ${timeoutMs} ms; last: ${JSON.stringify(last).slice(0, 500)}`);
      await sleep(250);
    }
  };

  return {
    url,
    configText: text,
    queryPromQL,
    waitFor,
    waitForTargetsUp: async (timeoutMs = 20_000) => {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const res = (await (await fetch(`${url}/api/v1/targets?state=active`)).json()) as {
          data: { activeTargets: Array<{ health: string; scrapeUrl: string; lastError: string }> };
        };
        const ts = res.data.activeTargets;
        if (ts.length > 0 && ts.every((t) => t.health === 'up')) return;
        if (Date.now() > end) throw new Error(`targets not up: ${JSON.stringify(ts.map((t) => [t.scrapeUrl, t.health, t.lastError]))}`);
        await sleep(250);
      }
    },
    stop,
  };
}
