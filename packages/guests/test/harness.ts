// A stand-in for the VMM, enough to drive a built guest in tests: it instantiates the
// .wasm with the `ftvm` imports, keeps a pvclock page (1 GHz TSC: mul 2^31, shift 1),
// records output, closes, timers and logs, and delivers input through ftvm_alloc +
// ftvm_on_data as the VMM does.

import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { PVCLOCK, IMPORT_MODULE } from '@ftvm/guest-abi';
import { guestWasmPath } from '../src/index.js';

export interface HarnessOptions {
  /** 'manual': the TSC moves only with advance() (deterministic timers);
   *  'real': it follows process.hrtime.bigint(). Default 'manual'. */
  clock?: 'manual' | 'real';
  /** Guest time at clock registration, ns. Default 1e9 (1 s). */
  bootNs?: bigint;
  /** Deterministic `random` import: a seeded generator instead of crypto. */
  seed?: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export class GuestHarness {
  readonly module: WebAssembly.Module;
  readonly instance: WebAssembly.Instance;
  readonly exports: Record<string, WebAssembly.ExportValue>;
  /** Output per connection, in send order. */
  readonly output = new Map<number, Uint8Array[]>();
  readonly closed = new Set<number>();
  readonly logs: { level: number; text: string }[] = [];
  /** Every timer_set argument, in order. */
  readonly timerHistory: bigint[] = [];
  /** The armed one-shot deadline, guest ns; 0n when disarmed. */
  timerDeadline = 0n;
  pvclockPtr = -1;
  private tscManual = 0n;
  private readonly hrOrigin = process.hrtime.bigint();
  private readonly clockMode: 'manual' | 'real';
  private readonly bootNs: bigint;
  private rng: number;

  constructor(wasm: Uint8Array, opts: HarnessOptions = {}) {
    this.clockMode = opts.clock ?? 'manual';
    this.bootNs = opts.bootNs ?? 1_000_000_000n;
    this.rng = opts.seed ?? 0;
    const seeded = opts.seed !== undefined;
    this.module = new WebAssembly.Module(wasm);
    const imports = {
      [IMPORT_MODULE]: {
        send: (conn: number, ptr: number, len: number) => {
          const bytes = this.mem().slice(ptr, ptr + len);
          let list = this.output.get(conn);
          if (!list) this.output.set(conn, (list = []));
          list.push(bytes);
        },
        close: (conn: number) => {
          this.closed.add(conn);
        },
        clock_register: (ptr: number) => {
          this.pvclockPtr = ptr;
          this.writePvclock(this.tsc(), this.bootNs);
        },
        rdtsc: () => this.tsc(),
        timer_set: (deadline: bigint) => {
          this.timerHistory.push(deadline);
          this.timerDeadline = deadline > 0n ? deadline : 0n;
        },
        disk_read: () => -1,
        disk_write: () => -1,
        disk_blocks: () => 0,
        random: (ptr: number, len: number) => {
          const view = this.mem().subarray(ptr, ptr + len);
          if (!seeded) randomFillSync(view);
          else for (let i = 0; i < len; i++) view[i] = this.nextSeeded();
        },
        log: (level: number, ptr: number, len: number) => {
          this.logs.push({ level, text: dec.decode(this.mem().subarray(ptr, ptr + len)) });
        },
      },
    };
    this.instance = new WebAssembly.Instance(this.module, imports);
    this.exports = this.instance.exports as Record<string, WebAssembly.ExportValue>;
  }

  static load(name: string, opts?: HarnessOptions): GuestHarness {
    return new GuestHarness(new Uint8Array(readFileSync(guestWasmPath(name))), opts);
  }

  /** The current view of guest memory (re-read: memory.grow detaches old buffers). */
  mem(): Uint8Array {
    return new Uint8Array((this.exports.memory as WebAssembly.Memory).buffer);
  }

  /** The virtual TSC, ticks (= ns at 1 GHz). */
  tsc(): bigint {
    return this.clockMode === 'manual' ? this.tscManual : process.hrtime.bigint() - this.hrOrigin + this.tscManual;
  }

  /** Guest time as the pvclock page defines it, ns. */
  nowNs(): bigint {
    if (this.pvclockPtr < 0) return 0n;
    const dv = new DataView(this.mem().buffer);
    const ts = dv.getBigUint64(this.pvclockPtr + PVCLOCK.tscTimestamp, true);
    const sys = dv.getBigUint64(this.pvclockPtr + PVCLOCK.systemTime, true);
    return sys + (this.tsc() - ts);
  }

  /** Moves the TSC (and so guest time) forward by ns. */
  advance(ns: bigint | number): void {
    this.tscManual += BigInt(ns);
  }

  /** Writes the pvclock page with the seqlock protocol (odd version while writing). */
  writePvclock(tscTimestamp: bigint, systemTime: bigint, mul = 2 ** 31, shift = 1): void {
    const p = this.pvclockPtr;
    const dv = new DataView(this.mem().buffer);
    const v = dv.getUint32(p + PVCLOCK.version, true);
    dv.setUint32(p + PVCLOCK.version, (v | 1) >>> 0, true);
    dv.setBigUint64(p + PVCLOCK.tscTimestamp, tscTimestamp, true);
    dv.setBigUint64(p + PVCLOCK.systemTime, systemTime, true);
    dv.setUint32(p + PVCLOCK.tscToSystemMul, mul, true);
    dv.setInt8(p + PVCLOCK.tscShift, shift);
    dv.setUint8(p + PVCLOCK.flags, PVCLOCK.FLAG_TSC_STABLE);
    dv.setUint32(p + PVCLOCK.version, ((v | 1) + 1) >>> 0, true);
  }

  private fn(name: string): (...args: unknown[]) => unknown {
    return this.exports[name] as (...args: unknown[]) => unknown;
  }

  init(): this {
    this.fn('ftvm_init')();
    return this;
  }

  open(conn: number): void {
    this.fn('ftvm_on_open')(conn);
  }

  /** Delivers input as the VMM does (ftvm_alloc, copy, ftvm_on_data). */
  data(conn: number, input: Uint8Array | string): void {
    const bytes = typeof input === 'string' ? enc.encode(input) : input;
    const ptr = this.fn('ftvm_alloc')(bytes.length) as number;
    this.mem().set(bytes, ptr);
    this.fn('ftvm_on_data')(conn, ptr, bytes.length);
  }

  closeConn(conn: number): void {
    this.fn('ftvm_on_close')(conn);
  }

  /** Fires the one-shot timer if guest time reached it; true when it fired. */
  fireTimer(): boolean {
    if (this.timerDeadline === 0n || this.nowNs() < this.timerDeadline) return false;
    this.timerDeadline = 0n;
    this.fn('ftvm_on_timer')();
    return true;
  }

  /** Manual clock: advances guest time by ns, firing each timer when its deadline passes. Returns fires. */
  runFor(ns: bigint | number): number {
    const end = this.nowNs() + BigInt(ns);
    let fires = 0;
    while (this.timerDeadline !== 0n && this.timerDeadline <= end) {
      const now = this.nowNs();
      if (this.timerDeadline > now) this.advance(this.timerDeadline - now);
      if (this.fireTimer()) fires++;
    }
    const now = this.nowNs();
    if (end > now) this.advance(end - now);
    return fires;
  }

  /** Delivers `input` (latin1) to conn in one chunk and returns (and clears) its reply as latin1 text. */
  ask(conn: number, input: string): string {
    this.data(conn, Buffer.from(input, 'latin1'));
    return Buffer.from(this.out(conn)).toString('latin1');
  }

  /** All output on conn so far, concatenated; `take` also clears it. */
  out(conn: number, take = true): Uint8Array {
    const list = this.output.get(conn) ?? [];
    const total = list.reduce((n, b) => n + b.length, 0);
    const all = new Uint8Array(total);
    let o = 0;
    for (const b of list) {
      all.set(b, o);
      o += b.length;
    }
    if (take) this.output.delete(conn);
    return all;
  }

  text(conn: number, take = true): string {
    return dec.decode(this.out(conn, take));
  }

  /** Number of send() calls on conn so far. */
  sends(conn: number): number {
    return this.output.get(conn)?.length ?? 0;
  }

  private nextSeeded(): number {
    // mulberry32, one byte per step
    this.rng = (this.rng + 0x6d2b79f5) | 0;
    let t = this.rng;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) & 0xff;
  }
}
