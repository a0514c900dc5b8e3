/**
 * Live migration over the protocol's authenticated WebSocket links (link kind
 * `migration`). Each pre-copy round is one checkpoint: ckpt_begin (epoch = round + 1;
 * `devices` null, except in the stop-and-copy round, which carries globals and device
 * state), ckpt_pages batches (the protocol's page codecs), ckpt_end with the image digest
 * after the round. The receiver applies every round onto one image, checks each round's
 * digest (nack on mismatch), and on the final round hands the checkpoint to `onComplete`
 * (which starts the guest) before it acks. The sender counts the migration done at that
 * ack; the source guest then stops.
 */
import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, statSync, writeSync } from 'node:fs';
import { digestEquals, connect, listen, type Link, type Listener, type Message, type Opaque, type TlsOptions } from '@ftvm/protocol';
import { PAGE_BYTES } from '@ftvm/guest-abi';
import { ImageDigest, PageDecoder, PageEncoder } from '@ftvm/protocol';
import { PullState, type Checkpoint, type DeviceState } from '@ftvm/vmm';
import { PrecopyError } from './errors.js';
import type { DiskMode, FinalState, PrecopySink, PullStats, RoundDisk } from './engine.js';
import { PageStream } from './page-stream.js';

/** Bytes queued on the link above which the sender waits (bounds memory; keeps rounds honest about bandwidth). */
const SEND_HIGH_WATER = 8 * 1024 * 1024;
/** Time the receiver may take to start the guest after the last page, ms. */
const DEFAULT_COMMIT_TIMEOUT_MS = 30_000;
/** PULL: bytes queued on the link above which the background push waits (a demand fetch queues behind at most this). */
const PULL_HIGH_WATER = 1024 * 1024;
/** PULL: blocks per background batch. */
const PULL_BATCH_BLOCKS = 64;
/** Largest block_req answered (blocks); a guest request is at most its buffer. */
const MAX_BLOCK_REQ = 8192;

/** The disk as the round header announces it. */
interface WireRoundDisk {
  mode: DiskMode;
  totalBlocks: number;
  blockCount: number;
}

/** Bitmap of `blocks` (sorted, < totalBlocks): bit b % 8 of byte b / 8. */
export function blockBitmap(blocks: Uint32Array, totalBlocks: number): Uint8Array {
  const out = new Uint8Array(Math.ceil(totalBlocks / 8));
  for (let i = 0; i < blocks.length; i++) out[blocks[i]! >>> 3]! |= 1 << (blocks[i]! & 7);
  return out;
}

export interface MigrationSenderOptions {
  token: Uint8Array;
  insecure?: boolean;
  tls?: TlsOptions;
  nodeId?: string;
  /** sha256 (hex) of the guest module; the receiver refuses another module. */
  moduleDigest: string;
  compression?: boolean;
  commitTimeoutMs?: number;
}

/** A PrecopySink sending to a receiver. */
export class MigrationSender implements PrecopySink {
  private stream: PageStream;
  private epoch = 0;
  /** The current round is the stop-and-copy (acked only once the destination runs the guest). */
  private finalRound = false;
  private seq = 0;
  private pagesThisRound = 0;
  private wireThisRound = 0;
  private failure: Error | null = null;
  private ackWaiter: { epoch: number; digest: Uint8Array; resolve: () => void; reject: (e: Error) => void } | null = null;
  /** Disk blocks go ZERO/RAW/LZ4 (an XOR base would be a second copy of the disk in memory). */
  private readonly blockEncoder: PageEncoder;
  /** Digest of the disk as sent (the destination checks it when PULL ends). */
  private readonly diskDigest = new ImageDigest();
  private blockSeq = 0;
  private blocksThisRound = 0;
  private totalBlocks = 0;
  /** PULL: demand requests not yet answered, and who waits for the next one. */
  private blockReqs: Array<{ from: number; count: number }> = [];
  private onBlockReq: (() => void) | null = null;

