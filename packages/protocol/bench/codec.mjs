// Encode/compress, decode and digest throughput for 1,000 kv-like pages.
// Run: cd /work/main && npx tsc -b packages/protocol && node packages/protocol/bench/codec.mjs
import { PageEncoder, PageDecoder, ImageDigest, digestImage, encodeFrame, decodeFrame } from '../dist/index.js';

const PAGE = 4096;
const N = 1000;

/** kv-like page: a few hundred bytes of short key/value records, the rest zero or stale. */
function kvPage(seed, fill) {
  const p = new Uint8Array(PAGE);
  let x = (seed * 2654435761) >>> 0;
  const rnd = () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
  for (let used = 0; used < PAGE * fill;) {
    const key = `user:${rnd() % 100000}`;
    const val = `v${rnd().toString(36)}${rnd().toString(36)}`;
    const rec = `*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${val.length}\r\n${val}\r\n`;
    const at = rnd() % (PAGE - rec.length);
    for (let i = 0; i < rec.length; i++) p[at + i] = rec.charCodeAt(i);
    used += rec.length;
  }
  return p;
}

function time(label, reps, f) {
  f();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < reps; i++) f();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6 / reps;
  return ms;
}

// Baseline: copying the same 4 MB page by page (this machine's memory speed right now).
{
  const src = new Uint8Array(N * PAGE);
  const dst = new Uint8Array(N * PAGE);
  const ms = time('memcpy', 20, () => { for (let i = 0; i < N; i++) dst.set(src.subarray(i * PAGE, (i + 1) * PAGE), i * PAGE); });
  console.log(`baseline: copying 1,000 pages ${ms.toFixed(2)} ms`);
}
const pages = Uint32Array.from({ length: N }, (_, i) => 256 + i);
for (const fill of [0.1, 0.5, 0.9]) {
  const data = new Uint8Array(N * PAGE);
  for (let i = 0; i < N; i++) data.set(kvPage(i + 1, fill), i * PAGE);
  // Round 2: the same pages with a few records rewritten (what an epoch resends).
  const data2 = new Uint8Array(data);
  for (let i = 0; i < N; i++) data2.set(kvPage(i + 1, 0.02).subarray(0, 200), i * PAGE + ((i * 37) % 3800));

  const lz = new PageEncoder({ keepPrevious: false });
  let first;
  const msLz4 = time('lz4', 20, () => { first = lz.encodeBatch(pages, data); });
  const raw = new PageEncoder({ compression: false });
  const msRaw = time('raw', 20, () => raw.encodeBatch(pages, data));
  // Round 2 alone: prime an encoder with round 1 (untimed), then time the delta batch.
  let delta;
  let xorNs = 0;
  for (let r = 0; r < 10; r++) {
    const e = new PageEncoder();
    e.encodeBatch(pages, data);
    const t0 = process.hrtime.bigint();
    delta = e.encodeBatch(pages, data2);
    xorNs += Number(process.hrtime.bigint() - t0);
  }
  const msXor = xorNs / 10 / 1e6;
  const dec = new PageDecoder();
  const msDec = time('dec', 20, () => dec.apply(first.payload));
  const d = new ImageDigest();
  const msDigest = time('digest', 20, () => { for (let i = 0; i < N; i++) d.update(256 + i, data, i * PAGE); });
  const frame = encodeFrame({ t: 'ckpt_pages', term: 1, epoch: 1, seq: 0, count: N }, first.payload);
  const msFrame = time('frame', 50, () => decodeFrame(encodeFrame({ t: 'ckpt_pages', term: 1, epoch: 1, seq: 0, count: N }, first.payload)));
  const mb = (N * PAGE) / 2 ** 20;
  console.log(`fill ${fill}: LZ4 ${msLz4.toFixed(2)} ms (${(mb / msLz4 * 1000).toFixed(0)} MiB/s, ratio ${(first.rawBytes / first.wireBytes).toFixed(2)}), ` +
    `RAW ${msRaw.toFixed(2)} ms, round2 XOR_LZ4 ${delta.byCodec.XOR_LZ4.pages} pages ratio ${(delta.rawBytes / delta.wireBytes).toFixed(1)} in ${msXor.toFixed(2)} ms, ` +
    `decode ${msDec.toFixed(2)} ms, digest ${msDigest.toFixed(2)} ms, frame enc+dec ${msFrame.toFixed(2)} ms (${frame.length} B)`);
}
