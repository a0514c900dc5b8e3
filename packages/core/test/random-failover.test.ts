import { describe, expect, it } from 'vitest';
import { Cluster } from './sim/cluster.js';
import { Rng } from './sim/clock.js';

/**
 * The in-simulation version of "10,000 INCRs, kill -9 at a random moment": for each seed,
 * clients send INCRs at random times while the primary is killed (and later maybe killed
 * again, or partitioned) at random moments, with random network delays and policies.
 * Safety is checked on every seed; liveness whenever a failover was possible.
 */
const POLICIES = [
  { policy: 'adaptive', policyOptions: {} },
  { policy: 'adaptive', policyOptions: { minGapMs: 0, maxIntervalMs: 5 } },
  { policy: 'periodic', policyOptions: { intervalMs: 25 } },
  { policy: 'sync-io', policyOptions: {} },
] as const;

function randomRun(seed: number) {
  const r = new Rng(seed * 7919 + 1);
  const pol = POLICIES[r.int(0, POLICIES.length - 1)]!;
  const c = new Cluster({
    seed,
    policy: pol.policy,
    policyOptions: { ...pol.policyOptions },
    delayMs: [r.range(0.01, 0.2), r.range(0.3, 3)],
    onSecondaryLost: r.chance(0.25) ? 'block' : 'continue',
  });
  c.start();
  c.run(30);
  const names = ['c1', 'c2', 'c3'].slice(0, r.int(1, 3));
  for (const n of names) c.clientOpen(n);
  let total = 0;
  const quitters = new Set<string>();
  for (const n of names) {
    const count = r.int(5, 40);
    total += count;
    // Some clients end with QUIT (the guest closes), some by closing their side.
    const ending = r.int(0, 3);
    if (ending === 1) {
      quitters.add(n);
      c.clock.at(340, () => c.clientSend(n, 'QUIT\n'));
    } else if (ending === 2) c.clock.at(340, () => c.clientClose(n));
    for (let k = 0; k < count; k++) {
      const at = 30 + r.range(0, 300);
      const split = r.chance(0.2);
      c.clock.at(at, () => {
        // A split request is two writes (they may reach the guest in different epochs).
        if (split) {
          c.clientSend(n, 'IN');
          c.clientSend(n, 'CR\n');
        } else c.clientSend(n, 'INCR\n');
      });
    }
  }
  // Sometimes the secondary dies first (the primary then runs unprotected or blocked).
  if (r.chance(0.25)) {
    c.clock.at(30 + r.range(0, 200), () => {
      const s = c.secondaryName();
      if (s === undefined) return;
      c.kill(s);
      c.clock.after(r.range(5, 150), () => c.restart(s));
    });
  }
  // Then the primary is killed at a random moment; the dead node comes back as a secondary.
  const killAt = 30 + r.range(0, 350);
  const second = r.int(0, 2); // 0 none, 1 kill the new primary later, 2 partition it for a while
  c.clock.at(killAt, () => {
    const p = c.primaryName();
    if (p === undefined) return;
    c.kill(p);
    c.clock.after(r.range(5, 80), () => c.restart(p));
    if (second === 0) return;
    c.clock.after(r.range(5, 400), () => {
      const q = c.primaryName();
      if (q === undefined || c.nodes[q].mode !== 'primary') return;
      if (second === 1) {
        c.kill(q);
        c.clock.after(r.range(5, 80), () => c.restart(q));
      } else {
        c.net.partition(q);
        c.clock.after(r.range(20, 200), () => c.net.heal(q));
      }
    });
  });
  c.run(2000);
  const blocked = c.events.some((e) => e.includes('failoverBlocked'));
  const problems = c.check();
  if (!blocked) {
    for (const q of quitters) if (!c.client(q).closedByServer) problems.push(`${q} sent QUIT but was not closed`);
  }
  return { c, total, blocked, problems };
}

/** FTVM_SIM_SEEDS=n runs more seeds (a longer hunt); the default keeps `npm test` fast. */
const seeds = Number(process.env.FTVM_SIM_SEEDS ?? 500);

describe('random failover (simulation)', () => {
  it('never shows a reply from lost state, never duplicates or reorders replies, and answers everything when failover was possible (default 500 seeds)', () => {
    let answeredRuns = 0;
    let failovers = 0;
    for (let seed = 1; seed <= seeds; seed++) {
      const { c, blocked, problems, total } = randomRun(seed);
      if (problems.length > 0 || (!blocked && !c.allAnswered())) {
        console.log(`seed ${seed}:`, problems, '\n' + c.events.join('\n'));
        for (const cl of c.clients.values()) console.log(cl.name, cl.requests, JSON.stringify(cl.received));
      }
      expect(problems, `seed ${seed}`).toEqual([]);
      if (!blocked) {
        expect(c.allAnswered(), `seed ${seed}: all ${total} requests answered`).toBe(true);
        answeredRuns++;
      }
      if (c.proxy.term >= 2) failovers++;
    }
    // The property must actually be exercised: most runs fail over and recover fully.
    if (process.env.FTVM_SIM_STATS) console.log({ answeredRuns, failovers });
    expect(failovers).toBeGreaterThan(seeds * 0.7);
    expect(answeredRuns).toBeGreaterThan(seeds * 0.6);
  }, 60_000 + seeds * 100);
});
