/**
 * A deterministic simulation of a whole ftvm cluster around the pure cores: a proxy,
 * nodes a and b, clients, a simulated network (delay, FIFO links, silent partitions,
 * link closes, message drops) and a manual clock. The runtimes here are minimal
 * stand-ins for packages/proxy, primary and secondary: they only translate actions to
 * messages and back, so every decision under test is the cores'.
 *
 * The guest is a counter service: each "INCR\n" line increments a counter and answers
 * its new value; "QUIT\n" answers "BYE\n" and closes; "POISON\n" makes the guest fault
 * (a trap: deterministic, so any node that runs it faults the same way). Its whole state (counter, per-
 * connection offsets, partial line, retained output) is one JSON value: a checkpoint is
 * that JSON, split into page batches.
 */
import {
  PrimaryCore,
  ProxyCore,
  SecondaryCore,
  createPolicy,
  type NodeId,
  type PrimaryAction,
  type ProxyAction,
  type SecondaryAction,
  type SecondaryLostPolicy,
  type StateOffsets,
} from '../../src/index.js';
import { Rng, SimClock } from './clock.js';

type Msg = { t: string; [k: string]: any };
const te = new TextEncoder();
const td = new TextDecoder();

export interface ClusterOptions {
  seed?: number;
  policy?: string;
  policyOptions?: Record<string, unknown>;
  onSecondaryLost?: SecondaryLostPolicy;
  /** One-way network delay range, ms. */
  delayMs?: [number, number];
  heartbeatMs?: number;
  timeoutMs?: number;
  /** Restart a fenced node as a secondary after this many ms (what a runtime does). */
  rejoinMs?: number;
  maxConnInputLogBytes?: number;
  /** Time from a collect request to the event boundary where it happens, ms (the guest runs on meanwhile). */
  collectDelayMs?: [number, number];
}

interface GuestConn {
  inConsumed: number;
  outProduced: number;
  closed: boolean;
  partial: string;
  /** Closed and already listed by one checkpoint: dropped from the next (the VMM contract's minimum). */
  reported?: boolean;
}
interface Guest {
  counter: number;
  maxConnId: number;
  conns: Record<string, GuestConn>;
  /** Output not yet confirmed received by the proxy: device state, so it survives failover. */
  retained: { conn: number; offset: number; data: string; epoch: number }[];
}

export function fnv(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16);
}

function offsetsOf(g: Guest, epoch: number): StateOffsets {
  return {
    epoch,
    maxConnId: g.maxConnId,
    conns: Object.entries(g.conns).map(([id, c]) => ({ conn: Number(id), inConsumed: c.inConsumed, outProduced: c.outProduced, closed: c.closed })),
  };
}

/** After a checkpoint listed a closed connection, the guest forgets it (only maxConnId remembers it). */
function forgetReported(g: Guest): void {
  for (const [id, c] of Object.entries(g.conns)) {
    if (c.closed && c.reported) delete g.conns[id];
    else if (c.closed) c.reported = true;
  }
}

// ---------------------------------------------------------------- network

interface Link {
  up: boolean;
  inc: number;
  cut: boolean;
  lastAt: Map<string, number>;
  held: { from: string; to: string; msg: Msg }[];
}

export class Net {
  readonly links = new Map<string, Link>();
  readonly partitioned = new Set<string>();
  delivered = 0;
  dropped = 0;
  /** Corrupt the next page batch on a direction ("a>b"). */
  readonly corruptNext = new Set<string>();
  constructor(
    private readonly clock: SimClock,
    private readonly rng: Rng,
    private readonly delay: [number, number],
    private readonly deliver: (from: string, to: string, msg: Msg) => void,
    private readonly notify: (x: string, y: string, up: boolean) => void,
  ) {}

  static key(x: string, y: string): string {
    return x < y ? `${x}|${y}` : `${y}|${x}`;
  }
  link(x: string, y: string): Link {
    const k = Net.key(x, y);
    let l = this.links.get(k);
    if (l === undefined) {
      l = { up: false, inc: 0, cut: false, lastAt: new Map(), held: [] };
      this.links.set(k, l);
    }
    return l;
  }
  isUp(x: string, y: string): boolean {
    return this.link(x, y).up;
  }

  send(from: string, to: string, msg: Msg): void {
    const l = this.link(from, to);
    if (!l.up) {
      this.dropped++;
      return;
    }
    if (msg.t === 'pages' && this.corruptNext.delete(`${from}>${to}`)) msg = { ...msg, data: `${msg.data}#corrupt` };
    if (this.partitioned.has(from) || this.partitioned.has(to)) {
      l.held.push({ from, to, msg });
      return;
    }
    this.schedule(l, from, to, msg);
  }

  /** Messages scheduled for delivery and not yet delivered or dropped. */
  inFlight = 0;

