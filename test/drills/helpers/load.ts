import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

const resp = (...args: string[]): string => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;

export interface LoadOptions {
  /** Client connections, each INCRing its own key. */
  conns?: number;
  /** Requests in flight per connection (pipelining). */
  window?: number;
  /** Requests per second per connection (a steady client, so failover gaps are visible). */
  rate?: number;
  /** Key prefix: each drill and round uses fresh keys. */
  prefix: string;
  /** Reconnect when the proxy closes a connection (the proxy-restart drill); else a close is an error. */
  reconnect?: boolean;
  /** Also SET a value of this many bytes (over 256 keys per connection) with every INCR: dirties pages. */
  blobBytes?: number;
  host?: string;
}

type Resolved = Required<LoadOptions>;

/** Parses one RESP reply from `buf` at 0: [text, bytes used] or null when incomplete. */
function parseReply(buf: Buffer): [string, number] | null {
  const nl = buf.indexOf('\r\n');
  if (nl < 0) return null;
  const type = String.fromCharCode(buf[0]!);
  const line = buf.subarray(1, nl).toString();
  if (type === '$') {
    const n = Number(line);
    if (n < 0) return ['(nil)', nl + 2];
    if (buf.length < nl + 2 + n + 2) return null;
    return [buf.subarray(nl + 2, nl + 2 + n).toString(), nl + 2 + n + 2];
  }
  return [type === '-' ? `ERR:${line}` : line, nl + 2];
}

/**
 * One client connection through the proxy. Every INCR reply must be the previous one plus 1: a
 * gap means an acknowledged write was lost, a repeat means a reply came twice (say from a fenced
 * primary). After a reset (allowed only with `reconnect`) the first value must be above the last
 * acknowledged one, and at most the INCRs then in flight above it.
 */
class Conn {
  private sock: Socket | null = null;
  private buf: Buffer = Buffer.alloc(0);
  private pending: Array<'incr' | 'set'> = [];
  lastAcked = 0;
  acks = 0;
  /** INCRs in flight at the last reset: each may or may not have been applied. */
  private uncertain = 0;
  private afterReset = false;
  resets = 0;
  lost = 0;
  private blobSeq = 0;
  private stopping = false;
  private credit = 0;
  readonly errors: string[] = [];
  /** performance.now() of every reply, ms. */
  readonly replyTimes: number[] = [];
  constructor(
    readonly key: string,
    private readonly opts: Resolved,
    private readonly port: number,
    private readonly blob: string,
    private readonly onReset: (c: Conn) => void,
  ) {}

  open(): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = connect(this.port, this.opts.host);
      s.setNoDelay(true);
      s.once('connect', () => {
        this.sock = s;
        resolve();
      });
      s.once('error', (e) => {
        if (this.sock !== s) reject(e);
      });
      s.on('data', (d: Buffer) => this.onData(d));
      s.on('close', () => {
        if (this.sock === s) this.onClose();
      });
    });
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    for (;;) {
      const r = parseReply(this.buf);
      if (!r) break;
      this.buf = this.buf.subarray(r[1]);
      this.onReply(r[0]);
    }
  }

  private onReply(text: string): void {
    const now = performance.now();
    this.replyTimes.push(now);
    const kind = this.pending.shift();
    if (kind === undefined) {
      this.errors.push(`unexpected reply '${text}' with nothing in flight`);
      return;
    }
    if (kind === 'set') {
      if (text !== 'OK') this.errors.push(`SET replied '${text}'`);
      return;
    }
    const v = Number(text);
    if (!/^\d+$/.test(text)) {
      this.errors.push(`INCR ${this.key} replied '${text}'`);
      return;
    }
    if (this.afterReset) {
      this.afterReset = false;
      if (v <= this.lastAcked) {
        this.lost += this.lastAcked - v + 1;
        this.errors.push(`after reconnect INCR ${this.key} = ${v}, but ${this.lastAcked} was acknowledged`);
      } else if (v > this.lastAcked + this.uncertain + 1) {
        this.errors.push(`after reconnect INCR ${this.key} = ${v}: more than the ${this.uncertain} unacknowledged INCRs were applied`);
      }
    } else if (v !== this.lastAcked + 1) {
      if (v <= this.lastAcked) this.errors.push(`INCR ${this.key} = ${v} after ${this.lastAcked}: a repeated or stale reply`);
      else {
        this.lost += v - this.lastAcked - 1;
        this.errors.push(`INCR ${this.key} = ${v} after ${this.lastAcked}: replies missing`);
      }
    }
    this.lastAcked = v;
    this.acks++;
  }

  private onClose(): void {
    this.sock = null;
    if (this.stopping) return;
    if (!this.opts.reconnect) {
      this.errors.push(`connection for ${this.key} closed by the proxy`);
      return;
    }
    this.resets++;
    // A reset before any reply since the last one (a reconnect that docker's port proxy accepted
    // and then dropped while the new proxy was not up yet) adds its own unanswered INCRs to those
    // still uncertain from before: every one of them may have been applied.
    this.uncertain = (this.afterReset ? this.uncertain : 0) + this.pending.filter((k) => k === 'incr').length;
    this.afterReset = true;
    this.pending = [];
    this.buf = Buffer.alloc(0);
    this.onReset(this);
    const retry = (): void => {
      if (this.stopping) return;
      this.open().catch(() => setTimeout(retry, 100));
    };
    setTimeout(retry, 50);
  }

  /** Sends what the rate and the window allow; `dtMs` since the last call. */
  pump(dtMs: number): void {
    this.credit = Math.min(this.credit + (this.opts.rate * dtMs) / 1000, this.opts.window);
    const s = this.sock;
    if (!s || this.stopping) return;
    const perReq = this.opts.blobBytes > 0 ? 2 : 1;
    let out = '';
    while (this.credit >= 1 && this.pending.length + perReq <= this.opts.window * perReq) {
      this.credit--;
      out += resp('INCR', this.key);
      this.pending.push('incr');
      if (this.opts.blobBytes > 0) {
        out += resp('SET', `${this.key}:blob:${this.blobSeq++ % 256}`, this.blob);
        this.pending.push('set');
      }
    }
    if (out) s.write(out);
  }

  inFlight(): number {
    return this.pending.length;
  }

  close(): void {
    this.stopping = true;
    this.sock?.destroy();
  }
}

