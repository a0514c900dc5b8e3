import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { mark, waitForLineAfter } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';
import { requireBinary } from '../../packages/metrics/test/helpers/binaries.js';
import { dumpDom, screenshotPage } from '../../packages/metrics/test/helpers/chromium.js';
import { startMetricsServer, type MetricsServer } from '@ftvm/metrics';

/**
 * Must-show 3 of the observability issue: the built-in status page of real roles, loaded in
 * headless Chromium while a failover is under way, shows it. With FTVM_UPDATE_SCREENSHOTS=1
 * the screenshots are written to docs/ (status-page-failover.png: the promoted node;
 * status-page-proxy-failover.png: the proxy; status-page-cluster-failover.png: a cluster view
 * following all three roles, as `ftvm up` shows when its proxy is given the nodes as peers);
 * otherwise to a temp dir.
 */

const DOCS = fileURLToPath(new URL('../../docs/', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function textOf(dom: string, id: string): string {
  const m = new RegExp(`id="${id}"[^>]*>([^<]*)<`).exec(dom);
  return m ? m[1]! : '';
}
function chartOf(dom: string, id: string): string {
  const section = dom.slice(dom.indexOf(`id="${id}"`));
  return section.slice(0, section.indexOf('</section>'));
}
/** y coordinates of the points of the first polyline of a chart (SVG y grows downwards). */
function polylineYs(chart: string): number[] {
  const m = /<polyline[^>]*points="([^"]*)"/.exec(chart);
  return m ? m[1]!.trim().split(/\s+/).map((p) => Number(p.split(',')[1])) : [];
}

