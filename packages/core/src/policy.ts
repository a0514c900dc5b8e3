import { CORE_ERR, CoreOptionError } from './errors.js';
import { optNumber, rejectUnknown } from './options.js';

/**
 * What a policy sees when the primary asks whether to end the running epoch.
 * All times are ms on the runtime's monotonic clock; the policy never reads a clock.
 */
export interface EpochPolicyInput {
  nowMs: number;
  /** When the running epoch began (the boundary that ended the previous one). */
  epochStartMs: number;
  /** When the previous epoch was ended; -Infinity before the first end. */
  lastEpochEndMs: number;
  /** The guest produced output in the running epoch (held at the proxy until commit). */
  outputPending: boolean;
  /** When the first output of the running epoch was produced; set iff outputPending. */
  outputPendingSinceMs?: number;
  /** Bytes of memory the running epoch has dirtied so far, as the runtime last estimated. */
  dirtyBytesEstimate: number;
  /** Epochs collected and not yet acked (0 when unprotected). */
  inFlight: number;
  /**
   * A protected primary awaits acks: when its oldest unacked epoch was collected. Undefined
   * while nothing is in flight, unprotected, or while a new secondary syncs (output is
   * committed without acks then).
   */
  awaitingAckSinceMs?: number;
  /** The in-flight window (count or bytes) is full: no epoch may end now. */
  windowFull: boolean;
}

export interface EpochDecision {
  /** End the running epoch now (the primary emits `collect`). Never true when windowFull. */
  endEpoch: boolean;
  /**
   * When to ask again if nothing else happens (ms, absolute); undefined: only an event
   * (output, ack, dirty estimate) can change the answer. The runtime keeps one timer.
   */
  nextDeadlineMs?: number;
  /**
   * Sync-io: the vCPU must stay paused from this epoch end until its ack (the guest
   * waits for its output to be protected). Only meaningful with endEpoch.
   */
  waitForAck: boolean;
}

export type PolicyName = 'periodic' | 'sync-io' | 'adaptive';

export interface EpochPolicy {
  readonly name: PolicyName;
  /** The normalised options (defaults filled in), for logs and status. */
  readonly options: Readonly<Record<string, number | boolean>>;
  decide(input: EpochPolicyInput): EpochDecision;
}

export interface PeriodicOptions {
  /** Epoch length, ms. Default 25 (Remus); 100 models QEMU MC. */
  intervalMs?: number;
}

export interface SyncIoOptions {
  /**
   * Longest epoch without output, ms. Default 1000. Kemari checkpoints only before
   * output; the bound keeps the proxy's input log and the replay after a failover short
   * when a guest consumes input without answering.
   */
  maxIntervalMs?: number;
}

export interface AdaptiveOptions {
  /**
   * Least time between two epoch ends, ms. Default 1. Output arriving sooner is
   * coalesced into the next epoch. Why 1: the goal is p99 latency <= 0.1 x MC's
   * (MC holds output ~100 ms) while keeping >= 0.8 of unprotected throughput. Each
   * epoch end costs one short vCPU pause (O(dirty pages)) plus per-checkpoint
   * messages; at most 1000 ends/s keeps that cost to a few % even under continuous
   * output, and adds at most 1 ms to a reply's wait, far under the 10 ms budget.
   * Node timers resolve to 1 ms anyway, so a smaller gap would not be honoured.
   */
  minGapMs?: number;
  /**
   * Longest epoch, ms. Default 50. Bounds how much input a failover replays and how
   * stale the secondary's image gets while the guest computes without output.
   */
  maxIntervalMs?: number;
  /**
   * End the epoch once it has dirtied this many bytes. Default 4 MiB (1024 pages):
   * a checkpoint that large crosses a ~1 GB/s link in ~4 ms, so output of the next
   * epochs never queues long behind it.
   */
  dirtyBudgetBytes?: number;
  /**
   * Group commit (opt-in, default false): while a protected primary awaits an ack, output gathers
   * into the running epoch and the ack asks again, so under load the epoch rate follows the
   * checkpoint round trip, not the request rate. The dirty budget still ends an epoch while
   * one is in flight, and so does an ack overdue by maxIntervalMs (a lost checkpoint is then
   * found by the next one). Ending epochs at maxIntervalMs of their own while one is in
   * flight would keep two in flight for good: every ack leaves one unacked.
   */
  groupCommit?: boolean;
}

const NO_END = (nextDeadlineMs?: number): EpochDecision => ({ endEpoch: false, nextDeadlineMs, waitForAck: false });

/** Remus / MC: end epochs on a fixed interval, whatever the output. */
export function periodic(opts: PeriodicOptions = {}): EpochPolicy {
  rejectUnknown('periodic', opts as Record<string, unknown>, ['intervalMs']);
  const intervalMs = optNumber('periodic', opts as Record<string, unknown>, 'intervalMs', 25, { minExclusive: 0 });
  return {
    name: 'periodic',
    options: { intervalMs },
    decide(i) {
      // A full window defers the end; the ack that frees it triggers a new decision.
      if (i.windowFull) return NO_END();
      const due = i.epochStartMs + intervalMs;
      if (i.nowMs >= due) return { endEpoch: true, nextDeadlineMs: undefined, waitForAck: false };
      return NO_END(due);
    },
  };
}

