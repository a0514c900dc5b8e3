import { describe, expect, it } from 'vitest';
import { useCluster } from '../helpers/cluster.js';
import { RespClient } from '../helpers/resp.js';

const ROUNDS = Number(process.env.FTVM_FAILOVER_ROUNDS ?? (process.env.CI ? 20 : 3));
const INCRS = 10_000;
/** Requests in flight on the one connection (a pipelining client). */
const WINDOW = 32;

describe('failover through the proxy, connections kept', () => {
  const cluster = useCluster();

  const killPrimaryAndRecover = () => cluster.killPrimaryAndRecover();

  it('GET on the same connection after kill -9 of the primary returns what SET stored', async () => {
    const c = await RespClient.connect(cluster.ports.proxy);
    c.send('SET', 'k', 'v');
    expect(await c.waitReplies(1)).toEqual(['OK']);
    await killPrimaryAndRecover();
    c.send('GET', 'k');
    expect(await c.waitReplies(2)).toEqual(['OK', 'v']);
    expect(c.closed).toBe(false);
    c.end();
  }, 120_000);

  it(`${INCRS} INCRs on one connection get exactly one reply each, in order, across a SIGKILL of the primary (${ROUNDS} random kill points)`, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const key = `counter:${round}`;
      const c = await RespClient.connect(cluster.ports.proxy);
      const killAt = 100 + Math.floor(Math.random() * (INCRS - 200));
      let sent = 0;
      let killed: Promise<void> | null = null;
      const t0 = Date.now();
      while (c.replies.length < INCRS && !c.closed && Date.now() - t0 < 120_000) {
        while (sent < INCRS && sent - c.replies.length < WINDOW) {
          c.send('INCR', key);
          sent++;
        }
        if (!killed && c.replies.length >= killAt) {
          killed = killPrimaryAndRecover();
          killed.catch(() => undefined);
        }
        await c.waitReplies(Math.min(INCRS, c.replies.length + 1), 1000);
      }
      if (c.replies.length !== INCRS) console.error(`round ${round} stalled at ${c.replies.length} (kill after ${killAt})\n${cluster.dump()}`);
      expect(c.closed, `round ${round}: connection dropped`).toBe(false);
      expect(c.replies.length, `round ${round}: replies`).toBe(INCRS);
      const bad = c.replies.findIndex((r, i) => r !== String(i + 1));
      expect(bad, `round ${round}: reply ${bad} is ${c.replies[bad]}, expected ${bad + 1} (kill after ${killAt})`).toBe(-1);
      c.send('GET', key);
      expect((await c.waitReplies(INCRS + 1)).at(-1)).toBe(String(INCRS));
      c.end();
      await killed;
    }
  }, 600_000);
});
