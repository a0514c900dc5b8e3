import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { FtvmEvents, createRoleMetrics, startMetricsServer, type StatusSnapshot } from '../src/index.js';
import { startTestRole } from './helpers/role.js';

describe('startMetricsServer', () => {
  it('serves the text exposition format on /metrics', async () => {
    const r = await startTestRole('primary');
    const res = await r.get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await res.text()).toMatch(/^# HELP /m);
  });

  it('answers /healthz 200 while the loop runs', async () => {
    const r = await startTestRole('proxy');
    const res = await r.get('/healthz');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true, role: 'proxy' });
  });

  it('answers /readyz 503 with the reason until the role is ready, then 200, then 503 again', async () => {
    const r = await startTestRole('secondary');
    let res = await r.get('/readyz');
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ ready: false, role: 'secondary', reason: 'starting' });
    r.bus.emit('ready', { ready: true, reason: 'synced at epoch 12' });
    res = await r.get('/readyz');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ready: true, reason: 'synced at epoch 12' });
    r.bus.emit('ready', { ready: false, reason: 'primary lost' });
    res = await r.get('/readyz');
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ ready: false, reason: 'primary lost' });
  });

  it('uses explicit health and ready callbacks over the role metrics', async () => {
    const bus = new FtvmEvents();
    const metrics = createRoleMetrics('proxy', bus, { defaultMetrics: false, status: { autoStart: false } });
    const server = await startMetricsServer({
      port: 0, metrics,
      health: () => ({ ok: false, detail: { why: 'wedged' } }),
      ready: () => ({ ok: true, detail: { active: 'node-b' } }),
    });
    try {
      const h = await fetch(server.url + '/healthz');
      expect(h.status).toBe(503);
      expect(await h.json()).toEqual({ ok: false, why: 'wedged' });
      const rd = await fetch(server.url + '/readyz');
      expect(rd.status).toBe(200);
      expect(await rd.json()).toEqual({ ready: true, active: 'node-b' });
    } finally {
      metrics.close();
      await server.close();
    }
  });

  it('answers 500 with FTVM_ERR_METRICS_INTERNAL when a provider throws, and keeps serving', async () => {
    const bus = new FtvmEvents();
    const metrics = createRoleMetrics('proxy', bus, { defaultMetrics: false, status: { autoStart: false } });
    const server = await startMetricsServer({
      port: 0, metrics,
      status: () => {
        throw new Error('status provider broke');
      },
    });
    try {
      const res = await fetch(server.url + '/api/status');
      expect(res.status).toBe(500);
      expect(await res.json()).toEqual({ error: 'FTVM_ERR_METRICS_INTERNAL', message: 'Error: status provider broke' });
      expect((await fetch(server.url + '/metrics')).status).toBe(200);
    } finally {
      metrics.close();
      await server.close();
    }
  });

  it('answers 404 on unknown paths and 405 on methods other than GET and HEAD', async () => {
    const r = await startTestRole('primary');
    expect((await r.get('/nope')).status).toBe(404);
    expect((await r.get('/metrics/extra')).status).toBe(404);
    expect((await r.get('/metrics', { method: 'POST', body: 'x' })).status).toBe(405);
    const head = await r.get('/metrics', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    expect((await r.get('/metrics?x=1')).status).toBe(200);
  });

  it('serves /api/status with current values and a ring of samples bounded by capacity', async () => {
    const r = await startTestRole('primary', { status: { capacity: 5 } });
    for (let i = 0; i < 20; i++) {
      r.bus.emit('epochEnded', { epoch: i, policy: 'adaptive', durationMs: 10, pauseMs: i, dirtyPages: 1 });
      r.bus.emit('committed', { epoch: i });
      r.metrics.status.sample();
    }
    const res = await r.get('/api/status');
    expect(res.status).toBe(200);
    const s = (await res.json()) as StatusSnapshot;
    expect(s.version).toBe(1);
    expect(s.capacity).toBe(5);
    expect(s.samples).toHaveLength(5);
    expect(s.samples.map((x) => x.committedEpoch)).toEqual([15, 16, 17, 18, 19]);
    expect(s.samples.at(-1)!.pauseP99Ms).toBe(19);
    expect(s.current).toMatchObject({ role: 'primary', committedEpoch: 19, epochsTotal: 20, policy: 'adaptive' });
  });

  it('returns only samples newer than ?since= so the page fetches each sample once', async () => {
    const r = await startTestRole('primary', { status: { capacity: 10 } });
    for (let i = 0; i < 4; i++) {
      r.bus.emit('committed', { epoch: i });
      r.metrics.status.sample();
      await new Promise((ok) => setTimeout(ok, 3));
    }
    const all = (await (await r.get('/api/status')).json()) as StatusSnapshot;
    expect(all.samples).toHaveLength(4);
    const since = all.samples[1]!.t;
    const newer = (await (await r.get(`/api/status?since=${since}`)).json()) as StatusSnapshot;
    expect(newer.samples.map((x) => x.committedEpoch)).toEqual([2, 3]);
    expect(newer.startedAt).toBe(all.startedAt);
    const junk = (await (await r.get('/api/status?since=abc')).json()) as StatusSnapshot;
    expect(junk.samples).toHaveLength(4);
  });

  it('answers 404 on /api/status when no status source was given', async () => {
    const bus = new FtvmEvents();
    const metrics = createRoleMetrics('run', bus, { defaultMetrics: false, status: { autoStart: false } });
    const server = await startMetricsServer({ port: 0, registry: metrics.registry });
    try {
      expect((await fetch(server.url + '/api/status')).status).toBe(404);
      expect((await fetch(server.url + '/readyz')).status).toBe(503);
    } finally {
      metrics.close();
      await server.close();
    }
  });

  it('serves the status page at / with a CSP that forbids other origins', async () => {
    const r = await startTestRole('primary');
    const res = await r.get('/');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(res.headers.get('content-security-policy')).toContain("connect-src 'self'");
    expect(await res.text()).toContain('<title>ftvm status</title>');
  });

  it('rejects with FTVM_ERR_METRICS_LISTEN when the port is taken', async () => {
    const blocker = net.createServer();
    await new Promise<void>((ok) => blocker.listen(0, '127.0.0.1', ok));
    const port = (blocker.address() as net.AddressInfo).port;
    const bus = new FtvmEvents();
    const metrics = createRoleMetrics('primary', bus, { defaultMetrics: false, status: { autoStart: false } });
    try {
      await expect(startMetricsServer({ port, metrics })).rejects.toMatchObject({ code: 'FTVM_ERR_METRICS_LISTEN' });
    } finally {
      metrics.close();
      await new Promise<void>((ok) => blocker.close(() => ok()));
    }
  });

  it('validates port, host and maxConnections with FTVM_ERR_INVALID_OPTION', () => {
    const metrics = createRoleMetrics('primary', new FtvmEvents(), { defaultMetrics: false, status: { autoStart: false } });
    try {
      for (const bad of [{ port: -1 }, { port: 70000 }, { port: 1.5 }, { port: 0, host: '' }, { port: 0, maxConnections: 0 }]) {
        expect(() => startMetricsServer({ ...bad, metrics })).toThrow(expect.objectContaining({ code: 'FTVM_ERR_INVALID_OPTION' }));
      }
      expect(() => startMetricsServer({ port: 0 })).toThrow(expect.objectContaining({ code: 'FTVM_ERR_INVALID_OPTION' }));
    } finally {
      metrics.close();
    }
  });

  it('closes idempotently and stops accepting connections', async () => {
    const bus = new FtvmEvents();
    const metrics = createRoleMetrics('primary', bus, { defaultMetrics: false, status: { autoStart: false } });
    const server = await startMetricsServer({ port: 0, metrics });
    expect((await fetch(server.url + '/healthz')).status).toBe(200);
    await Promise.all([server.close(), server.close()]);
    metrics.close();
    await expect(fetch(server.url + '/healthz')).rejects.toThrow();
  });
});
