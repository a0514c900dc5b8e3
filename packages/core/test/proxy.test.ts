import { describe, expect, it } from 'vitest';
import { ProxyCore, type ProxyAction, type StateOffsets } from '../src/index.js';

const te = new TextEncoder();
const td = new TextDecoder();
const b = (s: string) => te.encode(s);
const none: StateOffsets = { epoch: 0, maxConnId: 0, conns: [] };
/** A commit's offsets for one connection `c` (its only one) at `epoch`, `out` output bytes produced. */
const offsetsOf = (c: number, epoch: number, out: number): StateOffsets => ({ epoch, maxConnId: c, conns: [{ conn: c, inConsumed: 0, outProduced: out, closed: false }] });

function written(actions: ProxyAction[], conn: number): string {
  return actions
    .filter((a): a is Extract<ProxyAction, { type: 'writeClient' }> => a.type === 'writeClient' && a.conn === conn)
    .map((a) => td.decode(a.bytes))
    .join('');
}
const ofType = <T extends ProxyAction['type']>(actions: ProxyAction[], t: T) =>
  actions.filter((a): a is Extract<ProxyAction, { type: T }> => a.type === t);

/** A proxy with `a` active in term 1 and `b` a secondary holding `bEpoch`. */
function setup(opts: Partial<ConstructorParameters<typeof ProxyCore>[0]> = {}, bEpoch = 1) {
  const p = new ProxyCore({ nodes: ['a', 'b'], failoverTimeoutMs: 100, ...opts });
  p.nodeUp('a', 0);
  p.nodeHello('a', { role: 'primary', term: 1, live: none }, 0);
  p.nodeUp('b', 0);
  p.nodeHello('b', { role: 'secondary', term: 1, committedEpoch: bEpoch }, 0);
  p.takeActions();
  return p;
}

