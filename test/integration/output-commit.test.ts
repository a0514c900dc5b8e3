import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { RespClient } from '../helpers/resp.js';

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
