import { afterEach, describe, expect, it } from 'vitest';
import { PAGE_BYTES, RESERVED_PAGES } from '@ftvm/guest-abi';
import { ImageDigest, PageEncoder, connect, digestImage, listen, packConns, packOutput, type Link, type Listener } from '@ftvm/protocol';
import { SecondaryRuntime } from '@ftvm/secondary';

const token = new Uint8Array(Buffer.from('test-token'));
const MEM = 8 << 20;

function devices() {
  return { conns: packConns([]), maxConnId: 0, timerDeadlineNs: null, clock: { pvclockAddr: 0, tscAtCapture: 0n, wallNsAtCapture: 0n, guestNsAtCapture: 0n }, output: packOutput([]), confirmed: 0 };
}

/** Sends one checkpoint of `pages` (from `mem`); stops after `framesToSend` page frames when given. */
function sendCheckpoint(link: Link, enc: PageEncoder, digest: ImageDigest, mem: Uint8Array, epoch: number, full: boolean, pages: number[], framesToSend?: number): void {
  const data = new Uint8Array(pages.length * PAGE_BYTES);
  pages.forEach((p, i) => {
    data.set(mem.subarray(p * PAGE_BYTES, (p + 1) * PAGE_BYTES), i * PAGE_BYTES);
    digest.update(p, mem, p * PAGE_BYTES);
  });
  link.send({ t: 'ckpt_begin', term: 0, epoch, memBytes: mem.length, pageCount: pages.length, globals: [], devices: devices(), full });
  const per = 64;
  let frames = 0;
  for (let i = 0; i < pages.length; i += per) {
    if (framesToSend !== undefined && frames === framesToSend) return;
    const n = Math.min(per, pages.length - i);
    const b = enc.encodeBatch(Uint32Array.from(pages.slice(i, i + n)), data.subarray(i * PAGE_BYTES, (i + n) * PAGE_BYTES));
    link.send({ t: 'ckpt_pages', term: 0, epoch, seq: frames++, count: n }, b.payload);
  }
  link.send({ t: 'ckpt_end', term: 0, epoch, pageCount: pages.length, digest: digest.value(), wireBytes: 0, rawBytes: pages.length * PAGE_BYTES });
}

