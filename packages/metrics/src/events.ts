import diagnosticsChannel from 'node:diagnostics_channel';
import { MetricsError } from './errors.js';

/**
 * The event contract between the runtimes and the metrics package.
 *
 * Runtimes (primary, secondary, proxy, `ftvm run`) hold one FtvmEvents per role and
 * `emit` plain objects; they never import prom-client. Units are in the field names
 * (`Ms` = milliseconds, `Bytes` = bytes, `Ns` = nanoseconds); counts are integers >= 0.
 * Fields named like a running total (`epoch`, `term`) are absolute; every other number
 * is the amount for THIS event (a delta), unless the event is a level (`inFlight`,
 * `outputHeld`, `clients`, `progress`), which states the current value.
 */

export type Role = 'primary' | 'secondary' | 'proxy' | 'run';
export const ROLES: readonly Role[] = ['primary', 'secondary', 'proxy', 'run'];

/** Same names as @ftvm/core's PolicyName (kept literal so metrics stays a leaf package). */
export type PolicyName = 'periodic' | 'sync-io' | 'adaptive';
export const POLICIES: readonly PolicyName[] = ['periodic', 'sync-io', 'adaptive'];

/** Same names as @ftvm/protocol's CodecName. */
export type CodecName = 'ZERO' | 'RAW' | 'LZ4' | 'XOR_LZ4' | 'SPARSE' | 'XOR_SPARSE';
export const CODECS: readonly CodecName[] = ['ZERO', 'RAW', 'LZ4', 'XOR_LZ4', 'SPARSE', 'XOR_SPARSE'];

export type ClockMode = 'freeze' | 'step' | 'slew';
export const CLOCK_MODES: readonly ClockMode[] = ['freeze', 'step', 'slew'];

export type TaskName = 'sync' | 'migration' | 'snapshot' | 'restore';
export const TASKS: readonly TaskName[] = ['sync', 'migration', 'snapshot', 'restore'];

export type ProgressUnit = 'bytes' | 'pages' | 'blocks';
export const PROGRESS_UNITS: readonly ProgressUnit[] = ['bytes', 'pages', 'blocks'];

/** Why a server dropped a client: its own unread output over its cap, or all clients' over the total budget. */
export type DropReason = 'slow_reader' | 'output_budget';
export const DROP_REASONS: readonly DropReason[] = ['slow_reader', 'output_budget'];

export type PeerName = 'primary' | 'secondary' | 'proxy';
export const PEERS: readonly PeerName[] = ['primary', 'secondary', 'proxy'];

/** Pages and their encoded body bytes for one codec inside one checkpoint. */
export interface CodecStats {
  pages: number;
  /** Encoded body bytes (without per-page entry headers). */
  bytes: number;
}

