import { FtvmEvents, createRoleMetrics, startMetricsServer, type MetricsServer, type RoleMetrics } from '@ftvm/metrics';
import { prepareGuest, readGuest, RunServer } from '@ftvm/vmm';
import { int, oneOf, type CommandSpec } from '../flags.js';
import { Logger, type Level } from '../logger.js';
import { applyClockFlags, applyVcpuFlags, clockFlags, diskFlags, diskFromFlags, vcpuFlags } from './node-common.js';
import { controlFlags, logGuestEvents, startControl } from './serve-guest.js';
import { credentialFlags, credentials } from '../credentials.js';

export const runCommand: CommandSpec = {
  name: 'run',
  summary: 'serve a guest unprotected on a TCP port (the baseline every benchmark compares against)',
  usage: 'ftvm run --guest <kv|http|dirtier|clockprobe|path.wasm> --port <tcp> [options]',
  flags: {
    guest: { type: 'string', default: 'kv', help: 'shipped guest name or path to a .wasm module' },
    port: { type: 'string', default: 6380, parse: int(0, 65535), help: 'TCP port clients connect to (0: any free port)' },
    host: { type: 'string', default: '127.0.0.1', help: 'address to listen on' },
    'event-timeout-ms': { type: 'string', default: 2000, parse: int(1, 3_600_000), help: 'an event running longer is stopped and rolled back' },
    'early-copy': { type: 'string', default: 'on', parse: oneOf('on', 'off'), help: 'copy dirty pages between events so the checkpoint hold copies only the rest' },
    'checkpoint-interval-ms': { type: 'string', default: 200, parse: int(1, 60_000), help: 'interval of local rollback checkpoints' },
    'metrics-port': { type: 'string', parse: int(0, 65535), help: 'port for /metrics, /healthz, /readyz and the status page (default 9103 in docs; off unless given)' },
    'log-level': { type: 'string', default: 'info', parse: oneOf('error', 'warn', 'info', 'debug'), help: 'log level' },
    ...clockFlags,
    ...vcpuFlags,
    ...diskFlags,
    ...controlFlags,
    ...credentialFlags,
    'metrics-host': { type: 'string', default: '127.0.0.1', help: 'address the metrics server listens on' },
  },
  async run(f) {
    const log = new Logger('run', f['log-level'] as Level);
    // --control takes operator requests over the network: no credentials, no listener.
    if (f.control !== undefined) credentials(f, log);
    const clock = applyClockFlags(f);
    applyVcpuFlags(f);
    const { name, wasm } = readGuest(f.guest as string);
    const guest = prepareGuest(name, wasm);
    for (const w of guest.warnings) log.warn(w);
    log.info('guest prepared', { guest: name, dirtyLog: guest.dirtyMode, digest: guest.digest.slice(0, 12) });
    const disk = diskFromFlags(f);
    if (disk) log.info('disk', { file: disk.path, blocks: disk.blocks, bytes: disk.blocks * 4096 });
    const server = new RunServer(guest, {
      disk,
      host: f.host as string,
      port: f.port as number,
      eventTimeoutMs: f['event-timeout-ms'] as number,
      earlyCopy: f['early-copy'] === 'on',
      checkpointIntervalMs: f['checkpoint-interval-ms'] as number,
    });
    logGuestEvents(server, log);
    const bus = new FtvmEvents({ name: 'run' });
    // The guest's clock: drift = guest time minus reference, after every vCPU resume and slew tick.
    server.on('clock', (r) => bus.emit('clockDrift', { driftNs: r.driftNs, mode: r.mode }));
    let roleMetrics: RoleMetrics | null = null;
    let metrics: MetricsServer | null = null;
    let clientPoll: NodeJS.Timeout | null = null;
    let control = null as Awaited<ReturnType<typeof startControl>>;
    if (f['metrics-port'] !== undefined) {
      // Registered before the first event so level metrics start right.
      roleMetrics = createRoleMetrics('run', bus);
      metrics = await startMetricsServer({ port: f['metrics-port'] as number, host: f['metrics-host'] as string, metrics: roleMetrics });
      bus.emit('role', { role: 'run', term: 0 });
      bus.emit('protection', { protected: false, reason: 'ftvm run: one process, no secondary (local rollback on guest faults only)' });
      bus.emit('ready', { ready: false, reason: 'booting the guest' });
      server.on('fault', (err, recovered) => {
        bus.emit('guestFault', { code: err.code });
        if (!recovered) bus.emit('ready', { ready: false, reason: `guest stopped after ${err.code}` });
      });
      log.info('metrics', { url: `${metrics.url}/metrics`, status: `${metrics.url}/` });
    }
    const port = await server.start();
    if (metrics) {
      bus.emit('ready', { ready: true, reason: `serving ${name} unprotected` });
      // RunServer publishes no connection events: sample its client table (a level) once a second.
      let lastClients = -1;
      clientPoll = setInterval(() => {
        const n = clientCount(server);
        if (n !== undefined && n !== lastClients) bus.emit('clients', { connected: (lastClients = n) });
      }, 1000);
      clientPoll.unref();
    }
    log.info(`serving ${name} unprotected`, { listen: `${f.host as string}:${port}`, clock: clock.mode });
    // Machine-readable line for scripts and tests.
    process.stdout.write(`ftvm run: listening on ${f.host as string}:${port}\n`);
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      // A migration that completed moved the guest away: exit like on a signal.
      void startControl(server, f, { name, wasm, guest }, log, stop, bus).then((c) => (control = c));
    });
    await control?.close();
    log.info('shutting down');
    if (clientPoll) clearInterval(clientPoll);
    await server.close();
    await metrics?.close();
    roleMetrics?.close();
    return 0;
  },
};

/** Open client connections of a RunServer, read from its private table (undefined if its shape changed). */
function clientCount(server: RunServer): number | undefined {
  const clients = (server as unknown as { clients?: unknown }).clients;
  return clients instanceof Map ? clients.size : undefined;
}
