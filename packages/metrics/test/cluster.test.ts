import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ClusterStatus, FtvmEvents, createRoleMetrics, startMetricsServer, type ClusterSnapshot, type MetricsServer } from '../src/index.js';
import { requireBinary } from './helpers/binaries.js';
import { dumpDom } from './helpers/chromium.js';
import { startTestRole } from './helpers/role.js';
import { simulateCluster } from './helpers/simulate.js';

const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!();
});

/** A plain HTTP server answering every request with `handler`; closed after the test. */
async function fakePeer(handler: http.RequestListener): Promise<string> {
  const srv = http.createServer(handler);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  closers.push(() => new Promise<void>((r) => {
    srv.closeAllConnections();
    srv.close(() => r());
  }));
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

/** A loopback URL nothing listens on (a port just released). */
async function closedUrl(): Promise<string> {
  const srv = http.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

function textOf(dom: string, id: string): string {
  const m = new RegExp(`id="${id}"[^>]*>([^<]*)<`).exec(dom);
  return m ? m[1]! : '';
}

describe('ClusterStatus', () => {
  it('refuses bad peers: a path, a non-http scheme, duplicate names, more than 8', () => {
    expect(() => new ClusterStatus([{ name: 'a', url: 'http://127.0.0.1:1/x' }])).toThrow(/FTVM_ERR_INVALID_OPTION|without path/);
    expect(() => new ClusterStatus([{ name: 'a', url: 'ftp://127.0.0.1:1' }])).toThrow(/http\(s\)/);
    expect(() => new ClusterStatus([{ name: 'a', url: 'http://h:1' }, { name: 'a', url: 'http://h:2' }])).toThrow(/distinct/);
    expect(() => new ClusterStatus(Array.from({ length: 9 }, (_, i) => ({ name: `n${i}`, url: `http://h:${i + 1}` })))).toThrow(/at most 8/);
    expect(() => new ClusterStatus([{ name: '', url: 'http://h:1' }])).toThrow(/name/);
    expect(() => new ClusterStatus([{ name: 'a', url: 'http://h:1' }], { fetchTimeoutMs: 0 })).toThrow(/fetchTimeoutMs/);
  });

  it('collects each peer\'s current state and samples, and only newer samples with since', async () => {
    const primary = await startTestRole('primary');
    const secondary = await startTestRole('secondary');
    const proxy = await startTestRole('proxy');
    const sim = simulateCluster({ proxy: proxy.bus, primary: primary.bus, secondary: secondary.bus }, 5);
    closers.push(() => sim.stop());
    await new Promise((r) => setTimeout(r, 50));
    primary.metrics.status.sample();
    secondary.metrics.status.sample();
    const cs = new ClusterStatus([{ name: 'a', url: primary.server.url }, { name: 'b', url: secondary.server.url + '/' }], { minRefreshMs: 0 });
    const s1 = await cs.snapshot();
    expect(s1.peers.map((p) => [p.name, p.ok, p.current?.role])).toEqual([['a', true, 'primary'], ['b', true, 'secondary']]);
    expect(s1.peers[0]!.samples).toHaveLength(1);
    expect(s1.peers[0]!.current!.epochsTotal).toBeGreaterThan(0);
    const t1 = s1.peers[0]!.samples[0]!.t;
    await new Promise((r) => setTimeout(r, 5));
    primary.metrics.status.sample();
    const s2 = await cs.snapshot(t1);
    expect(s2.peers[0]!.samples.map((x) => x.t > t1)).toEqual([true]);
    // Without since, the whole bounded history.
    expect((await cs.snapshot()).peers[0]!.samples).toHaveLength(2);
  });

  it('marks a peer that refuses, times out or answers garbage unreachable, with the reason', async () => {
    const slow = await fakePeer(() => undefined);
    const garbage = await fakePeer((_req, res) => res.end('{"hello":1}'));
    const huge = await fakePeer((_req, res) => res.end('x'.repeat(4096)));
    const cs = new ClusterStatus([
      { name: 'gone', url: await closedUrl() },
      { name: 'slow', url: slow },
      { name: 'garbage', url: garbage },
      { name: 'huge', url: huge },
    ], { fetchTimeoutMs: 200, maxBodyBytes: 1024, minRefreshMs: 0 });
    const t0 = Date.now();
    const s = await cs.snapshot();
    expect(Date.now() - t0).toBeLessThan(2000);
    const by = Object.fromEntries(s.peers.map((p) => [p.name, p]));
    for (const p of s.peers) expect(p.ok, p.name).toBe(false);
    expect(by.slow!.error).toMatch(/no answer in 200 ms/);
    expect(by.garbage!.error).toMatch(/not an ftvm/);
    expect(by.huge!.error).toMatch(/1024/);
    expect(by.gone!.error).toMatch(/ECONNREFUSED/);
  });

  it('keeps a restarted peer\'s history (a respawned node), unless its clock is behind ours', async () => {
    let startedAt = 1000;
    let samples = [{ t: 5000 }, { t: 6000 }];
    const url = await fakePeer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ startedAt, current: { role: 'secondary' }, samples }));
    });
    const cs = new ClusterStatus([{ name: 'b', url }], { minRefreshMs: 0 });
    expect((await cs.snapshot()).peers[0]!.samples.map((x) => x.t)).toEqual([5000, 6000]);
    startedAt = 6500;
    samples = [{ t: 7000 }];
    expect((await cs.snapshot()).peers[0]!.samples.map((x) => x.t)).toEqual([5000, 6000, 7000]);
    startedAt = 2000;
    samples = [{ t: 100 }];
    expect((await cs.snapshot()).peers[0]!.samples.map((x) => x.t)).toEqual([100]);
  });

  it('polls peers at most once per minRefreshMs however many pages ask', async () => {
    let hits = 0;
    const url = await fakePeer((_req, res) => {
      hits++;
      res.end(JSON.stringify({ startedAt: 1, current: { role: 'primary' }, samples: [] }));
    });
    const cs = new ClusterStatus([{ name: 'a', url }], { minRefreshMs: 60_000 });
    await Promise.all([cs.snapshot(), cs.snapshot(), cs.snapshot()]);
    await cs.snapshot();
    expect(hits).toBe(1);
  });
});

