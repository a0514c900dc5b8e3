import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PAGE_BYTES, RESERVED_PAGES } from '@ftvm/guest-abi';
import { GuestImage, Vmm, checkpointDigest, prepareGuest, readGuest } from '@ftvm/vmm';
import { vmmLine } from '../../../test/helpers/vmm-line.js';

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

  it('an image adopted from a checkpoint (no copy) applies epochs, and grows into a buffer of its own', async () => {
    const base = await vmm.capture();
    const shared = new Uint8Array(new SharedArrayBuffer(base.memBytes));
    shared.set(base.memory);
    const img = GuestImage.adopt({ ...base, memory: shared });
    expect(img.memory().buffer).toBe(shared.buffer);
    vmm.open(7);
    for (let i = 0; i < 200; i++) vmm.input(7, resp('SET', `adopt:${i}`, 'w'.repeat(2000)));
    img.apply(await vmm.collect());
    const live = await vmm.capture();
    expect(checkpointDigest({ ...live, memory: img.memory() })).toBe(checkpointDigest(live));
    // Past the adopted bytes: the image moves to its own buffer, with the same content.
    const grown = { epoch: live.epoch + 1, memBytes: live.memBytes + 65536, pages: Uint32Array.of(live.memBytes / 4096 + 3), data: new Uint8Array(4096).fill(7), globals: live.globals, devices: live.devices };
    img.apply(grown);
    expect(img.memory().buffer).not.toBe(shared.buffer);
    expect(Buffer.compare(img.memory().subarray(0, live.memBytes), live.memory)).toBe(0);
    expect(img.memory()[live.memBytes + 3 * 4096]).toBe(7);
    expect(img.memory()[live.memBytes]).toBe(0);
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

  it('dirties a few pages for a request on each of 50 connections, not a page per connection', async () => {
    // The guests parse a delivery in place (InputBuffer.take): a connection's own input buffer
    // is written only for a request split across deliveries. Before, each of these epochs
    // carried 50+ pages, one per connection's buffer.
    const ids = Array.from({ length: 50 }, (_, i) => 100 + i);
    for (const id of ids) vmm.open(id);
    for (const id of ids) vmm.input(id, resp('SET', `conn:${id}`, 'v'));
    await vmm.collect();
    for (const round of [1, 2, 3]) {
      for (const id of ids) vmm.input(id, resp('GET', `conn:${id}`));
      const c = await vmm.collect();
      expect(c.pages.length, `round ${round}`).toBeLessThan(16);
    }
    // A request split across deliveries still works (its first part waits in the connection's buffer).
    const outs: string[] = [];
    const on = (it: { conn: number; data: Uint8Array }) => it.conn === 100 && outs.push(Buffer.from(it.data).toString());
    vmm.on('output', on);
    const split = resp('GET', 'conn:100');
    vmm.input(100, split.subarray(0, 9));
    vmm.input(100, split.subarray(9));
    await vmm.collect();
    vmm.off('output', on);
    expect(outs.join('')).toBe('$1\r\nv\r\n');
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

describe('memory.grow (the dirtier guest)', () => {
  let vmm: Vmm;
  beforeAll(async () => {
    const { name, wasm } = readGuest('dirtier');
    vmm = await Vmm.boot(prepareGuest(name, wasm));
  });
  afterAll(async () => {
    await vmm?.stop();
  });

  const line = (conn: number, text: string): Promise<string> => vmmLine(vmm, conn, text);

  it('does not count grown pages as dirty: the epoch carries what was written, and an image that grows zero-filled still equals live memory', async () => {
    const img = new GuestImage();
    img.apply(await vmm.collect(true));
    vmm.open(1);
    // 16 MiB of working set: memory.grow by at least 4,096 pages, none of them written.
    expect(await line(1, 'SET ws_pages=4096 rate=0')).toBe('OK');
    const grew = await vmm.collect();
    expect(grew.memBytes - img.memBytes).toBeGreaterThanOrEqual(4096 * PAGE_BYTES);
    expect(grew.pages.length).toBeLessThan(64);
    img.apply(grew);
    let live = await vmm.capture();
    expect(img.memBytes).toBe(live.memBytes);
    expect(Buffer.compare(img.memory(), live.memory)).toBe(0);
    // Writing the grown pages dirties them like any others.
    expect(await line(1, 'FILL')).toBe('OK pages=4096');
    const filled = await vmm.collect();
    expect(filled.pages.length).toBeGreaterThanOrEqual(4096);
    img.apply(filled);
    live = await vmm.capture();
    expect(Buffer.compare(img.memory(), live.memory)).toBe(0);
    expect(checkpointDigest({ ...live, memory: img.memory() })).toBe(checkpointDigest(live));
  });
});
