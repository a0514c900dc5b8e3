/**
 * A guest fault is the application's, not the host's. Poison requests (kv's DEBUG SEGFAULT
 * traps, DEBUG SLEEP past --event-timeout-ms overruns it) sent through the proxy while 20
 * other connections run INCR loops: no failover, the poisoned connections are closed, every
 * other reply is exact and in order, every acknowledged write is there, and the cluster is
 * protected afterwards. Then the same with the poison still uncommitted when the primary is
 * SIGKILLed: the promoted node meets it in the replay and stays primary. Real processes.
 */
import { describe, expect, it } from 'vitest';
import { Cluster } from '../helpers/cluster.js';
import { mark, waitForLineAfter, type Spawned } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';

const LOADERS = 20;
/** INCRs in flight per loader connection. */
const WINDOW = 4;
const EVENT_TIMEOUT_MS = 1000;

/** One INCR loop on its own key; every reply must be the next integer. */
class Loader {
  sent = 0;
  private running = true;
  private done: Promise<void>;
  constructor(readonly c: RespClient, readonly key: string) {
    this.done = this.loop();
  }
  private async loop(): Promise<void> {
    while (this.running && !this.c.closed) {
      while (this.sent - this.c.replies.length < WINDOW) {
        this.c.send('INCR', this.key);
        this.sent++;
      }
      await this.c.waitReplies(this.c.replies.length + 1, 200);
    }
  }
  /** Stops sending and waits until every INCR sent is answered. */
  async stop(): Promise<void> {
    this.running = false;
    await this.done;
    await this.c.waitReplies(this.sent, 30_000);
  }
  /** Index of the first reply that is not the next integer (-1: all exact, in order). */
  firstWrong(): number {
    return this.c.replies.findIndex((r, i) => r !== String(i + 1));
  }
}

async function startLoad(port: number, tag: string): Promise<Loader[]> {
  const out: Loader[] = [];
  for (let i = 0; i < LOADERS; i++) out.push(new Loader(await RespClient.connect(port), `${tag}:${i}`));
  return out;
}

/** Stops the loaders and checks every reply and every acknowledged write. */
async function checkLoad(loaders: Loader[], port: number, dump: () => string): Promise<void> {
  // Every connection is served after the poison: 20 more replies each.
  const at = loaders.map((l) => l.c.replies.length);
  await Promise.all(loaders.map((l, i) => l.c.waitReplies(at[i]! + 20, 30_000)));
  await Promise.all(loaders.map((l) => l.stop()));
  for (const l of loaders) {
    expect(l.c.closed, `${l.key}: connection dropped\n${dump()}`).toBe(false);
    expect(l.c.replies.length, `${l.key}: replies`).toBe(l.sent);
    expect(l.firstWrong(), `${l.key}: reply ${l.firstWrong()} is ${l.c.replies[l.firstWrong()]}`).toBe(-1);
    expect(l.sent).toBeGreaterThan(0);
  }
  // Every acknowledged INCR is in the guest: a fresh connection reads each counter.
  const r = await RespClient.connect(port);
  for (const l of loaders) r.send('GET', l.key);
  const got = await r.waitReplies(loaders.length);
  expect(got).toEqual(loaders.map((l) => String(l.sent)));
  r.end();
  for (const l of loaders) l.c.end();
}

/** Sends a poison request on a connection of its own. */
async function poison(port: number, ...cmd: string[]): Promise<RespClient> {
  const c = await RespClient.connect(port);
  c.send(...cmd);
  return c;
}

async function waitClosed(c: RespClient, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!c.closed && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  return c.closed;
}

const lines = (s: Spawned, from: { out: number; err: number }): string[] => [...s.out.slice(from.out), ...s.err.slice(from.err)];

