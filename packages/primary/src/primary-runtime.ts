import { EventEmitter } from 'node:events';
import { PAGE_BYTES } from '@ftvm/guest-abi';
import { ByteQueue, ScrubPacer, StallWatch, PrimaryCore, type EpochPolicy, type PrimaryAction, type StateOffsets } from '@ftvm/core';
import { ImageDigest, MAX_BATCH_PAGES, PageEncoder, packConns, packOutput, pageHashInto, type Link, type Message, type Opaque } from '@ftvm/protocol';
import type { Collected, GuestEvent, GuestImage, OutputItem, Vmm, VmmError } from '@ftvm/vmm';
import { RetainedOutput, type WireDevices, type WireDisk } from '@ftvm/secondary';

export interface PrimaryRuntimeOptions {
  vmm: Vmm;
  term: number;
  /** Epoch of the image the guest started from (0: fresh boot). */
  startEpoch: number;
  policy: EpochPolicy;
  policyName: string;
  onSecondaryLost: 'continue' | 'block';
  /** Silence from the secondary after which it is lost, ms. Default 1000. */
  secondaryTimeoutMs?: number;
  /** false: pages go RAW/ZERO only. Default true. */
  compression?: boolean;
  heartbeatMs?: number;
  /** Output retained from before a promotion (the secondary's copy). */
  retained?: RetainedOutput;
  /** Epochs in flight (collected, not acked) at most. Default 8. */
  maxInFlightEpochs?: number;
  /**
   * The guest's image at `startEpoch` (a boot's full capture, or the promoted image): the
   * rollback point after a guest fault. Every collected epoch is applied to it (the runtime
   * owns it from here on).
   */
  image: GuestImage;
  /** Guest faults rolled back per window before the guest is contained (PrimaryCore). Defaults there. */
  maxGuestFaults?: number;
  guestFaultWindowMs?: number;
}

export interface EpochStats {
  epoch: number;
  pauseMs: number;
  dirtyPages: number;
  wireBytes: number;
  rawBytes: number;
  byCodec: Record<string, { pages: number; bytes: number }>;
  /** Disk blocks the checkpoint carried, and their encoded bytes (not in wireBytes). */
  diskBlocks: number;
  diskWireBytes: number;
}

/**
 * Longest a commit the secondary already gave the proxy waits on the primary (ms). It only
 * confirms output the proxy has, and the proxy batches confirms per 20 ms anyway.
 */
const LAZY_COMMIT_MS = 20;

export interface PrimaryRuntimeEvents {
  /** The scrub compared `checked` pages with the secondary's image; `mismatched` pages differed and are resent. */
  scrub: [checked: number, mismatched: number[]];
  protection: [isProtected: boolean, reason: string];
  collected: [epoch: number, pauseMs: number, dirtyPages: number, durationMs: number, earlyPages: number];
  sent: [stats: EpochStats];
  acked: [epoch: number, ackLatencyMs: number];
  committed: [epoch: number, acked: boolean];
  /** The guest was stopped: fenced by a newer term. */
  stopped: [reason: string, term: number];
  /** The guest faulted (`code`) and was rolled back to `epoch`, the connection `conn` closed. */
  rolledBack: [code: string, epoch: number, conn: number | undefined];
  /** Fault budget spent: the guest is held faulted (true) until its rollback (false). */
  contained: [contained: boolean, reason: string];
  /** Handover: the vCPU is held and the secondary acked the last epoch `epoch` (committed to the proxy already). */
  handoverReady: [epoch: number];
  /** Handover: the secondary was lost or refused the last epoch before its ack; the guest runs again. */
  handoverAborted: [reason: string];
  /** The proxy refused a handover request (promote_deny on the net link). */
  handoverDenied: [reason: string];
  log: [level: 'error' | 'warn' | 'info' | 'debug', msg: string, fields?: Record<string, unknown>];
}

interface Staged {
  c: Collected;
  full: boolean;
  collectedAt: number;
  /** The rollback image took this epoch's pages (c.data must not be recycled before). */
  applied: Promise<void>;
}

const now = () => performance.now();
/** Pages per ckpt_pages frame: bounded well under the frame payload limit. */
const PAGES_PER_FRAME = Math.min(MAX_BATCH_PAGES, 2048);

/**
 * The primary: runs the guest in epochs chosen by the policy. At each epoch end the vCPU
 * is held only for the dirty-page copy; encoding, compression and sending happen here on
 * the I/O thread while the guest runs the next epoch. Output goes to the proxy at once,
 * tagged with its epoch; commit(N) follows ack(N).
 */
