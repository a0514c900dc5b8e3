/**
 * Every message ftvm nodes exchange: one discriminated union on `t`.
 *
 * Units and ranges: every integer field is a safe non-negative integer (0..2^53-1)
 * unless said otherwise; `term` is the fencing generation (the proxy bumps it on
 * every promotion; a message from an older term is refused); `epoch` numbers the
 * primary's checkpoints, starting at 1 (0 = none yet); byte offsets count bytes of a
 * connection's stream since it opened. Byte fields are `Uint8Array`.
 *
 * Messages that carry a binary payload (outside the msgpack header) are listed in
 * `PAYLOAD_TYPES`; every other message must arrive with an empty payload.
 */

/**
 * 2: `ack.proxied` (the secondary sends its own `commit` to the proxy). A version-1 node
 * refuses that field as malformed, so the handshake refuses the pair instead.
 * 3: connection offsets (`commit.conns`, `offsets.conns`, and in a checkpoint's devices) and
 * a checkpoint's retained output travel as packed tables (packed.ts), not msgpack maps; a
 * small checkpoint may come as one `ckpt` frame.
 * 4: `rollback` (a primary's guest fault rolled back, node -> proxy on the net link).
 * 5: a MAC on every frame after the handshake, under session keys it derives; page codecs
 * SPARSE and XOR_SPARSE; the migration receiver acks every pre-copy round.
 * 6: after the handshake a message may carry a batch of frames under one MAC (frame.ts, BATCH_MARK):
 * a link sends the small messages of one event-loop turn together.
 */
export const PROTOCOL_VERSION = 6;

/** Size of handshake nonces, HMAC proofs, image digests and guest digests, bytes. */
export const NONCE_BYTES = 32;
export const PROOF_BYTES = 32;
export const DIGEST_BYTES = 32;
/** Size of one per-page hash in a scrub response, bytes (see digest.ts). */
export const PAGE_HASH_BYTES = 8;
/** Most pages one scrub request may cover (hashes then fit a 32 KiB header). */
export const MAX_SCRUB_PAGES = 4096;
/** Most entries in `globals`, `offsets.conns`. */
export const MAX_GLOBALS = 65536;
export const MAX_CONNS = 65536;
/** Most nesting levels in an opaque (`devices`, `clock`, `detail`) value. */
export const MAX_OPAQUE_DEPTH = 32;

export const ROLES = ['primary', 'secondary', 'proxy', 'receiver', 'cli'] as const;
export type Role = (typeof ROLES)[number];

/**
 * What a connection is for; one listener serves them all and dispatches on the hello.
 * - replication: primary -> secondary checkpoints, acks, heartbeats, scrub.
 * - net: proxy -> active node client streams; output, commit back.
 * - control: promotion, fencing and status between nodes, the proxy and the cli.
 * - migration: pre-copy rounds and disk blocks to a receiver.
 */
export const LINKS = ['replication', 'net', 'control', 'migration'] as const;
export type LinkKind = (typeof LINKS)[number];

/** A msgpack-able value the protocol carries without interpreting (device state, clock). */
export type Opaque = null | boolean | number | bigint | string | Uint8Array | Opaque[] | { [key: string]: Opaque };

// ---- handshake ----

/** Server -> client, first message on every connection. */
export interface Challenge { t: 'challenge'; version: number; nonce: Uint8Array }
/** Client -> server, answer to the challenge. `proof` = HMAC(token, client transcript). */
export interface Hello {
  t: 'hello';
  version: number;
  role: Role;
  link: LinkKind;
  nodeId: string;
  term: number;
  epoch?: number;
  /** sha256 of the guest module the client runs, when it runs one. */
  guestDigest?: Uint8Array;
  nonce: Uint8Array;
  proof: Uint8Array;
}
/** Server -> client: handshake accepted; `proof` lets the client authenticate the server. */
export interface Welcome { t: 'welcome'; nodeId: string; role: Role; term: number; epoch: number; proof: Uint8Array }
/** Either side, before closing: why the handshake or link failed (an FTVM_ERR_* code). */
export interface Reject { t: 'reject'; code: string; message: string }

// ---- replication / migration ----