  private constructor(readonly link: Link, private readonly opts: MigrationSenderOptions) {
    this.stream = new PageStream(opts.compression ?? true);
    this.blockEncoder = new PageEncoder({ compression: opts.compression ?? true, keepPrevious: false });
    link.on('message', (m) => this.onMessage(m));
    link.on('error', (e) => this.fail(e));
    link.on('close', (code, reason) => this.fail(new PrecopyError('FTVM_ERR_MIGRATION_LINK', `the migration link closed (${code} ${reason})`)));
  }

  static async connect(url: string, opts: MigrationSenderOptions): Promise<MigrationSender> {
    const link = await connect(url, {
      token: opts.token,
      insecure: opts.insecure,
      tls: opts.tls,
      role: 'primary',
      link: 'migration',
      nodeId: opts.nodeId ?? `migrate-${process.pid}`,
      term: 0,
      guestDigest: new Uint8Array(Buffer.from(opts.moduleDigest, 'hex')),
    });
    return new MigrationSender(link, opts);
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    this.ackWaiter?.reject(e);
    this.ackWaiter = null;
    this.onBlockReq?.();
  }

  private onMessage(m: Message): void {
    if (m.t === 'block_req') {
      if (m.count < 1 || m.count > MAX_BLOCK_REQ || m.fromBlock + m.count > this.totalBlocks) {
        this.fail(new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `block_req [${m.fromBlock}, +${m.count}) is outside the ${this.totalBlocks}-block disk`));
        this.link.close(4000, 'FTVM_ERR_MIGRATION_PROTOCOL');
        return;
      }
      this.blockReqs.push({ from: m.fromBlock, count: m.count });
      this.onBlockReq?.();
      return;
    }
    if (m.t === 'nack') this.fail(new PrecopyError(m.code || 'FTVM_ERR_MIGRATION_REFUSED', `the receiver refused round ${m.epoch - 1}: ${m.message}`));
    else if (m.t === 'ack' && this.ackWaiter && m.epoch === this.ackWaiter.epoch) {
      if (!digestEquals(m.digest, this.ackWaiter.digest)) this.fail(new PrecopyError('FTVM_ERR_MIGRATION_DIGEST', 'the receiver acked an image whose digest differs from the one sent'));
      else this.ackWaiter.resolve();
      this.ackWaiter = null;
    }
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }

  async beginRound(round: number, memBytes: number, pageCount: number, final: FinalState | null, disk?: RoundDisk): Promise<void> {
    this.check();
    this.epoch = round + 1;
    this.finalRound = final !== null;
    this.seq = 0;
    this.blockSeq = 0;
    this.pagesThisRound = pageCount;
    this.blocksThisRound = 0;
    this.wireThisRound = 0;
    if (disk) this.totalBlocks = disk.totalBlocks;
    const wireDisk: WireRoundDisk | undefined = disk && { mode: disk.mode, totalBlocks: disk.totalBlocks, blockCount: disk.blockCount };
    this.link.send({
      t: 'ckpt_begin', term: 0, epoch: this.epoch, memBytes, pageCount,
      globals: final ? final.globals : [],
      // null marks a pre-copy round; the stop-and-copy round carries the state to resume.
      devices: final ? (final.devices as unknown as Opaque) : null,
      full: round === 0,
      ...(wireDisk ? { disk: wireDisk as unknown as Opaque } : {}),
    });
    // The stop-and-copy carries the disk's remaining dirty bitmap: the destination pulls those blocks.
    if (final && disk?.mode === 'copy' && disk.missing) {
      this.link.send({ t: 'block_map', term: 0, epoch: this.epoch, totalBlocks: disk.totalBlocks, count: disk.missing.length }, blockBitmap(disk.missing, disk.totalBlocks));
    }
  }

  /** Encodes, digests and sends a batch of disk blocks of the current round (or of PULL). */
  private sendBlocks(blocks: Uint32Array, data: Uint8Array): number {
    const b = this.blockEncoder.encodeBatch(blocks, data);
    for (let i = 0; i < blocks.length; i++) this.diskDigest.update(blocks[i]!, data, i * PAGE_BYTES);
    this.link.send({ t: 'ckpt_blocks', term: 0, epoch: this.epoch, seq: this.blockSeq++, count: blocks.length }, b.payload);
    this.blocksThisRound += blocks.length;
    return b.wireBytes;
  }

  async blocks(blocks: Uint32Array, data: Uint8Array): Promise<{ wireBytes: number }> {
    this.check();
    const wireBytes = this.sendBlocks(blocks, data);
    this.wireThisRound += wireBytes;
    await this.link.drained(SEND_HIGH_WATER);
    this.check();
    return { wireBytes };
  }

  /**
   * PULL, after the destination started the guest: answers its block_req first, pushes the
   * other missing blocks in the background (paced to `bandwidthLimit`, bytes/s, 0: none),
   * then closes the phase with the disk's digest; resolves on the destination's ack.
   */
  async pull(missing: Uint32Array, read: (blocks: Uint32Array) => Promise<Uint8Array>, bandwidthLimit: number): Promise<PullStats> {
    const t0 = performance.now();
    this.epoch += 1;
    this.blockSeq = 0;
    this.blocksThisRound = 0;
    const stats: PullStats = { demandBlocks: 0, pushedBlocks: 0, wireBytes: 0, ms: 0 };
    const pending = blockBitmap(missing, this.totalBlocks);
    let left = missing.length;
    const take = (b: number): boolean => {
      const bit = 1 << (b & 7);
      if ((pending[b >>> 3]! & bit) === 0) return false;
      pending[b >>> 3]! &= ~bit;
      left--;
      return true;
    };
    const send = async (list: Uint32Array): Promise<void> => {
      const data = await read(list);
      this.check();
      stats.wireBytes += this.sendBlocks(list, data);
    };
    let cursor = 0;
    const batch: number[] = [];
    for (;;) {
      this.check();
      const req = this.blockReqs.shift();
      if (req) {
        // On demand: the destination's vCPU waits for these. Blocks already sent are on their way.
        const list: number[] = [];
        for (let b = req.from; b < req.from + req.count; b++) if (take(b)) list.push(b);
        if (list.length) {
          stats.demandBlocks += list.length;
          await send(Uint32Array.from(list));
        }
        continue;
      }
      if (left === 0) break;
      if (bandwidthLimit > 0) {
        // The background push keeps to the limit; a demand request cuts the pause short (and is served first).
        const due = (stats.wireBytes / bandwidthLimit) * 1000 - (performance.now() - t0);
        if (due > 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(() => ((this.onBlockReq = null), resolve()), due);
            this.onBlockReq = () => (clearTimeout(timer), (this.onBlockReq = null), resolve());
          });
          continue;
        }
      }
      batch.length = 0;
      while (cursor < missing.length && batch.length < PULL_BATCH_BLOCKS) {
        const b = missing[cursor++]!;
        if (take(b)) batch.push(b);
      }
      if (batch.length) {
        stats.pushedBlocks += batch.length;
        await send(Uint32Array.from(batch));
      }
      await this.link.drained(PULL_HIGH_WATER);
    }
    this.check();
    this.link.send({
      t: 'ckpt_end', term: 0, epoch: this.epoch, pageCount: this.blocksThisRound, digest: this.diskDigest.value(),
      wireBytes: stats.wireBytes, rawBytes: this.blocksThisRound * PAGE_BYTES,
    });
    await this.awaitAck(this.epoch, this.diskDigest.value(), 'the last pulled block');
    stats.ms = performance.now() - t0;
    return stats;
  }

  async pages(pages: Uint32Array, data: Uint8Array) {
    this.check();
    const e = this.stream.encode(pages, data);
    this.link.send({ t: 'ckpt_pages', term: 0, epoch: this.epoch, seq: this.seq++, count: pages.length }, e.payload);
    this.wireThisRound += e.wireBytes;
    await this.link.drained(SEND_HIGH_WATER);
    this.check();
    return e;
  }

  /**
   * Ends the round; a pre-copy round resolves when the receiver has decoded it and checked its
   * digest (its ack): the round's time is then the whole path's, which the stop rule's bandwidth
   * estimate needs, and the stop-and-copy never starts behind a receiver still decoding.
   */
  async endRound(): Promise<void> {
    this.check();
    this.link.send({
      t: 'ckpt_end', term: 0, epoch: this.epoch, pageCount: this.pagesThisRound, digest: this.stream.digest.value(),
      wireBytes: this.wireThisRound, rawBytes: this.pagesThisRound * PAGE_BYTES,
    });
    if (!this.finalRound) await this.awaitAck(this.epoch, this.stream.digest.value(), `round ${this.epoch - 1}`);
  }

  async commit(): Promise<void> {
    await this.awaitAck(this.epoch, this.stream.digest.value(), 'the last round');
  }

  private async awaitAck(epoch: number, digest: Uint8Array, after: string): Promise<void> {
    this.check();
    const timeoutMs = this.opts.commitTimeoutMs ?? DEFAULT_COMMIT_TIMEOUT_MS;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.ackWaiter = null;
        reject(new PrecopyError('FTVM_ERR_MIGRATION_TIMEOUT', `no ack from the receiver within ${timeoutMs} ms after ${after}`));
      }, timeoutMs);
      this.ackWaiter = {
        epoch,
        digest,
        resolve: () => (clearTimeout(timer), resolve()),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
    });
  }

  async abort(err: Error): Promise<void> {
    this.link.close(4000, `migration aborted: ${err.message}`.slice(0, 100));
  }

  close(): void {
    this.link.close();
  }
}

