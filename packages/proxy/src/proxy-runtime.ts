import net from 'node:net';
import { isFtvmError, type FtvmError } from '@ftvm/guest-abi';
import { ProxyCore, type NodeId, type ProxyAction, type ProxyState } from '@ftvm/core';
import { FtvmEvents, type DropReason } from '@ftvm/metrics';
import type { Link, Message } from '@ftvm/protocol';
import { PROXY_ERR, ProxyError } from './errors.js';
import { startProxyMetrics, type ProxyMetricsServer } from './metrics-server.js';
import { NodeLink } from './node-link.js';
import { resolveOptions, type ProxyLog, type ProxyRuntimeOptions, type ResolvedOptions } from './options.js';
import { messageForAction, translateNodeMessage, type NodeEvent } from './translate.js';

/** Most output arrivals remembered per connection for the release-delay metric. */
const MAX_ARRIVALS = 1024;
/** Warnings of one kind (refused, client refused) logged per window before they are summarised. */
const WARN_BURST = 10;
const WARN_WINDOW_MS = 1000;

interface ClientRec {
  conn: number;
  socket: net.Socket;
  /** The committed state closed it: the proxy ended its side and forgets it. */
  finished: boolean;
  /** The client's side ended (EOF, reset, or dropped by us); the core was told. */
  clientClosed: boolean;
  /** Output arrivals from the active node: stream end offset (bytes) and arrival time (ms). */
  arrivals: { end: number; at: number }[];
  arrivedTo: number;
  /** Output bytes written to the client so far (= the stream offset released). */
  written: number;
  /** The core asked to stop reading this client. */
  paused: boolean;
  /**
   * Input read from the socket and not yet given to the core: the rest of a chunk that
   * arrived as the core paused the client. At most one socket read (paused sockets
   * emit no data), fed again on resumeClient.
   */
  pending: Buffer[];
  /** Writes of this turn are corked and leave in one write on the next tick (a commit releases several outputs). */
  corked: boolean;
}

/** Longest a confirm waits to be batched with later ones, ms (see queueConfirm). */
const CONFIRM_BATCH_MS = 20;

export interface ProxyNodeStatus {
  id: NodeId;
  url: string;
  up: boolean;
  /** Role in the node's last status ('primary', 'secondary', ...); undefined before one. */
  role: string | undefined;
  /** Links established to it so far. */
  connects: number;
}

export interface ProxyStats {
  state: ProxyState;
  term: number;
  active: NodeId | undefined;
  committedEpoch: number;
  /** Client sockets currently open. */
  clients: number;
  inputLogBytes: number;
  heldOutputBytes: number;
  failovers: number;
  /** Duration of the last failover (active primary lost -> new node active), ms; undefined before one. */
  lastFailoverMs: number | undefined;
  /** Planned switchovers (migrations) completed. */
  handovers: number;
  /** Client-visible pause of the last handover (old primary held its guest -> new node serving), ms. */
  lastHandoverMs: number | undefined;
  /** Messages the core refused (old term, not from the active node, ...). */
  refused: number;
  failoverBlocked: number;
  /** Node links the proxy closed for a bad message (coded close). */
  badLinks: number;
  /** Client connections refused at maxClients, or dropped as slow readers. */
  clientsRefused: number;
  clientsDropped: number;
  /** Output bytes for clients that had already gone. */
  outputDroppedBytes: number;
  inputReplayedBytes: number;
  nodes: ProxyNodeStatus[];
}

const NOOP_LOG: ProxyLog = { error() {}, warn() {}, info() {}, debug() {} };

/**
 * The output-commit proxy process: owns the client TCP connections and one net link per
 * node, and drives a ProxyCore (events in, actions performed in order, one timer at
 * nextDeadline()). Time is `performance.now()` (monotonic ms).
 *
 * Invariant: every core event is followed by `drain()` before control returns to the
 * event loop, so actions are performed in the order the core produced them.
 */
