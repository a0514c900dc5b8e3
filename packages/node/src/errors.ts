import { FtvmError } from '@ftvm/guest-abi';

/**
 * Errors of a replication node. Codes:
 * - FTVM_ERR_GUEST_MISMATCH: a peer runs a different guest module (by digest); the link is refused.
 * - FTVM_ERR_ROLE: a link this node cannot serve in its current role (e.g. two secondaries).
 * - FTVM_ERR_BUSY: the primary already has a secondary.
 */
export class NodeError extends FtvmError {}
