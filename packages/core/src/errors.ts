import { FtvmError } from '@ftvm/guest-abi';

/** An option given to a core machine or policy is invalid; the message names the option. */
export class CoreOptionError extends FtvmError {}

/**
 * The caller drove a machine against its contract (an event out of order, an unknown
 * connection, a buffer limit ignored). These are runtime bugs, not network faults:
 * network faults (old terms, gaps, lost links) are handled and become actions.
 */
export class CoreProtocolError extends FtvmError {}

export const CORE_ERR = {
  /** An option is missing, of the wrong type or out of range. */
  OPTION: 'FTVM_ERR_CORE_OPTION',
  /** An event arrived that the machine's current state cannot accept (caller bug). */
  ORDER: 'FTVM_ERR_CORE_ORDER',
  /** An event names a connection the proxy does not know. */
  UNKNOWN_CONN: 'FTVM_ERR_CORE_UNKNOWN_CONN',
  /** An event names a node the proxy was not configured with. */
  UNKNOWN_NODE: 'FTVM_ERR_CORE_UNKNOWN_NODE',
  /** Input or output bytes do not continue the connection's stream (gap). */
  STREAM_GAP: 'FTVM_ERR_CORE_STREAM_GAP',
  /** The caller kept feeding client input after pauseClient and the hard log limit was hit. */
  INPUT_LOG_FULL: 'FTVM_ERR_CORE_INPUT_LOG_FULL',
  /** The node kept sending output after pauseNode and the hard held-output limit was hit. */
  OUTPUT_HELD_FULL: 'FTVM_ERR_CORE_OUTPUT_HELD_FULL',
  /** A client connection beyond proxy.maxConns: the runtime must refuse it. */
  CONN_LIMIT: 'FTVM_ERR_CORE_CONN_LIMIT',
  /** A promoted image is older than output the proxy already released (must never happen). */
  STALE_IMAGE: 'FTVM_ERR_CORE_STALE_IMAGE',
  // Codes below travel in nack / reject actions (the secondary refusing a checkpoint).
  /** A delta checkpoint does not follow the committed image (wrong epoch or term line). */
  NEED_FULL_SYNC: 'FTVM_ERR_CORE_NEED_FULL_SYNC',
  /** A page batch or end does not match the staged checkpoint (missing, duplicate, reordered). */
  CHECKPOINT_GAP: 'FTVM_ERR_CORE_CHECKPOINT_GAP',
  /** The image digest after applying the staged checkpoint does not match the primary's. */
  DIGEST_MISMATCH: 'FTVM_ERR_CORE_DIGEST_MISMATCH',
  /** The staged checkpoint exceeds maxStagingBytes. */
  STAGING_LIMIT: 'FTVM_ERR_CORE_STAGING_LIMIT',
} as const;
export type CoreErrorCode = (typeof CORE_ERR)[keyof typeof CORE_ERR];
