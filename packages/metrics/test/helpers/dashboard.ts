import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
export const DASHBOARD_PATH = `${REPO_ROOT}deploy/grafana/dashboards/ftvm.json`;
export const PROMETHEUS_CONFIG_PATH = `${REPO_ROOT}deploy/prometheus/prometheus.yml`;

/** The value the dashboard's $job variable takes for "All". */
export const ALL_JOBS = 'ftvm-.*';

export interface DashboardQuery {
  /** Panel title, or "annotation: <name>". */
  where: string;
  expr: string;
}

interface Panel { type: string; title: string; targets?: Array<{ expr: string }>; panels?: Panel[] }

/** Every PromQL expression of the provisioned dashboard (panel targets and annotations), $job expanded to all jobs. */
export function dashboardQueries(): DashboardQuery[] {
  const dash = JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as {
    panels: Panel[];
    annotations: { list: Array<{ name: string; expr?: string }> };
  };
  const out: DashboardQuery[] = [];
  const walk = (ps: Panel[]): void => {
    for (const p of ps) {
      for (const t of p.targets ?? []) out.push({ where: p.title, expr: t.expr.replaceAll('$job', ALL_JOBS) });
      if (p.panels) walk(p.panels);
    }
  };
  walk(dash.panels);
  for (const a of dash.annotations.list) if (a.expr) out.push({ where: `annotation: ${a.name}`, expr: a.expr.replaceAll('$job', ALL_JOBS) });
  return out;
}

const PROMQL_WORDS = new Set([
  'sum', 'max', 'min', 'avg', 'count', 'by', 'without', 'rate', 'irate', 'increase', 'changes', 'histogram_quantile',
  'and', 'or', 'unless', 'on', 'ignoring', 'group_left', 'group_right', 'label_values', 'offset', 'bool', 'le',
]);

/** Metric names an expression selects: identifiers that are not PromQL words, labels or strings. */
export function metricNamesIn(expr: string): string[] {
  const noStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const noLabelSets = noStrings.replace(/\{[^}]*\}/g, '{}').replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, '');
  const noRanges = noLabelSets.replace(/\[[^\]]*\]/g, '');
  const names = new Set<string>();
  for (const m of noRanges.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const w = m[0];
    const after = noRanges.slice(m.index + w.length).trimStart();
    if (PROMQL_WORDS.has(w) || after.startsWith('(')) continue;
    names.add(w);
  }
  return [...names];
}
