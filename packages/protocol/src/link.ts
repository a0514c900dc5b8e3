/**
 * Authenticated links over WebSocket (`ws`). A node listens on one address for every
 * link kind; the hello says which link and role the peer wants, and `onLink` dispatches.
 *
 * Failure discipline: a bad frame, a message not allowed on the link, a failed
 * handshake or a handshake timeout emits a coded error on the Link (when anyone
 * listens), sends `reject` during the handshake, and closes with the code from
 * CLOSE_CODES. Frames larger than the transport ceiling (4 + maxHeaderBytes +
 * maxPayloadBytes) are refused by ws itself, before buffering, with close code 1009.
 */
import { EventEmitter } from 'node:events';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { FtvmError } from '@ftvm/guest-abi';
import { CLOSE_NORMAL, PeerRefusedError, ProtocolError, closeCodeFor, closeReason, errorFromClose, malformed } from './errors.js';
import { PREFIX_BYTES, decodeFrame, encodeBatch, encodeFrame, isBatch, maxFrameBytes, resolveLimits, splitBatch, type FrameLimits } from './frame.js';
import { ClientHandshake, ServerHandshake, asCoded, type ClientHello, type ServerIdentity, type SessionKeys } from './handshake.js';
import { LINK_MESSAGES, type Hello, type LinkKind, type Message, type Welcome } from './messages.js';

/** TLS material, PEM. A listener needs cert and key; with ca it asks for and verifies a client certificate (mutual TLS). */
export interface TlsOptions {
  cert?: string | Buffer;
  key?: string | Buffer;
  ca?: string | Buffer;
}

export interface LinkOptions {
  limits?: Partial<FrameLimits>;
  /** Allows an empty token (the operator's --insecure: anyone can connect). */
  insecure?: boolean;
  /** wss:// with these (listen: required cert+key; connect: ca to verify the server, cert+key for mutual TLS). */
  tls?: TlsOptions;
  /** Bytes queued for sending beyond which `send` fails with FTVM_ERR_SEND_BUFFER_FULL. Default 256 MiB. */
  maxSendBufferedBytes?: number;
}

export interface LinkEvents {
  message: [msg: Message, payload: Uint8Array];
  /**
   * A coded failure: found locally (the link is closing with its code), or the reason the
   * peer gave for closing it abnormally. Only emitted when someone listens.
   */
  error: [err: FtvmError];
  close: [code: number, reason: string];
  /** Queued bytes fell to or below a `drained()` threshold. */
  drain: [];
}

const DEFAULT_MAX_SEND_BUFFERED = 256 * 1024 * 1024;
/** Messages kept for a link nobody listens to yet (see Link.held). */
const MAX_HELD_MESSAGES = 1024;
/**
 * Largest message accepted before the handshake completes, bytes: a hello or welcome
 * is under 1 KiB. Keeps unauthenticated peers from making the listener buffer
 * maxPendingHandshakes x 64 MiB.
 */
export const PREAUTH_MAX_MESSAGE_BYTES = 16 * 1024;

/**
 * Changes ws's per-connection message ceiling. ws has no public setter; its receiver
 * field is stable across ws 8.x. If it ever moves, the listener-wide ceiling applies.
 */
function setMessageCeiling(ws: WebSocket, bytes: number): void {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload?: unknown } })._receiver;
  if (receiver && typeof receiver._maxPayload === 'number') receiver._maxPayload = bytes;
}
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5000;
/** Frames up to this size wait for the turn's batch; a larger one (a checkpoint) leaves alone, not copied. */
const BATCH_FRAME_MAX = 16 * 1024;
/** Largest batch, bytes: a fuller one leaves at once (bounds the copy and the peer's message). */
const BATCH_MAX_BYTES = 64 * 1024;
/** Bytes of the MAC ending every frame after the handshake on a link without TLS. */
export const FRAME_TAG_BYTES = 16;

/**
 * MAC of one frame: HMAC-SHA256(key, seq | frame)[:16]. The per-direction sequence
 * number makes a replayed, dropped or reordered frame fail too.
 */
