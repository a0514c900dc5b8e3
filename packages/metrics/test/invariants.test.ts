import { describe, expect, it } from 'vitest';
import { crossRoleViolations } from './helpers/invariants.js';
import { startTestRole } from './helpers/role.js';
import { simulateCluster } from './helpers/simulate.js';

describe('cross-role invariants helper', () => {
  it('finds a simulated cluster consistent while it runs and after a failover', async () => {
    const proxy = await startTestRole('proxy');
    const primary = await startTestRole('primary');
    const secondary = await startTestRole('secondary');
    const sim = simulateCluster({ proxy: proxy.bus, primary: primary.bus, secondary: secondary.bus }, 5);
    try {
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 30));
        const p = await proxy.scrape();
        const m = await primary.scrape();
        const s = await secondary.scrape();
        expect(crossRoleViolations({ proxy: p, primary: m, secondary: s })).toEqual([]);
        expect(m.value('ftvm_checkpoints_sent_total')).toBeGreaterThan(0);
      }
      sim.failover();
      expect(crossRoleViolations({ proxy: await proxy.scrape(), primary: await primary.scrape() })).toEqual([]);
    } finally {
      sim.stop();
    }
  });

  it('reports a commit running ahead downstream, acks beyond sends and a stale-term node', async () => {
    const proxy = await startTestRole('proxy');
    const primary = await startTestRole('primary');
    primary.bus.emit('checkpointAcked', { epoch: 1, ackLatencyMs: 1 });
    primary.bus.emit('committed', { epoch: 3 });
    primary.bus.emit('role', { role: 'primary', term: 5 });
    proxy.bus.emit('committed', { epoch: 4 });
    const v = crossRoleViolations({ proxy: await proxy.scrape(), primary: await primary.scrape() });
    expect(v).toEqual([
      'primary: acked 1 > sent 0 checkpoints',
      "proxy committed epoch 4 > primary's 3",
      'primary term 5 > proxy term 0 (the proxy decides terms)',
    ]);
  });
});