  private schedule(l: Link, from: string, to: string, msg: Msg): void {
    const dir = `${from}>${to}`;
    this.inFlight++;
    // FIFO per direction, like a TCP stream: never before the previous message.
    const at = Math.max(this.clock.now + this.rng.range(this.delay[0], this.delay[1]), l.lastAt.get(dir) ?? 0);
    l.lastAt.set(dir, at);
    const inc = l.inc;
    this.clock.at(at, () => {
      this.inFlight--;
      if (l.inc !== inc || !l.up) {
        this.dropped++;
        return;
      }
      this.delivered++;
      this.deliver(from, to, msg);
    });
  }

  open(x: string, y: string): void {
    const l = this.link(x, y);
    if (l.up) return;
    l.up = true;
    l.inc++;
    l.held = [];
    l.lastAt.clear();
    this.notify(x, y, true);
  }

  /** Closes the link; both ends hear of it (an end that is dead ignores it). */
  close(x: string, y: string): void {
    const l = this.link(x, y);
    if (!l.up) return;
    l.up = false;
    l.inc++;
    this.dropped += l.held.length;
    l.held = [];
    this.notify(x, y, false);
  }

  /** Drops the messages now in flight from `from` to `to` (a lossy moment, no close). */
  dropInFlight(from: string, to: string): void {
    const l = this.link(from, to);
    // Bumping inc drops both directions' in-flight messages; re-arm the other direction's FIFO.
    l.inc++;
    l.held = l.held.filter((h) => !(h.from === from && h.to === to));
    l.lastAt.clear();
  }

  partition(node: string): void {
    this.partitioned.add(node);
  }

  heal(node: string): void {
    this.partitioned.delete(node);
    for (const l of this.links.values()) {
      const keep: Link['held'] = [];
      for (const h of l.held) {
        if (this.partitioned.has(h.from) || this.partitioned.has(h.to)) keep.push(h);
        else this.schedule(l, h.from, h.to, h.msg);
      }
      l.held = keep;
    }
  }
}

// ---------------------------------------------------------------- clients

export class SimClient {
  conn = 0;
  requests = 0;
  received = '';
  paused = false;
  closedByServer = false;
  outbox: string[] = [];
  constructor(readonly name: string) {}
  replies(): string[] {
    const lines = this.received.split('\n');
    lines.pop();
    return lines;
  }
}

// ---------------------------------------------------------------- nodes

type Mode = 'dead' | 'primary' | 'secondary' | 'stopped';

class SimNode {
  mode: Mode = 'dead';
  incarnation = 0;
  core: PrimaryCore | undefined;
  sec: SecondaryCore | undefined;
  guest: Guest | undefined;
  paused = false;
  pending: Msg[] = [];
  inReceived = new Map<number, number>();
  staged = new Map<number, string>();
  image: string | undefined;
  staging: string[] = [];
  lastPagesData = '';
  timerGen = 0;
  /** The primary's rollback point: the guest JSON at the last collected epoch. */
  rollbackImage: string | undefined;
  /** Input received per connection since it opened on this node: [base, base + data.length). */
  inputLog = new Map<number, { base: number; data: string }>();
  /** The guest faulted: nothing runs until the rollback. */
  faulted = false;
  /** Counts guest faults: a collect asked for before one never reaches its boundary. */
  guestRuns = 0;
  /** Connections whose input faulted the guest: closed, their input dropped. */
  aborted = new Set<number>();

  constructor(
    readonly id: NodeId,
    private readonly cl: Cluster,
  ) {}

  get peer(): NodeId {
    return this.id === 'a' ? 'b' : 'a';
  }

  bootPrimary(term: number): void {
    this.reset();
    this.mode = 'primary';
    this.guest = { counter: 0, maxConnId: 0, conns: {}, retained: [] };
    this.rollbackImage = JSON.stringify(this.guest);
    this.core = this.newCore(term, 0);
    this.drain();
  }

  bootSecondary(): void {
    this.reset();
    this.mode = 'secondary';
    this.sec = new SecondaryCore({ nowMs: this.cl.clock.now, primaryTimeoutMs: this.cl.timeoutMs, reportIntervalMs: 5 });
    this.drain();
  }

  kill(): void {
    this.reset();
    this.mode = 'dead';
  }

  private reset(): void {
    this.incarnation++;
    this.timerGen++;
    this.core = undefined;
    this.sec = undefined;
    this.guest = undefined;
    this.paused = false;
    this.pending = [];
    this.inReceived.clear();
    this.staged.clear();
    this.image = undefined;
    this.staging = [];
    this.rollbackImage = undefined;
    this.inputLog.clear();
    this.faulted = false;
    this.aborted.clear();
    this.clientClosed.clear();
    this.opened.clear();
    // A process that goes away closes all its links.
    this.cl.net.close(this.id, 'proxy');
    this.cl.net.close(this.id, this.peer);
  }

  private newCore(term: number, startEpoch: number): PrimaryCore {
    return new PrimaryCore({
      term,
      startEpoch,
      nowMs: this.cl.clock.now,
      policy: createPolicy(this.cl.opts.policy, this.cl.opts.policyOptions),
      onSecondaryLost: this.cl.opts.onSecondaryLost,
      secondaryTimeoutMs: this.cl.timeoutMs,
      // A checkpoint the network lost (`drop`) leaves the secondary heartbeating and stuck.
      secondaryStallTimeoutMs: this.cl.timeoutMs * 4,
    });
  }

