import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connect, listen } from '@ftvm/protocol';
import { controlRequest } from '@ftvm/precopy';
import { freePorts, useCluster } from '../helpers/cluster.js';
import { mark, spawnFtvm, waitForLineAfter, type Spawned } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';

/**
 * Peers and requests a pair must turn away, between real processes: each refusal carries its
 * code where the operator sees it (the refused process's log, the CLI's exit), and the pair
 * keeps serving, protected.
 */

const procs: Spawned[] = [];
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
});

/** Commands without --token-file use this one (a token is required; --token-file takes precedence). */
const ENV = { FTVM_TOKEN: 'refusals-standalone-token' };

function start(args: string[]): Spawned {
  const p = spawnFtvm(args, ENV);
  procs.push(p);
  return p;
}

/** Runs a CLI command to its end: exit code and stderr. */
async function run(args: string[], timeoutMs = 30_000): Promise<{ code: number | null; err: string }> {
  const p = start(args);
  const t = setTimeout(() => p.proc.kill('SIGKILL'), timeoutMs);
  const code = await p.exited;
  clearTimeout(t);
  return { code, err: p.err.join('\n') };
}

describe('a pair turns away wrong peers and requests, and keeps serving', () => {
  const cluster = useCluster({ guest: 'kv' });

  /** SET/GET through the proxy, and the primary never lost its secondary. */
  async function stillServingProtected(key: string): Promise<void> {
    const c = await RespClient.connect(cluster.ports.proxy);
    c.send('SET', key, 'ok');
    c.send('GET', key);
    expect(await c.waitReplies(2)).toEqual(['OK', 'ok']);
    c.end();
    const a = cluster.nodes.a.err;
    const protectedAt = a.findIndex((l) => / PROTECTED:/.test(l));
    expect(protectedAt).toBeGreaterThanOrEqual(0);
    expect(a.slice(protectedAt).filter((l) => /UNPROTECTED|PROMOTED|fenced/.test(l)), cluster.dump()).toEqual([]);
  }

  it('a proxy with the wrong token is refused by both nodes with FTVM_ERR_AUTH_FAILED; the pair keeps serving', async () => {
    const wrong = join(cluster.dir, 'wrong-token');
    writeFileSync(wrong, 'not-the-cluster-token');
    const [port] = freePorts(1);
    const proxy = start(['proxy', '--port', String(port), '--nodes', `${cluster.url('a')},${cluster.url('b')}`, '--token-file', wrong]);
    await proxy.waitFor(/cannot reach node a .*FTVM_ERR_AUTH_FAILED/, 20_000);
    await proxy.waitFor(/cannot reach node b .*FTVM_ERR_AUTH_FAILED/, 20_000);
    await proxy.stop();
    await stillServingProtected('after-wrong-proxy');
  });

  it('a secondary joining with the wrong token (FTVM_ERR_AUTH_FAILED) or for another guest (FTVM_ERR_GUEST_MISMATCH) is refused; the pair stays protected', async () => {
    const wrong = join(cluster.dir, 'wrong-token');
    writeFileSync(wrong, 'not-the-cluster-token');
    const [p1, p2] = freePorts(2);
    const badToken = start(['secondary', '--listen', `127.0.0.1:${p1}`, '--node-id', 'c', '--join', cluster.url('a'), '--token-file', wrong]);
    await badToken.waitFor(/cannot link to the primary .*FTVM_ERR_AUTH_FAILED/, 30_000);
    const otherGuest = start(['secondary', '--guest', 'http', '--listen', `127.0.0.1:${p2}`, '--node-id', 'd', '--join', cluster.url('a'), '--token-file', cluster.tokenFile]);
    await otherGuest.waitFor(/cannot link to the primary .*FTVM_ERR_GUEST_MISMATCH/, 30_000);
    // Still refused on their retries, and neither ever became anyone's secondary.
    await new Promise((r) => setTimeout(r, 1500));
    for (const s of [badToken, otherGuest]) {
      expect(s.proc.exitCode).toBeNull();
      expect(s.err.filter((l) => /primary connected|full sync|PROMOTED/.test(l))).toEqual([]);
    }
    await Promise.all([badToken.stop(), otherGuest.stop()]);
    await stillServingProtected('after-wrong-secondaries');
  });

  it('links a node does not serve are refused with FTVM_ERR_ROLE; its listen address in use fails a start with FTVM_ERR_LISTEN_FAILED', async () => {
    const token = new Uint8Array(Buffer.from(readFileSync(cluster.tokenFile, 'utf8').trim()));
    const refusal = (link: 'control' | 'migration', role: 'primary' | 'cli') =>
      connect(cluster.url('a'), { token, role, link, nodeId: 'probe', term: 0 }).then(
        (l) => (l.close(), 'accepted'),
        (e: { code?: string }) => e.code,
      );
    expect(await refusal('control', 'primary')).toBe('FTVM_ERR_ROLE');
    expect(await refusal('migration', 'cli')).toBe('FTVM_ERR_ROLE');
    const clash = await run(['secondary', '--listen', `127.0.0.1:${cluster.ports.b}`, '--token-file', cluster.tokenFile]);
    expect(clash.code).toBe(1);
    expect(clash.err).toMatch(/FTVM_ERR_LISTEN_FAILED/);
    await stillServingProtected('after-bad-links');
  });

  it('ftvm migrate refuses a secondary as source, the node itself or no node as target, and a bad request; ftvm snapshot of a node is unsupported', async () => {
    const tf = ['--token-file', cluster.tokenFile];
    const [nobody] = freePorts(1);
    const notPrimary = await run(['migrate', '--from', cluster.url('b'), '--to', `ws://127.0.0.1:${nobody}`, ...tf]);
    expect(notPrimary.code).toBe(1);
    expect(notPrimary.err).toMatch(/migration failed.*FTVM_ERR_MIGRATE_NOT_PRIMARY/);
    const self = await run(['migrate', '--from', cluster.url('a'), '--to', cluster.url('a'), ...tf]);
    expect(self.err).toMatch(/migration failed.*FTVM_ERR_MIGRATE_TARGET/);
    const unreachable = await run(['migrate', '--from', cluster.url('a'), '--to', `ws://127.0.0.1:${nobody}`, ...tf]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.err).toMatch(/migration failed.*FTVM_ERR_MIGRATE_TARGET/);
    const snap = await run(['snapshot', '--from', cluster.url('a'), '--live', '-o', join(cluster.dir, 'x.snap'), ...tf]);
    expect(snap.code).toBe(1);
    expect(snap.err).toMatch(/FTVM_ERR_CONTROL_UNSUPPORTED/);
    // A request the CLI would not send (its flags take only ws:// and wss://), straight on a control link.
    const token = new Uint8Array(Buffer.from(readFileSync(cluster.tokenFile, 'utf8').trim()));
    const bad = await controlRequest(cluster.url('a'), { token }, { op: 'migrate', to: 'http://127.0.0.1:1' } as Parameters<typeof controlRequest>[2]);
    expect(bad.error?.code).toBe('FTVM_ERR_MIGRATE_BAD_REQUEST');
    await stillServingProtected('after-bad-migrations');
  }, 120_000);

  // Last: a failed migration drops the secondary for the target, then goes back to it.
  it('a target that cannot take the full image in time fails the migration with FTVM_ERR_MIGRATE_SYNC; the pair re-protects and serves', async () => {
    const [pt] = freePorts(1);
    const target = start(['secondary', '--listen', `127.0.0.1:${pt}`, '--node-id', 't', '--token-file', cluster.tokenFile]);
    await target.waitFor(/listening on/, 60_000);
    const from = mark(cluster.nodes.a);
    const m = await run(['migrate', '--from', cluster.url('a'), '--to', `ws://127.0.0.1:${pt}`, '--sync-timeout-ms', '1', '--token-file', cluster.tokenFile]);
    expect(m.code).toBe(1);
    expect(m.err).toMatch(/migration failed.*FTVM_ERR_MIGRATE_SYNC/);
    await waitForLineAfter(cluster.nodes.a, / PROTECTED:/, from, 60_000);
    const c = await RespClient.connect(cluster.ports.proxy);
    c.send('SET', 'after-sync-failure', 'ok');
    c.send('GET', 'after-sync-failure');
    expect(await c.waitReplies(2)).toEqual(['OK', 'ok']);
    c.end();
  }, 120_000);
});

