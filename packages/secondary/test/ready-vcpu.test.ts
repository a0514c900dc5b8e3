import { afterEach, describe, expect, it } from 'vitest';
import { PAGE_BYTES, RESERVED_PAGES } from '@ftvm/guest-abi';
import { ImageDigest, PageEncoder, connect, listen, packConns, packOutput, type Link, type Listener } from '@ftvm/protocol';
import { SecondaryRuntime } from '@ftvm/secondary';
import { Vmm, prepareGuest, readGuest, type Collected, type PreparedGuest } from '@ftvm/vmm';
import { vmmLine } from '../../../test/helpers/vmm-line.js';

const token = new Uint8Array(Buffer.from('test-token'));
const { name, wasm } = readGuest('dirtier');
const guest: PreparedGuest = prepareGuest(name, wasm);

/** Sends a collected epoch of the dirtier as the primary does (page frames of 64; `frames`: cut off after that many). */
function sendEpoch(link: Link, digest: ImageDigest, c: Collected, full: boolean, frames?: number): void {
  for (let i = 0; i < c.pages.length; i++) digest.update(c.pages[i]!, c.data, i * PAGE_BYTES);
  const devices = { conns: packConns(c.devices.conns), maxConnId: c.devices.maxConnId, timerDeadlineNs: c.devices.timerDeadlineNs, clock: c.devices.clock, output: packOutput([]), confirmed: c.epoch };
  link.send({ t: 'ckpt_begin', term: 0, epoch: c.epoch, memBytes: c.memBytes, pageCount: c.pages.length, globals: c.globals, devices, full });
  const enc = new PageEncoder();
  let sent = 0;
  for (let i = 0; i < c.pages.length; i += 64) {
    if (sent === frames) return;
    const n = Math.min(64, c.pages.length - i);
    const b = enc.encodeBatch(c.pages.subarray(i, i + n), c.data.subarray(i * PAGE_BYTES, (i + n) * PAGE_BYTES));
    link.send({ t: 'ckpt_pages', term: 0, epoch: c.epoch, seq: sent++, count: n }, b.payload);
  }
  link.send({ t: 'ckpt_end', term: 0, epoch: c.epoch, pageCount: c.pages.length, digest: digest.value(), wireBytes: 0, rawBytes: c.data.length });
}

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('the secondary keeps its committed image in a ready vCPU', () => {
  const cleanup: Array<() => unknown> = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });

  /** A secondary runtime with a ready vCPU behind a real listener, and a replication link to it posing as the primary. */
  async function startSecondary(prestart: () => Promise<Vmm>): Promise<{ secondary: SecondaryRuntime; link: Link; acks: number[] }> {
    const secondary = new SecondaryRuntime({ term: 0, prestart });
    cleanup.push(() => secondary.stop());
    const listener: Listener = await listen({ port: 0, token, identity: () => ({ nodeId: 's', role: 'secondary', term: 0, epoch: 0 }), onLink: (l) => secondary.attachPrimary(l) });
    cleanup.push(() => listener.close());
    const link = await connect(listener.url, { token, role: 'primary', link: 'replication', nodeId: 'p', term: 0 });
    const acks: number[] = [];
    link.on('message', (m) => {
      if (m.t === 'ack') acks.push(m.epoch);
    });
    return { secondary, link, acks };
  }

  it('holds exactly the committed image after a full sync, growth, deltas and a discarded partial delta, and runs from it', async () => {
    const source = await Vmm.boot(guest, { eventTimeoutMs: 30_000 });
    cleanup.push(() => source.stop());
    const prestarts: number[] = [];
    const { secondary, link, acks } = await startSecondary(() => {
      prestarts.push(secondary.image.memBytes);
      return Vmm.prestart(guest, 0, { eventTimeoutMs: 30_000 });
    });
    const digest = new ImageDigest();

    // Epoch 1: the full image (the ready vCPU is prestarted at its size and the image copied in).
    source.open(1);
    const c1 = await source.collect(true);
    sendEpoch(link, digest, c1, true);
    await until(() => acks.length === 1, 'ack 1');
    await until(() => secondary.ready!.isReady, 'the ready vCPU');
    expect(prestarts).toEqual([c1.memBytes]);

    // Epochs 2-3: the guest grows its memory by 4 MiB and writes it, then rewrites part of it.
    await vmmLine(source, 1, `SET ws_pages=${(c1.memBytes >> 12) + 1024} rate=0`);
    await vmmLine(source, 1, 'FILL');
    const c2 = await source.collect();
    expect(c2.memBytes).toBeGreaterThan(c1.memBytes);
    sendEpoch(link, digest, c2, false);
    await vmmLine(source, 1, 'SET ws_pages=300 rate=0');
    await vmmLine(source, 1, 'FILL');
    const c3 = await source.collect();
    sendEpoch(link, digest, c3, false);
    await until(() => acks.length === 3, 'acks 2-3');

    // Epoch 4 is cut off mid-stream (the primary dies): its in-place writes are undone, never forwarded.
    await vmmLine(source, 1, 'SET ws_pages=2000 rate=0');
    await vmmLine(source, 1, 'FILL');
    const c4 = await source.collect();
    expect(c4.pages.length).toBeGreaterThan(128);
    sendEpoch(link, digest.clone(), c4, false, 1);
    await new Promise((r) => setTimeout(r, 100));
    link.close(4000, 'primary died');
    await new Promise((r) => setTimeout(r, 200));
    expect(secondary.committedEpoch).toBe(c3.epoch);
    expect(secondary.ready!.isReady).toBe(true);

    // The vCPU starts in place from the committed image (epoch 3) without a copy.
    const vcpu = secondary.ready!.take()!;
    expect(vcpu).not.toBeNull();
    cleanup.push(() => vcpu.stop());
    const img = secondary.image;
    expect(img.epoch).toBe(c3.epoch);
    await vcpu.restoreInto({ format: 1, moduleDigest: guest.digest, epoch: img.epoch, memBytes: img.memBytes, memory: new Uint8Array(0), globals: img.globals, devices: img.devices! }, { inPlace: true });
    const pages = Uint32Array.from({ length: img.memBytes / PAGE_BYTES - RESERVED_PAGES }, (_, i) => RESERVED_PAGES + i);
    await vcpu.pause();
    const got = await vcpu.readPageList(pages);
    vcpu.resume();
    const want = img.memory().subarray(RESERVED_PAGES * PAGE_BYTES);
    expect(got.length).toBe(want.length);
    const differ: number[] = [];
    for (let i = 0; i < pages.length; i++) if (Buffer.compare(got.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES), want.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES)) !== 0) differ.push(pages[i]!);
    // Only the clock page may differ: a restored vCPU writes its new fields before any event.
    const pvPage = Math.floor(img.devices!.clock.pvclockAddr / PAGE_BYTES);
    expect(differ.filter((p) => p !== pvPage)).toEqual([]);

    // It answers as the source did at epoch 3: the source is rolled back to c3's state by a
    // restore of the same image (the source itself ran epoch 4 since).
    const ref = await Vmm.restore(guest, img.toCheckpoint(guest.digest), { eventTimeoutMs: 30_000 });
    cleanup.push(() => ref.stop());
    const stats = await vmmLine(vcpu, 1, 'STATS');
    expect(stats).toMatch(/^pages_written=\d+/);
    expect(stats).toBe(await vmmLine(ref, 1, 'STATS'));
  }, 60_000);

  it('prestarts again for a smaller full image, and take() gives nothing until the copy is done', async () => {
    const prestarts: number[] = [];
    let release: (() => void) | null = null;
    const { secondary, link, acks } = await startSecondary(async () => {
      prestarts.push(secondary.image.memBytes);
      // The second prestart is held until the test lets it finish.
      if (prestarts.length === 2) await new Promise<void>((r) => (release = r));
      return Vmm.prestart(guest, 0, { eventTimeoutMs: 30_000 });
    });
    const big = await Vmm.boot(guest, { eventTimeoutMs: 30_000 });
    cleanup.push(() => big.stop());
    big.open(1);
    await vmmLine(big, 1, `SET ws_pages=${(big.memBytes >> 12) + 512} rate=0`);
    await vmmLine(big, 1, 'FILL');
    const c1 = await big.collect(true);
    sendEpoch(link, new ImageDigest(), c1, true);
    await until(() => secondary.ready!.isReady, 'the first ready vCPU');
    // A full sync from a fresh (smaller) guest: wasm memory cannot shrink, so a new vCPU is prestarted.
    const small = await Vmm.boot(guest, { eventTimeoutMs: 30_000 });
    cleanup.push(() => small.stop());
    const c2 = await small.collect(true);
    c2.epoch = c1.epoch + 1;
    expect(c2.memBytes).toBeLessThan(c1.memBytes);
    sendEpoch(link, new ImageDigest(), c2, true);
    await until(() => acks.length === 2, 'ack of the second full image');
    await until(() => prestarts.length === 2, 'the second prestart');
    expect(prestarts[1]).toBe(c2.memBytes);
    expect(secondary.ready!.isReady).toBe(false);
    release!();
    await until(() => secondary.ready!.isReady, 'the second ready vCPU');
    const v = secondary.ready!.take();
    expect(v?.state).toBe('prestarted');
    // An in-place start whose size is not the memory's is refused (NodeHost then restores the image instead).
    const img = secondary.image;
    const meta = { format: 1 as const, moduleDigest: guest.digest, epoch: img.epoch, memBytes: img.memBytes + 65536, memory: new Uint8Array(0), globals: img.globals, devices: img.devices! };
    await expect(v!.restoreInto(meta, { inPlace: true })).rejects.toMatchObject({ code: 'FTVM_ERR_GUEST_INIT' });
    await v!.stop();
    // take() hands the vCPU over once: the runtime keeps none.
    expect(secondary.ready!.take()).toBeNull();
    link.close();
  }, 60_000);
});
