import { describe, expect, it } from 'vitest';
import { useCluster } from '../helpers/cluster.js';
import { waitForLineAfter } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';

describe('promotion from the ready vCPU (the secondary keeps its committed image in a prestarted vCPU)', () => {
  const cluster = useCluster();

  it('after kill -9 of the primary the survivor starts the ready vCPU in place, and it holds every acknowledged write', async () => {
    const c = await RespClient.connect(cluster.ports.proxy);
    // Written before and after the secondary's ready vCPU holds the image (the first copy, then per-epoch pages).
    c.send('SET', 'early', 'e');
    expect(await c.waitReplies(1)).toEqual(['OK']);
    await cluster.nodes.b.waitFor(/ready vCPU holds the committed image/, 30_000);
    const N = 500;
    for (let i = 0; i < N; i++) c.send('SET', `k${i}`, `v${i}`);
    expect((await c.waitReplies(1 + N)).every((r) => r === 'OK')).toBe(true);
    const { survivor, from } = await cluster.killPrimary(20_000);
    expect(survivor).toBe('b');
    const promoted = await waitForLineAfter(cluster.nodes.b, /PROMOTED to primary/, from, 1000);
    expect(promoted).toMatch(/inPlace=true/);
    c.send('GET', 'early');
    c.send('GET', 'k0');
    c.send('GET', `k${N - 1}`);
    expect((await c.waitReplies(1 + N + 3)).slice(-3)).toEqual(['e', 'v0', `v${N - 1}`]);
    const first = await waitForLineAfter(cluster.nodes.b, /promoted guest handled its first event/, from, 5000);
    expect(first).toMatch(/sinceDecisionMs=[\d.]+ inPlace=true/);
    expect(c.closed).toBe(false);
    c.end();
  }, 120_000);
});