describe('a partial checkpoint is never applied', () => {
  let listener: Listener | null = null;
  let rt: SecondaryRuntime | null = null;
  afterEach(async () => {
    rt?.stop();
    await listener?.close();
  });

  /** A secondary runtime behind a real listener, and a replication link to it posing as the primary. */
  async function startSecondary(): Promise<{ secondary: SecondaryRuntime; link: Link }> {
    const secondary = new SecondaryRuntime({ term: 0 });
    rt = secondary;
    listener = await listen({
      port: 0,
      token,
      identity: () => ({ nodeId: 's', role: 'secondary', term: 0, epoch: 0 }),
      onLink: (l) => secondary.attachPrimary(l),
    });
    const link = await connect(listener.url, { token, role: 'primary', link: 'replication', nodeId: 'p', term: 0 });
    return { secondary, link };
  }

  it('keeps epoch N-1 (same digest) when the primary dies in the middle of checkpoint N', async () => {
    const { secondary, link } = await startSecondary();
    const acks: number[] = [];
    link.on('message', (m) => {
      if (m.t === 'ack') acks.push(m.epoch);
    });
    const mem = new Uint8Array(MEM);
    for (let p = RESERVED_PAGES; p < MEM / PAGE_BYTES; p += 3) mem.fill(p & 0xff, p * PAGE_BYTES, p * PAGE_BYTES + 100);
    const enc = new PageEncoder();
    const digest = new ImageDigest();
    const all = Array.from({ length: MEM / PAGE_BYTES - RESERVED_PAGES }, (_, i) => RESERVED_PAGES + i);
    sendCheckpoint(link, enc, digest, mem, 1, true, all);
    // Epoch 2: a complete delta.
    const dirty2 = all.filter((p) => p % 5 === 0);
    for (const p of dirty2) mem[p * PAGE_BYTES + 7] ^= 0x5a;
    sendCheckpoint(link, enc, digest, mem, 2, false, dirty2);
    for (let i = 0; i < 100 && acks.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    expect(acks).toEqual([1, 2]);
    const committed = digestImage(secondary.image.memory());
    expect(Buffer.from(committed)).toEqual(Buffer.from(digest.value()));
    // Epoch 3: a large delta, cut off after 3 of its page frames: the primary dies mid-stream.
    const dirty3 = all.filter((p) => p % 2 === 0);
    for (const p of dirty3) mem[p * PAGE_BYTES + 9] ^= 0xa5;
    sendCheckpoint(link, enc, digest.clone(), mem, 3, false, dirty3, 3);
    await new Promise((r) => setTimeout(r, 100));
    link.close(4000, 'primary died');
    await new Promise((r) => setTimeout(r, 200));
    expect(secondary.committedEpoch).toBe(2);
    expect(Buffer.from(digestImage(secondary.image.memory()))).toEqual(Buffer.from(committed));
    expect(acks).toEqual([1, 2]);
  });

  it('undoes the in-place writes and the growth of a delta cut off mid-stream; the delta resent applies exactly', async () => {
    const { secondary, link } = await startSecondary();
    const acks: number[] = [];
    link.on('message', (m) => {
      if (m.t === 'ack') acks.push(m.epoch);
    });
    const mem = new Uint8Array(MEM);
    for (let p = RESERVED_PAGES; p < MEM / PAGE_BYTES; p++) mem.fill((p * 7) & 0xff, p * PAGE_BYTES, p * PAGE_BYTES + 64);
    const enc = new PageEncoder();
    const digest = new ImageDigest();
    const all = Array.from({ length: MEM / PAGE_BYTES - RESERVED_PAGES }, (_, i) => RESERVED_PAGES + i);
    sendCheckpoint(link, enc, digest, mem, 1, true, all);
    for (let i = 0; i < 100 && acks.length < 1; i++) await new Promise((r) => setTimeout(r, 20));
    expect(acks).toEqual([1]);
    const before = secondary.image.memory().slice();
    // Epoch 2 grows memory by 128 KiB and rewrites old and new pages; it is cut after 2 of its frames.
    const grown = new Uint8Array(MEM + (128 << 10));
    grown.set(mem);
    const dirty = [...all.filter((p) => p % 4 === 1), ...Array.from({ length: 32 }, (_, i) => MEM / PAGE_BYTES + i)];
    for (const p of dirty) grown.fill(0xc3, p * PAGE_BYTES + 100, p * PAGE_BYTES + 900);
    sendCheckpoint(link, enc, digest.clone(), grown, 2, false, dirty, 2);
    await new Promise((r) => setTimeout(r, 100));
    link.close(4000, 'primary died');
    await new Promise((r) => setTimeout(r, 200));
    expect(secondary.committedEpoch).toBe(1);
    expect(secondary.image.memBytes).toBe(MEM);
    expect(Buffer.from(secondary.image.memory()).equals(Buffer.from(before))).toBe(true);
    // The same primary reconnects and sends epoch 2 whole: the image is exactly its memory.
    const again = await connect(listener!.url, { token, role: 'primary', link: 'replication', nodeId: 'p', term: 0 });
    const acks2: number[] = [];
    again.on('message', (m) => {
      if (m.t === 'ack') acks2.push(m.epoch);
    });
    sendCheckpoint(again, new PageEncoder(), digest, grown, 2, false, dirty);
    for (let i = 0; i < 100 && acks2.length < 1; i++) await new Promise((r) => setTimeout(r, 20));
    expect(acks2).toEqual([2]);
    expect(secondary.image.memBytes).toBe(grown.length);
    expect(Buffer.from(secondary.image.memory()).equals(Buffer.from(grown))).toBe(true);
    again.close(4000, 'done');
  });

  it('refuses (nacks) a checkpoint whose memory size is not whole 64 KiB pages, and stages nothing for it', async () => {
    const { secondary, link } = await startSecondary();
    const got: string[] = [];
    link.on('message', (m) => {
      if (m.t === 'ack' || m.t === 'nack') got.push(`${m.t} ${m.epoch}`);
    });
    link.send({ t: 'ckpt_begin', term: 0, epoch: 1, memBytes: MEM + 4096, pageCount: 0, globals: [], devices: devices(), full: true });
    link.send({ t: 'ckpt_end', term: 0, epoch: 1, pageCount: 0, digest: new ImageDigest().value(), wireBytes: 0, rawBytes: 0 });
    for (let i = 0; i < 100 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(got).toEqual(['nack 1']);
    expect(secondary.committedEpoch).toBe(0);
    expect(secondary.image.memBytes).toBe(0);
    link.close(4000, 'done');
  });

  it('applies a checkpoint sent as one ckpt frame, and nacks one whose payload does not hold its pages (CHECKPOINT_CORRUPT) or whose digest differs (DIGEST_MISMATCH)', async () => {
    const { secondary, link } = await startSecondary();
    const got: string[] = [];
    link.on('message', (m) => {
      if (m.t === 'ack' || m.t === 'nack') got.push(`${m.t} ${m.epoch}`);
    });
    const mem = new Uint8Array(MEM);
    const enc = new PageEncoder();
    const digest = new ImageDigest();
    const all = Array.from({ length: MEM / PAGE_BYTES - RESERVED_PAGES }, (_, i) => RESERVED_PAGES + i);
    sendCheckpoint(link, enc, digest, mem, 1, true, all);
    for (let i = 0; i < 100 && got.length < 1; i++) await new Promise((r) => setTimeout(r, 20));
    const one = (epoch: number, pages: number[], payloadPages = pages) => {
      for (const p of pages) mem.fill(epoch, p * PAGE_BYTES, p * PAGE_BYTES + 50);
      const d = digest.clone();
      for (const p of pages) d.update(p, mem, p * PAGE_BYTES);
      const data = new Uint8Array(payloadPages.length * PAGE_BYTES);
      payloadPages.forEach((p, i) => data.set(mem.subarray(p * PAGE_BYTES, (p + 1) * PAGE_BYTES), i * PAGE_BYTES));
      const batch = enc.encodeBatch(Uint32Array.from(payloadPages), data);
      link.send(
        { t: 'ckpt', term: 0, epoch, memBytes: MEM, pageCount: pages.length, globals: [], devices: devices(), full: false, digest: d.value(), wireBytes: batch.wireBytes, rawBytes: pages.length * PAGE_BYTES },
        batch.payload,
      );
      return d;
    };
    const d2 = one(2, [RESERVED_PAGES + 3, RESERVED_PAGES + 40]);
    for (let i = 0; i < 100 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    expect(got).toEqual(['ack 1', 'ack 2']);
    expect(Buffer.from(digestImage(secondary.image.memory()))).toEqual(Buffer.from(d2.value()));
    expect(Buffer.from(secondary.image.memory()).equals(Buffer.from(mem))).toBe(true);
    const codes: string[] = [];
    secondary.on('log', (_level: string, msg: string, fields?: { code?: string }) => {
      if (msg === 'checkpoint not applied') codes.push(fields?.code ?? '');
    });
    // pageCount says 2, the payload holds 1: not applied.
    one(3, [RESERVED_PAGES + 5, RESERVED_PAGES + 6], [RESERVED_PAGES + 5]);
    for (let i = 0; i < 100 && got.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    expect(got[2]).toBe('nack 3');
    // Pages that decode but an image digest that is not the primary's: refused too.
    const wrong = new Uint8Array(d2.value().length).fill(1);
    link.send({ t: 'ckpt', term: 0, epoch: 3, memBytes: MEM, pageCount: 0, globals: [], devices: devices(), full: false, digest: wrong, wireBytes: 0, rawBytes: 0 }, new Uint8Array(0));
    for (let i = 0; i < 100 && got.length < 4; i++) await new Promise((r) => setTimeout(r, 20));
    expect(got[3]).toBe('nack 3');
    expect(codes).toEqual(['FTVM_ERR_CHECKPOINT_CORRUPT', 'FTVM_ERR_DIGEST_MISMATCH']);
    expect(secondary.committedEpoch).toBe(2);
    link.close(4000, 'done');
  });

  it('refuses (nacks) a checkpoint whose connection or output table is malformed, then applies a good one', async () => {
    const { secondary, link } = await startSecondary();
    const got: string[] = [];
    link.on('message', (m) => {
      if (m.t === 'ack' || m.t === 'nack') got.push(`${m.t} ${m.epoch}${m.t === 'nack' ? ` ${m.message}` : ''}`);
    });
    const bad = [
      { ...devices(), conns: [{ conn: 1, inConsumed: 0, outProduced: 0, closed: false }] }, // version-2 maps
      { ...devices(), conns: new Uint8Array(33) },
      { ...devices(), output: new Uint8Array(2) },
    ];
    const reasons: string[] = [];
    const codes: string[] = [];
    secondary.on('log', (_level: string, msg: string, fields?: { reason?: string; code?: string }) => {
      if (msg === 'checkpoint not applied') reasons.push(fields?.reason ?? ''), codes.push(fields?.code ?? '');
    });
    for (const d of bad) {
      got.length = 0;
      reasons.length = 0;
      link.send({ t: 'ckpt_begin', term: 0, epoch: 1, memBytes: MEM, pageCount: 0, globals: [], devices: d, full: true });
      link.send({ t: 'ckpt_end', term: 0, epoch: 1, pageCount: 0, digest: new ImageDigest().value(), wireBytes: 0, rawBytes: 0 });
      for (let i = 0; i < 100 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(got).toHaveLength(1);
      expect(got[0]).toMatch(/^nack 1 /);
      expect(reasons).toHaveLength(1);
      expect(reasons[0]).toMatch(/^malformed device state in ckpt_begin: devices\.(conns|output)/);
      expect(codes.splice(0)).toEqual(['FTVM_ERR_CHECKPOINT_CORRUPT']);
      expect(secondary.committedEpoch).toBe(0);
    }
    got.length = 0;
    const conns = [{ conn: 4, inConsumed: 10, outProduced: 20, closed: false }];
    link.send({ t: 'ckpt_begin', term: 0, epoch: 1, memBytes: MEM, pageCount: 0, globals: [], devices: { ...devices(), conns: packConns(conns), maxConnId: 4 }, full: true });
    link.send({ t: 'ckpt_end', term: 0, epoch: 1, pageCount: 0, digest: new ImageDigest().value(), wireBytes: 0, rawBytes: 0 });
    for (let i = 0; i < 100 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(got).toEqual(['ack 1']);
    expect(secondary.image.devices?.conns).toEqual(conns);
    link.close(4000, 'done');
  });
});