export interface MigrationReceiverOptions {
  host?: string;
  port: number;
  token: Uint8Array;
  insecure?: boolean;
  tls?: TlsOptions;
  nodeId?: string;
  /** sha256 (hex) of the guest module this receiver runs; a sender with another module is refused. */
  moduleDigest: string;
  /** Largest guest memory accepted, bytes. Default 4 GiB. */
  maxMemBytes?: number;
  /**
   * Where a migrated virtual disk goes: in `copy` mode a new file (an existing non-empty one
   * is refused), in `shared` mode the file the source used (same size). Absent: a guest with
   * a disk is refused.
   */
  disk?: string;
  /**
   * Starts the guest from the migrated checkpoint; the ack goes out once it resolves. `disk`:
   * the guest's disk, with the PULL state when blocks are still to come (give it to the VMM
   * as diskPull, and call `fetch` on its 'diskFetch' events).
   */
  onComplete: (ckpt: Checkpoint, stats: ReceiveStats, disk?: ReceivedDisk) => Promise<void>;
  onRound?: (round: number, pages: number, wireBytes: number) => void;
  /**
   * A migration's first round began: the source's memory is `memBytes` now (it only grows),
   * its disk (if any) is `disk`. A target can boot its vCPU meanwhile (Vmm.prestart), so the
   * guest's start inside the downtime is only the copy of the image. A returned promise
   * (the prestart) holds back the acks of pre-copy rounds until it settles: the source does
   * not stop the guest before this target is ready to take it.
   */
  onBegin?: (memBytes: number, disk?: { path: string; blocks: number }) => void | Promise<unknown>;
  /** A migration that began ended before its guest was handed to onComplete: drop what onBegin prepared. */
  onAbandoned?: () => void;
  /** PULL ended: every block arrived and the disk's digest is the source's. */
  onPullDone?: (stats: ReceiveStats) => void;
  /**
   * PULL failed after the guest started (the source died or the disk's digest differs): the
   * disk is partial, so the guest must stop serving now.
   */
  onPullFailed?: (err: Error) => void;
}

