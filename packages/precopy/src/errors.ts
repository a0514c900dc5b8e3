import { FtvmError } from '@ftvm/guest-abi';

/**
 * Errors of the pre-copy engine, snapshots and migration. Codes are listed in README.md
 * ("## Errors").
 */
export class PrecopyError extends FtvmError {}

/** A snapshot file that cannot be restored: truncated, corrupt, of another version or module. */
export class SnapshotError extends FtvmError {}
