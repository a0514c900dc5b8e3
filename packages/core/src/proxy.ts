import { ByteQueue } from './byte-queue.js';
import { CORE_ERR, CoreOptionError, CoreProtocolError } from './errors.js';
import { optNumber, rejectUnknown } from './options.js';
import type { ConnOffsets, NodeId, StateOffsets } from './types.js';

/**
 * The output-commit proxy and failover witness, as a pure machine.
 *
 * Safety rules it keeps (each one is checked by the tests):
 * 1. Output leaves for a client only when a state containing it is committed: by a
 *    `commit` from the current term's active primary (up to its offsets), or by the
 *    offsets of a promoted node's restored image (which is committed by construction).
 * 2. Every byte of client input stays in the log until a committed state has consumed
 *    it, so a promoted node can be given exactly the input its image has not seen.
 * 3. Only one node is active per term; a message carrying an older term is refused and
 *    its sender fenced. The proxy alone creates terms (failover = term + 1).
 * 4. A node is promoted only if its committed image holds every epoch whose output was
 *    released without an ack (the unacked floor): acked epochs are in the secondary's
 *    image by construction, unacked ones (primary running unprotected) are not.
 */

export type ProxyState = 'idle' | 'active' | 'lost' | 'promoting';

export interface ProxyOptions {
  /** Node ids the proxy has links to (2 in a normal deployment). */
  nodes: NodeId[];
  /** Silence from the active primary after which it is lost, ms. Default 1000. */
  failoverTimeoutMs?: number;
  /** A promoted node must answer with its offsets within this, ms. Default 10000. */
  promoteTimeoutMs?: number;
  /** Total logged (uncommitted) client input, bytes; above it every client is paused. Default 64 MiB. */
  maxInputLogBytes?: number;
  /** Logged input of one connection, bytes; above it that client is paused. Default 8 MiB. */
  maxConnInputLogBytes?: number;
  /** Total held (uncommitted) output, bytes; above it the active node's link is paused. Default 64 MiB. */
  maxHeldOutputBytes?: number;
  /** First connection id handed out. Default 1. */
  firstConnId?: number;
  /** Most client connections at once (a checkpoint lists each). Default 65536. */
  maxConns?: number;
}

/** What a node says when its link comes up. */
export type NodeHello =
  | {
      role: 'primary';
      term: number;
      /** The node's current (live, possibly uncommitted) offsets. A fresh guest: epoch 0, no conns. */
      live: StateOffsets;
    }
  | {
      role: 'secondary';
      term: number;
      /** Epoch of its committed image; 0 = none (cannot be promoted). */
      committedEpoch: number;
      /**
       * Term of the primary whose checkpoints built that image. Only an image of the
       * serving primary's term can be promoted (an unfenced old primary may have synced
       * it with a history the clients never saw). Absent: `term` is used.
       */
      imageTerm?: number;
    };

export interface OutputEvent {
  term: number;
  epoch: number;
  conn: number;
  offset: number;
  bytes: Uint8Array;
}

export interface CommitEvent {
  term: number;
  epoch: number;
  /** true: the secondary acked this epoch; false: committed unprotected (no secondary). */
  acked: boolean;
  offsets: StateOffsets;
}

/**
 * Actions, in the order they must be performed.
 * Ordering rules for the runtime:
 * - `writeClient` of a connection is in stream order; never reorder two of them.
 * - After `activeChanged{node}`, every forward* action for that node goes out on its net
 *   link in action order: the replay of logged input precedes any new input.
 * - `forwardInput` carries the stream offset of its first byte; a node drops bytes it
 *   already holds (a re-adopted live primary may get some twice).
 * - `closeClient` comes after the last `writeClient` of that connection.
 */
export type ProxyAction =
  /** `unprotected`: output of an epoch committed without an ack: no secondary held it when it left. */
  | { type: 'writeClient'; conn: number; bytes: Uint8Array; unprotected?: boolean }
  | { type: 'closeClient'; conn: number }
  | { type: 'pauseClient'; conn: number }
  | { type: 'resumeClient'; conn: number }
  | { type: 'forwardOpen'; node: NodeId; term: number; conn: number }
  | { type: 'forwardInput'; node: NodeId; term: number; conn: number; offset: number; bytes: Uint8Array }
  | { type: 'forwardClose'; node: NodeId; term: number; conn: number; offset: number }
  | { type: 'sendPromote'; node: NodeId; term: number }
  | { type: 'sendFence'; node: NodeId; term: number }
  | { type: 'denyPromote'; node: NodeId; term: number; reason: string }
  /** The active primary's handover request is refused (sent to it as promote_deny); it resumes its guest. */
  | { type: 'denyHandover'; node: NodeId; term: number; reason: string }
  /** A handover finished: `to` serves in `term`, `from` was fenced. */
  | { type: 'handoverDone'; from: NodeId; to: NodeId; term: number }
  /**
   * The node clients are served by changed (undefined: none right now). `resendOutputFrom`
   * lists connections whose output the proxy is missing: the node must resend its
   * retained output of each from that offset (bytes it produced but the proxy never got).
   */
  | { type: 'activeChanged'; node: NodeId | undefined; term: number; reason: string; resendOutputFrom: { conn: number; offset: number }[] }
  /** The proxy has received all output of epochs <= epoch: the node may drop its retained copies. */
  | { type: 'confirmCommit'; node: NodeId; term: number; epoch: number }
  /** The active primary is lost and no node may be promoted (reason says why); loud. */
  | { type: 'failoverBlocked'; reason: string }
  | { type: 'pauseNode'; node: NodeId }
  | { type: 'resumeNode'; node: NodeId }
  /** A message was ignored (old term, not from the active node...), for logs and metrics. */
  | { type: 'refused'; node: NodeId; what: string; reason: string };

interface NodeRec {
  id: NodeId;
  up: boolean;
  role: 'primary' | 'secondary' | 'fenced' | undefined;
  term: number;
  committedEpoch: number;
  imageTerm: number;
  lastHeardMs: number;
  /** Term the node was last told to fence at (avoids a fence per refused message). */
  fencedAt: number;
}

interface ConnRec {
  id: number;
  /** Logged client input [start, end); start = committed inConsumed. */
  log: ByteQueue;
  /** Input offset at which the client closed its side; undefined while open. */
  clientClosedAt: number | undefined;
  /** Output received from the active node, not yet released: [released, received). */
  held: ByteQueue;
  /** Highest output offset known committed (may exceed what was received). */
  committedOut: number;
  /** The committed state says closed: close the client once output reaches committedOut. */
  closing: boolean;
  paused: boolean;
  /** What the current active node has been sent: its open, input up to sentTo, its close. */
  sentOpen: boolean;
  sentTo: number;
  sentClose: boolean;
  /** Last commit that listed this connection. */
  stamp: number;
  /**
   * Its input made the guest fault: input past the rollback point was dropped (never
   * replayed, by any node), later input is dropped; the node closes it in the guest and the
   * commit that says so closes the client.
   */
  aborted: boolean;
}

