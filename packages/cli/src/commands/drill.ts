import { execFileSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { CliError } from '../errors.js';
import { hostPort, int, type CommandSpec } from '../flags.js';

/**
 * `ftvm drill <name>`: the failover drills of test/drills for operators. By default it prints the
 * docker commands of the drill against the compose deployment (deploy/compose.yaml); with --run it
 * injects the fault itself (docker CLI) while a probe client INCRs through the proxy, and reports
 * the client-visible pause, acknowledged writes lost and client errors.
 */
interface Drill {
  summary: string;
  /** Operator steps; {a} {b} are node containers, {p} the proxy, {net} the network, {pri}/{sec} as found. */
  steps: string[];
  /** --run supports it (the fault is one docker command and the outcome is visible to a client). */
  runnable: boolean;
}

const DRILLS: Record<string, Drill> = {
  'primary-crash': {
    summary: 'kill -9 the primary; the secondary takes over with the clients connected',
    steps: [
      '# find the primary: the node whose /metrics has ftvm_role{role="primary"} 1',
      'curl -s localhost:9101/metrics | grep "^ftvm_role{role=\\"primary\\"}"',
      'docker kill {pri}',
      '# clients pause (~1 s), then go on; ftvm_failovers_total on the proxy grows by 1',
      'curl -s localhost:9100/metrics | grep "^ftvm_failovers_total"',
      '# restore protection: a fresh secondary under the dead node\'s name joins the survivor',
      'docker rm {pri} && docker run -d --name {pri} --network {net} --network-alias {pri-alias} -e FTVM_TOKEN ftvm:local secondary --listen 0.0.0.0:7000 --node-id {pri-alias} --join ws://{sec-alias}:7000 --peer ws://{sec-alias}:7000 --metrics-port 9100 --metrics-host 0.0.0.0',
      'curl -s localhost:<survivor metrics port>/metrics | grep "^ftvm_protected"   # 1 again',
    ],
    runnable: true,
  },
  partition: {
    summary: 'cut the primary off the network, promote the secondary, heal: the old primary is fenced and rejoins',
    steps: [
      'docker network disconnect {net} {pri}',
      '# after --failover-timeout-ms (1 s) the proxy promotes the secondary; clients go on',
      'sleep 5',
      'docker network connect --alias {pri-alias} {net} {pri}',
      '# the proxy refuses the old primary\'s term ("refused message from node ...: term N < M"), fences it,',
      '# and it rejoins as secondary: its ftvm_role{role="secondary"} becomes 1, the new primary\'s ftvm_protected 1',
      'docker logs {p} 2>&1 | grep -E "refused|fenc"',
    ],
    runnable: true,
  },
  'secondary-crash': {
    summary: 'kill -9 the secondary; the primary goes on unprotected until a fresh secondary joins',
    steps: [
      'docker kill {sec}',
      '# the primary\'s ftvm_protected drops to 0; clients are served (--on-secondary-loss continue)',
      'docker rm {sec} && docker run -d --name {sec} --network {net} --network-alias {sec-alias} -e FTVM_TOKEN ftvm:local secondary --listen 0.0.0.0:7000 --node-id {sec-alias} --join ws://{pri-alias}:7000 --peer ws://{pri-alias}:7000 --metrics-port 9100 --metrics-host 0.0.0.0',
      '# ftvm_protected returns to 1 once the full sync is done',
    ],
    runnable: true,
  },
  'proxy-restart': {
    summary: 'restart the proxy; clients reconnect and find every acknowledged write',
    steps: ['docker restart -t 0 {p}', '# clients see a connection reset, reconnect to the same port, and read back what was acknowledged'],
    runnable: true,
  },
  'slow-secondary': {
    summary: 'slow the replication link (delay + bandwidth); epochs stretch, memory stays bounded',
    steps: [
      '# no sch_netem needed: run test/drills/helpers/delay-proxy.mjs as a container "slow" in front of the secondary,',
      '# point the primary\'s --secondary at ws://slow:7000, then shape the link at run time:',
      'curl "localhost:<slow control port>/set?delayMs=100&bps=1000000"',
      '# watch ftvm_epoch_duration_seconds (up), process_resident_memory_bytes and ftvm_inflight_epochs (bounded: 8) on the primary',
      'curl "localhost:<slow control port>/set?delayMs=0&bps=0"',
    ],
    runnable: false,
  },
  'rolling-replacement': {
    summary: 'replace the secondary, then the primary, with fresh containers: one failover in all',
    steps: [
      'docker stop {sec} && docker rm {sec}',
      'docker run -d --name {sec} --network {net} --network-alias {sec-alias} -e FTVM_TOKEN ftvm:local secondary --listen 0.0.0.0:7000 --node-id {sec-alias} --join ws://{pri-alias}:7000 --peer ws://{pri-alias}:7000 --metrics-port 9100 --metrics-host 0.0.0.0',
      '# wait for ftvm_protected 1 on the primary, then:',
      'docker stop {pri} && docker rm {pri}      # the one failover',
      'docker run -d --name {pri} --network {net} --network-alias {pri-alias} -e FTVM_TOKEN ftvm:local secondary --listen 0.0.0.0:7000 --node-id {pri-alias} --join ws://{sec-alias}:7000 --peer ws://{sec-alias}:7000 --metrics-port 9100 --metrics-host 0.0.0.0',
    ],
    runnable: false,
  },
};

const csv = (raw: string): string[] => raw.split(',').map((s) => s.trim()).filter(Boolean);

export const drillCommand: CommandSpec = {
  name: 'drill',
  summary: 'rehearse a failure: print its docker commands, or --run it against a running deployment',
  usage: `ftvm drill <${Object.keys(DRILLS).join('|')}|list> [--run] [options]`,
  positionals: ['<drill>'],
  flags: {
    run: { type: 'boolean', default: false, help: 'inject the fault now (docker CLI) and measure it from a client; else print the steps' },
    client: { type: 'string', default: '127.0.0.1:6380', parse: hostPort, help: 'the proxy\'s client address, host:port' },
    nodes: { type: 'string', default: ['ftvm-node-a', 'ftvm-node-b'], parse: (raw: string) => csv(raw), help: 'the two node containers (names or ids), comma-separated' },
    'node-metrics': { type: 'string', default: ['http://127.0.0.1:9101', 'http://127.0.0.1:9102'], parse: (raw: string) => csv(raw), help: 'the nodes\' metrics URLs, in the order of --nodes' },
    proxy: { type: 'string', default: 'ftvm-proxy', help: 'the proxy container (name or id)' },
    network: { type: 'string', default: 'ftvm_default', help: 'the deployment\'s docker network' },
    'partition-ms': { type: 'string', default: 5000, parse: int(100, 600_000), help: 'partition drill: how long the primary stays cut off' },
    'timeout-ms': { type: 'string', default: 30_000, parse: int(1000, 600_000), help: 'give up when clients get no answer this long' },
  },
  async run(f, pos) {
    const name = pos[0];
    if (!name || name === 'list') {
      for (const [n, d] of Object.entries(DRILLS)) process.stdout.write(`${n.padEnd(20)} ${d.summary}${d.runnable ? '' : ' (print only)'}\n`);
      return name ? 0 : 2;
    }
    const drill = DRILLS[name];
    if (!drill) throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `unknown drill '${name}' (drills: ${Object.keys(DRILLS).join(', ')})`);
    const nodes = f.nodes as string[];
    const metrics = f['node-metrics'] as string[];
    if (nodes.length !== 2 || metrics.length !== 2) throw new CliError('FTVM_ERR_CLI_BAD_VALUE', '--nodes and --node-metrics must each name two nodes');
    if (!f.run) {
      const fill = (s: string) =>
        s
          .replaceAll('{pri}', '<primary container>')
          .replaceAll('{sec}', '<secondary container>')
          .replaceAll('{pri-alias}', '<its service name>')
          .replaceAll('{sec-alias}', '<the other node\'s service name>')
          .replaceAll('{p}', f.proxy as string)
          .replaceAll('{net}', f.network as string);
      process.stdout.write(`# drill ${name}: ${drill.summary}\n# (nodes: ${nodes.join(', ')}; the automated version: npm run drills -- test/drills/${name})\n${drill.steps.map(fill).join('\n')}\n`);
      return 0;
    }
    if (!drill.runnable) throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `drill '${name}' cannot --run against a deployment (it needs its own topology); run it without --run for the steps`);
    return runDrill(name, f, nodes, metrics);
  },
};