export function frameTag(key: Uint8Array, seq: number, frame: Uint8Array): Buffer {
  const n = Buffer.allocUnsafe(8);
  n.writeUIntLE(seq, 0, 6);
  n.writeUInt16LE(0, 6);
  return createHmac('sha256', key).update(n).update(frame).digest().subarray(0, FRAME_TAG_BYTES);
}

/** Keying material both ends of one TLS session derive: binds the handshake to that session. */
function tlsBinding(socket: Socket | undefined): Uint8Array | undefined {
  const tls = socket as TLSSocket | undefined;
  if (!tls || typeof tls.exportKeyingMaterial !== 'function' || !tls.encrypted) return undefined;
  return new Uint8Array(tls.exportKeyingMaterial(32, 'EXPORTER-ftvm/1 link', Buffer.alloc(0)));
}

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}

/** An established, authenticated link. */
export class Link extends EventEmitter<LinkEvents> {
  /** The peer's hello (server side) or welcome (client side). */
  readonly peer: Hello | Welcome;
  readonly kind: LinkKind;
  readonly limits: FrameLimits;
  private readonly maxSendBuffered: number;
  /** Largest batch message (before its MAC), and largest frame that joins a batch, bytes. */
  private readonly batchMax: number;
  private readonly batchFrameMax: number;
  private readonly allowed: ReadonlySet<string>;
  /** Frame MAC keys (links without TLS); undefined: frames travel without one (TLS protects them). */
  private readonly keys: SessionKeys | undefined;
  private sendSeq = 0;
  private recvSeq = 0;
  private ended = false;
  private minTerm = 0;
  private waiters: { threshold: number; resolve: () => void }[] = [];
  /**
   * Messages that arrived before anyone listened: a peer may send right after the
   * handshake, before connect()'s promise has resolved and the caller attached its
   * listener. Delivered, in order, once the first 'message' listener is added.
   */
  private held: Array<[Message, Uint8Array]> | null = [];