const MiB = 1024 * 1024;

export class ProxyCore {
  readonly options: Readonly<Required<ProxyOptions>>;
  private _term = 0;
  private _state: ProxyState = 'idle';
  private _active: NodeId | undefined;
  private promotingSinceMs = 0;
  /** Highest epoch released without an ack; a candidate's image must reach it. */
  private unackedFloor = 0;
  /** Epoch ranges [lo, hi] committed without an ack, newest last (the last 64). */
  private unackedRanges: [number, number][] = [];
  private _releasedUnprotectedBytes = 0;
  /** Term of the last primary clients were served by: only its line of images may be promoted. */
  private servedTerm = 0;
  private _committedEpoch = 0;
  /** Last failoverBlocked reason said: said again only when it changes. */
  private blockedReason: string | undefined;
  private readonly nodes = new Map<NodeId, NodeRec>();
  private readonly conns = new Map<number, ConnRec>();
  private nextConnId: number;
  private logBytes = 0;
  private heldBytes = 0;
  private allPaused = false;
  private nodePaused = false;
  /** The node and term whose output `held` queues hold. */
  private heldFrom: { node: NodeId; term: number } | undefined;
  private actions: ProxyAction[] = [];
  private commitStamp = 0;
  /** Ids of live connections possibly newer than the last committed state's maxConnId. */
  private recent: number[] = [];
  /** A state was adopted (a primary served clients through this proxy) at least once. */
  private adoptedOnce = false;
  /**
   * When the first node link of a fresh proxy came up: a restarted proxy whose primary is
   * dead hears no primary hello; failoverTimeoutMs after this it promotes a secondary.
   */
  private idleSinceMs: number | undefined;
  /** That wait is over: a secondary with an image is promoted as soon as one is known. */
  private idleExpired = false;
  /** A handover the active primary asked for, waiting for its target's link and hello. */
  private pendingHandover: { from: NodeId; to: NodeId; epoch: number; sinceMs: number } | undefined;
  /** A handover being promoted: the old primary (fenced once `to` serves) and its last epoch. */
  private handingOver: { from: NodeId; to: NodeId; epoch: number } | undefined;

  constructor(opts: ProxyOptions) {
    const o = opts as unknown as Record<string, unknown>;
    rejectUnknown('proxy', o, ['nodes', 'failoverTimeoutMs', 'promoteTimeoutMs', 'maxInputLogBytes', 'maxConnInputLogBytes', 'maxHeldOutputBytes', 'firstConnId', 'maxConns']);
    if (!Array.isArray(opts?.nodes) || opts.nodes.length === 0 || opts.nodes.some((n) => typeof n !== 'string' || n === '')) {
      throw new CoreOptionError(CORE_ERR.OPTION, 'proxy.nodes must be a non-empty array of node ids');
    }
    if (new Set(opts.nodes).size !== opts.nodes.length) {
      throw new CoreOptionError(CORE_ERR.OPTION, 'proxy.nodes must not repeat a node id');
    }
    this.options = {
      nodes: [...opts.nodes],
      failoverTimeoutMs: optNumber('proxy', o, 'failoverTimeoutMs', 1000, { minExclusive: 0 }),
      promoteTimeoutMs: optNumber('proxy', o, 'promoteTimeoutMs', 10_000, { minExclusive: 0 }),
      maxInputLogBytes: optNumber('proxy', o, 'maxInputLogBytes', 64 * MiB, { min: 1, integer: true }),
      maxConnInputLogBytes: optNumber('proxy', o, 'maxConnInputLogBytes', 8 * MiB, { min: 1, integer: true }),
      maxHeldOutputBytes: optNumber('proxy', o, 'maxHeldOutputBytes', 64 * MiB, { min: 1, integer: true }),
      firstConnId: optNumber('proxy', o, 'firstConnId', 1, { min: 1, integer: true }),
      maxConns: optNumber('proxy', o, 'maxConns', 65536, { min: 1, integer: true }),
    };
    this.nextConnId = this.options.firstConnId;
    for (const id of opts.nodes) {
      this.nodes.set(id, { id, up: false, role: undefined, term: 0, committedEpoch: 0, imageTerm: -1, lastHeardMs: 0, fencedAt: -1 });
    }
  }

  get term(): number {
    return this._term;
  }
  get state(): ProxyState {
    return this._state;
  }
  /** The node serving clients in the current term (undefined while idle or promoting). */
  get active(): NodeId | undefined {
    return this._state === 'active' ? this._active : undefined;
  }
  get committedEpoch(): number {
    return this._committedEpoch;
  }
  get inputLogBytes(): number {
    return this.logBytes;
  }
  get heldOutputBytes(): number {
    return this.heldBytes;
  }
  /**
   * Output bytes released to clients while no secondary held them: of epochs the primary
   * committed unacked (before the first full sync, during one, after the secondary was lost).
   */
  get releasedUnprotectedBytes(): number {
    return this._releasedUnprotectedBytes;
  }
  get connCount(): number {
    return this.conns.size;
  }
  /**
   * Whether clientOpen() may be called: only once a guest state was adopted, so the first
   * id is above every connection id that state knows (a restarted proxy would otherwise hand
   * out ids its predecessor's clients still hold in the guest). Until then the runtime holds
   * new clients unanswered.
   */
  get acceptsClients(): boolean {
    return this.adoptedOnce;
  }

  /** Drains the actions produced since the last call, in order. */
  takeActions(): ProxyAction[] {
    const a = this.actions;
    this.actions = [];
    return a;
  }

  /** When tick() should next be called (ms), if nothing else happens first. */
  nextDeadline(): number | undefined {
    if (this._state === 'active' && this._active !== undefined) {
      const n = this.node(this._active);
      const lost = n.up ? n.lastHeardMs + this.options.failoverTimeoutMs : undefined;
      const h = this.pendingHandover;
      if (h === undefined) return lost;
      const giveUp = h.sinceMs + this.options.promoteTimeoutMs;
      return lost === undefined ? giveUp : Math.min(lost, giveUp);
    }
    if (this._state === 'promoting') return this.promotingSinceMs + this.options.promoteTimeoutMs;
    if (this._state === 'idle' && this.idleSinceMs !== undefined && !this.idleExpired) return this.idleSinceMs + this.options.failoverTimeoutMs;
    return undefined;
  }

