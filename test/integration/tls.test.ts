import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';

import { connect } from '@ftvm/protocol';
import { makeTestCerts, type TestCerts } from '../../packages/protocol/test/certs.js';
import { freePorts } from '../helpers/cluster.js';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';
import { haveTool } from '../helpers/tools.js';

/** A replicated kv cluster whose every link is wss:// with mutual TLS (certificates made with openssl here). */
describe.runIf(haveTool('openssl'))('a cluster on TLS links', () => {
  let certs!: TestCerts;
  const [pa, pb, pp] = freePorts(3) as [number, number, number];
  const env = { FTVM_TOKEN: 'tls-cluster-token' };
  const procs: Spawned[] = [];
  beforeAll(async () => {
    certs = makeTestCerts();
    const tls = ['--tls-cert', certs.serverCert, '--tls-key', certs.serverKey, '--tls-ca', certs.ca];
    const b = spawnFtvm(['secondary', '--listen', `127.0.0.1:${pb}`, '--node-id', 'b', '--peer', `wss://127.0.0.1:${pa}`, ...tls], env);
    procs.push(b);
    await b.waitFor(/listening on/, 60_000);
    const a = spawnFtvm(['primary', '--listen', `127.0.0.1:${pa}`, '--node-id', 'a', '--secondary', `wss://127.0.0.1:${pb}`, ...tls], env);
    procs.push(a);
    await a.waitFor(/ PROTECTED:/, 60_000);
    const proxy = spawnFtvm(['proxy', '--port', String(pp), '--nodes', `wss://127.0.0.1:${pa},wss://127.0.0.1:${pb}`, '--tls-cert', certs.clientCert, '--tls-key', certs.clientKey, '--tls-ca', certs.ca], env);
    procs.push(proxy);
    await proxy.waitFor(/listening on/, 30_000);
    await a.waitFor(/proxy connected/, 30_000);
  }, 150_000);
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  });

  it('replicates and serves clients over wss://', { timeout: 30_000 }, async () => {
    const c = await RespClient.connect(pp);
    c.send('SET', 'over', 'tls');
    c.send('GET', 'over');
    expect(await c.waitReplies(2)).toEqual(['OK', 'tls']);
    c.end();
  });

  it('refuses a peer with the token but no certificate from the CA, and a plain ws:// one', { timeout: 30_000 }, async () => {
    const token = new TextEncoder().encode(env.FTVM_TOKEN);
    const hello = { token, role: 'proxy' as const, link: 'net' as const, nodeId: 'intruder', term: 99, timeoutMs: 3000 };
    const code = (p: Promise<unknown>) => p.then(() => 'no error', (e: { code?: string }) => e.code);
    const rogue = { cert: readFileSync(certs.rogueCert), key: readFileSync(certs.rogueKey), ca: readFileSync(certs.ca) };
    expect(await code(connect(`wss://127.0.0.1:${pa}`, { ...hello, tls: rogue }))).toMatch(/FTVM_ERR_(CONNECT_FAILED|LINK_CLOSED)/);
    expect(await code(connect(`wss://127.0.0.1:${pa}`, { ...hello, tls: { ca: readFileSync(certs.ca) } }))).toMatch(/FTVM_ERR_(CONNECT_FAILED|LINK_CLOSED)/);
    expect(await code(connect(`ws://127.0.0.1:${pa}`, hello))).toMatch(/FTVM_ERR_(CONNECT_FAILED|LINK_CLOSED|HANDSHAKE_TIMEOUT)/);
    // The cluster serves on.
    const c = await RespClient.connect(pp);
    c.send('GET', 'over');
    expect(await c.waitReplies(1)).toEqual(['tls']);
    c.end();
  });

  it('a role given half the TLS flags does not start (TLS_CONFIG)', { timeout: 30_000 }, async () => {
    const p = spawnFtvm(['secondary', '--listen', '127.0.0.1:0', '--tls-cert', certs.serverCert], env);
    expect(await p.exited).toBe(1);
    expect(p.err.join('\n')).toMatch(/FTVM_ERR_TLS_CONFIG/);
  });
});