  heartbeat(): void {
    if (this.mode === 'primary' && this.core!.state !== 'stopped') {
      this.cl.net.send(this.id, 'proxy', { t: 'hb', term: this.core!.term });
      this.cl.net.send(this.id, this.peer, { t: 'hb', term: this.core!.term });
    } else if (this.mode === 'secondary') {
      this.cl.net.send(this.id, this.peer, { t: 'hb', term: this.sec!.term });
      this.cl.net.send(this.id, 'proxy', { t: 'status', term: this.sec!.term, committedEpoch: this.sec!.committedEpoch, imageTerm: this.sec!.imageTerm });
    }
  }

  linkEvent(other: string, up: boolean): void {
    const now = this.cl.clock.now;
    if (other === 'proxy') {
      if (!up) return;
      if (this.mode === 'primary') {
        this.cl.net.send(this.id, 'proxy', { t: 'hello', role: 'primary', term: this.core!.term, live: offsetsOf(this.guest!, this.core!.runningEpoch - 1) });
      } else if (this.mode === 'secondary') {
        this.cl.net.send(this.id, 'proxy', { t: 'hello', role: 'secondary', term: this.sec!.term, committedEpoch: this.sec!.committedEpoch, imageTerm: this.sec!.imageTerm });
      }
      return;
    }
    if (this.mode === 'primary') {
      if (up) this.core!.secondaryConnected(now);
      else this.core!.secondaryDisconnected(now);
    } else if (this.mode === 'secondary') {
      if (up) this.sec!.primaryConnected(now);
      else this.sec!.primaryDisconnected(now);
    }
    this.drain();
  }

  receive(from: string, m: Msg): void {
    const now = this.cl.clock.now;
    if (this.mode === 'primary') {
      const core = this.core!;
      if (core.state === 'stopped') return;
      if (from === 'proxy') {
        if (m.t === 'fence') core.fenced(m.term, now);
        else if (m.term !== core.term) return;
        else if (m.t === 'open' || m.t === 'input' || m.t === 'close') this.netInput(m);
        else if (m.t === 'resend') this.resend(m.conns);
        else if (m.t === 'confirm') this.guest!.retained = this.guest!.retained.filter((r) => r.epoch > m.epoch);
      } else {
        if (m.t === 'ack') core.ack({ term: m.term, epoch: m.epoch, nowMs: now });
        else if (m.t === 'nack') core.nack({ term: m.term, epoch: m.epoch, code: m.code, nowMs: now });
        else if (m.t === 'reject') core.fenced(m.term, now);
        else if (m.t === 'hb') core.secondaryHeard(now);
      }
    } else if (this.mode === 'secondary') {
      const s = this.sec!;
      if (from === 'proxy') {
        if (m.t === 'promote') s.promote({ term: m.term, nowMs: now });
        else if (m.t === 'fence') s.fence({ term: m.term });
      } else if (m.t === 'begin') s.begin({ term: m.term, epoch: m.epoch, full: m.full, nowMs: now });
      else if (m.t === 'pages') {
        this.lastPagesData = m.data;
        s.pages({ term: m.term, epoch: m.epoch, seq: m.seq, pageCount: 1, bytes: m.data.length, nowMs: now });
      } else if (m.t === 'end') {
        const digestOk = s.stagingEpoch === m.epoch && fnv(this.staging.join('')) === m.digest;
        s.end({ term: m.term, epoch: m.epoch, pageCount: m.pageCount, digestOk, nowMs: now });
      } else if (m.t === 'hb') s.heartbeat({ term: m.term, nowMs: now });
    }
    this.drain();
  }

  private netInput(m: Msg): void {
    if (this.aborted.has(m.conn)) return;
    if (m.t === 'open') this.opened.add(m.conn);
    if (m.t === 'close') this.clientClosed.add(m.conn);
    if (m.t === 'input') {
      // The runtime keeps what it received (a rollback replays it), running or not.
      const l = this.inputLog.get(m.conn) ?? { base: m.offset, data: '' };
      const end = l.base + l.data.length;
      if (m.offset <= end && m.offset + m.data.length > end) l.data += (m.data as string).slice(end - m.offset);
      this.inputLog.set(m.conn, l);
    }
    if (this.paused || this.faulted) {
      if (!this.faulted) this.pending.push(m);
      return;
    }
    this.run(m);
  }

