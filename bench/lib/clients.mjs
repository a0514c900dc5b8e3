// Real clients: redis-benchmark (kv), wrk (http), a line client for the dirtier, and the
// INCR loop that times a failover. Numbers are parsed from the clients' own output.
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { onCpus, runBounded } from './proc.mjs';

const WRK_SCRIPT = fileURLToPath(new URL('../wrk-report.lua', import.meta.url));

/**
 * Parses redis-benchmark 7 default output (not -q, not --csv): per test the summary
 * ("throughput summary", "latency summary" avg/min/p50/p95/p99/max) and, for p99.9, the
 * "Latency by percentile distribution" lines (the first line at or past 99.9%).
 */
export function parseRedisBenchmark(text) {
  const tests = [];
  const sections = text.replace(/\r/g, '\n').split(/^====== (.+?) ======$/m);
  for (let i = 1; i + 1 < sections.length; i += 2) {
    const name = sections[i].trim();
    const body = sections[i + 1];
    const rps = Number(body.match(/throughput summary:\s*([\d.]+) requests per second/)?.[1]);
    const lat = body.match(/latency summary \(msec\):\s*\n\s*avg\s+min\s+p50\s+p95\s+p99\s+max\s*\n\s*([\d.\s]+)\n/);
    const [avg, min, p50, p95, p99, max] = lat ? lat[1].trim().split(/\s+/).map(Number) : [];
    let p999 = null;
    for (const m of body.matchAll(/^([\d.]+)% <= ([\d.]+) milliseconds/gm)) {
      if (Number(m[1]) >= 99.9) {
        p999 = Number(m[2]);
        break;
      }
    }
    const requests = Number(body.match(/(\d+) requests completed in/)?.[1]);
    if (!Number.isFinite(rps) || p50 === undefined) throw new Error(`redis-benchmark output for ${name} has no summary`);
    tests.push({ name, rps, avgMs: avg, minMs: min, p50Ms: p50, p95Ms: p95, p99Ms: p99, p999Ms: p999, maxMs: max, requests });
  }
  if (tests.length === 0) throw new Error(`redis-benchmark printed no test: ${text.slice(0, 400)}`);
  return tests;
}

/** redis-benchmark -c clients -n requests -t tests [-P pipeline] [-r random keyspace]; bounded by timeoutMs; `cpus`: confined to those CPUs. */
export async function redisBenchmark({ port, clients = 50, requests, tests, pipeline = 1, random = 0, timeoutMs, cpus }) {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-c', String(clients), '-n', String(requests), '-t', tests.join(',')];
  if (pipeline > 1) args.push('-P', String(pipeline));
  if (random > 0) args.push('-r', String(random));
  const r = await runBounded(...onCpus(cpus, 'redis-benchmark', args), timeoutMs);
  if (r.code !== 0) throw new Error(`redis-benchmark exited ${r.code}: ${r.stderr.slice(0, 400)}`);
  if (/error|refused|reset/i.test(r.stderr)) throw new Error(`redis-benchmark reported: ${r.stderr.slice(0, 400)}`);
  return { tests: parseRedisBenchmark(r.stdout), wallMs: r.ms, command: `redis-benchmark ${args.join(' ')}` };
}

/** Parses `wrk --latency` output plus the FTVM_BENCH line of wrk-report.lua. */
export function parseWrk(text) {
  const rps = Number(text.match(/Requests\/sec:\s*([\d.]+)/)?.[1]);
  const line = text.match(/FTVM_BENCH p50_us=(\d+) p99_us=(\d+) p999_us=(\d+) max_us=(\d+) requests=(\d+) errors=(\d+)/);
  if (!Number.isFinite(rps) || !line) throw new Error(`wrk output has no summary: ${text.slice(0, 400)}`);
  const [p50, p99, p999, max, requests, errors] = line.slice(1).map(Number);
  const non2xx = Number(text.match(/Non-2xx or 3xx responses:\s*(\d+)/)?.[1] ?? 0);
  return { name: 'GET /counter', rps, p50Ms: p50 / 1000, p99Ms: p99 / 1000, p999Ms: p999 / 1000, maxMs: max / 1000, requests, errors: errors + non2xx };
}

