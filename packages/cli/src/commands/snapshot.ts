import { controlRequest } from '@ftvm/precopy';
import { oneOf, wsUrl, type CommandSpec } from '../flags.js';
import { CliError } from '../errors.js';
import { Logger, type Level } from '../logger.js';
import { precopyFlags, progressPrinter, requestOptions, summary } from './precopy-common.js';
import { credentials } from '../credentials.js';

export const snapshotCommand: CommandSpec = {
  name: 'snapshot',
  summary: 'save a running guest to a file: live (pre-copy into the file, short pause) or stop-the-world',
  usage: 'ftvm snapshot --from ws://<control host:port> (--live | --stop-the-world) -o <file> [options]',
  flags: {
    from: { type: 'string', required: true, parse: wsUrl, help: 'control listener of the running guest (ftvm run --control)' },
    output: { type: 'string', short: 'o', required: true, help: 'snapshot file to write on the guest\'s host: a name in its --snapshot-dir (or a path in that directory); an existing file is never replaced' },
    live: { type: 'boolean', default: false, help: 'live snapshot: pre-copy rounds while the guest runs, then a short stop-and-copy' },
    'stop-the-world': { type: 'boolean', default: false, help: 'hold the guest while every page is written (the xl save baseline)' },
    ...precopyFlags,
    'log-level': { type: 'string', default: 'info', parse: oneOf('error', 'warn', 'info', 'debug'), help: 'log level' },
  },
  async run(f) {
    const log = new Logger('snapshot', f['log-level'] as Level);
    if (f.live === f['stop-the-world']) throw new CliError('FTVM_ERR_CLI_BAD_VALUE', "'ftvm snapshot' needs exactly one of --live and --stop-the-world");
    const path = f.output as string;
    const p = progressPrinter();
    const r = await controlRequest(f.from as string, credentials(f, log), { op: 'snapshot', path, live: f.live === true, ...requestOptions(f) }, p.update);
    p.end();
    if (!r.ok) {
      log.error('snapshot failed', { ...summary(r), code: r.error?.code });
      return 1;
    }
    log.info('snapshot written', summary(r));
    process.stdout.write(`ftvm snapshot: wrote ${r.path ?? path} (${r.fileBytes} bytes, downtime ${r.downtimeMs.toFixed(1)} ms, ${r.rounds} rounds)\n`);
    return 0;
  },
};