export class PrimaryRuntime extends EventEmitter<PrimaryRuntimeEvents> {
  readonly core: PrimaryCore;
  readonly vmm: Vmm;
  private readonly encoder: PageEncoder;
  private digest = new ImageDigest();
  /** Disk blocks go ZERO/RAW/LZ4: an XOR base would be a second copy of the disk in memory. */
  private readonly blockEncoder: PageEncoder;
  /** Digest of the disk as the secondary holds it after the last checkpoint sent. */
  private diskDigest = new ImageDigest();
  readonly retained: RetainedOutput;
  private confirmed = 0;
  private staged = new Map<number, Staged>();
  private secondary: Link | null = null;
  private proxy: Link | null = null;
  private proxyHeardAt = -Infinity;
  /** Input bytes received from the proxy per connection (a node drops bytes it already holds). */
  private inRecv = new Map<number, number>();
  private outEnd = new Map<number, number>();
  private closedConns = new Set<number>();
  /** The rollback point: the image at the last collected epoch (see PrimaryRuntimeOptions.image). */
  private readonly image: GuestImage;
  /** Input per connection since the rollback point's inConsumed: a rollback replays it. */
  private inputLog = new Map<number, ByteQueue>();
  /** Connections whose input made the guest fault: closed, anything more from them is dropped. */
  private aborted = new Set<number>();
  /** From a guest fault to the restored vCPU: output of the faulted run is void. */
  private rollingBack = false;
  /** The fault budget is spent: the guest is held faulted until its rollback. */
  private contained = false;
  /** Collected epochs being applied to `image`, in order. */
  private imageChain: Promise<void> = Promise.resolve();
  private maxConn = 0;
  private timer: NodeJS.Timeout | null = null;
  private beat: NodeJS.Timeout;
  private driving = false;
  private kicked = false;
  private stopped = false;
  private sentAt = new Map<number, number>();
  /** Next page the scrub compares, and the hashes of slices sent, by epoch. */
  private scrubCursor = 0;
  /** Slice sizes by time (pages/s), not a fixed slice per epoch: see ScrubPacer. */
  private readonly scrubPacer = new ScrubPacer();
  private scrubPending = new Map<number, { fromPage: number; count: number; hashes: Uint32Array }>();
  private lastEpochEnd = now();

  constructor(readonly opts: PrimaryRuntimeOptions) {
    super();
    this.vmm = opts.vmm;
    this.encoder = new PageEncoder({ compression: opts.compression ?? true });
    this.blockEncoder = new PageEncoder({ compression: opts.compression ?? true, keepPrevious: false });
    this.retained = opts.retained ?? new RetainedOutput();
    this.core = new PrimaryCore({
      term: opts.term,
      startEpoch: opts.startEpoch,
      nowMs: now(),
      policy: opts.policy,
      onSecondaryLost: opts.onSecondaryLost,
      secondaryTimeoutMs: opts.secondaryTimeoutMs ?? 1000,
      maxInFlightEpochs: opts.maxInFlightEpochs ?? 8,
      ...(opts.maxGuestFaults !== undefined ? { maxGuestFaults: opts.maxGuestFaults } : {}),
      ...(opts.guestFaultWindowMs !== undefined ? { guestFaultWindowMs: opts.guestFaultWindowMs } : {}),
    });
    this.image = opts.image;
    this.vmm.on('output', this.onOutput);
    this.vmm.on('fault', this.onFault);
    // A blocked loop past half the peers' default failure timeout (1 s) is logged.
    this.stalls = new StallWatch(opts.heartbeatMs ?? 100, 500);
    this.beat = setInterval(() => this.heartbeat(), opts.heartbeatMs ?? 100);
    this.beat.unref();
    this.kick();
  }

  get term(): number {
    return this.core.term;
  }

  private onOutput = (it: OutputItem): void => {
    // A message of the faulted vCPU still on its way: its run is void.
    if (this.rollingBack) return;
    this.retained.add([{ conn: it.conn, epoch: it.epoch, offset: it.offset, data: it.data }]);
    this.outEnd.set(it.conn, it.offset + it.data.length);
    try {
      this.proxy?.trySend({ t: 'output', term: this.core.term, conn: it.conn, epoch: it.epoch, offset: it.offset }, it.data);
    } catch (e) {
      // The proxy is not reading (send buffer full): drop the link; on reconnect it asks
      // for what it missed (resend from retained output).
      this.emit('log', 'warn', 'proxy link overloaded: closing it', { message: (e as Error).message });
      this.proxy?.close(4009, 'FTVM_ERR_SEND_BUFFER_FULL');
    }
    this.core.outputProduced({ epoch: it.epoch, nowMs: now() });
    this.kick();
  };

