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
});