export interface ReceivedDisk {
  path: string;
  blocks: number;
  mode: DiskMode;
  /** PullState per block (copy mode); every block PRESENT once PULL is done. */
  pull?: SharedArrayBuffer;
  /** Asks the source for the blocks of [block, block + n) that have not arrived. */
  fetch: (block: number, n: number) => void;
}

export interface ReceiveStats {
  rounds: number;
  pages: number;
  wireBytes: number;
  /** Disk blocks received in the rounds (PUSH). */
  diskBlocks: number;
  /** Blocks the stop-and-copy left to PULL, those requested on demand, and PULL's wire bytes and time. */
  missingBlocks: number;
  demandBlocks: number;
  pullWireBytes: number;
  pullMs: number;
}

const ZERO_BLOCK = new Uint8Array(PAGE_BYTES);

/** The receiver's side of a migrated disk: the file, the digest of what arrived, the PULL state. */
class DiskReceiver {
  readonly digest = new ImageDigest();
  readonly decoder: PageDecoder;
  private fd: number;
  /** Round 0 writes into a fresh (zero) file: zero blocks need no write. */
  fresh = true;
  pull: Int32Array | null = null;
  missing = 0;
  private requested: Uint8Array | null = null;

  constructor(readonly path: string, readonly mode: DiskMode, readonly totalBlocks: number) {
    const bytes = totalBlocks * PAGE_BYTES;
    if (mode === 'shared') {
      if (!existsSync(path)) throw new PrecopyError('FTVM_ERR_DISK_MISMATCH', `shared storage: the source's disk is not at ${path} here`);
      this.fd = openSync(path, 'r+');
      const size = fstatSync(this.fd).size;
      if (size !== bytes) {
        closeSync(this.fd);
        throw new PrecopyError('FTVM_ERR_DISK_MISMATCH', `shared storage: ${path} is ${size} bytes, the source's disk ${bytes}`);
      }
    } else {
      if (existsSync(path) && statSync(path).size > 0)
        throw new PrecopyError('FTVM_ERR_DISK_EXISTS', `${path} exists and is not empty: a migrated disk goes to a new file (remove it first)`);
      this.fd = openSync(path, 'w+', 0o600);
      ftruncateSync(this.fd, bytes);
    }
    this.decoder = new PageDecoder({ maxImageBytes: Math.ceil(bytes / 65536) * 65536 });
  }