describe('status page during a failover, in headless Chromium', () => {
  const cluster = new Cluster({ metrics: true });
  let shots: string | undefined;
  let view: MetricsServer | undefined;
  afterAll(async () => {
    await view?.close();
    await cluster.stop();
    if (shots && !process.env.FTVM_UPDATE_SCREENSHOTS) await rm(shots, { recursive: true, force: true });
  });

  it('the promoted node and the proxy show the failover: role, term, protection lost, failover count and charts', async (ctx) => {
    requireBinary(ctx, ['chromium', 'chromium-browser'], 'chromium');
    shots = process.env.FTVM_UPDATE_SCREENSHOTS ? DOCS : await mkdtemp(path.join(os.tmpdir(), 'ftvm-status-'));
    await cluster.start();
    // The cluster view: a view-only status page following the three real roles (the proxy stands in for "this role").
    const server = await startMetricsServer({
      port: 0,
      peers: [{ name: 'proxy', url: cluster.metricsUrl('proxy') }, { name: 'a', url: cluster.metricsUrl('a') }, { name: 'b', url: cluster.metricsUrl('b') }],
    });
    view = server;
    // The view polls its peers only while a page asks: keep one "page" polling from the start.
    let viewing = true;
    const viewer = (async () => {
      while (viewing) {
        await fetch(`${server.url}/api/cluster?since=${Date.now() - 2000}`).then((r) => r.arrayBuffer(), () => undefined);
        await sleep(500);
      }
    })();
    const c = await RespClient.connect(cluster.ports.proxy);
    let running = true;
    let sent = 0;
    // One pipelining client, 8 requests in flight, ~ a few hundred requests/s.
    const traffic = (async () => {
      while (running && !c.closed) {
        while (sent - c.replies.length < 8) c.send('SET', `k${sent++ % 128}`, 'v'.repeat(256));
        await c.waitReplies(c.replies.length + 1, 1000);
        await sleep(2);
      }
    })();
    // A few seconds of history on every page before the failure.
    await sleep(4000);
    const from = mark(cluster.nodes.b);
    cluster.nodes.a.proc.kill('SIGKILL');
    await waitForLineAfter(cluster.nodes.b, /PROMOTED to primary/, from, 20_000);
    // Two more samples of the promoted node serving alone (unprotected: node a is dead).
    await sleep(2500);

    const nodeUrl = `${cluster.metricsUrl('b')}/`;
    const proxyUrl = `${cluster.metricsUrl('proxy')}/`;
    const [dom, proxyDom] = await Promise.all([
      dumpDom(nodeUrl, { virtualTimeBudgetMs: 2500 }),
      dumpDom(proxyUrl, { virtualTimeBudgetMs: 2500 }),
    ]);
    await Promise.all([
      screenshotPage(nodeUrl, path.join(shots, 'status-page-failover.png'), { width: 1280, height: 1320, virtualTimeBudgetMs: 2500 }),
      screenshotPage(proxyUrl, path.join(shots, 'status-page-proxy-failover.png'), { width: 1280, height: 1320, virtualTimeBudgetMs: 2500 }),
    ]);
    // Protection returns: node a comes back as a secondary of b.
    const fromB = mark(cluster.nodes.b);
    cluster.startNode('a', 'secondary');
    await waitForLineAfter(cluster.nodes.b, / PROTECTED:/, fromB, 60_000);
    await sleep(2500);
    const clusterDom = await dumpDom(`${server.url}/`, { virtualTimeBudgetMs: 2500 });
    await screenshotPage(`${server.url}/`, path.join(shots, 'status-page-cluster-failover.png'), { width: 1280, height: 1400, virtualTimeBudgetMs: 2500 });
    viewing = false;
    await viewer;
    running = false;
    await traffic;
    expect(c.closed).toBe(false);
    expect(c.replies.filter((r) => r !== 'OK')).toEqual([]);
    c.end();

    // The promoted node: a primary in term 1 that lost its protection and counts one failover.
    expect(textOf(dom, 'conn')).toBe('live');
    expect(textOf(dom, 'role')).toBe('primary');
    expect(textOf(dom, 'term')).toBe('1');
    expect(textOf(dom, 'protection')).toBe('UNPROTECTED');
    expect(textOf(dom, 't-failovers')).toMatch(/^1 \(last [\d.]+ (ms|s|µs)\)$/);
    // Its old primary is gone and no new secondary has joined yet.
    expect(textOf(dom, 't-links')).toBe('primary DOWN, secondary DOWN');
    expect(Number(textOf(dom, 't-epoch'))).toBeGreaterThan(0);
    // Charts: protection went from 1 (following the primary) to 0; failovers from 0 to 1.
    const prot = polylineYs(chartOf(dom, 'c-protected'));
    expect(prot.length).toBeGreaterThan(3);
    expect(Math.min(...prot)).toBeLessThan(Math.max(...prot));
    expect(prot.at(-1)).toBe(Math.max(...prot));
    const fo = polylineYs(chartOf(dom, 'c-failovers'));
    expect(fo[0]).toBeGreaterThan(fo.at(-1)!);
    for (const chart of ['c-epochs', 'c-pause', 'c-bw']) expect(chartOf(dom, chart), chart).toContain('<polyline');

    // The proxy: the witness counts the failover, keeps serving, and shows output delay.
    expect(textOf(proxyDom, 'role')).toBe('proxy');
    // Alone, the proxy never claims the guest is (un)protected: it holds no image.
    expect(textOf(proxyDom, 'protection')).toBe('PROTECTION: SEE NODES');
    for (const title of ['protection state', 'epochs per second', 'epoch pause', 'bandwidth', 'clock drift']) {
      expect(proxyDom, title).toContain(`<section class="chart" hidden=""><h2>${title}`);
    }
    expect(proxyDom).toContain('<section class="chart"><h2>output delay');
    expect(textOf(proxyDom, 'term')).toBe('1');
    expect(textOf(proxyDom, 'ready')).toBe('READY');
    expect(textOf(proxyDom, 't-failovers')).toMatch(/^1 \(last /);
    expect(chartOf(proxyDom, 'c-delay')).toContain('<polyline');

    // The cluster view: b serves as primary, protected again by a; its history shows the dip.
    expect(textOf(clusterDom, 'protection')).toBe('PROTECTED');
    expect(textOf(clusterDom, 'role')).toBe('proxy · cluster of 3');
    expect(textOf(clusterDom, 'ready')).toBe('READY');
    expect(textOf(clusterDom, 't-failovers')).toMatch(/^1 \(last /);
    expect(textOf(clusterDom, 'reason')).toMatch(/^b \(primary\): /);
    expect(clusterDom).toMatch(/id="node-b"[^>]*><b>b<\/b><span class="role">primary · term 1<\/span><span class="badge ok">PROTECTED/);
    expect(clusterDom).toMatch(/id="node-a"[^>]*><b>a<\/b><span class="role">secondary · term 1<\/span>/);
    const cprot = polylineYs(chartOf(clusterDom, 'c-protected'));
    // Starts protected, drops during the failover, ends protected (y is 0 at the top).
    expect(cprot[0]).toBe(Math.min(...cprot));
    expect(Math.max(...cprot)).toBeGreaterThan(Math.min(...cprot));
    expect(cprot.at(-1)).toBe(Math.min(...cprot));
    const cfo = polylineYs(chartOf(clusterDom, 'c-failovers'));
    expect(cfo[0]).toBeGreaterThan(cfo.at(-1)!);
    for (const chart of ['c-epochs', 'c-bw', 'c-delay']) expect(new Set(polylineYs(chartOf(clusterDom, chart))).size, chart).toBeGreaterThan(1);

    for (const f of ['status-page-failover.png', 'status-page-proxy-failover.png', 'status-page-cluster-failover.png']) {
      const png = await readFile(path.join(shots, f));
      expect(png.subarray(1, 4).toString('ascii')).toBe('PNG');
      expect(png.length).toBeGreaterThan(30_000);
    }
  }, 240_000);
});
