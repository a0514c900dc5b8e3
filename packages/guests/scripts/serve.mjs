// Runs one shipped guest on a TCP port, with no VMM and no replication: a developer
// tool for trying guests with real clients (redis-cli, redis-benchmark, wrk, nc).
// It provides the `ftvm` imports directly: pvclock from process.hrtime (1 GHz TSC),
// the one-shot timer from setTimeout, no disk.
//
// Usage: node scripts/serve.mjs <guest> [port]     (default port 6379 for kv and kvrs, 11211 for memcached, 8080 otherwise)

import { createServer } from 'node:net';
import { readFileSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { fileURLToPath } from 'node:url';

const name = process.argv[2];
const GUESTS = ['kv', 'http', 'dirtier', 'clockprobe', 'memcached', 'kvrs'];
const PREBUILT = ['memcached', 'kvrs']; // C and Rust: committed in prebuilt/
if (!GUESTS.includes(name)) {
  console.error(`usage: node scripts/serve.mjs <${GUESTS.join('|')}> [port]`);
  process.exit(2);
}
const port = Number(process.argv[3] ?? (name === 'kv' || name === 'kvrs' ? 6379 : name === 'memcached' ? 11211 : 8080));
const wasm = readFileSync(fileURLToPath(new URL(`../${PREBUILT.includes(name) ? 'prebuilt' : 'build'}/${name}.wasm`, import.meta.url)));

const origin = process.hrtime.bigint();
const tsc = () => process.hrtime.bigint() - origin;
const sockets = new Map();
let memory;
let exportsRef;
let pvclock = -1;
let timer;
const mem = () => new Uint8Array(memory.buffer);

// Guest time = boot offset (1 s) + TSC ns, the same as the test harness.
function guestNow() {
  return 1_000_000_000n + tsc();
}

const imports = {
  ftvm: {
    send: (conn, ptr, len) => sockets.get(conn)?.write(Buffer.from(mem().slice(ptr, ptr + len))),
    close: (conn) => sockets.get(conn)?.end(),
    clock_register: (ptr) => {
      pvclock = ptr;
      const dv = new DataView(memory.buffer);
      dv.setUint32(ptr, 1, true);
      dv.setBigUint64(ptr + 8, tsc(), true);
      dv.setBigUint64(ptr + 16, 1_000_000_000n, true);
      dv.setUint32(ptr + 24, 2 ** 31, true);
      dv.setInt8(ptr + 28, 1);
      dv.setUint8(ptr + 29, 1);
      dv.setUint32(ptr, 2, true);
    },
    rdtsc: () => tsc(),
    timer_set: (deadline) => {
      clearTimeout(timer);
      timer = undefined;
      if (deadline <= 0n) return;
      const ms = Number((deadline - guestNow()) / 1_000_000n);
      timer = setTimeout(() => {
        timer = undefined;
        exportsRef.ftvm_on_timer();
      }, Math.max(0, ms));
    },
    disk_read: () => -1,
    disk_write: () => -1,
    disk_blocks: () => 0,
    random: (ptr, len) => randomFillSync(mem().subarray(ptr, ptr + len)),
    log: (level, ptr, len) => console.error(`[guest ${['error', 'warn', 'info', 'debug'][level] ?? level}]`, Buffer.from(mem().slice(ptr, ptr + len)).toString()),
  },
};

const { instance } = await WebAssembly.instantiate(wasm, imports);
exportsRef = instance.exports;
memory = exportsRef.memory;
exportsRef.ftvm_init();

let nextConn = 1;
const server = createServer((sock) => {
  const conn = nextConn++;
  sockets.set(conn, sock);
  sock.setNoDelay(true);
  exportsRef.ftvm_on_open(conn);
  sock.on('data', (chunk) => {
    const ptr = exportsRef.ftvm_alloc(chunk.length);
    mem().set(chunk, ptr);
    exportsRef.ftvm_on_data(conn, ptr, chunk.length);
  });
  sock.on('error', () => {});
  sock.on('close', () => {
    sockets.delete(conn);
    exportsRef.ftvm_on_close(conn);
  });
});
server.listen(port, '127.0.0.1', () => console.error(`guest ${name} listening on 127.0.0.1:${port} (pvclock at ${pvclock})`));
