import { controlRequest } from '@ftvm/precopy';
import { oneOf, wsUrl, type CommandSpec } from '../flags.js';
import { Logger, type Level } from '../logger.js';
import { precopyFlags, progressPrinter, requestOptions, summary, token } from './precopy-common.js';

export const migrateCommand: CommandSpec = {
  name: 'migrate',
  summary: 'live-migrate a running guest to a target started with ftvm receive',
  usage: 'ftvm migrate --from ws://<control host:port> --to ws://<receive host:port> [options]',
  flags: {
    from: { type: 'string', required: true, parse: wsUrl, help: 'control listener of the running guest (ftvm run --control)' },
    to: { type: 'string', required: true, parse: wsUrl, help: 'the target\'s migration listener (ftvm receive --listen)' },
    ...precopyFlags,
    'disk-migration': { type: 'string', default: 'copy', parse: oneOf('copy', 'shared'), help: 'a guest with a virtual disk: copy it (PUSH during the rounds, the dirty bitmap with the stop-and-copy, PULL after) or shared (the target opens the same file)' },
    'log-level': { type: 'string', default: 'info', parse: oneOf('error', 'warn', 'info', 'debug'), help: 'log level' },
  },
  async run(f) {
    const log = new Logger('migrate', f['log-level'] as Level);
    const p = progressPrinter();
    const r = await controlRequest(f.from as string, token(f, log), { op: 'migrate', to: f.to as string, ...requestOptions(f), diskMode: f['disk-migration'] as 'copy' | 'shared' }, p.update);
    p.end();
    if (!r.ok) {
      log.error('migration failed: the guest keeps running on the source', { ...summary(r), code: r.error?.code });
      return 1;
    }
    log.info('migrated', summary(r));
    process.stdout.write(`ftvm migrate: done in ${r.totalMs.toFixed(0)} ms, downtime ${r.downtimeMs.toFixed(1)} ms, ${r.rounds} rounds, ${r.wireBytes} bytes (${r.reason})\n`);
    return 0;
  },
};