export interface FtvmEventMap {
  /** The process took (or changed) a role; `term` is the proxy's fencing term (0 before the first). */
  role: { role: Role; term: number };
  /**
   * Whether the guest currently survives the loss of this host: a primary with a synced
   * secondary acking checkpoints is protected; `run`, a primary alone, or a promoted
   * secondary without a new peer is not. `reason` is a short human sentence (<= 200 chars kept).
   */
  protection: { protected: boolean; reason: string };
  /** Drives /readyz: primary serving, secondary synced, proxy has an active node. */
  ready: { ready: boolean; reason: string };
  /** Primary: epoch `epoch` ended. durationMs = epoch length; pauseMs = vCPU stopped for capture. */
  epochEnded: { epoch: number; policy: PolicyName; durationMs: number; pauseMs: number; dirtyPages: number; /** Pages copied between events ahead of the hold (early copy). */ earlyPages?: number };
  /**
   * Primary: checkpoint `epoch` left for the secondary. wireBytes = bytes written to the socket
   * (framing included); rawBytes = what it would be uncompressed (pages * 4096 + device state).
   */
  checkpointSent: { epoch: number; wireBytes: number; rawBytes: number; byCodec?: Partial<Record<CodecName, CodecStats>>; /** Virtual disk blocks the checkpoint carried, and their bytes on the wire. */ diskBlocks?: number; diskWireBytes?: number };
  /** Primary: the secondary acked `epoch`; ackLatencyMs = sent -> ack received. */
  checkpointAcked: { epoch: number; ackLatencyMs: number };
  /** Secondary: a staged checkpoint failed verification and was dropped. */
  checkpointRejected: { epoch: number; reason: string };
  /**
   * Any role: `epoch` is the newest committed (acked, applied or released) epoch. The proxy
   * says whose commit advanced it: the active primary's, or the secondary's own.
   */
  committed: { epoch: number; source?: 'primary' | 'secondary' };
  /** Primary: checkpoints sent and not yet acked (level). */
  inFlight: { epochs: number; bytes: number };
  /** Proxy (or run): output currently held back waiting for a commit (level). */
  outputHeld: { bytes: number; conns: number };
  /**
   * Proxy (or run): `bytes` of output left for clients after being held `delayMs`.
   * `unprotected` (proxy): its epoch was committed without an ack: no secondary held it.
   */
  outputReleased: { bytes: number; delayMs: number; unprotected?: boolean };
  /** Proxy: client input re-sent to a promoted node after a failover. */
  inputReplayed: { bytes: number };
  /** A failover finished: durationMs = failure detected -> new primary serving; `term` = new term. */
  failover: { durationMs: number; term: number };
  /** Guest time minus reference time (signed; negative = guest lags), ns. */
  clockDrift: { driftNs: bigint | number; mode: ClockMode };
  /** The guest faulted; `code` is the FTVM_ERR_* code of the fault. */
  guestFault: { code: string };
  /** Primary: the guest fault budget is spent and the guest is held faulted (level). */
  guestContained: { contained: boolean };
  /** Progress of a long task (level): `done` of `total` `unit`s. total 0 = unknown/idle. */
  progress: { task: TaskName; done: number; total: number; unit: ProgressUnit };
  /** Background scrub compared `pagesChecked` pages with the secondary image; `mismatches` differed. */
  scrub: { pagesChecked: number; mismatches: number };
  /** Client connections currently open (level). */
  clients: { connected: number };
  /** A server (proxy, `ftvm run`) disconnected a client to keep its memory bounded. */
  clientDropped: { reason: DropReason };
  /** Link to a peer role went up or down. */
  link: { peer: PeerName; up: boolean };
  /** Fraction of vCPU time withheld by throttling, 0..1 (level). */
  throttle: { ratio: number };
  /** A secondary made an epoch's disk blocks durable (journal commit point, apply, fsyncs). */
  diskCommitted: { epoch: number; blocks: number; durationMs: number };
}

export type FtvmEventName = keyof FtvmEventMap;
export const EVENT_NAMES: readonly FtvmEventName[] = [
  'role', 'protection', 'ready', 'epochEnded', 'checkpointSent', 'checkpointAcked', 'checkpointRejected',
  'committed', 'inFlight', 'outputHeld', 'outputReleased', 'inputReplayed', 'failover', 'clockDrift',
  'guestFault', 'guestContained', 'progress', 'scrub', 'clients', 'clientDropped', 'link', 'throttle', 'diskCommitted',
];

export type FtvmListener<K extends FtvmEventName> = (payload: Readonly<FtvmEventMap[K]>) => void;

export interface FtvmEventsOptions {
  /** Shown in diagnostics_channel messages (`bus`), e.g. the role. Default 'ftvm'. */
  name?: string;
  /** Listeners allowed per event; a leak guard. Default 16. */
  maxListeners?: number;
  /** Rethrow listener errors as FTVM_ERR_METRICS_LISTENER (tests). Default false: counted, reported, swallowed. */
  strict?: boolean;
  /** Called when a listener throws (non-strict). Must not throw itself. */
  onListenerError?: (err: unknown, event: FtvmEventName) => void;
}

/** diagnostics_channel name an event is mirrored on, for out-of-band observers (APM, tests). */
export function diagnosticsChannelName(event: FtvmEventName): string {
  return `ftvm:${event}`;
}

/** Message published on the diagnostics channel. */
export interface FtvmDiagnosticsMessage<K extends FtvmEventName = FtvmEventName> {
  bus: string;
  event: K;
  payload: Readonly<FtvmEventMap[K]>;
}