describe('a handover the proxy refuses or never completes (a test-played proxy)', () => {
  const cluster = useCluster({ guest: 'kv', proxy: false });

  it('refused: FTVM_ERR_MIGRATE_REFUSED; unanswered: FTVM_ERR_MIGRATE_HANDOVER; the guest runs on at the source', async () => {
    const token = new Uint8Array(Buffer.from(readFileSync(cluster.tokenFile, 'utf8').trim()));
    let deny = true;
    const handovers: boolean[] = [];
    const proxy = await connect(cluster.url('a'), { token, role: 'proxy', link: 'net', nodeId: 'test-proxy', term: 0 });
    proxy.on('message', (m) => {
      if (m.t !== 'handover') return;
      handovers.push(m.ready);
      if (m.ready && deny) proxy.send({ t: 'promote_deny', term: m.term, reason: 'the test proxy says no' });
    });
    const [pt] = freePorts(1);
    const target = start(['secondary', '--listen', `127.0.0.1:${pt}`, '--node-id', 't', '--token-file', cluster.tokenFile]);
    await target.waitFor(/listening on/, 60_000);
    const migrate = () => run(['migrate', '--from', cluster.url('a'), '--to', `ws://127.0.0.1:${pt}`, '--handover-timeout-ms', '2000', '--token-file', cluster.tokenFile], 60_000);
    const refused = await migrate();
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/migration failed.*reason="?the proxy refused the handover: the test proxy says no.*FTVM_ERR_MIGRATE_REFUSED/);
    deny = false;
    const unanswered = await migrate();
    expect(unanswered.code).toBe(1);
    expect(unanswered.err).toMatch(/migration failed.*the proxy did not complete the handover within 2000 ms.*FTVM_ERR_MIGRATE_HANDOVER/);
    // Both asked the proxy to prepare, then to complete.
    expect(handovers.filter((r) => r).length).toBe(2);
    // The source is still the primary and serves (the fake proxy's client connection 1).
    proxy.send({ t: 'open', term: 0, conn: 1 });
    proxy.send({ t: 'input', term: 0, conn: 1, offset: 0 }, Buffer.from('*1\r\n$4\r\nPING\r\n'));
    const out = await new Promise<string>((r) => proxy.on('message', (m, payload) => m.t === 'output' && m.conn === 1 && r(Buffer.from(payload).toString())));
    expect(out).toBe('+PONG\r\n');
    expect(cluster.nodes.a.err.filter((l) => /PROMOTED|fenced|now a secondary/.test(l))).toEqual([]);
    proxy.close();
  }, 180_000);
});