  /** Runs one guest event (a trap stops it where it is: the faulted run is void). */
  private run(m: Msg): void {
    if (this.faulted) return;
    const g = this.guest!;
    if (m.t === 'open') {
      if (g.conns[m.conn] === undefined && m.conn > g.maxConnId) {
        g.conns[m.conn] = { inConsumed: 0, outProduced: 0, closed: false, partial: '' };
        g.maxConnId = m.conn;
      }
      return;
    }
    const c = g.conns[m.conn];
    if (c === undefined) {
      if (m.conn <= g.maxConnId) return; // closed and forgotten: late input is dropped
      throw new Error(`${this.id}: ${m.t} for connection ${m.conn} it never saw opened`);
    }
    if (m.t === 'close') {
      this.clientClosed.add(m.conn);
      c.closed = true;
      return;
    }
    const have = this.inReceived.get(m.conn) ?? c.inConsumed;
    let data: string = m.data;
    if (m.offset > have) throw new Error(`${this.id}: input gap on connection ${m.conn}: got ${m.offset}, have ${have}`);
    if (m.offset + data.length <= have) return;
    data = data.slice(have - m.offset);
    this.inReceived.set(m.conn, have + data.length);
    if (c.closed) return;
    c.inConsumed += data.length;
    c.partial += data;
    let nl: number;
    while (!c.closed && (nl = c.partial.indexOf('\n')) >= 0) {
      const line = c.partial.slice(0, nl);
      c.partial = c.partial.slice(nl + 1);
      if (line === 'INCR') {
        g.counter += 1;
        this.emit(m.conn, `${g.counter}\n`);
      } else if (line === 'POISON') {
        this.faulted = true;
        this.guestRuns++;
        this.cl.event(`${this.id} guest fault on connection ${m.conn}`);
        this.core!.guestFaulted({ conn: m.conn, code: 'FTVM_ERR_GUEST_TRAP', nowMs: this.cl.clock.now });
        return;
      } else if (line === 'QUIT') {
        this.emit(m.conn, 'BYE\n');
        c.closed = true;
      } else {
        this.emit(m.conn, 'ERR\n');
      }
    }
  }

  private emit(conn: number, data: string): void {
    const g = this.guest!;
    const c = g.conns[conn]!;
    const epoch = this.core!.runningEpoch;
    const offset = c.outProduced;
    c.outProduced += data.length;
    g.retained.push({ conn, offset, data, epoch });
    this.cl.net.send(this.id, 'proxy', { t: 'output', term: this.core!.term, epoch, conn, offset, data });
    this.core!.outputProduced({ epoch, nowMs: this.cl.clock.now });
  }

  /**
   * What packages/primary does on a `rollback`: the proxy hears first, the guest restarts from
   * the image of the last collected epoch, the faulting connection is closed, the others'
   * input past the image is replayed in connection order. Then the core hears the restore.
   */
  private rollback(epoch: number, bad: number | undefined): void {
    const g = JSON.parse(this.rollbackImage!) as Guest;
    const o = offsetsOf(g, epoch);
    this.cl.event(`${this.id} rolled back to epoch ${epoch}${bad !== undefined ? `, connection ${bad} closed` : ''}`);
    this.cl.net.send(this.id, 'proxy', { t: 'rollback', term: this.core!.term, epoch, conn: bad, offsets: o });
    // The image's own device state: an epoch collected later may have forgotten closed connections.
    this.guest = g;
    g.retained = g.retained.filter((r) => r.epoch <= epoch);
    this.faulted = false;
    this.pending = [];
    if (bad !== undefined) this.aborted.add(bad);
    const replay: Msg[] = [];
    for (const conn of [...new Set([...this.opened, ...this.inputLog.keys(), ...(bad !== undefined ? [bad] : [])])].sort((x, y) => x - y)) {
      const c = g.conns[conn];
      if (c === undefined && conn <= g.maxConnId) continue;
      if (c === undefined) replay.push({ t: 'open', conn });
      if (c?.closed) continue;
      if (this.aborted.has(conn)) {
        // Opened in the guest above if it never was, and closed: the commit that says so closes the client.
        replay.push({ t: 'close', conn });
        continue;
      }
      const l = this.inputLog.get(conn);
      const from = c?.inConsumed ?? 0;
      if (l !== undefined && l.base + l.data.length > from) replay.push({ t: 'input', conn, offset: from, data: l.data.slice(from - l.base) });
    }
    this.core!.guestRestored(this.cl.clock.now);
    for (const m of replay) {
      if (m.t !== 'input') this.run(m);
      else {
        // Replayed input goes through the guest from its consumed offset.
        this.inReceived.set(m.conn, m.offset);
        this.run(m);
      }
    }
    const held = this.closedSinceImage(g);
    for (const conn of held) this.run({ t: 'close', conn });
  }

  /** Connections the proxy closed after the image: closed again in the restored guest. */
  private closedSinceImage(g: Guest): number[] {
    return [...this.clientClosed].filter((c) => g.conns[c] !== undefined && !g.conns[c]!.closed);
  }
  /** Connections the proxy opened / closed on this node (a rollback opens / closes them again). */
  clientClosed = new Set<number>();
  opened = new Set<number>();

  private resend(conns: { conn: number; offset: number }[]): void {
    for (const { conn, offset } of conns) {
      for (const r of this.guest!.retained) {
        if (r.conn !== conn || r.offset + r.data.length <= offset) continue;
        const cut = Math.max(0, offset - r.offset);
        this.cl.net.send(this.id, 'proxy', { t: 'output', term: this.core!.term, epoch: r.epoch, conn, offset: r.offset + cut, data: r.data.slice(cut) });
      }
    }
  }

