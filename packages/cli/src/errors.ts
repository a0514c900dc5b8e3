import { FtvmError } from '@ftvm/guest-abi';

/**
 * CLI errors. Codes:
 * - FTVM_ERR_CLI_UNKNOWN_COMMAND: the first argument is not a command.
 * - FTVM_ERR_CLI_UNKNOWN_FLAG: a flag the command does not take.
 * - FTVM_ERR_CLI_BAD_VALUE: a flag's value is missing or out of range.
 * - FTVM_ERR_CLI_MISSING: a required flag or argument is missing.
 */
export class CliError extends FtvmError {}

/**
 * `ftvm up` failures (exit code 1). Codes:
 * - FTVM_ERR_UP_PORT_IN_USE: a port up needs is taken (often another `ftvm up`); nothing was started.
 * - FTVM_ERR_UP_ROLE_FAILED: a role exited before it listened; every role started was stopped.
 */
export class UpError extends FtvmError {}