/** Opens checkpoint `epoch`; its pages follow in `ckpt_pages`, then `ckpt_end`. */
export interface CkptBegin {
  t: 'ckpt_begin';
  term: number;
  epoch: number;
  /** Size of guest linear memory at the checkpoint, bytes (a multiple of 64 KiB). */
  memBytes: number;
  /** Pages this checkpoint carries (dirty pages, or all for a full one). */
  pageCount: number;
  /** Mutable global values by index; i64 globals as bigint. */
  globals: (number | bigint)[];
  devices: Opaque;
  clock?: Opaque;
  /** true: the image is the pages sent (a full sync); false: a delta on the last acked one. */
  full: boolean;
  /** Migration of a guest with a disk: { mode: 'copy' | 'shared', totalBlocks, blockCount } (blocks this round carries). */
  disk?: Opaque;
}
/** A batch of encoded pages (payload: see codec.ts). `seq` counts batches from 0 within the epoch. */
export interface CkptPages { t: 'ckpt_pages'; term: number; epoch: number; seq: number; count: number }
/** A batch of dirty 4 KiB disk blocks, same payload layout as pages (block numbers). */
export interface CkptBlocks { t: 'ckpt_blocks'; term: number; epoch: number; seq: number; count: number }
/** Closes checkpoint `epoch`; `digest` is the image digest after applying it. */
export interface CkptEnd {
  t: 'ckpt_end';
  term: number;
  epoch: number;
  pageCount: number;
  digest: Uint8Array;
  /** Encoded page bytes sent for this epoch. */
  wireBytes: number;
  /** Page bytes before encoding (pageCount * 4096). */
  rawBytes: number;
}
/**
 * A whole small checkpoint in one frame: ckpt_begin's fields and ckpt_end's, its pages as
 * the payload (one batch, as in ckpt_pages; empty when pageCount is 0). Received as that
 * begin, pages and end. A checkpoint with disk blocks, or more pages than a batch, uses the
 * three-frame form.
 */
export type Ckpt = { t: 'ckpt' } & Omit<CkptBegin, 't' | 'disk'> & Omit<CkptEnd, 't'>;
/** The secondary has applied and verified `epoch`; its image digest. */
/**
 * The secondary committed `epoch`. `proxied`: it told the proxy so itself (a commit on its net
 * link), and the primary's own commit of the epoch only confirms: it may be sent lazily.
 */
export interface Ack { t: 'ack'; term: number; epoch: number; digest: Uint8Array; proxied?: boolean }
/** The secondary refused `epoch` (digest mismatch, gap, ...); `code` is an FTVM_ERR_* code. */
export interface Nack { t: 'nack'; term: number; epoch: number; code: string; message: string }
/** Liveness; `sentAtMs` is the sender's wall clock, ms since the Unix epoch. */
export interface Heartbeat { t: 'heartbeat'; term: number; epoch: number; sentAtMs: number }
/** Asks for the per-page hashes of [fromPage, fromPage+count) of the image at `epoch`. */
export interface ScrubReq { t: 'scrub_req'; term: number; epoch: number; fromPage: number; count: number }
/** `hashes`: count * PAGE_HASH_BYTES bytes, page by page. */
export interface ScrubRes { t: 'scrub_res'; term: number; epoch: number; fromPage: number; count: number; hashes: Uint8Array }
/** Asks the primary to resend [fromPage, fromPage+count) in full in its next checkpoint. */
export interface ResyncReq { t: 'resync_req'; term: number; fromPage: number; count: number }
/** Migration PULL: the receiver needs disk blocks [fromBlock, fromBlock+count) now. */
export interface BlockReq { t: 'block_req'; term: number; fromBlock: number; count: number }
/**
 * Migration stop-and-copy: the disk blocks the receiver does not hold yet (it pulls them).
 * Payload: a bitmap of ceil(totalBlocks / 8) bytes, bit b % 8 of byte b / 8 = block b; `count` bits set.
 */
export interface BlockMap { t: 'block_map'; term: number; epoch: number; totalBlocks: number; count: number }

// ---- net link (proxy <-> active node) and control ----

/** A client connection opened (proxy -> node). `remote`: "host:port", for logs only. */
export interface Open { t: 'open'; term: number; conn: number; remote?: string }
/**
 * Client bytes (payload), proxy -> node; `offset` = position of the first payload byte
 * in the input stream. A node drops bytes it already holds (replays may overlap).
 */
export interface Input { t: 'input'; term: number; conn: number; offset: number }
/** Guest output (payload) produced in `epoch`, node -> proxy; held by the proxy until commit(epoch). */
export interface Output { t: 'output'; term: number; conn: number; epoch: number; offset: number }
/**
 * A connection closed. Proxy -> node: the client closed after `offset` input bytes.
 * Node -> proxy: the guest closed it in `epoch` after `offset` output bytes.
 */
export interface Close { t: 'close'; term: number; conn: number; epoch?: number; offset?: number }
/**
 * Node -> proxy: checkpoint `epoch` is committed (acked by the secondary, or committed
 * unprotected when `acked` is false): output tagged <= epoch may leave. The offsets
 * are that state's (see `Offsets`).
 */