  private onFault = (err: VmmError): void => {
    // The application's fault, not the host's: replaying its input on the secondary would
    // fault the same way. Roll back here, close the faulting connection, keep serving.
    this.emit('log', 'error', 'guest fault on the primary: rolling back to the last collected epoch', { code: err.code, message: err.message, conn: err.conn });
    this.rollingBack = true;
    this.core.guestFaulted({ conn: err.conn, code: err.code, nowMs: now() });
    this.kick();
  };

  /**
   * Restores the vCPU from the image of epoch `epoch` (see PrimaryAction 'rollback'): the
   * proxy hears of it first (on the ordered net link, before any output of the restored
   * guest), the faulting connection is closed, every other connection's input past the image
   * is replayed in connection order.
   */
  private async rollback(epoch: number, bad: number | undefined, code: string): Promise<void> {
    // Collected epochs still being applied to the image come first.
    await this.imageChain;
    if (this.stopped) return;
    const img = this.image;
    const devices = img.devices!;
    if (img.epoch !== epoch) this.emit('log', 'error', 'rollback image and core disagree on the epoch', { image: img.epoch, core: epoch });
    this.proxy?.trySend({ t: 'rollback', term: this.core.term, epoch: img.epoch, ...(bad !== undefined ? { conn: bad } : {}), code, maxConnId: devices.maxConnId, conns: devices.conns });
    this.retained.dropAfter(img.epoch);
    if (bad !== undefined) {
      this.aborted.add(bad);
      this.closedConns.add(bad);
    }
    try {
      // Copied in slices (the I/O loop keeps heartbeating) and moved to the vCPU, not cloned.
      const ckpt = await img.toCheckpointSliced(this.vmm.guest.digest);
      if (this.stopped) return;
      await this.vmm.rollback(ckpt, [], { transfer: true });
    } catch (e) {
      if (this.stopped) return;
      this.emit('log', 'error', 'guest fault: the rollback image did not restore', { code: 'FTVM_ERR_GUEST_INIT', message: (e as Error).message });
      this.core.guestFaulted({ conn: undefined, code: 'FTVM_ERR_GUEST_INIT', nowMs: now() });
      this.kick();
      return;
    }
    if (this.stopped) return;
    // The replay is built now, from everything received until the vCPU runs again (input that
    // came during the restore was only logged), and queued before any new input.
    const listed = new Map(devices.conns.map((c) => [c.conn, c]));
    const replay: GuestEvent[] = [];
    const known = [...new Set([...this.inRecv.keys(), ...(bad !== undefined ? [bad] : [])])].sort((a, b) => a - b);
    for (const conn of known) {
      const o = listed.get(conn);
      // Closed in the image and forgotten since: nothing to replay.
      if (o === undefined && conn <= devices.maxConnId) {
        this.inputLog.delete(conn);
        continue;
      }
      this.outEnd.set(conn, o?.outProduced ?? 0);
      if (o?.closed) continue;
      // The guest must see every connection the proxy knows opened, or it never reports it closed.
      if (conn > devices.maxConnId) replay.push({ k: 'open', conn });
      if (conn === bad || this.aborted.has(conn)) {
        this.inputLog.delete(conn);
        replay.push({ k: 'close', conn });
        continue;
      }
      const log = this.inputLog.get(conn);
      if (log !== undefined) for (const ch of log.peekFrom(o?.inConsumed ?? 0)) replay.push({ k: 'data', conn, data: ch.bytes });
      if (this.closedConns.has(conn)) replay.push({ k: 'close', conn });
    }
    for (const ev of replay) this.vmm.enqueue(ev);
    this.rollingBack = false;
    this.emit('log', 'warn', `guest rolled back to epoch ${img.epoch}${bad !== undefined ? `; connection ${bad} closed` : ''}`, { code, replayedEvents: replay.length });
    this.emit('rolledBack', code, img.epoch, bad);
    this.core.guestRestored(now());
    this.kick();
  }

  /**
   * The image at the collected epoch: the next rollback point (applied in slices, in epoch
   * order, behind the ones still under way); input it consumed is no longer needed.
   */
  private advanceImage(c: Collected): Promise<void> {
    this.imageChain = this.imageChain.then(() => this.image.applySliced(c));
    const listed = new Map(c.devices.conns.map((x) => [x.conn, x]));
    for (const [conn, log] of this.inputLog) {
      const o = listed.get(conn);
      if (o !== undefined) log.takeUpTo(o.inConsumed);
      else if (conn <= c.devices.maxConnId) this.inputLog.delete(conn);
    }
    return this.imageChain;
  }