  /** Performs the cores' actions until none are left, then re-arms the single timer. */
  drain(): void {
    for (let guard = 0; guard < 10_000; guard++) {
      if (this.mode === 'primary' && this.core !== undefined) {
        const acts = this.core.takeActions();
        if (acts.length === 0) break;
        for (const a of acts) this.primaryAction(a);
      } else if (this.mode === 'secondary' && this.sec !== undefined) {
        const acts = this.sec.takeActions();
        if (acts.length === 0) break;
        for (const a of acts) this.secondaryAction(a);
      } else break;
    }
    this.arm();
  }

  private arm(): void {
    const gen = ++this.timerGen;
    const d = this.mode === 'primary' ? this.core?.nextDeadline() : this.mode === 'secondary' ? this.sec?.nextDeadline() : undefined;
    if (d === undefined) return;
    this.cl.clock.at(d, () => {
      if (gen !== this.timerGen) return;
      const now = this.cl.clock.now;
      if (this.mode === 'primary') this.core!.tick(now);
      else if (this.mode === 'secondary') this.sec!.tick(now);
      this.drain();
      // Contract of every core: after tick(now), nextDeadline() is undefined or later than now.
      const next = this.mode === 'primary' ? this.core?.nextDeadline() : this.mode === 'secondary' ? this.sec?.nextDeadline() : undefined;
      if (next !== undefined && next <= now) throw new Error(`${this.id} (${this.mode}): nextDeadline ${next} not after tick(${now})`);
    });
  }

  private primaryAction(a: PrimaryAction): void {
    const now = this.cl.clock.now;
    const core = this.core!;
    switch (a.type) {
      case 'collect': {
        const [lo, hi] = this.cl.opts.collectDelayMs;
        const boundary = () => {
          const json = JSON.stringify(this.guest);
          const offsets = offsetsOf(this.guest!, a.epoch);
          this.staged.set(a.epoch, json);
          this.rollbackImage = json;
          forgetReported(this.guest!);
          core.epochCollected({ epoch: a.epoch, nowMs: this.cl.clock.now, bytes: json.length, offsets });
        };
        // The guest faulted after the core asked (the VMM rejects the collect): void.
        if (this.faulted) break;
        if (hi <= 0) {
          boundary();
          break;
        }
        // The next event boundary comes later; the guest keeps running epoch a.epoch until then.
        const inc = this.incarnation;
        const run = this.guestRuns;
        this.cl.clock.after(this.cl.rng.range(lo, hi), () => {
          // A guest fault voids the collect under way (the VMM rejects it).
          if (this.incarnation !== inc || this.core !== core || core.state === 'stopped' || this.guestRuns !== run) return;
          boundary();
          this.drain();
        });
        break;
      }
      case 'sendCheckpoint': {
        const json = this.staged.get(a.epoch)!;
        this.staged.delete(a.epoch);
        const parts = this.cl.rng.int(1, 3);
        const size = Math.ceil(json.length / parts);
        this.cl.net.send(this.id, this.peer, { t: 'begin', term: a.term, epoch: a.epoch, full: a.full });
        for (let i = 0; i < parts; i++) {
          this.cl.net.send(this.id, this.peer, { t: 'pages', term: a.term, epoch: a.epoch, seq: i, data: json.slice(i * size, (i + 1) * size) });
        }
        this.cl.net.send(this.id, this.peer, { t: 'end', term: a.term, epoch: a.epoch, pageCount: parts, digest: fnv(json) });
        core.checkpointSent({ epoch: a.epoch, nowMs: now });
        break;
      }
      case 'commit':
        for (const e of [...this.staged.keys()]) if (e <= a.epoch) this.staged.delete(e);
        this.cl.net.send(this.id, 'proxy', { t: 'commit', term: a.term, epoch: a.epoch, acked: a.acked, offsets: a.offsets });
        break;
      case 'cancelCheckpoints':
        this.staged.clear();
        break;
      case 'disconnectSecondary':
        this.cl.net.close(this.id, this.peer);
        break;
      case 'pauseVcpu':
        this.paused = true;
        break;
      case 'resumeVcpu': {
        this.paused = false;
        const p = this.pending;
        this.pending = [];
        for (const m of p) this.run(m);
        break;
      }
      case 'rollback':
        this.rollback(a.epoch, a.conn);
        break;
      case 'guestContained':
        this.cl.event(`${this.id} guest contained: ${a.reason}`);
        break;
      case 'protectionChanged':
        this.cl.event(`${this.id} protected=${a.protected} (${a.reason})`);
        break;
      case 'startFullSync':
        this.cl.event(`${this.id} full sync at epoch ${a.epoch}`);
        break;
      case 'stop':
        this.cl.event(`${this.id} stopped: ${a.reason}`);
        this.mode = 'stopped';
        this.cl.net.close(this.id, this.peer);
        this.cl.clock.after(this.cl.opts.rejoinMs, () => {
          if (this.mode === 'stopped') {
            this.cl.event(`${this.id} rejoins as secondary`);
            this.bootSecondary();
          }
        });
        break;
    }
  }

