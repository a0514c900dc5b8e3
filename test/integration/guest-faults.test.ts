import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { compileFixtureGuest } from '../helpers/asc.js';
import { LineClient } from '../helpers/lines.js';

// Both vCPUs: inline (the default: a runaway event is stopped by the guest's fuel) and a worker thread (terminated by the watchdog).
describe.each(['inline', 'worker'])('a guest that traps, loops or writes its dirty log (--vcpu %s)', (vcpu) => {
  let srv: Spawned;
  let port: number;

  beforeAll(async () => {
    const wasm = await compileFixtureGuest('faulty');
    srv = spawnFtvm(['run', '--guest', wasm, '--port', '0', '--event-timeout-ms', '500', '--checkpoint-interval-ms', '50', '--vcpu', vcpu]);
    port = Number((await srv.waitFor(/listening on [^:]+:(\d+)/))[1]);
  }, 60_000);
  afterAll(async () => {
    await srv?.stop();
  });

  it('reports a trap as FTVM_ERR_GUEST_TRAP, closes the faulting connection and keeps serving the others', async () => {
    const good = await LineClient.connect(port);
    good.send('a');
    expect(await good.waitLines(1)).toEqual(['1']);
    await new Promise((r) => setTimeout(r, 120)); // let a local checkpoint cover the first request
    const bad = await LineClient.connect(port);
    bad.send('T');
    expect(await bad.waitClosed(5000)).toBe(true);
    await srv.waitFor(/FTVM_ERR_GUEST_TRAP/, 5000);
    good.send('b');
    expect(await good.waitLines(2)).toEqual(['1', '2']);
    const fresh = await LineClient.connect(port);
    fresh.send('c');
    expect(await fresh.waitLines(1)).toEqual(['3']);
    good.end();
    fresh.end();
  });

  it('stops a looping event with FTVM_ERR_GUEST_TIMEOUT within the timeout and keeps serving', async () => {
    const good = await LineClient.connect(port);
    good.send('a');
    const before = Number((await good.waitLines(1))[0]);
    const bad = await LineClient.connect(port);
    const t0 = Date.now();
    bad.send('L');
    expect(await bad.waitClosed(5000)).toBe(true);
    // Detected by the fuel check or the watchdog: the 500 ms timeout plus at most one watchdog period and a restart.
    expect(Date.now() - t0).toBeLessThan(3000);
    await srv.waitFor(/FTVM_ERR_GUEST_TIMEOUT/, 5000);
    good.send('b');
    const lines = await good.waitLines(2);
    expect(Number(lines[1])).toBe(before + 1);
    good.end();
  });

  it('reports a store into the reserved region as FTVM_ERR_GUEST_RESERVED_WRITE', async () => {
    const c = await LineClient.connect(port);
    c.send('W');
    expect(await c.waitClosed(5000)).toBe(true);
    expect(c.lines).toEqual([]);
    await srv.waitFor(/FTVM_ERR_GUEST_RESERVED_WRITE/, 5000);
    const d = await LineClient.connect(port);
    d.send('x');
    expect((await d.waitLines(1)).length).toBe(1);
    c.end();
    d.end();
  });
});
