import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { mark, spawnFtvm, waitForLineAfter, type Spawned } from './ftvm.js';

// Each vitest worker gets its own range (VITEST_POOL_ID is 1..workers), so test files
// running in parallel never pick the same port; a random offset keeps two runs apart.
const pool = Number(process.env.VITEST_POOL_ID ?? 0);
let nextPort = 20000 + (pool % 8) * 4000 + Math.floor(Math.random() * 3000);
/** Ports for a test cluster: a per-worker range, never reused within a run. */
export function freePorts(n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(nextPort++);
  return out;
}

export interface ClusterOptions {
  guest?: string;
  policy?: string;
  nodeArgs?: string[];
  /** Arguments one node gets and the other does not (e.g. its own `--disk` file under `dir`). */
  perNodeArgs?: (k: 'a' | 'b', dir: string) => string[];
  proxyArgs?: string[];
  /** Start the proxy (default true). */
  proxy?: boolean;
  /** Give every role its own `--metrics-port` (see `metricsPorts`, `metricsUrl`). Default false. */
  metrics?: boolean;
}

/**
 * Real processes: node a (primary), node b (secondary), and the proxy, on loopback.
 * `respawn(key)` restarts a killed node as a secondary of the survivor.
 */
export class Cluster {
  nodes: Record<'a' | 'b', Spawned> = {} as Record<'a' | 'b', Spawned>;
  proxy!: Spawned;
  readonly ports: { a: number; b: number; proxy: number };
  /** With `metrics: true`: the metrics port of each role (a node keeps its port across respawns). */
  readonly metricsPorts: { a: number; b: number; proxy: number } | undefined;
  readonly tokenFile: string;
  /** A temporary directory of this cluster's own (the token file, per-node files). */
  readonly dir: string;
  private all: Spawned[] = [];

  constructor(readonly opts: ClusterOptions = {}) {
    const [a, b, proxy] = freePorts(3) as [number, number, number];
    this.ports = { a, b, proxy };
    if (opts.metrics) {
      const [ma, mb, mp] = freePorts(3) as [number, number, number];
      this.metricsPorts = { a: ma, b: mb, proxy: mp };
    }
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-cluster-'));
    this.dir = dir;
    this.tokenFile = join(dir, 'token');
    writeFileSync(this.tokenFile, randomBytes(16).toString('hex'));
  }

  url(k: 'a' | 'b'): string {
    return `ws://127.0.0.1:${this.ports[k]}`;
  }

  /** Base URL of a role's metrics server (`metrics: true` only), e.g. http://127.0.0.1:20001. */
  metricsUrl(k: 'a' | 'b' | 'proxy'): string {
    if (!this.metricsPorts) throw new Error('Cluster started without metrics: true');
    return `http://127.0.0.1:${this.metricsPorts[k]}`;
  }

  private metricsArgs(k: 'a' | 'b' | 'proxy'): string[] {
    return this.metricsPorts ? ['--metrics-port', String(this.metricsPorts[k])] : [];
  }

  private nodeArgs(k: 'a' | 'b'): string[] {
    return [...this.metricsArgs(k),
      '--listen', `127.0.0.1:${this.ports[k]}`, '--node-id', k, '--guest', this.opts.guest ?? 'kv',
      '--token-file', this.tokenFile, '--policy', this.opts.policy ?? 'adaptive', ...(this.opts.nodeArgs ?? []),
      ...(this.opts.perNodeArgs?.(k, this.dir) ?? []),
    ];
  }

  startNode(k: 'a' | 'b', role: 'primary' | 'secondary'): Spawned {
    const other = k === 'a' ? 'b' : 'a';
    const args = role === 'primary' ? ['primary', ...this.nodeArgs(k), '--secondary', this.url(other)] : ['secondary', ...this.nodeArgs(k), '--peer', this.url(other)];
    const s = spawnFtvm(args);
    this.nodes[k] = s;
    this.all.push(s);
    return s;
  }

  async start(): Promise<void> {
    const b = this.startNode('b', 'secondary');
    await b.waitFor(/listening on/, 60_000);
    const a = this.startNode('a', 'primary');
    await a.waitFor(/listening on/, 60_000);
    await a.waitFor(/ PROTECTED:/, 30_000);
    if (this.opts.proxy !== false) await this.startProxy();
  }