  /** @internal: built by listen() and connect() once the handshake succeeded. */
  constructor(private readonly ws: WebSocket, kind: LinkKind, peer: Hello | Welcome, opts: LinkOptions, keys?: SessionKeys) {
    super();
    this.keys = keys;
    (this as unknown as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event === 'message' && this.held) queueMicrotask(() => this.releaseHeld());
    });
    this.kind = kind;
    this.peer = peer;
    this.limits = resolveLimits(opts.limits);
    this.maxSendBuffered = opts.maxSendBufferedBytes ?? DEFAULT_MAX_SEND_BUFFERED;
    this.batchMax = Math.min(BATCH_MAX_BYTES, maxFrameBytes(this.limits));
    this.batchFrameMax = Math.min(BATCH_FRAME_MAX, this.batchMax - 2 * PREFIX_BYTES);
    this.allowed = LINK_MESSAGES[kind];
    ws.on('message', (data, isBinary) => this.onData(data, isBinary));
    ws.on('close', (code, reason) => {
      const text = reason.toString('utf8');
      const byPeer = !this.ended;
      this.ended = true;
      for (const w of this.waiters.splice(0)) w.resolve();
      // The peer (or ws, for an oversized message) ended the link for a reason: surface it.
      const err = byPeer ? errorFromClose(code, text) : undefined;
      if (err && this.listenerCount('error') > 0) this.emit('error', err);
      this.emit('close', code, text);
    });
  }

  get closed(): boolean {
    return this.ended || this.ws.readyState !== WebSocket.OPEN;
  }

  /** Bytes accepted by send() and not yet written to the socket (the turn's batch included). */
  get bufferedAmount(): number {
    return this.ws.bufferedAmount + this.pendingBytes;
  }

  /** Sends one message. Throws a coded error for a bad message, a full buffer or a closed link. */
  private releaseHeld(): void {
    const held = this.held;
    if (!held) return;
    this.held = null;
    for (const [m, p] of held) {
      if (this.ended) return;
      this.emit('message', m, p);
    }
  }

  send(msg: Message, payload?: Uint8Array): void {
    if (this.closed) throw new ProtocolError('FTVM_ERR_LINK_CLOSED', `cannot send ${msg.t}: the ${this.kind} link is closed`);
    if (!this.allowed.has(msg.t)) throw new ProtocolError('FTVM_ERR_UNEXPECTED_MESSAGE', `${msg.t} is not allowed on a ${this.kind} link`);
    const tail = this.tail;
    const frame = encodeFrame(msg, payload, this.limits, tail);
    if (this.bufferedAmount + frame.length > this.maxSendBuffered) {
      throw new ProtocolError('FTVM_ERR_SEND_BUFFER_FULL', `${this.bufferedAmount} bytes already queued on the ${this.kind} link (limit ${this.maxSendBuffered}); wait for drained()`);
    }
    this.scheduleTurnEnd();
    if (frame.length - tail > this.batchFrameMax) {
      this.flush();
      this.sendWire(frame);
      return;
    }
    const size = PREFIX_BYTES + frame.length - tail;
    // A batch never exceeds what the peer's message ceiling (maxFrameBytes + MAC) admits.
    if (this.pending.length > 0 && this.pendingBytes + size > this.batchMax) this.flush();
    if (this.pending.length === 0) this.pendingBytes = PREFIX_BYTES;
    this.pending.push(frame.subarray(0, frame.length - tail));
    this.pendingBytes += size;
  }

  /** Bytes of MAC at the end of each message (0 under TLS). */
  private get tail(): number {
    return this.keys ? FRAME_TAG_BYTES : 0;
  }

  /** Sends one message's bytes, whose last `tail` bytes are free for its MAC. */
  private sendWire(wire: Uint8Array): void {
    const tail = this.tail;
    if (this.keys) wire.set(frameTag(this.keys.send, this.sendSeq++, wire.subarray(0, wire.length - tail)), wire.length - tail);
    this.ws.send(wire, { binary: true }, () => this.checkWaiters());
  }

  /** Sends the frames waiting for the turn's end: one alone as it is, several as one batch under one MAC. */
  private flush(): void {
    const frames = this.pending;
    if (frames.length === 0) return;
    this.pending = [];
    this.pendingBytes = 0;
    if (this.ws.readyState !== WebSocket.OPEN) return;
    const one = frames[0]!;
    this.sendWire(frames.length === 1 ? new Uint8Array(one.buffer, one.byteOffset, one.length + this.tail) : encodeBatch(frames, this.tail));
  }

  /**
   * @internal Tests of the receiver's checks: sends already-encoded frame bytes as they are,
   * with this link's frame MAC (so the peer's decoder, not its MAC check, judges them).
   */
  sendFrameBytes(frame: Uint8Array): void {
    this.flush();
    if (!this.keys) return this.sendWire(frame);
    const out = new Uint8Array(frame.length + FRAME_TAG_BYTES);
    out.set(frame);
    this.sendWire(out);
  }

  /** Small frames sent in this turn, waiting to leave as one message (views without their MAC room). */
  private pending: Uint8Array[] = [];
  /** Size of the pending batch as it will travel (mark, lengths, frames); 0 when none. */
  private pendingBytes = 0;
  private turnScheduled = false;

  /**
   * Messages sent in one turn of the event loop leave in one write: small frames gather into
   * one batch message (one MAC, one ws frame), and the socket is corked from the first send to
   * the turn's check phase (setImmediate), after every I/O callback of the turn ran, so a large
   * frame and the batch share the write. A proxy forwards input per client read and a primary
   * sends an output message per guest write: one message each cost a MAC and a syscall.
   */
  private scheduleTurnEnd(): void {
    if (this.turnScheduled) return;
    this.turnScheduled = true;
    const socket = (this.ws as unknown as { _socket?: { cork?: () => void; uncork: () => void } })._socket;
    const corked = typeof socket?.cork === 'function';
    if (corked) socket!.cork!();
    setImmediate(() => {
      this.turnScheduled = false;
      this.flush();
      if (corked) socket!.uncork();
    });
  }

  /**
   * Sends unless the link is already closed (returns false then). For runtimes whose
   * timers may fire between a link closing and its 'close' event; a full send buffer or
   * a message the link does not carry still throws (those are bugs or overload).
   */
  trySend(msg: Message, payload?: Uint8Array): boolean {
    if (this.closed) return false;
    this.send(msg, payload);
    return true;
  }

  /** Resolves once at most `threshold` bytes are queued (or the link closed). */
  drained(threshold = 0): Promise<void> {
    if (this.closed || this.bufferedAmount <= threshold) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ threshold, resolve }));
  }

  /**
   * Fences the link: from now on an incoming message whose `term` is below `term`
   * closes it with FTVM_ERR_STALE_TERM (4008). Never lowers the fence.
   */
  setMinTerm(term: number): void {
    if (!Number.isSafeInteger(term) || term < 0) throw new ProtocolError('FTVM_ERR_INVALID_OPTION', `term must be a safe non-negative integer, got ${term}`);
    this.minTerm = Math.max(this.minTerm, term);
  }

  /** Stops reading from the peer (receive backpressure); resume() reads again. */
  pause(): void {
    this.ws.pause();
  }

  resume(): void {
    this.ws.resume();
  }

  /** A normal close (4000) or one for an error code. */
  close(code = CLOSE_NORMAL, reason = 'closed'): void {
    if (this.ended) return;
    // What was sent before the close leaves before it, as ws orders its own queue.
    this.flush();
    this.ended = true;
    this.ws.close(code, reason.slice(0, 120));
  }

  /** Emits `err` (if anyone listens) and closes with its code. */
  fail(err: FtvmError): void {
    if (this.ended) return;
    if (this.listenerCount('error') > 0) this.emit('error', err);
    this.close(closeCodeFor(err.code), closeReason(err));
  }

  private checkWaiters(): void {
    if (this.waiters.length === 0) return;
    const queued = this.bufferedAmount;
    const ready = this.waiters.filter((w) => queued <= w.threshold);
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => queued > w.threshold);
    for (const w of ready) w.resolve();
    this.emit('drain');
  }

  private onData(data: RawData, isBinary: boolean): void {
    if (this.ended) return;
    let frames: Uint8Array[];
    try {
      if (!isBinary) throw malformed('text messages are not part of the protocol');
      let bytes = toBytes(data);
      if (this.keys) {
        const end = bytes.length - FRAME_TAG_BYTES;
        const ok = end >= 0 && timingSafeEqual(frameTag(this.keys.recv, this.recvSeq++, bytes.subarray(0, end)), bytes.subarray(end));
        if (!ok) throw new ProtocolError('FTVM_ERR_FRAME_AUTH', `a frame on the ${this.kind} link failed its MAC (injected, replayed or altered)`);
        bytes = bytes.subarray(0, end);
      }
      frames = isBatch(bytes) ? splitBatch(bytes, this.limits) : [bytes];
    } catch (e) {
      this.fail(asCoded(e));
      return;
    }
    // A listener may close the link (or fail it) on any frame: the rest of the batch is dropped then.
    for (const f of frames) {
      if (this.ended) return;
      this.onFrame(f);
    }
  }

  private onFrame(bytes: Uint8Array): void {
    let decoded;
    try {
      decoded = decodeFrame(bytes, this.limits);
      if (!this.allowed.has(decoded.msg.t)) {
        throw new ProtocolError('FTVM_ERR_UNEXPECTED_MESSAGE', `${decoded.msg.t} is not allowed on a ${this.kind} link`);
      }
    } catch (e) {
      this.fail(asCoded(e));
      return;
    }
    const term = (decoded.msg as { term?: number }).term;
    if (term !== undefined && term < this.minTerm) {
      this.fail(new ProtocolError('FTVM_ERR_STALE_TERM', `${decoded.msg.t} from term ${term}, the link is fenced below ${this.minTerm}`));
      return;
    }
    if (decoded.msg.t === 'reject') {
      // The peer explains why it is about to close; surface its code.
      this.fail(new PeerRefusedError(decoded.msg.code, `peer refused the link: ${decoded.msg.message}`));
      return;
    }
    if (this.held) {
      if (this.held.length >= MAX_HELD_MESSAGES) {
        this.fail(new ProtocolError('FTVM_ERR_FRAME_TOO_LARGE', `more than ${MAX_HELD_MESSAGES} messages arrived before the link had a listener`));
        return;
      }
      this.held.push([decoded.msg, decoded.payload]);
      if (this.listenerCount('message') > 0) queueMicrotask(() => this.releaseHeld());
      return;
    }
    this.emit('message', decoded.msg, decoded.payload);
  }
}

