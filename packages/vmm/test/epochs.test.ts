import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PAGE_BYTES, RESERVED_PAGES } from '@ftvm/guest-abi';
import { GuestImage, Vmm, checkpointDigest, prepareGuest, readGuest } from '@ftvm/vmm';

const resp = (...args: string[]) => Buffer.from(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);

describe('epochs of the kv guest', () => {
  let vmm: Vmm;
  beforeAll(async () => {
    const { name, wasm } = readGuest('kv');
    vmm = await Vmm.boot(prepareGuest(name, wasm));
  });
  afterAll(async () => {
    await vmm?.stop();
  });

  it('an image built from a full capture plus every epoch\'s dirty pages equals the live memory', async () => {
    const img = new GuestImage();
    img.apply(await vmm.collect(true));
    vmm.open(1);
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 50 * (round + 1); i++) vmm.input(1, resp('SET', `k${round}:${i}`, 'v'.repeat((i * 37) % 3000)));
      vmm.input(1, resp('DEL', `k${round - 1}:3`));
      img.apply(await vmm.collect());
    }
    const live = await vmm.capture();
    expect(img.memBytes).toBe(live.memBytes);
    expect(checkpointDigest({ ...live, memory: img.memory() })).toBe(checkpointDigest(live));
  });

  it('reports only a handful of dirty pages for one small write, and tags output with its epoch', async () => {
    await vmm.collect();
    const outs: number[] = [];
    vmm.on('output', (it) => outs.push(it.epoch));
    const epoch = vmm.epoch;
    vmm.input(1, resp('SET', 'small', 'x'));
    const c = await vmm.collect();
    expect(c.epoch).toBe(epoch);
    expect(outs).toEqual([epoch]);
    expect(c.pages.length).toBeGreaterThan(0);
    expect(c.pages.length).toBeLessThan(16);
    expect(Math.min(...c.pages)).toBeGreaterThanOrEqual(RESERVED_PAGES);
    expect(c.data.length).toBe(c.pages.length * PAGE_BYTES);
    expect(c.devices.conns.find((s) => s.conn === 1)?.outProduced).toBeGreaterThan(0);
  });

  it('holds events while paused and runs them on resume', async () => {
    await vmm.pause();
    let got = '';
    const on = (it: { data: Uint8Array }) => (got += Buffer.from(it.data).toString());
    vmm.on('output', on);
    vmm.input(1, resp('PING'));
    await new Promise((r) => setTimeout(r, 50));
    expect(got).toBe('');
    const c = await vmm.collectDirty();
    expect(c.pages.length).toBe(0);
    vmm.resume();
    await new Promise((r) => setTimeout(r, 50));
    expect(got).toBe('+PONG\r\n');
    vmm.off('output', on);
  });
});

describe('syncEachOutput (Kemari-style I/O synchronisation)', () => {
  let vmm: Vmm;
  beforeAll(async () => {
    const { name, wasm } = readGuest('kv');
    vmm = await Vmm.boot(prepareGuest(name, wasm), { syncEachOutput: true });
  });
  afterAll(async () => {
    await vmm?.stop();
  });

  it('holds the vCPU right after an event that produced output; the events behind it wait for resume, each in its own epoch', async () => {
    vmm.open(1);
    vmm.open(2);
    const got: Array<{ conn: number; epoch: number; text: string }> = [];
    vmm.on('output', (it) => got.push({ conn: it.conn, epoch: it.epoch, text: Buffer.from(it.data).toString() }));
    // Two requests in one batch (one postMessage): the second must not run before a checkpoint covers the first reply.
    vmm.input(1, resp('SET', 'a', '1'));
    vmm.input(2, resp('INCR', 'n'));
    await new Promise((r) => setTimeout(r, 100));
    expect(got.map((g) => g.text)).toEqual(['+OK\r\n']);
    expect(vmm.heldForOutput).toBe(true);
    const c1 = await vmm.collect(false, false);
    expect(c1.epoch).toBe(got[0]!.epoch);
    expect(c1.devices.conns.find((s) => s.conn === 2)?.inConsumed).toBe(0);
    vmm.resume();
    expect(vmm.heldForOutput).toBe(false);
    await new Promise((r) => setTimeout(r, 100));
    expect(got.map((g) => g.text)).toEqual(['+OK\r\n', ':1\r\n']);
    expect(got[1]!.epoch).toBe(c1.epoch + 1);
    expect(vmm.heldForOutput).toBe(true);
    vmm.resume();
  });
});