  /** Starts (or, after the old one died, restarts) the proxy on the same port. */
  async startProxy(): Promise<Spawned> {
    this.proxy = spawnFtvm([
      'proxy', '--port', String(this.ports.proxy), '--nodes', `${this.url('a')},${this.url('b')}`, '--token-file', this.tokenFile, ...this.metricsArgs('proxy'), ...(this.opts.proxyArgs ?? []),
    ]);
    this.all.push(this.proxy);
    await this.proxy.waitFor(/listening on/, 30_000);
    return this.proxy;
  }

  /** The node currently primary (from its last role line). */
  primaryKey(): 'a' | 'b' {
    const last = (s: Spawned) => [...s.out].reverse().find((l) => /role (primary|secondary)/.test(l));
    for (const k of ['a', 'b'] as const) {
      const s = this.nodes[k];
      if (s && s.proc.exitCode === null && s.proc.signalCode === null && /role primary/.test(last(s) ?? '')) return k;
    }
    throw new Error('no live primary');
  }

  /** SIGKILLs the primary and waits until the survivor says it was promoted. */
  async killPrimary(timeoutMs = 30_000): Promise<{ dead: 'a' | 'b'; survivor: 'a' | 'b'; from: { out: number; err: number } }> {
    const dead = this.primaryKey();
    const survivor = dead === 'a' ? 'b' : 'a';
    const from = mark(this.nodes[survivor]);
    this.nodes[dead].proc.kill('SIGKILL');
    await waitForLineAfter(this.nodes[survivor], /PROMOTED to primary/, from, timeoutMs);
    return { dead, survivor, from };
  }

  /** Restarts the killed node as a secondary and waits until the survivor is protected again. */
  async reprotect(k: { dead: 'a' | 'b'; survivor: 'a' | 'b'; from: { out: number; err: number } }, timeoutMs = 90_000): Promise<void> {
    this.startNode(k.dead, 'secondary');
    await waitForLineAfter(this.nodes[k.survivor], / PROTECTED:/, k.from, timeoutMs);
  }

  /** Kills the primary, restarts it as a secondary and waits until the survivor is protected again. */
  async killPrimaryAndRecover(): Promise<void> {
    await this.reprotect(await this.killPrimary(20_000), 60_000);
  }

  /** The last lines of every process, for a failing test's message. */
  dump(lines = 25): string {
    const parts = Object.entries(this.nodes).map(([k, s]) => `--- node ${k} (pid ${s.proc.pid})\n${collapseRepeats(s.err).slice(-lines).join('\n')}`);
    if (this.proxy) parts.push(`--- proxy\n${collapseRepeats(this.proxy.err).slice(-lines).join('\n')}`);
    return parts.join('\n');
  }

  async stop(): Promise<void> {
    await Promise.all(this.all.map((s) => s.stop('SIGKILL')));
  }
}

/** A Cluster started before the describe block's tests and stopped after them. */
export function useCluster(opts: ClusterOptions = {}, startTimeoutMs = 120_000): Cluster {
  const cluster = new Cluster(opts);
  beforeAll(() => cluster.start(), startTimeoutMs);
  afterAll(() => cluster.stop());
  return cluster;
}

/**
 * Log lines with runs of the same message (timestamp aside) folded into one line, so a
 * retry loop does not push what came before it out of a failing test's dump.
 */
export function collapseRepeats(lines: readonly string[]): string[] {
  const out: string[] = [];
  const body = (l: string) => l.replace(/^\d\d:\d\d:\d\d\.\d{3} /, '');
  let run = 0;
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (i > 0 && body(l) === body(lines[i - 1]!)) {
      run++;
      continue;
    }
    if (run > 0) out.push(`  (same line ${run} more time${run === 1 ? '' : 's'}, last ${lines[i - 1]!.slice(0, 12)})`);
    run = 0;
    out.push(l);
  }
  if (run > 0) out.push(`  (same line ${run} more time${run === 1 ? '' : 's'}, last ${lines[lines.length - 1]!.slice(0, 12)})`);
  return out;
}
