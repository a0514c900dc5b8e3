// Cost of the status page's cluster view: three role servers with a full 10-minute history
// (600 samples each), a view server following them. Measures the first /api/cluster (the
// whole history, what a freshly opened page pulls), the steady-state poll (?since=, one new
// sample per peer), and one role's /api/status. Run after building:
//   node packages/metrics/bench/cluster.mjs
import { performance } from 'node:perf_hooks';
import { FtvmEvents, createRoleMetrics, startMetricsServer } from '../dist/index.js';

let fakeNow = Date.now() - 601_000;
const roles = [];
for (const role of ['proxy', 'primary', 'secondary']) {
  const bus = new FtvmEvents({ name: role });
  const metrics = createRoleMetrics(role, bus, { defaultMetrics: false, status: { autoStart: false, now: () => fakeNow } });
  bus.emit('role', { role, term: 1 });
  const server = await startMetricsServer({ port: 0, metrics });
  roles.push({ role, bus, metrics, server });
}
let epoch = 0;
const tick = () => {
  fakeNow += 1000;
  for (const r of roles) {
    if (r.role === 'primary') {
      for (let i = 0; i < 100; i++) {
        epoch++;
        r.bus.emit('epochEnded', { epoch, policy: 'adaptive', durationMs: 10, pauseMs: 0.2, dirtyPages: 20 });
        r.bus.emit('checkpointSent', { epoch, wireBytes: 9000, rawBytes: 81920 });
      }
    }
    r.metrics.status.sample();
  }
};
for (let i = 0; i < 600; i++) tick();

const view = await startMetricsServer({
  port: 0,
  peers: roles.map((r) => ({ name: r.role, url: r.server.url })),
  cluster: { minRefreshMs: 0 },
});

async function timed(url) {
  const t0 = performance.now();
  const res = await fetch(url);
  const text = await res.text();
  return { ms: performance.now() - t0, bytes: text.length, body: text };
}

const status = await timed(`${roles[1].server.url}/api/status`);
const first = await timed(`${view.url}/api/cluster`);
const firstBody = JSON.parse(first.body);
const newest = Math.min(...firstBody.peers.map((p) => p.samples.at(-1).t));
const polls = [];
for (let i = 0; i < 50; i++) {
  tick();
  polls.push(await timed(`${view.url}/api/cluster?since=${newest + i * 1000}`));
}
const avg = (xs, k) => xs.reduce((a, x) => a + x[k], 0) / xs.length;
console.log(JSON.stringify({
  samplesPerPeer: firstBody.peers[0].samples.length,
  statusFullBytes: status.bytes,
  statusFullMs: Number(status.ms.toFixed(2)),
  clusterFirstBytes: first.bytes,
  clusterFirstMs: Number(first.ms.toFixed(2)),
  clusterPollBytes: Math.round(avg(polls, 'bytes')),
  clusterPollMs: Number(avg(polls, 'ms').toFixed(2)),
}, null, 2));
await view.close();
for (const r of roles) {
  await r.server.close();
  r.metrics.close();
}