  // ---- clients ----

  /** A client connected; returns its connection id (never reused, never known to an older guest state). */
  clientOpen(_nowMs: number): number {
    if (this.conns.size >= this.options.maxConns) {
      throw new CoreProtocolError(CORE_ERR.CONN_LIMIT, `proxy.maxConns (${this.options.maxConns}) connections are open: refuse this client`);
    }
    const id = this.nextConnId++;
    const c: ConnRec = {
      id,
      log: new ByteQueue(0),
      clientClosedAt: undefined,
      held: new ByteQueue(0),
      committedOut: 0,
      closing: false,
      paused: false,
      sentOpen: false,
      sentTo: 0,
      sentClose: false,
      stamp: 0,
      aborted: false,
    };
    this.recent.push(id);
    this.conns.set(id, c);
    if (this.allPaused) {
      c.paused = true;
      this.actions.push({ type: 'pauseClient', conn: id });
    }
    this.pump(c);
    return id;
  }

  /**
   * Bytes from a client: logged, and forwarded at once when a node is active. Bytes for a
   * connection the proxy already finished (the guest closed it) are dropped.
   */
  clientData(conn: number, bytes: Uint8Array, _nowMs: number): void {
    if (this.finished(conn)) return;
    const c = this.conn(conn);
    if (c.aborted) return;
    if (c.clientClosedAt !== undefined) {
      throw new CoreProtocolError(CORE_ERR.ORDER, `clientData on connection ${conn} after its clientClose`);
    }
    if (bytes.length === 0) return;
    // The runtime stops reading on pauseClient; twice the soft limit means it did not.
    if (c.log.size + bytes.length > 2 * this.options.maxConnInputLogBytes || this.logBytes + bytes.length > 2 * this.options.maxInputLogBytes) {
      throw new CoreProtocolError(
        CORE_ERR.INPUT_LOG_FULL,
        `input log of connection ${conn} would exceed twice maxConnInputLogBytes/maxInputLogBytes: the client was not paused`,
      );
    }
    c.log.push(bytes);
    this.logBytes += bytes.length;
    this.pump(c);
    this.flowConn(c);
    this.flowAll();
  }

  /**
   * The client closed its side (EOF). Output already produced still reaches it. A close of
   * a connection the proxy already finished (after its closeClient) is a no-op.
   */
  clientClose(conn: number, _nowMs: number): void {
    if (this.finished(conn)) return;
    const c = this.conn(conn);
    if (c.clientClosedAt !== undefined) return;
    c.clientClosedAt = c.log.end;
    this.pump(c);
  }

  // ---- nodes ----

  /**
   * A node the proxy was not started with (the target of a migration): it takes part like
   * the others from now on (a failover candidate once it holds an image of the serving line).
   */
  addNode(id: NodeId): void {
    if (typeof id !== 'string' || id === '') throw new CoreOptionError(CORE_ERR.OPTION, 'a node id must be a non-empty string');
    if (this.nodes.has(id)) throw new CoreProtocolError(CORE_ERR.ORDER, `node ${id} is known already`);
    this.nodes.set(id, { id, up: false, role: undefined, term: 0, committedEpoch: 0, imageTerm: -1, lastHeardMs: 0, fencedAt: -1 });
  }

  /** Whether `id` is a node this proxy knows (started with, or added). */
  hasNode(id: NodeId): boolean {
    return this.nodes.has(id);
  }

  /**
   * The active primary asks for a planned switchover to `to` (a migration). It holds its
   * vCPU; `to`, its secondary, acked its last epoch `epoch`, which it has committed here: the
   * image of `to` is exactly the state clients were served. `to` is promoted in term + 1 as
   * in a failover (held output released up to its offsets, input past them replayed,
   * connections kept); the sender is fenced once `to` serves. The primary's word stands for
   * the ack, as its `commit(acked)` does; `promoted` checks the image's epoch.
   */
  handover(node: NodeId, req: { term: number; epoch: number; to: NodeId }, nowMs: number): void {
    const deny = (reason: string): void => {
      this.actions.push({ type: 'denyHandover', node, term: this._term, reason });
    };
    if (!this.fromActive(node, req.term, 'handover', nowMs)) return deny(`${node} is not the active primary of term ${req.term} (term ${this._term}, ${this._state})`);
    if (req.to === node) return deny('a node cannot hand over to itself');
    if (!this.nodes.has(req.to)) return deny(`unknown node ${req.to}`);
    if (this.pendingHandover !== undefined) return deny(`a handover to ${this.pendingHandover.to} is pending`);
    if (req.epoch !== this._committedEpoch) return deny(`the last epoch ${req.epoch} is not the committed epoch ${this._committedEpoch}`);
    this.pendingHandover = { from: node, to: req.to, epoch: req.epoch, sinceMs: nowMs };
    this.tryHandover(nowMs);
  }

  nodeUp(node: NodeId, nowMs: number): void {
    const n = this.node(node);
    if (this._state === 'idle') this.idleSinceMs ??= nowMs;
    n.up = true;
    n.lastHeardMs = nowMs;
    n.role = undefined;
    n.committedEpoch = 0;
    n.imageTerm = -1;
    n.fencedAt = -1;
  }

  nodeDown(node: NodeId, nowMs: number): void {
    const n = this.node(node);
    n.up = false;
    if (this._state === 'active' && this._active === node) this.activeLost(`link to ${node} closed`, nowMs);
    else if (this._state === 'promoting' && this._active === node) this.promotionFailed(`link to ${node} closed while promoting`, nowMs);
  }

  nodeHello(node: NodeId, hello: NodeHello, nowMs: number): void {
    const n = this.node(node);
    n.up = true;
    n.lastHeardMs = nowMs;
    n.term = hello.term;
    if (hello.role === 'secondary') {
      n.role = 'secondary';
      n.committedEpoch = hello.committedEpoch;
      n.imageTerm = hello.imageTerm ?? hello.term;
      if (this._active === node && this._state === 'active') {
        // The node we served from now calls itself a secondary: it is not serving any more.
        this.activeLost(`${node} said hello as secondary`, nowMs);
      } else if (this._active === node && this._state === 'promoting') {
        this.promotionFailed(`${node} said hello as secondary while being promoted`, nowMs);
      }
      this.retryFailover(nowMs);
      this.idleFailover(nowMs);
      this.tryHandover(nowMs);
      return;
    }
    n.committedEpoch = 0;
    if (hello.term < this._term) {
      n.role = 'fenced';
      this.fence(n, `hello as primary with term ${hello.term} < ${this._term}`);
      return;
    }
    const other = this._active !== undefined && this._active !== node ? this.nodes.get(this._active) : undefined;
    if (hello.term === this._term && other !== undefined && this._state !== 'idle') {
      // Another node holds this term (serving, lost, or being promoted): a term has one primary.
      n.role = 'fenced';
      this.fence(n, `term ${hello.term} already belongs to ${other.id}`);
      return;
    }
    if (hello.term > this._term && other !== undefined) {
      // Only a proxy that lost its memory sees a newer term; the newest primary wins.
      other.role = 'fenced';
      if (other.up) this.fence(other, `superseded by ${node} in term ${hello.term}`, hello.term);
    }
    this._term = hello.term;
    n.role = 'primary';
    this.adopt(node, hello.live, 'live', `${node} is primary in term ${hello.term}`);
  }

