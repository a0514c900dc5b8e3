import type { Listener } from '@ftvm/protocol';
import type { FtvmEvents } from '@ftvm/metrics';
import { serveControl, type PrecopyProgress } from '@ftvm/precopy';
import type { PreparedGuest, RunServer } from '@ftvm/vmm';
import { hostPort, type FlagTable } from '../flags.js';
import { GUEST_LOG_LEVELS, type Logger } from '../logger.js';
import { credentials } from '../credentials.js';

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
    ...credentials(f, log),
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
  server.on('fault', (err, recovered) =>
    log.error(recovered ? 'guest fault: rolled back to the last checkpoint' : 'guest fault: guest stopped', { code: err.code, conn: err.conn, message: err.message }),
  );
}

/** Serves until SIGINT/SIGTERM or a completed migration. */
export async function serveUntilStopped(server: RunServer, control: Listener | null, log: Logger, migrated: Promise<void>): Promise<number> {
  logGuestEvents(server, log);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    void migrated.then(stop);
  });
  log.info('shutting down');
  await control?.close();
  await server.close();
  return 0;
}
