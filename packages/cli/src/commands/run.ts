import { SHIPPED_GUESTS } from '@ftvm/guest-abi';
import { prepareGuest, readGuest, RunServer, VCPU_MODES, type VcpuMode } from '@ftvm/vmm';
import { int, oneOf, type CommandSpec } from '../flags.js';
import { Logger, type Level } from '../logger.js';
import { applyClockFlags, applyVcpuFlags, clockFlags, diskFlags, diskFromFlags, vcpuFlags } from './node-common.js';
import { GuestMetrics, controlFlags, guestMetricsFlags, logGuestEvents, startControl } from './serve-guest.js';
import { credentialFlags, credentials } from '../credentials.js';

export const runCommand: CommandSpec = {
  name: 'run',
  summary: 'serve a guest unprotected on a TCP port (the baseline every benchmark compares against)',
  usage: 'ftvm run --guest <kv|http|dirtier|clockprobe|memcached|kvrs|path.wasm> --port <tcp> [options]',
  flags: {
    guest: { type: 'string', default: 'kv', help: `shipped guest (${SHIPPED_GUESTS.join(', ')}) or path to a .wasm module` },
    port: { type: 'string', default: 6380, parse: int(0, 65535), help: 'TCP port clients connect to (0: any free port)' },
    host: { type: 'string', default: '127.0.0.1', help: 'address to listen on' },
    'event-timeout-ms': { type: 'string', default: 2000, parse: int(1, 3_600_000), help: 'an event running longer is stopped and rolled back' },
    'early-copy': { type: 'string', default: 'on', parse: oneOf('on', 'off'), help: 'copy dirty pages between events so the checkpoint hold copies only the rest' },
    vcpu: {
      type: 'string',
      default: 'inline',
      parse: oneOf(...VCPU_MODES),
      help: 'where the guest runs: inline (on the I/O thread: no thread wake-up per request; a runaway event is stopped by the guest\'s fuel counter) or worker (a vCPU thread, stopped by terminating it)',
    },
    'checkpoint-interval-ms': { type: 'string', default: 200, parse: int(1, 60_000), help: 'interval of local rollback checkpoints' },
    ...guestMetricsFlags,
    'log-level': { type: 'string', default: 'info', parse: oneOf('error', 'warn', 'info', 'debug'), help: 'log level' },
    ...clockFlags,
    ...vcpuFlags,
    ...diskFlags,
    ...controlFlags,
    ...credentialFlags,
  },
  async run(f) {
    const log = new Logger('run', f['log-level'] as Level);
    // --control takes operator requests over the network: no credentials, no listener.
    const creds = f.control !== undefined ? credentials(f, log) : undefined;
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
      vcpu: f.vcpu as VcpuMode,
    });
    logGuestEvents(server, log);
    const metrics = await GuestMetrics.start(f, log, 'booting the guest');
    metrics.attach(server);
    let control = null as Awaited<ReturnType<typeof startControl>>;
    const port = await server.start();
    const vcpu = server.vcpu;
    if (vcpu.whyWorker) log.info('vCPU runs as a worker thread', { why: vcpu.whyWorker });
    else log.info(`vCPU runs ${vcpu.kind === 'inline' ? 'inline, on the I/O thread' : 'in a worker thread'}`);
    metrics.ready(server, `serving ${name} unprotected`);
    log.info(`serving ${name} unprotected`, { listen: `${f.host as string}:${port}`, clock: clock.mode });
    // Machine-readable line for scripts and tests.
    process.stdout.write(`ftvm run: listening on ${f.host as string}:${port}\n`);
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      // A migration that completed moved the guest away: exit like on a signal.
      if (creds) void startControl(server, f, creds, { name, wasm, guest }, log, stop, metrics.bus).then((c) => (control = c));
    });
    await control?.close();
    log.info('shutting down');
    await server.close();
    await metrics.close();
    return 0;
  },
};
