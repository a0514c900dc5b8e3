import { describe, expect, it } from 'vitest';
import { PrimaryCore, adaptive, periodic, syncIo, type PrimaryAction, type PrimaryOptions, type StateOffsets } from '../src/index.js';

const offs = (epoch: number, out = 0): StateOffsets => ({ epoch, maxConnId: 1, conns: [{ conn: 1, inConsumed: epoch, outProduced: out, closed: false }] });
const types = (a: PrimaryAction[]) => a.map((x) => x.type);
const ofType = <T extends PrimaryAction['type']>(actions: PrimaryAction[], t: T) =>
  actions.filter((a): a is Extract<PrimaryAction, { type: T }> => a.type === t);

/**
 * A primary that has synced a secondary (epoch 1 full, acked) and is protected. Its policy
 * pipelines output epochs (no group commit), so the window tests can fill the window.
 */
function protectedPrimary(opts: Partial<PrimaryOptions> = {}) {
  const p = new PrimaryCore({ term: 1, nowMs: 0, policy: adaptive({ minGapMs: 1, groupCommit: false }), ...opts });
  p.secondaryConnected(0);
  const a = p.takeActions();
  expect(types(a)).toEqual(['protectionChanged', 'startFullSync', 'collect']);
  p.epochCollected({ epoch: 1, nowMs: 0, bytes: 100, offsets: offs(1) });
  expect(ofType(p.takeActions(), 'sendCheckpoint')).toEqual([{ type: 'sendCheckpoint', term: 1, epoch: 1, full: true }]);
  p.ack({ term: 1, epoch: 1, nowMs: 1 });
  const b = p.takeActions();
  expect(ofType(b, 'protectionChanged')).toEqual([{ type: 'protectionChanged', protected: true, reason: 'secondary holds epoch 1' }]);
  expect(p.state).toBe('protected');
  return p;
}

