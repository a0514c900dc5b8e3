import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { RespClient } from '../helpers/resp.js';

describe('fencing a primary that was cut off, not dead', () => {
  const cluster = new Cluster({ nodeArgs: ['--detection-timeout-ms', '800'], proxyArgs: ['--failover-timeout-ms', '800'] });
  beforeAll(async () => {
    await cluster.start();
  }, 120_000);
  afterAll(async () => {
    cluster.nodes.a?.proc.kill('SIGCONT');
    await cluster.stop();
  });

  it('after the secondary is promoted, the old primary cannot get one byte of output to a client, and rejoins as a secondary', async () => {
    const c = await RespClient.connect(cluster.ports.proxy);
    for (let i = 0; i < 100; i++) c.send('INCR', 'f');
    await c.waitReplies(100);
    // Cut the primary off: it stops answering anyone (a partition seen from every peer).
    cluster.nodes.a.proc.kill('SIGSTOP');
    // Requests sent now reach the stopped primary's socket buffer, and are replayed to the new primary.
    for (let i = 0; i < 100; i++) c.send('INCR', 'f');
    await cluster.nodes.b.waitFor(/PROMOTED to primary/, 20_000);
    await c.waitReplies(200, 20_000);
    // The old primary wakes up with its old term, runs the buffered input and sends output.
    cluster.nodes.a.proc.kill('SIGCONT');
    await cluster.proxy.waitFor(/refused (output|commit|status|heartbeat) from node a|fenc/i, 20_000);
    for (let i = 0; i < 100; i++) c.send('INCR', 'f');
    await c.waitReplies(300, 20_000);
    await new Promise((r) => setTimeout(r, 1000));
    // Exactly one reply per request, 1..300 in order: nothing from the old primary's run got through.
    expect(c.replies.length).toBe(300);
    expect(c.replies).toEqual(Array.from({ length: 300 }, (_, i) => String(i + 1)));
    // It learnt of the newer term and said so with the code, then became a secondary.
    await cluster.nodes.a.waitFor(/fenced by term \d+: this primary stops its guest.*FTVM_ERR_FENCED/, 20_000);
    await cluster.nodes.a.waitFor(/role secondary/, 20_000);
    await cluster.nodes.b.waitFor(/ PROTECTED:/, 30_000);
    c.end();
  }, 180_000);
});
