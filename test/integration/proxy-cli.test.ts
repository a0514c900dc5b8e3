/**
 * `ftvm proxy` as a real child process, in front of two in-test nodes speaking the real
 * net link: it prints its listening line, serves a client, fails over when the primary
 * dies without dropping the client, serves /healthz, and refuses bad flags with a code.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { Client, FakeNode, until, type Replica } from '../../packages/proxy/test/fake-node.js';

const dir = mkdtempSync(join(tmpdir(), 'ftvm-proxy-cli-'));
const tokenFile = join(dir, 'token');
writeFileSync(tokenFile, 'cli-test-secret\n', { mode: 0o600 });
const token = new TextEncoder().encode('cli-test-secret');

const cleanups: (() => Promise<unknown>)[] = [];

/** Resolves with the process's exit code once it has exited by itself. */
function exited(s: Spawned): Promise<number | null> {
  if (s.proc.exitCode !== null) return Promise.resolve(s.proc.exitCode);
  return new Promise((r) => s.proc.once('exit', (code) => r(code)));
}
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

describe('ftvm proxy', () => {
  it('serves clients through the active node and keeps them across a failover', async () => {
    const replica: Replica = { committed: undefined };
    const a = await FakeNode.start({ token, role: 'primary', replica });
    cleanups.push(() => a.kill());
    const b = await FakeNode.start({ token, role: 'secondary', replica });
    cleanups.push(() => b.kill());
    const proxy: Spawned = spawnFtvm(['proxy', '--port', '0', '--nodes', `${a.url},${b.url}`, '--token-file', tokenFile, '--failover-timeout-ms', '300', '--metrics-port', '0']);
    cleanups.push(() => proxy.stop());
    const m = await proxy.waitFor(/^ftvm proxy: listening on ([^:]+):(\d+)$/);
    const port = Number(m[2]);
    await proxy.waitFor(/active node is now a \(term 0\)/);
    const c = await Client.connect(port);
    cleanups.push(async () => c.socket.destroy());
    c.send('before\n');
    await until(() => c.data === 'before\n', 'echo through a');
    await until(() => b.got('heartbeat').length > 0 && replica.committed !== undefined, 'b standing by');
    await new Promise((r) => setTimeout(r, 120)); // b reports its committed epoch (heartbeat every 50 ms)
    await a.kill();
    await proxy.waitFor(/active node is now b \(term 1\)/);
    c.send('after\n');
    await until(() => c.data === 'before\nafter\n', 'echo through b');
    expect(c.closed).toBe(false);
    const metrics = await proxy.waitFor(/metrics url=http:\/\/[^:]+:(\d+)\/metrics/);
    const health = await fetch(`http://127.0.0.1:${metrics[1]}/healthz`);
    expect(health.status).toBe(200);
    expect(await proxy.stop('SIGTERM')).toBe(0);
  });

  it('refuses bad flags with a coded error and exit code 2', async () => {
    const noNodes = spawnFtvm(['proxy', '--port', '0']);
    expect(await exited(noNodes)).toBe(2);
    expect(noNodes.err.join('\n')).toMatch(/FTVM_ERR_CLI_MISSING.*--nodes/);
    const badUrl = spawnFtvm(['proxy', '--port', '0', '--nodes', 'http://127.0.0.1:1']);
    expect(await exited(badUrl)).toBe(2);
    expect(badUrl.err.join('\n')).toMatch(/FTVM_ERR_CLI_BAD_VALUE.*--nodes/);
    const badTimeout = spawnFtvm(['proxy', '--nodes', 'ws://127.0.0.1:1', '--failover-timeout-ms', 'soon']);
    expect(await exited(badTimeout)).toBe(2);
    expect(badTimeout.err.join('\n')).toMatch(/FTVM_ERR_CLI_BAD_VALUE.*--failover-timeout-ms/);
    const badPeers = spawnFtvm(['proxy', '--nodes', 'ws://127.0.0.1:1', '--metrics-port', '0', '--status-peers', 'a=ws://127.0.0.1:9101']);
    expect(await exited(badPeers)).toBe(2);
    expect(badPeers.err.join('\n')).toMatch(/FTVM_ERR_CLI_BAD_VALUE.*--status-peers/);
    const peersNoPort = spawnFtvm(['proxy', '--nodes', 'ws://127.0.0.1:1', '--status-peers', 'a=http://127.0.0.1:9101']);
    expect(await exited(peersNoPort)).toBe(2);
    expect(peersNoPort.err.join('\n')).toMatch(/FTVM_ERR_CLI_BAD_VALUE.*--status-peers needs --metrics-port/);
  });
});
