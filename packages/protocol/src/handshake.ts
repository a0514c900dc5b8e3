/**
 * The handshake as two pure state machines (no sockets, no timers).
 *
 *   server -> client  challenge {version, nonce_s}
 *   client -> server  hello {version, role, link, nodeId, term, ..., nonce_c, proof_c}
 *   server -> client  welcome {nodeId, role, term, epoch, proof_s}   (or reject, then close)
 *
 * proof_c = HMAC-SHA256(token, "ftvm/1 client" | nonce_s | nonce_c | the hello's fields)
 * proof_s = HMAC-SHA256(token, "ftvm/1 server" | nonce_s | nonce_c | the welcome's fields | proof_c)
 *
 * Both sides prove knowledge of the shared token without sending it; the direction
 * labels stop a proof being reflected back, fresh nonces stop replays, and binding the
 * fields stops a man in the middle from changing role, link or term. Proofs are
 * compared in constant time.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { FtvmError } from '@ftvm/guest-abi';
import { PeerRefusedError, ProtocolError } from './errors.js';
import { noTokenError } from './token.js';
import {
  NONCE_BYTES, PROTOCOL_VERSION,
  type Challenge, type Hello, type LinkKind, type Message, type Role, type Welcome,
} from './messages.js';

const CLIENT_LABEL = 'ftvm/1 client';
const SERVER_LABEL = 'ftvm/1 server';
const SESSION_C2S = 'ftvm/1 session client->server';
const SESSION_S2C = 'ftvm/1 session server->client';

/**
 * Per-direction frame keys of one link, derived from the token and both nonces (and the
 * client's proof): every frame after the handshake carries a MAC under them (link.ts).
 */
export interface SessionKeys { send: Uint8Array; recv: Uint8Array }

function sessionKeys(token: Uint8Array, serverNonce: Uint8Array, hello: Hello, side: 'client' | 'server'): SessionKeys {
  const c2s = mac(token, SESSION_C2S, [serverNonce, hello.nonce, hello.proof]);
  const s2c = mac(token, SESSION_S2C, [serverNonce, hello.nonce, hello.proof]);
  return side === 'client' ? { send: c2s, recv: s2c } : { send: s2c, recv: c2s };
}

/**
 * An empty token would let anyone pass the challenge: refused unless the operator chose
 * --insecure (then the handshake still runs, under an empty key).
 */
function checkToken(token: Uint8Array, insecure: boolean | undefined): void {
  if (token.length === 0 && !insecure)
    throw noTokenError();
}

function mac(token: Uint8Array, label: string, parts: (Uint8Array | string)[]): Uint8Array {
  const h = createHmac('sha256', token);
  h.update(label);
  for (const p of parts) {
    // Length-prefix every part so no two transcripts concatenate to the same bytes.
    const b = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length, 0);
    h.update(len);
    h.update(b);
  }
  return new Uint8Array(h.digest());
}

const hex = (b: Uint8Array | undefined): string => (b ? Buffer.from(b).toString('hex') : '');

const NO_BINDING = new Uint8Array(0);

// `binding`: the TLS session's exported keying material (empty without TLS), so a proof made inside one TLS session fails in another.
function clientProof(token: Uint8Array, serverNonce: Uint8Array, h: Omit<Hello, 't' | 'proof'>, binding: Uint8Array): Uint8Array {
  return mac(token, CLIENT_LABEL, [
    binding, serverNonce, h.nonce, String(h.version), h.role, h.link, h.nodeId, String(h.term), h.epoch === undefined ? '' : String(h.epoch), hex(h.guestDigest),
  ]);
}

function serverProof(token: Uint8Array, serverNonce: Uint8Array, hello: Hello, w: Omit<Welcome, 't' | 'proof'>, binding: Uint8Array): Uint8Array {
  return mac(token, SERVER_LABEL, [binding, serverNonce, hello.nonce, w.nodeId, w.role, String(w.term), String(w.epoch), hello.proof]);
}

