import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { RespClient } from '../helpers/resp.js';
import { parsePromText } from '../../packages/metrics/test/helpers/prom-text.js';

const DETECT_MS = 1500;

describe('output commit, seen from a client', () => {
  let cluster: Cluster | null = null;
  afterEach(async () => {
    if (cluster) for (const k of ['a', 'b'] as const) cluster.nodes[k]?.proc.kill('SIGCONT');
    await cluster?.stop();
    cluster = null;
  });

  it('holds every reply while the secondary is stopped, until the detection timeout; then the primary goes on unprotected', async () => {
    cluster = new Cluster({ nodeArgs: ['--detection-timeout-ms', String(DETECT_MS)] });
    await cluster.start();
    const c = await RespClient.connect(cluster.ports.proxy);
    c.send('SET', 'x', '1');
    expect(await c.waitReplies(1)).toEqual(['OK']);
    cluster.nodes.b.proc.kill('SIGSTOP');
    const t0 = Date.now();
    c.send('INCR', 'x');
    const other = await RespClient.connect(cluster.ports.proxy);
    other.send('GET', 'x');
    // Nothing may arrive while the checkpoint behind the reply is unacknowledged.
    await c.waitReplies(2, DETECT_MS - 300);
    expect(c.replies).toEqual(['OK']);
    expect(other.replies).toEqual([]);
    expect(await c.waitReplies(2, 10_000)).toEqual(['OK', '2']);
    const waited = Date.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(DETECT_MS - 300);
    expect(await other.waitReplies(1, 5000)).toEqual(['2']);
    await cluster.nodes.a.waitFor(/UNPROTECTED/, 5000);
    c.end();
    other.end();
  }, 120_000);

  it('the secondary tells the proxy of each commit itself; the primary\'s commits then only confirm, at most one per 20 ms', async () => {
    cluster = new Cluster({ metrics: true });
    await cluster.start();
    const scrape = async (k: 'a' | 'proxy') => parsePromText(await (await fetch(`${cluster!.metricsUrl(k)}/metrics`)).text());
    const c = await RespClient.connect(cluster.ports.proxy);
    c.send('SET', 'n', '0');
    expect(await c.waitReplies(1)).toEqual(['OK']);
    const [p0, a0] = [await scrape('proxy'), await scrape('a')];
    const t0 = Date.now();
    // One INCR at a time: each reply waits for its own epoch's commit.
    for (let i = 1; i <= 300; i++) {
      c.send('INCR', 'n');
      expect((await c.waitReplies(i + 1))[i]).toBe(String(i));
    }
    const seconds = (Date.now() - t0) / 1000;
    const [p1, a1] = [await scrape('proxy'), await scrape('a')];
    const d = (a: typeof p0, b: typeof p0, name: string, labels?: Record<string, string>) => (b.value(name, labels) ?? 0) - (a.value(name, labels) ?? 0);
    const fromSecondary = d(p0, p1, 'ftvm_proxy_commits_total', { source: 'secondary' });
    const fromPrimary = d(p0, p1, 'ftvm_proxy_commits_total', { source: 'primary' });
    const epochs = d(a0, a1, 'ftvm_epochs_total', { policy: 'adaptive' });
    // Every reply needed a commit: nearly all came from the secondary, one hop sooner.
    expect(fromSecondary).toBeGreaterThanOrEqual(250);
    expect(epochs).toBeGreaterThanOrEqual(300);
    // A primary commit advances the proxy only when it arrives first: rare, and never more than its lazy pace allows.
    expect(fromPrimary).toBeLessThanOrEqual(Math.ceil((seconds * 1000) / 20) + 5);
    expect(fromPrimary).toBeLessThan(fromSecondary / 5);
    c.end();
  }, 120_000);

  it('with --on-secondary-loss block, holds replies past the timeout until a secondary returns', async () => {
    cluster = new Cluster({ nodeArgs: ['--detection-timeout-ms', String(DETECT_MS), '--on-secondary-loss', 'block'] });
    await cluster.start();
    const c = await RespClient.connect(cluster.ports.proxy);
    c.send('SET', 'y', '1');
    expect(await c.waitReplies(1)).toEqual(['OK']);
    cluster.nodes.b.proc.kill('SIGSTOP');
    c.send('INCR', 'y');
    await c.waitReplies(2, DETECT_MS + 2500);
    expect(c.replies).toEqual(['OK']);
    cluster.nodes.b.proc.kill('SIGCONT');
    // The secondary comes back (a full sync), the epoch is acked and the reply released.
    expect(await c.waitReplies(2, 20_000)).toEqual(['OK', '2']);
    c.end();
  }, 120_000);
});
