import { describe, expect, it } from 'vitest';
import { PrimaryCore, ProxyCore, adaptive, type PrimaryAction, type ProxyAction, type StateOffsets } from '../src/index.js';

const te = new TextEncoder();
const td = new TextDecoder();
const ofType = <A extends { type: string }, T extends A['type']>(actions: A[], t: T) => actions.filter((a): a is Extract<A, { type: T }> => a.type === t);
const offs = (epoch: number, conns: { conn: number; inConsumed: number; outProduced: number }[]): StateOffsets => ({
  epoch,
  maxConnId: Math.max(0, ...conns.map((c) => c.conn)),
  conns: conns.map((c) => ({ ...c, closed: false })),
});

/** A protected primary at epoch 1 (full sync acked). */
function protectedPrimary(opts: { maxGuestFaults?: number; guestFaultWindowMs?: number } = {}) {
  const p = new PrimaryCore({ term: 3, nowMs: 0, policy: adaptive({ minGapMs: 1 }), ...opts });
  p.secondaryConnected(0);
  p.takeActions();
  p.epochCollected({ epoch: 1, nowMs: 0, bytes: 100, offsets: offs(1, []) });
  p.ack({ term: 3, epoch: 1, nowMs: 1 });
  p.takeActions();
  expect(p.isProtected).toBe(true);
  return p;
}

describe('PrimaryCore: a guest fault', () => {
  it('voids the collect under way and rolls back to the last collected epoch, same term, still protected', () => {
    const p = protectedPrimary();
    p.outputProduced({ epoch: 2, nowMs: 5 });
    expect(ofType(p.takeActions(), 'collect')).toEqual([{ type: 'collect', epoch: 2, full: false }]);
    p.guestFaulted({ conn: 7, code: 'FTVM_ERR_GUEST_TRAP', nowMs: 6 });
    expect(p.takeActions()).toEqual([{ type: 'rollback', term: 3, epoch: 1, conn: 7, code: 'FTVM_ERR_GUEST_TRAP' }]);
    expect(p.recovering).toBe('rollingBack');
    // Nothing is collected while the vCPU is restored, whatever happens meanwhile.
    p.outputProduced({ epoch: 2, nowMs: 7 });
    p.tick(8);
    expect(ofType(p.takeActions(), 'collect')).toEqual([]);
    p.guestRestored(9);
    expect(p.recovering).toBeUndefined();
    p.outputProduced({ epoch: 2, nowMs: 10 });
    expect(ofType(p.takeActions(), 'collect')).toEqual([{ type: 'collect', epoch: 2, full: false }]);
    p.epochCollected({ epoch: 2, nowMs: 11, bytes: 10, offsets: offs(2, []) });
    p.ack({ term: 3, epoch: 2, nowMs: 12 });
    expect(ofType(p.takeActions(), 'commit')).toEqual([{ type: 'commit', term: 3, epoch: 2, acked: true, offsets: offs(2, []) }]);
    expect(p.state).toBe('protected');
    expect(p.isProtected).toBe(true);
    expect(p.term).toBe(3);
  });

  it('starts a full sync again when the fault voided its collect', () => {
    const p = new PrimaryCore({ term: 1, nowMs: 0, policy: adaptive() });
    p.secondaryConnected(0);
    expect(ofType(p.takeActions(), 'collect')).toEqual([{ type: 'collect', epoch: 1, full: true }]);
    p.guestFaulted({ conn: undefined, code: 'FTVM_ERR_GUEST_TIMEOUT', nowMs: 1 });
    expect(ofType(p.takeActions(), 'rollback')).toEqual([{ type: 'rollback', term: 1, epoch: 0, conn: undefined, code: 'FTVM_ERR_GUEST_TIMEOUT' }]);
    p.guestRestored(2);
    expect(ofType(p.takeActions(), 'collect')).toEqual([{ type: 'collect', epoch: 1, full: true }]);
  });

  it('holds a sync-io vCPU again after the restore when it waits for an older ack', () => {
    const p = protectedPrimary();
    p.startHandover(2);
    p.takeActions();
    p.guestFaulted({ conn: 1, code: 'FTVM_ERR_GUEST_TRAP', nowMs: 3 });
    // The handover's last epoch was void: it is aborted, the guest resumes after the restore.
    expect(ofType(p.takeActions(), 'handoverAborted')).toHaveLength(1);
    p.guestRestored(4);
    expect(ofType(p.takeActions(), 'pauseVcpu')).toEqual([]);
  });

  it('contains a guest that faults past its budget until the oldest fault leaves the window, keeping its image', () => {
    const p = protectedPrimary({ maxGuestFaults: 2, guestFaultWindowMs: 1000 });
    for (const t of [10, 20]) {
      p.guestFaulted({ conn: t, code: 'FTVM_ERR_GUEST_TRAP', nowMs: t });
      expect(ofType(p.takeActions(), 'rollback')).toHaveLength(1);
      p.guestRestored(t + 1);
      p.takeActions();
    }
    p.guestFaulted({ conn: 30, code: 'FTVM_ERR_GUEST_TRAP', nowMs: 30 });
    const a = p.takeActions();
    expect(ofType(a, 'rollback')).toEqual([]);
    expect(ofType(a, 'guestContained')).toEqual([expect.objectContaining({ type: 'guestContained', faults: 3, untilMs: 1010 })]);
    expect(p.recovering).toBe('contained');
    expect(p.nextDeadline()).toBeLessThanOrEqual(1010);
    p.secondaryHeard(500);
    p.tick(500);
    expect(ofType(p.takeActions(), 'rollback')).toEqual([]);
    p.secondaryHeard(1000);
    p.tick(1010);
    expect(ofType(p.takeActions(), 'rollback')).toEqual([{ type: 'rollback', term: 3, epoch: 1, conn: 30, code: 'FTVM_ERR_GUEST_TRAP' }]);
    expect(p.state).toBe('protected');
  });

  it('stops recovering when fenced', () => {
    const p = protectedPrimary();
    p.guestFaulted({ conn: 1, code: 'FTVM_ERR_GUEST_TRAP', nowMs: 1 });
    p.takeActions();
    p.fenced(4, 2);
    expect(p.recovering).toBeUndefined();
    p.guestRestored(3);
    expect(ofType(p.takeActions() as PrimaryAction[], 'collect')).toEqual([]);
  });
});