  private secondaryAction(a: SecondaryAction): void {
    const now = this.cl.clock.now;
    switch (a.type) {
      case 'stageBegin':
        this.staging = [];
        break;
      case 'stagePages':
        this.staging.push(this.lastPagesData);
        break;
      case 'stageDiscard':
        this.staging = [];
        break;
      case 'apply':
        this.image = this.staging.join('');
        this.staging = [];
        break;
      case 'ack':
      case 'nack':
      case 'reject':
        this.cl.net.send(this.id, this.peer, { t: a.type, term: a.term, epoch: 'epoch' in a ? a.epoch : 0, code: 'code' in a ? a.code : '' });
        break;
      case 'promoteRequest':
        this.cl.net.send(this.id, 'proxy', { t: 'promoteRequest', term: a.term, committedEpoch: a.committedEpoch, imageTerm: a.imageTerm });
        break;
      case 'reportCommitted':
        this.cl.net.send(this.id, 'proxy', { t: 'status', term: a.term, committedEpoch: a.epoch, imageTerm: a.imageTerm });
        break;
      case 'refusePromote':
        this.cl.event(`${this.id} refused promotion: ${a.reason}`);
        break;
      case 'restore': {
        const g = JSON.parse(this.image!) as Guest;
        this.cl.event(`${this.id} restores epoch ${a.epoch} as primary of term ${a.term}`);
        this.sec = undefined;
        this.mode = 'primary';
        this.guest = g;
        this.inReceived.clear();
        this.rollbackImage = this.image;
        this.inputLog.clear();
        this.opened.clear();
        this.clientClosed.clear();
        this.core = this.newCore(a.term, a.epoch);
        this.cl.net.close(this.id, this.peer);
        this.cl.net.send(this.id, 'proxy', { t: 'promoted', term: a.term, offsets: offsetsOf(g, a.epoch) });
        void now;
        break;
      }
    }
  }
}

// ---------------------------------------------------------------- cluster

export class Cluster {
  readonly clock = new SimClock();
  readonly rng: Rng;
  readonly net: Net;
  readonly opts: Required<ClusterOptions>;
  proxy: ProxyCore;
  readonly nodes: Record<'a' | 'b', SimNode>;
  readonly clients = new Map<string, SimClient>();
  private readonly byConn = new Map<number, SimClient>();
  readonly events: string[] = [];
  readonly timeoutMs: number;
  private proxyTimerGen = 0;
  /** Called with every chunk a client receives (closed-loop workloads, latency probes). */
  onClientData: ((c: SimClient, text: string) => void) | undefined;
  private started = false;

  constructor(opts: ClusterOptions = {}) {
    this.opts = {
      seed: opts.seed ?? 1,
      policy: opts.policy ?? 'adaptive',
      policyOptions: opts.policyOptions ?? {},
      onSecondaryLost: opts.onSecondaryLost ?? 'continue',
      delayMs: opts.delayMs ?? [0.05, 0.5],
      heartbeatMs: opts.heartbeatMs ?? 10,
      timeoutMs: opts.timeoutMs ?? 50,
      rejoinMs: opts.rejoinMs ?? 20,
      maxConnInputLogBytes: opts.maxConnInputLogBytes ?? 8 * 1024 * 1024,
      collectDelayMs: opts.collectDelayMs ?? [0, 0],
    };
    this.timeoutMs = this.opts.timeoutMs;
    this.rng = new Rng(this.opts.seed);
    this.net = new Net(this.clock, this.rng, this.opts.delayMs, (f, t, m) => this.deliver(f, t, m), (x, y, up) => this.linkEvent(x, y, up));
    this.proxy = new ProxyCore({ nodes: ['a', 'b'], failoverTimeoutMs: this.opts.timeoutMs, maxConnInputLogBytes: this.opts.maxConnInputLogBytes });
    this.nodes = { a: new SimNode('a', this), b: new SimNode('b', this) };
  }

  event(s: string): void {
    this.events.push(`${this.clock.now.toFixed(2)} ${s}`);
  }

  /** Boots a as the primary of term 1 and b as its secondary; links come up on the maintenance loop. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.nodes.a.bootPrimary(1);
    this.nodes.b.bootSecondary();
    this.maintain();
    const beat = () => {
      for (const n of Object.values(this.nodes)) n.heartbeat();
      this.clock.after(this.opts.heartbeatMs, beat);
    };
    this.clock.after(this.opts.heartbeatMs, beat);
  }

  run(ms: number): void {
    this.clock.run(ms);
  }

  node(name: string): SimNode {
    const resolved = name === 'primary' ? this.primaryName() : name === 'secondary' ? this.secondaryName() : name;
    if (resolved !== 'a' && resolved !== 'b') throw new Error(`no node ${name}`);
    return this.nodes[resolved];
  }
  primaryName(): 'a' | 'b' | undefined {
    const act = this.proxy.active;
    if (act === 'a' || act === 'b') return act;
    return (['a', 'b'] as const).find((n) => this.nodes[n].mode === 'primary');
  }
  secondaryName(): 'a' | 'b' | undefined {
    return (['a', 'b'] as const).find((n) => this.nodes[n].mode === 'secondary');
  }

  kill(name: string): void {
    const n = this.node(name);
    this.event(`kill ${n.id}`);
    n.kill();
  }
  /**
   * The proxy dies and a new one starts with the same options: its clients' connections are
   * reset (they were the old process's), it knows nothing of the old one's state.
   */
  restartProxy(): void {
    this.event('restart proxy');
    for (const c of this.clients.values()) c.closedByServer = true;
    this.clients.clear();
    this.byConn.clear();
    this.proxyTimerGen++;
    this.proxy = new ProxyCore({ nodes: ['a', 'b'], failoverTimeoutMs: this.opts.timeoutMs, maxConnInputLogBytes: this.opts.maxConnInputLogBytes });
    this.net.close('a', 'proxy');
    this.net.close('b', 'proxy');
  }

