import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { mark, spawnFtvm, waitForLineAfter, type Spawned } from '../helpers/ftvm.js';
import { LineClient } from '../helpers/lines.js';

/**
 * Guest time across a SIGKILL failover to a secondary whose host clock is skewed (real
 * processes: primary a, secondary b started with --clock-skew-ms, proxy). The clockprobe
 * guest answers `TIME` with its guest time (ns); the test reads it through the proxy.
 */

/** Slew bound of these runs, ppm: 50 % so a 2 s offset is absorbed in seconds, not minutes. */
const MAX_SLEW_PPM = 500_000;
const wallNs = (): bigint => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;

interface Sample {
  /** Test's wall clock when the request was sent and when the reply arrived, ns. */
  sentNs: bigint;
  recvNs: bigint;
  guestNs: bigint;
}

/** Primary a (true clock), secondary b with the given skew, and a proxy in front. */
async function startCluster(skewMs: number, clockArgs: string[]): Promise<{ cluster: Cluster; proxy: Spawned }> {
  const cluster = new Cluster({ guest: 'clockprobe', nodeArgs: [...clockArgs, `--clock-skew-ms=${skewMs}`] });
  // Registered at once: a start that fails half-way still gets its processes stopped.
  const entry: { cluster: Cluster; proxy: Spawned | null } = { cluster, proxy: null };
  running.push(entry);
  const b = cluster.startNode('b', 'secondary');
  await b.waitFor(/listening on/, 60_000);
  // The cluster helper reads nodeArgs when it spawns a node: a runs on the true clock.
  cluster.opts.nodeArgs = clockArgs;
  const a = cluster.startNode('a', 'primary');
  await a.waitFor(/listening on/, 60_000);
  await a.waitFor(/ PROTECTED:/, 30_000);
  const proxy = spawnFtvm(['proxy', '--port', String(cluster.ports.proxy), '--nodes', `${cluster.url('a')},${cluster.url('b')}`, '--token-file', cluster.tokenFile]);
  entry.proxy = proxy;
  await proxy.waitFor(/listening on/, 30_000);
  return { cluster, proxy };
}

