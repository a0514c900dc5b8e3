import { describe, expect, it } from 'vitest';
import { type Cluster, useCluster } from '../helpers/cluster.js';
import { mark, waitForLineAfter } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';
import { parsePromText, type PromScrape } from '../../packages/metrics/test/helpers/prom-text.js';
import { crossRoleViolations } from '../../packages/metrics/test/helpers/invariants.js';

/**
 * Must-show 1 of the observability issue: /metrics of every real role, scraped while real
 * clients drive the kv guest, moves consistently — before, during and after a SIGKILL of the primary.
 */

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function scrape(cluster: Cluster, k: 'a' | 'b' | 'proxy'): Promise<PromScrape> {
  const res = await fetch(`${cluster.metricsUrl(k)}/metrics`);
  expect(res.status).toBe(200);
  return parsePromText(await res.text());
}

/** Polls a role's scrape until `accept` holds; returns that scrape (throws with the last values after timeoutMs). */
async function scrapeUntil(cluster: Cluster, k: 'a' | 'b' | 'proxy', accept: (s: PromScrape) => boolean, what: string, timeoutMs = 20_000): Promise<PromScrape> {
  const end = Date.now() + timeoutMs;
  let last: PromScrape | undefined;
  while (Date.now() < end) {
    last = await scrape(cluster, k);
    if (accept(last)) return last;
    await sleep(100);
  }
  const brief = last?.samples.filter((s) => s.name.startsWith('ftvm_') && !s.name.includes('_bucket')).map((s) => `${s.name}${JSON.stringify(s.labels)}=${s.value}`);
  throw new Error(`${k}: ${what} not reached in ${timeoutMs} ms; last scrape:\n${brief?.join('\n')}\n${cluster.dump()}`);
}

/**
 * Pipelined SETs of 1 KiB values over `conns` proxy connections, WINDOW requests in flight on each,
 * until stop(); counts replies and checks each one is OK.
 */
function load(port: number, conns = 4) {
  const WINDOW = 16;
  const value = 'x'.repeat(1024);
  let running = true;
  let replies = 0;
  const bad: string[] = [];
  const clients: RespClient[] = [];
  const done = (async () => {
    for (let i = 0; i < conns; i++) clients.push(await RespClient.connect(port));
    await Promise.all(clients.map(async (c, ci) => {
      let sent = 0;
      while (running && !c.closed) {
        while (sent - c.replies.length < WINDOW) c.send('SET', `key:${ci}:${sent++ % 512}`, value);
        await c.waitReplies(c.replies.length + 1, 1000);
      }
      await c.waitReplies(sent, 20_000);
    }));
    for (const c of clients) {
      replies += c.replies.length;
      for (const r of c.replies) if (r !== 'OK') bad.push(r);
    }
  })();
  return {
    clients,
    get replies() {
      return replies + clients.reduce((n, c) => n + c.replies.length, 0);
    },
    async stop(): Promise<{ replies: number; bad: string[]; closed: number }> {
      running = false;
      await done;
      const closed = clients.filter((c) => c.closed).length;
      for (const c of clients) c.end();
      return { replies, bad, closed };
    },
  };
}

const num = (s: PromScrape, name: string, labels?: Record<string, string>): number => s.value(name, labels) ?? NaN;

