import type { PromScrape } from './prom-text.js';

export interface ClusterScrapes {
  proxy?: PromScrape;
  /** The node that is primary now (after a failover: the promoted one). */
  primary?: PromScrape;
  secondary?: PromScrape;
}

/**
 * Relations that must hold between the metrics of the roles of one cluster at any moment,
 * given scrapes taken in the order proxy, primary, secondary (counters only grow, so that
 * order keeps "downstream <= upstream" true despite scrapes not being simultaneous).
 * Returns the violated relations as sentences; [] when consistent.
 */
export function crossRoleViolations(s: ClusterScrapes): string[] {
  const out: string[] = [];
  const v = (sc: PromScrape | undefined, name: string, labels?: Record<string, string>): number | undefined => sc?.value(name, labels);
  for (const [role, sc] of Object.entries(s) as Array<[string, PromScrape | undefined]>) {
    if (!sc) continue;
    const invalid = sc.sum('ftvm_metrics_invalid_events_total');
    if (invalid > 0) out.push(`${role}: ${invalid} malformed events dropped (ftvm_metrics_invalid_events_total)`);
    const active = sc.samples.filter((x) => x.name === 'ftvm_role' && x.value === 1).map((x) => x.labels.role);
    if (active.length !== 1) out.push(`${role}: ftvm_role has ${active.length} active roles (${active.join(', ')})`);
    const sent = v(sc, 'ftvm_checkpoints_sent_total') ?? 0;
    const acked = v(sc, 'ftvm_checkpoints_acked_total') ?? 0;
    if (acked > sent) out.push(`${role}: acked ${acked} > sent ${sent} checkpoints`);
    const wire = v(sc, 'ftvm_replication_wire_bytes_total') ?? 0;
    if (sent > 0 && wire === 0) out.push(`${role}: checkpoints sent but no wire bytes`);
    if (sc.value('ftvm_protected') === 1 && role === 'primary' && sc.value('ftvm_link_up', { peer: 'secondary' }) === 0) {
      out.push('primary: protected while its secondary link is down');
    }
  }
  const pc = v(s.proxy, 'ftvm_committed_epoch');
  const mc = v(s.primary, 'ftvm_committed_epoch');
  const sc = v(s.secondary, 'ftvm_committed_epoch');
  // Commit flows secondary (applies, acks) -> primary (ack) -> proxy (commit, release).
  if (pc !== undefined && mc !== undefined && pc > mc) out.push(`proxy committed epoch ${pc} > primary's ${mc}`);
  if (mc !== undefined && sc !== undefined && s.secondary && mc > sc) out.push(`primary committed epoch ${mc} > secondary's ${sc}`);
  const pt = v(s.proxy, 'ftvm_term');
  for (const role of ['primary', 'secondary'] as const) {
    const t = v(s[role], 'ftvm_term');
    if (pt !== undefined && t !== undefined && t > pt) out.push(`${role} term ${t} > proxy term ${pt} (the proxy decides terms)`);
  }
  if (s.primary && s.primary.value('ftvm_role', { role: 'primary' }) !== 1) out.push('the primary scrape does not report role primary');
  return out;
}
