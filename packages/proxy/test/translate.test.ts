import { describe, expect, it } from 'vitest';
import type { ProxyAction } from '@ftvm/core';
import { messageForAction, parseStateOffsets, translateNodeMessage } from '../src/index.js';

const none = new Uint8Array(0);
const live = { epoch: 4, maxConnId: 2, conns: [{ conn: 2, inConsumed: 10, outProduced: 7, closed: false }] };

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('translateNodeMessage', () => {
  it('turns a primary status into a hello with its live offsets', () => {
    expect(translateNodeMessage({ t: 'status', role: 'primary', term: 3, epoch: 4, state: 'active', detail: { live } }, none)).toEqual({
      kind: 'hello',
      hello: { role: 'primary', term: 3, live },
    });
  });

  it('turns any other status into a secondary hello with the committed epoch', () => {
    for (const role of ['secondary', 'receiver', 'cli'] as const) {
      expect(translateNodeMessage({ t: 'status', role, term: 2, epoch: 9, state: 'standby' }, none)).toEqual({
        kind: 'hello',
        hello: { role: 'secondary', term: 2, committedEpoch: 9 },
      });
    }
  });

  it('passes a secondary image term from status.detail.imageTerm and refuses a bad one', () => {
    expect(translateNodeMessage({ t: 'status', role: 'secondary', term: 4, epoch: 9, state: 'standby', detail: { imageTerm: 3 } }, none)).toEqual({
      kind: 'hello',
      hello: { role: 'secondary', term: 4, committedEpoch: 9, imageTerm: 3 },
    });
    const bad = { t: 'status' as const, role: 'secondary' as const, term: 4, epoch: 9, state: 'standby', detail: { imageTerm: 'x' } };
    expect(codeOf(() => translateNodeMessage(bad, none))).toBe('FTVM_ERR_PROXY_BAD_MESSAGE');
  });

  it('refuses a primary status whose live offsets are missing or malformed', () => {
    const bad = [
      undefined,
      { lagMs: 3 },
      { live: null },
      { live: { ...live, epoch: -1 } },
      { live: { ...live, maxConnId: 1.5 } },
      { live: { ...live, conns: 'x' } },
      { live: { ...live, conns: [{ conn: 1, inConsumed: 0, outProduced: 0 }] } },
      { live: { ...live, conns: [live.conns[0], live.conns[0]] } },
    ];
    for (const detail of bad) {
      const msg = { t: 'status' as const, role: 'primary' as const, term: 1, epoch: 0, state: 'active', ...(detail === undefined ? {} : { detail }) };
      expect(codeOf(() => translateNodeMessage(msg as never, none))).toBe('FTVM_ERR_PROXY_BAD_MESSAGE');
    }
  });

  it('maps heartbeat, output, commit, promote and offsets to their core events', () => {
    const bytes = new Uint8Array([1, 2, 3]);
    expect(translateNodeMessage({ t: 'heartbeat', term: 1, epoch: 5, sentAtMs: 0 }, none)).toEqual({ kind: 'status', term: 1, committedEpoch: 5 });
    expect(translateNodeMessage({ t: 'output', term: 1, conn: 2, epoch: 6, offset: 7 }, bytes)).toEqual({
      kind: 'output',
      ev: { term: 1, conn: 2, epoch: 6, offset: 7, bytes },
    });
    expect(translateNodeMessage({ t: 'commit', term: 1, epoch: 6, acked: false, maxConnId: 2, conns: live.conns }, none)).toEqual({
      kind: 'commit',
      ev: { term: 1, epoch: 6, acked: false, offsets: { epoch: 6, maxConnId: 2, conns: live.conns } },
    });
    expect(translateNodeMessage({ t: 'promote', term: 1, fromEpoch: 5, reason: 'silent' }, none)).toEqual({ kind: 'promoteRequest', term: 1, committedEpoch: 5 });
    expect(translateNodeMessage({ t: 'promote', term: 1 }, none)).toEqual({ kind: 'promoteRequest', term: 1, committedEpoch: 0 });
    expect(translateNodeMessage({ t: 'offsets', term: 2, epoch: 5, maxConnId: 2, conns: live.conns }, none)).toEqual({
      kind: 'promoted',
      term: 2,
      offsets: { epoch: 5, maxConnId: 2, conns: live.conns },
    });
  });

  it('ignores a node close and fence; a promote_deny is a refused promotion', () => {
    expect(translateNodeMessage({ t: 'close', term: 1, conn: 2, epoch: 3, offset: 4 }, none).kind).toBe('ignore');
    expect(translateNodeMessage({ t: 'fence', term: 1 }, none).kind).toBe('ignore');
    expect(translateNodeMessage({ t: 'promote_deny', term: 1, reason: 'no image' }, none)).toEqual({ kind: 'promoteRefused', term: 1, reason: 'no image' });
  });

  it('refuses messages only the proxy sends, and a commit listing a connection twice', () => {
    for (const msg of [
      { t: 'open', term: 0, conn: 1 },
      { t: 'input', term: 0, conn: 1, offset: 0 },
      { t: 'confirm', term: 0, epoch: 1 },
      { t: 'resend', term: 0, conns: [] },
      { t: 'commit', term: 0, epoch: 1, acked: true, maxConnId: 2, conns: [live.conns[0], live.conns[0]] },
    ]) {
      expect(codeOf(() => translateNodeMessage(msg as never, none))).toBe('FTVM_ERR_PROXY_BAD_MESSAGE');
    }
  });

  it('parseStateOffsets names the bad field', () => {
    expect(() => parseStateOffsets({ epoch: 1, maxConnId: 0, conns: [{ conn: 1, inConsumed: -4, outProduced: 0, closed: true }] }, 'x')).toThrow(/x\.conns\[0\]\.inConsumed/);
  });
});

