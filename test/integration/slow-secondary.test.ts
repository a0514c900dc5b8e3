/**
 * Slow is not dead: a secondary frozen in bursts shorter than the detection timeout
 * (SIGSTOP/SIGCONT) under 20 INCR loops only makes epochs longer. The primary never reports
 * it lost, no output leaves without a secondary holding it (the proxy's
 * ftvm_output_released_unprotected_bytes_total stays 0) and every reply is exact.
 * Real processes. The same metric counts once the secondary is dead.
 */
import { describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { mark, waitForLineAfter } from '../helpers/ftvm.js';
import { metricValue as metric } from '../helpers/metrics.js';
import { RespClient } from '../helpers/resp.js';

const LOADERS = 20;
const WINDOW = 4;
const BURSTS = 10;
/** Each burst freezes the secondary for this long; the detection timeout is 1000 ms. */
const FREEZE_MS = 700;

describe('a slow secondary', () => {
  it(`frozen ${BURSTS} times for ${FREEZE_MS} ms under load: never lost, nothing released unprotected`, { timeout: 180_000 }, async () => {
    const cluster = new Cluster({ metrics: true, nodeArgs: ['--detection-timeout-ms', '1000'] });
    try {
      await cluster.start();
      const since = mark(cluster.nodes.a);
      const port = cluster.ports.proxy;
      const clients: RespClient[] = [];
      for (let i = 0; i < LOADERS; i++) clients.push(await RespClient.connect(port));
      const sent = clients.map(() => 0);
      let running = true;
      const loops = clients.map(async (c, i) => {
        while (running && !c.closed) {
          while (sent[i]! - c.replies.length < WINDOW) {
            c.send('INCR', `slow:${i}`);
            sent[i]!++;
          }
          await c.waitReplies(c.replies.length + 1, 200);
        }
      });
      const b = cluster.nodes.b.proc;
      const before = clients.map((c) => c.replies.length);
      for (let k = 0; k < BURSTS; k++) {
        b.kill('SIGSTOP');
        await new Promise((r) => setTimeout(r, FREEZE_MS));
        b.kill('SIGCONT');
        await new Promise((r) => setTimeout(r, 300));
      }
      running = false;
      await Promise.all(loops);
      for (let i = 0; i < LOADERS; i++) {
        const c = clients[i]!;
        await c.waitReplies(sent[i]!, 30_000);
        expect(c.closed).toBe(false);
        expect(c.replies.length).toBe(sent[i]);
        expect(c.replies.findIndex((r, j) => r !== String(j + 1))).toBe(-1);
        // Served during the bursts, not only after them.
        expect(c.replies.length).toBeGreaterThan(before[i]!);
        c.end();
      }
      const a = [...cluster.nodes.a.out.slice(since.out), ...cluster.nodes.a.err.slice(since.err)];
      expect(a.filter((l) => /UNPROTECTED|secondary silent|no ack of epoch|no progress from the secondary|replication link closed/.test(l)), cluster.dump()).toEqual([]);
      expect(await metric(cluster.metricsUrl('proxy'), 'ftvm_output_released_unprotected_bytes_total')).toBe(0);
      expect(await metric(cluster.metricsUrl('proxy'), 'ftvm_output_released_bytes_total')).toBeGreaterThan(0);
      expect(await metric(cluster.metricsUrl('a'), 'ftvm_protected')).toBe(1);

      // The metric does count: with the secondary dead, output leaves unprotected.
      const lost = mark(cluster.nodes.a);
      cluster.nodes.b.proc.kill('SIGKILL');
      await waitForLineAfter(cluster.nodes.a, /UNPROTECTED/, lost, 10_000);
      const c = await RespClient.connect(port);
      for (let i = 0; i < 10; i++) c.send('INCR', 'after');
      expect((await c.waitReplies(10)).at(-1)).toBe('10');
      c.end();
      expect(await metric(cluster.metricsUrl('proxy'), 'ftvm_output_released_unprotected_bytes_total')).toBeGreaterThanOrEqual(10 * 4);
    } finally {
      await cluster.stop();
    }
  });
});
