export { commands } from './commands/index.js';
export { parseFlags, helpText, type CommandSpec, type FlagSpec } from './flags.js';
export { CliError } from './errors.js';
export { NODE_FLAGS } from './node-flags.js';