function written(actions: ProxyAction[], conn: number): string {
  return ofType(actions, 'writeClient').filter((a) => a.conn === conn).map((a) => td.decode(a.bytes)).join('');
}

function activeProxy() {
  const p = new ProxyCore({ nodes: ['a', 'b'], failoverTimeoutMs: 100 });
  p.nodeUp('a', 0);
  p.nodeHello('a', { role: 'primary', term: 1, live: { epoch: 0, maxConnId: 0, conns: [] } }, 0);
  p.nodeUp('b', 0);
  p.nodeHello('b', { role: 'secondary', term: 1, committedEpoch: 1 }, 0);
  p.takeActions();
  return p;
}

describe('ProxyCore: a rolled-back primary', () => {
  it('drops the held output of the void run and aborts the faulting connection, its uncommitted input never replayed', () => {
    const p = activeProxy();
    const good = p.clientOpen(1);
    const bad = p.clientOpen(1);
    p.clientData(good, te.encode('INCR\n'), 1);
    p.clientData(bad, te.encode('INCR\n'), 1);
    p.output('a', { term: 1, epoch: 2, conn: good, offset: 0, bytes: te.encode('1\n') }, 2);
    p.output('a', { term: 1, epoch: 2, conn: bad, offset: 0, bytes: te.encode('2\n') }, 2);
    p.clientData(bad, te.encode('POISON\n'), 3);
    p.output('a', { term: 1, epoch: 3, conn: good, offset: 2, bytes: te.encode('void\n') }, 3);
    p.takeActions();
    const at2 = offs(2, [{ conn: good, inConsumed: 5, outProduced: 2 }, { conn: bad, inConsumed: 5, outProduced: 2 }]);
    p.rolledBack('a', { term: 1, epoch: 2, conn: bad, offsets: at2 }, 4);
    expect(p.takeActions()).toEqual([]);
    expect(p.heldOutputBytes).toBe(4);
    expect(p.inputLogBytes).toBe(10); // the poison (7 bytes) is gone
    p.clientData(bad, te.encode('MORE\n'), 5); // dropped
    expect(p.inputLogBytes).toBe(10);
    // The restored guest produces its own output again from offset 2.
    p.output('a', { term: 1, epoch: 3, conn: good, offset: 2, bytes: te.encode('3\n') }, 6);
    p.commit('a', { term: 1, epoch: 3, acked: true, offsets: { epoch: 3, maxConnId: bad, conns: [{ conn: good, inConsumed: 5, outProduced: 4, closed: false }, { conn: bad, inConsumed: 5, outProduced: 2, closed: true }] } }, 7);
    const a = p.takeActions();
    expect(written(a, good)).toBe('1\n3\n');
    expect(written(a, bad)).toBe('2\n');
    expect(ofType(a, 'closeClient')).toEqual([{ type: 'closeClient', conn: bad }]);
    expect(p.term).toBe(1);
    expect(p.active).toBe('a');
  });

  it('replays an aborted connection to a promoted node only up to the rollback point, then closes it', () => {
    const p = activeProxy();
    const bad = p.clientOpen(1);
    p.clientData(bad, te.encode('INCR\n'), 1);
    p.clientData(bad, te.encode('POISON\n'), 2);
    p.takeActions();
    p.rolledBack('a', { term: 1, epoch: 2, conn: bad, offsets: offs(2, [{ conn: bad, inConsumed: 5, outProduced: 0 }]) }, 3);
    p.nodeDown('a', 4);
    expect(ofType(p.takeActions(), 'sendPromote')).toEqual([{ type: 'sendPromote', node: 'b', term: 2 }]);
    p.promoted('b', { term: 2, offsets: offs(1, [{ conn: bad, inConsumed: 0, outProduced: 0 }]) }, 5);
    const a = p.takeActions();
    expect(ofType(a, 'forwardInput').map((x) => td.decode(x.bytes))).toEqual(['INCR\n']);
    expect(ofType(a, 'forwardClose')).toEqual([{ type: 'forwardClose', node: 'b', term: 2, conn: bad, offset: 5 }]);
  });

  it('refuses a rollback from a node that is not the active primary', () => {
    const p = activeProxy();
    p.rolledBack('b', { term: 1, epoch: 1, conn: undefined, offsets: offs(1, []) }, 1);
    expect(ofType(p.takeActions(), 'refused')).toHaveLength(1);
  });
});

