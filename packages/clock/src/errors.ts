import { FtvmError } from '@ftvm/guest-abi';

/**
 * Every error the clock package raises. Match on `code`:
 * - FTVM_ERR_CLOCK_OPTION: an option or argument is out of range (the message names it).
 * - FTVM_ERR_CLOCK_ADDRESS: the 32-byte pvclock structure does not fit in the memory view, or is not 4-byte aligned.
 * - FTVM_ERR_CLOCK_FIELDS: pvclock fields out of range for their C types (u64, u32, s8, u8).
 * - FTVM_ERR_CLOCK_READ_RETRIES: the seqlock read saw an odd or changing version on every attempt.
 * - FTVM_ERR_CLOCK_HOST_BACKWARDS: a host time is earlier than one the clock was already given.
 * - FTVM_ERR_CLOCK_STATE: an event that is invalid in the current state (pause while paused, resume while running; tscOffset() with a TSC other than 1 GHz).
 * - FTVM_ERR_CLOCK_SNAPSHOT_INVALID: restore() was given a malformed or unsupported ClockState.
 */
export class ClockError extends FtvmError {}

export type ClockErrorCode =
  | 'FTVM_ERR_CLOCK_OPTION'
  | 'FTVM_ERR_CLOCK_ADDRESS'
  | 'FTVM_ERR_CLOCK_FIELDS'
  | 'FTVM_ERR_CLOCK_READ_RETRIES'
  | 'FTVM_ERR_CLOCK_HOST_BACKWARDS'
  | 'FTVM_ERR_CLOCK_STATE'
  | 'FTVM_ERR_CLOCK_SNAPSHOT_INVALID';

export function clockError(code: ClockErrorCode, message: string): ClockError {
  return new ClockError(code, message);
}
