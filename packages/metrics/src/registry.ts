import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { MetricsError } from './errors.js';
import {
  CLOCK_MODES, CODECS, DROP_REASONS, EVENT_NAMES, PEERS, POLICIES, PROGRESS_UNITS, ROLES, TASKS,
  type FtvmEventMap, type FtvmEventName, type FtvmEvents, type Role,
} from './events.js';
import { StatusRecorder, type RoleState, type StatusRecorderOptions } from './status.js';
import { Ring } from './window.js';

/** Seconds. Sub-millisecond vCPU pauses up to a pathological 1 s. */
export const PAUSE_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
/** Seconds. Output delay and ack latency: 0.1 ms (local ack) .. 5 s (failover in the way). */
export const DELAY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** Seconds. Epoch length: 1 ms (adaptive under load) .. 10 s (idle max interval). */
export const EPOCH_DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Pages (4 KiB). Powers of 4 up to a full 4 GiB wasm memory. */
export const DIRTY_PAGES_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576];

/** Checkpoints over which ftvm_replication_compression_ratio is computed. */
export const COMPRESSION_WINDOW = 64;
/** Distinct guest fault codes labelled before further codes collapse into code="OTHER" (cardinality bound). */
export const MAX_FAULT_CODES = 32;
const FAULT_CODE_RE = /^[A-Z][A-Z0-9_]{0,63}$/;
const MAX_REASON_CHARS = 200;

export interface RoleMetricsOptions {
  /** Register Node process metrics (process_*, nodejs_*) on this registry. Default true. */
  defaultMetrics?: boolean;
  /** Status page sampling; see StatusRecorderOptions. */
  status?: StatusRecorderOptions;
}

export interface Readiness {
  ok: boolean;
  detail: Record<string, unknown>;
}

export interface RoleMetrics {
  /** A registry of its own (never prom-client's global one). */
  readonly registry: Registry;
  readonly bus: FtvmEvents;
  /** Live current values (read-only for callers). */
  readonly state: Readonly<RoleState>;
  readonly status: StatusRecorder;
  /** Events dropped because a field was missing, negative, not finite or of an unknown enum value. */
  readonly invalidEvents: number;
  /** For /readyz: the last `ready` event (not ready until the runtime says so). */
  readiness(): Readiness;
  /** For /healthz: this answers at all only when the loop runs. */
  health(): Readiness;
  /** Unsubscribe from the bus and stop sampling. Idempotent. */
  close(): void;
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0;
}
function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}
function oneOf<T extends string>(list: readonly T[], v: unknown): v is T {
  return typeof v === 'string' && (list as readonly string[]).includes(v);
}
function reasonText(v: unknown): string {
  return typeof v === 'string' ? v.slice(0, MAX_REASON_CHARS) : '';
}

/** Payload validators: false drops the event and counts it in ftvm_metrics_invalid_events_total. */
const VALID: { [K in FtvmEventName]: (p: FtvmEventMap[K]) => boolean } = {
  role: (p) => oneOf(ROLES, p.role) && isInt(p.term),
  protection: (p) => typeof p.protected === 'boolean',
  ready: (p) => typeof p.ready === 'boolean',
  epochEnded: (p) => isInt(p.epoch) && oneOf(POLICIES, p.policy) && isCount(p.durationMs) && isCount(p.pauseMs) && isInt(p.dirtyPages) && (p.earlyPages === undefined || isInt(p.earlyPages)),
  checkpointSent: (p) => isInt(p.epoch) && isCount(p.wireBytes) && isCount(p.rawBytes)
    && (p.byCodec === undefined || (typeof p.byCodec === 'object' && p.byCodec !== null
      && Object.entries(p.byCodec).every(([c, s]) => oneOf(CODECS, c) && s !== undefined && isCount(s.pages) && isCount(s.bytes))))
    && (p.diskBlocks === undefined || isInt(p.diskBlocks)) && (p.diskWireBytes === undefined || isCount(p.diskWireBytes)),
  checkpointAcked: (p) => isInt(p.epoch) && isCount(p.ackLatencyMs),
  diskCommitted: (p) => isInt(p.epoch) && isInt(p.blocks) && isCount(p.durationMs),
  checkpointRejected: (p) => isInt(p.epoch),
  committed: (p) => isInt(p.epoch) && (p.source === undefined || p.source === 'primary' || p.source === 'secondary'),
  inFlight: (p) => isInt(p.epochs) && isCount(p.bytes),
  outputHeld: (p) => isCount(p.bytes) && isInt(p.conns),
  outputReleased: (p) => isCount(p.bytes) && isCount(p.delayMs) && (p.unprotected === undefined || typeof p.unprotected === 'boolean'),
  inputReplayed: (p) => isCount(p.bytes),
  failover: (p) => isCount(p.durationMs) && isInt(p.term),
  clockDrift: (p) => (typeof p.driftNs === 'bigint' || (typeof p.driftNs === 'number' && Number.isFinite(p.driftNs))) && oneOf(CLOCK_MODES, p.mode),
  guestFault: (p) => typeof p.code === 'string' && FAULT_CODE_RE.test(p.code),
  guestContained: (p) => typeof p.contained === 'boolean',
  progress: (p) => oneOf(TASKS, p.task) && isCount(p.done) && isCount(p.total) && oneOf(PROGRESS_UNITS, p.unit),
  scrub: (p) => isInt(p.pagesChecked) && isInt(p.mismatches),
  clients: (p) => isInt(p.connected),
  clientDropped: (p) => oneOf(DROP_REASONS, p.reason),
  link: (p) => oneOf(PEERS, p.peer) && typeof p.up === 'boolean',
  throttle: (p) => isCount(p.ratio) && p.ratio <= 1,
};

