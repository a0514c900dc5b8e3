// Proxy cost alone: request/reply round trips through ProxyRuntime to a node that
// echoes and commits every input at once (no checkpoint, no guest), so the numbers are
// the proxy's own overhead plus one loopback WebSocket hop each way. The node runs in a
// worker thread, so the proxy's thread does only proxy work.
// Run: npx tsc -b packages/proxy && node packages/proxy/bench/rtt.mjs [seconds=3]
import net from 'node:net';
import { Worker, isMainThread, parentPort } from 'node:worker_threads';
import { listen } from '@ftvm/protocol';
import { ProxyRuntime } from '@ftvm/proxy';

const seconds = Number(process.argv[2] ?? 3);
const token = new TextEncoder().encode('bench');

async function echoNode() {
  const conns = new Map();
  let epoch = 0;
  let maxConnId = 0;
  return listen({
    host: '127.0.0.1', port: 0, token,
    identity: () => ({ nodeId: 'bench', role: 'primary', term: 0, epoch }),
    onLink: (link) => {
      link.send({ t: 'status', role: 'primary', term: 0, epoch, state: 'active', detail: { live: { epoch, maxConnId, conns: [] } } });
      const hb = setInterval(() => !link.closed && link.send({ t: 'heartbeat', term: 0, epoch, sentAtMs: Date.now() }), 100);
      link.on('close', () => clearInterval(hb));
      link.on('message', (m, payload) => {
        if (m.t === 'open') {
          conns.set(m.conn, { conn: m.conn, inConsumed: 0, outProduced: 0, closed: false });
          maxConnId = Math.max(maxConnId, m.conn);
        } else if (m.t === 'input') {
          const c = conns.get(m.conn);
          c.inConsumed += payload.length;
          epoch++;
          link.send({ t: 'output', term: 0, conn: m.conn, epoch, offset: c.outProduced }, payload);
          c.outProduced += payload.length;
          // A commit lists every connection open in its state (core's StateOffsets contract).
          link.send({ t: 'commit', term: 0, epoch, acked: true, maxConnId, conns: [...conns.values()].map((x) => ({ ...x })) });
        } else if (m.t === 'close') {
          const c = conns.get(m.conn);
          c.closed = true;
          epoch++;
          link.send({ t: 'commit', term: 0, epoch, acked: true, maxConnId, conns: [...conns.values()].map((x) => ({ ...x })) });
          conns.delete(m.conn);
        }
      });
    },
  });
}

if (!isMainThread) {
  const node = await echoNode();
  parentPort.postMessage(node.url);
  parentPort.on('message', async () => {
    await node.close();
    process.exit(0);
  });
}

async function startNodeWorker() {
  const w = new Worker(new URL(import.meta.url));
  const url = await new Promise((r) => w.once('message', r));
  return { url, close: () => new Promise((r) => { w.once('exit', r); w.postMessage('stop'); }) };
}

async function run(clients) {
  const node = await startNodeWorker();
  const proxy = new ProxyRuntime({ port: 0, nodes: [node.url], token });
  const port = await proxy.start();
  while (proxy.active !== 'a') await new Promise((r) => setTimeout(r, 5));
  const lat = [];
  const req = Buffer.from('x'.repeat(31) + '\n');
  const end = performance.now() + seconds * 1000;
  await Promise.all(Array.from({ length: clients }, () => new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.setNoDelay(true);
    let got = 0;
    let t0 = 0;
    const send = () => { t0 = performance.now(); s.write(req); };
    s.on('connect', send);
    s.on('data', (d) => {
      got += d.length;
      if (got < req.length) return;
      got -= req.length;
      lat.push(performance.now() - t0);
      if (performance.now() < end) send(); else { s.destroy(); resolve(); }
    });
  })));
  await proxy.close();
  await node.close();
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(3);
  console.log(`clients=${String(clients).padStart(3)}  req/s=${Math.round(lat.length / seconds).toString().padStart(6)}  p50=${q(0.5)} ms  p99=${q(0.99)} ms`);
}

if (isMainThread) for (const c of [1, 16, 64]) await run(c);
