export { commands } from './commands/index.js';
export { parseFlags, helpText } from './flags.js';
export { CliError } from './errors.js';
//# sourceMappingURL=index.js.map