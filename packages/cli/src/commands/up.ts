import { spawn, type ChildProcess } from 'node:child_process';
import { SHIPPED_GUESTS } from '@ftvm/guest-abi';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { int, oneOf, type CommandSpec } from '../flags.js';
import { clockFlags, diskFlags, vcpuFlags } from './node-common.js';
import { Logger, type Level } from '../logger.js';
import { CliError, UpError } from '../errors.js';
import { NODE_FLAGS } from '../node-flags.js';

const MAIN = fileURLToPath(new URL('../main.js', import.meta.url));

interface Role {
  name: 'secondary' | 'primary' | 'proxy';
  args: string[];
  proc?: ChildProcess;
}

/** How a client reaches the shipped guests (nothing for a guest of one's own). */
const CLIENT_HINT: Record<string, (host: string, port: number) => string> = {
  kv: (_h, p) => `(e.g. redis-cli -p ${p})`,
  http: (h, p) => `(e.g. curl http://${h}:${p}/)`,
};

/** Resolves when `port` can be bound on `host`, rejects with the bind error otherwise. */
function probePort(host: string, port: number): Promise<void> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen({ host, port, exclusive: true }, () => s.close(() => ok()));
  });
}

export const upCommand: CommandSpec = {
  name: 'up',
  summary: 'run primary, secondary and proxy on this machine (the embedded default)',
  usage: 'ftvm up [--guest kv] [--port 6380] [--policy adaptive|periodic|sync-io] [options]',
  flags: {
    guest: { type: 'string', default: 'kv', help: `shipped guest (${SHIPPED_GUESTS.join(', ')}) or path to a .wasm module` },
    port: { type: 'string', default: 6380, parse: int(1, 65535), help: 'client TCP port of the proxy' },
    host: { type: 'string', default: '127.0.0.1', help: 'address every role listens on' },
    'node-ports': { type: 'string', default: '7001,7002', help: 'listen ports of node A (primary first) and node B' },
    'metrics-port': { type: 'string', default: 9100, parse: int(1, 65533), help: 'metrics and status page of the proxy; node A and node B on the next two ports' },
    'token-file': { type: 'string', help: 'file holding the shared secret every role uses (default: a new random one in a temporary directory, removed on exit; its path is printed)' },
    policy: { type: 'string', default: 'adaptive', parse: oneOf('adaptive', 'periodic', 'sync-io'), help: 'epoch policy' },
    'interval-ms': { type: 'string', parse: int(1, 60_000), help: 'epoch interval (periodic) or max interval (adaptive)' },
    respawn: { type: 'string', default: 'on', parse: oneOf('on', 'off'), help: 'restart a killed node as a secondary, so protection returns' },
    'log-level': { type: 'string', default: 'info', parse: oneOf('error', 'warn', 'info', 'debug'), help: 'log level of every role' },
    'clock-mode': clockFlags['clock-mode']!,
    'clock-max-slew-ppm': clockFlags['clock-max-slew-ppm']!,
    'clock-step-threshold-ms': clockFlags['clock-step-threshold-ms']!,
    'vcpu-sched': vcpuFlags['vcpu-sched']!,
    'disk-size': { ...diskFlags['disk-size']!, help: 'give the guest a virtual disk of this size (e.g. 64M): each node gets its own file, node-a.img and node-b.img' },
    'disk-dir': { type: 'string', help: 'directory of the nodes\' disk files, kept after exit (default: a temporary directory removed on exit)' },
  },
  async run(f) {
    const log = new Logger('up', f['log-level'] as Level);
    const host = f.host as string;
    const ports = String(f['node-ports']).split(',').map(Number);
    if (ports.length !== 2 || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535))
      throw new CliError('FTVM_ERR_CLI_BAD_VALUE', '--node-ports must be two ports, e.g. 7001,7002');
    if (f['disk-dir'] !== undefined && f['disk-size'] === undefined) throw new CliError('FTVM_ERR_CLI_BAD_VALUE', '--disk-dir needs --disk-size');
    const [pa, pb] = ports as [number, number];
    const mb = f['metrics-port'] as number;
    // Every port first: a second `ftvm up` must fail before it starts anything.
    const wanted: [number, string][] = [[f.port as number, '--port (clients)'], [pa, '--node-ports (node a)'], [pb, '--node-ports (node b)'], [mb, '--metrics-port (proxy)'], [mb + 1, '--metrics-port + 1 (node a)'], [mb + 2, '--metrics-port + 2 (node b)']];
    for (const [port, what] of wanted) {
      try {
        await probePort(host, port);
      } catch (e) {
        throw new UpError('FTVM_ERR_UP_PORT_IN_USE', `${host}:${port} (${what}) cannot be bound: ${(e as Error & { code?: string }).code ?? (e as Error).message}. Is another 'ftvm up' running? Choose other ports with --port, --node-ports and --metrics-port`);
      }
    }
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-up-'));
    try {
      return await runUp(f, log, host, pa, pb, mb, dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

async function runUp(f: Record<string, unknown>, log: Logger, host: string, pa: number, pb: number, mb: number, dir: string): Promise<number> {
  let tokenFile = f['token-file'] as string | undefined;
  if (tokenFile === undefined) {
    tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  } else tokenFile = resolve(tokenFile);
  const urlA = `ws://${host}:${pa}`;
  const urlB = `ws://${host}:${pb}`;
  const common = ['--guest', f.guest as string, '--token-file', tokenFile, '--policy', f.policy as string, '--log-level', f['log-level'] as string];
  if (f['interval-ms'] !== undefined) common.push('--interval-ms', String(f['interval-ms']));
  for (const k of ['clock-mode', 'clock-max-slew-ppm', 'clock-step-threshold-ms', 'vcpu-sched']) common.push(`--${k}`, String(f[k]));
  // Each node has its own disk file: a secondary commits the primary's blocks into its own copy.
  const diskDir = (f['disk-dir'] as string | undefined) ?? dir;
  if (f['disk-dir'] !== undefined) mkdirSync(diskDir, { recursive: true });
  const disk = (k: string): string[] => (f['disk-size'] === undefined ? [] : ['--disk', join(diskDir, `node-${k}.img`), '--disk-size', String(f['disk-size'])]);
  // One machine: every role's metrics on --host too (the proxy's status page reads the nodes' there).
  const nodeA = ['--listen', `${host}:${pa}`, '--node-id', 'a', '--metrics-port', String(mb + 1), '--metrics-host', host, ...common, ...disk('a')];
  const nodeB = ['--listen', `${host}:${pb}`, '--node-id', 'b', '--metrics-port', String(mb + 2), '--metrics-host', host, ...common, ...disk('b')];
  const roles: Record<string, Role> = {
    b: { name: 'secondary', args: ['secondary', ...nodeB, '--peer', urlA] },
    a: { name: 'primary', args: ['primary', ...nodeA, '--secondary', urlB] },
    proxy: {
      name: 'proxy',
      args: ['proxy', '--port', String(f.port), '--host', host, '--nodes', `${urlA},${urlB}`, '--token-file', tokenFile, '--metrics-port', String(mb), '--metrics-host', host,
        '--status-peers', `a=http://${host}:${mb + 1},b=http://${host}:${mb + 2}`, '--log-level', f['log-level'] as string],
    },
  };
  let stopping = false;
  /** Set once every role listens: only then does a node's exit mean a crash to recover from. */
  let running = false;
  const start = (key: string, r: Role): Promise<void> =>
    new Promise((ok, fail) => {
      const proc = spawn(process.execPath, [...NODE_FLAGS, MAIN, ...r.args], { stdio: ['ignore', 'pipe', 'inherit'] });
      r.proc = proc;
      let ready = false;
      proc.stdout!.on('data', (d: Buffer) => {
        if (!ready && /listening on/.test(d.toString())) {
          ready = true;
          ok();
        }
      });
      proc.once('exit', (code, signal) => {
        if (!ready) return fail(new UpError('FTVM_ERR_UP_ROLE_FAILED', `the ${r.name} (node ${key}) exited before it listened (${signal ?? `exit code ${code}`}); its log is above`));
        if (stopping || !running) return;
        log.warn(`${r.name} node ${key} (pid ${proc.pid}) exited (${signal ?? code})`);
        if (key !== 'proxy' && f.respawn === 'on') {
          // A killed node comes back as a secondary of the survivor, which dials it: protection returns.
          const other = key === 'a' ? urlB : urlA;
          const args = key === 'a' ? nodeA : nodeB;
          setTimeout(() => {
            if (stopping) return;
            const nr: Role = { name: 'secondary', args: ['secondary', ...args, '--peer', other] };
            roles[key] = nr;
            start(key, nr).then(
              () => log.info(`node ${key} restarted as a secondary (pid ${nr.proc?.pid})`),
              (e: Error) => log.error(e.message),
            );
          }, 1000);
        }
      });
    });
  const stop = (r: Role | undefined): Promise<void> =>
    new Promise((done) => {
      const p = r?.proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return done();
      const t = setTimeout(() => p.kill('SIGKILL'), 5000);
      p.once('exit', () => {
        clearTimeout(t);
        done();
      });
      p.kill('SIGTERM');
    });
  // The proxy first: without it no node can be granted a promotion. Then the node started as a
  // secondary, so it never sees its primary's link close and asks for a promotion.
  const stopAll = async (): Promise<void> => {
    stopping = true;
    await stop(roles.proxy);
    const nodes = [roles.a, roles.b].sort((x, y) => Number(y?.name === 'secondary') - Number(x?.name === 'secondary'));
    for (const r of nodes) await stop(r);
  };
  const signalled = new Promise<void>((done) => {
    process.once('SIGINT', () => done());
    process.once('SIGTERM', () => done());
  });
  try {
    await start('b', roles.b!);
    await start('a', roles.a!);
    await start('proxy', roles.proxy!);
  } catch (e) {
    await stopAll();
    throw e;
  }
  running = true;
  const pid = (k: string) => roles[k]!.proc!.pid;
  const guest = f.guest as string;
  const port = f.port as number;
  process.stdout.write(
    [
      '',
      `ftvm up: ${guest} guest, ${f.policy as string} epochs`,
      `  clients connect to   ${host}:${port}   ${CLIENT_HINT[guest]?.(host, port) ?? ''}`.trimEnd(),
      `  proxy                pid ${pid('proxy')}   metrics http://${host}:${mb}/metrics`,
      `  node a (primary)     pid ${pid('a')}   ${urlA}   metrics http://${host}:${mb + 1}/metrics`,
      `  node b (secondary)   pid ${pid('b')}   ${urlB}   metrics http://${host}:${mb + 2}/metrics`,
      `  status page          http://${host}:${mb}/`,
      `  token file           ${tokenFile}${f['token-file'] === undefined ? ' (removed on exit; give it to ftvm migrate/snapshot as --token-file)' : ''}`,
      ...(f['disk-size'] === undefined ? [] : [`  disks                ${join(diskDir, 'node-a.img')}, ${join(diskDir, 'node-b.img')} (${String(f['disk-size'])} bytes each)`]),
      `  watch a failover:    kill -9 ${pid('a')}`,
      '  stop: Ctrl-C',
      '',
    ].join('\n'),
  );
  await signalled;
  log.info('stopping every role (the proxy first, so no failover starts)');
  await stopAll();
  return 0;
}
