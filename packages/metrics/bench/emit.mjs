// Cost of the metrics path per epoch, as a runtime pays it: emit epochEnded + checkpointSent +
// checkpointAcked + committed + outputReleased on a bus with createRoleMetrics attached; and the
// cost of one /metrics scrape. Run after building: node packages/metrics/bench/emit.mjs
import { performance } from 'node:perf_hooks';
import { FtvmEvents, createRoleMetrics } from '../dist/index.js';

const bus = new FtvmEvents({ name: 'bench' });
const m = createRoleMetrics('primary', bus, { status: { autoStart: false } });
const byCodec = { ZERO: { pages: 2, bytes: 0 }, XOR_LZ4: { pages: 6, bytes: 6000 }, LZ4: { pages: 1, bytes: 2000 }, RAW: { pages: 1, bytes: 4096 } };

function epoch(i) {
  bus.emit('epochEnded', { epoch: i, policy: 'adaptive', durationMs: 5, pauseMs: 0.2 + (i % 7) * 0.01, dirtyPages: 10 + (i % 50) });
  bus.emit('checkpointSent', { epoch: i, wireBytes: 9000, rawBytes: 40960, byCodec });
  bus.emit('checkpointAcked', { epoch: i, ackLatencyMs: 0.9 });
  bus.emit('committed', { epoch: i });
  bus.emit('outputReleased', { bytes: 512, delayMs: 1.1 });
}

const N = 200_000;
for (let i = 0; i < 20_000; i++) epoch(i); // warm-up
let t0 = performance.now();
for (let i = 0; i < N; i++) epoch(i);
const perEpochUs = ((performance.now() - t0) * 1000) / N;

const S = 200;
for (let i = 0; i < 20; i++) await m.registry.metrics();
t0 = performance.now();
let bytes = 0;
for (let i = 0; i < S; i++) bytes = (await m.registry.metrics()).length;
const perScrapeMs = (performance.now() - t0) / S;

const bare = new FtvmEvents();
t0 = performance.now();
for (let i = 0; i < N; i++) bare.emit('epochEnded', { epoch: i, policy: 'adaptive', durationMs: 5, pauseMs: 0.2, dirtyPages: 10 });
const bareEmitNs = ((performance.now() - t0) * 1e6) / N;

console.log(JSON.stringify({
  node: process.version,
  perEpochUs: +perEpochUs.toFixed(2),
  eventsPerEpoch: 5,
  perScrapeMs: +perScrapeMs.toFixed(2),
  scrapeBytes: bytes,
  emitWithoutListenersNs: +bareEmitNs.toFixed(1),
}));
m.close();
