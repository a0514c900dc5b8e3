import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { freePorts } from '../helpers/cluster.js';
import { mark, spawnFtvm, waitForLineAfter, type Spawned } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';
import { haveTool } from '../helpers/tools.js';
import { dumpDom } from '../../packages/metrics/test/helpers/chromium.js';

/**
 * Issue 21 item 7: a replicated `ftvm migrate` against the `ftvm up` cluster. The node the
 * migration leaves behind stops asking for promotion once a second, and the proxy's page says
 * where it serves from.
 */
describe('ftvm migrate of the ftvm up cluster', () => {
  const procs: Spawned[] = [];
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop('SIGINT');
  });

  it('moves the guest to a new node; the dropped node backs off; the page names the serving node', async () => {
    const [client, na, nb, nc] = freePorts(4) as [number, number, number, number];
    const mb = freePorts(3)[0]!;
    const up = spawnFtvm(['up', '--port', String(client), '--node-ports', `${na},${nb}`, '--metrics-port', String(mb)]);
    procs.push(up);
    await up.waitFor(/watch a failover/, 90_000);
    await up.waitFor(/ PROTECTED:/, 30_000);
    const tokenFile = /token file\s+(\S+)/.exec(up.out.join('\n'))![1]!;
    const env = { FTVM_TOKEN: readFileSync(tokenFile, 'utf8').trim() };
    const c = spawnFtvm(['secondary', '--listen', `127.0.0.1:${nc}`, '--node-id', 'c', '--peer', `ws://127.0.0.1:${na}`], env);
    procs.push(c);
    await c.waitFor(/listening on/);
    const r = await RespClient.connect(client);
    r.send('SET', 'k', 'before');
    expect(await r.waitReplies(1)).toEqual(['OK']);
    const from = mark(up);
    const m = spawnFtvm(['migrate', '--from', `ws://127.0.0.1:${na}`, '--to', `ws://127.0.0.1:${nc}`], env);
    procs.push(m);
    await m.waitFor(/ftvm migrate: done/, 60_000);
    r.send('GET', 'k');
    expect((await r.waitReplies(2))[1]).toBe('before');
    r.end();
    // Node b lost its primary to the migration: it may ask once, is refused, and then waits
    // longer each time (1, 2, 4 s ...) instead of asking every second for ever.
    await waitForLineAfter(up, /will not promote this node/, from, 15_000);
    await new Promise((res) => setTimeout(res, 8000));
    const lines = up.err.slice(from.err);
    expect(lines.filter((l) => /WARN .*asking the proxy to promote/.test(l)).length).toBeLessThanOrEqual(2);
    // Said once per reason (the proxy still hears a, then c), not once per request.
    const denials = lines.filter((l) => /will not promote this node/.test(l));
    expect(denials.length).toBeGreaterThanOrEqual(1);
    expect(denials.length).toBeLessThanOrEqual(2);
    expect(lines.filter((l) => /\[proxy\] node b asks for promotion/.test(l)).length).toBeLessThanOrEqual(4);
    // The proxy's page: it serves from c, which it has no metrics URL for; it does not say UNPROTECTED.
    if (haveTool('chromium')) {
      const dom = await dumpDom(`http://127.0.0.1:${mb}/`, { virtualTimeBudgetMs: 1500 });
      expect(/id="reason"[^>]*>([^<]*)</.exec(dom)?.[1]).toMatch(/serving from c .*not charted/);
      expect(/id="protection"[^>]*>([^<]*)</.exec(dom)?.[1]).not.toBe('UNPROTECTED');
    }
  }, 150_000);
});
