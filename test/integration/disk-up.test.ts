import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePorts } from '../helpers/cluster.js';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';

describe('ftvm up --disk-size', () => {
  let up: Spawned | undefined;
  afterAll(async () => {
    await up?.stop('SIGTERM');
  });

  it('gives each node its own disk file, and the kv guest persists on the primary\'s', async () => {
    const [client, na, nb] = freePorts(3) as [number, number, number];
    const mb = freePorts(3)[0]!;
    const dir = join(mkdtempSync(join(tmpdir(), 'ftvm-upd-')), 'disks');
    up = spawnFtvm(['up', '--port', String(client), '--node-ports', `${na},${nb}`, '--metrics-port', String(mb), '--disk-size', '2M', '--disk-dir', dir]);
    await up.waitFor(/watch a failover/, 90_000);
    expect(up.out.join('\n')).toContain(join(dir, 'node-a.img'));
    for (const k of ['a', 'b']) expect(statSync(join(dir, `node-${k}.img`)).size).toBe(2 << 20);
    const c = await RespClient.connect(client);
    c.send('SET', 'k', 'v');
    c.send('DISKCHECK');
    expect(await c.waitReplies(2)).toEqual(['OK', 'OK']);
    c.end();
    // The disk's replication is measured: the primary (node a, base port + 1) sent blocks, the
    // secondary (node b, + 2) made them durable (the full sync carries the log's blocks at least).
    const scrape = async (port: number, name: string): Promise<number> => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${name} `));
      return Number(line?.split(' ')[1] ?? NaN);
    };
    expect(await scrape(mb + 1, 'ftvm_disk_blocks_replicated_total')).toBeGreaterThan(0);
    expect(await scrape(mb + 2, 'ftvm_disk_commits_total')).toBeGreaterThan(0);
    await up.stop('SIGTERM');
    // --disk-dir is kept: the files outlive the cluster.
    expect(existsSync(join(dir, 'node-a.img'))).toBe(true);
  }, 120_000);
});
