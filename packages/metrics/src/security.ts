import { Gauge, type Registry } from 'prom-client';

/** What a role's link listener refused so far (see @ftvm/protocol ListenerStats). */
export interface ListenerCounts {
  links: number;
  droppedConnections: number;
  refusedBusy: number;
  failedHandshakes: number;
}

export interface SecurityMetricsSource {
  /** The process runs with --insecure (no token: anyone who reaches its ports controls it). */
  insecure: boolean;
  /** Its link listener's counts, read at each scrape (absent: the role has no listener). */
  listener?: () => ListenerCounts | undefined;
}

/**
 * ftvm_insecure, and the link listener's bounds at work: links open, connections dropped
 * at accept (over maxLinks + pending handshakes), refused as busy, failed handshakes.
 */
export function registerSecurityMetrics(registry: Registry, src: SecurityMetricsSource): void {
  const reg = [registry];
  new Gauge({ name: 'ftvm_insecure', help: '1 when this process runs with --insecure (links unauthenticated), else 0.', registers: reg }).set(src.insecure ? 1 : 0);
  const listener = src.listener;
  if (!listener) return;
  new Gauge({
    name: 'ftvm_listener_links', help: 'Authenticated links open on this process\'s link listener.', registers: reg,
    collect() {
      this.set(listener()?.links ?? 0);
    },
  });
  new Gauge({
    name: 'ftvm_listener_refused_connections', help: 'Connections the link listener refused since start (a running total), by reason: dropped (over the socket bound), busy (over maxLinks or pending handshakes), handshake (failed or timed out).',
    labelNames: ['reason'], registers: reg,
    collect() {
      const c = listener();
      this.set({ reason: 'dropped' }, c?.droppedConnections ?? 0);
      this.set({ reason: 'busy' }, c?.refusedBusy ?? 0);
      this.set({ reason: 'handshake' }, c?.failedHandshakes ?? 0);
    },
  });
}