  /** Heartbeat or status from a node (any message refreshes liveness). */
  /** `committedEpoch`/`imageTerm` from a secondary: its image now (reports arrive in order; the latest wins). */
  nodeStatus(node: NodeId, status: { term: number; committedEpoch?: number; imageTerm?: number }, nowMs: number): void {
    const n = this.node(node);
    if (!n.up) return;
    if (status.term < this._term && n.role === 'primary') {
      this.fence(n, `status with term ${status.term} < ${this._term}`);
      return;
    }
    this.heardFromLost(n, status.term, nowMs);
    n.lastHeardMs = nowMs;
    if (status.committedEpoch !== undefined && n.role === 'secondary') {
      n.committedEpoch = status.committedEpoch;
      n.imageTerm = status.imageTerm ?? status.term;
      this.retryFailover(nowMs);
      this.idleFailover(nowMs);
      this.tryHandover(nowMs);
    }
  }

  output(node: NodeId, ev: OutputEvent, nowMs: number): void {
    if (!this.fromActive(node, ev.term, 'output', nowMs)) return;
    const c = this.conns.get(ev.conn);
    if (c === undefined) {
      this.actions.push({ type: 'refused', node, what: 'output', reason: `unknown or finished connection ${ev.conn}` });
      return;
    }
    let { bytes, offset } = ev;
    if (offset > c.held.end) {
      throw new CoreProtocolError(CORE_ERR.STREAM_GAP, `output of connection ${ev.conn} at offset ${offset}, expected ${c.held.end}`);
    }
    if (offset < c.held.end) {
      // A resend overlapping what we hold: keep only the new tail.
      const skip = c.held.end - offset;
      if (skip >= bytes.length) return;
      bytes = bytes.subarray(skip);
      offset = c.held.end;
    }
    // The runtime stops reading the node's link on pauseNode; twice the limit means it did not.
    if (this.heldBytes + bytes.length > 2 * this.options.maxHeldOutputBytes) {
      throw new CoreProtocolError(CORE_ERR.OUTPUT_HELD_FULL, `held output would exceed twice maxHeldOutputBytes (${this.options.maxHeldOutputBytes}): the node link was not paused`);
    }
    c.held.push(bytes, ev.epoch);
    this.heldBytes += bytes.length;
    if (c.committedOut > c.held.start) this.release(c, c.committedOut);
    this.flowNode();
  }

  /**
   * Epoch `ev.epoch` is committed. From the active primary (after the secondary's ack, or
   * unprotected), or straight from the secondary that committed it: a secondary of the
   * current term holds only the active primary's checkpoints, so its commit is the same fact
   * one hop sooner, and the primary's commit of the same epoch that follows only confirms.
   */
  commit(node: NodeId, ev: CommitEvent, nowMs: number): void {
    if (node !== this._active && this.fromSecondaryOfTerm(node, ev, nowMs)) {
      if (ev.epoch > this._committedEpoch) this.advanceCommit(ev);
      // No confirm: the primary's output of this epoch may still be on its way here.
      return;
    }
    if (!this.fromActive(node, ev.term, 'commit', nowMs)) return;
    if (ev.epoch > this._committedEpoch) {
      if (!ev.acked) {
        this.unackedFloor = Math.max(this.unackedFloor, ev.epoch);
        const last = this.unackedRanges[this.unackedRanges.length - 1];
        if (last !== undefined && last[1] === this._committedEpoch) last[1] = ev.epoch;
        else this.unackedRanges.push([this._committedEpoch + 1, ev.epoch]);
        if (this.unackedRanges.length > 64) this.unackedRanges.shift();
      }
      this.advanceCommit(ev);
    }
    // The active node's commit follows its output of that epoch on the same link: all of it
    // is here, so the node may drop its retained copy.
    const c = this.confirmed;
    if (c === undefined || c.node !== node || c.term !== ev.term || ev.epoch > c.epoch) {
      this.confirmed = { node, term: ev.term, epoch: ev.epoch };
      this.actions.push({ type: 'confirmCommit', node, term: ev.term, epoch: ev.epoch });
    }
  }

  /**
   * The active primary's guest faulted and was rolled back to its collected epoch `epoch`,
   * whose offsets are `offsets`; it keeps serving in the same term. Held output past those
   * offsets was produced by the void run: dropped (the restored guest produces it again,
   * maybe different). Connection `conn`, whose event faulted, is aborted: its input past the
   * rollback point is dropped from the log (no node ever replays it) and so is whatever the
   * client sends next; the node closes it in the guest and the commit saying so closes the
   * client. Input is not re-sent: the node replays its own copy.
   */
  rolledBack(node: NodeId, ev: { term: number; epoch: number; conn: number | undefined; offsets: StateOffsets }, nowMs: number): void {
    if (!this.fromActive(node, ev.term, 'rollback', nowMs)) return;
    if (ev.epoch < this._committedEpoch) {
      throw new CoreProtocolError(CORE_ERR.STALE_IMAGE, `rollback to epoch ${ev.epoch}, older than committed epoch ${this._committedEpoch}`);
    }
    const listed = new Map<number, ConnOffsets>(ev.offsets.conns.map((c) => [c.conn, c]));
    for (const c of this.conns.values()) {
      const o = listed.get(c.id);
      if (o !== undefined) this.dropHeld(c, Math.max(o.outProduced, c.held.start));
      else if (c.id > ev.offsets.maxConnId) this.dropHeld(c, c.held.start);
    }
    const bad = ev.conn === undefined ? undefined : this.conns.get(ev.conn);
    if (bad !== undefined && !bad.aborted) {
      const o = listed.get(bad.id);
      const keep = o !== undefined ? o.inConsumed : bad.id > ev.offsets.maxConnId ? 0 : bad.log.end;
      const before = bad.log.size;
      bad.log.truncate(Math.max(keep, bad.log.start));
      this.logBytes -= before - bad.log.size;
      bad.aborted = true;
      bad.clientClosedAt = bad.log.end;
      bad.sentTo = Math.min(bad.sentTo, bad.log.end);
      // The node closes it in the guest itself.
      bad.sentOpen = true;
      bad.sentClose = true;
      this.flowConn(bad);
      this.flowAll();
    }
    this.flowNode();
  }

