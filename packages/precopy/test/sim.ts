/**
 * A simulated guest and destination on a manual clock: the dirtier's model (a working set
 * written at a rate, random or hot pattern) and a link of fixed bandwidth. Each page has a
 * version bumped on every write, so a test can prove the destination ends with exactly the
 * source's memory.
 */
import type { FinalState, PrecopyClock, PrecopySink, PrecopySource } from '../src/engine.js';

export class ManualClock implements PrecopyClock {
  t = 0;
  now(): number {
    return this.t;
  }
  async sleep(ms: number): Promise<void> {
    this.t += Math.max(0, ms);
  }
}

export interface SimGuestOptions {
  memPages: number;
  firstPage?: number;
  /** Working set, pages (from firstPage). */
  wsPages: number;
  /** Page writes per second. */
  rate: number;
  pattern?: 'random' | 'hot';
  seed?: number;
}

export class SimGuest implements PrecopySource {
  readonly firstPage: number;
  readonly version: Uint32Array;
  private dirty: Uint8Array;
  private last: number;
  private owed = 0;
  private rng: number;
  throttleMs = 0;
  held = false;
  tracking = false;
  throttleCalls: number[] = [];

  constructor(private readonly clock: ManualClock, private readonly o: SimGuestOptions) {
    this.firstPage = o.firstPage ?? 0;
    this.version = new Uint32Array(o.memPages);
    this.dirty = new Uint8Array(o.memPages);
    this.last = clock.now();
    this.rng = o.seed ?? 12345;
  }

  memBytes(): number {
    return this.o.memPages * 4096;
  }

  private random(): number {
    // mulberry32
    let t = (this.rng = (this.rng + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Applies the writes owed since the last look: like the dirtier, a delay caps catch-up at 100 ms per tick of 10 ms. */
  private advance(): void {
    const now = this.clock.now();
    const dt = now - this.last;
    this.last = now;
    if (this.held || dt <= 0) return;
    const factor = this.throttleMs > 0 ? Math.min(1, 100 / (10 + this.throttleMs)) : 1;
    this.owed += (this.o.rate * factor * dt) / 1000;
    const n = Math.floor(this.owed);
    this.owed -= n;
    const ws = this.o.wsPages;
    for (let k = 0; k < n; k++) {
      let i: number;
      if (this.o.pattern === 'hot' && this.random() < 0.9) i = Math.floor(this.random() * Math.max(1, Math.floor(ws / 10)));
      else i = Math.floor(this.random() * ws);
      const p = this.firstPage + i;
      this.version[p]!++;
      this.dirty[p] = 1;
    }
  }

  private take(): Uint32Array {
    const out: number[] = [];
    for (let p = 0; p < this.dirty.length; p++) if (this.dirty[p]) out.push(p);
    this.dirty.fill(0);
    return Uint32Array.from(out);
  }

  async startTracking(): Promise<void> {
    this.advance();
    this.dirty.fill(0);
    this.tracking = true;
  }
  async dirtyPages(): Promise<Uint32Array> {
    this.advance();
    return this.take();
  }
  async readPages(pages: Uint32Array): Promise<Uint8Array> {
    this.advance();
    // Page contents: the version number in the first 4 bytes.
    const data = new Uint8Array(pages.length * 4096);
    const dv = new DataView(data.buffer);
    for (let i = 0; i < pages.length; i++) dv.setUint32(i * 4096, this.version[pages[i]!]!, true);
    return data;
  }
  throttle(delayMs: number): void {
    this.advance();
    this.throttleMs = delayMs;
    this.throttleCalls.push(delayMs);
  }
  async stopAndCopy(): Promise<FinalState> {
    this.advance();
    this.held = true;
    this.tracking = false;
    return { epoch: 1, memBytes: this.memBytes(), pages: this.take(), globals: [], devices: { conns: [], maxConnId: 0, timerDeadlineNs: null, clock: { pvclockAddr: 0, tscAtCapture: 0n, wallNsAtCapture: 0n, guestNsAtCapture: 0n } } };
  }
  resume(): void {
    this.advance();
    this.held = false;
  }
  stopTracking(): void {
    this.tracking = false;
  }
}

/** A destination behind a link of `bytesPerMs`; every page costs 4096 + 9 bytes (raw). */
export class SimSink implements PrecopySink {
  readonly version: Uint32Array;
  committed = false;
  aborted: Error | null = null;
  rounds: Array<{ round: number; pages: number; final: boolean }> = [];
  constructor(private readonly clock: ManualClock, memPages: number, private readonly bytesPerMs: number) {
    this.version = new Uint32Array(memPages);
  }
  async beginRound(round: number, _memBytes: number, pageCount: number, final: FinalState | null): Promise<void> {
    this.rounds.push({ round, pages: pageCount, final: final !== null });
  }
  async pages(pages: Uint32Array, data: Uint8Array) {
    const dv = new DataView(data.buffer, data.byteOffset);
    for (let i = 0; i < pages.length; i++) this.version[pages[i]!] = dv.getUint32(i * 4096, true);
    const wireBytes = pages.length * (4096 + 9);
    await this.clock.sleep(wireBytes / this.bytesPerMs);
    return { wireBytes, nonZeroPages: pages.length, nonZeroBytes: wireBytes };
  }
  async endRound(): Promise<void> {}
  async commit(): Promise<void> {
    this.committed = true;
  }
  async abort(err: Error): Promise<void> {
    this.aborted = err;
  }
}
