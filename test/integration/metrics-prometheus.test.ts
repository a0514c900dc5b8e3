import { afterAll, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { mark, waitForLineAfter } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';
import { requireBinary } from '../../packages/metrics/test/helpers/binaries.js';
import { PROMETHEUS_CONFIG_PATH, dashboardQueries } from '../../packages/metrics/test/helpers/dashboard.js';
import { startPrometheus, type PromQLResult, type PromQLSample, type PrometheusInstance } from '../../packages/metrics/test/helpers/prometheus.js';

/**
 * Must-show 2 of the observability issue: the real Prometheus binary loads the committed
 * deploy/prometheus/prometheus.yml (targets rewritten to this test's ports), scrapes three real
 * roles under load and through a failover, and every PromQL expression of the provisioned
 * Grafana dashboard returns data.
 */

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const vector = (r: PromQLResult): PromQLSample[] => (r.resultType === 'vector' ? (r.result as PromQLSample[]) : []);
const first = (r: PromQLResult): number => Number(vector(r)[0]?.value[1] ?? NaN);

/** SET traffic on one proxy connection until stop(): a pipelining client, 16 in flight. */
async function steadyLoad(port: number): Promise<{ stop: () => Promise<string[]> }> {
  const c = await RespClient.connect(port);
  let running = true;
  let sent = 0;
  const done = (async () => {
    while (running && !c.closed) {
      while (sent - c.replies.length < 16) c.send('SET', `k${sent++ % 256}`, 'v'.repeat(512));
      await c.waitReplies(c.replies.length + 1, 1000);
      // Keep the rate moderate: a steady workload, not a stress test.
      await sleep(5);
    }
    await c.waitReplies(sent, 20_000);
  })();
  return {
    async stop() {
      running = false;
      await done;
      c.end();
      return c.replies.filter((r) => r !== 'OK');
    },
  };
}

describe('the Grafana dashboard against real roles through a real Prometheus', () => {
  const cluster = new Cluster({ metrics: true });
  let prom: PrometheusInstance | undefined;
  afterAll(async () => {
    await prom?.stop();
    await cluster.stop();
  });

  it('every panel and annotation query returns data, before and after a failover', async (ctx) => {
    requireBinary(ctx, ['prometheus'], 'prometheus');
    await cluster.start();
    const ports = cluster.metricsPorts!;
    prom = await startPrometheus({
      configPath: PROMETHEUS_CONFIG_PATH,
      targets: {
        'localhost:9100': `127.0.0.1:${ports.proxy}`,
        'localhost:9101': `127.0.0.1:${ports.a}`,
        'localhost:9102': `127.0.0.1:${ports.b}`,
      },
      scrapeIntervalSec: 1,
    });
    // The committed config, only its targets and intervals rewritten: the job names are real.
    expect(prom.configText).toMatch(/job_name: ftvm-proxy[\s\S]*job_name: ftvm-primary[\s\S]*job_name: ftvm-secondary/);
    await prom.waitForTargetsUp();
    const load = await steadyLoad(cluster.ports.proxy);
    await prom.waitFor('sum(rate(ftvm_epochs_total{job="ftvm-primary"}[1m]))', (r) => first(r) > 0, 30_000);
    await prom.waitFor('sum(rate(ftvm_output_delay_seconds_count{job="ftvm-proxy"}[1m]))', (r) => first(r) > 0, 30_000);
    const before = await prom.queryPromQL('max by (job, role) (ftvm_role) == 1');
    expect(vector(before).map((s) => `${s.metric.job}=${s.metric.role}`).sort()).toEqual(['ftvm-primary=primary', 'ftvm-proxy=proxy', 'ftvm-secondary=secondary']);

    // Fail over: Prometheus must see the counter at 0 and then at 1 for the annotation query.
    const from = mark(cluster.nodes.b);
    cluster.nodes.a.proc.kill('SIGKILL');
    await waitForLineAfter(cluster.nodes.b, /PROMOTED to primary/, from, 20_000);
    cluster.startNode('a', 'secondary');
    await waitForLineAfter(cluster.nodes.b, / PROTECTED:/, from, 60_000);
    await prom.waitFor('sum(ftvm_failovers_total{job="ftvm-proxy"})', (r) => first(r) === 1, 20_000);
    await prom.waitForTargetsUp(20_000);
    // Rates over [1m] on the promoted node need two of its scrapes with epochs in between.
    await prom.waitFor('sum(rate(ftvm_epochs_total{job="ftvm-secondary"}[1m]))', (r) => first(r) > 0, 30_000);
    await prom.waitFor('max(ftvm_protected{job="ftvm-secondary"})', (r) => first(r) === 1, 30_000);

    const empty: string[] = [];
    const queries = dashboardQueries();
    expect(queries.length).toBeGreaterThan(20);
    for (const q of queries) {
      const r = await prom.queryPromQL(q.expr);
      const n = r.resultType === 'vector' || r.resultType === 'matrix' ? (r.result as unknown[]).length : 1;
      if (n === 0) empty.push(`${q.where}: ${q.expr}`);
    }
    expect(empty).toEqual([]);
    expect(await load.stop()).toEqual([]);

    // The roles swapped processes: read the role from ftvm_role, never from the job.
    const after = await prom.queryPromQL('max by (job, role) (ftvm_role) == 1');
    expect(vector(after).map((s) => `${s.metric.job}=${s.metric.role}`).sort()).toEqual(['ftvm-primary=secondary', 'ftvm-proxy=proxy', 'ftvm-secondary=primary']);
    expect(first(await prom.queryPromQL('max(ftvm_term{job="ftvm-proxy"})'))).toBe(1);
    // The "is the guest protected?" query of docs/observability.md: the serving primary says so.
    const isProtected = 'max(ftvm_protected{job=~"ftvm-primary|ftvm-secondary"} * on(job) group_left max by (job) (ftvm_role{role="primary"}))';
    expect(first(await prom.queryPromQL(isProtected))).toBe(1);
    expect(first(await prom.queryPromQL('max(ftvm_last_failover_duration_seconds{job="ftvm-proxy"})'))).toBeGreaterThan(0);
    // Wire bytes never exceed raw bytes on either node.
    const ratio = vector(await prom.queryPromQL('sum by (job) (ftvm_replication_wire_bytes_total) / sum by (job) (ftvm_replication_raw_bytes_total > 0)'));
    expect(ratio.length).toBeGreaterThan(0);
    for (const s of ratio) expect(Number(s.value[1])).toBeLessThanOrEqual(1);
  }, 240_000);
});
