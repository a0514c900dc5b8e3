import { EventEmitter } from 'node:events';
import { MAX_MEMORY_BYTES, PAGE_BYTES, WASM_PAGE_BYTES } from '@ftvm/guest-abi';
import { StallWatch, SecondaryCore, type SecondaryAction } from '@ftvm/core';
import { ImageDigest, PageDecoder, digestEquals, pageHashInto, unpackConns, unpackOutput, type ConnOffsets, type Link, type Message, type MessageOf } from '@ftvm/protocol';
import { PageUndoLog } from './undo-log.js';
import { GuestImage, type DeviceState, type DiskSpec, type GlobalValue, type Vmm } from '@ftvm/vmm';
import { ReadyVcpu } from './ready-vcpu.js';
import { RetainedOutput, type RetainedChunk } from './retained.js';
import { DiskJournal, type DiskJournalOptions, type RecoverResult } from './disk-journal.js';

export interface SecondaryRuntimeOptions {
  term: number;
  /** Silence from the primary after which promotion is requested, ms. Default 1000. */
  primaryTimeoutMs?: number;
  /** Heartbeat period towards the proxy and the primary, ms. Default 100. */
  heartbeatMs?: number;
  /**
   * This node's disk file: each epoch's blocks are committed to it through a redo journal
   * with the epoch's memory (see disk-journal.ts). Without it, a primary with a disk is refused.
   */
  disk?: DiskSpec;
  /** Test hooks of the disk journal (crash injection). */
  journal?: DiskJournalOptions;
  /**
   * Prestarts a vCPU of the guest (Vmm.prestart): the committed image is then kept in it too
   * (see ready-vcpu.ts), so a promotion hands it over running instead of restoring the image.
   */
  prestart?: () => Promise<Vmm>;
}

export interface SecondaryRuntimeEvents {
  /**
   * The proxy promoted this node: start the guest from `image` as primary in `term`; `vcpu`,
   * when not null, is a prestarted vCPU whose memory holds the image (Vmm.restoreInto inPlace).
   */
  promote: [image: GuestImage, digest: ImageDigest, term: number, retained: RetainedOutput, vcpu: Vmm | null];
  applied: [epoch: number, pages: number, wireBytes: number, rawBytes: number];
  /** An epoch's disk blocks are durable (the ack is sent after this). */
  diskCommitted: [epoch: number, blocks: number, durationMs: number];
  log: [level: 'error' | 'warn' | 'info' | 'debug', msg: string, fields?: Record<string, unknown>];
}

interface Staging {
  epoch: number;
  full: boolean;
  begin: MessageOf<'ckpt_begin'>;
  /** Pages staged so far. */
  count: number;
  /**
   * Incremental: pages are written into the committed image in place; this holds what they
   * overwrote (and `oldMemBytes` the size before the epoch grew it), so a discard undoes them.
   */
  undo: PageUndoLog | null;
  oldMemBytes: number;
  /** Full: the new image itself, written page by page (applying it is a swap, not a 1 GiB copy). */
  fresh: GuestImage | null;
  /** Candidate digest: the committed digest with the staged pages applied. */
  digest: ImageDigest;
  failed: string | null;
  /** The checkpoint's disk part (null: the primary has no disk): what it announced, blocks staged, candidate disk digest. */
  disk: { meta: WireDisk; count: number; digest: ImageDigest } | null;
  /** The devices' connection table and output, unpacked (empty when they were malformed: then `failed`). */
  conns: ConnOffsets[];
  output: RetainedChunk[];
}

/** The disk part of a checkpoint, in ckpt_begin's devices: its blocks follow in ckpt_blocks frames. */
export interface WireDisk {
  /** Disk size, blocks (the secondary's must be equal). */
  totalBlocks: number;
  /** Blocks this checkpoint carries (full: every non-zero block). */
  count: number;
  /** Hex ImageDigest of the whole disk after this checkpoint (zero blocks add nothing). */
  digest: string;
}

/** Device state as the primary puts it in ckpt_begin: the VMM's plus output to retain. */
export interface WireDevices extends Omit<DeviceState, 'conns'> {
  /** The VMM's connection states as a packed table (packConns). */
  conns: Uint8Array;
  /** Output the guest produced during this epoch (kept until the proxy confirms it), packed (packOutput). */
  output: Uint8Array;
  /** Every output of epochs <= confirmed has reached the proxy. */
  confirmed: number;
  disk?: WireDisk;
}

