import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { DrillCluster, NODE_PORT, type NodeName } from './helpers/cluster.js';
import { SOAK, canRunDrills, sleep } from './helpers/env.js';
import { IncrLoad } from './helpers/load.js';
import { distribution, quantile, writeReport } from './helpers/report.js';

/** Crashes per run: a few in CI (time budget), 100 in the soak (`npm run drills -- --soak`). */
const ROUNDS = Number(process.env.FTVM_DRILL_ROUNDS ?? (SOAK ? 100 : 3));
const NAME = SOAK ? 'primary-crash-soak' : 'primary-crash';

describe.runIf(canRunDrills())('drill: primary crash (docker kill at random points, repeated)', () => {
  const cluster = new DrillCluster();
  beforeAll(() => cluster.start());
  afterAll(() => cluster.stop());

  it(`${ROUNDS} consecutive docker kills of the primary under load lose no acknowledged write and show clients no error`, { timeout: ROUNDS * 30_000 }, async () => {
    onTestFailed(() => console.error(`cluster at failure:\n${cluster.dump(60)}`));
    const load = new IncrLoad(cluster.clientPort(), { prefix: 'crash' });
    await load.start();
    await load.waitAcks(200);
    const pauses: number[] = [];
    const promotions: number[] = [];
    const failoversBefore = (await cluster.metric('proxy', 'ftvm_failovers_total')) ?? 0;
    for (let round = 1; round <= ROUNDS; round++) {
      // A random kill point: anywhere from 0.1 to 1.5 s into a steady stream of INCRs.
      await sleep(100 + Math.random() * 1400);
      const dead = await cluster.primary();
      const survivor: NodeName = dead === 'a' ? 'b' : 'a';
      const t = await cluster.kill(dead);
      const promoted = await cluster.waitMetric(survivor, 'ftvm_role{role="primary"}', (v) => v === 1, 30_000);
      cluster.note(`round ${round}: ${survivor} is primary (${Math.round(promoted - t)} ms after the kill, from /metrics)`);
      await load.waitAcks(50, 30_000);
      const pause = load.pauseAround(t, performance.now());
      pauses.push(pause);
      promotions.push(promoted - t);
      cluster.note(`round ${round}: clients answered again; longest client-visible gap ${Math.round(pause)} ms`);
      // A fresh container takes the dead node's name and becomes the survivor's secondary.
      await cluster.startNode(dead, 'secondary', ['--peer', `ws://${survivor}:${NODE_PORT}`]);
      await cluster.waitMetric(survivor, 'ftvm_protected', (v) => v === 1, 60_000);
      cluster.note(`round ${round}: ${survivor} protected again by a fresh ${dead}`);
    }
    const result = await load.stop();
    const failovers = ((await cluster.metric('proxy', 'ftvm_failovers_total')) ?? 0) - failoversBefore;
    const p99 = quantile([...pauses].sort((a, b) => a - b), 0.99);
    const passed = result.lost === 0 && result.errors.length === 0 && failovers === ROUNDS;
    const file = writeReport({
      drill: NAME,
      summary: `${ROUNDS} consecutive primary crashes (docker kill, SIGKILL, at a random point 0.1-1.5 s into steady load of 4 pipelined connections x 400 INCR/s through the proxy); after each, a fresh container joins as the survivor's secondary before the next crash. Must hold: 0 acknowledged writes lost, 0 client errors. Goal: p99 client-visible pause <= 500 ms.`,
      timeline: cluster.timeline,
      failoverMs: pauses,
      load: result,
      passed,
      facts: [
        `client-visible pause (longest gap between replies around each kill): ${distribution(pauses)}`,
        `kill to promoted (survivor's ftvm_role, polled every 50 ms): ${distribution(promotions)}`,
        `goal p99 <= 500 ms: ${p99 <= 500 ? 'met' : 'MISSED'} (p99 ${Math.round(p99)} ms)`,
        `proxy ftvm_failovers_total grew by ${failovers} (expected ${ROUNDS})`,
      ],
    });
    console.log(`${NAME}: ${distribution(pauses)}; lost ${result.lost}; errors ${result.errors.length}; report ${file}`);
    expect(result.errors).toEqual([]);
    expect(result.lost).toBe(0);
    expect(failovers).toBe(ROUNDS);
  });
});
