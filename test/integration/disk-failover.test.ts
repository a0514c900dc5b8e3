import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts } from '../helpers/cluster.js';
import { mark, spawnFtvm, waitForLineAfter, type Spawned } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';

const ROUNDS = Number(process.env.FTVM_DISK_FAILOVER_ROUNDS ?? (process.env.CI ? 20 : 4));
/** Requests in flight on the client's connection. */
const WINDOW = 8;

/**
 * Two nodes and a proxy as real processes, each node with its own disk file (the helper
 * Cluster gives both nodes the same arguments; a disk must never be shared).
 */
class DiskCluster {
  nodes: Partial<Record<'a' | 'b', Spawned>> = {};
  proxy!: Spawned;
  readonly dir = mkdtempSync(join(tmpdir(), 'ftvm-diskft-'));
  readonly token = join(this.dir, 'token');
  readonly ports: { a: number; b: number; proxy: number };
  private all: Spawned[] = [];

  constructor() {
    const [a, b, proxy] = freePorts(3) as [number, number, number];
    this.ports = { a, b, proxy };
    writeFileSync(this.token, randomBytes(16).toString('hex'));
  }

  url(k: 'a' | 'b'): string {
    return `ws://127.0.0.1:${this.ports[k]}`;
  }

  startNode(k: 'a' | 'b', role: 'primary' | 'secondary'): Spawned {
    const other = k === 'a' ? 'b' : 'a';
    const args = [role, '--listen', `127.0.0.1:${this.ports[k]}`, '--node-id', k, '--guest', 'kv', '--token-file', this.token,
      '--disk', join(this.dir, `${k}.img`), '--disk-size', '4M', '--detection-timeout-ms', '600',
      ...(role === 'primary' ? ['--secondary', this.url(other)] : ['--peer', this.url(other)])];
    const s = spawnFtvm(args);
    this.nodes[k] = s;
    this.all.push(s);
    return s;
  }

  async start(): Promise<void> {
    await this.startNode('b', 'secondary').waitFor(/listening on/, 60_000);
    const a = this.startNode('a', 'primary');
    await a.waitFor(/listening on/, 60_000);
    await a.waitFor(/ PROTECTED:/, 30_000);
    this.proxy = spawnFtvm(['proxy', '--port', String(this.ports.proxy), '--nodes', `${this.url('a')},${this.url('b')}`, '--token-file', this.token]);
    this.all.push(this.proxy);
    await this.proxy.waitFor(/listening on/, 30_000);
  }

  primaryKey(): 'a' | 'b' {
    for (const k of ['a', 'b'] as const) {
      const s = this.nodes[k];
      const last = s && [...s.out].reverse().find((l) => /role (primary|secondary)/.test(l));
      if (s && s.proc.exitCode === null && s.proc.signalCode === null && /role primary/.test(last ?? '')) return k;
    }
    throw new Error('no live primary');
  }

  dump(): string {
    return Object.entries(this.nodes)
      .map(([k, s]) => `--- node ${k}\n${s!.err.slice(-30).join('\n')}`)
      .concat(`--- proxy\n${this.proxy?.err.slice(-15).join('\n')}`)
      .join('\n');
  }

  async stop(): Promise<void> {
    await Promise.all(this.all.map((s) => s.stop('SIGKILL')));
  }
}

describe('failover of a kv guest that writes its disk and memory in the same request', () => {
  const cluster = new DiskCluster();
  beforeAll(async () => {
    await cluster.start();
  }, 120_000);
  afterAll(async () => {
    await cluster.stop();
  });

  it(`after a SIGKILL of the primary at a random point, DISKCHECK on the promoted node is OK and every acknowledged SET is there (${ROUNDS} kill points)`, async () => {
    const acked = new Map<string, string>();
    for (let round = 0; round < ROUNDS; round++) {
      const dead = cluster.primaryKey();
      const survivor = dead === 'a' ? 'b' : 'a';
      const from = mark(cluster.nodes[survivor]!);
      const c = await RespClient.connect(cluster.ports.proxy);
      // Writes flow until the kill, at a random point 20-400 ms in.
      const killAfterMs = 20 + Math.floor(Math.random() * 380);
      const t0 = Date.now();
      let sent = 0;
      const pending: Array<[string, string]> = [];
      let killedAt = 0;
      const kill = setTimeout(() => {
        cluster.nodes[dead]!.proc.kill('SIGKILL');
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
      await waitForLineAfter(cluster.nodes[survivor]!, /PROMOTED to primary/, from, 20_000);
      // Every request sent gets its reply (the proxy replays the lost epoch's input to the promoted node).
      const replies = await c.waitReplies(sent, 20_000);
      expect(replies.length, cluster.dump()).toBe(sent);
      replies.forEach((r, i) => {
        expect(r).toBe('OK');
        acked.set(pending[i]![0], pending[i]![1]);
      });
      c.send('DISKCHECK');
      expect((await c.waitReplies(sent + 1))[sent], `round ${round}\n${cluster.dump()}`).toBe('OK');
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
      await waitForLineAfter(cluster.nodes[survivor]!, / PROTECTED:/, from, 60_000);
    }
  }, 600_000);
});
