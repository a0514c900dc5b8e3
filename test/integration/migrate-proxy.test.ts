/**
 * Migration of a replicated primary with the proxy following the guest (issue 8, must-show 3).
 *
 * Real processes: `ftvm primary` (a), `ftvm secondary` (b), `ftvm proxy` and a target
 * `ftvm secondary --listen … --peer <a>` (c) the proxy was not started with. Real
 * `redis-benchmark` runs through the proxy port and, at the same time, a client of ours on one
 * connection pipelines SETs of distinct keys, INCRs of one counter and RPUSHes of one list,
 * recording every reply. In the middle of that load `ftvm migrate --from <a> --to <c>` runs.
 *
 * After: redis-benchmark exited 0 and printed no error; our connection was never dropped and
 * every request got its reply; every acknowledged SET reads back through the same proxy port;
 * the INCR replies are 1, 2, 3 … with none missing or repeated and the counter equals the
 * number of acked INCRs; the list holds exactly the acked RPUSHes in order; c is the primary
 * (its /metrics), a was fenced and is c's secondary now, and c is protected again.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { freePorts, useCluster } from '../helpers/cluster.js';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { redisBenchmark } from '../helpers/redis.js';
import { RespClient } from '../helpers/resp.js';
import { haveTool } from '../helpers/tools.js';

const enabled = haveTool('redis-benchmark');
/** Requests per redis-benchmark test (set, incr, lpush): ~1,500 requests/s through the proxy on a 2-core host. */
const BENCH_N = Number(process.env.FTVM_MIGRATE_BENCH_N ?? 6000);

type Op = { kind: 'set' | 'incr' | 'rpush'; arg: number; sentAt: number };

/**
 * One connection, a window of requests in flight, every reply matched to its request in order
 * (RESP replies come in request order on a connection). Latency per reply is recorded.
 */
class Writer {
  readonly ops: Op[] = [];
  /** Reply time - send time, ms, and when the reply came, per op. */
  readonly latency: { at: number; ms: number }[] = [];
  private stopped = false;
  private nextKey = 0;
  private done: Promise<void> | undefined;
  constructor(readonly c: RespClient, readonly window = 4) {}

  start(): void {
    this.done = (async () => {
      while (!this.stopped && !this.c.closed) {
        while (this.ops.length - this.c.replies.length < this.window) this.sendOne();
        const want = this.ops.length - this.window + 1;
        await this.c.waitReplies(want, 30_000);
        this.noteLatency();
        if (this.c.replies.length < want) break; // no reply in 30 s: the final checks say so
      }
    })();
  }

  private sendOne(): void {
    const i = this.nextKey++;
    const kind = i % 4 === 1 ? 'incr' : i % 4 === 3 ? 'rpush' : 'set';
    if (kind === 'set') this.c.send('SET', `mig:k:${i}`, `v${i}`);
    else if (kind === 'incr') this.c.send('INCR', 'mig:ctr');
    else this.c.send('RPUSH', 'mig:list', String(i));
    this.ops.push({ kind, arg: i, sentAt: performance.now() });
  }

  private noteLatency(): void {
    const now = performance.now();
    for (let k = this.latency.length; k < this.c.replies.length; k++) this.latency.push({ at: now, ms: now - this.ops[k]!.sentAt });
  }

