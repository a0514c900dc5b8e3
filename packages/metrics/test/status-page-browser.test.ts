import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startMetricsServer } from '../src/index.js';
import { requireBinary } from './helpers/binaries.js';
import { dumpDom, screenshotPage } from './helpers/chromium.js';
import { startTestRole } from './helpers/role.js';
import { simulateCluster } from './helpers/simulate.js';

let stop: (() => void) | undefined;
afterEach(() => {
  stop?.();
  stop = undefined;
});

function textOf(dom: string, id: string): string {
  const m = new RegExp(`id="${id}"[^>]*>([^<]*)<`).exec(dom);
  return m ? m[1]! : '';
}

describe('status page in headless chromium', () => {
  it('renders role, protection and live charts from /api/status', async (ctx) => {
    requireBinary(ctx, ['chromium', 'chromium-browser'], 'chromium');
    const proxy = await startTestRole('proxy', { status: { intervalMs: 100, autoStart: true } });
    const primary = await startTestRole('primary', { status: { intervalMs: 100, autoStart: true } });
    const secondary = await startTestRole('secondary');
    stop = simulateCluster({ proxy: proxy.bus, primary: primary.bus, secondary: secondary.bus }, 10).stop;
    await new Promise((r) => setTimeout(r, 600));
    const dom = await dumpDom(primary.server.url + '/', { virtualTimeBudgetMs: 3000 });
    expect(textOf(dom, 'role')).toBe('primary');
    expect(textOf(dom, 'protection')).toBe('PROTECTED');
    expect(textOf(dom, 'ready')).toBe('READY');
    expect(textOf(dom, 'conn')).toBe('live');
    expect(Number(textOf(dom, 't-epoch'))).toBeGreaterThan(0);
    expect(textOf(dom, 't-links')).toBe('secondary up');
    expect(textOf(dom, 't-faults')).toBe('1');
    const chartOf = (d: string, id: string): string => {
      const section = d.slice(d.indexOf(`id="${id}"`));
      return section.slice(0, section.indexOf('</section>'));
    };
    for (const chart of ['c-protected', 'c-epochs', 'c-pause', 'c-bw', 'c-failovers', 'c-drift']) {
      expect(chartOf(dom, chart), chart).toContain('<polyline');
    }
    // Output is held and released by the proxy, so its page is the one with an output delay line.
    expect(chartOf(dom, 'c-delay')).not.toContain('<polyline');
    const proxyDom = await dumpDom(proxy.server.url + '/', { virtualTimeBudgetMs: 3000 });
    expect(chartOf(proxyDom, 'c-delay')).toContain('<polyline');
    expect(textOf(proxyDom, 'role')).toBe('proxy');
  });

  it('shows role and protection on its first paint, before any poll (the server writes them in)', async (ctx) => {
    requireBinary(ctx, ['chromium', 'chromium-browser'], 'chromium');
    const run = await startTestRole('run', { status: { intervalMs: 100, autoStart: true } });
    run.bus.emit('protection', { protected: false, reason: 'ftvm run: no secondary' });
    await new Promise((r) => setTimeout(r, 300));
    // A 1 ms budget: the page's first poll is 1 s after load, so only the written-in data can show.
    const dom = await dumpDom(run.server.url + '/', { virtualTimeBudgetMs: 1 });
    expect(textOf(dom, 'role')).toBe('run');
    expect(textOf(dom, 'protection')).toBe('UNPROTECTED');
    expect(textOf(dom, 'reason')).toBe('ftvm run: no secondary');
    expect(textOf(dom, 'updated')).not.toBe('never');
  });

  it('says disconnected when /api/status fails', async (ctx) => {
    requireBinary(ctx, ['chromium', 'chromium-browser'], 'chromium');
    const role = await startTestRole('run');
    const broken = await startMetricsServer({ port: 0, registry: role.metrics.registry, status: () => { throw new Error('down'); } });
    try {
      const dom = await dumpDom(broken.url + '/', { virtualTimeBudgetMs: 1500 });
      expect(textOf(dom, 'conn')).toBe('disconnected');
      expect(textOf(dom, 'protection')).toBe('CONNECTING');
    } finally {
      await broken.close();
    }
  });

  it('shows UNPROTECTED with its reason, and writes a screenshot', async (ctx) => {
    requireBinary(ctx, ['chromium', 'chromium-browser'], 'chromium');
    const run = await startTestRole('run', { status: { intervalMs: 100, autoStart: true } });
    run.bus.emit('protection', { protected: false, reason: 'ftvm run: no secondary' });
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ftvm-shot-'));
    try {
      const file = path.join(dir, 'status.png');
      await screenshotPage(run.server.url + '/', file, { width: 1200, height: 800, virtualTimeBudgetMs: 2000 });
      const png = await readFile(file);
      expect(png.subarray(1, 4).toString('ascii')).toBe('PNG');
      expect(png.length).toBeGreaterThan(10_000);
      const dom = await dumpDom(run.server.url + '/', { virtualTimeBudgetMs: 2000 });
      expect(textOf(dom, 'protection')).toBe('UNPROTECTED');
      expect(textOf(dom, 'reason')).toBe('ftvm run: no secondary');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