describe('a primary whose secondary runs another guest', () => {
  it('stays unprotected and says why (FTVM_ERR_GUEST_MISMATCH); with no proxy, ftvm migrate from it is refused (FTVM_ERR_MIGRATE_NO_PROXY)', async () => {
    const [pa, pb, nobody] = freePorts(3);
    const sec = start(['secondary', '--guest', 'http', '--listen', `127.0.0.1:${pa}`, '--node-id', 'b']);
    await sec.waitFor(/listening on/, 60_000);
    const prim = start(['primary', '--guest', 'kv', '--listen', `127.0.0.1:${pb}`, '--node-id', 'a', '--secondary', `ws://127.0.0.1:${pa}`]);
    await prim.waitFor(/cannot link to the secondary .*FTVM_ERR_GUEST_MISMATCH/, 60_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect(prim.err.filter((l) => / PROTECTED:|secondary connected/.test(l))).toEqual([]);
    const m = await run(['migrate', '--from', `ws://127.0.0.1:${pb}`, '--to', `ws://127.0.0.1:${nobody}`]);
    expect(m.code).toBe(1);
    expect(m.err).toMatch(/migration failed.*FTVM_ERR_MIGRATE_NO_PROXY/);
  }, 120_000);
});

describe('the CLI side of a control link', () => {
  it('a control listener that drops the link mid-request: ftvm snapshot fails with FTVM_ERR_CONTROL_LINK', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-ctl-'));
    writeFileSync(join(dir, 'token'), 'control-link-test');
    const token = new Uint8Array(Buffer.from('control-link-test'));
    const l = await listen({
      host: '127.0.0.1', port: 0, token,
      identity: () => ({ nodeId: 'dropper', role: 'primary', term: 0, epoch: 0 }),
      onLink: (link) => link.on('message', () => link.close(4000, 'dropped')),
    });
    try {
      const r = await run(['snapshot', '--from', l.url, '--live', '-o', join(dir, 'never-written.snap'), '--token-file', join(dir, 'token')], 20_000);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/FTVM_ERR_CONTROL_LINK/);
    } finally {
      await l.close();
    }
  });
});