export interface LoadResult {
  acks: number;
  lost: number;
  errors: string[];
  resets: number;
}

/**
 * A steady, pipelined RESP client from the host through the proxy: `conns` connections, each
 * INCRing its own key at `rate` per second with at most `window` in flight. It checks every reply
 * as it arrives (see Conn) and, at the end, that each key holds at least its last acknowledged value.
 */
export class IncrLoad {
  private readonly opts: Resolved;
  private readonly conns: Conn[] = [];
  private timer: NodeJS.Timeout | null = null;
  readonly resetTimes: number[] = [];
  constructor(
    private readonly port: number,
    opts: LoadOptions,
  ) {
    this.opts = { conns: 4, window: 16, rate: 400, reconnect: false, blobBytes: 0, host: '127.0.0.1', ...opts };
  }

  async start(): Promise<void> {
    const blob = 'x'.repeat(this.opts.blobBytes);
    for (let i = 0; i < this.opts.conns; i++) {
      const c = new Conn(`${this.opts.prefix}:c${i}`, this.opts, this.port, blob, () => this.resetTimes.push(performance.now()));
      await c.open();
      this.conns.push(c);
    }
    let last = performance.now();
    this.timer = setInterval(() => {
      const now = performance.now();
      for (const c of this.conns) c.pump(now - last);
      last = now;
    }, 5);
  }

  /** Total INCRs acknowledged so far. */
  acks(): number {
    return this.conns.reduce((n, c) => n + c.acks, 0);
  }

  /** Resolves once `n` more INCRs than now are acknowledged (or rejects after timeoutMs). */
  async waitAcks(n: number, timeoutMs = 30_000): Promise<void> {
    const target = this.acks() + n;
    const end = Date.now() + timeoutMs;
    while (this.acks() < target) {
      if (Date.now() > end) throw new Error(`load: ${target - this.acks()} INCRs still unacknowledged after ${timeoutMs} ms (errors: ${this.errors().slice(0, 3).join('; ') || 'none'})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  errors(): string[] {
    return this.conns.flatMap((c) => c.errors);
  }

  /** Every reply's arrival time (performance.now(), ms), all connections, sorted. */
  replyTimes(): number[] {
    return this.conns.flatMap((c) => c.replyTimes).sort((a, b) => a - b);
  }

  /**
   * The client-visible pause of a fault injected at `t0` (performance.now() ms): the longest gap
   * between consecutive replies from the last reply before t0 up to `t1`. Replies flow every few ms
   * in steady state, so this is the time clients waited for the system to answer again.
   */
  pauseAround(t0: number, t1: number): number {
    const times = this.replyTimes();
    let i = times.findIndex((t) => t > t0);
    if (i < 0) return t1 - t0;
    let prev = i > 0 ? times[i - 1]! : t0;
    let max = 0;
    for (; i < times.length && times[i]! <= t1; i++) {
      max = Math.max(max, times[i]! - prev);
      prev = times[i]!;
    }
    return max;
  }

  /**
   * Stops sending, waits for what is in flight (up to timeoutMs), closes, and reads every key
   * back on a fresh connection: a key below its last acknowledged value lost acknowledged writes.
   */
  async stop(timeoutMs = 20_000): Promise<LoadResult> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const end = Date.now() + timeoutMs;
    while (this.conns.some((c) => c.inFlight() > 0) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    const stuck = this.conns.filter((c) => c.inFlight() > 0).map((c) => `${c.key}: ${c.inFlight()} requests never answered`);
    for (const c of this.conns) c.close();
    let lost = this.conns.reduce((n, c) => n + c.lost, 0);
    const errors = [...this.errors(), ...stuck];
    let finals: string[];
    try {
      finals = await readKeys(this.port, this.opts.host, this.conns.map((c) => c.key));
    } catch (e) {
      errors.push(`reading the keys back failed: ${(e as Error).message}`);
      return { acks: this.acks(), lost, errors, resets: this.conns.reduce((n, c) => n + c.resets, 0) };
    }
    this.conns.forEach((c, i) => {
      const v = Number(finals[i] === '(nil)' ? 0 : finals[i]);
      if (!(v >= c.lastAcked)) {
        lost += c.lastAcked - v;
        errors.push(`${c.key} reads ${finals[i]} but ${c.lastAcked} was acknowledged`);
      }
    });
    return { acks: this.acks(), lost, errors, resets: this.conns.reduce((n, c) => n + c.resets, 0) };
  }
}

/** GETs each key on one new connection (10 s limit). */
export function readKeys(port: number, host: string, keys: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = connect(port, host);
    let buf = Buffer.alloc(0);
    const out: string[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`reading ${keys.length} keys back: ${out.length} replies in 10 s`));
    }, 10_000);
    s.once('connect', () => s.write(keys.map((k) => resp('GET', k)).join('')));
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (let r = parseReply(buf); r; r = parseReply(buf)) {
        buf = buf.subarray(r[1]);
        out.push(r[0]);
      }
      if (out.length >= keys.length) {
        clearTimeout(timer);
        s.destroy();
        resolve(out);
      }
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