  restart(name: string): void {
    const n = this.node(name);
    this.event(`restart ${n.id} as secondary`);
    n.bootSecondary();
  }

  /** Brings up the links that should be up: both ends alive, not partitioned, not cut; repl only primary<->secondary. */
  private maintain(): void {
    const alive = (n: SimNode) => n.mode !== 'dead' && !this.net.partitioned.has(n.id);
    for (const n of Object.values(this.nodes)) {
      const l = this.net.link(n.id, 'proxy');
      if (!l.up && !l.cut && alive(n) && !this.net.partitioned.has('proxy')) this.net.open(n.id, 'proxy');
    }
    const { a, b } = this.nodes;
    const repl = this.net.link('a', 'b');
    const pair = (a.mode === 'primary' && b.mode === 'secondary') || (a.mode === 'secondary' && b.mode === 'primary');
    if (!repl.up && !repl.cut && pair && alive(a) && alive(b)) this.net.open('a', 'b');
    this.clock.after(5, () => this.maintain());
  }

  private linkEvent(x: string, y: string, up: boolean): void {
    // The other end hears of a close or an open after a short delay (RST / handshake).
    const ends = [x, y];
    for (const e of ends) {
      const other = e === x ? y : x;
      const inc = this.net.link(x, y).inc;
      this.clock.after(0.01, () => {
        if (this.net.link(x, y).inc !== inc) return; // superseded by a later open/close
        if (e === 'proxy') this.proxyLink(other as NodeId, up);
        else this.nodes[e as 'a' | 'b'].linkEvent(other, up);
      });
    }
  }

  private proxyLink(node: NodeId, up: boolean): void {
    const now = this.clock.now;
    if (up) this.proxy.nodeUp(node, now);
    else this.proxy.nodeDown(node, now);
    this.drainProxy();
  }

  private deliver(from: string, to: string, m: Msg): void {
    if (to === 'proxy') this.proxyReceive(from, m);
    else {
      const n = this.nodes[to as 'a' | 'b'];
      if (n.mode !== 'dead') n.receive(from, m);
    }
  }

  private proxyReceive(node: NodeId, m: Msg): void {
    const now = this.clock.now;
    const p = this.proxy;
    switch (m.t) {
      case 'hello':
        p.nodeHello(node, m.role === 'primary' ? { role: 'primary', term: m.term, live: m.live } : { role: 'secondary', term: m.term, committedEpoch: m.committedEpoch, imageTerm: m.imageTerm }, now);
        break;
      case 'hb':
        p.nodeStatus(node, { term: m.term }, now);
        break;
      case 'status':
        p.nodeStatus(node, { term: m.term, committedEpoch: m.committedEpoch, imageTerm: m.imageTerm }, now);
        break;
      case 'output':
        p.output(node, { term: m.term, epoch: m.epoch, conn: m.conn, offset: m.offset, bytes: te.encode(m.data) }, now);
        break;
      case 'commit':
        p.commit(node, { term: m.term, epoch: m.epoch, acked: m.acked, offsets: m.offsets }, now);
        break;
      case 'promoted':
        p.promoted(node, { term: m.term, offsets: m.offsets }, now);
        break;
      case 'promoteRequest':
        p.promoteRequest(node, { term: m.term, committedEpoch: m.committedEpoch, imageTerm: m.imageTerm }, now);
        break;
      case 'rollback':
        p.rolledBack(node, { term: m.term, epoch: m.epoch, conn: m.conn, offsets: m.offsets }, now);
        break;
    }
    this.drainProxy();
  }

  drainProxy(): void {
    for (;;) {
      const acts = this.proxy.takeActions();
      if (acts.length === 0) break;
      for (const a of acts) this.proxyAction(a);
    }
    const gen = ++this.proxyTimerGen;
    const d = this.proxy.nextDeadline();
    if (d !== undefined) {
      this.clock.at(d, () => {
        if (gen !== this.proxyTimerGen) return;
        const now = this.clock.now;
        this.proxy.tick(now);
        this.drainProxy();
        const next = this.proxy.nextDeadline();
        if (next !== undefined && next <= now) throw new Error(`proxy: nextDeadline ${next} not after tick(${now})`);
      });
    }
  }

