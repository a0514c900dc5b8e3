import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { DrillCluster, NODE_PORT } from './helpers/cluster.js';
import { canRunDrills } from './helpers/env.js';
import { IncrLoad } from './helpers/load.js';
import { writeReport } from './helpers/report.js';

describe.runIf(canRunDrills())('drill: rolling replacement of both nodes', () => {
  const cluster = new DrillCluster();
  beforeAll(() => cluster.start());
  afterAll(() => cluster.stop());

  it('replacing the secondary and then the primary with fresh containers costs clients one failover and nothing else', async () => {
    onTestFailed(() => console.error(`cluster at failure:\n${cluster.dump(60)}`));
    const load = new IncrLoad(cluster.clientPort(), { prefix: 'rolling' });
    await load.start();
    await load.waitAcks(500);
    const failoversBefore = (await cluster.metric('proxy', 'ftvm_failovers_total')) ?? 0;
    // Step 1: the secondary b is stopped and replaced; the primary never stops serving.
    const t1 = await cluster.stopGracefully('b');
    await cluster.startNode('b', 'secondary', ['--join', `ws://a:${NODE_PORT}`, '--peer', `ws://a:${NODE_PORT}`]);
    await cluster.waitMetric('a', 'ftvm_protected', (v) => v === 1, 60_000);
    cluster.note('a protected by the new b');
    await load.waitAcks(300, 30_000);
    const pause1 = load.pauseAround(t1, performance.now());
    cluster.note(`step 1 done; longest client-visible gap ${Math.round(pause1)} ms`);
    // Step 2: the primary a is stopped: the one failover, to the new b; a new a joins b.
    const t2 = await cluster.stopGracefully('a');
    await cluster.waitMetric('b', 'ftvm_role{role="primary"}', (v) => v === 1, 30_000);
    cluster.note('b is primary');
    await load.waitAcks(300, 30_000);
    const pause2 = load.pauseAround(t2, performance.now());
    await cluster.startNode('a', 'secondary', ['--join', `ws://b:${NODE_PORT}`, '--peer', `ws://b:${NODE_PORT}`]);
    await cluster.waitMetric('b', 'ftvm_protected', (v) => v === 1, 60_000);
    cluster.note(`step 2 done: b protected by the new a; longest client-visible gap ${Math.round(pause2)} ms`);
    await load.waitAcks(300, 30_000);
    const failovers = ((await cluster.metric('proxy', 'ftvm_failovers_total')) ?? 0) - failoversBefore;
    const result = await load.stop();
    const passed = result.lost === 0 && result.errors.length === 0 && failovers === 1;
    writeReport({
      drill: 'rolling-replacement',
      summary:
        'Both nodes are replaced by fresh containers one after the other under steady load (4 pipelined connections x 400 INCR/s): `docker stop` the secondary b, start a new b that joins a; then `docker stop` the primary a (the one failover, to the new b), start a new a that joins b. Must hold: exactly one failover, 0 acknowledged writes lost, 0 client errors, the cluster protected at the end.',
      timeline: cluster.timeline,
      failoverMs: [pause1, pause2],
      load: result,
      passed,
      facts: [
        `step 1 (secondary replaced): longest client-visible gap ${Math.round(pause1)} ms`,
        `step 2 (primary replaced, failover): longest client-visible gap ${Math.round(pause2)} ms`,
        `proxy failovers: ${failovers} (expected 1)`,
      ],
    });
    expect(result.errors).toEqual([]);
    expect(result.lost).toBe(0);
    expect(failovers).toBe(1);
  });
});
