export * from './messages.js';
export { validateMessage } from './schema.js';
export {
  ProtocolError, PeerRefusedError, CLOSE_CODES, CLOSE_NORMAL, CLOSE_OTHER_ERROR, closeCodeFor, closeReason, errorFromClose,
  type ProtocolErrorCode,
} from './errors.js';
export {
  BATCH_MARK, DEFAULT_LIMITS, PREFIX_BYTES, FrameReader, decodeFrame, encodeBatch, encodeFrame, encodeStreamFrame, isBatch, maxFrameBytes, resolveLimits, splitBatch,
  type DecodedFrame, type FrameLimits,
} from './frame.js';
export {
  Codec, ENTRY_HEADER_BYTES, MAX_BATCH_PAGES, MAX_PAGES, PageDecoder, PageEncoder,
  type CodecName, type CodecStats, type DecodedBatch, type EncodedBatch, type PageDecoderOptions, type PageEncoderOptions, type PageSink,
} from './codec.js';
export { CONN_ENTRY_BYTES, MAX_OUTPUT_CHUNKS, packConns, packOutput, unpackConns, unpackOutput, type OutputChunk } from './packed.js';
export { ImageDigest, digestEquals, digestImage, pageHash, pageHashInto } from './digest.js';
export {
  ClientHandshake, ServerHandshake,
  type ClientHandshakeOptions, type ClientHello, type HandshakeStep, type ServerHandshakeOptions, type ServerIdentity, type SessionKeys,
} from './handshake.js';
export { NO_TOKEN_HELP, loadTls, loadToken, writeTokenFile, type LoadedToken } from './token.js';
export {
  FRAME_TAG_BYTES, Link, frameTag, PREAUTH_MAX_MESSAGE_BYTES, connect, listen,
  type ConnectOptions, type LinkEvents, type LinkOptions, type ListenOptions, type Listener, type ListenerStats, type TlsOptions,
} from './link.js';
export { requireNative } from './native.js';