export class ProxyRuntime {
  readonly options: ResolvedOptions;
  /** Metrics events (see @ftvm/metrics FtvmEventMap). */
  readonly events: FtvmEvents;
  private readonly core: ProxyCore;
  private readonly log: ProxyLog;
  private readonly links = new Map<NodeId, NodeLink>();
  private readonly roles = new Map<NodeId, string>();
  private readonly imageTerms = new Map<NodeId, number>();
  private readonly clients = new Map<number, ClientRec>();
  private readonly sockets = new Set<net.Socket>();
  private server: net.Server | undefined;
  private metrics: ProxyMetricsServer | undefined;
  private phase: 'new' | 'starting' | 'running' | 'closed' = 'new';
  private timer: NodeJS.Timeout | undefined;
  private timerFor = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  private draining = false;
  private readonly resumed: ClientRec[] = [];
  private readonly resumedNodes: NodeId[] = [];
  private readonly confirms = new Map<NodeId, { term: number; epoch: number }>();
  private confirmTimer: NodeJS.Timeout | undefined;
  /** Largest piece of client input given to the core at once, bytes. */
  private readonly pieceBytes: number;
  private replaying = false;
  private lost: { atMs: number; term: number } | undefined;
  /** A handover in progress: old and new node, and when the old one held its guest (ms, this clock). */
  private handover: { from: NodeId; to: NodeId; startMs: number } | undefined;
  private lastTerm = -1;
  private lastHeld = -1;
  private holdingConns = 0;
  private warnWindow = { startMs: 0, count: 0, suppressed: 0 };
  private readonly counts = {
    failovers: 0, lastFailoverMs: undefined as number | undefined, handovers: 0, lastHandoverMs: undefined as number | undefined, refused: 0, failoverBlocked: 0, badLinks: 0,
    clientsRefused: 0, clientsDropped: 0, outputDroppedBytes: 0, inputReplayedBytes: 0,
  };

  constructor(opts: ProxyRuntimeOptions) {
    this.options = resolveOptions(opts);
    this.events = this.options.events ?? new FtvmEvents({ name: 'proxy' });
    this.log = this.options.log ?? NOOP_LOG;
    const o = this.options;
    this.pieceBytes = Math.max(1, Math.floor(Math.min(o.maxConnInputLogBytes, o.maxInputLogBytes) / 2));
    this.core = new ProxyCore({
      nodes: o.nodeIds,
      failoverTimeoutMs: o.failoverTimeoutMs,
      promoteTimeoutMs: o.promoteTimeoutMs,
      maxInputLogBytes: o.maxInputLogBytes,
      maxConnInputLogBytes: o.maxConnInputLogBytes,
      maxHeldOutputBytes: o.maxHeldOutputBytes,
      maxConns: o.maxClients,
    });
    o.nodeIds.forEach((id, i) => this.addLink(id, o.nodes[i]!));
  }

  /** A net link to a node, kept up (reconnecting) for as long as the proxy runs. */
  private addLink(id: NodeId, url: string): NodeLink {
    const o = this.options;
    const link = new NodeLink({
      id,
      url,
      reconnectMinMs: o.reconnectMinMs,
      reconnectMaxMs: o.reconnectMaxMs,
      maxPauseMs: Math.max(1, Math.floor(o.failoverTimeoutMs / 2)),
      connectOptions: () => ({
        token: o.token,
        insecure: o.insecure,
        tls: o.tls,
        role: 'proxy',
        link: 'net',
        nodeId: o.proxyId,
        term: this.core.term,
        timeoutMs: o.connectTimeoutMs,
        limits: o.limits,
        maxSendBufferedBytes: o.maxLinkBufferedBytes,
      }),
    });
    link.on('up', (l) => this.onNodeUp(id, l));
    link.on('down', (code, reason) => this.onNodeDown(id, code, reason));
    link.on('message', (msg, payload) => this.onNodeMessage(id, msg, payload));
    link.on('pauseExpired', (ms) =>
      this.log.warn(`node ${id}: held output stayed over maxHeldOutputBytes for ${Math.round(ms)} ms; reading the link again so its commits are not stuck behind it`, {
        heldBytes: this.core.heldOutputBytes,
      }),
    );
    link.on('connectFailed', (err, streak) => {
      // First failure of a streak loud, then one line in 20: a node may be down for hours.
      const level = streak === 1 || streak % 20 === 0 ? 'warn' : 'debug';
      this.log[level](`cannot reach node ${id}`, { url: link.url, code: err.code, error: err.message, attempts: streak });
    });
    this.links.set(id, link);
    return link;
  }