describe('ProxyCore output commit', () => {
  it('never releases output of epoch N before commit(N), then releases it in order', () => {
    const p = setup();
    const c = p.clientOpen(1);
    p.clientData(c, b('INCR\n'), 1);
    p.output('a', { term: 1, epoch: 3, conn: c, offset: 0, bytes: b('1\n') }, 2);
    p.output('a', { term: 1, epoch: 4, conn: c, offset: 2, bytes: b('2\n') }, 3);
    expect(written(p.takeActions(), c)).toBe('');
    p.commit('a', { term: 1, epoch: 3, acked: true, offsets: { epoch: 3, maxConnId: c, conns: [{ conn: c, inConsumed: 5, outProduced: 2, closed: false }] } }, 4);
    const a3 = p.takeActions();
    expect(written(a3, c)).toBe('1\n');
    expect(ofType(a3, 'confirmCommit')).toEqual([{ type: 'confirmCommit', node: 'a', term: 1, epoch: 3 }]);
    p.commit('a', { term: 1, epoch: 4, acked: true, offsets: { epoch: 4, maxConnId: c, conns: [{ conn: c, inConsumed: 5, outProduced: 4, closed: false }] } }, 5);
    expect(written(p.takeActions(), c)).toBe('2\n');
    expect(p.heldOutputBytes).toBe(0);
  });

  it('forwards client input at once and trims the log only up to the committed inConsumed', () => {
    const p = setup();
    const c = p.clientOpen(1);
    expect(p.takeActions()).toEqual([{ type: 'forwardOpen', node: 'a', term: 1, conn: c }]);
    p.clientData(c, b('abcdef'), 1);
    expect(ofType(p.takeActions(), 'forwardInput')).toMatchObject([{ node: 'a', conn: c, offset: 0 }]);
    p.commit('a', { term: 1, epoch: 2, acked: true, offsets: { epoch: 2, maxConnId: c, conns: [{ conn: c, inConsumed: 4, outProduced: 0, closed: false }] } }, 2);
    expect(p.inputLogBytes).toBe(2);
  });

  it('refuses output from a node that is not the active primary, and commits unless they are the secondary\'s acked ones of this term', () => {
    const p = setup();
    const c = p.clientOpen(1);
    p.output('b', { term: 1, epoch: 1, conn: c, offset: 0, bytes: b('x') }, 2);
    // A commit the secondary did not ack itself, or of another term, is not the secondary's to give.
    p.commit('b', { term: 1, epoch: 1, acked: false, offsets: offsetsOf(c, 1, 1) }, 2);
    p.commit('b', { term: 2, epoch: 1, acked: true, offsets: offsetsOf(c, 1, 1) }, 2);
    const acts = p.takeActions();
    expect(written(acts, c)).toBe('');
    expect(ofType(acts, 'refused')).toHaveLength(3);
    expect(p.committedEpoch).toBe(0);
  });

  it('releases output on the secondary\'s commit, one hop before the primary\'s, and confirms to the primary only on its own commit', () => {
    const p = setup();
    const c = p.clientOpen(1);
    p.output('a', { term: 1, epoch: 2, conn: c, offset: 0, bytes: b('one\n') }, 2);
    p.commit('b', { term: 1, epoch: 2, acked: true, offsets: offsetsOf(c, 2, 4) }, 3);
    let acts = p.takeActions();
    expect(written(acts, c)).toBe('one\n');
    expect(p.committedEpoch).toBe(2);
    // The primary's output of that epoch may still be on its way: no confirm yet.
    expect(ofType(acts, 'confirmCommit')).toEqual([]);
    expect(ofType(acts, 'refused')).toEqual([]);
    // Committed before it arrived: output of epoch 3 goes out as soon as it comes.
    p.commit('b', { term: 1, epoch: 3, acked: true, offsets: offsetsOf(c, 3, 8) }, 4);
    expect(written(p.takeActions(), c)).toBe('');
    p.output('a', { term: 1, epoch: 3, conn: c, offset: 4, bytes: b('two\n') }, 5);
    expect(written(p.takeActions(), c)).toBe('two\n');
    // The primary's commits follow: they release nothing twice, and confirm once per epoch.
    p.commit('a', { term: 1, epoch: 2, acked: true, offsets: offsetsOf(c, 2, 4) }, 6);
    p.commit('a', { term: 1, epoch: 3, acked: true, offsets: offsetsOf(c, 3, 8) }, 6);
    p.commit('a', { term: 1, epoch: 3, acked: true, offsets: offsetsOf(c, 3, 8) }, 6);
    acts = p.takeActions();
    expect(written(acts, c)).toBe('');
    expect(ofType(acts, 'confirmCommit')).toEqual([
      { type: 'confirmCommit', node: 'a', term: 1, epoch: 2 },
      { type: 'confirmCommit', node: 'a', term: 1, epoch: 3 },
    ]);
    expect(p.heldOutputBytes).toBe(0);
  });

  it('treats a connection the committed state knows but does not list as closed in it, releasing its output of committed epochs', () => {
    const p = setup();
    const c1 = p.clientOpen(1);
    const c2 = p.clientOpen(1);
    p.output('a', { term: 1, epoch: 2, conn: c1, offset: 0, bytes: b('last words') }, 2);
    p.output('a', { term: 1, epoch: 2, conn: c2, offset: 0, bytes: b('ok') }, 2);
    p.takeActions();
    p.commit('a', { term: 1, epoch: 2, acked: true, offsets: { epoch: 2, maxConnId: c2, conns: [{ conn: c2, inConsumed: 0, outProduced: 2, closed: false }] } }, 3);
    const acts = p.takeActions();
    expect(written(acts, c1)).toBe('last words');
    expect(ofType(acts, 'closeClient')).toEqual([{ type: 'closeClient', conn: c1 }]);
    expect(written(acts, c2)).toBe('ok');
    expect(p.connCount).toBe(1);
  });

  it('closes the client only after its committed output has been written', () => {
    const p = setup();
    const c = p.clientOpen(1);
    p.output('a', { term: 1, epoch: 2, conn: c, offset: 0, bytes: b('bye') }, 2);
    p.commit('a', { term: 1, epoch: 2, acked: true, offsets: { epoch: 2, maxConnId: c, conns: [{ conn: c, inConsumed: 0, outProduced: 3, closed: true }] } }, 3);
    const acts = p.takeActions().filter((a) => a.type === 'writeClient' || a.type === 'closeClient');
    expect(acts.map((a) => a.type)).toEqual(['writeClient', 'closeClient']);
    expect(p.connCount).toBe(0);
  });
});