  /** The last confirmCommit: one per epoch and node, whichever commit of it came first. */
  private confirmed: { node: NodeId; term: number; epoch: number } | undefined;

  private advanceCommit(ev: CommitEvent): void {
    this._committedEpoch = ev.epoch;
    this.applyCommitted(ev.offsets);
    this.flowAll();
    this.flowNode();
  }

  /** An acked commit from the secondary (by its hello) of the active primary's term. */
  private fromSecondaryOfTerm(node: NodeId, ev: CommitEvent, nowMs: number): boolean {
    const n = this.nodes.get(node);
    if (n === undefined || !n.up || n.role !== 'secondary' || !ev.acked) return false;
    if (this._state !== 'active' || ev.term !== this._term) return false;
    n.lastHeardMs = nowMs;
    return true;
  }

  /** A secondary lost its primary and asks to be promoted. Granted only if the proxy lost it too. */
  promoteRequest(node: NodeId, req: { term: number; committedEpoch: number; imageTerm?: number }, nowMs: number): void {
    const n = this.node(node);
    n.lastHeardMs = nowMs;
    if (n.role === 'secondary') {
      n.committedEpoch = req.committedEpoch;
      n.imageTerm = req.imageTerm ?? req.term;
    }
    if (this._state === 'active' && this._active !== node && !this.isLost(this._active!, nowMs)) {
      this.actions.push({ type: 'denyPromote', node, term: this._term, reason: `the proxy still hears ${this._active}` });
      return;
    }
    if (this._state === 'idle') {
      this.idleFailover(nowMs);
      if (!((this._state as ProxyState) === 'promoting' && this._active === node)) {
        this.actions.push({ type: 'denyPromote', node, term: this._term, reason: this.ineligible(n) ?? `no primary heard for ${this.options.failoverTimeoutMs} ms yet` });
      }
      return;
    }
    if (this._state === 'active') this.activeLost(`${node} asked for promotion and ${this._active} is silent`, nowMs);
    else this.retryFailover(nowMs); // the request may carry a newer committed epoch
    if (!(this._state === 'promoting' && this._active === node)) {
      this.actions.push({ type: 'denyPromote', node, term: this._term, reason: this.ineligible(n) ?? `state ${this._state}` });
    }
  }

  /** The promoted node restored its committed image; these are that image's offsets. */
  promoted(node: NodeId, ev: { term: number; offsets: StateOffsets }, nowMs: number): void {
    const late = this._state === 'lost' && this._active === node && ev.term === this._term;
    if (!(this._state === 'promoting' || late) || this._active !== node || ev.term !== this._term) {
      this.actions.push({ type: 'refused', node, what: 'promoted', reason: `not promoting ${node} in term ${ev.term} (term ${this._term}, ${this._state})` });
      return;
    }
    const n = this.node(node);
    n.role = 'primary';
    n.term = ev.term;
    n.lastHeardMs = nowMs;
    if (ev.offsets.epoch < this.unackedFloor) {
      throw new CoreProtocolError(CORE_ERR.STALE_IMAGE, `promoted image epoch ${ev.offsets.epoch} is older than released unacked epoch ${this.unackedFloor}`);
    }
    const h = this.handingOver !== undefined && this.handingOver.to === node ? this.handingOver : undefined;
    if (h !== undefined && ev.offsets.epoch < h.epoch) {
      throw new CoreProtocolError(CORE_ERR.STALE_IMAGE, `handover: promoted image epoch ${ev.offsets.epoch} is older than the last epoch ${h.epoch} of ${h.from}`);
    }
    this._committedEpoch = Math.max(this._committedEpoch, ev.offsets.epoch);
    this.adopt(node, ev.offsets, 'promoted', h !== undefined ? `${node} promoted in term ${ev.term} (handover from ${h.from})` : `${node} promoted in term ${ev.term}`);
    if (h !== undefined) {
      this.handingOver = undefined;
      // The old primary, held since its last epoch, learns it is done from its fence.
      this.fenceHandedOver(h.from);
      this.actions.push({ type: 'handoverDone', from: h.from, to: node, term: ev.term });
    }
  }

  /** The candidate refused `promote` (no image, stale term): give up on it at once. */
  promoteRefused(node: NodeId, ev: { term: number; reason: string }, nowMs: number): void {
    if (this._state !== 'promoting' || this._active !== node || ev.term !== this._term) return;
    this.promotionFailed(`${node} refused promotion in term ${ev.term}: ${ev.reason}`, nowMs);
  }

  /** A snapshot for status pages and metrics. */
  status(): {
    state: ProxyState;
    term: number;
    active: NodeId | undefined;
    committedEpoch: number;
    unackedFloor: number;
    conns: number;
    inputLogBytes: number;
    heldOutputBytes: number;
    nodes: { id: NodeId; up: boolean; role: string | undefined; term: number; committedEpoch: number; imageTerm: number }[];
  } {
    return {
      state: this._state,
      term: this._term,
      active: this.active,
      committedEpoch: this._committedEpoch,
      unackedFloor: this.unackedFloor,
      conns: this.conns.size,
      inputLogBytes: this.logBytes,
      heldOutputBytes: this.heldBytes,
      nodes: [...this.nodes.values()].map((n) => ({ id: n.id, up: n.up, role: n.role, term: n.term, committedEpoch: n.committedEpoch, imageTerm: n.imageTerm })),
    };
  }

  tick(nowMs: number): void {
    const h = this.pendingHandover;
    if (h !== undefined && nowMs >= h.sinceMs + this.options.promoteTimeoutMs) {
      this.pendingHandover = undefined;
      const t = this.node(h.to);
      this.actions.push({
        type: 'denyHandover', node: h.from, term: this._term,
        reason: `${h.to} not ready within ${this.options.promoteTimeoutMs} ms: ${!t.up ? 'no link to it' : this.handoverIneligible(t, h.epoch) ?? 'no hello'}`,
      });
    }
    if (this._state === 'active' && this.isLost(this._active!, nowMs)) {
      this.activeLost(`no message from ${this._active} for ${this.options.failoverTimeoutMs} ms`, nowMs);
    } else if (this._state === 'promoting' && nowMs >= this.promotingSinceMs + this.options.promoteTimeoutMs) {
      this.promotionFailed(`${this._active} did not answer promote within ${this.options.promoteTimeoutMs} ms`, nowMs);
    } else if (this._state === 'lost') {
      this.retryFailover(nowMs);
    } else if (this._state === 'idle') {
      this.idleFailover(nowMs);
    }
  }