export interface ListenOptions extends LinkOptions {
  host?: string;
  /** 0 picks a free port. */
  port: number;
  token: Uint8Array;
  /** Who this node is right now (read at each handshake for the welcome). */
  identity: () => ServerIdentity;
  /** Refuses a peer by throwing an FtvmError (FTVM_ERR_STALE_TERM, a link this role does not serve, ...). */
  accept?: (hello: Hello) => void;
  onLink: (link: Link, hello: Hello) => void;
  /** Default 5000 ms; also how long a TCP connection may stay before its WebSocket upgrade. */
  handshakeTimeoutMs?: number;
  /** Connections still handshaking beyond which new ones are refused at once. Default 64. */
  maxPendingHandshakes?: number;
  /** Established links beyond which a new one is refused (FTVM_ERR_BUSY). Default 64. */
  maxLinks?: number;
}

/** What a listener refused, by reason (a metric's source). */
export interface ListenerStats {
  /** TCP connections dropped at accept: the listener already held maxLinks + maxPendingHandshakes sockets. */
  droppedConnections: number;
  /** WebSocket connections refused before the handshake (too many handshaking or established). */
  refusedBusy: number;
  /** Handshakes that failed (bad proof, timeout, bad frame, refused by accept). */
  failedHandshakes: number;
}

