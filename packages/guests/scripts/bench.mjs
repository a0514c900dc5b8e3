// Guest-only throughput, no VMM, no network, no instrumentation: how fast the guests
// themselves process input. Prints one line per workload.
//
// Usage: node scripts/bench.mjs

import { readFileSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { fileURLToPath } from 'node:url';

function boot(name) {
  const dir = ['memcached', 'kvrs'].includes(name) ? 'prebuilt' : 'build';
  const wasm = readFileSync(fileURLToPath(new URL(`../${dir}/${name}.wasm`, import.meta.url)));
  let tsc = 0n;
  let memory;
  const out = { bytes: 0, sends: 0 };
  const mem = () => new Uint8Array(memory.buffer);
  const imports = {
    ftvm: {
      send: (_c, _p, len) => { out.bytes += len; out.sends++; },
      close: () => {},
      clock_register: (ptr) => {
        const dv = new DataView(memory.buffer);
        dv.setUint32(ptr, 2, true);
        dv.setBigUint64(ptr + 8, 0n, true);
        dv.setBigUint64(ptr + 16, 1_000_000_000n, true);
        dv.setUint32(ptr + 24, 2 ** 31, true);
        dv.setInt8(ptr + 28, 1);
      },
      rdtsc: () => tsc,
      timer_set: () => {},
      disk_read: () => -1, disk_write: () => -1, disk_blocks: () => 0,
      random: (p, n) => randomFillSync(mem().subarray(p, p + n)),
      log: (l, p, n) => console.error(Buffer.from(mem().slice(p, p + n)).toString()),
    },
  };
  const inst = new WebAssembly.Instance(new WebAssembly.Module(wasm), imports);
  const x = inst.exports;
  memory = x.memory;
  x.ftvm_init();
  x.ftvm_on_open(1);
  const deliver = (buf) => {
    const p = x.ftvm_alloc(buf.length);
    mem().set(buf, p);
    x.ftvm_on_data(1, p, buf.length);
  };
  return { deliver, out, advance: (ns) => (tsc += BigInt(ns)), x, mem };
}

const resp = (...a) => `*${a.length}\r\n` + a.map((s) => `$${Buffer.byteLength(s)}\r\n${s}\r\n`).join('');

function run(label, ops, fn) {
  const t0 = process.hrtime.bigint();
  fn();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`${label}: ${Math.round(ops / s).toLocaleString('en')} ops/s (${ops} ops in ${(s * 1000).toFixed(0)} ms)`);
}

{
  const g = boot('kv');
  const batches = 2000;
  const per = 100;
  const setBatches = Array.from({ length: batches }, (_, b) =>
    Buffer.from(Array.from({ length: per }, (_, i) => resp('SET', `key:${(b * per + i) % 100000}`, 'x'.repeat(3))).join('')));
  const getBatches = setBatches.map((_, b) =>
    Buffer.from(Array.from({ length: per }, (_, i) => resp('GET', `key:${(b * per + i) % 100000}`)).join('')));
  run('kv SET, pipelined x100, 100k keys', batches * per, () => setBatches.forEach(g.deliver));
  run('kv GET, pipelined x100', batches * per, () => getBatches.forEach(g.deliver));
  const single = Buffer.from(resp('SET', 'k', 'v'));
  run('kv SET, one command per delivery', 100000, () => { for (let i = 0; i < 100000; i++) g.deliver(single); });
  console.log(`kv memory after 100k keys: ${(g.mem().length / 2 ** 20).toFixed(1)} MiB`);
}
{
  const g = boot('memcached');
  const v = 'x'.repeat(100);
  const sets = Array.from({ length: 1000 }, (_, i) => Buffer.from(`set key:${i} 0 0 100\r\n${v}\r\n`));
  const gets = Array.from({ length: 1000 }, (_, i) => Buffer.from(`get key:${i}\r\n`));
  run('memcached set 100 B, one command per delivery', 200000, () => { for (let i = 0; i < 200000; i++) g.deliver(sets[i % 1000]); });
  run('memcached get 100 B, one command per delivery', 200000, () => { for (let i = 0; i < 200000; i++) g.deliver(gets[i % 1000]); });
}
{
  const g = boot('http');
  const req = Buffer.from('GET /counter HTTP/1.1\r\nHost: bench\r\n\r\n');
  run('http GET /counter, one request per delivery', 100000, () => { for (let i = 0; i < 100000; i++) g.deliver(req); });
}
{
  const g = boot('dirtier');
  const line = (s) => g.deliver(Buffer.from(s + '\n'));
  line('SET ws_pages=262144 rate=0');
  run('dirtier FILL 1 GiB (page writes)', 262144, () => line('FILL'));
  run('dirtier DIGEST 1 GiB (pages hashed)', 262144, () => line('DIGEST'));
}