  attachSecondary(link: Link): void {
    if (this.secondary && this.secondary !== link) this.secondary.close(4000, 'replaced');
    this.secondary = link;
    link.on('message', (m) => this.onSecondary(link, m));
    link.on('close', () => {
      if (this.secondary !== link) return;
      this.secondary = null;
      this.core.secondaryDisconnected(now());
      this.kick();
    });
    this.emit('log', 'info', 'secondary connected: full sync starts');
    this.core.secondaryConnected(now());
    this.kick();
  }

  get hasSecondary(): boolean {
    return this.secondary !== null;
  }

  attachProxy(link: Link, promoted?: StateOffsets): void {
    if (this.proxy && this.proxy !== link) this.proxy.close(4000, 'replaced by a new proxy link');
    this.proxy = link;
    link.on('message', (m, payload) => this.onProxy(link, m, payload));
    link.on('close', () => {
      if (this.proxy === link) this.proxy = null;
    });
    if (promoted) {
      for (const c of promoted.conns) {
        this.inRecv.set(c.conn, c.inConsumed);
        this.outEnd.set(c.conn, c.outProduced);
      }
      this.maxConn = promoted.maxConnId;
      link.trySend({ t: 'offsets', term: this.core.term, epoch: promoted.epoch, maxConnId: promoted.maxConnId, conns: promoted.conns });
    } else {
      link.trySend({
        t: 'status',
        role: 'primary',
        term: this.core.term,
        epoch: this.core.committedEpoch,
        state: this.core.state,
        detail: { live: this.liveOffsets() as unknown as Opaque },
      });
    }
  }

  private liveOffsets(): StateOffsets {
    const conns = [...new Set([...this.inRecv.keys(), ...this.outEnd.keys()])].map((conn) => ({
      conn,
      inConsumed: this.inRecv.get(conn) ?? 0,
      outProduced: this.outEnd.get(conn) ?? 0,
      closed: this.closedConns.has(conn),
    }));
    return { epoch: this.core.committedEpoch, maxConnId: this.maxConn, conns };
  }

  private readonly stalls: StallWatch;
  private heartbeat(): void {
    if (this.stopped) return;
    const blocked = this.stalls.tick(performance.now());
    if (blocked !== undefined) this.emit('log', 'warn', 'event loop blocked: heartbeats to peers were late', { ms: Math.round(blocked) });
    const hb: Message = { t: 'heartbeat', term: this.core.term, epoch: this.core.committedEpoch, sentAtMs: Date.now() };
    this.proxy?.trySend(hb);
    this.secondary?.trySend(hb);
  }

  private onProxy(link: Link, m: Message, payload: Uint8Array): void {
    if (link !== this.proxy || this.stopped) return;
    this.proxyHeardAt = performance.now();
    switch (m.t) {
      case 'open':
        if (m.conn > this.maxConn) this.maxConn = m.conn;
        if (!this.inRecv.has(m.conn)) this.inRecv.set(m.conn, 0);
        if (!this.rollingBack) this.vmm.open(m.conn);
        return;
      case 'input': {
        if (this.aborted.has(m.conn)) return;
        const have = this.inRecv.get(m.conn) ?? 0;
        const end = m.offset + payload.length;
        if (end <= have) return;
        if (m.offset > have) {
          this.emit('log', 'error', 'input gap from the proxy: closing the link', { code: 'FTVM_ERR_INPUT_GAP', conn: m.conn, have, offset: m.offset });
          link.close(4099, 'FTVM_ERR_INPUT_GAP');
          return;
        }
        this.inRecv.set(m.conn, end);
        const data = m.offset < have ? payload.subarray(have - m.offset) : payload;
        let log = this.inputLog.get(m.conn);
        if (log === undefined) this.inputLog.set(m.conn, (log = new ByteQueue(have)));
        log.push(data);
        if (!this.rollingBack) this.vmm.input(m.conn, data);
        return;
      }
      case 'close':
        if (this.aborted.has(m.conn)) return;
        this.closedConns.add(m.conn);
        if (!this.rollingBack) this.vmm.close(m.conn);
        return;
      case 'confirm':
        this.confirmed = Math.max(this.confirmed, m.epoch);
        this.retained.confirm(m.epoch);
        return;
      case 'resend':
        for (const { conn, offset } of m.conns) {
          for (const c of this.retained.from(conn, offset)) link.trySend({ t: 'output', term: this.core.term, conn, epoch: c.epoch, offset: c.offset }, c.data);
        }
        return;
      case 'fence':
        if (m.term > this.core.term) this.fence(m.term);
        return;
      case 'promote_deny':
        // The proxy answers a primary's handover request only this way (success is a fence).
        this.emit('handoverDenied', m.reason);
        return;
      default:
        return;
    }
  }