describe('ProxyCore failover', () => {
  function withTraffic() {
    const p = setup({}, 2);
    const c = p.clientOpen(1);
    p.clientData(c, b('INCR\n'), 1);
    p.clientData(c, b('INCR\n'), 2);
    p.clientData(c, b('INCR\n'), 3);
    p.output('a', { term: 1, epoch: 2, conn: c, offset: 0, bytes: b('1\n') }, 3);
    p.output('a', { term: 1, epoch: 3, conn: c, offset: 2, bytes: b('2\n') }, 3);
    p.output('a', { term: 1, epoch: 4, conn: c, offset: 4, bytes: b('3\n') }, 3);
    p.takeActions();
    return { p, c };
  }

  it('promotes the secondary with a new term when the active link closes, and fences the old term', () => {
    const { p } = withTraffic();
    p.nodeDown('a', 10);
    const acts = p.takeActions();
    expect(ofType(acts, 'sendPromote')).toEqual([{ type: 'sendPromote', node: 'b', term: 2 }]);
    expect(p.term).toBe(2);
    expect(p.state).toBe('promoting');
    p.nodeUp('a', 11);
    p.nodeHello('a', { role: 'primary', term: 1, live: none }, 11);
    expect(ofType(p.takeActions(), 'sendFence')).toEqual([{ type: 'sendFence', node: 'a', term: 2 }]);
  });

  it('fails over when the active primary is silent for failoverTimeoutMs, fencing it on its open link', () => {
    const { p } = withTraffic();
    // Last heard at 3 ms (its output).
    p.tick(102.9);
    expect(ofType(p.takeActions(), 'sendPromote')).toHaveLength(0);
    p.tick(103);
    const acts = p.takeActions();
    expect(ofType(acts, 'sendFence')).toEqual([{ type: 'sendFence', node: 'a', term: 2 }]);
    expect(ofType(acts, 'sendPromote')).toEqual([{ type: 'sendPromote', node: 'b', term: 2 }]);
    p.output('a', { term: 1, epoch: 5, conn: 1, offset: 6, bytes: b('4\n') }, 101);
    expect(ofType(p.takeActions(), 'writeClient')).toHaveLength(0);
  });

  it('releases held output up to the promoted image offsets, discards the rest and replays exactly the unconsumed input', () => {
    const { p, c } = withTraffic();
    p.nodeDown('a', 10);
    p.takeActions();
    p.clientData(c, b('INCR\n'), 11); // arrives while promoting: logged, not forwarded
    expect(ofType(p.takeActions(), 'forwardInput')).toHaveLength(0);
    // b's image is epoch 3: it consumed 2 requests and produced "1\n2\n" (epoch 3 committed though a never heard the ack).
    p.promoted('b', { term: 2, offsets: { epoch: 3, maxConnId: c, conns: [{ conn: c, inConsumed: 10, outProduced: 4, closed: false }] } }, 12);
    const acts = p.takeActions();
    expect(written(acts, c)).toBe('1\n2\n');
    const fwd = ofType(acts, 'forwardInput');
    expect(fwd.every((f) => f.node === 'b' && f.term === 2)).toBe(true);
    expect(fwd.map((f) => [f.offset, td.decode(f.bytes)])).toEqual([[10, 'INCR\n'], [15, 'INCR\n']]);
    expect(ofType(acts, 'activeChanged')).toMatchObject([{ node: 'b', term: 2, resendOutputFrom: [] }]);
    expect(p.heldOutputBytes).toBe(0);
    // The new primary recomputes request 3 and answers at offset 4: released on its commit.
    p.output('b', { term: 2, epoch: 4, conn: c, offset: 4, bytes: b('3\n') }, 13);
    p.commit('b', { term: 2, epoch: 4, acked: true, offsets: { epoch: 4, maxConnId: c, conns: [{ conn: c, inConsumed: 20, outProduced: 6, closed: false }] } }, 14);
    expect(written(p.takeActions(), c)).toBe('3\n');
  });

  it('asks the promoted node to resend committed output the proxy never received', () => {
    const { p, c } = withTraffic();
    p.nodeDown('a', 10);
    p.takeActions();
    p.promoted('b', { term: 2, offsets: { epoch: 5, maxConnId: c, conns: [{ conn: c, inConsumed: 15, outProduced: 8, closed: false }] } }, 12);
    const acts = p.takeActions();
    expect(written(acts, c)).toBe('1\n2\n3\n');
    expect(ofType(acts, 'activeChanged')[0]!.resendOutputFrom).toEqual([{ conn: c, offset: 6 }]);
    p.output('b', { term: 2, epoch: 5, conn: c, offset: 6, bytes: b('4\n') }, 13);
    expect(written(p.takeActions(), c)).toBe('4\n'); // committed already: released on arrival
  });

  it('replays open and all input of connections the promoted image never saw, and gives new ids past its maxConnId', () => {
    const p = setup({}, 1);
    const c1 = p.clientOpen(1);
    p.clientData(c1, b('x'), 1);
    p.nodeDown('a', 2);
    p.takeActions();
    p.promoted('b', { term: 2, offsets: { epoch: 1, maxConnId: 0, conns: [] } }, 3);
    const acts = p.takeActions().filter((a) => a.type.startsWith('forward'));
    expect(acts.map((a) => a.type)).toEqual(['forwardOpen', 'forwardInput']);
    const p2 = setup({}, 1);
    p2.nodeDown('a', 2);
    p2.promoted('b', { term: 2, offsets: { epoch: 1, maxConnId: 41, conns: [] } }, 3);
    expect(p2.clientOpen(4)).toBe(42);
  });

  it('refuses to promote a secondary whose image lacks an epoch released without an ack', () => {
    const p = setup({}, 3);
    const c = p.clientOpen(1);
    p.commit('a', { term: 1, epoch: 5, acked: false, offsets: { epoch: 5, maxConnId: c, conns: [{ conn: c, inConsumed: 0, outProduced: 0, closed: false }] } }, 2);
    p.takeActions();
    p.nodeDown('a', 3);
    const acts = p.takeActions();
    expect(ofType(acts, 'sendPromote')).toHaveLength(0);
    expect(ofType(acts, 'failoverBlocked')[0]!.reason).toMatch(/lacks epoch 5/);
    p.nodeStatus('b', { term: 1, committedEpoch: 5 }, 4);
    expect(ofType(p.takeActions(), 'sendPromote')).toEqual([{ type: 'sendPromote', node: 'b', term: 2 }]);
  });

  it('promotes on a promote request whose committed epoch reaches the unacked floor after failover was blocked', () => {
    const p = setup({}, 1);
    const c = p.clientOpen(1);
    p.commit('a', { term: 1, epoch: 4, acked: false, offsets: { epoch: 4, maxConnId: c, conns: [{ conn: c, inConsumed: 0, outProduced: 0, closed: false }] } }, 2);
    p.nodeDown('a', 3);
    expect(ofType(p.takeActions(), 'failoverBlocked')).toHaveLength(1);
    p.promoteRequest('b', { term: 1, committedEpoch: 4 }, 4);
    expect(ofType(p.takeActions(), 'sendPromote')).toEqual([{ type: 'sendPromote', node: 'b', term: 2 }]);
  });

  it('reports a promotion that times out, and still accepts the late answer of that candidate in the same term', () => {
    const p = setup({ promoteTimeoutMs: 500 }, 2);
    const c = p.clientOpen(1);
    p.nodeDown('a', 10);
    p.takeActions();
    expect(p.nextDeadline()).toBe(510);
    p.tick(510);
    expect(ofType(p.takeActions(), 'failoverBlocked')[0]!.reason).toMatch(/did not answer promote/);
    expect(p.state).toBe('lost');
    p.promoted('b', { term: 2, offsets: { epoch: 2, maxConnId: c, conns: [{ conn: c, inConsumed: 0, outProduced: 0, closed: false }] } }, 900);
    expect(p.active).toBe('b');
  });

  it('gives up on a candidate that refuses promotion at once, without waiting for the timeout', () => {
    const p = setup({}, 2);
    p.nodeDown('a', 10);
    p.takeActions();
    p.promoteRefused('b', { term: 2, reason: 'no committed image' }, 11);
    expect(p.state).toBe('lost');
    expect(ofType(p.takeActions(), 'failoverBlocked')[0]!.reason).toMatch(/refused promotion/);
    expect(p.status()).toMatchObject({ state: 'lost', term: 2, active: undefined });
  });

  it('promotes a node that refused earlier once it reports a committed image', () => {
    const p = setup({}, 2);
    p.nodeDown('a', 10);
    p.promoteRefused('b', { term: 2, reason: 'busy' }, 11);
    p.takeActions();
    p.nodeHello('b', { role: 'secondary', term: 2, committedEpoch: 2, imageTerm: 1 }, 12);
    expect(ofType(p.takeActions(), 'sendPromote')).toEqual([{ type: 'sendPromote', node: 'b', term: 3 }]);
  });

  it('refuses to promote an image built by a primary of another term than the one serving clients', () => {
    // b was promoted in term 2 and served; b dies; its restarted node is synced by the old,
    // unfenced term-1 primary: that image holds a history the clients never saw.
    const p = setup({}, 2);
    p.nodeDown('a', 10);
    p.promoted('b', { term: 2, offsets: none }, 11);
    p.nodeDown('b', 20);
    p.takeActions();
    p.nodeUp('b', 30);
    p.nodeHello('b', { role: 'secondary', term: 1, committedEpoch: 50, imageTerm: 1 }, 30);
    const acts = p.takeActions();
    expect(ofType(acts, 'sendPromote')).toHaveLength(0);
    expect(ofType(acts, 'failoverBlocked')[0]!.reason).toMatch(/image comes from term 1, clients were served by term 2/);
  });

  it('ignores input and closes from a client whose connection it already finished, but refuses unknown ids', () => {
    const p = setup();
    const c = p.clientOpen(1);
    p.commit('a', { term: 1, epoch: 2, acked: true, offsets: { epoch: 2, maxConnId: c, conns: [{ conn: c, inConsumed: 0, outProduced: 0, closed: true }] } }, 2);
    expect(ofType(p.takeActions(), 'closeClient')).toHaveLength(1);
    p.clientData(c, b('late'), 3);
    p.clientClose(c, 3);
    expect(p.takeActions()).toEqual([]);
    expect(() => p.clientData(99, b('x'), 3)).toThrow(expect.objectContaining({ code: 'FTVM_ERR_CORE_UNKNOWN_CONN' }));
  });

  it('refuses an event naming a node it was not configured with', () => {
    const p = setup();
    expect(() => p.nodeUp('z', 1)).toThrow(expect.objectContaining({ code: 'FTVM_ERR_CORE_UNKNOWN_NODE', message: expect.stringMatching(/unknown node z \(known: a, b\)/) }));
  });

  it('denies a promote request while it still hears the active primary (witness rule)', () => {
    const p = setup();
    p.promoteRequest('b', { term: 1, committedEpoch: 1 }, 50);
    expect(ofType(p.takeActions(), 'denyPromote')).toHaveLength(1);
    p.promoteRequest('b', { term: 1, committedEpoch: 1 }, 150);
    expect(ofType(p.takeActions(), 'sendPromote')).toEqual([{ type: 'sendPromote', node: 'b', term: 2 }]);
  });

  it('fences a second node claiming to be primary in the current term', () => {
    const p = setup();
    p.nodeUp('b', 1);
    p.nodeHello('b', { role: 'primary', term: 1, live: none }, 1);
    expect(ofType(p.takeActions(), 'sendFence')).toEqual([{ type: 'sendFence', node: 'b', term: 1 }]);
    expect(p.active).toBe('a');
  });

  it('takes a silent primary back when it speaks again and no node could be promoted, forwarding what it missed', () => {
    const p = setup({}, 0);
    const c = p.clientOpen(1);
    p.tick(200);
    expect(p.state).toBe('lost');
    p.clientData(c, b('late'), 201);
    p.takeActions();
    p.nodeStatus('a', { term: 1 }, 202);
    const acts = p.takeActions();
    expect(p.state).toBe('active');
    expect(ofType(acts, 'forwardInput').map((f) => td.decode(f.bytes))).toEqual(['late']);
  });
});