export interface Commit { t: 'commit'; term: number; epoch: number; acked: boolean; maxConnId: number; conns: ConnOffsets[] }
/** Proxy -> node: all output of epochs <= epoch has reached the proxy; retained copies may go. */
export interface Confirm { t: 'confirm'; term: number; epoch: number }
/** Proxy -> node: resend retained output of each connection from `offset` (the proxy never got it). */
export interface Resend { t: 'resend'; term: number; conns: { conn: number; offset: number }[] }
/**
 * Promotion in `term`: asked by a secondary (fromEpoch = its committed epoch, reason),
 * granted by the proxy (then the node answers with `offsets`).
 */
export interface Promote { t: 'promote'; term: number; fromEpoch?: number; reason?: string }
/** A promotion in `term` was refused (by the proxy, or by a node that cannot take it). */
export interface PromoteDeny { t: 'promote_deny'; term: number; reason: string }
/** Everything from a term older than `term` is refused from now on. */
export interface Fence { t: 'fence'; term: number }
/**
 * A planned switchover (migration of a replicated primary), active primary -> proxy.
 * `ready: false` (prepare): the proxy dials `to` (a node URL it may not have been started
 * with) and keeps a net link to it. `ready: true`: the primary holds its vCPU, `to` acked
 * its last checkpoint `epoch` (the primary's committed state, exactly), and `heldMs` is how
 * long the vCPU has been held so far: the proxy promotes `to` in term + 1 and fences the
 * sender once `to` serves. A refusal comes back as `promote_deny`.
 */
export interface Handover { t: 'handover'; term: number; epoch: number; to: string; ready: boolean; heldMs: number }
export interface ConnOffsets {
  conn: number;
  /** Input bytes the guest consumed in the committed state. */
  inConsumed: number;
  /** Output bytes the guest produced in the committed state. */
  outProduced: number;
  closed: boolean;
}
/**
 * A node's per-connection offsets at `epoch`: sent by a promoted node (its committed
 * image; the proxy replays input after them) and by a primary when its net link comes
 * up (its live state). `maxConnId`: highest connection id the state has seen opened
 * (0: none); the proxy opens ids in increasing order, so higher ids are unknown to it.
 */
export interface Offsets { t: 'offsets'; term: number; epoch: number; maxConnId: number; conns: ConnOffsets[] }
/**
 * Node -> proxy (net link), before any output of the restored guest: the active primary's
 * guest faulted (`code`) and was rolled back to its collected epoch `epoch`, whose offsets
 * these are. Held output past them is void; connection `conn` (the faulting one) is closed
 * by the node and its input past them is dropped. Same term, same primary.
 */
export interface Rollback { t: 'rollback'; term: number; epoch: number; conn?: number; code: string; maxConnId: number; conns: ConnOffsets[] }
/** A node's state, for the cli and the proxy. `state` is a short word ("active", "standby"). */
export interface Status { t: 'status'; role: Role; term: number; epoch: number; state: string; detail?: Opaque }

export type Message =
  | Challenge | Hello | Welcome | Reject
  | CkptBegin | CkptPages | CkptBlocks | CkptEnd | Ckpt | Ack | Nack | Heartbeat | ScrubReq | ScrubRes | ResyncReq | BlockReq | BlockMap
  | Open | Input | Output | Close | Commit | Confirm | Resend | Promote | PromoteDeny | Fence | Handover | Offsets | Rollback | Status;

export type MessageType = Message['t'];
export type MessageOf<T extends MessageType> = Extract<Message, { t: T }>;

/** Messages whose frame carries a binary payload after the header. */
export const PAYLOAD_TYPES: ReadonlySet<MessageType> = new Set<MessageType>(['ckpt_pages', 'ckpt_blocks', 'ckpt', 'block_map', 'input', 'output']);

export const HANDSHAKE_TYPES: ReadonlySet<MessageType> = new Set<MessageType>(['challenge', 'hello', 'welcome']);

const COMMON: MessageType[] = ['reject', 'status', 'fence', 'heartbeat'];
const CONTROL: MessageType[] = ['commit', 'confirm', 'resend', 'promote', 'promote_deny', 'offsets'];
const REPLICATION: MessageType[] = [
  'ckpt_begin', 'ckpt_pages', 'ckpt_blocks', 'ckpt_end', 'ack', 'nack', 'scrub_req', 'scrub_res', 'resync_req',
];

/** Messages allowed on each link after the handshake; anything else is FTVM_ERR_UNEXPECTED_MESSAGE. */
export const LINK_MESSAGES: Readonly<Record<LinkKind, ReadonlySet<MessageType>>> = {
  replication: new Set([...COMMON, ...REPLICATION, 'ckpt']),
  migration: new Set([...COMMON, ...REPLICATION, 'block_req', 'block_map']),
  net: new Set([...COMMON, ...CONTROL, 'open', 'input', 'output', 'close', 'handover', 'rollback']),
  control: new Set([...COMMON, ...CONTROL]),
};
