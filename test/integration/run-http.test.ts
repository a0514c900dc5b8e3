import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { haveTool } from '../helpers/tools.js';

const run = promisify(execFile);

describe.runIf(haveTool('wrk'))('ftvm run --guest http serves wrk', () => {
  let srv: Spawned;
  let port: number;
  beforeAll(async () => {
    srv = spawnFtvm(['run', '--guest', 'http', '--port', '0']);
    port = Number((await srv.waitFor(/listening on [^:]+:(\d+)/))[1]);
  });
  afterAll(async () => {
    await srv?.stop();
  });

  it('answers GET / and the counter over keep-alive', async () => {
    const r1 = await fetch(`http://127.0.0.1:${port}/counter`, { method: 'POST' });
    const v1 = Number(await r1.text());
    const r2 = await fetch(`http://127.0.0.1:${port}/counter`, { method: 'POST' });
    expect(Number(await r2.text())).toBe(v1 + 1);
    const put = await fetch(`http://127.0.0.1:${port}/obj/a`, { method: 'PUT', body: 'hello' });
    expect(put.status).toBeLessThan(300);
    expect(await (await fetch(`http://127.0.0.1:${port}/obj/a`)).text()).toBe('hello');
    expect((await fetch(`http://127.0.0.1:${port}/obj/none`)).status).toBe(404);
  });

  it('runs wrk for 2 s with no socket errors and no non-2xx replies', async () => {
    const { stdout } = await run('wrk', ['-t', '2', '-c', '16', '-d', '2s', `http://127.0.0.1:${port}/`], { timeout: 30_000 });
    expect(stdout).not.toMatch(/Socket errors/);
    expect(stdout).not.toMatch(/Non-2xx/);
    const reqs = Number(/(\d+) requests in/.exec(stdout)?.[1]);
    expect(reqs).toBeGreaterThan(100);
  });
});
