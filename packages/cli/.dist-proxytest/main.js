#!/usr/bin/env node
import { isFtvmError } from '@ftvm/guest-abi';
import { CliError } from './errors.js';
import { helpText, parseFlags } from './flags.js';
import { commands } from './commands/index.js';
function usage() {
    const rows = commands.map((c) => `  ${c.name.padEnd(10)} ${c.summary}`);
    return ['ftvm: fault-tolerant replication for WebAssembly guests', '', 'usage: ftvm <command> [options]', '', 'commands:', ...rows, '', "Run 'ftvm <command> --help' for a command's options.", ''].join('\n');
}
async function main(argv) {
    const [name, ...rest] = argv;
    if (!name || name === '--help' || name === '-h' || name === 'help') {
        process.stdout.write(usage());
        return name ? 0 : 2;
    }
    const cmd = commands.find((c) => c.name === name);
    if (!cmd)
        throw new CliError('FTVM_ERR_CLI_UNKNOWN_COMMAND', `unknown command '${name}' (commands: ${commands.map((c) => c.name).join(', ')})`);
    const { flags, positionals } = parseFlags(cmd, rest);
    if (flags.help) {
        process.stdout.write(helpText(cmd));
        return 0;
    }
    return (await cmd.run(flags, positionals)) ?? 0;
}
main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
}, (e) => {
    if (isFtvmError(e)) {
        process.stderr.write(`ftvm: error ${e.code}: ${e.message}\n`);
        process.exitCode = e instanceof CliError ? 2 : 1;
    }
    else {
        process.stderr.write(`ftvm: unexpected error: ${e?.stack ?? String(e)}\n`);
        process.exitCode = 70;
    }
});
//# sourceMappingURL=main.js.map