import { afterAll, describe, expect, it } from 'vitest';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { freePorts } from '../helpers/cluster.js';
import { progressLine } from '../../packages/cli/src/commands/precopy-common.js';

const env = { FTVM_TOKEN: 'migrate-report-test' };

/** Issue 21 item 12: what migrate and receive say about one migration agrees, and small sizes read. */
describe('what ftvm migrate and ftvm receive report', () => {
  const procs: Spawned[] = [];
  afterAll(async () => {
    for (const p of procs) await p.stop();
  });

  it('progress shows a small transfer in KiB or bytes, not 0.0 MiB', () => {
    const line = progressLine({ phase: 'round', round: 1, pagesLeft: 2, roundPages: 3, dirtyPagesPerSec: 0, throttleMs: 0, wireBytes: 3 * 1024 + 512, etaMs: 10 } as Parameters<typeof progressLine>[0]);
    expect(line).toContain('sent 3.5 KiB');
    expect(progressLine({ phase: 'round', round: 0, pagesLeft: 0, roundPages: 0, dirtyPagesPerSec: 0, throttleMs: 0, wireBytes: 200, etaMs: 0 } as Parameters<typeof progressLine>[0])).toContain('sent 200 B');
  });

  it('migrate and receive count the same rounds', async () => {
    const [port, ctl, mig, tport] = freePorts(4);
    const src = spawnFtvm(['run', '--guest', 'kv', '--port', String(port), '--control', `127.0.0.1:${ctl}`], env);
    procs.push(src);
    await src.waitFor(/ftvm control: listening on/);
    const dst = spawnFtvm(['receive', '--listen', `127.0.0.1:${mig}`, '--port', String(tport), '--guest', 'kv'], env);
    procs.push(dst);
    await dst.waitFor(/migration listener on/);
    const m = spawnFtvm(['migrate', '--from', `ws://127.0.0.1:${ctl}`, '--to', `ws://127.0.0.1:${mig}`], env);
    procs.push(m);
    const done = await m.waitFor(/ftvm migrate: done in .* (\d+ live rounds? \+ stop-and-copy),/, 60_000);
    const arrived = await dst.waitFor(/guest arrived: serving kv .*rounds=([^=]+ stop-and-copy)/, 30_000);
    expect(arrived[1]).toBe(done[1]);
    expect(await m.exited).toBe(0);
  }, 90_000);
});
