import { FtvmError } from '@ftvm/guest-abi';

/**
 * Errors of the VMM. Codes:
 * - FTVM_ERR_GUEST_TRAP: the guest trapped while handling an event.
 * - FTVM_ERR_GUEST_TIMEOUT: one event ran longer than eventTimeoutMs; the vCPU was stopped.
 * - FTVM_ERR_GUEST_RESERVED_WRITE: the guest wrote into the reserved low region (its dirty log).
 * - FTVM_ERR_GUEST_STOPPED: the guest is stopped (fault with no checkpoint to roll back to, or stop()).
 * - FTVM_ERR_GUEST_INIT: instantiation or ftvm_init failed.
 * - FTVM_ERR_GUEST_NOT_FOUND: --guest names neither a shipped guest nor a readable .wasm file.
 * - FTVM_ERR_VMM_OPTION: an option is out of range.
 * - FTVM_ERR_VCPU_SCHED: the vCPU thread could not be put on the scheduling class asked for (vcpuSched).
 * - FTVM_ERR_CHECKPOINT_INVALID: a checkpoint does not decode or does not fit this module.
 * - FTVM_ERR_DISK_SIZE: a disk size not in whole 4 KiB blocks up to 4 GiB (or a missing file without one).
 * - FTVM_ERR_DISK_SHRINK: a disk size below the existing file's.
 * - FTVM_ERR_DISK_OPEN: the disk file cannot be created or opened.
 */
export class VmmError extends FtvmError {
  /** The connection whose event caused the fault, when there is one. */
  conn?: number;
  constructor(code: string, message: string, options?: { cause?: unknown; conn?: number }) {
    super(code, message, options);
    if (options?.conn !== undefined) this.conn = options.conn;
  }
}