  // ---- handover (migration of this primary to its secondary; see @ftvm/node migrate.ts) ----

  /** Holds the guest for its last epoch; handoverReady follows its ack (see PrimaryCore.startHandover). */
  startHandover(): void {
    this.core.startHandover(now());
    this.kick();
  }

  /** Resumes the guest after a handover the proxy refused or never answered. */
  abortHandover(): void {
    this.core.abortHandover(now());
    this.kick();
  }

  /** Sends a handover request (ready: false prepares: the proxy dials `to`). False: no proxy link. */
  sendHandover(to: string, ready: boolean, epoch: number, heldMs: number): boolean {
    // The proxy checks the handover's epoch against its committed one: no commit may wait.
    if (this.lazyCommit) this.sendCommit(this.lazyCommit);
    return this.proxy?.trySend({ t: 'handover', term: this.core.term, epoch, to, ready, heldMs: Math.max(0, Math.round(heldMs)) }) ?? false;
  }

  get hasProxy(): boolean {
    return this.proxy !== null && !this.proxy.closed;
  }

  private onSecondary(link: Link, m: Message): void {
    if (link !== this.secondary || this.stopped) return;
    const t = now();
    switch (m.t) {
      case 'ack': {
        this.ackProxied = m.proxied === true;
        const sent = this.sentAt.get(m.epoch);
        for (const e of this.sentAt.keys()) if (e <= m.epoch) this.sentAt.delete(e);
        this.core.ack({ term: m.term, epoch: m.epoch, nowMs: t });
        // After the core took the ack, so listeners see the window without this epoch.
        if (sent !== undefined) this.emit('acked', m.epoch, t - sent);
        break;
      }
      case 'nack':
        this.emit('log', 'warn', 'secondary refused a checkpoint', { epoch: m.epoch, code: m.code, message: m.message });
        this.core.nack({ term: m.term, epoch: m.epoch, code: m.code, nowMs: t });
        break;
      case 'heartbeat':
        this.core.secondaryHeard(t);
        break;
      case 'scrub_res':
        this.onScrub(m.epoch, m.fromPage, m.count, m.hashes);
        return;
      case 'fence':
        if (m.term > this.core.term) this.fence(m.term);
        return;
      default:
        return;
    }
    this.kick();
  }

  private onScrub(epoch: number, fromPage: number, count: number, hashes: Uint8Array): void {
    const mine = this.scrubPending.get(epoch);
    for (const e of this.scrubPending.keys()) if (e <= epoch) this.scrubPending.delete(e);
    if (!mine || mine.fromPage !== fromPage || mine.count !== count) return;
    const theirs = new Uint32Array(hashes.buffer.slice(hashes.byteOffset, hashes.byteOffset + count * 8));
    const bad: number[] = [];
    for (let i = 0; i < count; i++) if (theirs[i * 2] !== mine.hashes[i * 2] || theirs[i * 2 + 1] !== mine.hashes[i * 2 + 1]) bad.push(fromPage + i);
    if (bad.length) {
      this.emit('log', 'error', 'integrity scrub: the secondary image differs from memory; resending those pages', {
        code: 'FTVM_ERR_SCRUB_MISMATCH',
        epoch,
        pages: bad.slice(0, 16),
        count: bad.length,
      });
      // The encoder's copy of these pages is not what the secondary holds: send them whole.
      this.encoder.forgetPages(bad);
      this.vmm.markDirty(bad);
    }
    this.emit('scrub', count, bad);
  }

  private fence(term: number): void {
    this.emit('log', 'warn', `fenced by term ${term}: this primary stops its guest`, { code: 'FTVM_ERR_FENCED', term: this.core.term });
    this.core.fenced(term, now());
    this.kick();
  }

  /** Schedules one drive per microtask: many outputs of one turn cost one pass. */
  private kick(): void {
    if (this.kicked || this.stopped) return;
    this.kicked = true;
    queueMicrotask(() => {
      this.kicked = false;
      this.drive();
    });
  }

