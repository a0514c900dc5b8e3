import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { DEFAULT_METRICS_PORTS, FtvmEvents, createRoleMetrics } from '../src/index.js';
import { requireBinary } from './helpers/binaries.js';
import { DASHBOARD_PATH, PROMETHEUS_CONFIG_PATH, REPO_ROOT, dashboardQueries, metricNamesIn } from './helpers/dashboard.js';
import { parsePromText } from './helpers/prom-text.js';

async function exportedSampleNames(): Promise<Set<string>> {
  const m = createRoleMetrics('primary', new FtvmEvents(), { status: { autoStart: false } });
  try {
    // Families from `# TYPE`, so labelled series not yet seen (fault codes, tasks) still count.
    const names = new Set<string>();
    for (const [family, type] of parsePromText(await m.registry.metrics()).types) {
      names.add(family);
      if (type === 'histogram') for (const sfx of ['_bucket', '_sum', '_count']) names.add(family + sfx);
      if (type === 'summary') for (const sfx of ['_sum', '_count']) names.add(family + sfx);
    }
    return names;
  } finally {
    m.close();
  }
}

describe('deploy/grafana dashboard', () => {
  it('parses and uses only the provisioned Prometheus datasource', () => {
    const dash = JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as { uid: string; panels: Array<{ type: string; datasource?: { uid: string } }> };
    const ds = readFileSync(`${REPO_ROOT}deploy/grafana/provisioning/datasources/prometheus.yml`, 'utf8');
    expect(ds).toMatch(/uid: ftvm-prometheus/);
    expect(dash.uid).toBe('ftvm-overview');
    for (const p of dash.panels.filter((x) => x.type !== 'row')) expect(p.datasource?.uid).toBe('ftvm-prometheus');
  });

  it('has panels for protection, epoch rate and pause, bandwidth, output delay, failovers and clock drift', () => {
    const all = dashboardQueries();
    const has = (metric: string): boolean => all.some((q) => metricNamesIn(q.expr).includes(metric));
    for (const m of ['ftvm_protected', 'ftvm_epochs_total', 'ftvm_epoch_pause_seconds_bucket', 'ftvm_replication_wire_bytes_total',
      'ftvm_replication_raw_bytes_total', 'ftvm_output_delay_seconds_bucket', 'ftvm_failovers_total', 'ftvm_clock_drift_seconds']) {
      expect(has(m), m).toBe(true);
    }
  });

  it('queries only metric names the role registry exports', async () => {
    const exported = await exportedSampleNames();
    const queries = dashboardQueries();
    expect(queries.length).toBeGreaterThan(20);
    const unknown = queries.flatMap((q) => metricNamesIn(q.expr).filter((n) => !exported.has(n)).map((n) => `${q.where}: ${n}`));
    expect(unknown).toEqual([]);
  });

  it('finds the metric names in an expression, ignoring functions, labels and ranges', () => {
    expect(metricNamesIn('histogram_quantile(0.99, sum by (job, le) (rate(ftvm_x_bucket{job=~"a|b"}[1m])))')).toEqual(['ftvm_x_bucket']);
    expect(metricNamesIn('max by (job, role) (ftvm_role{job=~"ftvm-.*"}) == 1')).toEqual(['ftvm_role']);
    expect(metricNamesIn('a / on (job) b')).toEqual(['a', 'b']);
  });

  it('is provisioned from the folder the dashboard provider reads', () => {
    const prov = readFileSync(`${REPO_ROOT}deploy/grafana/provisioning/dashboards/ftvm.yml`, 'utf8');
    expect(prov).toMatch(/type: file/);
    expect(prov).toMatch(/path: \/var\/lib\/grafana\/dashboards/);
  });
});

describe('deploy/prometheus config', () => {
  it('scrapes the three roles on the documented ports', () => {
    const cfg = readFileSync(PROMETHEUS_CONFIG_PATH, 'utf8');
    const jobs = [...cfg.matchAll(/job_name: (\S+)\s+metrics_path: \/metrics\s+static_configs:\s+- targets: \['([^']+)'\]/g)].map((m) => [m[1], m[2]]);
    const { proxy, primary, secondary } = DEFAULT_METRICS_PORTS;
    expect(jobs).toEqual([['ftvm-proxy', `localhost:${proxy}`], ['ftvm-primary', `localhost:${primary}`], ['ftvm-secondary', `localhost:${secondary}`]]);
  });

  it('passes promtool check config', async (ctx) => {
    const promtool = requireBinary(ctx, ['promtool'], 'prometheus');
    const { stdout } = await promisify(execFile)(promtool, ['check', 'config', PROMETHEUS_CONFIG_PATH]);
    expect(stdout).toMatch(/SUCCESS/);
  });
});
