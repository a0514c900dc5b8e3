import { afterAll, describe, expect, it } from 'vitest';
import { compileFixtureGuest } from '../helpers/asc.js';
import { freePorts } from '../helpers/cluster.js';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { LineClient } from '../helpers/lines.js';
import { parsePromText, type PromScrape } from '../../packages/metrics/test/helpers/prom-text.js';

/** `ftvm run --metrics-port`: the unprotected baseline reports itself as such, with its faults and clients. */

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('metrics of ftvm run', () => {
  let srv: Spawned | undefined;
  afterAll(async () => {
    await srv?.stop();
  });

  it('reports role run, never protected, ready, guest faults by code and open clients', async () => {
    const wasm = await compileFixtureGuest('faulty');
    const [mport] = freePorts(1) as [number];
    srv = spawnFtvm(['run', '--guest', wasm, '--port', '0', '--metrics-port', String(mport), '--event-timeout-ms', '500', '--checkpoint-interval-ms', '50']);
    const port = Number((await srv.waitFor(/listening on [^:]+:(\d+)/))[1]);
    const base = `http://127.0.0.1:${mport}`;
    const scrape = async (): Promise<PromScrape> => parsePromText(await (await fetch(`${base}/metrics`)).text());
    const until = async (accept: (s: PromScrape) => boolean, what: string): Promise<PromScrape> => {
      const end = Date.now() + 10_000;
      for (;;) {
        const s = await scrape();
        if (accept(s)) return s;
        if (Date.now() > end) throw new Error(`${what} not reached`);
        await sleep(100);
      }
    };

    const s0 = await scrape();
    expect(s0.value('ftvm_role', { role: 'run' })).toBe(1);
    expect(s0.value('ftvm_protected')).toBe(0);
    expect(s0.value('ftvm_ready')).toBe(1);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const status = (await (await fetch(`${base}/api/status`)).json()) as { current: { protectionReason: string } };
    expect(status.current.protectionReason).toMatch(/no secondary/);

    const good = await LineClient.connect(port);
    good.send('a');
    expect(await good.waitLines(1)).toEqual(['1']);
    await until((s) => s.value('ftvm_client_connections') === 1, 'one client');
    await sleep(120);
    const bad = await LineClient.connect(port);
    bad.send('T');
    expect(await bad.waitClosed(5000)).toBe(true);
    const s1 = await until((s) => s.value('ftvm_guest_faults_total', { code: 'FTVM_ERR_GUEST_TRAP' }) === 1, 'one trap counted');
    // Rolled back and still serving: ready, and the good client goes on.
    expect(s1.value('ftvm_ready')).toBe(1);
    good.send('b');
    expect(await good.waitLines(2)).toEqual(['1', '2']);
    good.end();
    await until((s) => s.value('ftvm_client_connections') === 0, 'no clients');
    expect((await scrape()).sum('ftvm_metrics_invalid_events_total')).toBe(0);
  });

  it('reports a live snapshot\'s progress in ftvm_task_* while it runs, and idle after', { timeout: 60_000 }, async () => {
    const [port, mport, ctl] = freePorts(3) as [number, number, number];
    const env = { FTVM_TOKEN: 'metrics-run-test' };
    const run = spawnFtvm(['run', '--guest', 'dirtier', '--port', String(port), '--metrics-port', String(mport), '--control', `127.0.0.1:${ctl}`, '--snapshot-dir', '/tmp'], env);
    try {
      await run.waitFor(/ftvm control: listening/, 30_000);
      const c = await LineClient.connect(port);
      c.send('SET ws_pages=4096 pattern=random\n');
      c.send('FILL\n');
      expect(await c.waitLines(2)).toEqual(['OK', expect.stringMatching(/^OK pages=4096/)]);
      c.end();
      const scrape = async (): Promise<PromScrape> => parsePromText(await (await fetch(`http://127.0.0.1:${mport}/metrics`)).text());
      expect((await scrape()).value('ftvm_task_total', { task: 'snapshot', unit: 'pages' }) ?? 0).toBe(0);
      // A bandwidth cap stretches the snapshot over seconds.
      const snap = spawnFtvm(['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--live', '--bandwidth-limit', '40k', '-o', `/tmp/ftvm-metrics-run-${process.pid}.snap`], env);
      let seen: { done: number; total: number; ratio: number } | null = null;
      const end = Date.now() + 30_000;
      while (!seen && Date.now() < end && snap.proc.exitCode === null) {
        const s = await scrape();
        const total = s.value('ftvm_task_total', { task: 'snapshot', unit: 'pages' }) ?? 0;
        if (total > 0) seen = { done: s.value('ftvm_task_done', { task: 'snapshot', unit: 'pages' }) ?? -1, total, ratio: s.value('ftvm_task_progress_ratio', { task: 'snapshot' }) ?? -1 };
        else await sleep(50);
      }
      expect(seen, 'ftvm_task_total{task="snapshot"} > 0 while the snapshot ran').not.toBeNull();
      expect(seen!.done).toBeGreaterThanOrEqual(0);
      expect(seen!.done).toBeLessThanOrEqual(seen!.total);
      expect(seen!.ratio).toBeCloseTo(seen!.done / seen!.total, 5);
      expect(await snap.exited).toBe(0);
      const after = await scrape();
      expect(after.value('ftvm_task_total', { task: 'snapshot', unit: 'pages' })).toBe(0);
      expect(after.sum('ftvm_metrics_invalid_events_total')).toBe(0);
    } finally {
      await run.stop();
    }
  });
});