  private drive(): void {
    if (this.driving || this.stopped) return;
    this.driving = true;
    try {
      for (let actions = this.core.takeActions(); actions.length; actions = this.core.takeActions()) {
        for (const a of actions) this.perform(a);
        if (this.stopped) return;
      }
    } finally {
      this.driving = false;
    }
    // sync-io: the vCPU held itself after an output; the core did not hold it for a checkpoint
    // (unprotected, or a collect was already under way): let it run on.
    if (this.vmm.heldForOutput && !this.core.vcpuHeld) this.vmm.resume();
    if (this.timer) clearTimeout(this.timer);
    const d = this.core.nextDeadline();
    if (d !== undefined) {
      this.timer = setTimeout(() => {
        this.timer = null;
        // Read what already waits on the sockets (an ack or heartbeat that came while this
        // loop was busy) before judging the secondary silent: timers run before I/O polling.
        setImmediate(() => {
          if (this.stopped) return;
          this.core.tick(now());
          this.drive();
        });
      }, Math.max(0, d - now()));
    }
  }

  private perform(a: PrimaryAction): void {
    switch (a.type) {
      case 'collect':
        this.collect(a.epoch, a.full);
        return;
      case 'pauseVcpu':
        void this.vmm.pause().catch(() => undefined);
        return;
      case 'resumeVcpu':
        this.vmm.resume();
        return;
      case 'startFullSync':
        this.encoder.forget();
        return;
      case 'sendCheckpoint':
        this.sendCheckpoint(a.term, a.epoch, a.full);
        return;
      case 'cancelCheckpoints':
        for (const [e, st] of this.staged) {
          if (!this.sentAt.has(e) && !this.queued.has(e)) {
            this.encoder.forgetPages(st.c.pages);
            this.staged.delete(e);
          }
        }
        return;
      case 'disconnectSecondary':
        this.emit('log', 'warn', 'secondary silent: closing the replication link', { reason: a.reason });
        this.secondary?.close(4000, a.reason.slice(0, 100));
        return;
      case 'commit': {
        // An epoch queued for sending stays staged until it is streamed (an unacked commit can precede it).
        for (const e of this.staged.keys()) if (e <= a.epoch && !this.queued.has(e)) this.staged.delete(e);
        const msg: Message = { t: 'commit', term: a.term, epoch: a.epoch, acked: a.acked, maxConnId: a.offsets.maxConnId, conns: a.offsets.conns };
        // The secondary told the proxy itself: this commit only confirms the epoch's output
        // reached the proxy (so it may drop its retained copy), and commits are cumulative, so
        // one per LAZY_COMMIT_MS carries them all. Unprotected, the proxy hears it only from here.
        if (a.acked && this.ackProxied) this.commitLazily(msg);
        else this.sendCommit(msg);
        this.emit('committed', a.epoch, a.acked);
        return;
      }
      case 'protectionChanged':
        this.emit('protection', a.protected, a.reason);
        return;
      case 'handoverReady':
        this.emit('handoverReady', a.epoch);
        return;
      case 'handoverAborted':
        this.emit('handoverAborted', a.reason);
        return;
      case 'stop':
        this.stop(a.reason);
        this.emit('stopped', a.reason, this.core.term);
        return;
      case 'rollback':
        if (this.contained) this.emit('contained', (this.contained = false), `rolling back after ${a.code}`);
        void this.rollback(a.epoch, a.conn, a.code);
        return;
      case 'guestContained':
        this.emit('log', 'error', `guest fault budget spent: ${a.reason}`, { code: 'FTVM_ERR_GUEST_FAULT_BUDGET', faults: a.faults });
        this.emit('contained', (this.contained = true), a.reason);
        return;
    }
  }

  private collect(epoch: number, full: boolean): void {
    const held = this.core.vcpuHeld;
    const scrubPages = full || !this.secondary ? 0 : this.scrubPacer.take(now());
    const scrub = scrubPages > 0 ? { fromPage: this.scrubCursor, count: scrubPages } : undefined;
    // A full sync copies memory while the guest runs (background): its hold is not O(memory).
    this.vmm.collect(full, !held, scrub, { background: full }).then(
      (c) => {
        if (this.stopped) return;
        const applied = this.advanceImage(c);
        if (c.epoch !== epoch) this.emit('log', 'error', 'epoch numbering diverged between core and vCPU', { core: epoch, vcpu: c.epoch });
        const t = now();
        if (c.scrub) {
          const next = c.scrub.fromPage + c.scrub.count;
          this.scrubCursor = next * PAGE_BYTES >= c.memBytes ? 0 : next;
        }
        this.staged.set(c.epoch, { c, full, collectedAt: t, applied });
        this.emit('collected', c.epoch, c.pauseMs, c.pages.length, t - this.lastEpochEnd, c.earlyPages);
        this.lastEpochEnd = t;
        this.core.epochCollected({
          epoch: c.epoch,
          nowMs: t,
          bytes: c.data.length + (c.disk?.data.length ?? 0),
          offsets: { epoch: c.epoch, maxConnId: c.devices.maxConnId, conns: c.devices.conns },
        });
        this.kick();
      },
      (e: Error) => {
        // A guest fault voids the collect under way (the core knows).
        if (!this.stopped && !this.rollingBack) this.emit('log', 'error', 'collect failed', { message: e.message });
      },
    );
  }