export interface Listener {
  readonly port: number;
  readonly url: string;
  /** Links established and still open. */
  readonly links: ReadonlySet<Link>;
  readonly stats: Readonly<ListenerStats>;
  close(): Promise<void>;
}

function validateCommon(opts: { handshakeTimeoutMs?: number; maxSendBufferedBytes?: number; maxPendingHandshakes?: number; maxLinks?: number }): void {
  for (const key of ['handshakeTimeoutMs', 'maxSendBufferedBytes', 'maxPendingHandshakes', 'maxLinks'] as const) {
    const v = opts[key];
    if (v !== undefined && (!Number.isSafeInteger(v) || v <= 0)) {
      throw new ProtocolError('FTVM_ERR_INVALID_OPTION', `${key} must be a positive integer, got ${String(v)}`);
    }
  }
}

/** Sends a reject (best effort) and closes with the error's code. */
function refuse(ws: WebSocket, err: FtvmError, limits: FrameLimits): void {
  if (ws.readyState !== WebSocket.OPEN) return;
  try {
    ws.send(encodeFrame({ t: 'reject', code: err.code, message: err.message.slice(0, 1024) }, undefined, limits));
  } catch {
    // The close frame below carries the code anyway.
  }
  ws.close(closeCodeFor(err.code), closeReason(err));
}

/** The HTTP(S) server under a listener: TLS when configured, idle sockets bounded in number and time. */
function linkServer(opts: ListenOptions, timeoutMs: number): HttpServer {
  const timeouts = { headersTimeout: timeoutMs, requestTimeout: timeoutMs, connectionsCheckingInterval: Math.min(1000, timeoutMs) };
  if (!opts.tls) return createHttpServer(timeouts);
  if (!opts.tls.cert || !opts.tls.key) throw new ProtocolError('FTVM_ERR_TLS_CONFIG', 'a TLS listener needs a certificate and its key (--tls-cert, --tls-key)');
  const mutual = opts.tls.ca !== undefined;
  return createHttpsServer({ ...timeouts, cert: opts.tls.cert, key: opts.tls.key, ca: opts.tls.ca, requestCert: mutual, rejectUnauthorized: mutual, minVersion: 'TLSv1.2' });
}