const now = () => performance.now();
const EMPTY = new Uint8Array(0);
/** How long the inbox handles replication messages before letting the event loop run. */
const INBOX_SLICE_MS = 20;
/** Queued replication payload past which the link stops reading until the inbox drains. */
const INBOX_HIGH_BYTES = 32 << 20;

/**
 * The secondary: stages each checkpoint, verifies its digest, applies it atomically
 * (a partial checkpoint is never applied) and acks. It keeps the committed image in
 * memory, so a promotion restores without reading anything.
 */
export class SecondaryRuntime extends EventEmitter<SecondaryRuntimeEvents> {
  readonly core: SecondaryCore;
  readonly image = new GuestImage();
  private digest = new ImageDigest();
  private decoder = new PageDecoder();
  readonly retained = new RetainedOutput();
  private staging: Staging | null = null;
  private primary: Link | null = null;
  private proxy: Link | null = null;
  private proxyHeardAt = -Infinity;
  private timer: NodeJS.Timeout | null = null;
  private beat: NodeJS.Timeout;
  private stopped = false;
  /** The disk's redo journal (null without a disk) and the committed disk's digest. */
  private journal: DiskJournal | null = null;
  private diskDigest = new ImageDigest();
  /** Before-images of the pages the staged incremental epoch wrote in place (one log, reset per epoch). */
  private readonly undo = new PageUndoLog();
  private blockDecoder = new PageDecoder();
  /**
   * A disk commit in progress (async: see DiskJournal.commitAsync). Until it settles the
   * epoch's ack is held, checkpoint messages wait in `heldMessages`, and a promotion waits.
   */
  private diskBusy: Promise<void> | null = null;
  private heldMessages: Array<[Link, Message, Uint8Array]> = [];
  private heldAck: { term: number; epoch: number } | null = null;
  /** Connection offsets of the committed image (what a commit tells the proxy). */
  private committedConns: { maxConnId: number; conns: ConnOffsets[] } = { maxConnId: 0, conns: [] };
  /**
   * Replication messages read and not yet handled. Decoding and staging a large checkpoint
   * runs in slices of INBOX_SLICE_MS, yielding to the event loop between them, so this node's
   * heartbeats keep leaving (and the primary's are read) while it applies 256 MiB on a
   * loaded host. Past INBOX_HIGH_BYTES the socket is paused (TCP backpressure to the primary).
   */
  private inbox: Array<[Link, Message, Uint8Array]> = [];
  private inboxHead = 0;
  private inboxBytes = 0;
  private inboxScheduled = false;
  private inboxPaused: Link | null = null;
  /** When inline handling began in this turn of the event loop (null: not yet). */
  private sliceStart: number | null = null;
  /** What the journal recovery did at start (a crash during a disk commit is finished or undone). */
  readonly diskRecovery: RecoverResult | null = null;
  /** When the core decided to promote this node (performance.now(); null: not promoted). */
  promotedAt: number | null = null;
  /** The committed image kept in a prestarted vCPU (null without opts.prestart). */
  readonly ready: ReadyVcpu | null = null;

  constructor(readonly opts: SecondaryRuntimeOptions) {
    super();
    if (opts.disk) {
      this.journal = new DiskJournal(opts.disk, opts.journal);
      this.diskRecovery = this.journal.recover();
    }
    if (opts.prestart) {
      this.ready = new ReadyVcpu({
        prestart: opts.prestart,
        image: () => this.image,
        committedOnly: () => this.staging === null,
        log: (level, msg, fields) => this.emit('log', level, msg, fields),
      });
    }
    this.core = new SecondaryCore({ nowMs: now(), term: opts.term, primaryTimeoutMs: opts.primaryTimeoutMs ?? 1000 });
    // A blocked loop past half the peers' default failure timeout (1 s) is logged.
    this.stalls = new StallWatch(opts.heartbeatMs ?? 100, 500);
    this.beat = setInterval(() => this.heartbeat(), opts.heartbeatMs ?? 100);
    this.beat.unref();
  }

  get term(): number {
    return this.core.term;
  }
  get committedEpoch(): number {
    return this.core.committedEpoch;
  }
  get hasPrimary(): boolean {
    return this.primary !== null;
  }