function initialState(role: Role): RoleState {
  return {
    role, term: 0, protected: false, protectionReason: 'no replication yet', ready: false, readyReason: 'starting',
    policy: null, committedEpoch: null, lastEpoch: null, epochsTotal: 0, checkpointsSent: 0, checkpointsAcked: 0,
    checkpointsRejected: 0, wireBytesTotal: 0, rawBytesTotal: 0, compressionRatio: null, inFlightEpochs: 0,
    inFlightBytes: 0, outputHeldBytes: 0, outputHeldConns: 0, outputReleasedBytesTotal: 0, inputReplayedBytesTotal: 0,
    failoversTotal: 0, lastFailoverMs: null, lastFailoverAt: null, driftNs: 0, clockMode: null, guestFaultsTotal: 0,
    clients: 0, throttleRatio: 0, scrubPagesTotal: 0, scrubMismatchesTotal: 0, links: {}, progress: {},
  };
}

/**
 * Registers every ftvm metric of one role on a new Registry and keeps it fed from `bus`.
 * Metric names, units and labels: docs/metrics.md (and METRIC_NAMES below).
 */
export function createRoleMetrics(role: Role, bus: FtvmEvents, opts: RoleMetricsOptions = {}): RoleMetrics {
  if (!oneOf(ROLES, role)) {
    throw new MetricsError('FTVM_ERR_INVALID_OPTION', `role must be one of ${ROLES.join(', ')}, got '${String(role)}'`);
  }
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const reg = [registry];
  const state = initialState(role);

  const roleGauge = new Gauge({ name: 'ftvm_role', help: 'Current role of this process: 1 for the active role, 0 for the others (a state set).', labelNames: ['role'], registers: reg });
  const term = new Gauge({ name: 'ftvm_term', help: 'Fencing term this process knows (0 before the first failover).', registers: reg });
  const protectedG = new Gauge({ name: 'ftvm_protected', help: '1 when the guest survives the loss of this host (a synced secondary acks checkpoints), else 0.', registers: reg });
  const readyG = new Gauge({ name: 'ftvm_ready', help: '1 when /readyz answers 200.', registers: reg });
  const committedEpoch = new Gauge({ name: 'ftvm_committed_epoch', help: 'Newest committed epoch number.', registers: reg });
  const epochs = new Counter({ name: 'ftvm_epochs_total', help: 'Epochs ended, by epoch policy.', labelNames: ['policy'], registers: reg });
  const epochDuration = new Histogram({ name: 'ftvm_epoch_duration_seconds', help: 'Epoch length, seconds.', buckets: EPOCH_DURATION_BUCKETS, registers: reg });
  const epochPause = new Histogram({ name: 'ftvm_epoch_pause_seconds', help: 'vCPU pause to capture an epoch (dirty pages + device state), seconds.', buckets: PAUSE_BUCKETS, registers: reg });
  const diskBlocks = new Counter({ name: 'ftvm_disk_blocks_replicated_total', help: 'Virtual disk blocks (4 KiB) sent in checkpoints.', registers: reg });
  const diskWire = new Counter({ name: 'ftvm_disk_replication_wire_bytes_total', help: 'Bytes on the wire for virtual disk blocks in checkpoints.', registers: reg });
  const diskCommits = new Counter({ name: 'ftvm_disk_commits_total', help: 'Epochs whose disk blocks a secondary made durable.', registers: reg });
  const diskCommitSeconds = new Histogram({ name: 'ftvm_disk_commit_seconds', help: 'Secondary: time to make an epoch\'s disk blocks durable (journal commit, apply, fsyncs), seconds.', buckets: DELAY_BUCKETS, registers: reg });
  const earlyCopied = new Counter({ name: 'ftvm_epoch_early_copied_pages_total', help: 'Dirty pages copied between events ahead of the epoch hold (a page copied twice counts twice).', registers: reg });
  const dirtyPages = new Histogram({ name: 'ftvm_epoch_dirty_pages', help: 'Dirty 4 KiB pages per epoch.', buckets: DIRTY_PAGES_BUCKETS, registers: reg });
  const ackLatency = new Histogram({ name: 'ftvm_checkpoint_ack_latency_seconds', help: 'Checkpoint sent -> ack received, seconds.', buckets: DELAY_BUCKETS, registers: reg });
  const sent = new Counter({ name: 'ftvm_checkpoints_sent_total', help: 'Checkpoints sent to the secondary.', registers: reg });
  const acked = new Counter({ name: 'ftvm_checkpoints_acked_total', help: 'Checkpoints acked by the secondary.', registers: reg });
  const rejected = new Counter({ name: 'ftvm_checkpoints_rejected_total', help: 'Staged checkpoints dropped by the secondary (failed verification).', registers: reg });
  const wire = new Counter({ name: 'ftvm_replication_wire_bytes_total', help: 'Checkpoint bytes written to the wire (framing included).', registers: reg });
  const raw = new Counter({ name: 'ftvm_replication_raw_bytes_total', help: 'Checkpoint bytes before encoding (pages * 4096 + device state).', registers: reg });
  const codecBytes = new Counter({ name: 'ftvm_replication_codec_bytes_total', help: 'Encoded page body bytes, by page codec.', labelNames: ['codec'], registers: reg });
  const codecPages = new Counter({ name: 'ftvm_replication_pages_total', help: 'Pages sent, by page codec.', labelNames: ['codec'], registers: reg });
  const ratio = new Gauge({ name: 'ftvm_replication_compression_ratio', help: `Raw / wire bytes over the last ${COMPRESSION_WINDOW} checkpoints (1 = no gain).`, registers: reg });
  const inFlightEpochs = new Gauge({ name: 'ftvm_inflight_epochs', help: 'Checkpoints sent and not yet acked.', registers: reg });
  const inFlightBytes = new Gauge({ name: 'ftvm_inflight_bytes', help: 'Wire bytes of checkpoints sent and not yet acked.', registers: reg });
  const heldBytes = new Gauge({ name: 'ftvm_output_held_bytes', help: 'Guest output held until its epoch commits, bytes.', registers: reg });
  const heldConns = new Gauge({ name: 'ftvm_output_held_connections', help: 'Client connections with output held.', registers: reg });
  const releasedBytes = new Counter({ name: 'ftvm_output_released_bytes_total', help: 'Guest output released to clients, bytes.', registers: reg });
  const releasedUnprotected = new Counter({ name: 'ftvm_output_released_unprotected_bytes_total', help: 'Proxy: output released to clients while no secondary held it (epochs committed without an ack), bytes.', registers: reg });
  const contained = new Gauge({ name: 'ftvm_guest_contained', help: 'Primary: 1 while the guest fault budget is spent and the guest is held faulted at its image.', registers: reg });
  const outputDelay = new Histogram({ name: 'ftvm_output_delay_seconds', help: 'Time output was held before release, seconds.', buckets: DELAY_BUCKETS, registers: reg });
  const replayed = new Counter({ name: 'ftvm_input_replayed_bytes_total', help: 'Client input replayed to a promoted node, bytes.', registers: reg });
  const commitsBySource = new Counter({
    name: 'ftvm_proxy_commits_total',
    help: 'Proxy: commits that advanced the committed epoch, by the node they came from (primary, or the secondary telling the proxy itself, one hop sooner).',
    labelNames: ['source'],
    registers: reg,
  });
  const failovers = new Counter({ name: 'ftvm_failovers_total', help: 'Failovers completed.', registers: reg });
  const lastFailover = new Gauge({ name: 'ftvm_last_failover_duration_seconds', help: 'Duration of the last failover (failure detected -> new primary serving), seconds.', registers: reg });
  const lastFailoverAt = new Gauge({ name: 'ftvm_last_failover_timestamp_seconds', help: 'Unix time of the last failover, seconds.', registers: reg });
  const drift = new Gauge({ name: 'ftvm_clock_drift_seconds', help: 'Guest clock minus reference clock, seconds (negative: guest lags).', registers: reg });
  const faults = new Counter({ name: 'ftvm_guest_faults_total', help: 'Guest faults, by FTVM_ERR_* code.', labelNames: ['code'], registers: reg });
  const taskDone = new Gauge({ name: 'ftvm_task_done', help: 'Work done by a long task (sync, migration, snapshot, restore), in `unit`.', labelNames: ['task', 'unit'], registers: reg });
  const taskTotal = new Gauge({ name: 'ftvm_task_total', help: 'Work a long task must do, in `unit` (0 = idle or unknown).', labelNames: ['task', 'unit'], registers: reg });
  const taskRatio = new Gauge({ name: 'ftvm_task_progress_ratio', help: 'done / total of a long task, 0..1.', labelNames: ['task'], registers: reg });
  const scrubPages = new Counter({ name: 'ftvm_scrub_pages_total', help: 'Pages compared with the secondary image by the scrub.', registers: reg });
  const scrubMismatches = new Counter({ name: 'ftvm_scrub_mismatches_total', help: 'Pages found different by the scrub (a missed dirty page).', registers: reg });
  const clients = new Gauge({ name: 'ftvm_client_connections', help: 'Client connections open.', registers: reg });
  const dropped = new Counter({ name: 'ftvm_clients_dropped_total', help: 'Clients this server disconnected to bound its memory, by reason: slow_reader (its unread output over the per-client cap), output_budget (all clients\' unread output over the total).', labelNames: ['reason'], registers: reg });
  const linkUp = new Gauge({ name: 'ftvm_link_up', help: '1 when the link to a peer role is up.', labelNames: ['peer'], registers: reg });
  const throttle = new Gauge({ name: 'ftvm_vcpu_throttle_ratio', help: 'Fraction of vCPU time withheld by throttling, 0..1.', registers: reg });
  const invalid = new Counter({ name: 'ftvm_metrics_invalid_events_total', help: 'Runtime events dropped by the metrics package as malformed (a runtime bug).', labelNames: ['event'], registers: reg });

  // Zero every bounded label set, so rate() and the dashboards see a series from the first scrape.
  for (const r of ROLES) roleGauge.set({ role: r }, r === role ? 1 : 0);
  for (const p of POLICIES) epochs.inc({ policy: p }, 0);
  for (const c of CODECS) {
    codecBytes.inc({ codec: c }, 0);
    codecPages.inc({ codec: c }, 0);
  }
  term.set(0);
  protectedG.set(0);
  readyG.set(0);
  drift.set(0);

  // Label-bound children: the hot path (once per epoch) skips hashing label objects.
  const epochsBy = new Map(POLICIES.map((p) => [p, epochs.labels({ policy: p })]));
  const codecBytesBy = new Map(CODECS.map((c) => [c, codecBytes.labels({ codec: c })]));
  const codecPagesBy = new Map(CODECS.map((c) => [c, codecPages.labels({ codec: c })]));

  const faultCodes = new Set<string>();
  const taskUnits = new Map<string, string>();
  const ratioWindow = new Ring<{ wire: number; raw: number }>(COMPRESSION_WINDOW);
  let windowWire = 0;
  let windowRaw = 0;

  const recorder = new StatusRecorder(() => state, opts.status);
  let invalidCount = 0;
  let commitResetAllowed = false;

  const handlers: { [K in FtvmEventName]: (p: FtvmEventMap[K]) => void } = {
    role: (p) => {
      if (p.role !== state.role) commitResetAllowed = true;
      state.role = p.role;
      state.term = p.term;
      for (const r of ROLES) roleGauge.set({ role: r }, r === p.role ? 1 : 0);
      term.set(p.term);
    },
    protection: (p) => {
      state.protected = p.protected;
      state.protectionReason = reasonText(p.reason);
      protectedG.set(p.protected ? 1 : 0);
    },
    ready: (p) => {
      state.ready = p.ready;
      state.readyReason = reasonText(p.reason);
      readyG.set(p.ready ? 1 : 0);
    },
    epochEnded: (p) => {
      state.policy = p.policy;
      state.lastEpoch = p.epoch;
      state.epochsTotal++;
      epochsBy.get(p.policy)!.inc();
      epochDuration.observe(p.durationMs / 1000);
      epochPause.observe(p.pauseMs / 1000);
      dirtyPages.observe(p.dirtyPages);
      if (p.earlyPages) earlyCopied.inc(p.earlyPages);
      recorder.pauses.add(p.pauseMs);
    },
    diskCommitted: (p) => {
      diskCommits.inc();
      diskCommitSeconds.observe(p.durationMs / 1000);
    },
    checkpointSent: (p) => {
      if (p.diskBlocks) diskBlocks.inc(p.diskBlocks);
      if (p.diskWireBytes) diskWire.inc(p.diskWireBytes);
      state.checkpointsSent++;
      state.wireBytesTotal += p.wireBytes;
      state.rawBytesTotal += p.rawBytes;
      sent.inc();
      wire.inc(p.wireBytes);
      raw.inc(p.rawBytes);
      if (p.byCodec) {
        for (const c of CODECS) {
          const s = p.byCodec[c];
          if (!s) continue;
          codecBytesBy.get(c)!.inc(s.bytes);
          codecPagesBy.get(c)!.inc(s.pages);
        }
      }
      // Sliding sums over the window: subtract the checkpoint the ring is about to drop.
      if (ratioWindow.length === ratioWindow.capacity) {
        const oldest = ratioWindow.first()!;
        windowWire -= oldest.wire;
        windowRaw -= oldest.raw;
      }
      ratioWindow.push({ wire: p.wireBytes, raw: p.rawBytes });
      windowWire += p.wireBytes;
      windowRaw += p.rawBytes;
      if (windowWire > 0) {
        state.compressionRatio = windowRaw / windowWire;
        ratio.set(state.compressionRatio);
      }
    },
    checkpointAcked: (p) => {
      state.checkpointsAcked++;
      acked.inc();
      ackLatency.observe(p.ackLatencyMs / 1000);
    },
    checkpointRejected: () => {
      state.checkpointsRejected++;
      rejected.inc();
    },
    committed: (p) => {
      // Commits are monotonic within a role; a late, older one (reordered delivery) must not move the
      // gauge back. A role change (promotion, re-sync) may legitimately restart the numbering.
      if (state.committedEpoch === null || p.epoch > state.committedEpoch || commitResetAllowed) {
        commitResetAllowed = false;
        state.committedEpoch = p.epoch;
        committedEpoch.set(p.epoch);
      }
      if (p.source !== undefined) commitsBySource.inc({ source: p.source });
    },
    inFlight: (p) => {
      state.inFlightEpochs = p.epochs;
      state.inFlightBytes = p.bytes;
      inFlightEpochs.set(p.epochs);
      inFlightBytes.set(p.bytes);
    },
    outputHeld: (p) => {
      state.outputHeldBytes = p.bytes;
      state.outputHeldConns = p.conns;
      heldBytes.set(p.bytes);
      heldConns.set(p.conns);
    },
    outputReleased: (p) => {
      state.outputReleasedBytesTotal += p.bytes;
      releasedBytes.inc(p.bytes);
      if (p.unprotected === true) releasedUnprotected.inc(p.bytes);
      outputDelay.observe(p.delayMs / 1000);
      recorder.outputDelays.add(p.delayMs);
    },
    inputReplayed: (p) => {
      state.inputReplayedBytesTotal += p.bytes;
      replayed.inc(p.bytes);
    },
    failover: (p) => {
      state.failoversTotal++;
      state.lastFailoverMs = p.durationMs;
      state.lastFailoverAt = Date.now();
      state.term = Math.max(state.term, p.term);
      failovers.inc();
      lastFailover.set(p.durationMs / 1000);
      lastFailoverAt.set(state.lastFailoverAt / 1000);
      term.set(state.term);
    },
    clockDrift: (p) => {
      state.driftNs = Number(p.driftNs);
      state.clockMode = p.mode;
      drift.set(state.driftNs / 1e9);
    },
    guestFault: (p) => {
      let code = p.code;
      if (!faultCodes.has(code)) {
        if (faultCodes.size >= MAX_FAULT_CODES) code = 'OTHER';
        else faultCodes.add(code);
      }
      state.guestFaultsTotal++;
      faults.inc({ code });
    },
    guestContained: (p) => {
      contained.set(p.contained ? 1 : 0);
    },
    progress: (p) => {
      const prevUnit = taskUnits.get(p.task);
      if (prevUnit !== undefined && prevUnit !== p.unit) {
        taskDone.remove({ task: p.task, unit: prevUnit });
        taskTotal.remove({ task: p.task, unit: prevUnit });
      }
      taskUnits.set(p.task, p.unit);
      state.progress[p.task] = { done: p.done, total: p.total, unit: p.unit };
      taskDone.set({ task: p.task, unit: p.unit }, p.done);
      taskTotal.set({ task: p.task, unit: p.unit }, p.total);
      taskRatio.set({ task: p.task }, p.total > 0 ? Math.min(1, p.done / p.total) : 0);
    },
    scrub: (p) => {
      state.scrubPagesTotal += p.pagesChecked;
      state.scrubMismatchesTotal += p.mismatches;
      scrubPages.inc(p.pagesChecked);
      scrubMismatches.inc(p.mismatches);
    },
    clients: (p) => {
      state.clients = p.connected;
      clients.set(p.connected);
    },
    clientDropped: (p) => {
      dropped.inc({ reason: p.reason });
    },
    link: (p) => {
      state.links[p.peer] = p.up;
      linkUp.set({ peer: p.peer }, p.up ? 1 : 0);
    },
    throttle: (p) => {
      state.throttleRatio = p.ratio;
      throttle.set(p.ratio);
    },
  };

  const unsubscribe: Array<() => void> = [];
  for (const name of EVENT_NAMES) {
    const handle = handlers[name] as (p: unknown) => void;
    const valid = VALID[name] as (p: unknown) => boolean;
    unsubscribe.push(bus.on(name, (p: unknown) => {
      if (typeof p !== 'object' || p === null || !valid(p)) {
        invalidCount++;
        invalid.inc({ event: name });
        return;
      }
      handle(p);
    }));
  }

  let closed = false;
  return {
    registry,
    bus,
    state,
    status: recorder,
    get invalidEvents() {
      return invalidCount;
    },
    readiness: () => ({ ok: state.ready, detail: { role: state.role, term: state.term, reason: state.readyReason } }),
    health: () => ({ ok: true, detail: { role: state.role, uptimeSec: Math.round(process.uptime()) } }),
    close: () => {
      if (closed) return;
      closed = true;
      for (const u of unsubscribe) u();
      recorder.stop();
    },
  };
}

