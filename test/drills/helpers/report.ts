import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { TimelineEntry } from './cluster.js';
import type { LoadResult } from './load.js';

export const REPORTS_DIR = fileURLToPath(new URL('../reports/', import.meta.url));

export interface DrillReport {
  drill: string;
  /** One sentence: what was done and what must hold. */
  summary: string;
  timeline: TimelineEntry[];
  /** Client-visible pause per fault, ms. */
  failoverMs: number[];
  load: LoadResult;
  /** Drill-specific facts (metrics before/after, memory, epochs), one line each. */
  facts?: string[];
  /** Whether every assertion of the drill held (written before the assertions throw). */
  passed: boolean;
}

export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

export function distribution(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const f = (v: number) => `${Math.round(v)} ms`;
  return `n=${s.length}, min ${f(s[0] ?? NaN)}, p50 ${f(quantile(s, 0.5))}, p90 ${f(quantile(s, 0.9))}, p99 ${f(quantile(s, 0.99))}, max ${f(s.at(-1) ?? NaN)}`;
}

/** Writes test/drills/reports/<drill>.md: timeline, failover times, requests lost, client errors. */
export function writeReport(r: DrillReport): string {
  mkdirSync(REPORTS_DIR, { recursive: true });
  const lines = [
    `# Drill: ${r.drill}`,
    '',
    `Result: **${r.passed ? 'PASSED' : 'FAILED'}** (${new Date().toISOString()}, image ${process.env.FTVM_DRILL_IMAGE ?? 'ftvm:local'}, node ${process.version}, host ${process.env.HOSTNAME ?? ''})`,
    '',
    r.summary,
    '',
    '| measure | value |',
    '|---|---|',
    `| acknowledged INCRs | ${r.load.acks} |`,
    `| acknowledged writes lost | ${r.load.lost} |`,
    `| client-visible errors | ${r.load.errors.length} |`,
    `| connection resets | ${r.load.resets} |`,
    `| client-visible pause per fault | ${r.failoverMs.length ? distribution(r.failoverMs) : 'n/a'} |`,
    '',
    ...(r.facts?.length ? ['## Facts', '', ...r.facts.map((f) => `- ${f}`), ''] : []),
    ...(r.load.errors.length ? ['## Client errors (first 20)', '', ...r.load.errors.slice(0, 20).map((e) => `- ${e}`), ''] : []),
    '## Timeline (ms since the cluster started)',
    '',
    ...r.timeline.slice(0, 400).map((e) => `- ${String(e.t).padStart(7)} ${e.event}`),
    ...(r.timeline.length > 400 ? [`- ... ${r.timeline.length - 400} more entries`] : []),
    '',
  ];
  const file = `${REPORTS_DIR}${r.drill}.md`;
  writeFileSync(file, lines.join('\n'));
  return file;
}
