import { FtvmError } from '@ftvm/guest-abi';

/**
 * Errors of the secondary runtime. Codes:
 * - FTVM_ERR_CHECKPOINT_CORRUPT: a checkpoint's pages did not decode, or its device state is malformed.
 * - FTVM_ERR_DIGEST_MISMATCH: a complete checkpoint's image digest differs from the primary's (not applied).
 */
export class SecondaryError extends FtvmError {}
