import { describe, expect, it } from 'vitest';
import { useCluster } from '../helpers/cluster.js';
import { mark, waitForLineAfter } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';

/**
 * A proxy that dies (SIGKILL) and is started again knows nothing of its predecessor's
 * connections, which the guest still holds open. Its clients must get fresh connection ids
 * (an old id reused would collide with the guest's state and stall the proxy in a loop of
 * failovers), the old connections are closed in the guest, and every acknowledged write stays.
 */
describe('proxy restart', () => {
  const cluster = useCluster();

  it('a restarted proxy serves new clients on fresh connection ids, closes its predecessor\'s in the guest, and loses no acknowledged write', async () => {
    const olds: RespClient[] = [];
    for (let i = 0; i < 3; i++) olds.push(await RespClient.connect(cluster.ports.proxy));
    // Traffic on every old connection, so the guest's state lists them with consumed input.
    for (let n = 0; n < 200; n++) for (const c of olds) c.send('INCR', 'before');
    for (const c of olds) await c.waitReplies(200, 20_000);
    olds[0]!.send('CLIENT', 'ID');
    const oldIds = [Number((await olds[0]!.waitReplies(201))[200])];
    const acked = Math.max(...olds.flatMap((c) => c.replies.slice(0, 200).map(Number)));
    expect(acked).toBe(600);

    const primary = cluster.nodes[cluster.primaryKey()];
    const from = mark(primary);
    cluster.proxy!.proc.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    await cluster.startProxy();

    const c = await RespClient.connect(cluster.ports.proxy);
    c.send('GET', 'before');
    c.send('INCR', 'before');
    c.send('CLIENT', 'ID');
    c.send('INFO');
    const r = await c.waitReplies(4, 20_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${cluster.dump(30)}`);
    });
    expect(r[0]).toBe('600');
    expect(r[1]).toBe('601');
    const newId = Number(r[2]);
    expect(newId).toBeGreaterThan(Math.max(...oldIds));
    // Only the new client is open in the guest: the predecessor's three were closed.
    expect(String(r[3])).toMatch(/connected_clients:1\r\n/);
    expect(c.closed).toBe(false);
    // No failover happened: the same node still serves, and it logged no promotion.
    expect(cluster.nodes[cluster.primaryKey()]).toBe(primary);
    expect(primary.err.slice(from.err).join('\n')).not.toMatch(/fenced|PROMOTED/);
    c.end();
  }, 120_000);
});
