import { describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { mark, waitForLineAfter } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';

/**
 * The proxy dies (SIGKILL), then the primary dies (SIGKILL). A new proxy started with the same
 * flags never hears a primary: within its failover timeout of reaching the secondary it
 * promotes it, and the data acknowledged through the old proxy is served by the new one.
 */
const FAILOVER_TIMEOUT_MS = 1000;

describe('a proxy restarted while the primary is dead', () => {
  it('promotes the secondary within its failover timeout and serves every acknowledged write', { timeout: 120_000 }, async () => {
    const cluster = new Cluster({ proxyArgs: ['--failover-timeout-ms', String(FAILOVER_TIMEOUT_MS)] });
    try {
      await cluster.start();
      const c = await RespClient.connect(cluster.ports.proxy);
      for (let i = 0; i < 100; i++) c.send('SET', `key:${i}`, `value:${i}`);
      for (let i = 0; i < 50; i++) c.send('INCR', 'counter');
      const r = await c.waitReplies(150);
      expect(r.slice(0, 100).every((x) => x === 'OK')).toBe(true);
      expect(r[149]).toBe('50');
      c.end();

      cluster.proxy.proc.kill('SIGKILL');
      await cluster.proxy.exited;
      cluster.nodes.a.proc.kill('SIGKILL');
      await cluster.nodes.a.exited;
      const from = mark(cluster.nodes.b);
      const t0 = Date.now();
      const proxy = await cluster.startProxy();
      await waitForLineAfter(cluster.nodes.b, /PROMOTED to primary/, from, 20_000).catch((e: Error) => {
        throw new Error(`${e.message}\n${cluster.dump(30)}`);
      });
      // From the new proxy's start to its promote, by its own log clock: the failover timeout
      // (counted from its first node link) plus dialing the nodes.
      const at = (re: RegExp): number => {
        const l = proxy.err.find((x) => re.test(x)) ?? proxy.out.find((x) => re.test(x));
        const m = l?.match(/^(\d\d):(\d\d):(\d\d)\.(\d{3}) /);
        if (!m) throw new Error(`no line ${re}\n${cluster.dump(30)}`);
        return ((Number(m[1]) * 60 + Number(m[2])) * 60 + Number(m[3])) * 1000 + Number(m[4]);
      };
      await proxy.waitFor(/promoting node b/, 10_000);
      const promotedAfterMs = at(/promoting node b/) - at(/proxy started/);
      expect(promotedAfterMs, cluster.dump(30)).toBeGreaterThanOrEqual(FAILOVER_TIMEOUT_MS);
      expect(promotedAfterMs, cluster.dump(30)).toBeLessThan(FAILOVER_TIMEOUT_MS + 1000);
      expect(Date.now() - t0).toBeLessThan(30_000);
      await proxy.waitFor(/active node is now b/, 10_000);

      const d = await RespClient.connect(cluster.ports.proxy);
      for (let i = 0; i < 100; i++) d.send('GET', `key:${i}`);
      d.send('INCR', 'counter');
      const got = await d.waitReplies(101, 20_000);
      expect(got.slice(0, 100)).toEqual(Array.from({ length: 100 }, (_, i) => `value:${i}`));
      expect(got[100]).toBe('51');
      expect(d.closed).toBe(false);
      d.end();
    } finally {
      await cluster.stop();
    }
  });
});
