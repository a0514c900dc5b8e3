import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { DrillCluster, NODE_PORT } from './helpers/cluster.js';
import { canRunDrills, sleep } from './helpers/env.js';
import { IncrLoad } from './helpers/load.js';
import { writeReport } from './helpers/report.js';

describe.runIf(canRunDrills())('drill: secondary crash and a fresh secondary', () => {
  const cluster = new DrillCluster();
  beforeAll(() => cluster.start());
  afterAll(() => cluster.stop());

  it('the primary serves on unprotected after its secondary dies, and a fresh secondary that joins restores protection', async () => {
    onTestFailed(() => console.error(`cluster at failure:\n${cluster.dump(60)}`));
    const load = new IncrLoad(cluster.clientPort(), { prefix: 'seccrash' });
    await load.start();
    await load.waitAcks(500);
    const failoversBefore = (await cluster.metric('proxy', 'ftvm_failovers_total')) ?? 0;
    const t = await cluster.kill('b');
    const unprotected = await cluster.waitMetric('a', 'ftvm_protected', (v) => v === 0, 30_000);
    cluster.note(`a reports unprotected (${Math.round(unprotected - t)} ms after the kill)`);
    await load.waitAcks(300, 30_000);
    const pause = load.pauseAround(t, performance.now());
    cluster.note(`clients served unprotected; longest client-visible gap ${Math.round(pause)} ms`);
    // Serve unprotected a while, so the new secondary has state to catch up on.
    await sleep(2000);
    const tJoin = performance.now();
    await cluster.startNode('b', 'secondary', ['--join', `ws://a:${NODE_PORT}`, '--peer', `ws://a:${NODE_PORT}`]);
    const protectedAt = await cluster.waitMetric('a', 'ftvm_protected', (v) => v === 1, 60_000);
    cluster.note(`a protected again by the fresh b (${Math.round(protectedAt - tJoin)} ms after docker run)`);
    const joinPause = load.pauseAround(tJoin, performance.now());
    await load.waitAcks(500, 30_000);
    const role = await cluster.metric('a', 'ftvm_role{role="primary"}');
    const failovers = ((await cluster.metric('proxy', 'ftvm_failovers_total')) ?? 0) - failoversBefore;
    const result = await load.stop();
    const passed = result.lost === 0 && result.errors.length === 0 && failovers === 0 && role === 1;
    writeReport({
      drill: 'secondary-crash',
      summary:
        'The secondary (b) is killed with `docker kill` under steady load (4 pipelined connections x 400 INCR/s via the proxy); the primary goes on unprotected for 2 s; a fresh container joins it with `ftvm secondary --join ws://a:7000`. Must hold: no failover, 0 acknowledged writes lost, 0 client errors, `ftvm_protected` 0 after the kill and 1 after the join.',
      timeline: cluster.timeline,
      failoverMs: [pause],
      load: result,
      passed,
      facts: [
        `kill to unprotected (a's ftvm_protected): ${Math.round(unprotected - t)} ms`,
        `docker run of the fresh secondary to protected: ${Math.round(protectedAt - tJoin)} ms; longest client gap during the join ${Math.round(joinPause)} ms`,
        `proxy failovers during the drill: ${failovers} (expected 0)`,
      ],
    });
    expect(result.errors).toEqual([]);
    expect(result.lost).toBe(0);
    expect(failovers).toBe(0);
    expect(role).toBe(1);
  });
});
