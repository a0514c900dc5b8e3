import { spawn, type ChildProcess } from 'node:child_process';
import { SHIPPED_GUESTS } from '@ftvm/guest-abi';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { int, oneOf, type CommandSpec } from '../flags.js';
import { clockFlags, diskFlags, vcpuFlags } from './node-common.js';
import { Logger, type Level } from '../logger.js';
import { CliError } from '../errors.js';
import { NODE_FLAGS } from '../node-flags.js';

const MAIN = fileURLToPath(new URL('../main.js', import.meta.url));

interface Role {
  name: 'secondary' | 'primary' | 'proxy';
  args: string[];
  proc?: ChildProcess;
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
    'metrics-base-port': { type: 'string', default: 9100, parse: int(1, 65533), help: 'metrics of proxy, node A, node B on this port and the next two' },
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
      throw new Error(`--node-ports must be two ports, e.g. 7001,7002`);
    const [pa, pb] = ports as [number, number];
    const mb = f['metrics-base-port'] as number;
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-up-'));
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, randomBytes(32).toString('hex'), { mode: 0o600 });
    const urlA = `ws://${host}:${pa}`;
    const urlB = `ws://${host}:${pb}`;
    const common = ['--guest', f.guest as string, '--token-file', tokenFile, '--policy', f.policy as string, '--log-level', f['log-level'] as string];
    if (f['interval-ms'] !== undefined) common.push('--interval-ms', String(f['interval-ms']));
    for (const k of ['clock-mode', 'clock-max-slew-ppm', 'clock-step-threshold-ms', 'vcpu-sched']) common.push(`--${k}`, String(f[k]));
    // Each node has its own disk file: a secondary commits the primary's blocks into its own copy.
    const diskDir = (f['disk-dir'] as string | undefined) ?? dir;
    if (f['disk-dir'] !== undefined) mkdirSync(diskDir, { recursive: true });
    const disk = (k: string): string[] => (f['disk-size'] === undefined ? [] : ['--disk', join(diskDir, `node-${k}.img`), '--disk-size', String(f['disk-size'])]);
    if (f['disk-dir'] !== undefined && f['disk-size'] === undefined) throw new CliError('FTVM_ERR_CLI_BAD_VALUE', '--disk-dir needs --disk-size');
    const nodeA = ['--listen', `${host}:${pa}`, '--node-id', 'a', '--metrics-port', String(mb + 1), ...common, ...disk('a')];
    const nodeB = ['--listen', `${host}:${pb}`, '--node-id', 'b', '--metrics-port', String(mb + 2), ...common, ...disk('b')];
    const roles: Record<string, Role> = {
      b: { name: 'secondary', args: ['secondary', ...nodeB, '--peer', urlA] },
      a: { name: 'primary', args: ['primary', ...nodeA, '--secondary', urlB] },
      proxy: {
        name: 'proxy',
        args: ['proxy', '--port', String(f.port), '--host', host, '--nodes', `${urlA},${urlB}`, '--token-file', tokenFile, '--metrics-port', String(mb),
          '--status-peers', `a=http://${host}:${mb + 1},b=http://${host}:${mb + 2}`, '--log-level', f['log-level'] as string],
      },
    };
    let stopping = false;
    const start = (key: string, r: Role): Promise<void> =>
      new Promise((resolve, reject) => {
        const proc = spawn(process.execPath, [...NODE_FLAGS, MAIN, ...r.args], { stdio: ['ignore', 'pipe', 'inherit'] });
        r.proc = proc;
        let ready = false;
        proc.stdout!.on('data', (d: Buffer) => {
          if (!ready && /listening on/.test(d.toString())) {
            ready = true;
            resolve();
          }
        });
        proc.once('exit', (code, signal) => {
          if (!ready) reject(new Error(`${r.name} (${key}) exited before listening (${signal ?? code})`));
          if (stopping) return;
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
    await start('b', roles.b!);
    await start('a', roles.a!);
    await start('proxy', roles.proxy!);
    const pid = (k: string) => roles[k]!.proc!.pid;
    process.stdout.write(
      [
        '',
        `ftvm up: ${f.guest as string} guest, ${f.policy as string} epochs`,
        `  clients connect to   ${host}:${f.port as number}   (e.g. redis-cli -p ${f.port as number})`,
        `  proxy                pid ${pid('proxy')}   metrics http://${host}:${mb}/metrics`,
        `  node a (primary)     pid ${pid('a')}   ${urlA}   metrics http://${host}:${mb + 1}/metrics`,
        `  node b (secondary)   pid ${pid('b')}   ${urlB}   metrics http://${host}:${mb + 2}/metrics`,
        `  status page          http://${host}:${mb}/`,
        ...(f['disk-size'] === undefined ? [] : [`  disks                ${join(diskDir, 'node-a.img')}, ${join(diskDir, 'node-b.img')} (${String(f['disk-size'])} bytes each)`]),
        `  watch a failover:    kill -9 ${pid('a')}`,
        '  stop: Ctrl-C',
        '',
      ].join('\n'),
    );
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    stopping = true;
    log.info('stopping every role');
    await Promise.all(
      Object.values(roles).map(
        (r) =>
          new Promise<void>((resolve) => {
            const p = r.proc;
            if (!p || p.exitCode !== null || p.signalCode !== null) return resolve();
            const t = setTimeout(() => p.kill('SIGKILL'), 5000);
            p.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
            p.kill('SIGTERM');
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
    return 0;
  },
};
