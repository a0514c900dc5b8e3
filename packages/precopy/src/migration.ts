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
import { digestEquals, connect, listen, type Link, type Listener, type Message, type Opaque } from '@ftvm/protocol';
import { PAGE_BYTES } from '@ftvm/guest-abi';
import { ImageDigest, PageDecoder } from '@ftvm/protocol';
import type { Checkpoint, DeviceState } from '@ftvm/vmm';
import { PrecopyError } from './errors.js';
import type { FinalState, PrecopySink } from './engine.js';
import { PageStream } from './page-stream.js';

/** Bytes queued on the link above which the sender waits (bounds memory; keeps rounds honest about bandwidth). */
const SEND_HIGH_WATER = 8 * 1024 * 1024;
/** Time the receiver may take to start the guest after the last page, ms. */
const DEFAULT_COMMIT_TIMEOUT_MS = 30_000;

export interface MigrationSenderOptions {
  token: Uint8Array;
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
  private seq = 0;
  private pagesThisRound = 0;
  private wireThisRound = 0;
  private failure: Error | null = null;
  private ackWaiter: { epoch: number; resolve: () => void; reject: (e: Error) => void } | null = null;

  private constructor(readonly link: Link, private readonly opts: MigrationSenderOptions) {
    this.stream = new PageStream(opts.compression ?? true);
    link.on('message', (m) => this.onMessage(m));
    link.on('error', (e) => this.fail(e));
    link.on('close', (code, reason) => this.fail(new PrecopyError('FTVM_ERR_MIGRATION_LINK', `the migration link closed (${code} ${reason})`)));
  }

  static async connect(url: string, opts: MigrationSenderOptions): Promise<MigrationSender> {
    const link = await connect(url, {
      token: opts.token,
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
  }

  private onMessage(m: Message): void {
    if (m.t === 'nack') this.fail(new PrecopyError(m.code || 'FTVM_ERR_MIGRATION_REFUSED', `the receiver refused round ${m.epoch - 1}: ${m.message}`));
    else if (m.t === 'ack' && this.ackWaiter && m.epoch === this.ackWaiter.epoch) {
      if (!digestEquals(m.digest, this.stream.digest.value())) this.fail(new PrecopyError('FTVM_ERR_MIGRATION_DIGEST', 'the receiver acked an image whose digest differs from the one sent'));
      else this.ackWaiter.resolve();
      this.ackWaiter = null;
    }
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }

  async beginRound(round: number, memBytes: number, pageCount: number, final: FinalState | null): Promise<void> {
    this.check();
    this.epoch = round + 1;
    this.seq = 0;
    this.pagesThisRound = pageCount;
    this.wireThisRound = 0;
    this.link.send({
      t: 'ckpt_begin', term: 0, epoch: this.epoch, memBytes, pageCount,
      globals: final ? final.globals : [],
      // null marks a pre-copy round; the stop-and-copy round carries the state to resume.
      devices: final ? (final.devices as unknown as Opaque) : null,
      full: round === 0,
    });
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

  async endRound(): Promise<void> {
    this.check();
    this.link.send({
      t: 'ckpt_end', term: 0, epoch: this.epoch, pageCount: this.pagesThisRound, digest: this.stream.digest.value(),
      wireBytes: this.wireThisRound, rawBytes: this.pagesThisRound * PAGE_BYTES,
    });
  }

  async commit(): Promise<void> {
    this.check();
    const timeoutMs = this.opts.commitTimeoutMs ?? DEFAULT_COMMIT_TIMEOUT_MS;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.ackWaiter = null;
        reject(new PrecopyError('FTVM_ERR_MIGRATION_TIMEOUT', `no ack from the receiver within ${timeoutMs} ms after the last round`));
      }, timeoutMs);
      this.ackWaiter = {
        epoch: this.epoch,
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
  nodeId?: string;
  /** sha256 (hex) of the guest module this receiver runs; a sender with another module is refused. */
  moduleDigest: string;
  /** Largest guest memory accepted, bytes. Default 4 GiB. */
  maxMemBytes?: number;
  /** Starts the guest from the migrated checkpoint; the ack goes out once it resolves. */
  onComplete: (ckpt: Checkpoint, stats: ReceiveStats) => Promise<void>;
  onRound?: (round: number, pages: number, wireBytes: number) => void;
}

export interface ReceiveStats {
  rounds: number;
  pages: number;
  wireBytes: number;
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
    const decoder = new PageDecoder({ maxImageBytes: o.maxMemBytes });
    const digest = new ImageDigest();
    const stats: ReceiveStats = { rounds: 0, pages: 0, wireBytes: 0 };
    let begin: Extract<Message, { t: 'ckpt_begin' }> | null = null;
    let got = 0;
    let wire = 0;
    let finishing = false;
    const nack = (epoch: number, code: string, message: string): void => {
      link.trySend({ t: 'nack', term: 0, epoch, code, message: message.slice(0, 1000) });
      link.close(4000, code);
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
        switch (m.t) {
          case 'ckpt_begin':
            if (begin) throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `ckpt_begin ${m.epoch} inside round ${begin.epoch}`);
            if (m.memBytes % 65536 !== 0 || m.memBytes > (o.maxMemBytes ?? 2 ** 32)) throw new PrecopyError('FTVM_ERR_MIGRATION_PROTOCOL', `memBytes ${m.memBytes} is not a wasm memory size within the limit`);
            begin = m;
            got = 0;
            wire = 0;
            decoder.ensure(m.memBytes);
            return;
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
            if (!digestEquals(m.digest, digest.value())) throw new PrecopyError('FTVM_ERR_MIGRATION_DIGEST', `round ${begin.epoch - 1}: image digest differs from the sender's`);
            stats.rounds++;
            stats.pages += got;
            stats.wireBytes += wire;
            o.onRound?.(begin.epoch - 1, got, wire);
            const b = begin;
            begin = null;
            if (b.devices === null) return;
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
            o.onComplete(ckpt, stats).then(
              () => {
                this.completed = true;
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
        nack(begin?.epoch ?? 0, err.code ?? 'FTVM_ERR_MIGRATION_PROTOCOL', err.message);
      }
    });
  }

  async close(): Promise<void> {
    await this.listener?.close();
  }
}