describe('PrimaryCore', () => {
  it('starts unprotected, says so, and commits each epoch as soon as it is collected', () => {
    const p = new PrimaryCore({ term: 1, nowMs: 0, policy: adaptive() });
    expect(p.takeActions()).toEqual([{ type: 'protectionChanged', protected: false, reason: 'no secondary yet; running unprotected' }]);
    p.outputProduced({ epoch: 1, nowMs: 2 });
    expect(p.takeActions()).toEqual([{ type: 'collect', epoch: 1, full: false }]);
    p.epochCollected({ epoch: 1, nowMs: 2, bytes: 10, offsets: offs(1, 3) });
    expect(p.takeActions()).toEqual([{ type: 'commit', term: 1, epoch: 1, acked: false, offsets: offs(1, 3) }]);
  });

  it('holds the commit of a protected epoch until its ack, then commits it with its offsets', () => {
    const p = protectedPrimary();
    p.outputProduced({ epoch: 2, nowMs: 5 });
    expect(types(p.takeActions())).toEqual(['collect']);
    p.epochCollected({ epoch: 2, nowMs: 5, bytes: 10, offsets: offs(2, 7) });
    expect(p.takeActions()).toEqual([{ type: 'sendCheckpoint', term: 1, epoch: 2, full: false }]);
    p.ack({ term: 1, epoch: 2, nowMs: 6 });
    expect(ofType(p.takeActions(), 'commit')).toEqual([{ type: 'commit', term: 1, epoch: 2, acked: true, offsets: offs(2, 7) }]);
  });

  it('ignores acks from another term', () => {
    const p = protectedPrimary();
    p.outputProduced({ epoch: 2, nowMs: 5 });
    p.epochCollected({ epoch: 2, nowMs: 5, bytes: 10, offsets: offs(2) });
    p.takeActions();
    p.ack({ term: 0, epoch: 2, nowMs: 6 });
    expect(ofType(p.takeActions(), 'commit')).toHaveLength(0);
  });

  it('stops ending epochs when the window is full and ends the next one when an ack frees it', () => {
    const p = protectedPrimary({ maxInFlightEpochs: 2 });
    let now = 2;
    for (const e of [2, 3]) {
      p.outputProduced({ epoch: e, nowMs: now });
      p.epochCollected({ epoch: e, nowMs: now, bytes: 10, offsets: offs(e) });
      now += 2;
    }
    p.takeActions();
    p.outputProduced({ epoch: 4, nowMs: 10 });
    p.tick(100);
    expect(ofType(p.takeActions(), 'collect')).toHaveLength(0);
    expect(p.inFlightEpochs).toBe(2);
    p.ack({ term: 1, epoch: 2, nowMs: 101 });
    expect(ofType(p.takeActions(), 'collect')).toEqual([{ type: 'collect', epoch: 4, full: false }]);
  });

  it('group commit: output while a checkpoint is in flight gathers into one epoch, ended by the ack', () => {
    const p = protectedPrimary({ policy: adaptive({ groupCommit: true }) });
    p.outputProduced({ epoch: 2, nowMs: 2 });
    expect(ofType(p.takeActions(), 'collect')).toEqual([{ type: 'collect', epoch: 2, full: false }]);
    p.epochCollected({ epoch: 2, nowMs: 2, bytes: 10, offsets: offs(2) });
    p.takeActions();
    // Three replies while epoch 2 is in flight: no epoch ends, however long the ack takes.
    for (const t of [3, 4, 5]) p.outputProduced({ epoch: 3, nowMs: t });
    p.tick(30);
    expect(ofType(p.takeActions(), 'collect')).toHaveLength(0);
    expect(p.inFlightEpochs).toBe(1);
    p.ack({ term: 1, epoch: 2, nowMs: 31 });
    expect(ofType(p.takeActions(), 'collect')).toEqual([{ type: 'collect', epoch: 3, full: false }]);
  });

  it('commits several epochs with one commit when one ack covers them, keeping closes from earlier epochs', () => {
    const p = protectedPrimary();
    const e2: StateOffsets = { epoch: 2, maxConnId: 2, conns: [{ conn: 1, inConsumed: 1, outProduced: 1, closed: false }, { conn: 2, inConsumed: 0, outProduced: 4, closed: true }] };
    const e3: StateOffsets = { epoch: 3, maxConnId: 2, conns: [{ conn: 1, inConsumed: 2, outProduced: 2, closed: false }] };
    p.outputProduced({ epoch: 2, nowMs: 2 });
    p.epochCollected({ epoch: 2, nowMs: 2, bytes: 1, offsets: e2 });
    p.outputProduced({ epoch: 3, nowMs: 4 });
    p.epochCollected({ epoch: 3, nowMs: 4, bytes: 1, offsets: e3 });
    p.takeActions();
    p.ack({ term: 1, epoch: 3, nowMs: 5 });
    const [c] = ofType(p.takeActions(), 'commit');
    expect(c!.epoch).toBe(3);
    expect(c!.offsets.conns).toEqual([e3.conns[0], e2.conns[1]]);
  });

  it('goes on unprotected when the secondary is stuck (continue): commits in-flight epochs unacked, loudly', () => {
    const p = protectedPrimary({ secondaryTimeoutMs: 50, secondaryStallTimeoutMs: 50 });
    p.outputProduced({ epoch: 2, nowMs: 10 });
    // 0 bytes: no apply allowance on top of the 50 ms (see the size-scaled deadline test).
    p.epochCollected({ epoch: 2, nowMs: 10, bytes: 0, offsets: offs(2) });
    p.checkpointSent({ epoch: 2, nowMs: 10 });
    p.takeActions();
    // Heartbeats prove the secondary alive but do not excuse a missing ack.
    p.secondaryHeard(30);
    expect(p.nextDeadline()).toBe(60);
    p.tick(59);
    expect(ofType(p.takeActions(), 'commit')).toHaveLength(0);
    p.tick(60);
    const a = p.takeActions();
    expect(types(a).slice(0, 4)).toEqual(['cancelCheckpoints', 'protectionChanged', 'commit', 'disconnectSecondary']);
    expect(ofType(a, 'commit')[0]).toMatchObject({ epoch: 2, acked: false });
    expect(ofType(a, 'protectionChanged')[0]).toMatchObject({ protected: false });
    expect(p.state).toBe('unprotected');
  });

  it('gives a large checkpoint time to be applied before counting the secondary lost, but not a silent secondary', () => {
    // 1 MiB per ms: a 64 MiB epoch gets 64 ms on top of the 50 ms timeout.
    const p = protectedPrimary({ secondaryTimeoutMs: 50, secondaryStallTimeoutMs: 50, minApplyBytesPerMs: 1 << 20 });
    p.outputProduced({ epoch: 2, nowMs: 10 });
    p.epochCollected({ epoch: 2, nowMs: 10, bytes: 64 << 20, offsets: offs(2) });
    p.checkpointSent({ epoch: 2, nowMs: 20 });
    p.takeActions();
    for (let t = 30; t <= 130; t += 20) p.secondaryHeard(t); // alive, busy applying
    p.tick(133);
    expect(p.state).toBe('protected');
    p.tick(134);
    expect(p.state).toBe('unprotected');
    const lost = ofType(p.takeActions(), 'disconnectSecondary')[0]!;
    expect(lost.reason).toMatch(/no ack of epoch 2 \(67108864 bytes\) from the secondary for 114 ms/);
    // The same checkpoint with the secondary silent: lost after the plain timeout.
    const q = protectedPrimary({ secondaryTimeoutMs: 50, minApplyBytesPerMs: 1 << 20 });
    q.outputProduced({ epoch: 2, nowMs: 10 });
    q.epochCollected({ epoch: 2, nowMs: 10, bytes: 64 << 20, offsets: offs(2) });
    q.checkpointSent({ epoch: 2, nowMs: 20 });
    q.secondaryHeard(20);
    q.tick(69);
    expect(q.state).toBe('protected');
    q.tick(70);
    expect(q.state).toBe('unprotected');
    expect(ofType(q.takeActions(), 'disconnectSecondary')[0]!.reason).toMatch(/no progress from the secondary for 50 ms/);
  });

  it('never counts a slow secondary lost while it heartbeats: the window fills and epochs wait', () => {
    const p = protectedPrimary({ secondaryTimeoutMs: 50, maxInFlightEpochs: 2 });
    let now = 10;
    for (const e of [2, 3]) {
      p.outputProduced({ epoch: e, nowMs: now });
      p.epochCollected({ epoch: e, nowMs: now, bytes: 10, offsets: offs(e) });
      p.checkpointSent({ epoch: e, nowMs: now });
      now += 5;
    }
    p.takeActions();
    // 5 s of heartbeats and no ack: slow, not dead. Output waits (no epoch ends: window full).
    for (; now < 5000; now += 20) {
      p.secondaryHeard(now);
      p.outputProduced({ epoch: 4, nowMs: now });
      p.tick(now);
    }
    const a = p.takeActions();
    expect(ofType(a, 'disconnectSecondary')).toEqual([]);
    expect(ofType(a, 'collect')).toEqual([]);
    expect(p.isProtected).toBe(true);
    p.ack({ term: 1, epoch: 3, nowMs: now });
    expect(ofType(p.takeActions(), 'collect')).toEqual([{ type: 'collect', epoch: 4, full: false }]);
  });

  it('counts a secondary that stays silent as lost even with nothing in flight', () => {
    const p = protectedPrimary({ secondaryTimeoutMs: 50, policy: periodic({ intervalMs: 1000 }) });
    p.secondaryHeard(20);
    p.tick(69);
    expect(p.state).toBe('protected');
    p.tick(70);
    expect(p.state).toBe('unprotected');
    expect(types(p.takeActions())).toContain('disconnectSecondary');
  });

  it('holds output forever when the secondary is lost under block, and ends no epoch until one returns', () => {
    const p = protectedPrimary({ onSecondaryLost: 'block' });
    p.outputProduced({ epoch: 2, nowMs: 10 });
    p.epochCollected({ epoch: 2, nowMs: 10, bytes: 1, offsets: offs(2) });
    p.takeActions();
    p.secondaryDisconnected(11);
    const a = p.takeActions();
    expect(ofType(a, 'commit')).toHaveLength(0);
    expect(ofType(a, 'protectionChanged')[0]!.reason).toMatch(/output held \(block\)/);
    p.outputProduced({ epoch: 3, nowMs: 12 });
    p.tick(10_000);
    expect(p.takeActions()).toEqual([]);
    expect(p.state).toBe('blocked');
    p.secondaryConnected(10_001);
    expect(p.takeActions()).toEqual([{ type: 'startFullSync', epoch: 3 }, { type: 'collect', epoch: 3, full: true }]);
    p.epochCollected({ epoch: 3, nowMs: 10_002, bytes: 1, offsets: offs(3) });
    p.ack({ term: 1, epoch: 3, nowMs: 10_003 });
    expect(ofType(p.takeActions(), 'commit')).toMatchObject([{ epoch: 3, acked: true }]);
  });

  it('sync-io pauses the vCPU before collecting an epoch with output and resumes it only after the ack', () => {
    const p = protectedPrimary({ policy: syncIo() });
    p.outputProduced({ epoch: 2, nowMs: 3 });
    expect(types(p.takeActions())).toEqual(['pauseVcpu', 'collect']);
    p.epochCollected({ epoch: 2, nowMs: 3, bytes: 1, offsets: offs(2) });
    expect(types(p.takeActions())).toEqual(['sendCheckpoint']);
    expect(p.vcpuHeld).toBe(true);
    p.ack({ term: 1, epoch: 2, nowMs: 4 });
    expect(types(p.takeActions())).toEqual(['commit', 'resumeVcpu']);
  });

  it('restarts with a full sync when the secondary refuses a checkpoint', () => {
    const p = protectedPrimary();
    p.outputProduced({ epoch: 2, nowMs: 3 });
    p.epochCollected({ epoch: 2, nowMs: 3, bytes: 1, offsets: offs(2) });
    p.takeActions();
    p.nack({ term: 1, epoch: 2, code: 'FTVM_ERR_CORE_DIGEST_MISMATCH', nowMs: 4 });
    const a = p.takeActions();
    expect(types(a)).toEqual(['cancelCheckpoints', 'protectionChanged', 'commit', 'startFullSync', 'collect']);
    expect(ofType(a, 'collect')[0]).toEqual({ type: 'collect', epoch: 3, full: true });
    expect(p.state).toBe('syncing');
  });

  it('gives up on a secondary that refuses three full checkpoints in a row', () => {
    const p = new PrimaryCore({ term: 1, nowMs: 0 });
    p.secondaryConnected(0);
    for (let e = 1; e <= 3; e++) {
      p.takeActions();
      p.epochCollected({ epoch: e, nowMs: e, bytes: 1, offsets: offs(e) });
      p.nack({ term: 1, epoch: e, code: 'FTVM_ERR_CORE_STAGING_LIMIT', nowMs: e });
    }
    const a = p.takeActions();
    expect(types(a)).toContain('disconnectSecondary');
    expect(types(a)).not.toContain('startFullSync');
    expect(p.state).toBe('unprotected');
  });

  it('ends epochs on the periodic interval whatever the output', () => {
    const p = new PrimaryCore({ term: 1, nowMs: 0, policy: periodic({ intervalMs: 100 }) });
    p.takeActions();
    p.outputProduced({ epoch: 1, nowMs: 1 });
    expect(p.takeActions()).toEqual([]);
    expect(p.nextDeadline()).toBe(100);
    p.tick(100);
    expect(types(p.takeActions())).toEqual(['collect']);
  });

  it('stops for good when fenced by a newer term', () => {
    const p = protectedPrimary();
    p.fenced(2, 5);
    expect(types(p.takeActions())).toEqual(['cancelCheckpoints', 'stop']);
    p.outputProduced({ epoch: 2, nowMs: 6 });
    p.tick(1000);
    expect(p.takeActions()).toEqual([]);
    expect(p.state).toBe('stopped');
  });

  it('stops on a fence for its own term (the proxy gave the term to another node) but ignores an older one', () => {
    const p = new PrimaryCore({ term: 3, nowMs: 0 });
    p.takeActions();
    p.fenced(2, 1);
    expect(p.state).toBe('unprotected');
    p.fenced(3, 2);
    expect(p.state).toBe('stopped');
  });

  it('rejects an epochCollected it did not ask for', () => {
    const p = new PrimaryCore({ term: 1, nowMs: 0 });
    expect(() => p.epochCollected({ epoch: 1, nowMs: 0, bytes: 0, offsets: offs(1) })).toThrow(expect.objectContaining({ code: 'FTVM_ERR_CORE_ORDER' }));
  });

  it('validates options, naming them', () => {
    expect(() => new PrimaryCore({ term: 1, nowMs: 0, maxInFlightEpochs: 0 })).toThrow(/primary\.maxInFlightEpochs must be >= 1/);
    expect(() => new PrimaryCore({ term: 1, nowMs: 0, onSecondaryLost: 'panic' as 'block' })).toThrow(/primary\.onSecondaryLost must be one of continue, block/);
  });
});
