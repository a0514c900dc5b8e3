import { describe, expect, it } from 'vitest';
import { useCluster } from '../helpers/cluster.js';
import { mark, waitForLineAfter } from '../helpers/ftvm.js';
import { redisCli } from '../helpers/redis.js';
import { haveTool } from '../helpers/tools.js';

/**
 * Key expiry runs on guest time. Across a failover the secondary continues guest time from
 * the checkpoint plus the wall time elapsed since, so a key set with EX 5 expires ~5 s after
 * it was set, not 5 s after the failover (which freeze mode, QEMU's behaviour, would do).
 */
const sleepUntil = (t0: number, ms: number) => new Promise((r) => setTimeout(r, Math.max(0, t0 + ms - performance.now())));

describe.runIf(haveTool('redis-cli'))('EXPIRE/TTL across a failover (redis-cli through the proxy, kv guest)', () => {
  const cluster = useCluster({ guest: 'kv' });

  it('a key set with EX 5 is still there 4 s after it was set (a failover at ~2 s) and gone by 6 s', async () => {
    const port = cluster.ports.proxy;
    const t0 = performance.now();
    expect(await redisCli(port, 'SET', 'k', 'v', 'EX', '5')).toBe('OK');
    // The guest set the key between t0 and now.
    const setBy = performance.now();
    expect(await redisCli(port, 'SET', 'forever', 'x')).toBe('OK');
    await sleepUntil(t0, 2000);
    const dead = cluster.primaryKey();
    const survivor = dead === 'a' ? 'b' : 'a';
    const from = mark(cluster.nodes[survivor]);
    cluster.nodes[dead].proc.kill('SIGKILL');
    await waitForLineAfter(cluster.nodes[survivor], /PROMOTED to primary/, from, 20_000);
    expect(performance.now() - t0, `promotion took too long for this timeline\n${cluster.dump()}`).toBeLessThan(3900);
    await sleepUntil(t0, 4000);
    expect(await redisCli(port, 'GET', 'k'), `at ${Math.round(performance.now() - t0)} ms\n${cluster.dump()}`).toBe('"v"');
    const asked = performance.now();
    const pttl = Number(/^\(integer\) (-?\d+)$/.exec(await redisCli(port, 'PTTL', 'k'))?.[1]);
    expect(pttl).toBeGreaterThan(0);
    // Guest time never runs ahead of the wall clock here, and lags it by at most the 1 s step
    // threshold (a shorter failover gap is slewed, a longer one stepped): about 1 s is left.
    expect(pttl).toBeLessThanOrEqual(5000 - (asked - setBy) + 1000);
    await sleepUntil(t0, 6000);
    expect(await redisCli(port, 'GET', 'k'), `at ${Math.round(performance.now() - t0)} ms\n${cluster.dump()}`).toBe('(nil)');
    expect(await redisCli(port, 'TTL', 'k')).toBe('(integer) -2');
    // The failover lost nothing else: a key without expiry is still there.
    expect(await redisCli(port, 'GET', 'forever')).toBe('"x"');
  }, 120_000);
});