  /** A primary's replication link (it dialed us, or we joined it). Replaces any previous one. */
  attachPrimary(link: Link): void {
    if (this.primary && this.primary !== link) this.primary.close(4000, 'replaced by a new replication link');
    this.primary = link;
    link.on('message', (m, payload) => this.receive(link, m, payload));
    link.on('close', () => {
      if (this.primary !== link) return;
      // What the primary sent before the close is handled before the close, as it was read.
      this.drainInbox(Infinity);
      this.primary = null;
      this.core.primaryDisconnected(now());
      this.drive();
    });
    this.core.primaryConnected(now());
    this.drive();
  }

  /** The proxy's net link. */
  attachProxy(link: Link): void {
    if (this.proxy && this.proxy !== link) this.proxy.close(4000, 'replaced by a new proxy link');
    this.proxy = link;
    link.on('message', (m) => this.onProxy(m));
    link.on('close', () => {
      if (this.proxy === link) this.proxy = null;
    });
    this.sendStatus();
  }

  sendStatus(): void {
    this.proxy?.trySend({ t: 'status', role: 'secondary', term: this.core.term, epoch: this.core.committedEpoch, state: this.core.state });
  }

  private readonly stalls: StallWatch;
  /** The last reason the proxy gave for refusing a promotion (logged when it changes). */
  private lastDenial = '';
  private heartbeat(): void {
    if (this.stopped) return;
    const blocked = this.stalls.tick(performance.now());
    if (blocked !== undefined) this.emit('log', 'warn', 'event loop blocked: heartbeats to peers were late', { ms: Math.round(blocked) });
    const hb: Message = { t: 'heartbeat', term: this.core.term, epoch: this.core.committedEpoch, sentAtMs: Date.now() };
    this.proxy?.trySend(hb);
    this.primary?.trySend(hb);
  }

  private onProxy(m: Message): void {
    this.proxyHeardAt = performance.now();
    const t = now();
    switch (m.t) {
      case 'promote':
        this.core.promote({ term: m.term, nowMs: t });
        break;
      case 'fence':
        this.core.fence({ term: m.term });
        break;
      case 'promote_deny':
        this.core.promoteDenied({ term: m.term, reason: m.reason });
        break;
      default:
        return;
    }
    this.drive();
  }

  /** A message from the primary's link: liveness at once, the rest in order through the inbox. */
  private receive(link: Link, m: Message, payload: Uint8Array): void {
    if (m.t === 'heartbeat') {
      this.onPrimary(link, m, payload);
      return;
    }
    this.inbox.push([link, m, payload]);
    this.inboxBytes += payload.length;
    if (this.inboxScheduled) return;
    // One budget for everything handled inline in this turn of the loop: libuv reads a socket
    // up to 32 times per poll, and each read can complete a frame.
    if (this.sliceStart === null) {
      this.sliceStart = performance.now();
      setImmediate(() => (this.sliceStart = null));
    }
    this.drainInbox(this.sliceStart + INBOX_SLICE_MS);
  }

  /** Handles queued messages until `until` (performance.now()); reschedules itself (after I/O and timers) for the rest. */
  private drainInbox(until: number): void {
    this.inboxScheduled = false;
    while (this.inboxHead < this.inbox.length && performance.now() < until) {
      const [l, m, p] = this.inbox[this.inboxHead]!;
      this.inbox[this.inboxHead++] = undefined as never;
      this.inboxBytes -= p.length;
      this.onPrimary(l, m, p);
    }
    if (this.inboxHead < this.inbox.length) {
      const l = this.inbox[this.inbox.length - 1]![0];
      if (this.inboxBytes > INBOX_HIGH_BYTES && this.inboxPaused === null && !l.closed) {
        l.pause();
        this.inboxPaused = l;
      }
      this.inboxScheduled = true;
      // A timer, not setImmediate: the timers phase (heartbeats, the failure detector) runs first.
      setTimeout(() => this.drainInbox(performance.now() + INBOX_SLICE_MS), 0);
    } else {
      this.inbox = [];
      this.inboxHead = 0;
      if (this.inboxPaused !== null) {
        if (!this.inboxPaused.closed) this.inboxPaused.resume();
        this.inboxPaused = null;
      }
    }
  }