/** Every ftvm_* metric family createRoleMetrics registers (for static checks of dashboards). */
export const METRIC_NAMES: readonly string[] = [
  'ftvm_role', 'ftvm_term', 'ftvm_protected', 'ftvm_ready', 'ftvm_committed_epoch', 'ftvm_epochs_total',
  'ftvm_epoch_duration_seconds', 'ftvm_epoch_pause_seconds', 'ftvm_epoch_dirty_pages', 'ftvm_epoch_early_copied_pages_total', 'ftvm_checkpoint_ack_latency_seconds',
  'ftvm_checkpoints_sent_total', 'ftvm_checkpoints_acked_total', 'ftvm_checkpoints_rejected_total',
  'ftvm_replication_wire_bytes_total', 'ftvm_replication_raw_bytes_total', 'ftvm_replication_codec_bytes_total',
  'ftvm_replication_pages_total', 'ftvm_replication_compression_ratio', 'ftvm_inflight_epochs', 'ftvm_inflight_bytes',
  'ftvm_output_held_bytes', 'ftvm_output_held_connections', 'ftvm_output_released_bytes_total', 'ftvm_output_released_unprotected_bytes_total', 'ftvm_output_delay_seconds',
  'ftvm_proxy_commits_total', 'ftvm_input_replayed_bytes_total', 'ftvm_failovers_total', 'ftvm_last_failover_duration_seconds',
  'ftvm_last_failover_timestamp_seconds', 'ftvm_clock_drift_seconds', 'ftvm_guest_faults_total', 'ftvm_guest_contained', 'ftvm_task_done',
  'ftvm_task_total', 'ftvm_task_progress_ratio', 'ftvm_scrub_pages_total', 'ftvm_scrub_mismatches_total',
  'ftvm_client_connections', 'ftvm_clients_dropped_total', 'ftvm_link_up', 'ftvm_vcpu_throttle_ratio', 'ftvm_metrics_invalid_events_total',
  'ftvm_disk_blocks_replicated_total', 'ftvm_disk_replication_wire_bytes_total', 'ftvm_disk_commits_total', 'ftvm_disk_commit_seconds',
];
