#!/usr/bin/env node
// LZ4 encode/decode speed of lz4-napi (what ftvm uses) against the `lz4` addon it replaced, on
// real kv guest pages: `node bench/lz4.mjs --old <dir of lz4@0.6.5> [--reps N] [--out file.json]`.
// The old addon loads only on Node 20: install it aside (npm install --prefix /tmp/lz4-old lz4@0.6.5).
// Pages: a kv guest loaded by redis-benchmark, saved twice (ftvm snapshot, stop-the-world) with more
// load in between. "image" = every non-zero page of the second save (a full sync sends these as
// LZ4); "delta" = the pages that changed, XORed with their first-save copy (what XOR_LZ4 encodes).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, installCleanup, killAll, startFtvm } from './lib/proc.mjs';
import { median, spread } from './lib/stats.mjs';

const { values: opt } = parseArgs({ options: { old: { type: 'string' }, reps: { type: 'string', default: '21' }, out: { type: 'string' } } });
if (!opt.old) {
  console.error('usage: node bench/lz4.mjs --old <path to node_modules/lz4 of lz4@0.6.5> [--reps N] [--out file.json]');
  process.exit(2);
}
const require = createRequire(import.meta.url);
const old = require(resolve(opt.old));
const napi = require('lz4-napi');
const { readSnapshot } = await import('@ftvm/precopy');
const PAGE = 4096;
const REPS = Number(opt.reps);

// --- Capture real kv pages ---
installCleanup();
const dir = mkdtempSync(join(os.tmpdir(), 'ftvm-lz4-bench-'));
const [port, control] = [await freePort(), await freePort()];
process.env.FTVM_TOKEN = 'lz4-bench-token'; // the control link's secret, for both ends
const guest = startFtvm(['run', '--guest', 'kv', '--port', String(port), '--control', `127.0.0.1:${control}`], { name: 'kv' });
await guest.waitFor(/listening on/, 60_000);
const load = (n, tests) => execFileSync('redis-benchmark', ['-p', String(port), '-n', String(n), '-r', '100000', '-d', '48', '-c', '20', '-P', '16', '-t', tests, '-q'], { stdio: 'ignore', timeout: 120_000 });
const save = (name) => {
  const path = join(dir, name);
  execFileSync(process.execPath, [resolve('packages/cli/dist/main.js'), 'snapshot', '--from', `ws://127.0.0.1:${control}`, '--stop-the-world', '-o', path], { stdio: 'ignore', timeout: 120_000 });
  return path;
};
load(150_000, 'set,lpush,incr');
const a = (await readSnapshot(save('a.snap'))).checkpoint.memory;
load(20_000, 'set,incr');
const b = (await readSnapshot(save('b.snap'))).checkpoint.memory;
await guest.stop();
killAll();
rmSync(dir, { recursive: true, force: true });

const image = [];
const delta = [];
for (let p = 0; p < b.length / PAGE; p++) {
  const pb = b.subarray(p * PAGE, (p + 1) * PAGE);
  if (!pb.some((x) => x !== 0)) continue;
  image.push(pb);
  const pa = p * PAGE < a.length ? a.subarray(p * PAGE, (p + 1) * PAGE) : new Uint8Array(PAGE);
  if (Buffer.compare(pa, pb) === 0) continue;
  const x = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i++) x[i] = pa[i] ^ pb[i];
  delta.push(x);
}

// --- The two codecs, each as ftvm calls it: compress into a page-1 buffer, decompress into a page ---
const dst = Buffer.alloc(PAGE - 1);
const page = Buffer.alloc(PAGE);
let input = Buffer.alloc(4 + PAGE);
const impls = {
  'lz4 0.6.5 (NAN, C liblz4)': {
    enc: (src) => old.encodeBlock(src, dst),
    dec: (blk) => old.decodeBlock(blk, page),
  },
  'lz4-napi 2.10 (Node-API, lz4_flex)': {
    enc: (src) => {
      const out = napi.compressSync(src);
      if (out.length - 4 > dst.length) return 0;
      dst.set(out.subarray(4));
      return out.length - 4;
    },
    dec: (blk) => {
      input.writeUInt32LE(PAGE, 0);
      input.set(blk, 4);
      const out = napi.uncompressSync(input.subarray(0, 4 + blk.length));
      page.set(out);
      return out.length;
    },
  },
};

const results = [];
for (const [setName, pages] of [['image', image], ['delta', delta]]) {
  const blocks = {};
  const bytes = {};
  for (const [name, impl] of Object.entries(impls)) {
    blocks[name] = pages.map((p) => {
      const n = impl.enc(p);
      return n > 0 ? Buffer.from(dst.subarray(0, n)) : null;
    });
    bytes[name] = blocks[name].reduce((s, b) => s + (b ? b.length : PAGE), 0);
    // Each decodes the other's blocks too: the same block format either way.
    for (const [other, oimpl] of Object.entries(impls)) {
      blocks[name].forEach((blk, i) => {
        if (blk && (oimpl.dec(blk) !== PAGE || Buffer.compare(page, pages[i]) !== 0)) throw new Error(`${other} does not decode ${name}'s block of ${setName} page ${i}`);
      });
    }
  }
  const times = Object.fromEntries(Object.keys(impls).map((k) => [k, { enc: [], dec: [] }]));
  // Interleaved: each repetition runs every implementation once, so machine noise hits both alike.
  for (let r = 0; r < REPS; r++) {
    for (const [name, impl] of Object.entries(impls)) {
      let t0 = process.hrtime.bigint();
      for (const p of pages) impl.enc(p);
      times[name].enc.push(Number(process.hrtime.bigint() - t0) / 1e3 / pages.length);
      const own = blocks[name];
      t0 = process.hrtime.bigint();
      for (const blk of own) if (blk) impl.dec(blk);
      times[name].dec.push(Number(process.hrtime.bigint() - t0) / 1e3 / own.filter(Boolean).length);
    }
  }
  for (const name of Object.keys(impls)) {
    const row = {
      pages: setName,
      count: pages.length,
      impl: name,
      wireOverRaw: bytes[name] / (pages.length * PAGE),
      encUsPerPage: median(times[name].enc.slice(1)),
      encSpread: spread(times[name].enc.slice(1)),
      decUsPerPage: median(times[name].dec.slice(1)),
      decSpread: spread(times[name].dec.slice(1)),
    };
    results.push(row);
  }
}

const f = (x) => x.toFixed(2);
console.log(`node ${process.version}, ${os.cpus().length} cpus (${os.cpus()[0]?.model}), ${REPS} interleaved repetitions (first dropped); µs per page, median (min–max)`);
console.log('| pages | count | implementation | LZ4 bytes / raw | encode µs/page | decode µs/page |');
console.log('|---|---:|---|---:|---:|---:|');
for (const r of results) {
  console.log(`| ${r.pages} | ${r.count} | ${r.impl} | ${r.wireOverRaw.toFixed(4)} | ${f(r.encUsPerPage)} (${f(r.encSpread[0])}–${f(r.encSpread[1])}) | ${f(r.decUsPerPage)} (${f(r.decSpread[0])}–${f(r.decSpread[1])}) |`);
}
if (opt.out) writeFileSync(opt.out, JSON.stringify({ node: process.version, reps: REPS, results }, null, 1) + '\n');