  private onPrimary(link: Link, m: Message, payload: Uint8Array): void {
    if (link !== this.primary) return;
    // Liveness is never held back (a long disk commit must not look like a dead primary).
    if (this.diskBusy && m.t !== 'heartbeat') {
      this.heldMessages.push([link, m, payload]);
      return;
    }
    const t = now();
    switch (m.t) {
      case 'heartbeat':
        this.core.heartbeat({ term: m.term, nowMs: t });
        break;
      case 'ckpt': {
        // One frame for a small checkpoint: handled as its begin, its pages (when any), its end.
        const { digest, wireBytes, rawBytes, ...begin } = m;
        this.onPrimary(link, { ...begin, t: 'ckpt_begin' }, EMPTY);
        if (m.pageCount > 0 || payload.length > 0) this.onPrimary(link, { t: 'ckpt_pages', term: m.term, epoch: m.epoch, seq: 0, count: m.pageCount }, payload);
        this.onPrimary(link, { t: 'ckpt_end', term: m.term, epoch: m.epoch, pageCount: m.pageCount, digest, wireBytes, rawBytes }, EMPTY);
        return;
      }
      case 'ckpt_begin':
        this.core.begin({ term: m.term, epoch: m.epoch, full: m.full, nowMs: t });
        // The core's stageBegin action (drained below) creates the staging with this header.
        this.pendingBegin = m;
        break;
      case 'ckpt_pages':
        this.pendingPayload = payload;
        this.pendingCount = m.count;
        this.core.pages({ term: m.term, epoch: m.epoch, seq: m.seq, pageCount: m.count, bytes: payload.length, nowMs: t });
        break;
      case 'ckpt_blocks':
        this.stageBlocks(m.term, m.epoch, m.count, payload);
        return;
      case 'scrub_req': {
        // Messages are ordered: the image is at the epoch the request names once that epoch applied.
        if (m.epoch !== this.core.committedEpoch || this.staging?.undo) return;
        const mem = this.image.memory();
        const hashes = new Uint32Array(m.count * 2);
        const page = new Uint8Array(PAGE_BYTES);
        for (let i = 0; i < m.count; i++) {
          const off = (m.fromPage + i) * PAGE_BYTES;
          // The hash of what the image really holds (not the digest's record of what it was sent).
          const src = off + PAGE_BYTES <= mem.length ? mem : (page.fill(0), page);
          pageHashInto(src, src === mem ? off : 0, hashes, i * 2);
        }
        link.trySend({ t: 'scrub_res', term: m.term, epoch: m.epoch, fromPage: m.fromPage, count: m.count, hashes: new Uint8Array(hashes.buffer) });
        return;
      }
      case 'ckpt_end': {
        const st = this.staging;
        if (st && st.epoch === m.epoch && st.failed === null && st.disk) {
          const d = st.disk;
          if (d.count !== d.meta.count) st.failed = `disk blocks ${d.count}/${d.meta.count}`;
          else if (Buffer.from(d.digest.value()).toString('hex') !== d.meta.digest) st.failed = 'disk digest differs';
        }
        const ok =
          st !== null && st.epoch === m.epoch && st.failed === null && st.count === m.pageCount && digestEquals(st.digest.value(), m.digest);
        if (st && st.epoch === m.epoch && !ok) {
          this.emit('log', 'error', 'checkpoint not applied', {
            epoch: m.epoch,
            code: st.failed ? 'FTVM_ERR_CHECKPOINT_CORRUPT' : 'FTVM_ERR_DIGEST_MISMATCH',
            reason: st.failed ?? `pages ${st.count}/${m.pageCount}, digest differs`,
          });
        }
        this.pendingEnd = m;
        this.core.end({ term: m.term, epoch: m.epoch, pageCount: m.pageCount, digestOk: ok, nowMs: t });
        break;
      }
      default:
        return;
    }
    this.drive();
  }

  private pendingBegin: MessageOf<'ckpt_begin'> | null = null;
  private pendingPayload: Uint8Array | null = null;
  private pendingCount = 0;
  private pendingEnd: MessageOf<'ckpt_end'> | null = null;

