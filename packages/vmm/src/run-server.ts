import { createServer, type Server, type Socket } from 'node:net';
import { EventEmitter } from 'node:events';
import type { Checkpoint } from './checkpoint.js';
import { GuestImage } from './guest-image.js';
import type { PreparedGuest } from './prepare.js';
import { Vmm, type VmmOptions } from './vmm.js';
import type { VmmError } from './errors.js';
import type { ClockReport, GuestEvent } from './worker-messages.js';

export interface RunServerOptions extends VmmOptions {
  host?: string;
  port: number;
  /** Local rollback checkpoints are taken this often, ms. Default 200. */
  checkpointIntervalMs?: number;
  /** Bound on input logged for replay since the last local checkpoint, bytes; past it a checkpoint is taken at once. Default 16 MiB. */
  maxReplayBytes?: number;
  /**
   * Unread output one client may have queued, bytes; past it the client is disconnected (input
   * from it already pauses while its socket's write buffer is over the high-water mark, but one
   * request may produce much more output than it took). Default 16 MiB.
   */
  maxPendingOutputBytes?: number;
  /**
   * Serve this checkpoint (a snapshot restore, a migration's target) instead of booting.
   * Its open connections had clients elsewhere: they are closed in the guest at start.
   */
  restore?: Checkpoint;
  /**
   * With `restore`: a VMM from RunServer.prestart (same options), booted ahead of the
   * checkpoint; start() only hands it the checkpoint (Vmm.restoreInto).
   */
  prestarted?: Vmm;
  /** Migration PULL (with VmmOptions.diskPull): the guest waits for these blocks; ask the source for them. */
  onDiskFetch?: (block: number, n: number) => void;
}

export interface RunServerEvents {
  fault: [err: VmmError, recovered: boolean];
  log: [level: number, msg: string];
  /** A client was disconnected by the server (not by the guest): why. */
  clientDropped: [conn: number, reason: string];
  listening: [port: number];
  /** The clock device updated the guest's clock (see VmmEvents.clock). */
  clock: [r: ClockReport];
}

interface Client {
  socket: Socket;
  /** Output bytes already written to the socket: after a rollback, replayed output below it is dropped. */
  emitted: number;
  closing: boolean;
  conn: number;
  /** Output of the batch being delivered, written when the batch ends (writeBatch). */
  out: Uint8Array[] | null;
}

/**
 * `ftvm run`: a guest served unprotected on a TCP port, the baseline every benchmark
 * compares against. It still survives guest faults: a trap or a runaway event rolls the
 * guest back to the last local checkpoint, closes the connection that caused it and
 * replays the other connections' input logged since that checkpoint.
 */
/** The VMM's options for a RunServer: the disk rolls back with memory (a rollback applies the undo file kept since the last local checkpoint). */
function vmmOptions(opts: RunServerOptions): VmmOptions {
  return { diskUndo: true, ...opts };
}

export class RunServer extends EventEmitter<RunServerEvents> {
  readonly opts: RunServerOptions;
  private server: Server | null = null;
  private vmm!: Vmm;
  private readonly guest: PreparedGuest;
  private clients = new Map<number, Client>();
  /** Clients with output from the batch being delivered. */
  private writing: Client[] = [];
  private nextConn = 1;
  private image = new GuestImage();
  private log: GuestEvent[] = [];
  private logBytes = 0;
  /** Client sockets paused until a checkpoint empties the replay log (see accept). */
  private readonly pausedForLog = new Set<Socket>();
  private tick: NodeJS.Timeout | null = null;
  private checkpointing: Promise<void> | null = null;
  private recovering = false;
  /** Local checkpoints are held off (a pre-copy's stop-and-copy holds the vCPU; a collect would resume it). */
  private checkpointsHeld = false;
  faults = 0;
  /** RunServerOptions.maxReplayBytes and maxPendingOutputBytes, with their defaults. */
  private readonly maxReplayBytes: number;
  private readonly maxPendingOutputBytes: number;

  constructor(guest: PreparedGuest, opts: RunServerOptions) {
    super();
    this.guest = guest;
    this.opts = opts;
    this.maxReplayBytes = opts.maxReplayBytes ?? 16 << 20;
    this.maxPendingOutputBytes = opts.maxPendingOutputBytes ?? 16 << 20;
  }

