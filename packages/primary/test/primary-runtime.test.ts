import { afterEach, describe, expect, it } from 'vitest';
import { createPolicy } from '@ftvm/core';
import { connect, listen, type Link, type Listener, type Message } from '@ftvm/protocol';
import { GuestImage, prepareGuest, readGuest, Vmm } from '@ftvm/vmm';
import { PrimaryRuntime } from '@ftvm/primary';
import { resp } from '../../../test/helpers/resp.js';

/**
 * The primary runtime with a real kv guest and real links, the proxy and the secondary played
 * by the test: what it sends each, and how it answers them.
 */

const token = new Uint8Array(Buffer.from('primary-runtime-test'));
const guest = (() => {
  const { name, wasm } = readGuest('kv');
  return prepareGuest(name, wasm);
})();

interface Peer {
  link: Link;
  got: Array<{ m: Message; payload: Uint8Array }>;
  /** Resolves with the first message (already received or later) matching. */
  next(match: (m: Message) => boolean, timeoutMs?: number): Promise<{ m: Message; payload: Uint8Array }>;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A runtime on a booted kv guest, and a listener whose links the test attaches to it. */
async function setup(onSecondaryLost: 'continue' | 'block' = 'continue') {
  const vmm = await Vmm.boot(guest, { eventTimeoutMs: 2000 });
  // The first rollback point, as NodeHost makes it: every page of the booted guest.
  const image = new GuestImage();
  image.apply(await vmm.collect(true));
  const rt = new PrimaryRuntime({ vmm, term: 1, startEpoch: image.epoch, image, policy: createPolicy('adaptive'), policyName: 'adaptive', onSecondaryLost, heartbeatMs: 50 });
  const logs: Array<{ level: string; msg: string; fields?: Record<string, unknown> }> = [];
  rt.on('log', (level, msg, fields) => logs.push({ level, msg, fields }));
  const serverSide: Link[] = [];
  const l: Listener = await listen({
    host: '127.0.0.1', port: 0, token,
    identity: () => ({ nodeId: 'p', role: 'primary', term: rt.term, epoch: 0 }),
    onLink: (link) => serverSide.push(link),
  });
  cleanups.push(async () => {
    rt.stop('test over');
    await l.close();
  });
  /** Connects as a proxy or a secondary and attaches the node's end of the link to the runtime. */
  const peer = async (kind: 'proxy' | 'secondary'): Promise<Peer> => {
    const link = await connect(l.url, { token, role: kind, link: kind === 'proxy' ? 'net' : 'replication', nodeId: kind, term: 1 });
    const got: Peer['got'] = [];
    const waiters: Array<() => void> = [];
    link.on('message', (m, payload) => {
      got.push({ m, payload });
      for (const w of waiters.splice(0)) w();
    });
    for (let i = 0; i < 100 && serverSide.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    const mine = serverSide.shift()!;
    if (kind === 'proxy') rt.attachProxy(mine);
    else rt.attachSecondary(mine);
    return {
      link,
      got,
      async next(match, timeoutMs = 5000) {
        const end = Date.now() + timeoutMs;
        for (;;) {
          const hit = got.find((g) => match(g.m));
          if (hit) return hit;
          if (Date.now() > end) throw new Error(`no matching message within ${timeoutMs} ms; got ${got.map((g) => g.m.t).join(' ')}`);
          await new Promise<void>((r) => (waiters.push(r), setTimeout(r, 50)));
        }
      },
    };
  };
  return { rt, vmm, logs, peer };
}

const text = (p: Uint8Array) => Buffer.from(p).toString();
const outputOf = (p: Peer, conn: number) => p.got.filter((g) => g.m.t === 'output' && g.m.conn === conn).map((g) => text(g.payload)).join('');

describe('PrimaryRuntime', () => {
  it('unprotected: a request from the proxy is answered at once, and its epoch committed unacked', async () => {
    const { peer } = await setup('continue');
    const proxy = await peer('proxy');
    const status = await proxy.next((m) => m.t === 'status');
    expect(status.m).toMatchObject({ role: 'primary', term: 1 });
    const req = Buffer.from(resp('SET', 'k', 'v'));
    proxy.link.send({ t: 'open', term: 1, conn: 1 });
    proxy.link.send({ t: 'input', term: 1, conn: 1, offset: 0 }, req);
    const out = await proxy.next((m) => m.t === 'output' && m.conn === 1);
    expect(text(out.payload)).toBe('+OK\r\n');
    const epoch = (out.m as Extract<Message, { t: 'output' }>).epoch;
    const commit = await proxy.next((m) => m.t === 'commit' && m.epoch >= epoch);
    expect(commit.m).toMatchObject({ acked: false, term: 1 });
    // The same bytes again (a proxy replaying after a reconnect) are dropped: one reply, not two.
    proxy.link.send({ t: 'input', term: 1, conn: 1, offset: 0 }, req);
    proxy.link.send({ t: 'input', term: 1, conn: 1, offset: req.length }, Buffer.from(resp('GET', 'k')));
    await proxy.next((m) => m.t === 'output' && m.conn === 1 && m.offset > 0);
    expect(outputOf(proxy, 1)).toBe('+OK\r\n$1\r\nv\r\n');
    // A resend request gets the retained output from the offset asked for.
    const before = proxy.got.length;
    proxy.link.send({ t: 'resend', term: 1, conns: [{ conn: 1, offset: 0 }] });
    const resent = () => proxy.got.slice(before).filter((g) => g.m.t === 'output').map((g) => text(g.payload)).join('');
    for (let i = 0; i < 100 && resent().length < 12; i++) await new Promise((r) => setTimeout(r, 20));
    expect(resent()).toBe('+OK\r\n$1\r\nv\r\n');
  });

  it('input past what it received is a lost message: the proxy link is closed with FTVM_ERR_INPUT_GAP', async () => {
    const { peer, logs } = await setup();
    const proxy = await peer('proxy');
    const closed = new Promise<[number, string]>((r) => proxy.link.on('close', (code, reason) => r([code, reason])));
    proxy.link.send({ t: 'open', term: 1, conn: 1 });
    proxy.link.send({ t: 'input', term: 1, conn: 1, offset: 10 }, Buffer.from(resp('PING')));
    expect(await closed).toEqual([4099, 'FTVM_ERR_INPUT_GAP']);
    expect(logs).toContainEqual(expect.objectContaining({ level: 'error', fields: expect.objectContaining({ code: 'FTVM_ERR_INPUT_GAP', conn: 1, have: 0, offset: 10 }) }));
  });

  it('protected: the full sync goes first; output waits for the secondary\'s ack of its epoch before its commit', async () => {
    const { rt, peer } = await setup('continue');
    const proxy = await peer('proxy');
    const protectedNow = new Promise<void>((r) => rt.on('protection', (p) => p && r()));
    const sec = await peer('secondary');
    // The first checkpoint to a new secondary is full; ack every checkpoint until protected.
    const acked = new Set<number>();
    let holdAcks = false;
    const ackAll = (): void => {
      for (const { m } of sec.got) {
        if ((m.t === 'ckpt' || m.t === 'ckpt_end') && !acked.has(m.epoch) && !holdAcks) {
          acked.add(m.epoch);
          sec.link.send({ t: 'ack', term: 1, epoch: m.epoch, digest: m.digest });
        }
      }
    };
    sec.link.on('message', ackAll);
    const first = await sec.next((m) => m.t === 'ckpt' || m.t === 'ckpt_begin');
    expect(first.m).toMatchObject({ full: true });
    await protectedNow;
    expect(rt.core.isProtected).toBe(true);
    // Now hold the acks: the reply leaves at once (tagged with its epoch), its commit does not.
    holdAcks = true;
    proxy.link.send({ t: 'open', term: 1, conn: 7 });
    proxy.link.send({ t: 'input', term: 1, conn: 7, offset: 0 }, Buffer.from(resp('INCR', 'n')));
    const out = await proxy.next((m) => m.t === 'output' && m.conn === 7);
    expect(text(out.payload)).toBe(':1\r\n');
    const epoch = (out.m as Extract<Message, { t: 'output' }>).epoch;
    await sec.next((m) => (m.t === 'ckpt' || m.t === 'ckpt_end') && m.epoch >= epoch);
    await new Promise((r) => setTimeout(r, 300));
    expect(proxy.got.some((g) => g.m.t === 'commit' && g.m.epoch >= epoch)).toBe(false);
    holdAcks = false;
    ackAll();
    const commit = await proxy.next((m) => m.t === 'commit' && m.epoch >= epoch);
    expect(commit.m).toMatchObject({ acked: true });
  });

  it('a fence of a newer term stops the guest, logged with FTVM_ERR_FENCED', async () => {
    const { rt, vmm, peer, logs } = await setup();
    const proxy = await peer('proxy');
    const stopped = new Promise<[string, number]>((r) => rt.on('stopped', (why, term) => r([why, term])));
    proxy.link.send({ t: 'fence', term: 2 });
    const [why] = await stopped;
    expect(why).toMatch(/fenced.*term 2/);
    expect(logs).toContainEqual(expect.objectContaining({ level: 'warn', fields: expect.objectContaining({ code: 'FTVM_ERR_FENCED' }) }));
    // The guest takes no more input: a request now gets no reply.
    proxy.link.send({ t: 'open', term: 1, conn: 3 });
    proxy.link.send({ t: 'input', term: 1, conn: 3, offset: 0 }, Buffer.from(resp('PING')));
    await new Promise((r) => setTimeout(r, 300));
    expect(outputOf(proxy, 3)).toBe('');
    expect(vmm.state).not.toBe('running');
  });
});