  /** Stops sending and waits for the replies to everything sent. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
    await this.c.waitReplies(this.ops.length, 30_000);
    this.noteLatency();
  }
}

describe.runIf(enabled)('ftvm migrate of a replicated primary: the proxy follows the guest', () => {
  const cluster = useCluster({ metrics: true, proxyArgs: ['--log-level', 'info'] });
  const [portC, metricsC] = freePorts(2) as [number, number];
  const urlC = `ws://127.0.0.1:${portC}`;
  let target: Spawned | undefined;
  afterAll(async () => {
    await target?.stop('SIGKILL');
  });

  it('under redis-benchmark load: zero errors, no acknowledged write lost, kv data as the replies imply, connections kept', { timeout: 60_000 }, async () => {
    const t0 = Date.now();
    target = spawnFtvm([
      'secondary', '--listen', `127.0.0.1:${portC}`, '--node-id', 'c', '--guest', 'kv', '--token-file', cluster.tokenFile,
      '--peer', cluster.url('a'), '--metrics-port', String(metricsC),
    ]);
    await target.waitFor(/listening on/, 30_000);
    await cluster.proxy.waitFor(/active node is now a \(term 0\)/, 30_000);

    const c = await RespClient.connect(cluster.ports.proxy);
    const w = new Writer(c);
    w.start();
    // A failure is kept (not an unhandled rejection) and reported with every process's last lines.
    const bench = redisBenchmark(cluster.ports.proxy, ['-t', 'set,incr,lpush', '-n', String(BENCH_N), '-c', '8', '-r', '1000', '-q'], 55_000).catch(
      (e: Error & { stderr?: string }) => e,
    );
    // Migrate once the load has run a while (redis-benchmark runs its three tests in turn).
    await new Promise((r) => setTimeout(r, 3000));
    const benchBefore = w.ops.length;
    const mig = spawnFtvm(['migrate', '--from', cluster.url('a'), '--to', urlC, '--token-file', cluster.tokenFile]);
    const migLine = await mig.waitFor(/^ftvm migrate: done in (\d+) ms \(full sync (\d+) ms\), downtime ([\d.]+) ms, (\d+) bytes/, 30_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${cluster.dump(40)}\n--- target\n${target!.err.slice(-40).join('\n')}`);
    });
    expect(await mig.exited).toBe(0);
    const migratedAt = performance.now();
    const [, totalMs, syncMs, downtimeMs, bytes] = migLine.map(Number) as number[];
    const benchRes = await bench;
    if (benchRes instanceof Error) throw new Error(`redis-benchmark failed: ${benchRes.stderr ?? benchRes.message}\n${cluster.dump(60)}\n--- target\n${target.err.slice(-40).join('\n')}`);
    const { stdout, stderr } = benchRes;
    const afterMigrate = w.ops.length;
    // Some of our own load after the switch too, then stop and collect every reply.
    await new Promise((r) => setTimeout(r, 300));
    await w.stop();

    // ---- redis-benchmark: exit 0 (execFile rejects otherwise), no error printed, every test ran ----
    expect(`${stdout}\n${stderr}`).not.toMatch(/error|reset|refused|closed/i);
    for (const t of ['SET', 'INCR', 'LPUSH']) expect(stdout).toMatch(new RegExp(`${t}: [\\d.]+ requests per second`));

    // ---- our connection: never dropped, every request answered, replies as the data implies ----
    expect(c.closed).toBe(false);
    expect(c.replies.length).toBe(w.ops.length);
    expect(w.ops.length).toBeGreaterThan(benchBefore);
    expect(afterMigrate).toBeGreaterThan(benchBefore);
    let incrs = 0;
    let pushes = 0;
    const pushed: string[] = [];
    w.ops.forEach((op, k) => {
      const r = c.replies[k]!;
      if (op.kind === 'set') expect(r, `SET mig:k:${op.arg}`).toBe('OK');
      else if (op.kind === 'incr') expect(r, `INCR #${incrs + 1}`).toBe(String(++incrs));
      else {
        expect(r, `RPUSH #${pushes + 1}`).toBe(String(++pushes));
        pushed.push(String(op.arg));
      }
    });

    // ---- read back through the same proxy port, on a new connection ----
    const sets = w.ops.filter((o) => o.kind === 'set');
    const reader = await RespClient.connect(cluster.ports.proxy);
    for (const s of sets) reader.send('GET', `mig:k:${s.arg}`);
    reader.send('GET', 'mig:ctr');
    reader.send('LLEN', 'mig:list');
    await reader.waitReplies(sets.length + 2, 30_000);
    expect(reader.replies.length).toBe(sets.length + 2);
    const lost = sets.filter((s, k) => reader.replies[k] !== `v${s.arg}`).map((s) => s.arg);
    expect(lost, 'acknowledged SETs not readable after the migration').toEqual([]);
    expect(reader.replies[sets.length]).toBe(String(incrs));
    expect(reader.replies[sets.length + 1]).toBe(String(pushes));
    // The list, in order (LRANGE's array reply is parsed element by element by RespClient).
    const before = reader.replies.length;
    reader.send('LRANGE', 'mig:list', '0', '-1');
    await reader.waitReplies(before + pushes + 1, 30_000);
    expect(reader.replies.slice(before + 1)).toEqual(pushed);
    reader.end();
    c.end();

    // ---- roles: c serves in term 1, a was fenced and is c's secondary, c is protected again ----
    await cluster.proxy.waitFor(/handover from a to c done: c serves in term 1/, 5_000);
    await cluster.nodes.a.waitFor(/primary connected peer=c term=1/, 5_000);
    await target.waitFor(/ PROTECTED:/, 20_000);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsC}/metrics`)).text();
    expect(metrics).toMatch(/^ftvm_role\{role="primary"\} 1$/m);
    expect(metrics).toMatch(/^ftvm_term 1$/m);
    expect(metrics).toMatch(/^ftvm_protected 1$/m);
    const metricsA = await (await fetch(`${cluster.metricsUrl('a')}/metrics`)).text();
    expect(metricsA).toMatch(/^ftvm_role\{role="secondary"\} 1$/m);

    // ---- numbers: the client-visible pause is the slowest reply our connection saw around the switch ----
    const around = w.latency.filter((l) => Math.abs(l.at - migratedAt) < 5000);
    const maxMs = Math.max(...around.map((l) => l.ms));
    const p50 = [...w.latency.map((l) => l.ms)].sort((x, y) => x - y)[Math.floor(w.latency.length / 2)]!;
    console.log(
      `migrate-proxy: total ${totalMs} ms (full sync ${syncMs} ms), downtime ${downtimeMs} ms (source), proxy ${/downtimeMs=([\d.]+)/.exec(cluster.proxy.err.find((l) => /handover from a to c done/.test(l)) ?? '')?.[1] ?? '?'} ms, ` +
        `${bytes} bytes; our client: ${w.ops.length} requests, p50 ${p50.toFixed(1)} ms, max around the switch ${maxMs.toFixed(1)} ms; ` +
        `redis-benchmark: ${stdout.split(/[\r\n]/).map((l) => l.trim()).filter((l) => /^\w+: [\d.]+ requests per second/.test(l)).join(' | ')}; test ${Date.now() - t0} ms`,
    );
    expect(downtimeMs).toBeLessThan(2000);
  });
});
