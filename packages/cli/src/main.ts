#!/usr/bin/env -S node --min-semi-space-size=16
// The `ftvm` entry: the Node.js version gate first, then the commands (and with them the
// native addons), so that either failure prints one coded line and no stack trace.
// Plain syntax on purpose: an old Node must parse this file to print the refusal.
import { nodeRefusal } from './node-check.js';

const refusal = nodeRefusal(process.version);
if (refusal !== undefined) {
  process.stderr.write('ftvm: error FTVM_ERR_NODE_VERSION: ' + refusal + '\n');
  process.exitCode = 1;
} else {
  import('./cli.js').then(
    (cli) => cli.run(process.argv.slice(2)),
    (e: Error & { code?: unknown }) => {
      // A coded load failure (FTVM_ERR_NATIVE_MODULE) says what to do; anything else is a bug.
      const coded = typeof e.code === 'string' && e.code.indexOf('FTVM_ERR_') === 0;
      process.stderr.write(coded ? 'ftvm: error ' + e.code + ': ' + e.message + '\n' : 'ftvm: unexpected error: ' + (e.stack || String(e)) + '\n');
      process.exitCode = coded ? 1 : 70;
    },
  );
}