  /**
   * The node at `url`: one the proxy was started with, or one added for a handover (named
   * after the last: c, d, ...), dialed from now on.
   */
  private nodeFor(url: string): NodeId {
    for (const l of this.links.values()) if (l.url === url) return l.id;
    let id = '';
    for (let i = this.links.size; id === '' || this.links.has(id); i++) id = i < 26 ? String.fromCharCode(97 + i) : `n${i}`;
    this.core.addNode(id);
    const link = this.addLink(id, url);
    this.log.info(`node ${id} added for a handover`, { url });
    if (this.phase === 'running') link.start();
    return id;
  }

  /** Listens for clients, starts the node links; resolves with the client port. */
  async start(): Promise<number> {
    if (this.phase !== 'new') throw new ProxyError(PROXY_ERR.STATE, `start() called while ${this.phase}`);
    this.phase = 'starting';
    const o = this.options;
    if (o.metricsPort !== undefined) this.metrics = await startProxyMetrics(this.events, o.metricsPort, o.metricsHost ?? '127.0.0.1', o.statusPeers, o.insecure);
    this.events.emit('role', { role: 'proxy', term: this.core.term });
    this.events.emit('ready', { ready: false, reason: 'no active node yet' });
    this.events.emit('clients', { connected: 0 });
    // allowHalfOpen: a client's EOF must not end our side; its committed replies still go out.
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.onClient(s));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(o.port, o.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      this.phase = 'closed';
      await this.metrics?.close();
      throw new ProxyError(PROXY_ERR.LISTEN, `cannot listen for clients on ${o.host}:${o.port}: ${(e as Error).message}`);
    }
    server.on('error', (e) => this.log.error('client listener error', { error: e.message }));
    this.server = server;
    this.phase = 'running';
    for (const l of this.links.values()) l.start();
    this.heartbeat = setInterval(() => this.sendHeartbeats(), o.heartbeatIntervalMs);
    const port = (server.address() as net.AddressInfo).port;
    this.log.info('proxy started', { listen: `${o.host}:${port}`, nodes: o.nodeIds.map((id, i) => `${id}=${o.nodes[i]}`).join(','), failoverTimeoutMs: o.failoverTimeoutMs });
    return port;
  }

  /** Client port (after start). */
  get port(): number {
    return (this.server?.address() as net.AddressInfo | null)?.port ?? 0;
  }

  /** Metrics server port, when one runs. */
  get metricsPort(): number | undefined {
    return this.metrics?.port;
  }

  get term(): number {
    return this.core.term;
  }

  get active(): NodeId | undefined {
    return this.core.active;
  }

  get state(): ProxyState {
    return this.core.state;
  }

  stats(): ProxyStats {
    return {
      state: this.core.state,
      term: this.core.term,
      active: this.core.active,
      committedEpoch: this.core.committedEpoch,
      clients: this.sockets.size,
      inputLogBytes: this.core.inputLogBytes,
      heldOutputBytes: this.core.heldOutputBytes,
      ...this.counts,
      nodes: [...this.links.values()].map((l) => ({ id: l.id, url: l.url, up: l.up, role: this.roles.get(l.id), connects: l.connects })),
    };
  }

  /** Stops listening, closes node links (4000) and client sockets. Idempotent. */
  async close(): Promise<void> {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    clearTimeout(this.timer);
    clearInterval(this.heartbeat);
    clearTimeout(this.confirmTimer);
    for (const l of this.links.values()) l.close();
    for (const s of this.sockets) s.destroy();
    for (const s of this.waiting.splice(0)) s.destroy();
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await this.metrics?.close();
    this.log.info('proxy stopped');
  }

  // ---- clients ----

  /** Clients accepted before any guest state was adopted (see ProxyCore.acceptsClients). */
  private waiting: net.Socket[] = [];

  private onClient(socket: net.Socket, held = false): void {
    if (!held) socket.on('error', (e) => this.log.debug('client socket error', { error: e.message }));
    if (this.phase !== 'running') {
      socket.destroy();
      return;
    }
    // Connections the core still tracks (including ones waiting for the guest's close) count.
    if (this.core.connCount + this.waiting.length >= this.options.maxClients) {
      this.counts.clientsRefused++;
      this.warnLimited(`refusing a client: ${this.core.connCount} connections open (maxClients ${this.options.maxClients})`);
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    if (!this.core.acceptsClients) {
      // No guest state adopted yet (a proxy that just started): its connection ids are not known,
      // so ids handed out now could be ones a previous proxy's clients hold in the guest. The
      // client waits, unread, until a node is active.
      socket.pause();
      this.waiting.push(socket);
      socket.once('close', () => {
        const i = this.waiting.indexOf(socket);
        if (i >= 0) this.waiting.splice(i, 1);
      });
      return;
    }
    let conn: number;
    try {
      conn = this.core.clientOpen(performance.now());
    } catch (e) {
      this.counts.clientsRefused++;
      this.warnLimited(`refusing a client: ${errFields(e).error as string}`);
      socket.destroy();
      return;
    }
    const rec: ClientRec = { conn, socket, finished: false, clientClosed: false, arrivals: [], arrivedTo: 0, written: 0, paused: false, pending: [], corked: false };
    this.clients.set(conn, rec);
    this.sockets.add(socket);
    socket.on('data', (d: Buffer) => this.onClientData(rec, d));
    socket.on('end', () => this.onClientEnd(rec));
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.events.emit('clients', { connected: this.sockets.size });
      // A reset client: input it sent but we held back is dropped with it.
      rec.pending = [];
      this.onClientEnd(rec);
    });
    this.events.emit('clients', { connected: this.sockets.size });
    if (held) socket.resume();
    this.drain();
  }

  private onClientData(rec: ClientRec, d: Buffer): void {
    if (rec.finished || rec.clientClosed) return;
    // Pieces of at most half a log limit: the core's hard limit is twice the soft one,
    // so a piece given while under the soft limit always fits.
    for (let at = 0; at < d.length; at += this.pieceBytes) rec.pending.push(d.subarray(at, at + this.pieceBytes));
    this.feed(rec);
  }

  /** Gives pending input to the core until it is all given or the core pauses the client. */
  private feed(rec: ClientRec): void {
    while (rec.pending.length > 0 && !rec.paused && !rec.finished && !rec.clientClosed) {
      const piece = rec.pending.shift()!;
      try {
        this.core.clientData(rec.conn, piece, performance.now());
      } catch (e) {
        // A contract violation (cannot happen with pieces): drop that client, not the proxy.
        this.log.error('client input refused; dropping the client', { conn: rec.conn, ...errFields(e) });
        this.drain();
        this.dropClient(rec);
        return;
      }
      this.drain();
    }
    if (!rec.paused && rec.pending.length === 0 && !rec.socket.destroyed) rec.socket.resume();
  }

  private onClientEnd(rec: ClientRec): void {
    if (rec.finished || rec.clientClosed) return;
    rec.clientClosed = true;
    this.core.clientClose(rec.conn, performance.now());
    this.drain();
  }

  /** The client cannot be served any more (slow reader, refused input): its side is closed. */
  private dropClient(rec: ClientRec, reason?: DropReason): void {
    this.counts.clientsDropped++;
    if (reason) this.events.emit('clientDropped', { reason });
    rec.socket.destroy();
    this.onClientEnd(rec);
  }

  // ---- nodes ----

  private onNodeUp(id: NodeId, link: Link): void {
    const peer = link.peer;
    this.log.info(`link to node ${id} up`, { url: this.links.get(id)!.url, nodeId: peer.nodeId, role: peer.role, term: peer.term });
    this.events.emit('link', { peer: this.roles.get(id) === 'primary' ? 'primary' : 'secondary', up: true });
    this.core.nodeUp(id, performance.now());
    this.drain();
  }

  private onNodeDown(id: NodeId, code: number, reason: string): void {
    const normal = code === 4000 || code === 1000 || code === 1001;
    this.log[normal ? 'info' : 'warn'](`link to node ${id} closed`, { code, reason });
    this.events.emit('link', { peer: this.roles.get(id) === 'primary' ? 'primary' : 'secondary', up: false });
    this.core.nodeDown(id, performance.now());
    this.drain();
  }

  private onNodeMessage(id: NodeId, msg: Message, payload: Uint8Array): void {
    const link = this.links.get(id)!;
    let ev: NodeEvent;
    try {
      ev = translateNodeMessage(msg, payload);
    } catch (e) {
      this.badLink(link, asCoded(e));
      return;
    }
    if (msg.t === 'status') this.roles.set(id, msg.role);
    const now = performance.now();
    try {
      this.apply(id, ev, now);
    } catch (e) {
      // The core refused the event as a contract violation (a stream gap, an impossible
      // image): perform what it decided before the throw, then drop this link only.
      this.drain();
      this.badLink(link, asCoded(e));
      return;
    }
    this.drain();
  }

  private apply(id: NodeId, ev: NodeEvent, now: number): void {
    const core = this.core;
    switch (ev.kind) {
      case 'hello':
        // Heartbeats carry no imageTerm: the one from the last status stands for them.
        if (ev.hello.role === 'secondary' && ev.hello.imageTerm !== undefined) this.imageTerms.set(id, ev.hello.imageTerm);
        else this.imageTerms.delete(id);
        core.nodeHello(id, ev.hello, now);
        return;
      case 'status':
        core.nodeStatus(id, { term: ev.term, committedEpoch: ev.committedEpoch, imageTerm: this.imageTerms.get(id) }, now);
        return;
      case 'output':
        if (core.active === id && ev.ev.term === core.term) this.noteArrival(ev.ev.conn, ev.ev.offset + ev.ev.bytes.length, now);
        core.output(id, ev.ev, now);
        return;
      case 'rolledBack':
        this.log.warn(`node ${id}: guest fault ${ev.code} rolled back to epoch ${ev.epoch}${ev.conn !== undefined ? `; connection ${ev.conn} closed, its uncommitted input dropped` : ''}`, { code: ev.code, term: ev.term });
        core.rolledBack(id, { term: ev.term, epoch: ev.epoch, conn: ev.conn, offsets: ev.offsets }, now);
        return;
      case 'commit': {
        // From the active primary, or the secondary that committed the epoch (one hop sooner).
        const before = core.committedEpoch;
        core.commit(id, ev.ev, now);
        if (core.committedEpoch > before) this.events.emit('committed', { epoch: core.committedEpoch, source: core.active === id ? 'primary' : 'secondary' });
        return;
      }
      case 'promoteRequest':
        this.log.info(`node ${id} asks for promotion`, { term: ev.term, committedEpoch: ev.committedEpoch });
        core.promoteRequest(id, { term: ev.term, committedEpoch: ev.committedEpoch, imageTerm: this.imageTerms.get(id) }, now);
        return;
      case 'promoteRefused':
        this.log.warn(`node ${id} refused promotion in term ${ev.term}: ${ev.reason}`);
        core.promoteRefused(id, { term: ev.term, reason: ev.reason }, now);
        return;
      case 'promoted':
        core.promoted(id, { term: ev.term, offsets: ev.offsets }, now);
        return;
      case 'handover': {
        if (core.active !== id || ev.term !== core.term) {
          // Only the serving primary may move the guest (the core refuses, and fences an old term).
          core.handover(id, { term: ev.term, epoch: ev.epoch, to: ev.to }, now);
          return;
        }
        const to = this.nodeFor(ev.to);
        if (!ev.ready) {
          this.log.info(`node ${id} prepares a handover to ${to}`, { url: ev.to });
          return;
        }
        this.log.info(`node ${id} hands over to ${to}: its guest is held`, { url: ev.to, epoch: ev.epoch, heldMs: ev.heldMs });
        this.handover = { from: id, to, startMs: now - ev.heldMs };
        core.handover(id, { term: ev.term, epoch: ev.epoch, to }, now);
        return;
      }
      case 'ignore':
        this.log.debug(`node ${id}: ${ev.why}`);
        return;
    }
  }

  private badLink(link: NodeLink, err: FtvmError): void {
    this.counts.badLinks++;
    this.log.warn(`closing link to node ${link.id}: bad message`, { code: err.code, error: err.message });
    link.fail(err);
  }

  private sendHeartbeats(): void {
    const msg: Message = { t: 'heartbeat', term: this.core.term, epoch: 0, sentAtMs: Date.now() };
    for (const l of this.links.values()) if (l.up) l.send(msg);
  }

  // ---- actions ----

  /** Performs the core's actions in order until none is left, then re-arms the timer. */
  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      for (;;) {
        const actions = this.core.takeActions();
        if (actions.length === 0) break;
        this.replaying = false;
        for (const a of actions) this.perform(a);
      }
    } finally {
      this.draining = false;
      this.replaying = false;
    }
    this.arm();
    this.levels();
    if (this.waiting.length > 0 && this.core.acceptsClients) for (const s of this.waiting.splice(0)) if (!s.destroyed) this.onClient(s, true);
    for (const id of this.resumedNodes.splice(0)) this.links.get(id)!.resume();
    for (const rec of this.resumed.splice(0)) this.feed(rec);
  }

  private perform(a: ProxyAction): void {
    if (a.type === 'confirmCommit') {
      this.queueConfirm(a.node, a.term, a.epoch);
      return;
    }
    const out = messageForAction(a);
    if (out !== undefined) {
      const sent = this.links.get(out.node)!.send(out.msg, out.payload);
      if (!sent) this.log.debug(`dropped ${out.msg.t} for node ${out.node}: link down`);
      else if (a.type === 'forwardInput' && this.replaying) {
        this.counts.inputReplayedBytes += a.bytes.length;
        this.events.emit('inputReplayed', { bytes: a.bytes.length });
      }
    }
    switch (a.type) {
      case 'writeClient':
        this.writeClient(a.conn, a.bytes, a.unprotected === true);
        return;
      case 'closeClient': {
        const rec = this.clients.get(a.conn);
        if (rec === undefined) return;
        rec.finished = true;
        this.clients.delete(a.conn);
        if (rec.arrivedTo > rec.written) this.holdingConns--;
        if (!rec.socket.destroyed) {
          rec.socket.end();
          // A client that never closes its side is cut after clientLingerMs.
          const linger = setTimeout(() => rec.socket.destroy(), this.options.clientLingerMs).unref();
          rec.socket.once('close', () => clearTimeout(linger));
        }
        return;
      }
      case 'pauseClient': {
        const rec = this.clients.get(a.conn);
        if (rec === undefined) return;
        rec.paused = true;
        rec.socket.pause();
        return;
      }
      case 'resumeClient': {
        const rec = this.clients.get(a.conn);
        if (rec === undefined) return;
        rec.paused = false;
        // Fed after this batch of actions: the core's remaining actions come first.
        this.resumed.push(rec);
        return;
      }
      case 'pauseNode':
        this.log.debug(`held output over its limit: pausing node ${a.node}`, { heldBytes: this.core.heldOutputBytes });
        this.links.get(a.node)!.pause();
        return;
      case 'resumeNode':
        // After this batch: resuming delivers messages held during the pause.
        this.resumedNodes.push(a.node);
        return;
      case 'activeChanged':
        this.activeChanged(a);
        return;
      case 'failoverBlocked':
        this.counts.failoverBlocked++;
        this.log.warn(`FAILOVER BLOCKED: ${a.reason}`, { term: this.core.term });
        return;
      case 'refused':
        this.counts.refused++;
        this.warnLimited(`refused ${a.what} from node ${a.node}: ${a.reason}`);
        return;
      case 'sendPromote':
        this.log.info(`promoting node ${a.node} in term ${a.term}`);
        return;
      case 'denyHandover':
        this.log.warn(`handover refused to node ${a.node}: ${a.reason}`, { term: a.term });
        this.handover = undefined;
        return;
      case 'handoverDone': {
        const h = this.handover;
        const downtimeMs = h !== undefined && h.to === a.to ? performance.now() - h.startMs : undefined;
        this.handover = undefined;
        this.counts.handovers++;
        this.counts.lastHandoverMs = downtimeMs;
        this.log.info(`handover from ${a.from} to ${a.to} done: ${a.to} serves in term ${a.term}`, downtimeMs !== undefined ? { downtimeMs: Math.round(downtimeMs * 10) / 10 } : {});
        return;
      }
      case 'sendFence':
        this.log.warn(`fencing node ${a.node} below term ${a.term}`);
        return;
      default:
        return;
    }
  }

  private activeChanged(a: Extract<ProxyAction, { type: 'activeChanged' }>): void {
    const now = performance.now();
    if (a.node === undefined) {
      this.lost ??= { atMs: now, term: a.term };
      this.log.warn(`no active node (term ${a.term}): ${a.reason}`);
      this.events.emit('ready', { ready: false, reason: a.reason.slice(0, 200) });
      return;
    }
    this.log.info(`active node is now ${a.node} (term ${a.term}): ${a.reason}`, a.resendOutputFrom.length > 0 ? { resend: a.resendOutputFrom.length } : {});
    this.replaying = true;
    if (this.lost !== undefined && a.term > this.lost.term) {
      const durationMs = now - this.lost.atMs;
      this.counts.failovers++;
      this.counts.lastFailoverMs = durationMs;
      this.events.emit('failover', { durationMs, term: a.term });
      this.log.info(`failover to ${a.node} done in ${durationMs.toFixed(1)} ms`, { term: a.term });
    }
    this.lost = undefined;
    this.events.emit('ready', { ready: true, reason: `serving from ${a.node} in term ${a.term}` });
  }

  /**
   * A confirm covers every epoch up to its own, so only the newest per node is sent, at most
   * every CONFIRM_BATCH_MS: a confirm only lets the node drop output it retains for a
   * failover, so nothing waits for it, and one per commit cost the primary a wake-up (a
   * message and a socket write on both sides) per epoch, hundreds a second under load.
   */
  private queueConfirm(node: NodeId, term: number, epoch: number): void {
    const prev = this.confirms.get(node);
    if (prev === undefined || prev.term !== term || prev.epoch < epoch) this.confirms.set(node, { term, epoch });
    if (this.confirmTimer !== undefined) return;
    this.confirmTimer = setTimeout(() => {
      this.confirmTimer = undefined;
      for (const [id, c] of this.confirms) {
        // A confirm of an older term means nothing to the node any more.
        if (c.term === this.core.term) this.links.get(id)!.send({ t: 'confirm', term: c.term, epoch: c.epoch });
      }
      this.confirms.clear();
    }, CONFIRM_BATCH_MS);
    this.confirmTimer.unref();
  }

  private writeClient(conn: number, bytes: Uint8Array, unprotected: boolean): void {
    const rec = this.clients.get(conn);
    if (rec === undefined || rec.socket.destroyed || !rec.socket.writable) {
      this.counts.outputDroppedBytes += bytes.length;
      return;
    }
    const now = performance.now();
    const from = rec.written;
    rec.written += bytes.length;
    let at = now;
    while (rec.arrivals.length > 0) {
      const first = rec.arrivals[0]!;
      if (first.end > from) at = Math.min(at, first.at);
      if (first.end > rec.written) break;
      rec.arrivals.shift();
    }
    if (rec.arrivedTo > from && rec.arrivedTo <= rec.written) this.holdingConns--;
    rec.arrivedTo = Math.max(rec.arrivedTo, rec.written);
    this.events.emit('outputReleased', unprotected ? { bytes: bytes.length, delayMs: now - at, unprotected } : { bytes: bytes.length, delayMs: now - at });
    if (!rec.corked) {
      rec.corked = true;
      rec.socket.cork();
      process.nextTick(() => {
        rec.corked = false;
        rec.socket.uncork();
      });
    }
    rec.socket.write(bytes);
    if (rec.socket.writableLength > this.options.maxClientWriteBufferBytes) {
      this.warnLimited(`dropping client ${conn}: ${rec.socket.writableLength} bytes unread (maxClientWriteBufferBytes ${this.options.maxClientWriteBufferBytes})`);
      this.dropClient(rec, 'slow_reader');
    } else if (rec.socket.writableLength > 1024 * 1024) this.boundUnreadOutput(now);
  }

  private lastUnreadScan = 0;

  /**
   * Unread output of all clients together stays within maxTotalClientWriteBufferBytes: past it the
   * client with the most unread bytes (the slowest reader) is dropped first. Scanned only while
   * some client has over 1 MiB unread, at most every 50 ms.
   */
  private boundUnreadOutput(now: number): void {
    if (now - this.lastUnreadScan < 50) return;
    this.lastUnreadScan = now;
    let total = 0;
    for (const c of this.clients.values()) total += c.socket.writableLength;
    while (total > this.options.maxTotalClientWriteBufferBytes) {
      let slowest: ClientRec | undefined;
      for (const c of this.clients.values()) if (!slowest || c.socket.writableLength > slowest.socket.writableLength) slowest = c;
      if (!slowest || slowest.socket.writableLength === 0) return;
      total -= slowest.socket.writableLength;
      this.warnLimited(`dropping the slowest client: ${slowest.socket.writableLength} bytes unread, ${total} more across all clients (maxTotalClientWriteBufferBytes ${this.options.maxTotalClientWriteBufferBytes})`);
      this.dropClient(slowest, 'output_budget');
    }
  }

  private noteArrival(conn: number, end: number, now: number): void {
    const rec = this.clients.get(conn);
    if (rec === undefined || end <= rec.arrivedTo) return;
    if (rec.arrivedTo <= rec.written) this.holdingConns++;
    rec.arrivedTo = end;
    if (rec.arrivals.length >= MAX_ARRIVALS) rec.arrivals.shift();
    rec.arrivals.push({ end, at: now });
  }

  /** Keeps one timer at the core's next deadline; an earlier armed timer is kept (its tick re-arms). */
  private arm(): void {
    if (this.phase === 'closed') return;
    const d = this.core.nextDeadline();
    if (d === undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
      return;
    }
    if (this.timer !== undefined && this.timerFor <= d) return;
    clearTimeout(this.timer);
    this.timerFor = d;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.core.tick(performance.now());
      this.drain();
    }, Math.max(0, Math.ceil(d - performance.now())));
  }

  /** Level metrics and term changes, after each drain. */
  private levels(): void {
    const held = this.core.heldOutputBytes;
    if (held !== this.lastHeld) {
      this.lastHeld = held;
      this.events.emit('outputHeld', { bytes: held, conns: Math.max(0, this.holdingConns) });
    }
    if (this.core.term !== this.lastTerm) {
      if (this.lastTerm >= 0) this.log.info(`term is now ${this.core.term}`);
      this.lastTerm = this.core.term;
      this.events.emit('role', { role: 'proxy', term: this.core.term });
    }
  }

  private warnLimited(msg: string): void {
    const now = performance.now();
    const w = this.warnWindow;
    if (now - w.startMs >= WARN_WINDOW_MS) {
      if (w.suppressed > 0) this.log.warn(`${w.suppressed} similar warnings suppressed`);
      w.startMs = now;
      w.count = 0;
      w.suppressed = 0;
    }
    if (w.count++ < WARN_BURST) this.log.warn(msg);
    else w.suppressed++;
  }
}

function asCoded(e: unknown): FtvmError {
  if (isFtvmError(e)) return e;
  return new ProxyError(PROXY_ERR.BAD_MESSAGE, `unexpected failure handling a node message: ${String(e)}`);
}

function errFields(e: unknown): Record<string, unknown> {
  return isFtvmError(e) ? { code: e.code, error: e.message } : { error: String(e) };
}