  /** Stages a ckpt_blocks frame into the disk journal (blocks are not the core's business: it bounds pages). */
  private stageBlocks(term: number, epoch: number, count: number, payload: Uint8Array): void {
    const st = this.staging;
    if (!st || st.epoch !== epoch || st.begin.term !== term || st.failed) return;
    if (!st.disk || !this.journal) {
      st.failed = 'disk blocks in a checkpoint that announced no disk';
      return;
    }
    const d = st.disk;
    const journal = this.journal;
    try {
      this.blockDecoder.decodeInto(
        payload,
        {
          // Blocks are sent ZERO/RAW/LZ4 (no XOR delta: the primary keeps no copy of the disk).
          base: () => undefined,
          put: (b, block) => {
            if (d.count >= d.meta.count) throw new Error(`more disk blocks than the ${d.meta.count} announced`);
            journal.add(b, block);
            d.digest.update(b, block);
            d.count++;
          },
        },
        count,
      );
    } catch (e) {
      st.failed = `disk blocks: ${(e as Error).message}`;
    }
  }

  /** Drops the staging; an incremental one's in-place writes are undone (the image is the committed epoch's again). */
  private rollBackStaging(): void {
    const st = this.staging;
    if (!st) return;
    this.staging = null;
    if (st.undo) {
      st.undo.restore(this.image);
      this.image.resize(st.oldMemBytes);
    }
    if (st.digest === this.digest) this.digest.rollback();
    if (st.disk && st.disk.digest === this.diskDigest) this.diskDigest.rollback();
  }

  private stage(payload: Uint8Array, count: number): void {
    const st = this.staging;
    if (!st || st.failed) return;
    const mem = this.image.memory();
    try {
      this.decoder.decodeInto(
        payload,
        {
          base: (p) => {
            // The base of an XOR delta is the page as last sent: the image's (pages that did not
            // exist before this epoch have no base).
            if (st.full) return undefined;
            const off = p * PAGE_BYTES;
            return off + PAGE_BYTES <= st.oldMemBytes ? mem.subarray(off, off + PAGE_BYTES) : undefined;
          },
          put: (p, page) => {
            if (st.fresh) {
              st.fresh.writePage(p, page);
            } else {
              if ((p + 1) * PAGE_BYTES > mem.length) throw new RangeError(`page ${p} is outside the image (${mem.length} bytes)`);
              st.undo!.save(p, mem);
              this.image.writePage(p, page);
            }
            st.count++;
            st.digest.update(p, page);
          },
        },
        count,
      );
    } catch (e) {
      st.failed = (e as Error).message;
    }
  }

  /**
   * Acks the committed epoch to the primary, and tells the proxy itself: the proxy releases
   * the epoch's output one hop sooner than through the primary, and the ack says so
   * (`proxied`), so the primary's commit only confirms and may wait.
   */
  private sendAck(term: number, epoch: number): void {
    const { maxConnId, conns } = this.committedConns;
    const proxied = this.proxy?.trySend({ t: 'commit', term, epoch, acked: true, maxConnId, conns }) ?? false;
    this.primary?.trySend({ t: 'ack', term, epoch, digest: this.digest.value(), proxied });
  }