  /**
   * A fresh proxy (restarted) that heard no primary within failoverTimeoutMs of its first
   * node link: the primary is dead or unreachable. It promotes the secondary holding the
   * newest image (highest image term, then epoch) in a term above every term it has seen.
   * It cannot know what its predecessor released unprotected (the unacked floor): with
   * `--on-secondary-loss continue` that output may be missing from the image (docs/design.md).
   */
  private idleFailover(nowMs: number): void {
    if (this._state !== 'idle' || this.adoptedOnce || this.idleSinceMs === undefined) return;
    if (nowMs >= this.idleSinceMs + this.options.failoverTimeoutMs) this.idleExpired = true;
    if (!this.idleExpired) return;
    let best: NodeRec | undefined;
    let term = this._term;
    const reasons: string[] = [];
    for (const n of this.nodes.values()) {
      term = Math.max(term, n.term, n.imageTerm);
      if (!n.up || n.role !== 'secondary' || n.committedEpoch < 1) {
        reasons.push(!n.up ? `${n.id} is down` : n.role !== 'secondary' ? `${n.id} is not a secondary` : `${n.id} has no committed image`);
        continue;
      }
      if (best === undefined || n.imageTerm > best.imageTerm || (n.imageTerm === best.imageTerm && n.committedEpoch > best.committedEpoch)) best = n;
    }
    if (best === undefined) {
      const reason = `no primary heard for ${this.options.failoverTimeoutMs} ms; cannot promote: ${reasons.join('; ') || 'no node'}`;
      if (reason !== this.blockedReason) {
        this.blockedReason = reason;
        this.actions.push({ type: 'failoverBlocked', reason });
      }
      return;
    }
    this._term = term + 1;
    this.servedTerm = best.imageTerm;
    this._state = 'promoting';
    this._active = best.id;
    this.promotingSinceMs = nowMs;
    this.actions.push({ type: 'sendPromote', node: best.id, term: this._term });
  }

  // ---- internals ----

  private node(id: NodeId): NodeRec {
    const n = this.nodes.get(id);
    if (n === undefined) throw new CoreProtocolError(CORE_ERR.UNKNOWN_NODE, `unknown node ${id} (known: ${[...this.nodes.keys()].join(', ')})`);
    return n;
  }

  /** An id this proxy handed out whose connection it has since finished. */
  private finished(id: number): boolean {
    return Number.isInteger(id) && id >= this.options.firstConnId && id < this.nextConnId && !this.conns.has(id);
  }

  private conn(id: number): ConnRec {
    const c = this.conns.get(id);
    if (c === undefined) throw new CoreProtocolError(CORE_ERR.UNKNOWN_CONN, `unknown connection ${id}`);
    return c;
  }

  private isLost(id: NodeId, nowMs: number): boolean {
    const n = this.node(id);
    return !n.up || nowMs >= n.lastHeardMs + this.options.failoverTimeoutMs;
  }

  /** Accepts a primary-only message only from the active node of the current term. */
  private fromActive(node: NodeId, term: number, what: string, nowMs: number): boolean {
    const n = this.node(node);
    if (term < this._term) {
      this.fence(n, `${what} with term ${term} < ${this._term}`);
      return false;
    }
    this.heardFromLost(n, term, nowMs);
    if (this._state !== 'active' || this._active !== node || term !== this._term) {
      this.actions.push({ type: 'refused', node, what, reason: `${node} is not the active primary of term ${term}` });
      return false;
    }
    n.lastHeardMs = nowMs;
    return true;
  }

  /**
   * The lost active primary speaks again on the same, never-closed link, and nobody was
   * promoted: it is active again, and gets the input that arrived meanwhile.
   */
  private heardFromLost(n: NodeRec, term: number, nowMs: number): void {
    if (this._state !== 'lost' || this._active !== n.id || term !== this._term || !n.up || n.role !== 'primary') return;
    n.lastHeardMs = nowMs;
    this._state = 'active';
    this.actions.push({ type: 'activeChanged', node: n.id, term, reason: `${n.id} heard again`, resendOutputFrom: [] });
    for (const c of [...this.conns.values()].sort((a, b) => a.id - b.id)) this.pump(c);
  }

  private fence(n: NodeRec, reason: string, term = this._term): void {
    this.actions.push({ type: 'refused', node: n.id, what: 'message', reason });
    if (n.fencedAt >= term || !n.up) return;
    n.fencedAt = term;
    this.actions.push({ type: 'sendFence', node: n.id, term });
  }

  /** Why `t` cannot take a handover of last epoch `epoch` now (undefined: it can). */
  private handoverIneligible(t: NodeRec, epoch: number): string | undefined {
    if (!t.up) return `${t.id} is down`;
    if (t.role !== 'secondary') return `${t.id} is not a secondary`;
    // Its image epoch and line come from its reports, which may lag the ack the primary got
    // for `epoch` (reports are rate-limited): the primary's word stands for them.
    if (t.term > this._term) return `${t.id} is in term ${t.term}, newer than ${this._term}`;
    return undefined;
  }

  /** Starts the pending handover's promotion once its target can take it. */
  private tryHandover(nowMs: number): void {
    const h = this.pendingHandover;
    if (h === undefined) return;
    if (this._state !== 'active' || this._active !== h.from) {
      this.pendingHandover = undefined;
      return;
    }
    const t = this.node(h.to);
    if (this.handoverIneligible(t, h.epoch) !== undefined) return; // waits for its link / hello, or the deadline
    this.pendingHandover = undefined;
    const old = this.node(h.from);
    t.committedEpoch = Math.max(t.committedEpoch, h.epoch);
    t.imageTerm = this.servedTerm;
    this._term += 1;
    // Anything the old primary still sends carries the old term and is refused; it is
    // fenced once the target serves (its fence tells it the handover is done).
    old.role = 'fenced';
    this.handingOver = { from: h.from, to: h.to, epoch: h.epoch };
    this._state = 'promoting';
    this._active = t.id;
    this.promotingSinceMs = nowMs;
    this.actions.push({ type: 'sendPromote', node: t.id, term: this._term });
  }

  private fenceHandedOver(id: NodeId): void {
    const old = this.node(id);
    if (!old.up || old.fencedAt >= this._term) return;
    old.fencedAt = this._term;
    this.actions.push({ type: 'sendFence', node: id, term: this._term });
  }