const channels = new Map<FtvmEventName, diagnosticsChannel.Channel>(
  EVENT_NAMES.map((e) => [e, diagnosticsChannel.channel(diagnosticsChannelName(e))]),
);

/**
 * A typed, synchronous event bus. `emit` never throws into the runtime (a metrics bug must
 * not stop a guest) unless `strict`; a throwing listener is counted in `listenerErrors`.
 * Each event is also published on `ftvm:<event>` when that channel has subscribers.
 */
export class FtvmEvents {
  readonly name: string;
  private readonly maxListeners: number;
  private readonly strict: boolean;
  private readonly onListenerError: ((err: unknown, event: FtvmEventName) => void) | undefined;
  private readonly listeners = new Map<FtvmEventName, Array<(p: unknown) => void>>();
  private errors = 0;

  constructor(opts: FtvmEventsOptions = {}) {
    const name = opts.name ?? 'ftvm';
    if (typeof name !== 'string' || name.length === 0 || name.length > 64) {
      throw new MetricsError('FTVM_ERR_INVALID_OPTION', 'FtvmEvents name must be a string of 1..64 characters');
    }
    const maxListeners = opts.maxListeners ?? 16;
    if (!Number.isInteger(maxListeners) || maxListeners < 1 || maxListeners > 1024) {
      throw new MetricsError('FTVM_ERR_INVALID_OPTION', `FtvmEvents maxListeners must be an integer in 1..1024, got ${String(maxListeners)}`);
    }
    this.name = name;
    this.maxListeners = maxListeners;
    this.strict = opts.strict ?? false;
    this.onListenerError = opts.onListenerError;
  }

  /** Subscribe; returns the unsubscribe function. */
  on<K extends FtvmEventName>(event: K, fn: FtvmListener<K>): () => void {
    if (!EVENT_NAMES.includes(event)) {
      throw new MetricsError('FTVM_ERR_INVALID_OPTION', `unknown ftvm event '${String(event)}'`);
    }
    let list = this.listeners.get(event);
    if (!list) {
      list = [];
      this.listeners.set(event, list);
    }
    if (list.length >= this.maxListeners) {
      throw new MetricsError('FTVM_ERR_INVALID_OPTION', `more than maxListeners=${this.maxListeners} listeners on '${event}' (a leak?)`);
    }
    const wrapped = fn as (p: unknown) => void;
    list.push(wrapped);
    return () => this.off(event, fn);
  }

  off<K extends FtvmEventName>(event: K, fn: FtvmListener<K>): void {
    const list = this.listeners.get(event);
    if (!list) return;
    const i = list.indexOf(fn as (p: unknown) => void);
    if (i >= 0) list.splice(i, 1);
  }

  /** True when emitting `event` reaches anyone; runtimes may skip building costly payloads. */
  hasListeners(event: FtvmEventName): boolean {
    return (this.listeners.get(event)?.length ?? 0) > 0 || channels.get(event)!.hasSubscribers;
  }

  listenerCount(event: FtvmEventName): number {
    return this.listeners.get(event)?.length ?? 0;
  }

  /** Listener exceptions swallowed so far. */
  get listenerErrors(): number {
    return this.errors;
  }

  emit<K extends FtvmEventName>(event: K, payload: FtvmEventMap[K]): void {
    const list = this.listeners.get(event);
    if (list && list.length > 0) {
      // A listener may unsubscribe while we iterate; iterate over a snapshot.
      const snapshot = list.length === 1 ? list : list.slice();
      for (const fn of snapshot) {
        try {
          fn(payload);
        } catch (err) {
          this.errors++;
          if (this.strict) {
            throw new MetricsError('FTVM_ERR_METRICS_LISTENER', `a listener of '${event}' threw: ${String(err)}`, { cause: err });
          }
          try {
            this.onListenerError?.(err, event);
          } catch {
            // The error reporter itself failed; the count above still records it.
          }
        }
      }
    }
    const ch = channels.get(event);
    if (ch?.hasSubscribers) {
      const msg: FtvmDiagnosticsMessage<K> = { bus: this.name, event, payload };
      ch.publish(msg);
    }
  }
}