describe('/api/cluster and the cluster view of the status page', () => {
  it('answers peers: [] without peers, and the merged peers with them', async () => {
    const lone = await startTestRole('run');
    const body = (await (await lone.get('/api/cluster')).json()) as ClusterSnapshot;
    expect(body.peers).toEqual([]);
    const primary = await startTestRole('primary');
    const bus = new FtvmEvents({ name: 'proxy' });
    const metrics = createRoleMetrics('proxy', bus, { defaultMetrics: false });
    const server: MetricsServer = await startMetricsServer({ port: 0, metrics, peers: [{ name: 'a', url: primary.server.url }] });
    closers.push(async () => {
      await server.close();
      metrics.close();
    });
    const res = await fetch(`${server.url}/api/cluster`);
    expect(res.status).toBe(200);
    const c = (await res.json()) as ClusterSnapshot;
    expect(c.peers.map((p) => [p.name, p.ok, p.current?.role])).toEqual([['a', true, 'primary']]);
  });

  it('shows each node and the protection of the serving primary on the proxy page (headless chromium)', async (ctx) => {
    requireBinary(ctx, ['chromium', 'chromium-browser'], 'chromium');
    const proxy = await startTestRole('proxy', { status: { intervalMs: 100, autoStart: true } });
    const primary = await startTestRole('primary', { status: { intervalMs: 100, autoStart: true } });
    const secondary = await startTestRole('secondary', { status: { intervalMs: 100, autoStart: true } });
    const sim = simulateCluster({ proxy: proxy.bus, primary: primary.bus, secondary: secondary.bus }, 10);
    closers.push(() => sim.stop());
    // The proxy's own bus never says "protected": only the cluster view can.
    proxy.bus.emit('protection', { protected: false, reason: 'the proxy holds no image' });
    const page = await startMetricsServer({
      port: 0, metrics: proxy.metrics,
      peers: [{ name: 'a', url: primary.server.url }, { name: 'b', url: secondary.server.url }, { name: 'c', url: await closedUrl() }],
    });
    closers.push(() => page.close());
    await new Promise((r) => setTimeout(r, 600));
    const dom = await dumpDom(page.url + '/', { virtualTimeBudgetMs: 3000 });
    expect(textOf(dom, 'protection')).toBe('PROTECTED');
    expect(textOf(dom, 'reason')).toMatch(/^a \(primary\): /);
    expect(textOf(dom, 'role')).toBe('proxy · cluster of 3');
    expect(dom).toMatch(/id="node-a"[^>]*><b>a<\/b><span class="role">primary · term 1<\/span><span class="badge ok">PROTECTED<\/span>/);
    expect(dom).toMatch(/id="node-b"[^>]*><b>b<\/b><span class="role">secondary · term 1<\/span>/);
    expect(dom).toMatch(/id="node-c"[^>]*><b>c<\/b><span class="role"><\/span><span class="badge bad">UNREACHABLE<\/span>/);
    // Node tiles follow the primary: the proxy itself ends no epochs.
    expect(Number(textOf(dom, 't-epoch'))).toBeGreaterThan(0);
    const chartOf = (id: string): string => dom.slice(dom.indexOf(`id="${id}"`)).split('</section>')[0]!;
    for (const chart of ['c-epochs', 'c-pause', 'c-bw', 'c-delay']) {
      const ys = [...chartOf(chart).matchAll(/points="([^"]*)"/g)].flatMap((m) => m[1]!.trim().split(/\s+/).map((p) => Number(p.split(',')[1])));
      // A line that is not flat at zero: the primary's epochs and bandwidth reached the proxy page.
      expect(new Set(ys).size, chart).toBeGreaterThan(1);
    }
  });
});
