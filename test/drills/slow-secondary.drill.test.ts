import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { Wait, type StartedTestContainer } from 'testcontainers';
import { DrillCluster, NODE_PORT } from './helpers/cluster.js';
import { canRunDrills, sleep } from './helpers/env.js';
import { IncrLoad } from './helpers/load.js';
import { histogramMean, type Samples } from './helpers/metrics.js';
import { writeReport } from './helpers/report.js';

const SHAPER = fileURLToPath(new URL('./helpers/delay-proxy.mjs', import.meta.url));
const CONTROL_PORT = 7100;
/** The slow link: one-way delay (ms) and bandwidth (bytes/s) of the replication link. */
const SLOW = { delayMs: 100, bps: 1_000_000 };
const PHASE_MS = 8000;
const MiB = 1024 * 1024;

describe.runIf(canRunDrills())('drill: slow secondary (userspace delay proxy on the replication link)', () => {
  let shaper: StartedTestContainer;
  const cluster = new DrillCluster({
    secondaryUrl: `ws://slow:${NODE_PORT}`,
    beforePrimary: async (c) => {
      shaper = await c
        .container()
        .withNetworkAliases('slow')
        .withExposedPorts(CONTROL_PORT)
        .withBindMounts([{ source: SHAPER, target: '/drill/delay-proxy.mjs', mode: 'ro' }])
        .withEntrypoint(['/usr/local/bin/node'])
        .withCommand(['/drill/delay-proxy.mjs'])
        .withEnvironment({ TARGET: `b:${NODE_PORT}`, LISTEN_PORT: String(NODE_PORT), CONTROL_PORT: String(CONTROL_PORT) })
        .withWaitStrategy(Wait.forLogMessage(/delay-proxy: listening/))
        .start();
      c.note('delay proxy "slow" started in front of b; a replicates to ws://slow:7000');
    },
  });
  beforeAll(() => cluster.start());
  afterAll(async () => {
    await shaper?.stop({ timeout: 1 }).catch(() => undefined);
    await cluster.stop();
  });

  async function shape(delayMs: number, bps: number): Promise<{ maxQueued: number }> {
    const res = await fetch(`http://127.0.0.1:${shaper.getMappedPort(CONTROL_PORT)}/set?delayMs=${delayMs}&bps=${bps}`);
    return (await res.json()) as { maxQueued: number };
  }

  /** Samples a's memory and in-flight window every 250 ms for `ms`; returns the maxima. */
  async function watch(ms: number): Promise<{ rss: number; inflightBytes: number; inflightEpochs: number; unprotected: number }> {
    const max = { rss: 0, inflightBytes: 0, inflightEpochs: 0, unprotected: 0 };
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const m = await cluster.metrics('a');
      if (m) {
        max.rss = Math.max(max.rss, m.get('process_resident_memory_bytes') ?? 0);
        max.inflightBytes = Math.max(max.inflightBytes, m.get('ftvm_inflight_bytes') ?? 0);
        max.inflightEpochs = Math.max(max.inflightEpochs, m.get('ftvm_inflight_epochs') ?? 0);
        if (m.get('ftvm_protected') === 0) max.unprotected++;
      }
      await sleep(250);
    }
    return max;
  }

  it('with a slow replication link epochs stretch, the primary memory stays bounded and no acknowledged write is lost', async () => {
    onTestFailed(() => console.error(`cluster at failure:\n${cluster.dump(60)}`));
    // Every INCR comes with a 2 KiB SET: the guest dirties pages, so checkpoints carry real bytes.
    const load = new IncrLoad(cluster.clientPort(), { prefix: 'slow', blobBytes: 2048 });
    await load.start();
    await load.waitAcks(300);
    const m0 = (await cluster.metrics('a')) as Samples;
    const acks0 = load.acks();
    const fast = await watch(PHASE_MS);
    const m1 = (await cluster.metrics('a')) as Samples;
    const acks1 = load.acks();
    cluster.note(`fast link phase done (${PHASE_MS} ms)`);
    await shape(SLOW.delayMs, SLOW.bps);
    cluster.note(`replication link slowed: +${SLOW.delayMs} ms each way, ${SLOW.bps / 1e6} MB/s`);
    const slow = await watch(PHASE_MS);
    const m2 = (await cluster.metrics('a')) as Samples;
    const acks2 = load.acks();
    const shaperState = await shape(0, 0);
    cluster.note('replication link restored');
    await load.waitAcks(300, 60_000);
    const result = await load.stop();
    const protectedEnd = await cluster.waitMetric('a', 'ftvm_protected', (v) => v === 1, 30_000).then(() => 1, () => 0);
    const epochFast = histogramMean(m0, m1, 'ftvm_epoch_duration_seconds') * 1000;
    const epochSlow = histogramMean(m1, m2, 'ftvm_epoch_duration_seconds') * 1000;
    const ackFast = histogramMean(m0, m1, 'ftvm_checkpoint_ack_latency_seconds') * 1000;
    const ackSlow = histogramMean(m1, m2, 'ftvm_checkpoint_ack_latency_seconds') * 1000;
    const rssBound = fast.rss + 256 * MiB;
    const passed = result.lost === 0 && result.errors.length === 0 && slow.rss <= rssBound && epochSlow > epochFast && slow.inflightEpochs <= 8;
    writeReport({
      drill: 'slow-secondary',
      summary: `The primary replicates through our userspace delay proxy (test/drills/helpers/delay-proxy.mjs, a container on the replication link). Load: 4 pipelined connections x 400 (INCR + 2 KiB SET)/s through the proxy. ${PHASE_MS / 1000} s with the link unshaped, then ${PHASE_MS / 1000} s at +${SLOW.delayMs} ms one way and ${SLOW.bps / 1e6} MB/s. Must hold: epochs stretch (mean epoch duration up), the primary's resident memory stays within 256 MiB (its in-flight byte limit) of the fast phase, at most 8 epochs in flight, 0 acknowledged writes lost, 0 client errors.`,
      timeline: cluster.timeline,
      failoverMs: [],
      load: result,
      passed,
      facts: [
        `mean epoch duration: fast ${epochFast.toFixed(1)} ms, slow ${epochSlow.toFixed(1)} ms`,
        `mean checkpoint ack latency: fast ${ackFast.toFixed(1)} ms, slow ${ackSlow.toFixed(1)} ms`,
        `client throughput: fast ${Math.round(((acks1 - acks0) * 1000) / PHASE_MS)} INCR/s, slow ${Math.round(((acks2 - acks1) * 1000) / PHASE_MS)} INCR/s`,
        `primary resident memory, max: fast ${(fast.rss / MiB).toFixed(0)} MiB, slow ${(slow.rss / MiB).toFixed(0)} MiB (bound ${(rssBound / MiB).toFixed(0)} MiB)`,
        `in flight, max: fast ${fast.inflightEpochs} epochs / ${(fast.inflightBytes / 1024).toFixed(0)} KiB, slow ${slow.inflightEpochs} epochs / ${(slow.inflightBytes / 1024).toFixed(0)} KiB`,
        `samples with the primary unprotected: fast ${fast.unprotected}, slow ${slow.unprotected}; protected after the link was restored: ${protectedEnd === 1 ? 'yes' : 'no'}`,
        `delay proxy queue high-water mark: ${(shaperState.maxQueued / 1024).toFixed(0)} KiB (cap 4096 KiB per direction)`,
      ],
    });
    expect(result.errors).toEqual([]);
    expect(result.lost).toBe(0);
    expect(epochSlow).toBeGreaterThan(epochFast);
    expect(slow.rss).toBeLessThanOrEqual(rssBound);
    expect(slow.inflightEpochs).toBeLessThanOrEqual(8);
  });
});