function proofMatches(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

const unexpected = (t: string, state: string): ProtocolError =>
  new ProtocolError('FTVM_ERR_UNEXPECTED_MESSAGE', `${t} is not expected while ${state}`);

/** What the server says about itself in the welcome, read at handshake time. */
export interface ServerIdentity { nodeId: string; role: Role; term: number; epoch: number }

export interface ServerHandshakeOptions {
  token: Uint8Array;
  identity: () => ServerIdentity;
  /** Refuses a peer by throwing an FtvmError (e.g. FTVM_ERR_STALE_TERM, a role not served here). */
  accept?: (hello: Hello) => void;
  /** Allows an empty token (the operator's --insecure). */
  insecure?: boolean;
  /** TLS keying material of the session carrying the handshake. */
  binding?: Uint8Array;
  /** For tests only: a fixed nonce. */
  nonce?: Uint8Array;
}

export type HandshakeStep<Done> = { reply?: Message; done?: Done };

export class ServerHandshake {
  private state: 'new' | 'challenged' | 'done' = 'new';
  private readonly nonce: Uint8Array;
  /** Set once the handshake succeeded. */
  keys: SessionKeys | undefined;

  constructor(private readonly opts: ServerHandshakeOptions) {
    checkToken(opts.token, opts.insecure);
    this.nonce = opts.nonce ?? new Uint8Array(randomBytes(NONCE_BYTES));
  }

  start(): Challenge {
    if (this.state !== 'new') throw unexpected('start', this.state);
    this.state = 'challenged';
    return { t: 'challenge', version: PROTOCOL_VERSION, nonce: this.nonce };
  }

  /** Handles the client's hello. Throws a coded error: send `reject`, then close. */
  receive(msg: Message): HandshakeStep<Hello> & { reply: Welcome } {
    if (this.state !== 'challenged' || msg.t !== 'hello') throw unexpected(msg.t, `handshaking (${this.state})`);
    if (msg.version !== PROTOCOL_VERSION) {
      throw new ProtocolError('FTVM_ERR_PROTO_VERSION', `peer speaks protocol version ${msg.version}, this node ${PROTOCOL_VERSION}`);
    }
    if (!proofMatches(msg.proof, clientProof(this.opts.token, this.nonce, msg, this.opts.binding ?? NO_BINDING))) {
      throw new ProtocolError('FTVM_ERR_AUTH_FAILED', `peer ${JSON.stringify(msg.nodeId)} failed to prove the shared token`);
    }
    this.opts.accept?.(msg);
    const me = this.opts.identity();
    this.state = 'done';
    const welcome: Welcome = { t: 'welcome', nodeId: me.nodeId, role: me.role, term: me.term, epoch: me.epoch, proof: new Uint8Array(0) };
    welcome.proof = serverProof(this.opts.token, this.nonce, msg, welcome, this.opts.binding ?? NO_BINDING);
    this.keys = sessionKeys(this.opts.token, this.nonce, msg, 'server');
    return { reply: welcome, done: msg };
  }
}

export interface ClientHello {
  role: Role;
  link: LinkKind;
  nodeId: string;
  term: number;
  epoch?: number;
  guestDigest?: Uint8Array;
}

export interface ClientHandshakeOptions {
  token: Uint8Array;
  hello: ClientHello;
  /** Protocol version to claim (tests of the mismatch path). Default PROTOCOL_VERSION. */
  version?: number;
  /** Allows an empty token (the operator's --insecure). */
  insecure?: boolean;
  /** TLS keying material of the session carrying the handshake (set once the socket is open). */
  binding?: Uint8Array;
  nonce?: Uint8Array;
}

export class ClientHandshake {
  private state: 'new' | 'hello-sent' | 'done' = 'new';
  private sent: Hello | undefined;
  private serverNonce: Uint8Array | undefined;
  /** Set once the handshake succeeded. */
  keys: SessionKeys | undefined;

  private binding: Uint8Array;

  constructor(private readonly opts: ClientHandshakeOptions) {
    checkToken(opts.token, opts.insecure);
    this.binding = opts.binding ?? NO_BINDING;
  }

  /** The TLS session's keying material, known once the socket is open (before the challenge). */
  bind(binding: Uint8Array | undefined): void {
    this.binding = binding ?? NO_BINDING;
  }

  /** Handles challenge, welcome or reject. Throws a coded error (a reject becomes its code). */
  receive(msg: Message): HandshakeStep<Welcome> {
    if (msg.t === 'reject') throw new PeerRefusedError(msg.code, `peer refused the link: ${msg.message}`);
    if (this.state === 'new' && msg.t === 'challenge') {
      if (msg.version !== PROTOCOL_VERSION) {
        throw new ProtocolError('FTVM_ERR_PROTO_VERSION', `peer speaks protocol version ${msg.version}, this node ${PROTOCOL_VERSION}`);
      }
      this.serverNonce = msg.nonce;
      const body: Omit<Hello, 't' | 'proof'> = {
        version: this.opts.version ?? PROTOCOL_VERSION,
        ...this.opts.hello,
        nonce: this.opts.nonce ?? new Uint8Array(randomBytes(NONCE_BYTES)),
      };
      const hello: Hello = { t: 'hello', ...body, proof: clientProof(this.opts.token, msg.nonce, body, this.binding) };
      if (hello.epoch === undefined) delete hello.epoch;
      if (hello.guestDigest === undefined) delete hello.guestDigest;
      this.sent = hello;
      this.state = 'hello-sent';
      return { reply: hello };
    }
    if (this.state === 'hello-sent' && msg.t === 'welcome') {
      const expect = serverProof(this.opts.token, this.serverNonce!, this.sent!, msg, this.binding);
      if (!proofMatches(msg.proof, expect)) {
        throw new ProtocolError('FTVM_ERR_AUTH_FAILED', `server ${JSON.stringify(msg.nodeId)} failed to prove the shared token`);
      }
      this.state = 'done';
      this.keys = sessionKeys(this.opts.token, this.serverNonce!, this.sent!, 'client');
      return { done: msg };
    }
    throw unexpected(msg.t, `handshaking (${this.state})`);
  }
}

/** Wraps anything thrown by an accept hook into a coded error. */
export function asCoded(e: unknown): FtvmError {
  if (e instanceof FtvmError) return e;
  return new ProtocolError('FTVM_ERR_UNEXPECTED_MESSAGE', `handshake refused: ${(e as Error)?.message ?? String(e)}`);
}
