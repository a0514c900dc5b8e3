import { EventEmitter } from 'node:events';
import { isFtvmError, type FtvmError } from '@ftvm/guest-abi';
import { ProtocolError, connect, type ConnectOptions, type Link, type Message } from '@ftvm/protocol';

export interface NodeLinkEvents {
  /** A link is established and authenticated. */
  up: [link: Link];
  /** The established link closed (by either side); a reconnect is scheduled. */
  down: [code: number, reason: string];
  message: [msg: Message, payload: Uint8Array];
  /** A pause() lasted maxPauseMs and the link is read again (see pause()). */
  pauseExpired: [ms: number];
  /** A connect attempt failed; `streak` counts consecutive failures. */
  connectFailed: [err: FtvmError, streak: number];
}

export interface NodeLinkOptions {
  id: string;
  url: string;
  /** Read at each attempt: the hello carries the proxy's current term. */
  connectOptions: () => ConnectOptions;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  /** Longest pause(), ms; then reading resumes on its own. */
  maxPauseMs: number;
}

/**
 * One node's net link, kept up for as long as the proxy runs: reconnects with
 * exponential backoff (reconnectMinMs doubling to reconnectMaxMs) after a failed attempt
 * or a dropped link. The backoff resets only once a link has stayed up for
 * reconnectMaxMs, so a node that accepts and drops at once is retried at most once per
 * reconnectMaxMs in steady state.
 */
export class NodeLink extends EventEmitter<NodeLinkEvents> {
  readonly id: string;
  readonly url: string;
  private current: Link | undefined;
  private upSinceMs = 0;
  private attempt = 0;
  private failStreak = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private paused = false;
  /**
   * Messages ws emitted after pause() (the rest of a read already in its parser: at most
   * one socket read), delivered in order on resume().
   */
  private held: { msg: Message; payload: Uint8Array }[] = [];
  private pauseTimer: NodeJS.Timeout | undefined;
  /** Links established so far (1 = the first connect). */
  connects = 0;

  constructor(private readonly opts: NodeLinkOptions) {
    super();
    this.id = opts.id;
    this.url = opts.url;
  }

  get link(): Link | undefined {
    return this.current;
  }

  get up(): boolean {
    return this.current !== undefined && !this.current.closed;
  }

  start(): void {
    void this.attemptConnect();
  }

  /** Sends if the link is up; a send failure (full buffer, closed) fails the link. Returns whether it was sent. */
  send(msg: Message, payload?: Uint8Array): boolean {
    const l = this.current;
    if (l === undefined || l.closed) return false;
    try {
      l.send(msg, payload);
      return true;
    } catch (e) {
      l.fail(isFtvmError(e) ? e : new ProtocolError('FTVM_ERR_LINK_CLOSED', `send of ${msg.t} failed: ${String(e)}`));
      return false;
    }
  }

  /** Fails the current link with a coded close (it reconnects). */
  fail(err: FtvmError): void {
    this.current?.fail(err);
  }

  /**
   * Stops reading the node (flow control) until resume(), the link closes, or maxPauseMs.
   * Why the limit: the commits that would release held output travel behind that output
   * on the same ordered link, so an unbounded pause can only end when the node looks
   * silent and is failed over. After maxPauseMs the link is read again (the core's hard
   * limit, twice maxHeldOutputBytes, still closes a link whose output runs away).
   */
  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.current?.pause();
    clearTimeout(this.pauseTimer);
    const since = performance.now();
    this.pauseTimer = setTimeout(() => {
      if (!this.paused) return;
      this.emit('pauseExpired', performance.now() - since);
      this.resume();
    }, this.opts.maxPauseMs);
  }

  resume(): void {
    clearTimeout(this.pauseTimer);
    this.paused = false;
    const link = this.current;
    while (this.held.length > 0 && !this.paused && this.current === link) {
      const { msg, payload } = this.held.shift()!;
      this.emit('message', msg, payload);
    }
    if (!this.paused) link?.resume();
  }

  close(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.pauseTimer);
    const l = this.current;
    this.current = undefined;
    l?.close(4000, 'proxy shutting down');
  }

  private async attemptConnect(): Promise<void> {
    this.timer = undefined;
    if (this.stopped) return;
    let link: Link;
    try {
      // A Link holds messages that arrive before its first listener, so the node's status
      // sent right behind its welcome is not lost between connect() resolving and adopt().
      link = await connect(this.opts.url, this.opts.connectOptions());
      this.adopt(link);
    } catch (e) {
      if (this.stopped) return;
      this.failStreak++;
      const err = isFtvmError(e) ? e : new ProtocolError('FTVM_ERR_CONNECT_FAILED', String(e));
      this.emit('connectFailed', err, this.failStreak);
      this.schedule();
      return;
    }
    if (this.stopped) link.close(4000, 'proxy shutting down');
  }

  /** Runs as soon as connect() resolves; the Link holds messages until this attaches its listener. */
  private adopt(link: Link): void {
    if (this.stopped) return;
    this.failStreak = 0;
    this.connects++;
    this.current = link;
    this.upSinceMs = performance.now();
    // Causes are reported by the close code; without a listener Link would not emit.
    link.on('error', () => {});
    link.on('message', (msg, payload) => {
      if (this.current !== link) return;
      if (this.paused) this.held.push({ msg, payload });
      else this.emit('message', msg, payload);
    });
    link.on('close', (code, reason) => {
      if (this.current !== link) return;
      this.current = undefined;
      this.held = [];
      this.paused = false;
      clearTimeout(this.pauseTimer);
      if (performance.now() - this.upSinceMs >= this.opts.reconnectMaxMs) this.attempt = 0;
      this.emit('down', code, reason);
      this.schedule();
    });
    this.emit('up', link);
  }

  private schedule(): void {
    if (this.stopped || this.timer !== undefined) return;
    const delay = Math.min(this.opts.reconnectMaxMs, this.opts.reconnectMinMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    this.timer = setTimeout(() => void this.attemptConnect(), delay);
  }
}
