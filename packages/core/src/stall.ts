/**
 * Notices a blocked event loop from the gaps between heartbeat ticks (pure: times are inputs).
 * A node whose loop stalls sends no heartbeats, and its peer may take it for dead; the
 * runtimes log each stall past `thresholdMs`, so a false failover has its cause in the log.
 */
export class StallWatch {
  private last: number | undefined;
  /** The longest gap seen so far, ms. */
  maxGapMs = 0;

  constructor(readonly intervalMs: number, readonly thresholdMs: number) {}

  /** Called at each heartbeat tick; returns how long the loop was blocked (ms) when past the threshold. */
  tick(nowMs: number): number | undefined {
    const prev = this.last;
    this.last = nowMs;
    if (prev === undefined) return undefined;
    const gap = nowMs - prev;
    if (gap > this.maxGapMs) this.maxGapMs = gap;
    const blocked = gap - this.intervalMs;
    return blocked >= this.thresholdMs ? blocked : undefined;
  }
}
