import { describe, expect, it } from 'vitest';
import { SecondaryCore, type SecondaryAction } from '../src/index.js';

const types = (a: SecondaryAction[]) => a.map((x) => x.type);

function withImage(epoch = 1, term = 1) {
  const s = new SecondaryCore({ nowMs: 0, primaryTimeoutMs: 100, reportIntervalMs: 0 });
  s.primaryConnected(0);
  s.begin({ term, epoch, full: true, nowMs: 0 });
  s.pages({ term, epoch, seq: 0, pageCount: 2, bytes: 8192, nowMs: 0 });
  s.end({ term, epoch, pageCount: 2, digestOk: true, nowMs: 0 });
  s.takeActions();
  return s;
}

describe('SecondaryCore', () => {
  it('applies a complete verified checkpoint, then acks it (apply before ack)', () => {
    const s = new SecondaryCore({ nowMs: 0, reportIntervalMs: 0 });
    s.begin({ term: 1, epoch: 1, full: true, nowMs: 0 });
    s.pages({ term: 1, epoch: 1, seq: 0, pageCount: 1, bytes: 10, nowMs: 0 });
    s.pages({ term: 1, epoch: 1, seq: 1, pageCount: 1, bytes: 10, nowMs: 0 });
    s.end({ term: 1, epoch: 1, pageCount: 2, digestOk: true, nowMs: 0 });
    expect(types(s.takeActions())).toEqual(['stageBegin', 'stagePages', 'stagePages', 'apply', 'ack', 'reportCommitted']);
    expect(s.committedEpoch).toBe(1);
    expect(s.state).toBe('standby');
  });

  it('never applies a partial checkpoint: a new begin discards the staging', () => {
    const s = withImage();
    s.begin({ term: 1, epoch: 2, full: false, nowMs: 1 });
    s.pages({ term: 1, epoch: 2, seq: 0, pageCount: 1, bytes: 10, nowMs: 1 });
    s.begin({ term: 1, epoch: 2, full: false, nowMs: 2 });
    const a = s.takeActions();
    expect(types(a)).toEqual(['stageBegin', 'stagePages', 'stageDiscard', 'stageBegin']);
    expect(s.committedEpoch).toBe(1);
  });

  it('nacks a missing page batch and ignores the rest of that checkpoint', () => {
    const s = withImage();
    s.begin({ term: 1, epoch: 2, full: false, nowMs: 1 });
    s.pages({ term: 1, epoch: 2, seq: 1, pageCount: 1, bytes: 10, nowMs: 1 });
    s.pages({ term: 1, epoch: 2, seq: 2, pageCount: 1, bytes: 10, nowMs: 1 });
    s.end({ term: 1, epoch: 2, pageCount: 3, digestOk: true, nowMs: 1 });
    const a = s.takeActions();
    expect(types(a)).toEqual(['stageBegin', 'stageDiscard', 'nack']);
    expect(a[2]).toMatchObject({ type: 'nack', epoch: 2, code: 'FTVM_ERR_CORE_CHECKPOINT_GAP' });
    expect(s.committedEpoch).toBe(1);
  });

  it('nacks a checkpoint whose digest does not verify and keeps the old image', () => {
    const s = withImage();
    s.begin({ term: 1, epoch: 2, full: false, nowMs: 1 });
    s.end({ term: 1, epoch: 2, pageCount: 0, digestOk: false, nowMs: 1 });
    expect(s.takeActions().at(-1)).toMatchObject({ type: 'nack', code: 'FTVM_ERR_CORE_DIGEST_MISMATCH' });
    expect(s.committedEpoch).toBe(1);
  });

  it('asks for a full sync when a delta does not follow its image', () => {
    const s = withImage(5);
    s.begin({ term: 1, epoch: 7, full: false, nowMs: 1 });
    expect(s.takeActions()).toMatchObject([{ type: 'nack', epoch: 7, code: 'FTVM_ERR_CORE_NEED_FULL_SYNC' }]);
    const fresh = new SecondaryCore({ nowMs: 0 });
    fresh.begin({ term: 1, epoch: 1, full: false, nowMs: 1 });
    expect(fresh.takeActions()).toMatchObject([{ type: 'nack', code: 'FTVM_ERR_CORE_NEED_FULL_SYNC' }]);
  });

  it('refuses checkpoints of an older term and drops staging when a newer term appears', () => {
    const s = withImage(1, 2);
    s.begin({ term: 1, epoch: 2, full: true, nowMs: 1 });
    expect(s.takeActions()).toMatchObject([{ type: 'reject', term: 2 }]);
    s.begin({ term: 2, epoch: 2, full: false, nowMs: 1 });
    s.fence({ term: 3 });
    expect(types(s.takeActions())).toEqual(['stageBegin', 'stageDiscard']);
    s.end({ term: 2, epoch: 2, pageCount: 0, digestOk: true, nowMs: 2 });
    expect(types(s.takeActions())).toEqual(['reject']);
    expect(s.committedEpoch).toBe(1);
  });

  it('refuses a checkpoint larger than maxStagingBytes', () => {
    const s = new SecondaryCore({ nowMs: 0, maxStagingBytes: 100 });
    s.begin({ term: 1, epoch: 1, full: true, nowMs: 0 });
    s.pages({ term: 1, epoch: 1, seq: 0, pageCount: 1, bytes: 101, nowMs: 0 });
    expect(s.takeActions().at(-1)).toMatchObject({ type: 'nack', code: 'FTVM_ERR_CORE_STAGING_LIMIT' });
  });

  it('asks to be promoted after primaryTimeoutMs of silence, not before, and not again within the timeout', () => {
    const s = withImage();
    s.tick(99);
    expect(types(s.takeActions())).not.toContain('promoteRequest');
    s.tick(100);
    expect(s.takeActions()).toContainEqual(expect.objectContaining({ type: 'promoteRequest', term: 1, committedEpoch: 1 }));
    s.tick(150);
    expect(types(s.takeActions())).not.toContain('promoteRequest');
    s.tick(200);
    expect(types(s.takeActions())).toContain('promoteRequest');
  });

  it('asks less often each time the proxy refuses, up to 30 s, marks repeats, and starts over when a primary connects', () => {
    const s = withImage();
    const asks: number[] = [];
    for (let t = 100; t <= 200_000; t += 50) {
      for (const a of s.takeActions()) if (a.type === 'promoteRequest') {
        expect(a.repeat).toBe(asks.length > 0);
        asks.push(t - 50);
        // Every request is refused (a node a migration left behind: another node serves a newer term).
        s.promoteDenied({ term: 2, reason: 'the proxy still hears c' });
      }
      s.tick(t);
    }
    const gaps = asks.slice(1).map((t, i) => t - asks[i]!);
    expect(gaps.slice(0, 5)).toEqual([200, 400, 800, 1600, 3200]);
    expect(Math.max(...gaps)).toBe(30_000);
    expect(s.term).toBe(2);
    expect(s.takeActions().filter((a) => a.type === 'promoteDenied').length).toBeLessThanOrEqual(1);
    s.primaryConnected(200_000);
    s.primaryDisconnected(200_000);
    s.tick(200_000);
    expect(s.takeActions()).toContainEqual(expect.objectContaining({ type: 'promoteRequest', repeat: false }));
    s.promoteDenied({ term: 2, reason: 'x' });
    s.tick(200_100);
    s.tick(200_200);
    expect(types(s.takeActions())).toEqual(expect.arrayContaining(['promoteDenied', 'promoteRequest']));
  });

  it('restores its committed image when promoted, discarding a partial checkpoint, and takes no more checkpoints', () => {
    const s = withImage(4);
    s.begin({ term: 1, epoch: 5, full: false, nowMs: 1 });
    s.takeActions();
    s.promote({ term: 2, nowMs: 2 });
    expect(s.takeActions()).toEqual([
      { type: 'stageDiscard', reason: 'promoted in term 2' },
      { type: 'restore', term: 2, epoch: 4 },
    ]);
    s.end({ term: 1, epoch: 5, pageCount: 0, digestOk: true, nowMs: 3 });
    expect(types(s.takeActions())).toEqual(['reject']);
    expect(s.state).toBe('promoted');
  });

  it('refuses promotion without a committed image or with a stale term', () => {
    const empty = new SecondaryCore({ nowMs: 0 });
    empty.promote({ term: 1, nowMs: 0 });
    expect(empty.takeActions()).toMatchObject([{ type: 'refusePromote', reason: 'no committed image' }]);
    const s = withImage(1, 3);
    s.promote({ term: 3, nowMs: 0 });
    expect(s.takeActions()).toMatchObject([{ type: 'refusePromote' }]);
  });
});