  /** Where the guest's vCPU runs (VmmOptions.vcpu), and why it is a worker when inline was asked for. */
  get vcpu(): { kind: 'worker' | 'inline'; whyWorker: string | null } {
    return { kind: this.vmm.vcpuKind, whyWorker: this.vmm.vcpuWhyWorker };
  }

  /** Vmm.prestart with the options start() would give Vmm.restore (see RunServerOptions.prestarted). */
  static prestart(guest: PreparedGuest, opts: RunServerOptions, memBytes: number): Promise<Vmm> {
    return Vmm.prestart(guest, memBytes, vmmOptions(opts));
  }

  async start(): Promise<number> {
    const restore = this.opts.restore;
    const vopts = vmmOptions(this.opts);
    // The rollback point starts as the restored image (the first collect carries only what
    // changed since): an empty one would roll a fault back onto zeroed memory.
    // Given up by the caller and shared with the worker (the worker only reads it while it
    // boots): kept as it is. Otherwise copied before the worker gets (or takes) the original.
    if (restore)
      this.image = this.opts.transferRestoreMemory && restore.memory.buffer instanceof SharedArrayBuffer ? GuestImage.adopt(restore) : GuestImage.fromCheckpoint(restore);
    if (restore && this.opts.prestarted) {
      this.vmm = this.opts.prestarted;
      await this.vmm.restoreInto(restore, { diskPull: this.opts.diskPull });
    } else this.vmm = restore ? await Vmm.restore(this.guest, restore, vopts) : await Vmm.boot(this.guest, vopts);
    if (restore) {
      // Connection ids are never reused: the guest ignores an open at or below maxConnId.
      this.nextConn = restore.devices.maxConnId + 1;
      for (const c of restore.devices.conns) if (!c.closed) this.record({ k: 'close', conn: c.conn });
    }
    this.vmm.on('output', (it) => {
      const c = this.clients.get(it.conn);
      if (!c) return;
      const end = it.offset + it.data.length;
      if (end <= c.emitted) return;
      const data = it.offset < c.emitted ? it.data.subarray(c.emitted - it.offset) : it.data;
      c.emitted = end;
      if (c.out) c.out.push(data);
      else {
        c.out = [data];
        this.writing.push(c);
      }
    });
    // A batch's output is written when the batch ends: a client with several replies in it gets one writev.
    this.vmm.on('progress', () => this.writeBatch());
    this.vmm.on('close', (conn) => {
      const c = this.clients.get(conn);
      if (c?.out) this.write(c);
      if (c && !c.closing) {
        c.closing = true;
        c.socket.end();
      }
    });
    this.vmm.on('log', (l, m) => this.emit('log', l, m));
    if (this.opts.onDiskFetch) this.vmm.on('diskFetch', this.opts.onDiskFetch);
    this.vmm.on('clock', (r) => this.emit('clock', r));
    this.vmm.on('fault', (err) => void this.recover(err));
    // A booted guest's first rollback point is a full capture: the data segments were written
    // before the dirty log existed, so an incremental collect onto an empty image lacks them.
    await this.checkpoint(!restore);
    const interval = this.opts.checkpointIntervalMs ?? 200;
    this.tick = setInterval(() => void this.checkpoint(), interval);
    this.tick.unref();
    this.server = createServer((s) => this.accept(s));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.opts.port, this.opts.host ?? '127.0.0.1', () => resolve());
    });
    const addr = this.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : this.opts.port;
    this.emit('listening', port);
    return port;
  }

  private writeBatch(): void {
    for (const c of this.writing) if (c.out) this.write(c);
    this.writing.length = 0;
  }

  private write(c: Client): void {
    const chunks = c.out!;
    c.out = null;
    const s = c.socket;
    let ok: boolean;
    if (chunks.length === 1) ok = s.write(chunks[0]!);
    else {
      s.cork();
      ok = true;
      for (const d of chunks) ok = s.write(d) && ok;
      s.uncork();
    }
    if (!ok) s.pause();
    // One request may produce much more output than it took: past the cap the client is dropped.
    if (s.writableLength > this.maxPendingOutputBytes && !c.closing) {
      this.emit('clientDropped', c.conn, `${s.writableLength} bytes of output unread (maxPendingOutputBytes)`);
      c.closing = true;
      s.destroy();
    }
  }

  private record(ev: GuestEvent): void {
    this.log.push(ev);
    if (ev.k === 'data') {
      this.logBytes += ev.data.length;
      if (this.logBytes > this.maxReplayBytes) void this.checkpoint();
    }
    this.vmm.enqueue(ev);
  }

  private accept(socket: Socket): void {
    const conn = this.nextConn++;
    socket.setNoDelay(true);
    const c: Client = { socket, emitted: 0, closing: false, conn, out: null };
    this.clients.set(conn, c);
    this.record({ k: 'open', conn });
    socket.on('data', (d) => {
      this.record({ k: 'data', conn, data: new Uint8Array(d.buffer, d.byteOffset, d.length) });
      // Input the guest has not caught up with stays bounded: past maxReplayBytes the sender waits
      // for the checkpoint (queued behind that input) that empties the log.
      if (this.logBytes > this.maxReplayBytes) {
        socket.pause();
        this.pausedForLog.add(socket);
      }
    });
    socket.on('drain', () => socket.resume());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.pausedForLog.delete(socket);
      this.clients.delete(conn);
      this.record({ k: 'close', conn });
    });
  }

  /** The running guest (for a pre-copy: dirty tracking, page reads, the final hold). */
  /** Open client connections. */
  get clientCount(): number {
    return this.clients.size;
  }

  get guestVmm(): Vmm {
    return this.vmm;
  }

  /**
   * Holds off local rollback checkpoints (true) until released (false); resolves once a
   * checkpoint in flight is done. A pre-copy holds them across its stop-and-copy.
   */
  async holdCheckpoints(hold: boolean): Promise<void> {
    this.checkpointsHeld = hold;
    if (hold && this.checkpointing) await this.checkpointing;
  }

  /** Takes a local rollback checkpoint: O(dirty pages), or every page when `full`. */
  checkpoint(full = false): Promise<void> {
    if (this.checkpointsHeld) return Promise.resolve();
    if (this.checkpointing || this.recovering || this.vmm.state !== 'running') return this.checkpointing ?? Promise.resolve();
    const logged = this.log.length;
    const p = this.vmm
      .collect(full)
      .then((c) => {
        this.image.apply(c);
        // Events posted before the collect were handled before it.
        this.log.splice(0, logged);
        this.logBytes = this.log.reduce((n, e) => n + (e.k === 'data' ? e.data.length : 0), 0);
        if (this.logBytes <= this.maxReplayBytes) {
          // A socket also paused for unread output resumes on its 'drain'.
          for (const s of this.pausedForLog) if (!s.writableNeedDrain) s.resume();
          this.pausedForLog.clear();
        }
      })
      .catch(() => undefined)
      .finally(() => {
        this.checkpointing = null;
      });
    this.checkpointing = p;
    return p;
  }

  private async recover(err: VmmError): Promise<void> {
    if (this.recovering) return;
    this.recovering = true;
    this.faults++;
    if (this.checkpointing) await this.checkpointing;
    const bad = err.conn;
    const replay = this.log.filter((e) => e.k === 'timer' || e.conn !== bad);
    if (bad !== undefined) replay.push({ k: 'close', conn: bad });
    // The replayed events are now all that happened since the checkpoint.
    this.log = replay;
    this.logBytes = replay.reduce((n, e) => n + (e.k === 'data' ? e.data.length : 0), 0);
    let ok = true;
    try {
      const ckpt: Checkpoint = this.image.toCheckpoint(this.guest.digest);
      await this.vmm.rollback(ckpt, replay);
    } catch {
      ok = false;
    }
    if (bad !== undefined) {
      const c = this.clients.get(bad);
      c?.socket.destroy();
    }
    this.recovering = false;
    this.emit('fault', err, ok);
    if (!ok) await this.close();
  }

  async close(): Promise<void> {
    if (this.tick) clearInterval(this.tick);
    for (const c of this.clients.values()) c.socket.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    if (this.vmm.state !== 'stopped') await this.vmm.stop();
  }
}
