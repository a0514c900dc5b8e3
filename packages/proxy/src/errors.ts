import { FtvmError } from '@ftvm/guest-abi';

/** Every failure the proxy runtime raises itself. Match on `code`, never on the message. */
export class ProxyError extends FtvmError {}

export const PROXY_ERR = {
  /** An option is missing, of the wrong type or out of range (the message names it). */
  OPTION: 'FTVM_ERR_PROXY_OPTION',
  /** The client TCP port cannot be bound. */
  LISTEN: 'FTVM_ERR_PROXY_LISTEN',
  /**
   * A node sent a well-formed frame the proxy cannot use (a status without valid offsets,
   * a message only the proxy sends, an event the proxy core refused as a contract
   * violation); the link is closed with this code (4099) and reconnected.
   */
  BAD_MESSAGE: 'FTVM_ERR_PROXY_BAD_MESSAGE',
  /** start() called twice, or after close(). */
  STATE: 'FTVM_ERR_PROXY_STATE',
} as const;
export type ProxyErrorCode = (typeof PROXY_ERR)[keyof typeof PROXY_ERR];