/** wrk -t2 -c50 -d<s>s --latency against GET /counter (every request changes guest state). */
export async function wrk({ port, seconds, threads = 2, conns = 50, cpus }) {
  const args = [`-t${threads}`, `-c${conns}`, `-d${seconds}s`, '--latency', '-s', WRK_SCRIPT, `http://127.0.0.1:${port}/counter`];
  const r = await runBounded(...onCpus(cpus, 'wrk', args), seconds * 1000 + 30_000);
  if (r.code !== 0) throw new Error(`wrk exited ${r.code}: ${r.stderr.slice(0, 400)}`);
  const res = parseWrk(r.stdout);
  if (res.errors > 0) throw new Error(`wrk saw ${res.errors} errors (connect/read/write/status/timeout)`);
  return { tests: [res], wallMs: r.ms, command: `wrk ${args.join(' ').replace(WRK_SCRIPT, 'bench/wrk-report.lua')}` };
}

/**
 * A line-protocol connection (the dirtier guest): `cmd(line)` sends a line and resolves with the
 * reply line, bounded by timeoutMs.
 */
export function lineClient(port, host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host);
    let buf = '';
    const pending = [];
    s.setNoDelay(true);
    s.on('data', (d) => {
      buf += d.toString();
      if (buf.length > 1 << 20) s.destroy(new Error('reply line longer than 1 MiB'));
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        pending.shift()?.resolve(line);
      }
    });
    s.on('error', (e) => {
      for (const p of pending.splice(0)) p.reject(e);
      reject(e);
    });
    s.on('close', () => {
      for (const p of pending.splice(0)) p.reject(new Error('connection closed'));
    });
    s.once('connect', () =>
      resolve({
        cmd(line, timeoutMs = 30_000) {
          return new Promise((res, rej) => {
            const t = setTimeout(() => rej(new Error(`no reply to '${line}' within ${timeoutMs} ms`)), timeoutMs);
            pending.push({ resolve: (l) => (clearTimeout(t), res(l)), reject: (e) => (clearTimeout(t), rej(e)) });
            s.write(`${line}\n`);
          });
        },
        close: () => s.destroy(),
      }),
    );
  });
}

/**
 * The failover clock: one connection through the proxy sends INCR, waits for the reply, sends
 * the next. `kill()` is called once `warmupMs` of replies went by; the result is the time from
 * the kill to the first reply to an INCR *sent after* the kill (so a reply already on its way
 * cannot count), and whether the counter stayed gapless (every reply = previous + 1).
 */
export function incrAcrossKill({ port, key, warmupMs, kill, timeoutMs = 15_000, afterReplies = 50 }) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.setNoDelay(true);
    let buf = '';
    let prev = null;
    let gapless = true;
    let sentAt = 0;
    let killAt = null;
    let firstAfterMs = null;
    let after = 0;
    let t0 = 0;
    const deadline = setTimeout(() => {
      s.destroy();
      reject(new Error(`INCR loop: no reply after the kill within ${timeoutMs} ms`));
    }, timeoutMs + warmupMs);
    const send = () => {
      sentAt = performance.now();
      s.write(`*2\r\n$4\r\nINCR\r\n$${key.length}\r\n${key}\r\n`);
    };
    s.on('data', (d) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        const now = performance.now();
        if (!line.startsWith(':')) {
          clearTimeout(deadline);
          s.destroy();
          reject(new Error(`INCR loop: unexpected reply '${line.slice(0, 80)}'`));
          return;
        }
        const v = Number(line.slice(1));
        if (prev !== null && v !== prev + 1) gapless = false;
        prev = v;
        if (killAt !== null && sentAt >= killAt) {
          if (firstAfterMs === null) firstAfterMs = now - killAt;
          if (++after >= afterReplies) {
            clearTimeout(deadline);
            s.destroy();
            resolve({ crashToReplyMs: firstAfterMs, gapless, lastValue: v });
            return;
          }
        }
        if (killAt === null && now - t0 >= warmupMs) {
          killAt = performance.now();
          kill();
        }
        send();
      }
    });
    s.on('error', (e) => {
      clearTimeout(deadline);
      reject(e);
    });
    s.once('connect', () => {
      t0 = performance.now();
      send();
    });
  });
}
