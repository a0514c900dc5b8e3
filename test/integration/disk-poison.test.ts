import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useCluster } from '../helpers/cluster.js';
import { mark, waitForLineAfter } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';

/**
 * Guest faults on a primary with a virtual disk: after poison requests amid SETs that write
 * disk and memory, DISKCHECK is OK and every acknowledged SET is there, on the primary and,
 * after a SIGKILL of it, on the promoted secondary. Real processes. (kv's disk is an append
 * log whose end lives in memory, and the replay rewrites what the void run wrote, so this
 * passes with or without the primary's disk undo file: it guards the rollback's consistency
 * with replication, not the undo file itself.) The writes after each poison are spread over
 * ~1 s, so some arrive while the vCPU is being restored: they must be replayed, not lost.
 */
describe('a poison request on a primary with a disk', () => {
  const cluster = useCluster({
    guest: 'kv',
    nodeArgs: ['--disk-size', '4M'],
    perNodeArgs: (k, dir) => ['--disk', join(dir, `${k}.img`)],
  });

  async function checkAll(c: RespClient, acked: Map<string, string>, where: string): Promise<void> {
    const n = c.replies.length;
    c.send('DISKCHECK');
    for (const k of acked.keys()) c.send('GET', k);
    const r = await c.waitReplies(n + 1 + acked.size, 20_000);
    expect(r[n], `${where}\n${cluster.dump(30)}`).toBe('OK');
    expect(r.slice(n + 1), where).toEqual([...acked.values()]);
  }

  it('keeps disk and memory consistent across rollbacks and a later failover', { timeout: 180_000 }, async () => {
    const acked = new Map<string, string>();
    const c = await RespClient.connect(cluster.ports.proxy);
    let sent = 0;
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 200; i++, sent++) c.send('SET', `k${sent}`, `v${sent}-${'y'.repeat(sent % 40)}`);
      const bad = await RespClient.connect(cluster.ports.proxy);
      bad.send('DEBUG', 'SEGFAULT');
      // Spread over ~1 s: some of it reaches the primary while its vCPU is being restored.
      for (let b = 0; b < 20; b++) {
        for (let i = 0; i < 10; i++, sent++) c.send('SET', `k${sent}`, `v${sent}-${'y'.repeat(sent % 40)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      await bad.waitReplies(1, 15_000);
      expect(bad.closed).toBe(true);
      const r = await c.waitReplies(sent, 20_000);
      expect(r.length).toBe(sent);
      expect(r.every((x) => x === 'OK')).toBe(true);
      for (let i = sent - 400; i < sent; i++) acked.set(`k${i}`, `v${i}-${'y'.repeat(i % 40)}`);
    }
    expect(cluster.nodes.a.err.filter((l) => /guest rolled back to epoch/.test(l)).length).toBe(3);
    await checkAll(c, acked, 'primary after 3 rollbacks');
    const from = mark(cluster.nodes.b);
    cluster.nodes.a.proc.kill('SIGKILL');
    await waitForLineAfter(cluster.nodes.b, /PROMOTED to primary/, from, 20_000);
    await checkAll(c, acked, 'promoted secondary');
    expect(c.closed).toBe(false);
    c.end();
  });
});
