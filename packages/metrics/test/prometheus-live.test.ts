import { afterEach, describe, expect, it } from 'vitest';
import { requireBinary } from './helpers/binaries.js';
import { PROMETHEUS_CONFIG_PATH, dashboardQueries } from './helpers/dashboard.js';
import { startPrometheus, type PrometheusInstance } from './helpers/prometheus.js';
import { startTestRole } from './helpers/role.js';
import { simulateCluster } from './helpers/simulate.js';

let prom: PrometheusInstance | undefined;
let sim: { stop: () => void } | undefined;
afterEach(async () => {
  sim?.stop();
  await prom?.stop();
  prom = undefined;
});

describe('dashboard through a real Prometheus', () => {
  it('scrapes the three roles with the deploy config and every panel query returns data', async (ctx) => {
    requireBinary(ctx, ['prometheus'], 'prometheus');
    const proxy = await startTestRole('proxy');
    const primary = await startTestRole('primary');
    const secondary = await startTestRole('secondary');
    const cluster = simulateCluster({ proxy: proxy.bus, primary: primary.bus, secondary: secondary.bus });
    sim = cluster;
    prom = await startPrometheus({
      configPath: PROMETHEUS_CONFIG_PATH,
      targets: {
        'localhost:9100': `127.0.0.1:${proxy.server.port}`,
        'localhost:9101': `127.0.0.1:${primary.server.port}`,
        'localhost:9102': `127.0.0.1:${secondary.server.port}`,
      },
      scrapeIntervalSec: 1,
    });
    await prom.waitForTargetsUp();
    // rate() over [1m] needs two scrapes with movement in between.
    await prom.waitFor('sum(rate(ftvm_epochs_total[1m]))', (r) => Array.isArray(r.result) && r.result.length > 0 && Number((r.result[0] as { value: [number, string] }).value[1]) > 0);
    // The failover annotation needs Prometheus to see the counter move, so fail over only now.
    cluster.failover();
    await prom.waitFor('sum(ftvm_failovers_total{job="ftvm-proxy"})', (r) => Array.isArray(r.result) && r.result.length > 0 && (r.result[0] as { value: [number, string] }).value[1] === '1');
    const empty: string[] = [];
    for (const q of dashboardQueries()) {
      const r = await prom.queryPromQL(q.expr);
      const n = Array.isArray(r.result) && r.resultType === 'vector' ? r.result.length : 1;
      if (n === 0) empty.push(`${q.where}: ${q.expr}`);
    }
    expect(empty).toEqual([]);
    const jobs = await prom.queryPromQL('max by (job, role) (ftvm_role) == 1');
    const pairs = (jobs.result as Array<{ metric: Record<string, string> }>).map((s) => `${s.metric.job}=${s.metric.role}`).sort();
    expect(pairs).toEqual(['ftvm-primary=primary', 'ftvm-proxy=proxy', 'ftvm-secondary=secondary']);
  });
});