  private proxyAction(a: ProxyAction): void {
    switch (a.type) {
      case 'writeClient': {
        const c = this.byConn.get(a.conn)!;
        const text = td.decode(a.bytes);
        c.received += text;
        this.onClientData?.(c, text);
        break;
      }
      case 'closeClient':
        this.byConn.get(a.conn)!.closedByServer = true;
        break;
      case 'pauseClient':
        this.byConn.get(a.conn)!.paused = true;
        break;
      case 'resumeClient': {
        const c = this.byConn.get(a.conn)!;
        c.paused = false;
        const out = c.outbox;
        c.outbox = [];
        for (const s of out) this.clientSend(c.name, s);
        break;
      }
      case 'forwardOpen':
        this.net.send('proxy', a.node, { t: 'open', term: a.term, conn: a.conn });
        break;
      case 'forwardInput':
        this.net.send('proxy', a.node, { t: 'input', term: a.term, conn: a.conn, offset: a.offset, data: td.decode(a.bytes) });
        break;
      case 'forwardClose':
        this.net.send('proxy', a.node, { t: 'close', term: a.term, conn: a.conn, offset: a.offset });
        break;
      case 'sendPromote':
        this.event(`proxy promotes ${a.node} in term ${a.term}`);
        this.net.send('proxy', a.node, { t: 'promote', term: a.term });
        break;
      case 'sendFence':
        this.event(`proxy fences ${a.node} at term ${a.term}`);
        this.net.send('proxy', a.node, { t: 'fence', term: a.term });
        break;
      case 'denyPromote':
        this.event(`proxy denies promotion of ${a.node}: ${a.reason}`);
        this.net.send('proxy', a.node, { t: 'deny', term: a.term });
        break;
      case 'activeChanged':
        this.event(`proxy active=${a.node ?? 'none'} term=${a.term} (${a.reason})`);
        if (a.node !== undefined && a.resendOutputFrom.length > 0) {
          this.event(`proxy asks ${a.node} to resend output of ${a.resendOutputFrom.map((r) => `conn ${r.conn} from ${r.offset}`).join(', ')}`);
          this.net.send('proxy', a.node, { t: 'resend', term: a.term, conns: a.resendOutputFrom });
        }
        break;
      case 'confirmCommit':
        this.net.send('proxy', a.node, { t: 'confirm', term: a.term, epoch: a.epoch });
        break;
      case 'failoverBlocked':
        this.event(`proxy failoverBlocked: ${a.reason}`);
        break;
      case 'pauseNode':
      case 'resumeNode':
      case 'refused':
        break;
    }
  }

  // ---- clients ----

  clientOpen(name: string): SimClient {
    if (this.clients.has(name)) throw new Error(`client ${name} exists`);
    const c = new SimClient(name);
    c.conn = this.proxy.clientOpen(this.clock.now);
    this.clients.set(name, c);
    this.byConn.set(c.conn, c);
    this.drainProxy();
    return c;
  }

  clientSend(name: string, text: string): void {
    const c = this.client(name);
    if (c.paused) {
      c.outbox.push(text);
      return;
    }
    // A poison request is answered by a closed connection, never a value.
    c.requests += text.split('\n').slice(0, -1).filter((l) => l !== 'POISON').length;
    this.proxy.clientData(c.conn, te.encode(text), this.clock.now);
    this.drainProxy();
  }

  clientClose(name: string): void {
    const c = this.client(name);
    this.proxy.clientClose(c.conn, this.clock.now);
    this.drainProxy();
  }

  client(name: string): SimClient {
    const c = this.clients.get(name);
    if (c === undefined) throw new Error(`no client ${name}`);
    return c;
  }

  /**
   * The end-to-end oracle for the counter guest. Returns problems (empty = consistent):
   * every reply is for one request (never more replies than requests), a client's
   * replies increase, no counter value is handed out twice (a value from lost state
   * would be handed out again after the rollback), and when every request is answered
   * the values are exactly 1..N.
   */
  check(): string[] {
    const problems: string[] = [];
    const seen = new Map<number, string>();
    let answered = 0;
    let asked = 0;
    for (const c of this.clients.values()) {
      const values = c.replies().filter((r) => r !== 'BYE').map(Number);
      const incrs = c.requests;
      asked += incrs;
      answered += values.length;
      if (c.replies().length > c.requests) problems.push(`${c.name}: ${c.replies().length} replies for ${c.requests} requests`);
      for (let i = 0; i < values.length; i++) {
        const v = values[i]!;
        if (!Number.isInteger(v)) problems.push(`${c.name}: reply ${i} is not a number`);
        if (i > 0 && v <= values[i - 1]!) problems.push(`${c.name}: replies out of order: ${values[i - 1]} then ${v}`);
        const other = seen.get(v);
        if (other !== undefined) problems.push(`value ${v} handed to both ${other} and ${c.name} (reply from lost state)`);
        seen.set(v, c.name);
      }
    }
    if (answered === asked) {
      for (let v = 1; v <= answered; v++) if (!seen.has(v)) problems.push(`all answered but value ${v} missing`);
    }
    return problems;
  }

  allAnswered(): boolean {
    for (const c of this.clients.values()) if (c.replies().length < c.requests) return false;
    return true;
  }
}