/** Sends TIME, one request at a time, until stop() resolves; every reply is a sample. */
function sampler(c: LineClient): { samples: Sample[]; stop: () => Promise<void> } {
  const samples: Sample[] = [];
  let running = true;
  const loop = (async () => {
    while (running && !c.closed) {
      const sentNs = wallNs();
      const n = c.lines.length;
      c.send('TIME\n');
      await c.waitLines(n + 1, 20_000);
      if (c.lines.length <= n) throw new Error(`no TIME reply within 20 s (connection ${c.closed ? 'closed' : 'open'})`);
      samples.push({ sentNs, recvNs: wallNs(), guestNs: BigInt(c.lines[n]!) });
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    samples,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

/** Guest time minus the test's wall clock at the request, ms: the guest read its clock within [sent, recv]. */
// The guest read its clock between sending and receiving: against `sentNs` the offset is at most
// the request's latency too high, against `recvNs` at most that much too low.
const offsetMs = (s: Sample): number => Number(s.guestNs - s.sentNs) / 1e6;
const offsetAtRecvMs = (s: Sample): number => Number(s.guestNs - s.recvNs) / 1e6;

async function failoverRun(skewMs: number, clockArgs: string[], settleMs: number) {
  const { cluster } = await startCluster(skewMs, clockArgs);
  const c = await LineClient.connect(cluster.ports.proxy);
  const s = sampler(c);
  await new Promise((r) => setTimeout(r, 1500));
  const before = s.samples.length;
  const from = mark(cluster.nodes.b);
  cluster.nodes.a.proc.kill('SIGKILL');
  const killedNs = wallNs();
  await waitForLineAfter(cluster.nodes.b, /PROMOTED to primary/, from, 20_000);
  await new Promise((r) => setTimeout(r, settleMs));
  await s.stop();
  c.end();
  const after = s.samples.filter((x) => x.sentNs > killedNs);
  return { samples: s.samples, before, after, dump: () => cluster.dump() };
}

const running: Array<{ cluster: Cluster; proxy: Spawned | null }> = [];
afterEach(async () => {
  for (const r of running.splice(0)) {
    await r.proxy?.stop('SIGKILL');
    await r.cluster.stop();
  }
});

function expectNeverBackwards(samples: Sample[]): void {
  for (let i = 1; i < samples.length; i++) {
    expect(samples[i]!.guestNs >= samples[i - 1]!.guestNs, `sample ${i}: guest time ${samples[i]!.guestNs} < ${samples[i - 1]!.guestNs}`).toBe(true);
  }
}

describe('guest time across a failover to a host whose clock is skewed', () => {
  it('secondary 2 s behind: guest time never decreases, runs slower (within the slew bound) and converges to the new host\'s reference', async () => {
    const r = await failoverRun(-2000, ['--clock-mode', 'slew', '--clock-max-slew-ppm', String(MAX_SLEW_PPM)], 6000);
    expect(r.before, 'samples before the kill').toBeGreaterThan(10);
    expect(r.after.length, `samples after the kill\n${r.dump()}`).toBeGreaterThan(20);
    expectNeverBackwards(r.samples);
    // Before: the primary's guest follows the true wall clock (slew keeps it within a few ms).
    const pre = r.samples.slice(0, r.before);
    expect(offsetMs(pre.at(-1)!)).toBeGreaterThan(-50);
    expect(offsetAtRecvMs(pre.at(-1)!)).toBeLessThan(50);
    // While converging, guest time advances at no less than 1 - maxSlew of real time.
    const post = r.after;
    const first = post[0]!;
    const last = post.at(-1)!;
    for (let i = 1; i < post.length; i++) {
      // The guest read its clock within [sent, recv] of each request: at least this much real time passed between two reads.
      const dt = Number(post[i]!.sentNs - post[i - 1]!.recvNs);
      const dg = Number(post[i]!.guestNs - post[i - 1]!.guestNs);
      expect(dg, `interval ${i}: guest advanced ${dg / 1e6} ms in at least ${dt / 1e6} ms`).toBeGreaterThanOrEqual(dt * (1 - MAX_SLEW_PPM / 1e6) - 1e6);
    }
    // The first reply after promotion was ahead of the new host's reference (its clock is 2 s behind)...
    expect(offsetMs(first)).toBeGreaterThan(-1900);
    // ...and it has since met that reference: wall time minus 2 s, within request-timing noise.
    expect(offsetMs(last)).toBeGreaterThan(-2050);
    expect(offsetAtRecvMs(last)).toBeLessThan(-1950);
  }, 180_000);

  it('secondary 2 s ahead, slew mode: the gap is past the step threshold, so guest time steps forward once to the new reference', async () => {
    const r = await failoverRun(2000, ['--clock-mode', 'slew'], 2000);
    expect(r.after.length, `samples after the kill\n${r.dump()}`).toBeGreaterThan(10);
    expectNeverBackwards(r.samples);
    const post = r.after;
    // Stepped at the resume: the first reply already shows the new host's reference (wall + 2 s).
    expect(offsetMs(post[0]!)).toBeGreaterThan(1950);
    expect(offsetMs(post.at(-1)!)).toBeGreaterThan(1950);
    expect(offsetAtRecvMs(post.at(-1)!)).toBeLessThan(2050);
  }, 180_000);

  it('secondary 2 s ahead, slew mode with a 10 s step threshold: guest time slews forward (faster than real time) until it meets the new reference', async () => {
    const r = await failoverRun(2000, ['--clock-mode', 'slew', '--clock-max-slew-ppm', String(MAX_SLEW_PPM), '--clock-step-threshold-ms', '10000'], 8000);
    expect(r.after.length, `samples after the kill\n${r.dump()}`).toBeGreaterThan(20);
    expectNeverBackwards(r.samples);
    const post = r.after;
    // No jump: the first reply continues from the checkpointed time (about the wall clock).
    expect(offsetAtRecvMs(post[0]!)).toBeLessThan(500);
    for (let i = 1; i < post.length; i++) {
      // At most this much real time passed between two reads (each within [sent, recv] of its request).
      const dt = Number(post[i]!.recvNs - post[i - 1]!.sentNs);
      const dg = Number(post[i]!.guestNs - post[i - 1]!.guestNs);
      expect(dg, `interval ${i}: guest advanced ${dg / 1e6} ms in at most ${dt / 1e6} ms`).toBeLessThanOrEqual(dt * (1 + MAX_SLEW_PPM / 1e6) + 1e6);
    }
    expect(offsetMs(post.at(-1)!)).toBeGreaterThan(1950);
    expect(offsetAtRecvMs(post.at(-1)!)).toBeLessThan(2050);
  }, 180_000);
});