  private perform(a: SecondaryAction): void {
    switch (a.type) {
      case 'stageBegin': {
        const b = this.pendingBegin!;
        // Committed pages not yet in the ready vCPU go now: staging writes into the image.
        this.ready?.flush();
        // A checkpoint replacing one half staged (the core began anew) undoes the old one's writes first.
        this.rollBackStaging();
        // An incremental epoch stages on the committed digest in a transaction (undone on a
        // discard), opened below where the staging is set, so nothing can leave one open.
        const digest = a.full ? new ImageDigest() : this.digest;
        // A wasm32 memory is whole 64 KiB pages, at most 4 GiB: anything else is refused (nack), never allocated.
        const badSize = b.memBytes % WASM_PAGE_BYTES !== 0 || b.memBytes > MAX_MEMORY_BYTES;
        let fresh: GuestImage | null = null;
        const oldMemBytes = this.image.memBytes;
        if (a.full && !badSize) {
          fresh = new GuestImage(b.memBytes);
          fresh.resize(b.memBytes);
        } else if (!badSize && b.memBytes > this.image.memBytes) {
          this.image.resize(b.memBytes); // growth reads as zero; undone with the pages on a discard
        }
        let failed = badSize ? `memBytes ${b.memBytes} is not a whole number of 64 KiB pages up to ${MAX_MEMORY_BYTES}` : null;
        const wire = b.devices as unknown as WireDevices;
        let conns: ConnOffsets[] = [];
        let output: RetainedChunk[] = [];
        try {
          conns = unpackConns(wire?.conns, 'devices.conns');
          output = unpackOutput(wire?.output, 'devices.output');
        } catch (e) {
          failed ??= `malformed device state in ckpt_begin: ${(e as Error).message}`;
        }
        const meta = wire?.disk;
        let disk: Staging['disk'] = null;
        if (meta) {
          const okMeta = Number.isSafeInteger(meta.totalBlocks) && Number.isSafeInteger(meta.count) && meta.count >= 0 && typeof meta.digest === 'string';
          if (!okMeta) failed ??= 'malformed disk state in ckpt_begin';
          else if (!this.journal) failed ??= 'FTVM_ERR_DISK_MISMATCH: the primary has a disk, this secondary has none (start it with --disk)';
          else if (meta.totalBlocks !== this.journal.spec.blocks)
            failed ??= `FTVM_ERR_DISK_MISMATCH: the primary's disk is ${meta.totalBlocks} blocks, this secondary's ${this.journal.spec.blocks}`;
          else if (meta.count > meta.totalBlocks) failed ??= `disk block count ${meta.count} exceeds the disk`;
          if (okMeta && this.journal && !failed) {
            this.journal.begin(a.epoch, a.full);
            disk = { meta, count: 0, digest: a.full ? new ImageDigest() : this.diskDigest };
          }
        }
        if (!fresh) this.undo.reset();
        if (digest === this.digest) digest.begin();
        digest.grow(Math.min(b.memBytes, MAX_MEMORY_BYTES) / PAGE_BYTES);
        if (disk && disk.digest === this.diskDigest) this.diskDigest.begin();
        this.staging = { epoch: a.epoch, full: a.full, begin: b, count: 0, undo: fresh ? null : this.undo, oldMemBytes, fresh, digest, failed, disk, conns, output };
        if (failed?.startsWith('FTVM_ERR_DISK_MISMATCH')) this.emit('log', 'error', 'cannot replicate the disk', { code: 'FTVM_ERR_DISK_MISMATCH', reason: failed });
        return;
      }
      case 'stagePages':
        if (this.pendingPayload) this.stage(this.pendingPayload, this.pendingCount);
        this.pendingPayload = null;
        return;
      case 'stageDiscard':
        if (this.staging) this.emit('log', 'warn', 'staged checkpoint discarded', { epoch: this.staging.epoch, reason: a.reason });
        if (this.staging?.disk) this.journal?.discard();
        this.rollBackStaging();
        return;
      case 'apply': {
        const st = this.staging!;
        const b = st.begin;
        const devices = b.devices as unknown as WireDevices;
        if (st.disk) {
          // The disk commits durably (the journal's commit point) before the epoch is acked and
          // before a promotion can use it; memory applies now (it is in this process only).
          // A disk that cannot commit makes this node useless as a secondary.
          const t0 = now();
          if (st.disk.digest === this.diskDigest) this.diskDigest.commit();
          else this.diskDigest = st.disk.digest;
          this.diskBusy = this.journal!.commitAsync().then(
            () => {
              const ms = now() - t0;
              if (ms > 200) this.emit('log', 'info', 'slow disk commit', { epoch: st.epoch, blocks: st.disk!.count, ms: Math.round(ms) });
              this.emit('diskCommitted', st.epoch, st.disk!.count, ms);
              this.diskBusy = null;
              if (this.heldAck) this.sendAck(this.heldAck.term, this.heldAck.epoch);
              this.heldAck = null;
              for (const [l, m, p] of this.heldMessages.splice(0)) this.onPrimary(l, m, p);
            },
            (e: Error) => {
              this.emit('log', 'error', 'disk commit failed: this secondary stops replicating', { code: 'FTVM_ERR_DISK_JOURNAL', epoch: st.epoch, message: e.message });
              this.heldAck = null;
              this.heldMessages = [];
              this.stop();
              this.primary?.close(4099, 'FTVM_ERR_DISK_JOURNAL: disk commit failed');
            },
          );
        }
        // The pages are in place already (incremental) or in the fresh image (full): committing is O(1).
        const target = st.fresh ?? this.image;
        target.apply({
          epoch: st.epoch,
          memBytes: b.memBytes,
          pages: new Uint32Array(0),
          data: new Uint8Array(0),
          globals: b.globals as GlobalValue[],
          devices: { conns: st.conns, maxConnId: devices.maxConnId, timerDeadlineNs: devices.timerDeadlineNs, clock: devices.clock },
        });
        if (st.full) {
          (this as { image: GuestImage }).image = target;
          this.retained.clear();
        }
        this.retained.add(st.output);
        this.retained.confirm(devices.confirmed ?? 0);
        if (st.digest === this.digest) this.digest.commit();
        else this.digest = st.digest;
        this.committedConns = { maxConnId: devices.maxConnId, conns: st.conns };
        const written = st.undo ? st.undo.savedPages() : null;
        st.undo?.reset();
        this.staging = null;
        this.ready?.committed(written);
        const end = this.pendingEnd;
        this.emit('applied', st.epoch, st.count, end?.wireBytes ?? 0, end?.rawBytes ?? 0);
        return;
      }
      case 'ack':
        // A failed disk commit stopped this node: nothing it holds may be acknowledged.
        if (this.stopped) return;
        if (this.diskBusy) this.heldAck = { term: a.term, epoch: a.epoch };
        else this.sendAck(a.term, a.epoch);
        return;
      case 'nack':
        this.primary?.trySend({ t: 'nack', term: a.term, epoch: a.epoch, code: a.code, message: a.reason.slice(0, 1000) });
        return;
      case 'reject':
        this.primary?.trySend({ t: 'fence', term: a.term });
        return;
      case 'promoteRequest':
        this.emit('log', a.repeat ? 'debug' : 'warn', 'primary lost: asking the proxy to promote this node', { reason: a.reason, committedEpoch: a.committedEpoch });
        this.proxy?.trySend({ t: 'promote', term: a.term, fromEpoch: a.committedEpoch, reason: a.reason.slice(0, 200) });
        return;
      case 'reportCommitted':
        this.proxy?.trySend({ t: 'heartbeat', term: a.term, epoch: a.epoch, sentAtMs: Date.now() });
        return;
      case 'promoteDenied':
        // Said once per reason: a node left behind would otherwise log every request.
        if (a.reason !== this.lastDenial) this.emit('log', 'warn', 'the proxy will not promote this node; asking again less often', { reason: a.reason, term: a.term, retryMs: a.retryMs });
        this.lastDenial = a.reason;
        return;
      case 'refusePromote':
        this.proxy?.trySend({ t: 'promote_deny', term: a.term, reason: a.reason.slice(0, 200) });
        return;
      case 'restore': {
        this.promotedAt = now();
        // The promoted VMM opens the disk file itself: it must hold the committed epoch first.
        const busy = this.diskBusy;
        this.heldMessages = [];
        this.heldAck = null;
        this.primary?.close(4000, 'promoted');
        const promote = () => {
          const vcpu = this.ready?.take() ?? null;
          this.stop();
          this.emit('promote', this.image, this.digest, a.term, this.retained, vcpu);
        };
        if (busy) void busy.then(promote, () => this.emit('log', 'error', 'promotion refused: the last disk commit failed', { code: 'FTVM_ERR_DISK_JOURNAL' }));
        else promote();
        return;
      }
    }
  }

