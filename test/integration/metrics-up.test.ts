import { afterAll, describe, expect, it } from 'vitest';
import { freePorts } from '../helpers/cluster.js';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { parsePromText } from '../../packages/metrics/test/helpers/prom-text.js';
import { readFileSync } from 'node:fs';
import { NODE_FLAGS } from '../../packages/cli/src/node-flags.js';

/** Must-show 4: what `ftvm up` prints about metrics and the status page is true. */

describe('ftvm up prints where the metrics and the status page are', () => {
  let up: Spawned | undefined;
  afterAll(async () => {
    await up?.stop('SIGTERM');
  });

  it('every printed metrics URL answers with that role, and the status page URL serves the page', async () => {
    const [client, na, nb] = freePorts(3) as [number, number, number];
    // Three consecutive ports for the metrics: take a fresh block.
    const mb = freePorts(3)[0]!;
    up = spawnFtvm(['up', '--port', String(client), '--node-ports', `${na},${nb}`, '--metrics-port', String(mb)]);
    await up.waitFor(/watch a failover/, 90_000);
    const text = up.out.join('\n');
    const metricsOf = (label: RegExp): string => {
      const line = up!.out.find((l) => label.test(l));
      const m = line && /metrics (http:\/\/\S+\/metrics)/.exec(line);
      if (!m) throw new Error(`no metrics URL for ${label} in:\n${text}`);
      return m[1]!;
    };
    const expected: Array<[RegExp, string, number]> = [
      [/^\s+proxy\s/, 'proxy', mb],
      [/node a \(primary\)/, 'primary', mb + 1],
      [/node b \(secondary\)/, 'secondary', mb + 2],
    ];
    for (const [label, role, port] of expected) {
      const url = metricsOf(label);
      expect(url).toBe(`http://127.0.0.1:${port}/metrics`);
      // The roles may still be settling (secondary syncing): poll for the role gauge.
      const end = Date.now() + 20_000;
      for (;;) {
        const s = parsePromText(await (await fetch(url)).text());
        if (s.value('ftvm_role', { role }) === 1) break;
        if (Date.now() > end) throw new Error(`${url} does not report role ${role}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const page = /status page\s+(http:\/\/\S+\/)/.exec(text);
    expect(page?.[1]).toBe(`http://127.0.0.1:${mb}/`);
    const res = await fetch(page![1]!);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    expect(await res.text()).toContain('<title>ftvm status</title>');
    const status = (await (await fetch(`${page![1]!}api/status`)).json()) as { current: { role: string } };
    expect(status.current.role).toBe('proxy');
    // The proxy's page charts both nodes (ftvm up passes them as --status-peers): protection, epochs
    // and pauses live on the nodes, so the one page printed must reach them.
    const end = Date.now() + 20_000;
    let roles: Record<string, string | undefined> = {};
    for (;;) {
      const cluster = (await (await fetch(`${page![1]!}api/cluster`)).json()) as { peers: Array<{ name: string; ok: boolean; current: { role: string } | null }> };
      roles = Object.fromEntries(cluster.peers.map((p) => [p.name, p.ok ? p.current?.role : undefined]));
      if (roles.a === 'primary' && roles.b === 'secondary') break;
      if (Date.now() > end) throw new Error(`the status page's cluster view does not show both nodes: ${JSON.stringify(roles)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(Object.keys(roles).sort()).toEqual(['a', 'b']);
    // Each role runs with the V8 flags of the ftvm bin (packages/cli/src/node-flags.ts).
    for (const label of [/^\s+proxy\s/, /node a \(primary\)/, /node b \(secondary\)/]) {
      const pid = /pid (\d+)/.exec(up.out.find((l) => label.test(l)) ?? '')?.[1];
      expect(pid, `pid of ${label}`).toBeDefined();
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      expect(argv.slice(1, 1 + NODE_FLAGS.length)).toEqual([...NODE_FLAGS]);
    }
  }, 120_000);
});
