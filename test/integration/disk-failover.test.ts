import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useCluster } from '../helpers/cluster.js';
import { mark, waitForLineAfter } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';

const ROUNDS = Number(process.env.FTVM_DISK_FAILOVER_ROUNDS ?? (process.env.CI ? 20 : 4));
/** Requests in flight on the client's connection. */
const WINDOW = 8;

describe('failover of a kv guest that writes its disk and memory in the same request', () => {
  // Each node has its own disk file: a disk must never be shared.
  const cluster = useCluster({
    guest: 'kv',
    nodeArgs: ['--disk-size', '4M', '--detection-timeout-ms', '600'],
    perNodeArgs: (k, dir) => ['--disk', join(dir, `${k}.img`)],
  });

  it(`after a SIGKILL of the primary at a random point, DISKCHECK on the promoted node is OK and every acknowledged SET is there (${ROUNDS} kill points)`, async () => {
    const acked = new Map<string, string>();
    for (let round = 0; round < ROUNDS; round++) {
      const dead = cluster.primaryKey();
      const survivor = dead === 'a' ? 'b' : 'a';
      const from = mark(cluster.nodes[survivor]);
      const c = await RespClient.connect(cluster.ports.proxy);
      // Writes flow until the kill, at a random point 20-400 ms in.
      const killAfterMs = 20 + Math.floor(Math.random() * 380);
      const t0 = Date.now();
      let sent = 0;
      const pending: Array<[string, string]> = [];
      let killedAt = 0;
      const kill = setTimeout(() => {
        cluster.nodes[dead].proc.kill('SIGKILL');
        killedAt = Date.now();
      }, killAfterMs);
      while ((killedAt === 0 || Date.now() - killedAt < 50) && !c.closed) {
        while (sent - c.replies.length < WINDOW) {
          const k = `r${round}:k${sent}`;
          const v = `v${round}-${sent}-${'x'.repeat(sent % 50)}`;
          c.send('SET', k, v);
          pending.push([k, v]);
          sent++;
        }
        await c.waitReplies(c.replies.length + 1, 20);
      }
      clearTimeout(kill);
      await waitForLineAfter(cluster.nodes[survivor], /PROMOTED to primary/, from, 20_000);
      // Every request sent gets its reply (the proxy replays the lost epoch's input to the promoted node).
      const replies = await c.waitReplies(sent, 20_000);
      expect(replies.length, cluster.dump(30)).toBe(sent);
      replies.forEach((r, i) => {
        expect(r).toBe('OK');
        acked.set(pending[i]![0], pending[i]![1]);
      });
      c.send('DISKCHECK');
      expect((await c.waitReplies(sent + 1))[sent], `round ${round}\n${cluster.dump(30)}`).toBe('OK');
      // Every write ever acknowledged, all rounds: memory (GET) ...
      const keys = [...acked.keys()];
      const before = c.replies.length;
      for (const k of keys) c.send('GET', k);
      const values = (await c.waitReplies(before + keys.length, 20_000)).slice(before);
      expect(values.length).toBe(keys.length);
      expect(keys.filter((k, i) => values[i] !== acked.get(k)), `round ${round}`).toEqual([]);
      c.end();
      // ... and the dead node comes back as a secondary of the survivor (a full sync of memory and disk).
      cluster.startNode(dead, 'secondary');
      await waitForLineAfter(cluster.nodes[survivor], / PROTECTED:/, from, 60_000);
    }
  }, 600_000);
});
