import { writeTokenFile } from '@ftvm/protocol';
import { CliError } from '../errors.js';
import type { CommandSpec } from '../flags.js';

export const tokenCommand: CommandSpec = {
  name: 'token',
  summary: 'write a new random shared secret to a file (mode 0600, never over an existing file) for --token-file',
  usage: 'ftvm token <file>',
  positionals: ['file'],
  flags: {},
  async run(_f, pos) {
    if (!pos[0]) throw new CliError('FTVM_ERR_CLI_MISSING', "'ftvm token' needs the file to write (e.g. ftvm token /etc/ftvm/token)");
    writeTokenFile(pos[0]);
    process.stdout.write(`ftvm token: wrote a new token to ${pos[0]} (mode 0600): copy it to every host and pass --token-file ${pos[0]}\n`);
    return 0;
  },
};
