import type { ClockMode, PolicyName, ProgressUnit, Role, TaskName } from './events.js';
import { MetricsError } from './errors.js';
import { Reservoir, Ring } from './window.js';

/** Current values of one role, kept by createRoleMetrics; the source of /api/status. */
export interface RoleState {
  role: Role;
  term: number;
  protected: boolean;
  protectionReason: string;
  ready: boolean;
  readyReason: string;
  policy: PolicyName | null;
  committedEpoch: number | null;
  lastEpoch: number | null;
  epochsTotal: number;
  checkpointsSent: number;
  checkpointsAcked: number;
  checkpointsRejected: number;
  wireBytesTotal: number;
  rawBytesTotal: number;
  /** raw / wire over the recent checkpoints window; null before any. */
  compressionRatio: number | null;
  inFlightEpochs: number;
  inFlightBytes: number;
  outputHeldBytes: number;
  outputHeldConns: number;
  outputReleasedBytesTotal: number;
  inputReplayedBytesTotal: number;
  failoversTotal: number;
  lastFailoverMs: number | null;
  /** Unix ms of the last failover. */
  lastFailoverAt: number | null;
  driftNs: number;
  clockMode: ClockMode | null;
  guestFaultsTotal: number;
  clients: number;
  throttleRatio: number;
  scrubPagesTotal: number;
  scrubMismatchesTotal: number;
  links: Partial<Record<'primary' | 'secondary' | 'proxy', boolean>>;
  progress: Partial<Record<TaskName, { done: number; total: number; unit: ProgressUnit }>>;
}

/** One point of the status page charts: values over the interval that ended at `t`. */
export interface StatusSample {
  /** Unix ms at the end of the interval. */
  t: number;
  protected: 0 | 1;
  term: number;
  committedEpoch: number | null;
  epochsPerSec: number;
  /** Epoch pause percentiles over the interval, ms; null when no epoch ended. */
  pauseP50Ms: number | null;
  pauseP99Ms: number | null;
  pauseMaxMs: number | null;
  wireBytesPerSec: number;
  rawBytesPerSec: number;
  outputDelayP50Ms: number | null;
  outputDelayP99Ms: number | null;
  outputHeldBytes: number;
  inFlightEpochs: number;
  failoversTotal: number;
  driftMs: number;
  clients: number;
}

export interface StatusSnapshot {
  version: 1;
  /** Unix ms. */
  now: number;
  /** Unix ms the recorder started: changes when the process restarts. */
  startedAt: number;
  uptimeSec: number;
  intervalMs: number;
  capacity: number;
  current: RoleState;
  /** Oldest first; at most `capacity`. */
  samples: StatusSample[];
}

export interface StatusRecorderOptions {
  /** Sampling interval, ms. Default 1000. */
  intervalMs?: number;
  /** Samples kept; default 600 (10 minutes at 1 s). */
  capacity?: number;
  /** Per-interval observations kept for percentiles. Default 1024. */
  reservoir?: number;
  /** Start the interval timer (unref'd). Default true; tests call sample() by hand. */
  autoStart?: boolean;
  /** Clock, unix ms. Default Date.now. */
  now?: () => number;
}

/**
 * Turns the running totals of a RoleState into per-interval rates and percentiles, kept in a
 * bounded ring for the status page. Memory is O(capacity + reservoir), whatever the event rate.
 */
export class StatusRecorder {
  readonly intervalMs: number;
  readonly capacity: number;
  private readonly ring: Ring<StatusSample>;
  readonly pauses: Reservoir;
  readonly outputDelays: Reservoir;
  private readonly now: () => number;
  private readonly startedAt: number;
  private timer: NodeJS.Timeout | undefined;
  private lastT: number;
  private lastEpochs = 0;
  private lastWire = 0;
  private lastRaw = 0;

  constructor(private readonly state: () => RoleState, opts: StatusRecorderOptions = {}) {
    const intervalMs = opts.intervalMs ?? 1000;
    if (!Number.isFinite(intervalMs) || intervalMs < 10 || intervalMs > 3_600_000) {
      throw new MetricsError('FTVM_ERR_INVALID_OPTION', `status intervalMs must be in 10..3600000, got ${String(intervalMs)}`);
    }
    const capacity = opts.capacity ?? 600;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 100_000) {
      throw new MetricsError('FTVM_ERR_INVALID_OPTION', `status capacity must be an integer in 1..100000, got ${String(capacity)}`);
    }
    this.intervalMs = intervalMs;
    this.capacity = capacity;
    this.ring = new Ring<StatusSample>(capacity);
    this.pauses = new Reservoir(opts.reservoir ?? 1024);
    this.outputDelays = new Reservoir(opts.reservoir ?? 1024);
    this.now = opts.now ?? Date.now;
    this.startedAt = this.now();
    this.lastT = this.startedAt;
    const s = state();
    this.lastEpochs = s.epochsTotal;
    this.lastWire = s.wireBytesTotal;
    this.lastRaw = s.rawBytesTotal;
    if (opts.autoStart ?? true) this.start();
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Close the current interval and record its sample. */
  sample(): StatusSample {
    const t = this.now();
    const s = this.state();
    // A clock step backwards must not give negative or infinite rates; fall back to the nominal interval.
    const dtSec = t > this.lastT ? (t - this.lastT) / 1000 : this.intervalMs / 1000;
    const sample: StatusSample = {
      t,
      protected: s.protected ? 1 : 0,
      term: s.term,
      committedEpoch: s.committedEpoch,
      epochsPerSec: (s.epochsTotal - this.lastEpochs) / dtSec,
      pauseP50Ms: this.pauses.percentile(0.5),
      pauseP99Ms: this.pauses.percentile(0.99),
      pauseMaxMs: this.pauses.count > 0 ? this.pauses.max : null,
      wireBytesPerSec: (s.wireBytesTotal - this.lastWire) / dtSec,
      rawBytesPerSec: (s.rawBytesTotal - this.lastRaw) / dtSec,
      outputDelayP50Ms: this.outputDelays.percentile(0.5),
      outputDelayP99Ms: this.outputDelays.percentile(0.99),
      outputHeldBytes: s.outputHeldBytes,
      inFlightEpochs: s.inFlightEpochs,
      failoversTotal: s.failoversTotal,
      driftMs: s.driftNs / 1e6,
      clients: s.clients,
    };
    this.ring.push(sample);
    this.lastT = t;
    this.lastEpochs = s.epochsTotal;
    this.lastWire = s.wireBytesTotal;
    this.lastRaw = s.rawBytesTotal;
    this.pauses.reset();
    this.outputDelays.reset();
    return sample;
  }

  /** `since` (unix ms): only samples newer than it, so a poller fetches each sample once. */
  snapshot(opts: { since?: number } = {}): StatusSnapshot {
    const now = this.now();
    const since = opts.since;
    const all = this.ring.toArray();
    return {
      version: 1,
      now,
      startedAt: this.startedAt,
      uptimeSec: Math.max(0, (now - this.startedAt) / 1000),
      intervalMs: this.intervalMs,
      capacity: this.capacity,
      current: structuredClone(this.state()),
      samples: since === undefined || !Number.isFinite(since) ? all : all.filter((x) => x.t > since),
    };
  }
}
