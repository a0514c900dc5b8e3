/**
 * What one request costs inside the pure machines (no I/O): the proxy logging input,
 * holding output and releasing it on commit; the primary ending, tracking and committing
 * an epoch. These bound how many epochs/s and requests/s the runtimes can drive.
 *
 * Run: npx vitest bench --run packages/core/bench
 */
import { bench, describe } from 'vitest';
import { PrimaryCore, ProxyCore, SecondaryCore, adaptive } from '../src/index.js';

const req = new Uint8Array(64);
const rep = new Uint8Array(64);

describe('ProxyCore', () => {
  const conns = 100;
  const p = new ProxyCore({ nodes: ['a', 'b'] });
  p.nodeUp('a', 0);
  p.nodeHello('a', { role: 'primary', term: 1, live: { epoch: 0, maxConnId: 0, conns: [] } }, 0);
  const ids = Array.from({ length: conns }, () => p.clientOpen(0));
  // A checkpoint lists every open connection (the VMM contract), so a commit costs O(conns).
  const state = ids.map((conn) => ({ conn, inConsumed: 0, outProduced: 0, closed: false }));
  let epoch = 0;
  p.takeActions();
  bench(`input + output + commit of one 64-byte request (${conns} open connections)`, () => {
    const s = state[epoch % conns]!;
    epoch++;
    p.clientData(s.conn, req, epoch);
    p.output('a', { term: 1, epoch, conn: s.conn, offset: s.outProduced, bytes: rep }, epoch);
    s.inConsumed += 64;
    s.outProduced += 64;
    p.commit('a', { term: 1, epoch, acked: true, offsets: { epoch, maxConnId: ids.at(-1)!, conns: state } }, epoch);
    p.takeActions();
  });
});

describe('PrimaryCore + SecondaryCore', () => {
  const pr = new PrimaryCore({ term: 1, nowMs: 0, policy: adaptive({ minGapMs: 0 }) });
  const sc = new SecondaryCore({ nowMs: 0 });
  const offsets = { epoch: 0, maxConnId: 1, conns: [{ conn: 1, inConsumed: 0, outProduced: 0, closed: false }] };
  pr.secondaryConnected(0);
  let now = 0;
  // Drive the sync epoch to protected.
  pr.takeActions();
  pr.epochCollected({ epoch: 1, nowMs: 0, bytes: 4096, offsets: { ...offsets, epoch: 1 } });
  sc.begin({ term: 1, epoch: 1, full: true, nowMs: 0 });
  sc.end({ term: 1, epoch: 1, pageCount: 0, digestOk: true, nowMs: 0 });
  pr.ack({ term: 1, epoch: 1, nowMs: 0 });
  pr.takeActions();
  sc.takeActions();
  bench('one protected epoch: output, collect, stage 1 batch, apply, ack, commit', () => {
    now += 1;
    const e = pr.runningEpoch;
    pr.outputProduced({ epoch: e, nowMs: now });
    pr.epochCollected({ epoch: e, nowMs: now, bytes: 4096, offsets: { ...offsets, epoch: e } });
    sc.begin({ term: 1, epoch: e, full: false, nowMs: now });
    sc.pages({ term: 1, epoch: e, seq: 0, pageCount: 1, bytes: 4096, nowMs: now });
    sc.end({ term: 1, epoch: e, pageCount: 1, digestOk: true, nowMs: now });
    pr.ack({ term: 1, epoch: e, nowMs: now });
    pr.takeActions();
    sc.takeActions();
  });
});