describe('a poison request through the proxy', () => {
  it('rolls the primary back, closes the poisoned connections and keeps both roles', { timeout: 180_000 }, async () => {
    const cluster = new Cluster({ nodeArgs: ['--event-timeout-ms', String(EVENT_TIMEOUT_MS)] });
    try {
      await cluster.start();
      const port = cluster.ports.proxy;
      const since = { a: mark(cluster.nodes.a), b: mark(cluster.nodes.b), proxy: mark(cluster.proxy) };
      const loaders = await startLoad(port, 'steady');
      await new Promise((r) => setTimeout(r, 500));
      const trap = await poison(port, 'DEBUG', 'SEGFAULT');
      expect(await waitClosed(trap, 10_000), cluster.dump()).toBe(true);
      await new Promise((r) => setTimeout(r, 300));
      const loop = await poison(port, 'DEBUG', 'SLEEP', String(3 * EVENT_TIMEOUT_MS));
      expect(await waitClosed(loop, 15_000), cluster.dump()).toBe(true);
      expect(trap.replies).toEqual([]);
      expect(loop.replies).toEqual([]);
      await new Promise((r) => setTimeout(r, 500));
      await checkLoad(loaders, port, () => cluster.dump());

      const a = lines(cluster.nodes.a, since.a);
      expect(a.some((l) => /FTVM_ERR_GUEST_TRAP/.test(l)), cluster.dump()).toBe(true);
      expect(a.some((l) => /FTVM_ERR_GUEST_TIMEOUT/.test(l)), cluster.dump()).toBe(true);
      expect(a.filter((l) => /guest rolled back to epoch/.test(l)).length).toBe(2);
      // No failover, no demotion, never unprotected: both nodes kept their roles.
      expect(cluster.primaryKey()).toBe('a');
      expect(a.filter((l) => /UNPROTECTED|now a secondary|fenced/.test(l)), cluster.dump()).toEqual([]);
      expect(lines(cluster.nodes.b, since.b).filter((l) => /PROMOTED|primary lost/.test(l)), cluster.dump()).toEqual([]);
      expect(lines(cluster.proxy, since.proxy).filter((l) => /promot|FAILOVER|lost/i.test(l)), cluster.dump()).toEqual([]);
      expect(lines(cluster.proxy, since.proxy).filter((l) => /rolled back/.test(l)).length).toBe(2);
      // Still protected: the secondary acks epochs after the faults (its image moves on).
      const p = await RespClient.connect(port);
      p.send('PING');
      expect(await p.waitReplies(1)).toEqual(['PONG']);
      p.end();
    } finally {
      await cluster.stop();
    }
  });

  it('met in the replay by the node promoted after a SIGKILL of the primary: closed there, the node stays primary', { timeout: 180_000 }, async () => {
    const cluster = new Cluster({ nodeArgs: ['--event-timeout-ms', String(EVENT_TIMEOUT_MS)] });
    try {
      await cluster.start();
      const port = cluster.ports.proxy;
      const loaders = await startLoad(port, 'replayed');
      await new Promise((r) => setTimeout(r, 500));
      // The primary is frozen, so the poison is logged by the proxy and forwarded, never run
      // (uncommitted); then it dies.
      const since = { b: mark(cluster.nodes.b), proxy: mark(cluster.proxy) };
      cluster.nodes.a.proc.kill('SIGSTOP');
      const trap = await poison(port, 'DEBUG', 'SEGFAULT');
      const loop = await poison(port, 'DEBUG', 'SLEEP', String(3 * EVENT_TIMEOUT_MS));
      await new Promise((r) => setTimeout(r, 150));
      cluster.nodes.a.proc.kill('SIGKILL');
      await waitForLineAfter(cluster.nodes.b, /PROMOTED to primary/, since.b, 20_000);
      expect(await waitClosed(trap, 15_000), cluster.dump()).toBe(true);
      expect(await waitClosed(loop, 15_000), cluster.dump()).toBe(true);
      expect(trap.replies).toEqual([]);
      expect(loop.replies).toEqual([]);
      const b = lines(cluster.nodes.b, since.b);
      expect(b.some((l) => /FTVM_ERR_GUEST_TRAP/.test(l)), cluster.dump()).toBe(true);
      expect(b.some((l) => /FTVM_ERR_GUEST_TIMEOUT/.test(l)), cluster.dump()).toBe(true);
      // The restarted old primary becomes b's secondary: protected again, b still primary.
      const back = mark(cluster.nodes.b);
      cluster.startNode('a', 'secondary');
      await waitForLineAfter(cluster.nodes.b, / PROTECTED:/, back, 60_000);
      await checkLoad(loaders, port, () => cluster.dump());
      expect(cluster.primaryKey()).toBe('b');
      expect(lines(cluster.nodes.b, since.b).filter((l) => /PROMOTED/.test(l)).length).toBe(1);
      expect(lines(cluster.nodes.b, since.b).filter((l) => /now a secondary|fenced/.test(l)), cluster.dump()).toEqual([]);
      expect(lines(cluster.proxy, since.proxy).filter((l) => /FAILOVER BLOCKED/.test(l)), cluster.dump()).toEqual([]);
    } finally {
      await cluster.stop();
    }
  });
});
