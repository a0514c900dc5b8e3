import { MigrationReceiver } from '@ftvm/precopy';
import { prepareGuest, readGuest, RunServer, type Vmm } from '@ftvm/vmm';
import { hostPort, int, oneOf, size, type CommandSpec } from '../flags.js';
import { Logger, type Level } from '../logger.js';
import { roundsText } from './migrate.js';
import { absolute } from './precopy-common.js';
import { credentialFlags, credentials } from '../credentials.js';
import { applyClockFlags, applyVcpuFlags, clockFlags, vcpuFlags } from './node-common.js';
import { GuestMetrics, controlFlags, guestMetricsFlags, logGuestEvents, serveUntilStopped, startControl } from './serve-guest.js';

export const receiveCommand: CommandSpec = {
  name: 'receive',
  summary: 'wait for a live migration (ftvm migrate --to), then serve the guest on --port',
  usage: 'ftvm receive --listen <host:port> [--port <tcp>] [--guest kv] [options]',
  flags: {
    listen: { type: 'string', required: true, parse: hostPort, help: 'host:port of the migration listener' },
    guest: { type: 'string', default: 'kv', help: 'the guest module the source runs (shipped name or .wasm path); another module is refused' },
    'max-memory': { type: 'string', default: 1024 ** 3, parse: size(65536, 2 ** 32, 65536), help: 'largest guest memory accepted (checked on the announced size before anything is allocated)' },
    port: { type: 'string', default: 6380, parse: int(0, 65535), help: 'TCP port clients connect to once the guest arrived (0: any free port)' },
    host: { type: 'string', default: '127.0.0.1', help: 'address clients connect to' },
    disk: { type: 'string', help: 'file for the guest\'s virtual disk, if it has one: a new file (copy: created at the source\'s size) or, with ftvm migrate --disk-migration shared, the source\'s own file' },
    ...controlFlags,
    ...credentialFlags,
    ...guestMetricsFlags,
    'event-timeout-ms': { type: 'string', default: 2000, parse: int(1, 3_600_000), help: 'an event running longer is stopped and rolled back' },
    'log-level': { type: 'string', default: 'info', parse: oneOf('error', 'warn', 'info', 'debug'), help: 'log level' },
    ...clockFlags,
    ...vcpuFlags,
  },
  async run(f) {
    const log = new Logger('receive', f['log-level'] as Level);
    applyClockFlags(f);
    applyVcpuFlags(f);
    const { name, wasm } = readGuest(f.guest as string);
    const guest = prepareGuest(name, wasm);
    const listen = f.listen as { host: string; port: number };
    const metrics = await GuestMetrics.start(f, log, 'waiting for a migration');
    let server: RunServer | null = null;
    let pullFailed!: (e: Error) => void;
    const failedPull = new Promise<Error>((r) => (pullFailed = r));
    let arrived!: () => void;
    const got = new Promise<void>((r) => (arrived = r));
    const serverOpts = (disk?: { path: string; blocks: number }) => ({
      host: f.host as string,
      port: f.port as number,
      eventTimeoutMs: f['event-timeout-ms'] as number,
      // The received image is the worker's now (no clone inside the downtime).
      transferRestoreMemory: true,
      ...(disk ? { disk } : {}),
    });
    /** The vCPU booted while the rounds run (null: none, or its boot failed). */
    let prestarting: Promise<Vmm | null> | null = null;
    const creds = credentials(f, log);
    const receiver = new MigrationReceiver({
      host: listen.host,
      port: listen.port,
      ...creds,
      moduleDigest: guest.digest,
      maxMemBytes: f['max-memory'] as number,
      disk: f.disk === undefined ? undefined : absolute(f.disk as string),
      onRound: (round, pages, wireBytes) => log.debug('round received', { round, pages, wireBytes }),
      onBegin: (memBytes, disk) => {
        const t0 = performance.now();
        prestarting = RunServer.prestart(guest, serverOpts(disk), memBytes).then(
          (v) => {
            log.debug('vCPU prestarted', { memBytes, ms: Math.round(performance.now() - t0) });
            return v;
          },
          (e: Error & { code?: string }) => {
            log.warn('the vCPU could not boot ahead: it boots when the guest arrives', { code: e.code, message: e.message });
            return null;
          },
        );
        return prestarting;
      },
      onAbandoned: () => {
        void prestarting?.then((v) => v?.stop());
        prestarting = null;
      },
      onComplete: async (ckpt, stats, disk) => {
        const t0 = performance.now();
        let pre = prestarting ? await prestarting : null;
        prestarting = null;
        if (pre && pre.state !== 'prestarted') {
          // Its worker died meanwhile: boot one now, as without a prestart.
          log.warn('the vCPU booted ahead is gone: booting the guest now', { state: pre.state });
          await pre.stop();
          pre = null;
        }
        server = new RunServer(guest, {
          ...serverOpts(disk && { path: disk.path, blocks: disk.blocks }),
          restore: ckpt,
          prestarted: pre ?? undefined,
          ...(disk ? { diskPull: disk.pull, onDiskFetch: disk.fetch } : {}),
        });
        logGuestEvents(server, log);
        metrics.attach(server);
        let port: number;
        try {
          port = await server.start();
        } catch (e) {
          await pre?.stop();
          throw e;
        }
        log.info(`guest arrived: serving ${name}`, {
          listen: `${f.host as string}:${port}`, rounds: roundsText(stats.rounds - 1), pages: stats.pages, wireBytes: stats.wireBytes, startMs: Math.round(performance.now() - t0), prestarted: pre !== null,
          ...(disk ? { disk: disk.path, diskMode: disk.mode, diskBlocksPushed: stats.diskBlocks, blocksToPull: stats.missingBlocks } : {}),
        });
        metrics.ready(server, `serving ${name} received by migration`);
        process.stdout.write(`ftvm receive: listening on ${f.host as string}:${port}\n`);
        arrived();
      },
      onPullDone: (stats) =>
        log.info('disk complete: PULL done', { blocks: stats.missingBlocks, onDemand: stats.demandBlocks, wireBytes: stats.pullWireBytes, ms: Math.round(stats.pullMs) }),
      // The disk is partial without its source: serving on would answer from blocks that never arrived.
      onPullFailed: (e) => pullFailed(e),
    });
    const l = await receiver.start();
    log.info('waiting for a migration', { url: l.url, guest: name });
    process.stdout.write(`ftvm receive: migration listener on ${l.url}\n`);
    const stopped = new Promise<'signal'>((resolve) => {
      process.once('SIGINT', () => resolve('signal'));
      process.once('SIGTERM', () => resolve('signal'));
    });
    const first = await Promise.race([got.then(() => 'arrived' as const), stopped]);
    // After an arrival the listener stays open until exit (it refuses further migrations):
    // closing it now could cut the link before the ack reaches the source.
    if (first === 'signal' || !server) {
      await receiver.close();
      await metrics.close();
      return 0;
    }
    let migrated!: () => void;
    const gone = new Promise<void>((r) => (migrated = r));
    const control = await startControl(server, f, creds, { name, wasm, guest }, log, () => migrated(), metrics.bus);
    let pullError: Error | null = null;
    const code = await serveUntilStopped(server, control, log, Promise.race([gone, stopped.then(() => undefined), failedPull.then((e) => void (pullError = e))]), metrics);
    await receiver.close();
    if (pullError) {
      const e = pullError as Error & { code?: string };
      log.error('the guest\'s disk is incomplete: stopped serving (the source keeps the guest if it is alive)', { code: e.code, message: e.message });
      return 1;
    }
    return code;
  },
};
