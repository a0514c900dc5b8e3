import { FtvmError } from '@ftvm/guest-abi';

/** Every failure of the wire layer. Match on `code`, never on the message. */
export class ProtocolError extends FtvmError {}

/**
 * WebSocket close code sent when a link fails with a given error code. The peer maps
 * it back with `errorFromClose`. 4000 is a plain application close (shutdown, fenced
 * by a newer term after the handshake) that is not an error of the wire layer.
 * Runtimes may raise their own FTVM_ERR_* codes on a link: unknown codes close with
 * 4099 and the reason text carries the code.
 */
export const CLOSE_CODES = {
  FTVM_ERR_PROTO_VERSION: 4001,
  FTVM_ERR_FRAME_TOO_LARGE: 4002,
  FTVM_ERR_FRAME_TRUNCATED: 4003,
  FTVM_ERR_FRAME_MALFORMED: 4004,
  FTVM_ERR_AUTH_FAILED: 4005,
  FTVM_ERR_UNEXPECTED_MESSAGE: 4006,
  FTVM_ERR_HANDSHAKE_TIMEOUT: 4007,
  FTVM_ERR_STALE_TERM: 4008,
  FTVM_ERR_SEND_BUFFER_FULL: 4009,
  FTVM_ERR_BUSY: 4010,
  FTVM_ERR_FRAME_AUTH: 4011,
} as const;

export type ProtocolErrorCode = keyof typeof CLOSE_CODES;

export const CLOSE_NORMAL = 4000;
export const CLOSE_OTHER_ERROR = 4099;

/** Close code for an error code (4001..4011, 4099 for any other FtvmError code). */
export function closeCodeFor(code: string): number {
  return (CLOSE_CODES as Record<string, number>)[code] ?? CLOSE_OTHER_ERROR;
}

/**
 * The error a peer's close frame stands for, or undefined for a normal close.
 * The reason text is `CODE: message` (truncated to the 123 bytes a close frame holds).
 */
export function errorFromClose(closeCode: number, reason: string): ProtocolError | undefined {
  if (closeCode === CLOSE_NORMAL || closeCode === 1000 || closeCode === 1001) return undefined;
  const m = /^(FTVM_ERR_[A-Z0-9_]+): ?(.*)$/s.exec(reason);
  if (m) return new ProtocolError(m[1]!, `peer closed the link (${closeCode}): ${m[2]}`);
  if (closeCode === 1009) return new ProtocolError('FTVM_ERR_FRAME_TOO_LARGE', `a message exceeded the WebSocket size ceiling (1009): ${reason}`);
  for (const [code, value] of Object.entries(CLOSE_CODES)) {
    if (value === closeCode) return new ProtocolError(code, `peer closed the link (${closeCode}): ${reason}`);
  }
  return new ProtocolError('FTVM_ERR_LINK_CLOSED', `link closed abnormally (${closeCode}): ${reason}`);
}

/** `CODE: message`, cut to fit a WebSocket close frame (123 bytes of UTF-8). */
export function closeReason(err: { code: string; message: string }): string {
  const full = `${err.code}: ${err.message}`;
  const buf = Buffer.from(full, 'utf8');
  if (buf.length <= 123) return full;
  // Cut on a character boundary: decoding a cut multi-byte sequence would add U+FFFD (3 bytes).
  let end = 123;
  while (end > 0 && (buf[end]! & 0xc0) === 0x80) end--;
  return buf.subarray(0, end).toString('utf8');
}

/** The peer sent `reject`: its code is the peer's reason. */
export class PeerRefusedError extends ProtocolError {}

export const malformed = (message: string): ProtocolError => new ProtocolError('FTVM_ERR_FRAME_MALFORMED', message);
export const truncated = (message: string): ProtocolError => new ProtocolError('FTVM_ERR_FRAME_TRUNCATED', message);
export const tooLarge = (message: string): ProtocolError => new ProtocolError('FTVM_ERR_FRAME_TOO_LARGE', message);
