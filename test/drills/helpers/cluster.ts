import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { GenericContainer, Network, Wait, type StartedNetwork, type StartedTestContainer } from 'testcontainers';
import { IMAGE, dockerAsync, sleep } from './env.js';
import { parseMetrics, scrape, type Samples } from './metrics.js';

/** Every node listens on this port inside its container; nodes are reached by network alias. */
export const NODE_PORT = 7000;
export const METRICS_PORT = 9100;
export const CLIENT_PORT = 6380;

export type NodeName = 'a' | 'b';
export type Role = 'primary' | 'secondary';

export interface DrillClusterOptions {
  /** Extra flags for every node (e.g. detection timeouts). */
  nodeArgs?: string[];
  proxyArgs?: string[];
  /** The URL the first primary replicates to (default ws://b:7000): the slow-secondary drill puts its delay proxy there. */
  secondaryUrl?: string;
  /** Publish the proxy's client port on this host port (stable across a proxy restart). Default: any free port. */
  clientHostPort?: number;
  /** Runs after the secondary started and before the primary does (the slow drill starts its delay proxy here). */
  beforePrimary?: (c: DrillCluster) => Promise<void>;
}

export interface TimelineEntry {
  /** ms since the cluster started */
  t: number;
  event: string;
}

/**
 * primary, secondary and proxy, each in its own container on a private network, with the proxy's
 * client port and every metrics port published to the host. Nodes are named by their network alias
 * (a, b); a replacement container takes over the alias of the one it replaces, so the proxy's
 * `--nodes ws://a:7000,ws://b:7000` stays valid. Faults are injected with the docker CLI.
 */
export class DrillCluster {
  network!: StartedNetwork;
  readonly nodes = new Map<NodeName, StartedTestContainer>();
  proxy!: StartedTestContainer;
  readonly timeline: TimelineEntry[] = [];
  private readonly token = randomBytes(16).toString('hex');
  private readonly t0 = performance.now();
  private readonly retired: string[] = [];

  constructor(readonly opts: DrillClusterOptions = {}) {}

  note(event: string): number {
    const now = performance.now();
    this.timeline.push({ t: Math.round(now - this.t0), event });
    return now;
  }

  /** ms since the cluster started, for timeline entries written by the drill. */
  since(t: number): number {
    return Math.round(t - this.t0);
  }

  async start(): Promise<void> {
    this.network = await new Network().start();
    await this.startNode('b', 'secondary', ['--peer', `ws://a:${NODE_PORT}`]);
    await this.opts.beforePrimary?.(this);
    await this.startNode('a', 'primary', ['--secondary', this.opts.secondaryUrl ?? `ws://b:${NODE_PORT}`]);
    await this.waitMetric('a', 'ftvm_protected', (v) => v === 1, 60_000);
    await this.startProxy();
    this.note('cluster up: a primary (protected), b secondary, proxy');
  }

  container(image = IMAGE): GenericContainer {
    return new GenericContainer(image).withNetwork(this.network).withEnvironment({ FTVM_TOKEN: this.token, FTVM_LOG_FORMAT: 'human' }).withStartupTimeout(90_000);
  }

  /** Starts node `name` as a fresh container (its alias taken over from any previous one). */
  async startNode(name: NodeName, role: Role, args: string[]): Promise<StartedTestContainer> {
    const c = await this.container()
      .withNetworkAliases(name)
      .withExposedPorts(METRICS_PORT)
      .withCommand([role, '--listen', `0.0.0.0:${NODE_PORT}`, '--node-id', name, '--guest', 'kv', '--metrics-port', String(METRICS_PORT), '--metrics-host', '0.0.0.0', ...(this.opts.nodeArgs ?? []), ...args])
      .withWaitStrategy(Wait.forLogMessage(/listening on/))
      .start();
    this.nodes.set(name, c);
    this.note(`node ${name} started as ${role} (container ${c.getId().slice(0, 12)})`);
    return c;
  }

  async startProxy(): Promise<void> {
    const port = this.opts.clientHostPort ? { container: CLIENT_PORT, host: this.opts.clientHostPort } : CLIENT_PORT;
    this.proxy = await this.container()
      .withNetworkAliases('proxy')
      .withExposedPorts(port, METRICS_PORT)
      .withCommand(['proxy', '--host', '0.0.0.0', '--port', String(CLIENT_PORT), '--nodes', `ws://a:${NODE_PORT},ws://b:${NODE_PORT}`, '--metrics-port', String(METRICS_PORT), '--metrics-host', '0.0.0.0', ...(this.opts.proxyArgs ?? [])])
      .withWaitStrategy(Wait.forLogMessage(/listening on/))
      .start();
    this.note(`proxy started (container ${this.proxy.getId().slice(0, 12)})`);
  }

  clientPort(): number {
    return this.proxy.getMappedPort(CLIENT_PORT);
  }