  /** The decoder's sink: blocks of a round, or of PULL (written only if still missing). */
  readonly sink = {
    base: (): undefined => undefined,
    put: (b: number, page: Uint8Array): void => {
      if (b >= this.totalBlocks) throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `block ${b} is past the ${this.totalBlocks}-block disk`);
      this.digest.update(b, page);
      const st = this.pull;
      if (st) {
        // The guest may run meanwhile: take the block MISSING -> FILLING -> PRESENT, or leave it.
        if (Atomics.compareExchange(st, b, PullState.MISSING, PullState.FILLING) !== PullState.MISSING) return;
        writeSync(this.fd, page, 0, PAGE_BYTES, b * PAGE_BYTES);
        Atomics.store(st, b, PullState.PRESENT);
        Atomics.notify(st, b);
        this.missing--;
        return;
      }
      if (this.fresh && Buffer.compare(page, ZERO_BLOCK) === 0) return;
      writeSync(this.fd, page, 0, PAGE_BYTES, b * PAGE_BYTES);
    },
  };

  /** The stop-and-copy's bitmap: these blocks are still the source's to send. */
  setMissing(bitmap: Uint8Array, count: number): SharedArrayBuffer {
    const sab = new SharedArrayBuffer(this.totalBlocks * 4);
    const st = new Int32Array(sab);
    let n = 0;
    for (let b = 0; b < this.totalBlocks; b++) {
      if ((bitmap[b >>> 3]! & (1 << (b & 7))) !== 0) {
        st[b] = PullState.MISSING;
        n++;
      }
    }
    if (n !== count) throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `block_map has ${n} bits set, its count says ${count}`);
    this.pull = st;
    this.missing = n;
    this.requested = new Uint8Array(this.totalBlocks);
    return sab;
  }

  /** Runs of [block, block + n) not yet PRESENT nor asked for: each becomes one block_req. */
  toRequest(block: number, n: number): Array<{ from: number; count: number }> {
    const st = this.pull;
    const asked = this.requested;
    const out: Array<{ from: number; count: number }> = [];
    if (!st || !asked) return out;
    const end = Math.min(this.totalBlocks, block + n);
    for (let b = Math.max(0, block); b < end; b++) {
      if (asked[b] || Atomics.load(st, b) === PullState.PRESENT) continue;
      asked[b] = 1;
      const last = out[out.length - 1];
      if (last && last.from + last.count === b && last.count < MAX_BLOCK_REQ) last.count++;
      else out.push({ from: b, count: 1 });
    }
    return out;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  /** A migration that failed before the guest started: a copied disk is emptied again (it was ours), so a retry can use it. */
  discard(): void {
    if (this.mode === 'copy' && this.fd >= 0) ftruncateSync(this.fd, 0);
    this.close();
  }
}