function docker(...args: string[]): void {
  try {
    execFileSync('docker', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
  } catch (e) {
    throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `docker ${args.join(' ')} failed: ${String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim()}`);
  }
}

async function role(url: string): Promise<'primary' | 'secondary' | null> {
  try {
    const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
    if (/^ftvm_role\{role="primary"\} 1$/m.test(text)) return 'primary';
    if (/^ftvm_role\{role="secondary"\} 1$/m.test(text)) return 'secondary';
  } catch {
    /* unreachable: no role */
  }
  return null;
}

async function runDrill(name: string, f: Record<string, unknown>, nodes: string[], metrics: string[]): Promise<number> {
  const roles = await Promise.all(metrics.map(role));
  const pi = roles.indexOf('primary');
  if (pi < 0) throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `no node reports ftvm_role primary at ${metrics.join(', ')}`);
  const [pri, sec] = [nodes[pi]!, nodes[1 - pi]!];
  const client = f.client as { host: string; port: number };
  const probe = await Probe.start(client.host, client.port, name === 'proxy-restart');
  await probe.until(200, f['timeout-ms'] as number);
  const t0 = Date.now();
  const log = (m: string) => process.stdout.write(`${String(Date.now() - t0).padStart(6)} ms  ${m}\n`);
  if (name === 'primary-crash') {
    log(`docker kill ${pri} (primary)`);
    docker('kill', pri);
  } else if (name === 'secondary-crash') {
    log(`docker kill ${sec} (secondary)`);
    docker('kill', sec);
  } else if (name === 'proxy-restart') {
    log(`docker restart ${f.proxy as string}`);
    docker('restart', '-t', '0', f.proxy as string);
  } else {
    // The aliases the node is reached by (its compose service name): restored when the partition heals.
    const net = f.network as string;
    const inspected = execFileSync('docker', ['inspect', '-f', `{{json (index .NetworkSettings.Networks "${net}").Aliases}}`, pri], { encoding: 'utf8' }).trim();
    const aliases = ((JSON.parse(inspected || 'null') as string[] | null) ?? []).filter((a) => !/^[0-9a-f]{12}$/.test(a));
    log(`docker network disconnect ${net} ${pri}`);
    docker('network', 'disconnect', net, pri);
    await probe.until(probe.acks + 200, f['timeout-ms'] as number);
    log('clients served by the new primary');
    await new Promise((r) => setTimeout(r, f['partition-ms'] as number));
    log(`docker network connect ${aliases.map((a) => `--alias ${a} `).join('')}${net} ${pri}`);
    docker('network', 'connect', ...aliases.flatMap((a) => ['--alias', a]), net, pri);
  }
  await probe.until(probe.acks + 200, f['timeout-ms'] as number);
  log('clients answered again');
  const r = await probe.stop();
  process.stdout.write(
    `drill ${name}: acknowledged INCRs ${r.acks}, acknowledged writes lost ${r.lost}, client errors ${r.errors.length}, connection resets ${r.resets}, longest client-visible pause ${r.pauseMs} ms\n${r.errors.slice(0, 10).map((e) => `  error: ${e}\n`).join('')}`,
  );
  process.stdout.write(`next: restore protection (see 'ftvm drill ${name}' without --run)\n`);
  return r.lost === 0 && r.errors.length === 0 ? 0 : 1;
}