describe('metrics of real roles during a run and a failover', () => {
  const cluster = useCluster({ metrics: true });

  it('reports roles, protection and a finished initial sync once the cluster is up', async () => {
    const a = await scrapeUntil(cluster, 'a', (s) => num(s, 'ftvm_task_progress_ratio', { task: 'sync' }) === 1, 'sync progress 1');
    expect(num(a, 'ftvm_role', { role: 'primary' })).toBe(1);
    expect(num(a, 'ftvm_protected')).toBe(1);
    expect(num(a, 'ftvm_ready')).toBe(1);
    expect(num(a, 'ftvm_link_up', { peer: 'secondary' })).toBe(1);
    expect(num(a, 'ftvm_task_total', { task: 'sync', unit: 'pages' })).toBeGreaterThan(0);
    const b = await scrapeUntil(cluster, 'b', (s) => num(s, 'ftvm_protected') === 1, 'secondary protected');
    expect(num(b, 'ftvm_role', { role: 'secondary' })).toBe(1);
    expect(num(b, 'ftvm_link_up', { peer: 'primary' })).toBe(1);
    expect(num(b, 'ftvm_ready')).toBe(1);
    const p = await scrapeUntil(cluster, 'proxy', (s) => num(s, 'ftvm_ready') === 1, 'proxy ready');
    expect(num(p, 'ftvm_role', { role: 'proxy' })).toBe(1);
    // Process metrics sit on each role's registry too.
    expect(num(p, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(num(a, 'process_start_time_seconds')).toBeGreaterThan(0);
  });

  it('moves the counters consistently under load, and output held returns to 0 at rest', async () => {
    const before = { a: await scrape(cluster, 'a'), proxy: await scrape(cluster, 'proxy') };
    const l = load(cluster.ports.proxy);
    const committed: number[] = [];
    const violations: string[] = [];
    for (let i = 0; i < 8; i++) {
      await sleep(250);
      // Scrape order proxy -> primary -> secondary: downstream counters may only lag.
      const proxy = await scrape(cluster, 'proxy');
      const primary = await scrape(cluster, 'a');
      const secondary = await scrape(cluster, 'b');
      violations.push(...crossRoleViolations({ proxy, primary, secondary }).map((v) => `scrape ${i}: ${v}`));
      committed.push(num(primary, 'ftvm_committed_epoch'));
      expect(num(primary, 'ftvm_replication_wire_bytes_total')).toBeLessThanOrEqual(num(primary, 'ftvm_replication_raw_bytes_total'));
      expect(num(secondary, 'ftvm_checkpoints_rejected_total')).toBe(0);
    }
    const res = await l.stop();
    expect(res.bad).toEqual([]);
    expect(res.closed).toBe(0);
    expect(res.replies).toBeGreaterThan(100);
    expect(violations).toEqual([]);
    // Committed epoch never goes back and moved during the run.
    for (let i = 1; i < committed.length; i++) expect(committed[i]).toBeGreaterThanOrEqual(committed[i - 1]!);
    expect(committed.at(-1)!).toBeGreaterThan(num(before.a, 'ftvm_committed_epoch'));

    const a = await scrape(cluster, 'a');
    const epochs = num(a, 'ftvm_epochs_total', { policy: 'adaptive' }) - num(before.a, 'ftvm_epochs_total', { policy: 'adaptive' });
    expect(epochs).toBeGreaterThan(0);
    const wire = num(a, 'ftvm_replication_wire_bytes_total') - num(before.a, 'ftvm_replication_wire_bytes_total');
    const raw = num(a, 'ftvm_replication_raw_bytes_total') - num(before.a, 'ftvm_replication_raw_bytes_total');
    expect(wire).toBeGreaterThan(0);
    expect(wire).toBeLessThanOrEqual(raw);
    expect(num(a, 'ftvm_replication_compression_ratio')).toBeGreaterThanOrEqual(1);
    // Pages by codec add up to the dirty pages of the epochs sent.
    const pages = ['ZERO', 'RAW', 'LZ4', 'XOR_LZ4', 'SPARSE', 'XOR_SPARSE'].reduce((n, codec) => n + num(a, 'ftvm_replication_pages_total', { codec }), 0);
    expect(pages).toBeGreaterThan(0);
    expect(num(a, 'ftvm_checkpoints_acked_total')).toBeLessThanOrEqual(num(a, 'ftvm_checkpoints_sent_total'));
    expect(num(a, 'ftvm_epoch_pause_seconds_count')).toBeGreaterThan(0);
    expect(num(a, 'ftvm_checkpoint_ack_latency_seconds_count')).toBeGreaterThan(0);

    const p = await scrapeUntil(cluster, 'proxy', (s) => num(s, 'ftvm_output_held_bytes') === 0 && num(s, 'ftvm_output_held_connections') === 0, 'output held 0 at rest', 10_000);
    const released = num(p, 'ftvm_output_released_bytes_total') - num(before.proxy, 'ftvm_output_released_bytes_total');
    // Every reply went through the proxy's output commit: "+OK\r\n" is 5 bytes.
    expect(released).toBeGreaterThanOrEqual(res.replies * 5);
    expect(num(p, 'ftvm_output_delay_seconds_count') - num(before.proxy, 'ftvm_output_delay_seconds_count')).toBeGreaterThan(0);
    expect(num(p, 'ftvm_failovers_total')).toBe(0);
    // The clients closed their sockets: the proxy sees it within a loop turn or two.
    await scrapeUntil(cluster, 'proxy', (s) => num(s, 'ftvm_client_connections') === 0, 'no client connections', 5000);
    // In flight drains once the load stops.
    await scrapeUntil(cluster, 'a', (s) => num(s, 'ftvm_inflight_epochs') === 0 && num(s, 'ftvm_inflight_bytes') === 0, 'nothing in flight at rest', 10_000);
  }, 60_000);

  it('counts one failover after a SIGKILL of the primary, and protection returns with a respawned secondary', async () => {
    const before = await scrape(cluster, 'proxy');
    const l = load(cluster.ports.proxy, 2);
    await sleep(500);
    const from = mark(cluster.nodes.b);
    cluster.nodes.a.proc.kill('SIGKILL');
    await waitForLineAfter(cluster.nodes.b, /PROMOTED to primary/, from, 20_000);
    await sleep(500);
    const res = await l.stop();
    expect(res.bad).toEqual([]);
    expect(res.closed).toBe(0);

    const p = await scrapeUntil(cluster, 'proxy', (s) => num(s, 'ftvm_failovers_total') === 1, 'failovers_total 1');
    expect(num(p, 'ftvm_term')).toBe(1);
    expect(num(p, 'ftvm_last_failover_duration_seconds')).toBeGreaterThan(0);
    expect(num(p, 'ftvm_last_failover_duration_seconds')).toBeLessThan(10);
    expect(num(p, 'ftvm_last_failover_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 60);
    expect(num(p, 'ftvm_ready')).toBe(1);
    // Committed epoch at the proxy keeps moving on the promoted node after the failover.
    expect(num(p, 'ftvm_committed_epoch')).toBeGreaterThanOrEqual(num(before, 'ftvm_committed_epoch'));
    await scrapeUntil(cluster, 'proxy', (s) => num(s, 'ftvm_output_held_bytes') === 0, 'output held 0 at rest after the failover', 10_000);

    // The promoted node: role primary in term 1, counts its own failover, unprotected alone.
    const b = await scrapeUntil(cluster, 'b', (s) => num(s, 'ftvm_role', { role: 'primary' }) === 1, 'b primary');
    expect(num(b, 'ftvm_term')).toBe(1);
    expect(num(b, 'ftvm_failovers_total')).toBe(1);
    expect(num(b, 'ftvm_protected')).toBe(0);
    expect(num(b, 'ftvm_ready')).toBe(1);
    const epochB = num(b, 'ftvm_committed_epoch');
    const c = await RespClient.connect(cluster.ports.proxy);
    c.send('SET', 'after', 'failover');
    expect(await c.waitReplies(1)).toEqual(['OK']);
    c.end();
    await scrapeUntil(cluster, 'b', (s) => num(s, 'ftvm_committed_epoch') > epochB, 'b commits new epochs');

    // Respawn a as a secondary of b: full sync, then protection again.
    const fromB = mark(cluster.nodes.b);
    cluster.startNode('a', 'secondary');
    await waitForLineAfter(cluster.nodes.b, / PROTECTED:/, fromB, 60_000);
    const b2 = await scrapeUntil(cluster, 'b', (s) => num(s, 'ftvm_protected') === 1 && num(s, 'ftvm_task_progress_ratio', { task: 'sync' }) === 1, 'b protected, sync done');
    expect(num(b2, 'ftvm_link_up', { peer: 'secondary' })).toBe(1);
    const a2 = await scrapeUntil(cluster, 'a', (s) => num(s, 'ftvm_role', { role: 'secondary' }) === 1 && num(s, 'ftvm_ready') === 1, 'a ready as a secondary');
    expect(num(a2, 'ftvm_task_progress_ratio', { task: 'sync' })).toBe(1);
    const p2 = await scrape(cluster, 'proxy');
    expect(num(p2, 'ftvm_failovers_total')).toBe(1);
    expect(crossRoleViolations({ proxy: p2, primary: await scrape(cluster, 'b'), secondary: await scrape(cluster, 'a') })).toEqual([]);
  }, 120_000);
});