function parseRoundDisk(v: unknown): WireRoundDisk | null {
  if (v === undefined || v === null) return null;
  const d = v as Partial<WireRoundDisk>;
  if (typeof v !== 'object' || (d.mode !== 'copy' && d.mode !== 'shared') || !Number.isInteger(d.totalBlocks) || d.totalBlocks! < 1 || d.totalBlocks! > 1 << 20 || !Number.isInteger(d.blockCount) || d.blockCount! < 0)
    throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', 'ckpt_begin.disk must be { mode: copy|shared, totalBlocks: 1..2^20, blockCount >= 0 }');
  return d as WireRoundDisk;
}

/** Listens for one migration at a time; after one completes it refuses further ones. */
export class MigrationReceiver {
  private listener: Listener | null = null;
  private active: Link | null = null;
  completed = false;

  constructor(private readonly opts: MigrationReceiverOptions) {}

  async start(): Promise<Listener> {
    const o = this.opts;
    const want = Buffer.from(o.moduleDigest, 'hex');
    this.listener = await listen({
      host: o.host,
      port: o.port,
      token: o.token,
      insecure: o.insecure,
      tls: o.tls,
      maxLinks: 4,
      identity: () => ({ nodeId: o.nodeId ?? `receiver-${process.pid}`, role: 'receiver', term: 0, epoch: 0 }),
      accept: (hello) => {
        if (hello.link !== 'migration') throw new PrecopyError('FTVM_ERR_UNEXPECTED_LINK', `this receiver takes migration links only, not ${hello.link}`);
        if (!hello.guestDigest || Buffer.compare(Buffer.from(hello.guestDigest), want) !== 0)
          throw new PrecopyError('FTVM_ERR_GUEST_MISMATCH', 'the sender runs another guest module than this receiver');
        if (this.completed) throw new PrecopyError('FTVM_ERR_BUSY', 'this receiver already took a migration');
        if (this.active && !this.active.closed) throw new PrecopyError('FTVM_ERR_BUSY', 'a migration is already in progress');
      },
      onLink: (link) => this.session(link),
    });
    return this.listener;
  }

