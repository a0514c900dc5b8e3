import { FtvmError } from '@ftvm/guest-abi';

/**
 * Errors of the primary runtime. Codes:
 * - FTVM_ERR_INPUT_GAP: the proxy sent input past what this node received (a lost message); the link is closed.
 * - FTVM_ERR_FENCED: a newer term exists; this primary stopped its guest.
 */
export class PrimaryError extends FtvmError {}