  private ineligible(n: NodeRec): string | undefined {
    if (!n.up) return `${n.id} is down`;
    if (n.role !== 'secondary') return `${n.id} is not a secondary`;
    if (n.committedEpoch < 1) return `${n.id} has no committed image`;
    if (n.imageTerm !== this.servedTerm) {
      return `${n.id}'s image comes from term ${n.imageTerm}, clients were served by term ${this.servedTerm}`;
    }
    if (n.committedEpoch < this.unackedFloor) {
      return `${n.id}'s image (epoch ${n.committedEpoch}) lacks epoch ${this.unackedFloor}, released unprotected`;
    }
    return undefined;
  }

  private activeLost(reason: string, nowMs: number): void {
    // A pending handover dies with its primary; the target may still win the failover.
    this.pendingHandover = undefined;
    const old = this.node(this._active!);
    this._state = 'lost';
    this.blockedReason = undefined;
    this.actions.push({ type: 'activeChanged', node: undefined, term: this._term, reason, resendOutputFrom: [] });
    if (this.nodePaused) {
      this.nodePaused = false;
      this.actions.push({ type: 'resumeNode', node: old.id });
    }
    this.retryFailover(nowMs);
  }

  private retryFailover(nowMs: number): void {
    if (this._state !== 'lost') return;
    let reasons: string[] = [];
    for (const n of this.nodes.values()) {
      // The lost primary itself is never a 'secondary' unless it came back as one (then it may qualify).
      const why = this.ineligible(n);
      if (why !== undefined) {
        reasons.push(why);
        continue;
      }
      const old = this.node(this._active!);
      this._term += 1;
      if (old.id !== n.id) {
        // Fence the old primary now: anything it still sends carries the old term.
        old.role = 'fenced';
        if (old.up) this.fence(old, `failover to ${n.id}`);
      }
      this._state = 'promoting';
      this._active = n.id;
      this.promotingSinceMs = nowMs;
      this.actions.push({ type: 'sendPromote', node: n.id, term: this._term });
      return;
    }
    if (reasons.length === 0) reasons = ['no other node'];
    const reason = `${this._active} lost; cannot promote: ${reasons.join('; ')}`;
    if (reason !== this.blockedReason) {
      this.blockedReason = reason;
      this.actions.push({ type: 'failoverBlocked', reason });
    }
  }

  /**
   * The candidate did not answer. It is not fenced: nobody else can hold this term, so a
   * late `promoted` (or a hello as primary of this term) is still accepted. Meanwhile
   * another node may be promoted in a newer term, which fences it.
   */
  private promotionFailed(reason: string, nowMs: number): void {
    // Not a usable secondary until it says hello again (or answers late).
    this.node(this._active!).role = undefined;
    if (this.handingOver !== undefined) {
      // The old primary of the handover is in an older term: it is fenced now, as in a failover.
      const from = this.handingOver.from;
      this.handingOver = undefined;
      this.fenceHandedOver(from);
    }
    this._state = 'lost';
    this.blockedReason = reason;
    this.actions.push({ type: 'failoverBlocked', reason });
    this.retryFailover(nowMs);
  }

  /**
   * Serve clients from `node`, whose guest state has offsets `s`:
   * - 'promoted': s is a committed image. Held output up to s.outProduced is released
   *   (its epoch committed even if the old primary never heard the ack), the rest is
   *   discarded; the input log is trimmed to s.inConsumed and the rest replayed.
   * - 'live': s is a running primary's current state (not committed): nothing is
   *   released; input past s.inConsumed is replayed.
   * Either way connections the state does not know (id > s.maxConnId) are replayed
   * from their open, and missing output is asked for again.
   */
  private adopt(node: NodeId, s: StateOffsets, mode: 'promoted' | 'live', reason: string): void {
    const sameSource = this.heldFrom !== undefined && this.heldFrom.node === node && this.heldFrom.term === this._term;
    this._state = 'active';
    this._active = node;
    this.servedTerm = this._term;
    this.heldFrom = { node, term: this._term };
    const listed = new Map<number, ConnOffsets>(s.conns.map((c) => [c.conn, c]));
    const resend: { conn: number; offset: number }[] = [];
    const finished: ConnRec[] = [];
    const ordered = [...this.conns.values()].sort((a, b) => a.id - b.id);
    for (const c of ordered) {
      const o = listed.get(c.id);
      // Unreleased output of another node or term is not this state's: it is replaced below.
      if (mode === 'live' && !sameSource) this.dropHeld(c, c.held.start);
      if (o !== undefined) {
        if (o.inConsumed < c.log.start || o.inConsumed > c.log.end) {
          throw new CoreProtocolError(CORE_ERR.STALE_IMAGE, `connection ${c.id}: state consumed ${o.inConsumed}, proxy log holds [${c.log.start}, ${c.log.end})`);
        }
        if (mode === 'promoted') {
          this.release(c, o.outProduced);
          this.dropHeld(c, o.outProduced);
          this.trimInput(c, o.inConsumed);
        } else if (o.outProduced < c.held.end) {
          // Held output the live state did not produce: a run its guest fault voided (the
          // rollback message was lost with the link).
          this.dropHeld(c, Math.max(o.outProduced, c.held.start));
        }
        if (o.outProduced > c.held.end) resend.push({ conn: c.id, offset: c.held.end });
        c.sentOpen = true;
        c.sentTo = o.inConsumed;
        c.sentClose = o.closed;
        if (o.closed && mode === 'promoted') finished.push(c);
      } else if (c.id <= s.maxConnId) {
        // Known to the state but not listed: closed in it. Output of epochs <= s.epoch is committed.
        c.sentOpen = true;
        c.sentTo = c.log.end;
        c.sentClose = true;
        if (mode === 'promoted') {
          for (const ch of c.held.takeTaggedUpTo(s.epoch)) this.write(c, ch.bytes, ch.tag);
          this.dropHeld(c, c.held.start);
          c.committedOut = Math.max(c.committedOut, c.held.start);
          finished.push(c);
        }
      } else {
        if (c.held.start > 0 || c.log.start > 0) {
          throw new CoreProtocolError(CORE_ERR.STALE_IMAGE, `connection ${c.id} has committed traffic but the state does not know it (maxConnId ${s.maxConnId})`);
        }
        this.dropHeld(c, 0);
        c.sentOpen = false;
        c.sentTo = 0;
        c.sentClose = false;
      }
    }
    this.nextConnId = Math.max(this.nextConnId, s.maxConnId + 1);
    for (const c of finished) this.finish(c);
    this.actions.push({ type: 'activeChanged', node, term: this._term, reason, resendOutputFrom: resend });
    if (!this.adoptedOnce) {
      this.adoptedOnce = true;
      // Open connections the state holds that this proxy never had: a previous proxy's clients,
      // gone with it. Close them in the guest so it frees them (their ids are never reused).
      for (const o of s.conns) {
        if (!o.closed && !this.conns.has(o.conn)) this.actions.push({ type: 'forwardClose', node, term: this._term, conn: o.conn, offset: o.inConsumed });
      }
    }
    // The replay: in connection order, everything the state has not seen, before any new input.
    for (const c of ordered) if (this.conns.has(c.id)) this.pump(c);
    this.flowAll();
    this.flowNode();
  }