describe('ProxyCore: a fresh proxy with no primary', () => {
  it('promotes the secondary with the newest image failoverTimeoutMs after its first node link, above every term seen', () => {
    const p = new ProxyCore({ nodes: ['a', 'b'], failoverTimeoutMs: 100 });
    p.nodeUp('b', 10);
    p.nodeHello('b', { role: 'secondary', term: 4, committedEpoch: 9, imageTerm: 4 }, 10);
    expect(p.nextDeadline()).toBe(110);
    p.tick(60);
    expect(ofType(p.takeActions(), 'sendPromote')).toEqual([]);
    p.promoteRequest('b', { term: 4, committedEpoch: 9 }, 70);
    expect(ofType(p.takeActions(), 'sendPromote')).toEqual([]);
    p.tick(110);
    expect(ofType(p.takeActions(), 'sendPromote')).toEqual([{ type: 'sendPromote', node: 'b', term: 5 }]);
    p.promoted('b', { term: 5, offsets: offs(9, []) }, 120);
    expect(p.active).toBe('b');
    expect(p.acceptsClients).toBe(true);
  });

  it('adopts a primary that says hello in time, and promotes nobody', () => {
    const p = new ProxyCore({ nodes: ['a', 'b'], failoverTimeoutMs: 100 });
    p.nodeUp('b', 0);
    p.nodeHello('b', { role: 'secondary', term: 1, committedEpoch: 9 }, 0);
    p.nodeUp('a', 50);
    p.nodeHello('a', { role: 'primary', term: 1, live: { epoch: 10, maxConnId: 0, conns: [] } }, 50);
    p.tick(120);
    expect(ofType(p.takeActions(), 'sendPromote')).toEqual([]);
    expect(p.active).toBe('a');
  });

  it('says failover is blocked while no secondary holds an image, and promotes one as soon as it reports one', () => {
    const p = new ProxyCore({ nodes: ['a', 'b'], failoverTimeoutMs: 100 });
    p.nodeUp('b', 0);
    p.nodeHello('b', { role: 'secondary', term: 1, committedEpoch: 0 }, 0);
    p.tick(100);
    expect(ofType(p.takeActions(), 'failoverBlocked')).toHaveLength(1);
    expect(p.nextDeadline()).toBeUndefined();
    p.nodeStatus('b', { term: 1, committedEpoch: 3, imageTerm: 1 }, 150);
    expect(ofType(p.takeActions(), 'sendPromote')).toEqual([{ type: 'sendPromote', node: 'b', term: 2 }]);
  });
});
