import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { ProxyRuntime, defaultNodeId, resolveOptions, type ProxyRuntimeOptions } from '../src/index.js';

const base: ProxyRuntimeOptions = { port: 0, nodes: ['ws://127.0.0.1:1', 'ws://127.0.0.1:2'], token: new Uint8Array(0) };

function err(o: Record<string, unknown>): { code?: string; message: string } {
  try {
    resolveOptions({ ...base, ...o } as ProxyRuntimeOptions);
  } catch (e) {
    return e as { code?: string; message: string };
  }
  throw new Error('no error');
}

describe('resolveOptions', () => {
  it('fills the documented defaults and names nodes a, b, ...', () => {
    const o = resolveOptions(base);
    expect(o).toMatchObject({
      host: '127.0.0.1', nodeIds: ['a', 'b'], proxyId: 'proxy', failoverTimeoutMs: 1000, promoteTimeoutMs: 10_000,
      heartbeatIntervalMs: 100, reconnectMinMs: 50, reconnectMaxMs: 1000, maxClients: 10_000,
    });
    expect([0, 1, 25, 26].map(defaultNodeId)).toEqual(['a', 'b', 'z', 'n26']);
  });

  it('rejects bad options with FTVM_ERR_PROXY_OPTION and a message naming the option', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ nodes: [] }, /nodes/],
      [{ nodes: ['http://x:1'] }, /ws:\/\//],
      [{ nodeIds: ['a'] }, /nodeIds/],
      [{ nodeIds: ['a', 'a'] }, /nodeIds/],
      [{ port: 70000 }, /port/],
      [{ failoverTimeoutMs: 0 }, /failoverTimeoutMs/],
      [{ reconnectMinMs: 500, reconnectMaxMs: 100 }, /reconnectMaxMs/],
      [{ token: 'secret' }, /token/],
      [{ metricsPort: -1 }, /metricsPort/],
      [{ bogus: 1 }, /unknown option bogus/],
      [{ log: { info() {} } }, /log/],
    ];
    for (const [o, re] of cases) {
      const e = err(o);
      expect(e.code).toBe('FTVM_ERR_PROXY_OPTION');
      expect(e.message).toMatch(re);
    }
  });
});

describe('ProxyRuntime lifecycle', () => {
  it('fails start() with FTVM_ERR_PROXY_LISTEN when the client port is taken', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as net.AddressInfo).port;
    const proxy = new ProxyRuntime({ ...base, port });
    await expect(proxy.start()).rejects.toMatchObject({ code: 'FTVM_ERR_PROXY_LISTEN' });
    await proxy.close();
    await new Promise<void>((r) => blocker.close(() => r()));
  });

  it('keeps retrying a node that is down and serves nothing until one says it is primary', async () => {
    const warns: string[] = [];
    const proxy = new ProxyRuntime({ ...base, reconnectMinMs: 5, reconnectMaxMs: 20, log: { error() {}, warn: (m) => warns.push(m), info() {}, debug() {} } });
    const port = await proxy.start();
    const c = net.connect(port, '127.0.0.1');
    await new Promise<void>((r) => c.once('connect', () => r()));
    c.write('hello\n');
    await new Promise((r) => setTimeout(r, 200));
    expect(proxy.state).toBe('idle');
    // Before any node is active the client waits unread (its connection id is not chosen yet).
    expect(proxy.stats().inputLogBytes).toBe(0);
    expect(c.destroyed).toBe(false);
    expect(warns.filter((w) => w.startsWith('cannot reach node a')).length).toBeGreaterThanOrEqual(1);
    c.destroy();
    await proxy.close();
    await expect(proxy.start()).rejects.toMatchObject({ code: 'FTVM_ERR_PROXY_STATE' });
  });
});
