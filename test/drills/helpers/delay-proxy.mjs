// A userspace link shaper for the slow-secondary drill (the kernel here has no sch_netem):
// forwards TCP from LISTEN_PORT to TARGET (host:port), holding every chunk DELAY_MS before
// sending it on and sending at most BPS bytes/s per direction. GET /set?delayMs=&bps= on
// CONTROL_PORT changes both at run time (bps 0: unlimited); GET / reports the settings.
// Each direction queues at most MAX_QUEUE bytes, then pauses its source (TCP backpressure), so
// the shaper never buffers without bound and a slow link pushes back on the sender.
import { createServer as createHttp } from 'node:http';
import { connect, createServer } from 'node:net';

const LISTEN_PORT = Number(process.env.LISTEN_PORT ?? 7000);
const CONTROL_PORT = Number(process.env.CONTROL_PORT ?? 7100);
const [targetHost, targetPort] = (process.env.TARGET ?? 'b:7000').split(':');
const MAX_QUEUE = Number(process.env.MAX_QUEUE ?? 4 * 1024 * 1024);
const cfg = { delayMs: Number(process.env.DELAY_MS ?? 0), bps: Number(process.env.BPS ?? 0) };
let maxQueued = 0;

function shape(src, dst) {
  const q = [];
  let queued = 0;
  let timer = null;
  let nextFree = 0;
  let waitingDrain = false;
  const pump = () => {
    timer = null;
    while (q.length && !waitingDrain) {
      const now = Date.now();
      const due = Math.max(q[0].at, nextFree);
      if (due > now) {
        timer = setTimeout(pump, due - now);
        return;
      }
      const { chunk } = q.shift();
      queued -= chunk.length;
      if (cfg.bps > 0) nextFree = Math.max(now, nextFree) + (chunk.length * 1000) / cfg.bps;
      if (queued < MAX_QUEUE / 2) src.resume();
      if (!dst.write(chunk)) {
        waitingDrain = true;
        dst.once('drain', () => {
          waitingDrain = false;
          pump();
        });
      }
    }
  };
  src.on('data', (chunk) => {
    q.push({ chunk, at: Date.now() + cfg.delayMs });
    queued += chunk.length;
    maxQueued = Math.max(maxQueued, queued);
    if (queued >= MAX_QUEUE) src.pause();
    if (!timer && !waitingDrain) pump();
  });
  src.on('end', () => dst.end());
}

createServer((client) => {
  const upstream = connect(Number(targetPort), targetHost);
  const done = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', done).on('close', done);
  upstream.on('error', done).on('close', done);
  shape(client, upstream);
  shape(upstream, client);
}).listen(LISTEN_PORT, '0.0.0.0', () => console.log(`delay-proxy: listening on ${LISTEN_PORT} -> ${targetHost}:${targetPort}`));

createHttp((req, res) => {
  const u = new URL(req.url ?? '/', 'http://x');
  if (u.pathname === '/set') {
    if (u.searchParams.has('delayMs')) cfg.delayMs = Number(u.searchParams.get('delayMs'));
    if (u.searchParams.has('bps')) cfg.bps = Number(u.searchParams.get('bps'));
  }
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ ...cfg, maxQueued, maxQueue: MAX_QUEUE }));
}).listen(CONTROL_PORT, '0.0.0.0');
