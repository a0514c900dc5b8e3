/**
 * Reply latency and epoch rate of each epoch policy in the simulated cluster (test/sim):
 * closed-loop clients send INCR, wait for the reply, send the next. The simulation has
 * no CPU cost for collecting or encoding, so this isolates what the policy itself adds
 * (waiting for the epoch to end + one replication round trip), not the runtime's costs.
 *
 * Run: npx vitest bench --run packages/core/bench
 */
import { bench, describe } from 'vitest';
import { Cluster } from '../test/sim/cluster.js';

interface Row {
  policy: string;
  replies: number;
  p50: number;
  p99: number;
  epochsPerS: number;
}

function measure(policy: string, policyOptions: Record<string, unknown>, clients = 4, ms = 2000): Row {
  const c = new Cluster({ seed: 42, policy, policyOptions, delayMs: [0.05, 0.15] });
  c.start();
  c.run(30);
  const sentAt = new Map<string, number>();
  const lat: number[] = [];
  c.onClientData = (cl, text) => {
    for (let k = 0; k < (text.match(/\n/g) ?? []).length; k++) {
      lat.push(c.clock.now - sentAt.get(cl.name)!);
      // Think time 0.2 ms, then the next request (closed loop).
      c.clock.after(0.2, () => {
        sentAt.set(cl.name, c.clock.now);
        c.clientSend(cl.name, 'INCR\n');
      });
    }
  };
  for (let i = 0; i < clients; i++) {
    const name = `c${i}`;
    c.clientOpen(name);
    sentAt.set(name, c.clock.now);
    c.clientSend(name, 'INCR\n');
  }
  const epoch0 = c.nodes.a.core!.runningEpoch;
  c.run(ms);
  const epochs = c.nodes.a.core!.runningEpoch - epoch0;
  lat.sort((x, y) => x - y);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? NaN;
  return { policy, replies: lat.length, p50: q(0.5), p99: q(0.99), epochsPerS: (epochs * 1000) / ms };
}

const rows = [
  measure('adaptive', {}),
  measure('periodic', { intervalMs: 25 }),
  measure('periodic', { intervalMs: 100 }),
  measure('sync-io', {}),
];
rows[1]!.policy = 'periodic 25 ms (Remus)';
rows[2]!.policy = 'periodic 100 ms (MC)';
console.log('\nsimulated reply latency, 4 closed-loop clients, one-way delay 0.05-0.15 ms, 2 s');
console.log('policy                  replies   p50 ms   p99 ms  epochs/s');
for (const r of rows) {
  console.log(`${r.policy.padEnd(22)} ${String(r.replies).padStart(8)} ${r.p50.toFixed(2).padStart(8)} ${r.p99.toFixed(2).padStart(8)} ${r.epochsPerS.toFixed(0).padStart(9)}`);
}

describe('core machine cost', () => {
  bench('simulated cluster: 1 s of adaptive traffic (4 clients)', () => {
    measure('adaptive', {}, 4, 1000);
  }, { iterations: 5 });
});
