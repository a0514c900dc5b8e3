import { createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { DrillCluster } from './helpers/cluster.js';
import { canRunDrills } from './helpers/env.js';
import { IncrLoad } from './helpers/load.js';
import { writeReport } from './helpers/report.js';

/** A host port free right now: the restarted proxy must publish the same one. */
function freeHostPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe.runIf(canRunDrills())('drill: proxy restart', () => {
  let cluster: DrillCluster;
  beforeAll(async () => {
    cluster = new DrillCluster({ clientHostPort: await freeHostPort() });
    await cluster.start();
  });
  afterAll(() => cluster.stop());

  it('clients reconnect to a restarted proxy and find every acknowledged write', async () => {
    onTestFailed(() => console.error(`cluster at failure:\n${cluster.dump(60)}`));
    const load = new IncrLoad(cluster.clientPort(), { prefix: 'proxyrestart', reconnect: true });
    await load.start();
    await load.waitAcks(500);
    const primaryBefore = await cluster.primary();
    const t = await cluster.kill('proxy');
    await cluster.startProxy();
    const up = cluster.note('proxy container running again on the same host port');
    // A stall is recorded, not thrown at once, so the report says what clients saw.
    const stall = await load.waitAcks(500, 60_000).then(() => null, (e: Error) => e.message);
    const back = cluster.note(stall ? `clients NOT served again: ${stall}` : 'clients reconnected and served');
    const pause = load.pauseAround(t, performance.now());
    const roles = await Promise.all((['a', 'b'] as const).map(async (n) => `${n}: primary=${await cluster.metric(n, 'ftvm_role{role="primary"}')} term=${await cluster.metric(n, 'ftvm_term')}`));
    const primaryAfter = await cluster.primary().catch(() => 'a' as const);
    const protectedAfter = await cluster.metric(primaryAfter, 'ftvm_protected');
    const staleLines = cluster.logs('proxy', 2000).split('\n').filter((l) => /STALE_IMAGE|promoting/.test(l));
    const result = await load.stop();
    // Connection resets are this drill's expected client-visible effect; nothing else is.
    const passed = stall === null && result.lost === 0 && result.errors.length === 0 && result.resets > 0;
    writeReport({
      drill: 'proxy-restart',
      summary:
        'The proxy container is killed (`docker kill`) under steady load (4 pipelined connections x 400 INCR/s) and a new proxy container is started on the same published port; clients reconnect. INCRs in flight at the reset are unacknowledged (each may or may not have been applied); the first value after reconnecting must be above the last acknowledged one. Must hold: 0 acknowledged writes lost, 0 client errors other than the connection resets.',
      timeline: cluster.timeline,
      failoverMs: [pause],
      load: result,
      passed,
      facts: [
        `kill to new proxy listening: ${Math.round(up - t)} ms; kill to clients served again: ${Math.round(back - t)} ms`,
        `primary before: ${primaryBefore}, after: ${primaryAfter} (protected: ${protectedAfter})`,
        `connection resets seen by clients: ${result.resets} (expected: one per connection)`,
        `node roles at the end: ${roles.join('; ')}`,
        `proxy log: ${staleLines.filter((l) => /STALE_IMAGE/.test(l)).length} links closed with FTVM_ERR_CORE_STALE_IMAGE, ${staleLines.filter((l) => /promoting/.test(l)).length} promotions; last lines:`,
        ...staleLines.slice(-6).map((l) => `  \`${l.trim().slice(0, 200)}\``),
        ...(stall ? [`clients stalled: ${stall}`] : []),
      ],
    });
    expect(stall, 'clients served again after the proxy restart').toBeNull();
    expect(result.errors).toEqual([]);
    expect(result.lost).toBe(0);
    expect(result.resets).toBeGreaterThan(0);
    expect(protectedAfter).toBe(1);
  });
});
