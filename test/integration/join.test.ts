import { afterAll, describe, expect, it } from 'vitest';
import { freePorts } from '../helpers/cluster.js';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { redisCli } from '../helpers/redis.js';
import { haveTool } from '../helpers/tools.js';

const env = { FTVM_TOKEN: 'join-test-token' };

describe.runIf(haveTool('redis-cli'))('a secondary joining a running primary', () => {
  const procs: Spawned[] = [];
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  });

  it('an unprotected primary serving clients becomes protected when a secondary --joins it', async () => {
    const [pa, pb, pp] = freePorts(3) as [number, number, number];
    const primary = spawnFtvm(['primary', '--listen', `127.0.0.1:${pa}`, '--node-id', 'a'], env);
    procs.push(primary);
    await primary.waitFor(/listening on/, 60_000);
    await primary.waitFor(/UNPROTECTED/, 10_000);
    const proxy = spawnFtvm(['proxy', '--port', String(pp), '--nodes', `ws://127.0.0.1:${pa},ws://127.0.0.1:${pb}`], env);
    procs.push(proxy);
    await proxy.waitFor(/listening on/, 30_000);
    expect(await redisCli(pp, 'SET', 'before-join', '1')).toBe('OK');
    const secondary = spawnFtvm(['secondary', '--listen', `127.0.0.1:${pb}`, '--node-id', 'b', '--join', `ws://127.0.0.1:${pa}`], env);
    procs.push(secondary);
    await primary.waitFor(/ PROTECTED:/, 60_000);
    // Service never stopped, and the secondary holds the state: a failover keeps the key.
    expect(await redisCli(pp, 'SET', 'after-join', '2')).toBe('OK');
    primary.proc.kill('SIGKILL');
    await secondary.waitFor(/PROMOTED to primary/, 20_000);
    expect(await redisCli(pp, 'MGET', 'before-join', 'after-join')).toBe('1) "1"\n2) "2"');
  }, 180_000);
});