  metricsUrl(name: NodeName | 'proxy'): string {
    const c = name === 'proxy' ? this.proxy : this.nodes.get(name);
    if (!c) throw new Error(`no container for ${name}`);
    return `http://127.0.0.1:${c.getMappedPort(METRICS_PORT)}`;
  }

  /**
   * /metrics of a role: through its published port, else (a port mapping can go stale when a
   * container is reconnected to the network) from inside the container with its own node.
   */
  async metrics(name: NodeName | 'proxy'): Promise<Samples | null> {
    const direct = await scrape(this.metricsUrl(name));
    if (direct) return direct;
    const c = name === 'proxy' ? this.proxy : this.nodes.get(name);
    if (!c) return null;
    const r = spawnSync('docker', ['exec', c.getId(), '/usr/local/bin/node', '-e', `fetch('http://127.0.0.1:${METRICS_PORT}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`], { encoding: 'utf8', timeout: 10_000 });
    return r.status === 0 && r.stdout ? parseMetrics(r.stdout) : null;
  }

  async metric(name: NodeName | 'proxy', metric: string): Promise<number | undefined> {
    return (await this.metrics(name))?.get(metric);
  }

  /** Polls a metric of `name` until `ok` holds; throws with the last value after timeoutMs. */
  async waitMetric(name: NodeName | 'proxy', metric: string, ok: (v: number | undefined) => boolean, timeoutMs = 30_000): Promise<number> {
    const end = Date.now() + timeoutMs;
    let v: number | undefined;
    for (;;) {
      v = await this.metric(name, metric);
      if (ok(v)) return performance.now();
      if (Date.now() > end) throw new Error(`${name}: ${metric} is ${v} after ${timeoutMs} ms\n${this.dump()}`);
      await sleep(50);
    }
  }

  /** The node whose metrics say it is the primary (there must be exactly one reachable). */
  async primary(): Promise<NodeName> {
    const found: NodeName[] = [];
    for (const [name] of this.nodes) if ((await this.metric(name, 'ftvm_role{role="primary"}')) === 1) found.push(name);
    if (found.length !== 1) throw new Error(`expected one primary, found ${found.join(',') || 'none'}\n${this.dump()}`);
    return found[0]!;
  }

  /** `docker kill` (SIGKILL) of a node or the proxy; the container is removed later, at stop(). */
  async kill(name: NodeName | 'proxy'): Promise<number> {
    const c = name === 'proxy' ? this.proxy : this.nodes.get(name)!;
    const t = this.note(`docker kill ${name}`);
    await dockerAsync('kill', c.getId());
    this.retired.push(c.getId());
    if (name !== 'proxy') this.nodes.delete(name);
    // Free the image copy now: vfs holds a full rootfs per container, and the soak makes 100.
    await dockerAsync('rm', '-f', c.getId());
    return t;
  }

  /** `docker stop` (SIGTERM, then SIGKILL after 10 s): a planned shutdown, as in a rolling replacement. */
  async stopGracefully(name: NodeName): Promise<number> {
    const c = this.nodes.get(name)!;
    const t = this.note(`docker stop ${name}`);
    await dockerAsync('stop', '-t', '10', c.getId());
    this.note(`${name} exited`);
    this.nodes.delete(name);
    await dockerAsync('rm', '-f', c.getId());
    return t;
  }

  /** `docker network disconnect`: the node keeps running but reaches no one and no one reaches it. */
  async disconnect(name: NodeName): Promise<number> {
    const t = this.note(`docker network disconnect ${name}`);
    await dockerAsync('network', 'disconnect', this.network.getName(), this.nodes.get(name)!.getId());
    return t;
  }

  async reconnect(name: NodeName): Promise<number> {
    const t = this.note(`docker network connect ${name} (partition healed)`);
    await dockerAsync('network', 'connect', '--alias', name, this.network.getName(), this.nodes.get(name)!.getId());
    return t;
  }

  logs(name: NodeName | 'proxy', lines = 30): string {
    const c = name === 'proxy' ? this.proxy : this.nodes.get(name);
    if (!c) return '(gone)';
    try {
      return execLogs(c.getId(), lines);
    } catch (e) {
      return `(no logs: ${(e as Error).message})`;
    }
  }

  dump(lines = 30): string {
    const names: Array<NodeName | 'proxy'> = [...this.nodes.keys(), ...(this.proxy ? (['proxy'] as const) : [])];
    return names.map((n) => `--- ${n}\n${this.logs(n, lines)}`).join('\n');
  }

  async stop(): Promise<void> {
    const all = [...this.nodes.values(), ...(this.proxy ? [this.proxy] : [])];
    await Promise.all(all.map((c) => c.stop({ timeout: 1 }).catch(() => undefined)));
    await this.network?.stop().catch(() => undefined);
  }
}

function execLogs(id: string, lines: number): string {
  // docker logs replays the container's stderr on its own stderr: keep both.
  const r = spawnSync('docker', ['logs', '--tail', String(lines), id], { encoding: 'utf8', timeout: 10_000 });
  return `${r.stdout}${r.stderr}`.trim();
}