/**
 * Kemari: output must not leave before the state behind it is on the secondary, and the
 * guest waits meanwhile. One epoch at a time: never ends an epoch while one is in flight.
 */
export function syncIo(opts: SyncIoOptions = {}): EpochPolicy {
  rejectUnknown('sync-io', opts as Record<string, unknown>, ['maxIntervalMs']);
  const maxIntervalMs = optNumber('sync-io', opts as Record<string, unknown>, 'maxIntervalMs', 1000, { minExclusive: 0 });
  return {
    name: 'sync-io',
    options: { maxIntervalMs },
    decide(i) {
      if (i.windowFull || i.inFlight > 0) return NO_END();
      if (i.outputPending) return { endEpoch: true, nextDeadlineMs: undefined, waitForAck: true };
      const due = i.epochStartMs + maxIntervalMs;
      if (i.nowMs >= due) return { endEpoch: true, nextDeadlineMs: undefined, waitForAck: false };
      return NO_END(due);
    },
  };
}

/**
 * ftvm's default: end an epoch as soon as output is pending, never sooner than minGapMs
 * after the previous end; end it anyway after maxIntervalMs or once dirtyBudgetBytes are
 * dirty. With groupCommit, while a protected primary awaits an ack, output of one round
 * trip gathers into one epoch. The vCPU never waits for an
 * ack; the window bounds how far it runs ahead.
 */
export function adaptive(opts: AdaptiveOptions = {}): EpochPolicy {
  const o = opts as Record<string, unknown>;
  rejectUnknown('adaptive', o, ['minGapMs', 'maxIntervalMs', 'dirtyBudgetBytes', 'groupCommit']);
  const minGapMs = optNumber('adaptive', o, 'minGapMs', 1, { min: 0 });
  const maxIntervalMs = optNumber('adaptive', o, 'maxIntervalMs', 50, { minExclusive: 0 });
  const dirtyBudgetBytes = optNumber('adaptive', o, 'dirtyBudgetBytes', 4 * 1024 * 1024, { minExclusive: 0 });
  if (maxIntervalMs < minGapMs) {
    throw new CoreOptionError(
      CORE_ERR.OPTION,
      `adaptive.maxIntervalMs (${maxIntervalMs}) must be >= adaptive.minGapMs (${minGapMs})`,
    );
  }
  if (o.groupCommit !== undefined && typeof o.groupCommit !== 'boolean') {
    throw new CoreOptionError(CORE_ERR.OPTION, `adaptive.groupCommit must be a boolean, got ${String(o.groupCommit)}`);
  }
  const groupCommit = o.groupCommit === true;
  return {
    name: 'adaptive',
    options: { minGapMs, maxIntervalMs, dirtyBudgetBytes, groupCommit },
    decide(i) {
      if (i.windowFull) return NO_END();
      const gapOpen = i.lastEpochEndMs + minGapMs;
      const maxDue = i.epochStartMs + maxIntervalMs;
      const overBudget = i.dirtyBytesEstimate >= dirtyBudgetBytes;
      if (groupCommit && i.awaitingAckSinceMs !== undefined) {
        // Group commit: output gathers while a checkpoint is in flight; its ack asks again.
        const overdue = i.awaitingAckSinceMs + maxIntervalMs;
        const due = overBudget ? gapOpen : Math.max(gapOpen, overdue, i.outputPending ? -Infinity : maxDue);
        return i.nowMs >= due ? { endEpoch: true, nextDeadlineMs: undefined, waitForAck: false } : NO_END(due);
      }
      const wantsEnd = i.outputPending || overBudget;
      if (i.nowMs >= maxDue) return { endEpoch: true, nextDeadlineMs: undefined, waitForAck: false };
      if (wantsEnd) {
        if (i.nowMs >= gapOpen) return { endEpoch: true, nextDeadlineMs: undefined, waitForAck: false };
        return NO_END(Math.min(gapOpen, maxDue));
      }
      return NO_END(maxDue);
    },
  };
}

export type PolicyOptions = PeriodicOptions | SyncIoOptions | AdaptiveOptions;

export const POLICY_NAMES: readonly PolicyName[] = ['periodic', 'sync-io', 'adaptive'];

/** Builds a policy by name (the cli's --policy). Default: adaptive. */
export function createPolicy(name: PolicyName | string = 'adaptive', opts: Record<string, unknown> = {}): EpochPolicy {
  switch (name) {
    case 'periodic':
      return periodic(opts as PeriodicOptions);
    case 'sync-io':
      return syncIo(opts as SyncIoOptions);
    case 'adaptive':
      return adaptive(opts as AdaptiveOptions);
    default:
      throw new CoreOptionError(CORE_ERR.OPTION, `policy must be one of ${POLICY_NAMES.join(', ')}, got ${String(name)}`);
  }
}
