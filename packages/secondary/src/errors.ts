import { FtvmError } from '@ftvm/guest-abi';

/**
 * Errors of the secondary runtime. Codes:
 * - FTVM_ERR_CHECKPOINT_CORRUPT: a checkpoint's pages did not decode, or its device state is malformed.
 * - FTVM_ERR_DIGEST_MISMATCH: a complete checkpoint's image digest differs from the primary's (not applied).
 * - FTVM_ERR_DISK_MISMATCH: the primary's disk and this node's differ in presence or size (checkpoints refused).
 * - FTVM_ERR_DISK_JOURNAL: a disk block outside the disk or sent twice, or the disk commit failed.
 * - FTVM_ERR_DISK_OPEN: the disk file cannot be opened.
 */
export class SecondaryError extends FtvmError {}
