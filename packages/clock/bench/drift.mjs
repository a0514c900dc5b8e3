// Drift of each clock mode under an FT schedule, simulated on manual clocks (no sleeping),
// plus the cost of the per-epoch clock work. Run after building:
//   cd /work/main && npx tsc -b packages/clock && node packages/clock/bench/drift.mjs
import { ClockCompensator, ManualClock, SkewedClock, readPvclock, writePvclock } from '../dist/index.js';

const MS = 1_000_000n;
const S = 1_000_000_000n;

/**
 * Primary: `epochMs` epochs, each ending in a `pauseUs` pause (dirty-page copy), for `runS`;
 * the primary dies right after a checkpoint; the secondary, whose clock is `skewMs` off,
 * detects it after `gapMs`, restores and runs another `runS`.
 */
function scenario(mode, { epochMs = 25n, pauseUs = 500n, runS = 60n, gapMs = 2000n, skewMs = 0n } = {}) {
  const world = new ManualClock(1_700_000_000_000_000_000n);
  let host = world;
  let c = new ClockCompensator(host.nowNs(), { mode });
  let maxAbs = 0n;
  let maxAbsRunning = 0n;
  const sample = () => {
    const d = c.driftNs(host.nowNs());
    const a = d < 0n ? -d : d;
    if (a > maxAbs) maxAbs = a;
    return a;
  };
  const epochs = (n) => {
    for (let i = 0n; i < n; i++) {
      world.advance(epochMs * MS);
      c.tick(host.nowNs());
      const a = sample();
      if (a > maxAbsRunning) maxAbsRunning = a;
      c.pause(host.nowNs());
      world.advance(pauseUs * 1000n);
      c.resume(host.nowNs());
    }
  };
  const perRun = (runS * 1000n) / (epochMs + pauseUs / 1000n);
  epochs(perRun);
  const before = c.driftNs(host.nowNs());
  c.pause(host.nowNs());
  const state = c.snapshot(host.nowNs());
  world.advance(gapMs * MS);
  host = new SkewedClock(world, { offsetNs: skewMs * MS });
  c = ClockCompensator.restore(state, host.nowNs());
  c.resume(host.nowNs());
  const afterFailover = c.driftNs(host.nowNs());
  epochs(perRun);
  const st = c.stats(host.nowNs());
  return {
    mode,
    skewMs: Number(skewMs),
    driftBeforeFailoverMs: Number(before) / 1e6,
    driftAfterFailoverMs: Number(afterFailover) / 1e6,
    driftEndMs: Number(st.driftNs) / 1e6,
    maxAbsDriftMs: Number(maxAbs) / 1e6,
    stepsOnSecondary: st.steps,
  };
}

const rows = [];
for (const skewMs of [0n, -3000n, 300n]) {
  for (const mode of ['freeze', 'step', 'slew']) rows.push(scenario(mode, { skewMs }));
}
console.log('25 ms epochs + 0.5 ms pause, 60 s, failover (2 s gap) to a host with the given skew, 60 s more');
console.table(rows);

// Per-epoch cost: tick + fields + writePvclock, and one seqlock read.
{
  const c = new ClockCompensator(0n, { mode: 'slew' });
  const view = new DataView(new ArrayBuffer(64));
  const N = 200_000;
  let h = 0n;
  let t = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    h += 25n * MS;
    c.pause(h);
    h += 500_000n;
    c.resume(h);
    c.tick(h);
    const { fields, changed } = c.fields(h);
    if (changed) writePvclock(view, 0, fields);
  }
  const epochNs = Number(process.hrtime.bigint() - t) / N;
  t = process.hrtime.bigint();
  let sink = 0n;
  for (let i = 0; i < N; i++) sink ^= readPvclock(view, 0, () => h).timeNs;
  const readNs = Number(process.hrtime.bigint() - t) / N;
  console.log(`per epoch (pause+resume+tick+fields+writePvclock): ${epochNs.toFixed(0)} ns; readPvclock: ${readNs.toFixed(0)} ns (${sink > -1n ? 'ok' : ''})`);
}
