import { isFtvmError } from '@ftvm/guest-abi';
import { CliError } from './errors.js';
import { helpText, parseFlags, type CommandSpec } from './flags.js';
import { commands } from './commands/index.js';

function usage(): string {
  const rows = commands.map((c) => `  ${c.name.padEnd(10)} ${c.summary}`);
  return ['ftvm: fault-tolerant replication for WebAssembly guests', '', 'usage: ftvm <command> [options]', '', 'commands:', ...rows, '', "Run 'ftvm <command> --help' for a command's options.", ''].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  const cmd: CommandSpec | undefined = commands.find((c) => c.name === name);
  if (!cmd) throw new CliError('FTVM_ERR_CLI_UNKNOWN_COMMAND', `unknown command '${name}' (commands: ${commands.map((c) => c.name).join(', ')})`);
  const { flags, positionals } = parseFlags(cmd, rest);
  if (flags.help) {
    process.stdout.write(helpText(cmd));
    return 0;
  }
  return (await cmd.run(flags, positionals)) ?? 0;
}

/** Runs one `ftvm` command line to its exit code; coded errors print as one line. */
export function run(argv: string[]): void {
  main(argv).then(
    (code) => {
      process.exitCode = code;
      // A command that returned is done: a lingering handle (a child's pipe, a socket in
      // TIME_WAIT) must not keep a stopped daemon alive.
      setTimeout(() => process.exit(code), 500).unref();
    },
    (e: unknown) => {
      if (isFtvmError(e)) {
        process.stderr.write(`ftvm: error ${e.code}: ${e.message}\n`);
        process.exitCode = e instanceof CliError ? 2 : 1;
      } else {
        process.stderr.write(`ftvm: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
        process.exitCode = 70;
      }
    },
  );
}
