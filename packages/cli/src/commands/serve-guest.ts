import type { Listener } from '@ftvm/protocol';
import { FtvmEvents, createRoleMetrics, startMetricsServer, type MetricsServer, type RoleMetrics } from '@ftvm/metrics';
import { serveControl, type PrecopyProgress } from '@ftvm/precopy';
import type { PreparedGuest, RunServer } from '@ftvm/vmm';
import { hostPort, int, type FlagTable } from '../flags.js';
import { GUEST_LOG_LEVELS, type Logger } from '../logger.js';
import type { Credentials } from '../credentials.js';

/** --control for every command that serves a guest (run, restore, receive). */
export const controlFlags: FlagTable = {
  control: { type: 'string', parse: hostPort, help: 'host:port of a control listener for ftvm snapshot --from / ftvm migrate --from (authenticated with the token)' },
  'snapshot-dir': { type: 'string', help: 'directory ftvm snapshot writes into (files mode 0600, never over an existing file); without it snapshots are refused' },
};

/**
 * Opens the control listener of a served guest when --control is given. A migration that
 * completes calls `onMigrated` (the command then exits: the guest runs elsewhere).
 */
export async function startControl(
  server: RunServer,
  f: Record<string, unknown>,
  creds: Credentials,
  g: { name: string; wasm: Uint8Array; guest: PreparedGuest },
  log: Logger,
  onMigrated: () => void,
  bus?: FtvmEvents,
): Promise<Listener | null> {
  const at = f.control as { host: string; port: number } | undefined;
  if (!at) return null;
  const listener = await serveControl(server, {
    host: at.host,
    port: at.port,
    ...creds,
    snapshotDir: f['snapshot-dir'] as string | undefined,
    guest: g.name,
    moduleWasm: g.wasm,
    moduleDigest: g.guest.digest,
    onMigrated: (r) => {
      log.info('guest migrated away: stopping', { downtimeMs: Math.round(r.downtimeMs), rounds: r.rounds });
      onMigrated();
    },
    onEvent: (what, op, d) => {
      // ftvm_task_* (metrics): the current round's pages sent of its pages; idle (0 of 0) at the end.
      const task = op === 'migrate' ? 'migration' : 'snapshot';
      if (what === 'progress') {
        const p = d as PrecopyProgress;
        bus?.emit('progress', { task, done: Math.max(0, p.roundPages - p.pagesLeft), total: p.roundPages, unit: p.phase === 'pull' ? 'blocks' : 'pages' });
      } else bus?.emit('progress', { task, done: 0, total: 0, unit: 'pages' });
      if (what === 'failed') log.error(`${op} failed: the guest keeps running here`, { reason: (d as { reason?: string }).reason, code: (d as { error?: { code: string } }).error?.code });
      else if (what !== 'progress') log.info(`${op} ${what}`, { reason: (d as { reason?: string }).reason });
    },
  });
  log.info('control listener', { url: listener.url });
  // Machine-readable line for scripts and tests.
  process.stdout.write(`ftvm control: listening on ${listener.url}\n`);
  return listener;
}

/** The guest's own log lines and its faults (each rolled back, or the guest stopped), logged. */
export function logGuestEvents(server: RunServer, log: Logger): void {
  server.on('log', (l, m) => log.log(GUEST_LOG_LEVELS[l] ?? 'info', `guest: ${m}`));
  server.on('clientDropped', (conn, reason) => log.warn('client dropped', { conn, reason }));
  server.on('fault', (err, recovered) =>
    log.error(recovered ? 'guest fault: rolled back to the last checkpoint' : 'guest fault: guest stopped', { code: err.code, conn: err.conn, message: err.message }),
  );
}

/** Serves until SIGINT/SIGTERM or a completed migration. */
export async function serveUntilStopped(server: RunServer, control: Listener | null, log: Logger, migrated: Promise<void>, metrics: GuestMetrics): Promise<number> {
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    void migrated.then(stop);
  });
  log.info('shutting down');
  await control?.close();
  await server.close();
  await metrics.close();
  return 0;
}

/** --metrics-port for every command that serves a guest unprotected (run, restore, receive). */
export const guestMetricsFlags: FlagTable = {
  'metrics-port': { type: 'string', parse: int(0, 65535), help: 'port for /metrics, /healthz, /readyz and the status page (off unless given)' },
  'metrics-host': { type: 'string', default: '127.0.0.1', help: 'address the metrics server listens on (metrics are unauthenticated)' },
};

/**
 * The metrics of an unprotected guest server (role `run`): a bus that is always there (the
 * clock drift goes on it), and an HTTP server when --metrics-port is given. `attach` before
 * the server starts (faults during boot count), `ready` once it serves.
 */
export class GuestMetrics {
  readonly bus = new FtvmEvents({ name: 'run' });
  private roleMetrics: RoleMetrics | null = null;
  private server: MetricsServer | null = null;
  private clientPoll: NodeJS.Timeout | null = null;

  static async start(f: Record<string, unknown>, log: Logger, waiting: string): Promise<GuestMetrics> {
    const m = new GuestMetrics();
    if (f['metrics-port'] === undefined) return m;
    // Registered before the first event so level metrics start right.
    m.roleMetrics = createRoleMetrics('run', m.bus);
    m.server = await startMetricsServer({ port: f['metrics-port'] as number, host: f['metrics-host'] as string, metrics: m.roleMetrics });
    m.bus.emit('role', { role: 'run', term: 0 });
    m.bus.emit('protection', { protected: false, reason: 'one process, no secondary (local rollback on guest faults only)' });
    m.bus.emit('ready', { ready: false, reason: waiting });
    log.info('metrics', { url: `${m.server.url}/metrics`, status: `${m.server.url}/` });
    return m;
  }

  attach(server: RunServer): void {
    // The guest's clock: drift = guest time minus reference, after every vCPU resume and slew tick.
    server.on('clock', (r) => this.bus.emit('clockDrift', { driftNs: r.driftNs, mode: r.mode }));
    if (!this.server) return;
    // RunServer drops a client only for its own unread output (maxPendingOutputBytes).
    server.on('clientDropped', () => this.bus.emit('clientDropped', { reason: 'slow_reader' }));
    server.on('fault', (err, recovered) => {
      this.bus.emit('guestFault', { code: err.code });
      if (!recovered) this.bus.emit('ready', { ready: false, reason: `guest stopped after ${err.code}` });
    });
  }

  ready(server: RunServer, reason: string): void {
    if (!this.server) return;
    this.bus.emit('ready', { ready: true, reason });
    // RunServer publishes no connection events: sample its client count (a level) once a second.
    let last = -1;
    this.clientPoll = setInterval(() => {
      const n = server.clientCount;
      if (n !== last) this.bus.emit('clients', { connected: (last = n) });
    }, 1000);
    this.clientPoll.unref();
  }

  async close(): Promise<void> {
    if (this.clientPoll) clearInterval(this.clientPoll);
    await this.server?.close();
    this.roleMetrics?.close();
  }
}