export async function listen(opts: ListenOptions): Promise<Listener> {
  validateCommon(opts);
  const limits = resolveLimits(opts.limits);
  const timeoutMs = opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const maxPending = opts.maxPendingHandshakes ?? 64;
  const maxLinks = opts.maxLinks ?? 64;
  // Fails here (FTVM_ERR_NO_TOKEN) rather than at the first peer.
  new ServerHandshake({ token: opts.token, identity: opts.identity, insecure: opts.insecure });
  const links = new Set<Link>();
  const stats: ListenerStats = { droppedConnections: 0, refusedBusy: 0, failedHandshakes: 0 };
  let pending = 0;
  const tail = opts.tls ? 0 : FRAME_TAG_BYTES;
  const server = linkServer(opts, timeoutMs);
  // Sockets beyond every link and handshake allowed are closed at accept (10,000 idle connections cost nothing).
  server.maxConnections = maxLinks + maxPending;
  server.on('drop', () => stats.droppedConnections++);
  // TLS handshake failures (no or a bad client certificate) are logged by nobody: the socket closes.
  server.on('tlsClientError', () => stats.failedHandshakes++);
  const wss = new WebSocketServer({ server, maxPayload: maxFrameBytes(limits) + tail, perMessageDeflate: false });
  wss.on('connection', (ws, req: IncomingMessage) => {
    if (pending >= maxPending || links.size >= maxLinks) {
      stats.refusedBusy++;
      const why = pending >= maxPending ? `${maxPending} handshakes already in progress` : `${maxLinks} links already open`;
      ws.close(closeCodeFor('FTVM_ERR_BUSY'), `FTVM_ERR_BUSY: ${why}`);
      return;
    }
    pending++;
    setMessageCeiling(ws, Math.min(PREAUTH_MAX_MESSAGE_BYTES, maxFrameBytes(limits)));
    let settled = false;
    const settle = (): void => {
      if (settled) return;
      settled = true;
      pending--;
      clearTimeout(timer);
      ws.off('message', onMessage);
    };
    const hs = new ServerHandshake({ token: opts.token, identity: opts.identity, accept: opts.accept, insecure: opts.insecure, binding: tlsBinding(req.socket) });
    const timer = setTimeout(() => {
      settle();
      stats.failedHandshakes++;
      refuse(ws, new ProtocolError('FTVM_ERR_HANDSHAKE_TIMEOUT', `no valid hello within ${timeoutMs} ms`), limits);
    }, timeoutMs);
    timer.unref();
    const onMessage = (data: RawData, isBinary: boolean): void => {
      if (settled) return;
      let hello: Hello;
      let welcome: Welcome;
      try {
        if (!isBinary) throw malformed('text messages are not part of the protocol');
        const { msg } = decodeFrame(toBytes(data), limits);
        const step = hs.receive(msg);
        hello = step.done!;
        welcome = step.reply;
      } catch (e) {
        settle();
        stats.failedHandshakes++;
        refuse(ws, asCoded(e), limits);
        return;
      }
      settle();
      setMessageCeiling(ws, maxFrameBytes(limits) + tail);
      ws.send(encodeFrame(welcome, undefined, limits));
      const link = new Link(ws, hello.link, hello, opts, opts.tls ? undefined : hs.keys);
      links.add(link);
      link.on('close', () => links.delete(link));
      try {
        opts.onLink(link, hello);
      } catch (e) {
        link.fail(asCoded(e));
      }
    };
    ws.on('message', onMessage);
    ws.on('close', settle);
    // Socket errors (resets) end in 'close'; without a listener ws would throw.
    ws.on('error', () => {});
    ws.send(encodeFrame(hs.start(), undefined, limits));
  });
  wss.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', (e) => reject(new ProtocolError('FTVM_ERR_LISTEN_FAILED', `cannot listen on ${opts.host ?? '*'}:${opts.port}: ${(e as Error).message}`)));
    server.listen(opts.port, opts.host);
  });
  server.on('error', () => {});
  const port = (server.address() as AddressInfo).port;
  const host = opts.host && opts.host !== '0.0.0.0' && opts.host !== '::' ? opts.host : '127.0.0.1';
  return {
    port,
    url: `${opts.tls ? 'wss' : 'ws'}://${host.includes(':') ? `[${host}]` : host}:${port}`,
    links,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface ConnectOptions extends LinkOptions, ClientHello {
  token: Uint8Array;
  /** Handshake deadline including the TCP/WebSocket connect, ms. Default 5000. */
  timeoutMs?: number;
  /** Claimed protocol version (tests of the mismatch path). */
  version?: number;
}

/** Connects and authenticates; rejects with a coded error (the server's reject code when it refused). */
export function connect(url: string, opts: ConnectOptions): Promise<Link> {
  validateCommon({ handshakeTimeoutMs: opts.timeoutMs, maxSendBufferedBytes: opts.maxSendBufferedBytes });
  const limits = resolveLimits(opts.limits);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const { role, link, nodeId, term, epoch, guestDigest } = opts;
  const secure = url.startsWith('wss:');
  if (secure !== (opts.tls !== undefined)) {
    return Promise.reject(new ProtocolError('FTVM_ERR_TLS_CONFIG', secure ? `${url} is wss:// but no TLS options are configured (--tls-ca)` : `${url} is ws:// but TLS is configured: use wss://`));
  }
  let hs: ClientHandshake;
  try {
    hs = new ClientHandshake({ token: opts.token, hello: { role, link, nodeId, term, epoch, guestDigest }, version: opts.version, insecure: opts.insecure });
  } catch (e) {
    return Promise.reject(e);
  }
  const tail = secure ? 0 : FRAME_TAG_BYTES;
  return new Promise<Link>((resolve, reject) => {
    const t = opts.tls;
    const ws = new WebSocket(url, { maxPayload: maxFrameBytes(limits) + tail, perMessageDeflate: false, ...(t ? { ca: t.ca, cert: t.cert, key: t.key } : {}) });
    let done = false;
    const finish = (err: FtvmError | undefined, linkObj?: Link): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      ws.off('message', onMessage);
      if (err) {
        if (ws.readyState === WebSocket.OPEN) refuse(ws, err, limits);
        else ws.terminate();
        reject(err);
      } else resolve(linkObj!);
    };
    const timer = setTimeout(
      () => finish(new ProtocolError('FTVM_ERR_HANDSHAKE_TIMEOUT', `no welcome from ${url} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onMessage = (data: RawData, isBinary: boolean): void => {
      try {
        if (!isBinary) throw malformed('text messages are not part of the protocol');
        const { msg } = decodeFrame(toBytes(data), limits);
        const step = hs.receive(msg);
        if (step.reply) ws.send(encodeFrame(step.reply, undefined, limits));
        if (step.done) {
          setMessageCeiling(ws, maxFrameBytes(limits) + tail);
          finish(undefined, new Link(ws, link, step.done, opts, secure ? undefined : hs.keys));
        }
      } catch (e) {
        if (e instanceof PeerRefusedError) {
          // The server refused and is closing: do not answer with a reject of our own.
          done = true;
          clearTimeout(timer);
          ws.off('message', onMessage);
          ws.close(CLOSE_NORMAL, 'refused');
          reject(e);
          return;
        }
        finish(asCoded(e));
      }
    };
    ws.on('open', () => {
      setMessageCeiling(ws, Math.min(PREAUTH_MAX_MESSAGE_BYTES, maxFrameBytes(limits)));
      const binding = tlsBinding((ws as unknown as { _socket?: Socket })._socket);
      if (secure && !binding) finish(new ProtocolError('FTVM_ERR_TLS_CONFIG', `${url}: the TLS session exports no keying material`));
      hs.bind(binding);
    });
    ws.on('message', onMessage);
    ws.on('error', (e) => finish(new ProtocolError('FTVM_ERR_CONNECT_FAILED', `cannot connect to ${url}: ${e.message}`)));
    ws.on('close', (code, reason) => {
      finish(errorFromClose(code, reason.toString('utf8')) ?? new ProtocolError('FTVM_ERR_CONNECT_FAILED', `${url} closed during the handshake (${code})`));
    });
  });
}