  /** Forwards to the active node whatever of this connection it has not been sent yet. */
  private pump(c: ConnRec): void {
    if (this._state !== 'active') return;
    const node = this._active!;
    const term = this._term;
    if (!c.sentOpen) {
      c.sentOpen = true;
      this.actions.push({ type: 'forwardOpen', node, term, conn: c.id });
    }
    if (c.sentClose) return;
    if (c.sentTo < c.log.end) {
      for (const ch of c.log.peekFrom(c.sentTo)) {
        this.actions.push({ type: 'forwardInput', node, term, conn: c.id, offset: ch.offset, bytes: ch.bytes });
      }
      c.sentTo = c.log.end;
    }
    if (c.clientClosedAt !== undefined) {
      c.sentClose = true;
      this.actions.push({ type: 'forwardClose', node, term, conn: c.id, offset: c.clientClosedAt });
    }
  }

  /** A commit from the active primary: release and trim by its offsets. O(listed) unless a close went unlisted. */
  private applyCommitted(s: StateOffsets): void {
    let listedLive = 0;
    const stamp = ++this.commitStamp;
    for (const o of s.conns) {
      const c = this.conns.get(o.conn);
      if (c === undefined) continue;
      c.stamp = stamp;
      this.release(c, o.outProduced);
      this.trimInput(c, o.inConsumed);
      if (o.closed) this.finish(c);
      if (this.conns.has(c.id)) listedLive++;
    }
    // Connections the state knows (id <= maxConnId) but does not list were closed in it.
    // Skip the scan when every live connection is listed or newer than the state.
    this.recent = this.recent.filter((id) => id > s.maxConnId && this.conns.has(id));
    if (listedLive + this.recent.length >= this.conns.size) return;
    for (const c of [...this.conns.values()]) {
      if (c.stamp === stamp || c.id > s.maxConnId) continue;
      for (const ch of c.held.takeTaggedUpTo(s.epoch)) this.write(c, ch.bytes, ch.tag);
      c.committedOut = Math.max(c.committedOut, c.held.start);
      this.finish(c);
    }
  }

  /** Output below `upTo` is committed: write what we hold of it, remember the rest is owed. */
  private release(c: ConnRec, upTo: number): void {
    if (upTo < c.held.start) {
      throw new CoreProtocolError(CORE_ERR.STALE_IMAGE, `connection ${c.id}: committed output ${upTo} is behind released ${c.held.start}`);
    }
    c.committedOut = Math.max(c.committedOut, upTo);
    for (const ch of c.held.takeUpTo(c.committedOut)) this.write(c, ch.bytes, ch.tag);
    if (c.closing) this.finish(c);
  }

  private write(c: ConnRec, bytes: Uint8Array, epoch: number): void {
    this.heldBytes -= bytes.length;
    if (this.isUnacked(epoch)) {
      this._releasedUnprotectedBytes += bytes.length;
      this.actions.push({ type: 'writeClient', conn: c.id, bytes, unprotected: true });
    } else this.actions.push({ type: 'writeClient', conn: c.id, bytes });
  }

  /** Whether `epoch` of the serving line was committed without an ack (no secondary held it). */
  private isUnacked(epoch: number): boolean {
    for (let i = this.unackedRanges.length - 1; i >= 0; i--) {
      const [lo, hi] = this.unackedRanges[i]!;
      if (epoch >= lo && epoch <= hi) return true;
      if (epoch > hi) return false;
    }
    return false;
  }

  private dropHeld(c: ConnRec, from: number): void {
    const before = c.held.size;
    c.held.truncate(from);
    this.heldBytes -= before - c.held.size;
  }

  private trimInput(c: ConnRec, inConsumed: number): void {
    if (inConsumed > c.log.end) {
      throw new CoreProtocolError(CORE_ERR.STREAM_GAP, `connection ${c.id}: guest consumed ${inConsumed} input bytes, proxy received ${c.log.end}`);
    }
    if (inConsumed <= c.log.start) return;
    const before = c.log.size;
    c.log.takeUpTo(inConsumed);
    this.logBytes -= before - c.log.size;
    this.flowConn(c);
  }

  /** The committed state closed the connection: close the client once its owed output is written. */
  private finish(c: ConnRec): void {
    if (!this.conns.has(c.id)) return;
    c.closing = true;
    if (c.held.start < c.committedOut) return; // output still owed (resend pending)
    this.dropHeld(c, c.held.start);
    this.logBytes -= c.log.size;
    this.conns.delete(c.id);
    this.actions.push({ type: 'closeClient', conn: c.id });
  }

  private flowConn(c: ConnRec): void {
    if (this.allPaused || !this.conns.has(c.id)) return;
    const lim = this.options.maxConnInputLogBytes;
    if (!c.paused && c.log.size > lim) {
      c.paused = true;
      this.actions.push({ type: 'pauseClient', conn: c.id });
    } else if (c.paused && c.log.size <= lim / 2) {
      c.paused = false;
      this.actions.push({ type: 'resumeClient', conn: c.id });
    }
  }

  private flowAll(): void {
    const lim = this.options.maxInputLogBytes;
    if (!this.allPaused && this.logBytes > lim) {
      this.allPaused = true;
      for (const c of this.conns.values()) {
        if (!c.paused) {
          c.paused = true;
          this.actions.push({ type: 'pauseClient', conn: c.id });
        }
      }
    } else if (this.allPaused && this.logBytes <= lim / 2) {
      this.allPaused = false;
      for (const c of this.conns.values()) {
        if (c.paused && c.log.size <= this.options.maxConnInputLogBytes / 2) {
          c.paused = false;
          this.actions.push({ type: 'resumeClient', conn: c.id });
        }
      }
    }
  }

  private flowNode(): void {
    if (this._state !== 'active') return;
    const lim = this.options.maxHeldOutputBytes;
    if (!this.nodePaused && this.heldBytes > lim) {
      this.nodePaused = true;
      this.actions.push({ type: 'pauseNode', node: this._active! });
    } else if (this.nodePaused && this.heldBytes <= lim / 2) {
      this.nodePaused = false;
      this.actions.push({ type: 'resumeNode', node: this._active! });
    }
  }
}
