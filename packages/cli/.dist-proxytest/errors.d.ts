import { FtvmError } from '@ftvm/guest-abi';
/**
 * CLI errors. Codes:
 * - FTVM_ERR_CLI_UNKNOWN_COMMAND: the first argument is not a command.
 * - FTVM_ERR_CLI_UNKNOWN_FLAG: a flag the command does not take.
 * - FTVM_ERR_CLI_BAD_VALUE: a flag's value is missing or out of range.
 * - FTVM_ERR_CLI_MISSING: a required flag or argument is missing.
 */
export declare class CliError extends FtvmError {
}
//# sourceMappingURL=errors.d.ts.map