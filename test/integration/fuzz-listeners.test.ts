import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { connect } from '@ftvm/protocol';
import { fuzzListener } from '../../packages/protocol/test/fuzz-helpers.js';
import { Cluster, freePorts } from '../helpers/cluster.js';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';
import { parsePromText } from '../../packages/metrics/test/helpers/prom-text.js';

/** Frames per listener and link kind; FTVM_FUZZ_FRAMES=100000 for the long run (see docs/testing.md). */
const N = Number(process.env.FTVM_FUZZ_FRAMES ?? 2000);
/** Live frames go one connection each: allow ~20 ms a frame on a loaded machine. */
const TIMEOUT_MS = Math.max(600_000, N * 20);

describe('fuzzing the node listeners of a running cluster', () => {
  // Metrics on: the primary's ftvm_protected and committed epoch say whether replication survived.
  const cluster = new Cluster({ metrics: true });
  let token: Uint8Array;
  beforeAll(async () => {
    await cluster.start();
    token = new Uint8Array(Buffer.from(readFileSync(cluster.tokenFile, 'utf8').trim()));
  }, 120_000);
  afterAll(async () => {
    await cluster.stop();
  });

  // In the serving cluster: handshakes, and the primary's replication listener (a second
  // secondary is refused as busy). A replication link from a "primary" replaces a secondary's
  // current one, and a live proxy link turns other net links away (FTVM_ERR_BUSY), so those
  // link kinds are fuzzed on standalone nodes below, where every frame reaches the parser.
  for (const target of ['a', 'b'] as const) {
    for (const link of target === 'a' ? ([undefined, 'replication'] as const) : ([undefined] as const)) {
      it(`node ${target} (${target === 'a' ? 'primary' : 'secondary'}): ${N} bad frames ${link ? `on an authenticated ${link} link` : 'in the handshake'} each end in a coded close; the node keeps serving`, async () => {
        const report = await fuzzListener(cluster.url(target), N, {
          token,
          link,
          role: link === 'net' ? 'proxy' : target === 'a' ? 'secondary' : 'primary',
          seed: 7 + N,
          concurrency: 8,
          // The node's own limits (replication frames carry device state in their header).
          limits: { maxHeaderBytes: 32 << 20, maxPayloadBytes: 64 << 20 },
          // A new link of a kind the node holds one of replaces it (4000) or is refused as busy (4010).
          alsoAccept: [4000, 4010],
          timeoutMs: 10_000,
        });
        expect(report.failures.slice(0, 3).map((f) => f.slice(0, 300))).toEqual([]);
        expect(report.sent).toBe(N);
        for (const code of Object.keys(report.closes).map(Number)) expect(code === 1009 || (code >= 4000 && code < 5000)).toBe(true);
        expect(cluster.nodes[target].proc.exitCode).toBeNull();
        // Still a working listener: a well-formed handshake is accepted (a refusal of any kind fails).
        const probe = await connect(cluster.url(target), { token, role: 'cli', link: 'control', nodeId: 'probe', term: 0 }).then(
          (l) => (l.close(4000, 'done'), 'accepted'),
          (e: { code?: string; message?: string }) => `refused: ${e.code} ${e.message}`,
        );
        expect(probe).toBe('accepted');
      }, TIMEOUT_MS);
    }
  }

  for (const [role, link] of [['secondary', 'replication'], ['secondary', 'net'], ['primary', 'net']] as const) {
  it(`a standalone ${role}: ${N} bad frames on authenticated ${link} links each end in a coded close`, async () => {
    const [port] = freePorts(1);
    const node: Spawned = spawnFtvm([role, '--listen', `127.0.0.1:${port}`, '--token-file', cluster.tokenFile]);
    try {
      await node.waitFor(/listening on/, 60_000);
      const report = await fuzzListener(`ws://127.0.0.1:${port}`, N, {
        token,
        link,
        role: link === 'net' ? 'proxy' : 'primary',
        seed: 11 + N,
        concurrency: 8,
        timeoutMs: 10_000,
        limits: { maxHeaderBytes: 32 << 20, maxPayloadBytes: 64 << 20 },
        alsoAccept: [4000, 4010],
      });
      expect(report.failures.slice(0, 3).map((f) => f.slice(0, 300))).toEqual([]);
      expect(report.sent).toBe(N);
      expect(node.proc.exitCode).toBeNull();
    } finally {
      await node.stop();
    }
  }, TIMEOUT_MS);
  }

  it('the cluster still serves clients and is still protected after the fuzzing', async () => {
    // The secondary was never lost: the primary logged PROTECTED once and UNPROTECTED never since.
    const a = cluster.nodes.a;
    const firstProtected = a.err.findIndex((l) => / PROTECTED:/.test(l));
    expect(firstProtected).toBeGreaterThanOrEqual(0);
    expect(a.err.slice(firstProtected).filter((l) => /UNPROTECTED|PROMOTED|fenced/.test(l)), cluster.dump()).toEqual([]);
    const scrape = async () => parsePromText(await (await fetch(`${cluster.metricsUrl('a')}/metrics`)).text());
    const before = await scrape();
    expect(before.value('ftvm_protected')).toBe(1);
    const c = await RespClient.connect(cluster.ports.proxy);
    c.send('SET', 'after-fuzz', 'ok');
    c.send('GET', 'after-fuzz');
    expect(await c.waitReplies(2)).toEqual(['OK', 'ok']);
    c.end();
    // And the secondary still acks: the write's epoch commits, and the primary is still protected.
    const epoch0 = before.value('ftvm_committed_epoch') ?? NaN;
    let after = await scrape();
    for (const end = Date.now() + 10_000; !((after.value('ftvm_committed_epoch') ?? 0) > epoch0) && Date.now() < end; after = await scrape()) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(after.value('ftvm_committed_epoch')).toBeGreaterThan(epoch0);
    expect(after.value('ftvm_protected')).toBe(1);
  });
});