/**
 * A probe client: INCRs one fresh key on one connection, 8 in flight. Each reply must be the
 * previous + 1 (after a reconnect: above the last acknowledged value). Buffers are bounded by the window.
 */
class Probe {
  acks = 0;
  resets = 0;
  lost = 0;
  readonly errors: string[] = [];
  private last = 0;
  private inflight = 0;
  private afterReset = false;
  private uncertain = 0;
  private lastReplyAt = Date.now();
  pauseMs = 0;
  private sock: Socket | null = null;
  private buf = '';
  private stopped = false;
  private readonly key = `ftvm-drill:${Date.now()}`;
  private constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly reconnect: boolean,
  ) {}

  static async start(host: string, port: number, reconnect: boolean): Promise<Probe> {
    const p = new Probe(host, port, reconnect);
    await p.open();
    return p;
  }

  private open(): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = connect(this.port, this.host);
      s.once('connect', () => {
        this.sock = s;
        this.fill();
        resolve();
      });
      s.once('error', (e) => (this.sock === s ? undefined : reject(new CliError('FTVM_ERR_CLI_BAD_VALUE', `cannot reach the proxy at ${this.host}:${this.port}: ${e.message}`))));
      s.setEncoding('latin1');
      s.on('data', (d: string) => this.onData(d));
      s.on('close', () => this.sock === s && this.onClose());
    });
  }

  private fill(): void {
    let out = '';
    for (; this.inflight < 8; this.inflight++) out += `*2\r\n$4\r\nINCR\r\n$${this.key.length}\r\n${this.key}\r\n`;
    if (out && this.sock && !this.stopped) this.sock.write(out);
  }

  private onData(d: string): void {
    this.buf += d;
    if (this.buf.length > 1 << 20) this.errors.push('reply buffer over 1 MiB');
    let nl: number;
    while ((nl = this.buf.indexOf('\r\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 2);
      this.inflight--;
      const now = Date.now();
      this.pauseMs = Math.max(this.pauseMs, now - this.lastReplyAt);
      this.lastReplyAt = now;
      const v = line.startsWith(':') ? Number(line.slice(1)) : NaN;
      if (Number.isNaN(v)) this.errors.push(`INCR replied '${line}'`);
      else if (this.afterReset ? v <= this.last || v > this.last + this.uncertain + 1 : v !== this.last + 1) {
        if (v <= this.last) this.lost += this.afterReset ? this.last - v + 1 : 0;
        this.errors.push(`INCR ${this.key} = ${v} after ${this.last}`);
      }
      this.afterReset = false;
      if (!Number.isNaN(v)) this.last = v;
      this.acks++;
    }
    this.fill();
  }

  private onClose(): void {
    this.sock = null;
    if (this.stopped) return;
    if (!this.reconnect) {
      this.errors.push('the proxy closed the connection');
      return;
    }
    this.resets++;
    this.uncertain = this.inflight;
    this.inflight = 0;
    this.buf = '';
    this.afterReset = true;
    const retry = () => void this.open().catch(() => !this.stopped && setTimeout(retry, 100));
    setTimeout(retry, 100);
  }

  async until(acks: number, timeoutMs: number): Promise<void> {
    while (this.acks < acks) {
      if (Date.now() - this.lastReplyAt > timeoutMs) throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `no reply from the proxy for ${timeoutMs} ms (${this.acks} INCRs acknowledged)`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(): Promise<{ acks: number; lost: number; errors: string[]; resets: number; pauseMs: number }> {
    this.stopped = true;
    this.sock?.destroy();
    return { acks: this.acks, lost: this.lost, errors: this.errors, resets: this.resets, pauseMs: this.pauseMs };
  }
}
