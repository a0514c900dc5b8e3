import { controlRequest } from '@ftvm/precopy';
import { int, oneOf, wsUrl, type CommandSpec } from '../flags.js';
import { Logger, type Level } from '../logger.js';
import { precopyFlags, progressPrinter, requestOptions, summary } from './precopy-common.js';
import { credentials } from '../credentials.js';

export const migrateCommand: CommandSpec = {
  name: 'migrate',
  summary: 'live-migrate a running guest: an unprotected one to ftvm receive, a replicated primary (the proxy follows it) to an empty node',
  usage: 'ftvm migrate --from ws://<control or primary node host:port> --to ws://<receive or node host:port> [options]',
  flags: {
    from: { type: 'string', required: true, parse: wsUrl, help: 'the running guest: the control listener of ftvm run --control (also restore, receive), or a replicated primary\'s --listen address' },
    to: { type: 'string', required: true, parse: wsUrl, help: 'the target: ftvm receive --listen for an unprotected guest; for a replicated primary an empty node (ftvm secondary --listen, not in use), which becomes its secondary, then the primary the proxy serves clients from' },
    ...precopyFlags,
    'disk-migration': { type: 'string', default: 'copy', parse: oneOf('copy', 'shared'), help: 'a guest with a virtual disk: copy it (PUSH during the rounds, the dirty bitmap with the stop-and-copy, PULL after) or shared (the target opens the same file)' },
    'sync-timeout-ms': { type: 'string', default: 300_000, parse: int(1, 86_400_000), help: 'replicated primary: the target must hold the full image within this' },
    'handover-timeout-ms': { type: 'string', default: 15_000, parse: int(1, 3_600_000), help: 'replicated primary: the last epoch\'s ack, then the proxy\'s promotion of the target, must each come within this (else the guest resumes on the source)' },
    'log-level': { type: 'string', default: 'info', parse: oneOf('error', 'warn', 'info', 'debug'), help: 'log level' },
  },
  async run(f) {
    const log = new Logger('migrate', f['log-level'] as Level);
    const p = progressPrinter();
    const r = await controlRequest(f.from as string, credentials(f, log), {
      op: 'migrate', to: f.to as string, ...requestOptions(f), diskMode: f['disk-migration'] as 'copy' | 'shared',
      syncTimeoutMs: f['sync-timeout-ms'] as number, handoverTimeoutMs: f['handover-timeout-ms'] as number,
    }, p.update);
    p.end();
    if (!r.ok) {
      log.error('migration failed: the guest keeps running on the source', { ...summary(r), code: r.error?.code });
      return 1;
    }
    log.info('migrated', summary(r));
    const h = r as typeof r & { syncMs?: number };
    if (r.stopRule === ('handover' as string)) {
      // A replicated primary: one full sync to the target, then the handover (see docs/precopy.md).
      process.stdout.write(`ftvm migrate: done in ${r.totalMs.toFixed(0)} ms (full sync ${(h.syncMs ?? 0).toFixed(0)} ms), downtime ${r.downtimeMs.toFixed(1)} ms, ${r.wireBytes} bytes (${r.reason})\n`);
      return 0;
    }
    process.stdout.write(`ftvm migrate: done in ${r.totalMs.toFixed(0)} ms, downtime ${r.downtimeMs.toFixed(1)} ms, ${roundsText(r.rounds)}, ${r.wireBytes} bytes (${r.reason})\n`);
    return 0;
  },
};

/** The rounds a migration ran, as `ftvm receive` counts them too: the live ones, then the stop-and-copy. */
export function roundsText(live: number): string {
  return `${live} live round${live === 1 ? '' : 's'} + stop-and-copy`;
}