  /**
   * Checkpoints stream one after another (frames of two epochs never interleave). A large
   * one is encoded a batch at a time, yielding to the I/O loop between batches, so
   * heartbeats and client output keep flowing while 256 MiB are compressed.
   */
  private sendChain: Promise<void> = Promise.resolve();
  /** Epochs handed to sendChain and not streamed yet. */
  private queued = new Set<number>();

  private sendCheckpoint(term: number, epoch: number, full: boolean): void {
    this.queued.add(epoch);
    this.sendChain = this.sendChain
      .then(() => this.streamCheckpoint(term, epoch, full))
      .catch((e: Error) => {
        this.emit('log', 'error', 'sending a checkpoint failed: closing the replication link', { epoch, message: e.message });
        this.secondary?.close(4099, 'checkpoint send failed');
      })
      .finally(() => this.queued.delete(epoch));
  }

  private async streamCheckpoint(term: number, epoch: number, full: boolean): Promise<void> {
    const st = this.staged.get(epoch);
    const link = this.secondary;
    if (!st || !link || this.stopped) return;
    const { c } = st;
    if (full) {
      this.encoder.forget();
      this.digest = new ImageDigest();
    }
    // The disk's digest after this epoch goes in the header: the secondary checks the blocks it stages against it.
    let disk: WireDisk | undefined;
    if (c.disk) {
      if (full) this.diskDigest = new ImageDigest();
      for (let k = 0; k < c.disk.blocks.length; k++) this.diskDigest.update(c.disk.blocks[k]!, c.disk.data, k * PAGE_BYTES);
      disk = { totalBlocks: c.disk.totalBlocks, count: c.disk.blocks.length, digest: Buffer.from(this.diskDigest.value()).toString('hex') };
    }
    const devices: WireDevices = { ...c.devices, conns: packConns(c.devices.conns), output: packOutput(this.retained.ofEpoch(epoch)), confirmed: this.confirmed, disk };
    const begin = { term, epoch, memBytes: c.memBytes, pageCount: c.pages.length, globals: c.globals, devices: devices as unknown as Opaque, full };
    // A checkpoint of one page batch and no disk blocks (most epochs) goes as one `ckpt` frame.
    const single = !c.disk && c.pages.length <= PAGES_PER_FRAME;
    let singlePayload: Uint8Array | undefined;
    if (!single && !link.trySend({ t: 'ckpt_begin', ...begin })) return;
    this.digest.grow(c.memBytes / PAGE_BYTES);
    let wire = 0;
    const byCodec: Record<string, { pages: number; bytes: number }> = {};
    let slice = performance.now();
    for (let seq = 0, i = 0; i < c.pages.length; seq++, i += PAGES_PER_FRAME) {
      const n = Math.min(PAGES_PER_FRAME, c.pages.length - i);
      const pages = c.pages.subarray(i, i + n);
      const data = c.data.subarray(i * PAGE_BYTES, (i + n) * PAGE_BYTES);
      for (let k = 0; k < n; k++) this.digest.update(pages[k]!, data, k * PAGE_BYTES);
      const batch = this.encoder.encodeBatch(pages, data);
      wire += batch.wireBytes;
      for (const [k, v] of Object.entries(batch.byCodec)) {
        const agg = (byCodec[k] ??= { pages: 0, bytes: 0 });
        agg.pages += v.pages;
        agg.bytes += v.bytes;
      }
      if (single) singlePayload = batch.payload;
      else if (!link.trySend({ t: 'ckpt_pages', term, epoch, seq, count: n }, batch.payload)) return;
      if (performance.now() - slice > 5) {
        // Let the I/O loop run (heartbeats, output, acks), and let the socket drain.
        await link.drained(64 << 20);
        await new Promise<void>((r) => setImmediate(r));
        if (this.stopped || this.secondary !== link) return;
        slice = performance.now();
      }
    }
    // The epoch's disk blocks, between its pages and its end: committed with the same epoch.
    let diskWire = 0;
    const diskBlocks = c.disk?.blocks.length ?? 0;
    if (c.disk) {
      const { blocks, data } = c.disk;
      for (let seq = 0, i = 0; i < blocks.length; seq++, i += PAGES_PER_FRAME) {
        const n = Math.min(PAGES_PER_FRAME, blocks.length - i);
        const batch = this.blockEncoder.encodeBatch(blocks.subarray(i, i + n), data.subarray(i * PAGE_BYTES, (i + n) * PAGE_BYTES));
        diskWire += batch.wireBytes;
        if (!link.trySend({ t: 'ckpt_blocks', term, epoch, seq, count: n }, batch.payload)) return;
        if (performance.now() - slice > 5) {
          await link.drained(64 << 20);
          await new Promise<void>((r) => setImmediate(r));
          if (this.stopped || this.secondary !== link) return;
          slice = performance.now();
        }
      }
      st.c.disk = { totalBlocks: c.disk.totalBlocks, blocks: new Uint32Array(0), data: new Uint8Array(0) };
    }
    const raw = c.pages.length * PAGE_BYTES;
    const end = { pageCount: c.pages.length, digest: this.digest.value(), wireBytes: wire, rawBytes: raw };
    if (single ? !link.trySend({ t: 'ckpt', ...begin, ...end }, singlePayload) : !link.trySend({ t: 'ckpt_end', term, epoch, ...end })) return;
    // Integrity scrub: the secondary answers with the hashes of the same slice of its image at this epoch.
    if (c.scrub && c.scrub.count > 0) {
      const hashes = new Uint32Array(c.scrub.count * 2);
      for (let i = 0; i < c.scrub.count; i++) pageHashInto(c.scrub.data, i * PAGE_BYTES, hashes, i * 2);
      this.vmm.recycle(c.scrub.data);
      this.scrubPending.set(epoch, { fromPage: c.scrub.fromPage, count: c.scrub.count, hashes });
      link.trySend({ t: 'scrub_req', term, epoch, fromPage: c.scrub.fromPage, count: c.scrub.count });
    }
    const t = now();
    this.sentAt.set(epoch, t);
    // Pages are encoded and in the rollback image: the staged copy is no longer needed (a nack
    // triggers a full sync); its buffer goes back to the vCPU for a later epoch's copy.
    const data = c.data;
    void st.applied.then(() => this.vmm.recycle(data));
    st.c.data = new Uint8Array(0);
    this.emit('sent', { epoch, pauseMs: c.pauseMs, dirtyPages: c.pages.length, wireBytes: wire, rawBytes: raw, byCodec, diskBlocks, diskWireBytes: diskWire });
    this.core.checkpointSent({ epoch, nowMs: t });
    this.kick();
  }

