/**
 * A guest that faults on every input (here: a client that sends nothing but DEBUG SEGFAULT)
 * is contained on a replicated primary: past 10 faults in 60 s the guest is held faulted
 * at its image (coded log line, /readyz 503, ftvm_guest_contained 1), no failover happens
 * and the committed data stays on both nodes. Real processes.
 */
import { describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { metricValue as metric } from '../helpers/metrics.js';
import { RespClient } from '../helpers/resp.js';

describe('the guest fault budget', () => {
  it('contains a guest that faults again and again, without a failover', { timeout: 180_000 }, async () => {
    const cluster = new Cluster({ metrics: true });
    try {
      await cluster.start();
      const port = cluster.ports.proxy;
      const c = await RespClient.connect(port);
      c.send('SET', 'kept', 'yes');
      expect(await c.waitReplies(1)).toEqual(['OK']);
      c.end();
      expect((await fetch(`${cluster.metricsUrl('a')}/readyz`)).status).toBe(200);
      for (let i = 0; i < 11; i++) {
        const bad = await RespClient.connect(port);
        bad.send('DEBUG', 'SEGFAULT');
        if (i < 10) {
          await bad.waitReplies(1, 15_000);
          expect(bad.closed, cluster.dump()).toBe(true);
        }
        bad.end();
      }
      await cluster.nodes.a.waitFor(/FTVM_ERR_GUEST_FAULT_BUDGET/, 15_000);
      expect(await metric(cluster.metricsUrl('a'), 'ftvm_guest_contained')).toBe(1);
      expect(await metric(cluster.metricsUrl('a'), 'ftvm_guest_faults_total', { code: 'FTVM_ERR_GUEST_TRAP' })).toBe(11);
      const r = await fetch(`${cluster.metricsUrl('a')}/readyz`);
      expect(r.status).toBe(503);
      expect(await r.text()).toMatch(/guest contained/);
      // No failover: a is still the primary, b still holds the committed image.
      expect(cluster.primaryKey()).toBe('a');
      expect(cluster.nodes.b.err.join('\n')).not.toMatch(/PROMOTED/);
      expect(await metric(cluster.metricsUrl('b'), 'ftvm_committed_epoch')).toBeGreaterThan(0);
    } finally {
      await cluster.stop();
    }
  });
});