describe('messageForAction', () => {
  it('maps every net action to its message', () => {
    const bytes = new Uint8Array([9]);
    const cases: [ProxyAction, unknown][] = [
      [{ type: 'forwardOpen', node: 'a', term: 1, conn: 3 }, { t: 'open', term: 1, conn: 3 }],
      [{ type: 'forwardInput', node: 'a', term: 1, conn: 3, offset: 5, bytes }, { t: 'input', term: 1, conn: 3, offset: 5 }],
      [{ type: 'forwardClose', node: 'a', term: 1, conn: 3, offset: 6 }, { t: 'close', term: 1, conn: 3, offset: 6 }],
      [{ type: 'sendPromote', node: 'b', term: 2 }, { t: 'promote', term: 2 }],
      [{ type: 'denyPromote', node: 'b', term: 2, reason: 'still hear a' }, { t: 'promote_deny', term: 2, reason: 'still hear a' }],
      [{ type: 'sendFence', node: 'a', term: 2 }, { t: 'fence', term: 2 }],
      [{ type: 'confirmCommit', node: 'a', term: 1, epoch: 8 }, { t: 'confirm', term: 1, epoch: 8 }],
      [
        { type: 'activeChanged', node: 'b', term: 2, reason: 'r', resendOutputFrom: [{ conn: 3, offset: 4 }] },
        { t: 'resend', term: 2, conns: [{ conn: 3, offset: 4 }] },
      ],
    ];
    for (const [action, msg] of cases) {
      const out = messageForAction(action)!;
      expect(out.msg).toEqual(msg);
      expect(out.node).toBe((action as { node: string }).node);
    }
    expect(messageForAction({ type: 'forwardInput', node: 'a', term: 1, conn: 3, offset: 5, bytes })!.payload).toBe(bytes);
  });

  it('sends nothing for client, flow-control and log actions, nor an activeChanged without resends', () => {
    const quiet: ProxyAction[] = [
      { type: 'writeClient', conn: 1, bytes: new Uint8Array(1) },
      { type: 'closeClient', conn: 1 },
      { type: 'pauseClient', conn: 1 },
      { type: 'resumeClient', conn: 1 },
      { type: 'pauseNode', node: 'a' },
      { type: 'resumeNode', node: 'a' },
      { type: 'failoverBlocked', reason: 'x' },
      { type: 'refused', node: 'a', what: 'output', reason: 'x' },
      { type: 'activeChanged', node: 'b', term: 2, reason: 'r', resendOutputFrom: [] },
      { type: 'activeChanged', node: undefined, term: 2, reason: 'lost', resendOutputFrom: [] },
    ];
    for (const a of quiet) expect(messageForAction(a)).toBeUndefined();
  });
});
