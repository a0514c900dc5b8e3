import { resolve } from 'node:path';
import { readSnapshot, writeSnapshotDisk } from '@ftvm/precopy';
import { prepareGuest, RunServer } from '@ftvm/vmm';
import { int, oneOf, type CommandSpec } from '../flags.js';
import { CliError } from '../errors.js';
import { Logger, type Level } from '../logger.js';
import { credentialFlags, credentials } from '../credentials.js';
import { applyClockFlags, applyVcpuFlags, clockFlags, vcpuFlags } from './node-common.js';
import { GuestMetrics, controlFlags, guestMetricsFlags, logGuestEvents, serveUntilStopped, startControl } from './serve-guest.js';

export const restoreCommand: CommandSpec = {
  name: 'restore',
  summary: 'serve a guest from a snapshot file (verified: a truncated or corrupt file is refused)',
  usage: 'ftvm restore <file> [--port <tcp>] [options]',
  positionals: ['file'],
  flags: {
    port: { type: 'string', default: 6380, parse: int(0, 65535), help: 'TCP port clients connect to (0: any free port)' },
    host: { type: 'string', default: '127.0.0.1', help: 'address to listen on' },
    ...controlFlags,
    ...credentialFlags,
    ...guestMetricsFlags,
    disk: { type: 'string', help: 'new file for the guest\'s virtual disk, written from the snapshot (a snapshot of a guest with a disk needs it)' },
    'event-timeout-ms': { type: 'string', default: 2000, parse: int(1, 3_600_000), help: 'an event running longer is stopped and rolled back' },
    'log-level': { type: 'string', default: 'info', parse: oneOf('error', 'warn', 'info', 'debug'), help: 'log level' },
    ...clockFlags,
    ...vcpuFlags,
  },
  async run(f, pos) {
    const log = new Logger('restore', f['log-level'] as Level);
    if (!pos[0]) throw new CliError('FTVM_ERR_CLI_MISSING', "'ftvm restore' needs the snapshot file");
    applyClockFlags(f);
    applyVcpuFlags(f);
    // The snapshot's MAC is checked under the token: a file nobody with the token wrote is refused.
    const creds = credentials(f, log);
    const snap = await readSnapshot(pos[0], creds.token);
    const guest = prepareGuest(snap.info.guest, snap.wasm);
    const disk = writeSnapshotDisk(snap, f.disk === undefined ? undefined : resolve(f.disk as string));
    log.info('snapshot verified', { guest: snap.info.guest, mode: snap.info.mode, memBytes: snap.checkpoint.memBytes, bytes: snap.bytes, ...(disk ? { disk: disk.path, diskBlocks: disk.blocks } : {}) });
    const server = new RunServer(guest, { host: f.host as string, port: f.port as number, eventTimeoutMs: f['event-timeout-ms'] as number, restore: snap.checkpoint, transferRestoreMemory: true, ...(disk ? { disk } : {}) });
    logGuestEvents(server, log);
    const metrics = await GuestMetrics.start(f, log, 'restoring the guest');
    metrics.attach(server);
    const port = await server.start();
    metrics.ready(server, `serving ${snap.info.guest} restored from ${pos[0]}`);
    let migrated!: () => void;
    const gone = new Promise<void>((r) => (migrated = r));
    const control = await startControl(server, f, creds, { name: snap.info.guest, wasm: snap.wasm, guest }, log, () => migrated(), metrics.bus);
    log.info(`serving ${snap.info.guest} restored from ${pos[0]}`, { listen: `${f.host as string}:${port}` });
    process.stdout.write(`ftvm restore: listening on ${f.host as string}:${port}\n`);
    return serveUntilStopped(server, control, log, gone, metrics);
  },
};