  private drive(): void {
    if (this.stopped) return;
    for (let actions = this.core.takeActions(); actions.length; actions = this.core.takeActions()) {
      for (const a of actions) this.perform(a);
    }
    if (this.timer) clearTimeout(this.timer);
    const d = this.core.nextDeadline();
    if (d !== undefined && !this.stopped) {
      this.timer = setTimeout(() => {
        // As in the primary: read what already waits on the sockets before judging silence.
        setImmediate(() => {
          if (this.stopped) return;
          this.core.tick(now());
          this.drive();
        });
      }, Math.max(0, d - now()));
      this.timer.unref();
    }
  }

  /** Stops timers; links are left to the caller. */
  stop(): void {
    this.stopped = true;
    this.ready?.stop();
    this.journal?.close();
    this.journal = null;
    clearInterval(this.beat);
    if (this.timer) clearTimeout(this.timer);
  }

  /** Whether the current proxy link carried a message within `ms` (the proxy heartbeats every 100 ms). */
  proxyAlive(ms: number): boolean {
    return this.proxy !== null && performance.now() - this.proxyHeardAt < ms;
  }

  /** Hands the proxy link over (after a promotion). */
  detachProxy(): Link | null {
    const l = this.proxy;
    this.proxy = null;
    l?.removeAllListeners('message');
    l?.removeAllListeners('close');
    return l;
  }
}