  /** The last ack said the secondary sent its commit to the proxy itself. */
  private ackProxied = false;
  private lazyCommit: Message | null = null;
  private lazyTimer: NodeJS.Timeout | null = null;

  private sendCommit(msg: Message): void {
    this.lazyCommit = null;
    if (this.lazyTimer) clearTimeout(this.lazyTimer);
    this.lazyTimer = null;
    this.proxy?.trySend(msg);
  }

  private commitLazily(msg: Message): void {
    this.lazyCommit = msg;
    this.lazyTimer ??= setTimeout(() => {
      this.lazyTimer = null;
      if (this.lazyCommit && !this.stopped) this.sendCommit(this.lazyCommit);
    }, LAZY_COMMIT_MS);
  }

  stop(reason: string): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.beat);
    if (this.timer) clearTimeout(this.timer);
    if (this.lazyTimer) clearTimeout(this.lazyTimer);
    this.vmm.off('output', this.onOutput);
    this.vmm.off('fault', this.onFault);
    this.emit('log', 'warn', 'primary stopped', { reason });
    void this.vmm.stop().catch(() => undefined);
    this.secondary?.close(4000, 'primary stopped');
  }

  /** Whether the current proxy link carried a message within `ms` (the proxy heartbeats every 100 ms). */
  proxyAlive(ms: number): boolean {
    return this.proxy !== null && performance.now() - this.proxyHeardAt < ms;
  }

  detachProxy(): Link | null {
    const l = this.proxy;
    this.proxy = null;
    l?.removeAllListeners('message');
    l?.removeAllListeners('close');
    return l;
  }
}