describe('ProxyCore flow control', () => {
  it('pauses a client whose logged input exceeds its limit and resumes it once commits trim the log', () => {
    const p = setup({ maxConnInputLogBytes: 10, maxInputLogBytes: 1000 });
    const c = p.clientOpen(1);
    p.takeActions();
    p.clientData(c, b('0123456789'), 1);
    expect(ofType(p.takeActions(), 'pauseClient')).toHaveLength(0);
    p.clientData(c, b('a'), 1);
    expect(ofType(p.takeActions(), 'pauseClient')).toEqual([{ type: 'pauseClient', conn: c }]);
    p.commit('a', { term: 1, epoch: 2, acked: true, offsets: { epoch: 2, maxConnId: c, conns: [{ conn: c, inConsumed: 11, outProduced: 0, closed: false }] } }, 2);
    expect(ofType(p.takeActions(), 'resumeClient')).toEqual([{ type: 'resumeClient', conn: c }]);
  });

  it('pauses every client when the total log exceeds its limit, and refuses input past twice the limit', () => {
    const p = setup({ maxConnInputLogBytes: 100, maxInputLogBytes: 10 });
    const c1 = p.clientOpen(1);
    const c2 = p.clientOpen(1);
    p.takeActions();
    p.clientData(c1, b('0123456789X'), 1);
    expect(ofType(p.takeActions(), 'pauseClient').map((a) => a.conn).sort()).toEqual([c1, c2]);
    expect(() => p.clientData(c2, b('0123456789'), 1)).toThrow(expect.objectContaining({ code: 'FTVM_ERR_CORE_INPUT_LOG_FULL' }));
  });

  it('pauses the active node when held output exceeds its limit', () => {
    const p = setup({ maxHeldOutputBytes: 4 });
    const c = p.clientOpen(1);
    p.output('a', { term: 1, epoch: 2, conn: c, offset: 0, bytes: b('12345') }, 2);
    expect(ofType(p.takeActions(), 'pauseNode')).toEqual([{ type: 'pauseNode', node: 'a' }]);
  });

  it('refuses output past twice the held limit and connections past maxConns', () => {
    const p = setup({ maxHeldOutputBytes: 4, maxConns: 1 });
    const c = p.clientOpen(1);
    expect(() => p.output('a', { term: 1, epoch: 2, conn: c, offset: 0, bytes: b('123456789') }, 2)).toThrow(
      expect.objectContaining({ code: 'FTVM_ERR_CORE_OUTPUT_HELD_FULL' }),
    );
    expect(() => p.clientOpen(2)).toThrow(expect.objectContaining({ code: 'FTVM_ERR_CORE_CONN_LIMIT' }));
  });

  it('rejects output that skips bytes of the stream', () => {
    const p = setup();
    const c = p.clientOpen(1);
    expect(() => p.output('a', { term: 1, epoch: 2, conn: c, offset: 3, bytes: b('x') }, 2)).toThrow(
      expect.objectContaining({ code: 'FTVM_ERR_CORE_STREAM_GAP' }),
    );
  });

  it('validates its options, naming the option', () => {
    expect(() => new ProxyCore({ nodes: [] })).toThrow(/proxy\.nodes/);
    expect(() => new ProxyCore({ nodes: ['a'], failoverTimeoutMs: 0 })).toThrow(/proxy\.failoverTimeoutMs must be > 0/);
  });
});