  private session(link: Link): void {
    this.active = link;
    const o = this.opts;
    // Shared: the target's vCPU worker reads the arrived image and its RunServer keeps it, no copy.
    const decoder = new PageDecoder({ maxImageBytes: o.maxMemBytes, shared: true });
    const digest = new ImageDigest();
    const stats: ReceiveStats = { rounds: 0, pages: 0, wireBytes: 0, diskBlocks: 0, missingBlocks: 0, demandBlocks: 0, pullWireBytes: 0, pullMs: 0 };
    let begin: Extract<Message, { t: 'ckpt_begin' }> | null = null;
    let beginDisk: WireRoundDisk | null = null;
    let got = 0;
    let gotBlocks = 0;
    let wire = 0;
    let finishing = false;
    let disk: DiskReceiver | null = null;
    /** PULL: the epoch its blocks carry (0: not pulling), when it started, whether it ended. */
    let pullEpoch = 0;
    let pullT0 = 0;
    let pullOver = false;
    /** onBegin was called for this session (and onAbandoned is owed if it never completes). */
    let begun = false;
    /** Settles when what onBegin prepared is ready (round acks wait for it). */
    let targetReady: Promise<void> = Promise.resolve();
    const pullFailed = (e: Error): void => {
      if (pullEpoch === 0 || pullOver) return;
      pullOver = true;
      disk?.close();
      o.onPullFailed?.(e);
    };
    link.on('close', (code, reason) => {
      pullFailed(new PrecopyError('FTVM_ERR_MIGRATION_PULL_SOURCE_LOST', `the source went away during PULL (${code} ${reason}): ${disk?.missing ?? 0} disk blocks never arrived`));
      if (!this.completed) disk?.discard();
      else if (!pullOver) disk?.close();
      if (begun && !finishing && !this.completed) o.onAbandoned?.();
    });
    const nack = (epoch: number, code: string, message: string): void => {
      link.trySend({ t: 'nack', term: 0, epoch, code, message: message.slice(0, 1000) });
      link.close(4000, code);
      pullFailed(new PrecopyError(code, message));
    };
    const sink = {
      base: (p: number) => (p * PAGE_BYTES < decoder.image.length ? decoder.image.subarray(p * PAGE_BYTES, (p + 1) * PAGE_BYTES) : undefined),
      put: (p: number, page: Uint8Array) => {
        decoder.ensure((p + 1) * PAGE_BYTES);
        decoder.image.set(page, p * PAGE_BYTES);
        digest.update(p, page);
      },
    };
    link.on('message', (m, payload) => {
      if (finishing) return;
      try {
        if (pullEpoch > 0) {
          // PULL: blocks (pushed or asked for) of the pull epoch, then its end with the disk's digest.
          if (pullOver) return;
          if (m.t === 'ckpt_blocks' && m.epoch === pullEpoch && disk) {
            disk.decoder.decodeInto(payload, disk.sink, m.count);
            stats.pullWireBytes += payload.length;
            return;
          }
          if (m.t === 'ckpt_end' && m.epoch === pullEpoch && disk) {
            if (disk.missing !== 0) throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `PULL ended with ${disk.missing} disk blocks still missing`);
            if (!digestEquals(m.digest, disk.digest.value())) throw new PrecopyError('FTVM_ERR_MIGRATION_DIGEST', 'the disk differs from the source\'s after PULL');
            pullOver = true;
            stats.pullMs = performance.now() - pullT0;
            link.trySend({ t: 'ack', term: 0, epoch: pullEpoch, digest: disk.digest.value() });
            disk.close();
            o.onPullDone?.(stats);
            return;
          }
          if (m.t === 'heartbeat' || m.t === 'status') return;
          throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `unexpected ${m.t} during PULL`);
        }
        switch (m.t) {
          case 'ckpt_begin': {
            if (begin) throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `ckpt_begin ${m.epoch} inside round ${begin.epoch}`);
            if (m.memBytes % 65536 !== 0 || m.memBytes > (o.maxMemBytes ?? 2 ** 32) || m.pageCount > m.memBytes / 4096)
              throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `memBytes ${m.memBytes} (${m.pageCount} pages) is not a wasm memory size within the limit ${o.maxMemBytes ?? 2 ** 32}`);
            const d = parseRoundDisk(m.disk);
            if (d) {
              if (!o.disk) throw new PrecopyError('FTVM_ERR_DISK_MISMATCH', 'the guest has a virtual disk: start ftvm receive with --disk <file>');
              if (!disk) disk = new DiskReceiver(o.disk, d.mode, d.totalBlocks);
              else if (disk.totalBlocks !== d.totalBlocks || disk.mode !== d.mode) throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', 'the disk changed size or mode between rounds');
              disk.fresh = m.full;
            } else if (disk) throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', 'a round without the disk the first one had');
            begin = m;
            beginDisk = d;
            got = 0;
            gotBlocks = 0;
            wire = 0;
            decoder.ensure(m.memBytes);
            if (!begun) {
              begun = true;
              const prep = o.onBegin?.(m.memBytes, disk ? { path: disk.path, blocks: disk.totalBlocks } : undefined);
              if (prep) targetReady = Promise.resolve(prep).then(() => undefined, () => undefined);
            }
            return;
          }
          case 'ckpt_blocks': {
            if (!begin || m.epoch !== begin.epoch || !disk) throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `ckpt_blocks of epoch ${m.epoch} outside a round with a disk`);
            const d = disk.decoder.decodeInto(payload, disk.sink, m.count);
            gotBlocks += d.count;
            wire += payload.length;
            if (gotBlocks > beginDisk!.blockCount) throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `round ${begin.epoch - 1} carries more blocks than its ${beginDisk!.blockCount}`);
            return;
          }
          case 'block_map': {
            if (!begin || m.epoch !== begin.epoch || begin.devices === null || !disk || disk.mode !== 'copy' || disk.pull)
              throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', 'block_map outside the stop-and-copy round of a copied disk');
            if (m.totalBlocks !== disk.totalBlocks || payload.length !== Math.ceil(disk.totalBlocks / 8))
              throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `block_map of ${m.totalBlocks} blocks (${payload.length} bytes) for a ${disk.totalBlocks}-block disk`);
            disk.setMissing(payload, m.count);
            stats.missingBlocks = m.count;
            return;
          }
          case 'ckpt_pages': {
            if (!begin || m.epoch !== begin.epoch) throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `ckpt_pages of epoch ${m.epoch} outside its round`);
            const d = decoder.decodeInto(payload, sink, m.count);
            got += d.count;
            wire += payload.length;
            if (got > begin.pageCount) throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `round ${begin.epoch - 1} carries more pages than its ${begin.pageCount}`);
            return;
          }
          case 'ckpt_end': {
            if (!begin || m.epoch !== begin.epoch) throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `ckpt_end of epoch ${m.epoch} outside its round`);
            if (got !== begin.pageCount) throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `round ${begin.epoch - 1} ended after ${got} of ${begin.pageCount} pages`);
            if (beginDisk && gotBlocks !== beginDisk.blockCount) throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `round ${begin.epoch - 1} ended after ${gotBlocks} of ${beginDisk.blockCount} disk blocks`);
            if (disk?.mode === 'copy' && begin.devices !== null && !disk.pull) throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', 'the stop-and-copy round of a copied disk came without its block_map');
            if (!digestEquals(m.digest, digest.value())) throw new PrecopyError('FTVM_ERR_MIGRATION_DIGEST', `round ${begin.epoch - 1}: image digest differs from the sender's`);
            stats.rounds++;
            stats.pages += got;
            stats.wireBytes += wire;
            stats.diskBlocks += gotBlocks;
            o.onRound?.(begin.epoch - 1, got, wire);
            const b = begin;
            begin = null;
            // A pre-copy round: acked once decoded and checked (the sender paces its rounds on it).
            if (b.devices === null) {
              const ack = { t: 'ack', term: 0, epoch: b.epoch, digest: digest.value() } as const;
              void targetReady.then(() => link.trySend(ack));
              return;
            }
            finishing = true;
            const ckpt: Checkpoint = {
              format: 1,
              moduleDigest: o.moduleDigest,
              epoch: b.epoch,
              memBytes: b.memBytes,
              memory: decoder.image.subarray(0, b.memBytes),
              globals: b.globals,
              devices: b.devices as unknown as DeviceState,
            };
            const dk = disk;
            const received: ReceivedDisk | undefined = dk
              ? {
                  path: dk.path,
                  blocks: dk.totalBlocks,
                  mode: dk.mode,
                  pull: dk.pull ? (dk.pull.buffer as SharedArrayBuffer) : undefined,
                  fetch: (block, n) => {
                    if (link.closed) return;
                    for (const r of dk.toRequest(block, n)) {
                      stats.demandBlocks += r.count;
                      link.trySend({ t: 'block_req', term: 0, fromBlock: r.from, count: r.count });
                    }
                  },
                }
              : undefined;
            o.onComplete(ckpt, stats, received).then(
              () => {
                this.completed = true;
                if (dk?.mode === 'copy') {
                  // The guest runs; the source now pushes (and answers for) the blocks it misses.
                  pullEpoch = b.epoch + 1;
                  pullT0 = performance.now();
                  finishing = false;
                } else dk?.close();
                link.trySend({ t: 'ack', term: 0, epoch: b.epoch, digest: digest.value() });
              },
              (e: Error) => nack(b.epoch, (e as { code?: string }).code ?? 'FTVM_ERR_MIGRATION_RESTORE', `the guest did not start: ${e.message}`),
            );
            return;
          }
          default:
            return;
        }
      } catch (e) {
        const err = e as Error & { code?: string };
        nack(pullEpoch || (begin?.epoch ?? 0), err.code ?? 'FTVM_ERR_MIGRATION_PROTOCOL', err.message);
      }
    });
  }

  async close(): Promise<void> {
    await this.listener?.close();
  }
}
