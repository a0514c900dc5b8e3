import { describe, expect, it } from 'vitest';
import {
  CONN_ENTRY_BYTES, MAX_CONNS, ProtocolError, decodeFrame, encodeFrame, packConns, packOutput, unpackConns, unpackOutput, validateMessage,
  type ConnOffsets,
} from '@ftvm/protocol';

const codeOf = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return e instanceof ProtocolError ? e.code : `not a ProtocolError: ${String(e)}`;
  }
  return undefined;
};

const conns: ConnOffsets[] = [
  { conn: 1, inConsumed: 0, outProduced: 0, closed: false },
  { conn: 7, inConsumed: 2 ** 40, outProduced: Number.MAX_SAFE_INTEGER, closed: true },
  { conn: 2 ** 33, inConsumed: 12, outProduced: 345, closed: false },
];

describe('packed connection tables', () => {
  it('round-trip every field, through a commit frame too', () => {
    expect(unpackConns(packConns(conns))).toEqual(conns);
    expect(packConns(conns).length).toBe(conns.length * CONN_ENTRY_BYTES);
    const commit = { t: 'commit' as const, term: 3, epoch: 9, acked: true, maxConnId: 2 ** 33, conns };
    const { msg } = decodeFrame(encodeFrame(commit));
    expect(msg).toEqual(commit);
    const offsets = { t: 'offsets' as const, term: 3, epoch: 9, maxConnId: 7, conns: [] };
    expect(decodeFrame(encodeFrame(offsets)).msg).toEqual(offsets);
  });

  it('refuse, as a malformed frame, a table that is not whole entries, a bad number or flag, or maps on the wire', () => {
    const good = packConns(conns);
    expect(codeOf(() => unpackConns(good.subarray(0, good.length - 1)))).toBe('FTVM_ERR_FRAME_MALFORMED');
    for (const [at, v] of [[8, -1], [16, 1.5], [0, NaN], [24, 2], [CONN_ENTRY_BYTES + 8, 2 ** 53]] as const) {
      const bad = good.slice();
      new DataView(bad.buffer).setFloat64(at, v, true);
      expect(codeOf(() => unpackConns(bad)), `offset ${at} = ${v}`).toBe('FTVM_ERR_FRAME_MALFORMED');
    }
    // The version-2 form (one map per connection) is refused on the wire.
    expect(codeOf(() => validateMessage({ t: 'commit', term: 1, epoch: 1, acked: true, maxConnId: 1, conns }))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(() => validateMessage({ t: 'commit', term: 1, epoch: 1, acked: true, maxConnId: 1, conns })).toThrow('packed connection table');
    expect(codeOf(() => unpackConns(new Uint8Array((MAX_CONNS + 1) * CONN_ENTRY_BYTES)))).toBe('FTVM_ERR_FRAME_MALFORMED');
    // Encoding checks too: a caller's bad offset is a coded error, not a confused peer.
    expect(codeOf(() => encodeFrame({ t: 'commit', term: 1, epoch: 1, acked: true, maxConnId: 1, conns: [{ ...conns[0]!, inConsumed: -5 }] }))).toBe(
      'FTVM_ERR_FRAME_MALFORMED',
    );
  });
});

describe('packed output tables', () => {
  const chunks = [
    { conn: 1, epoch: 4, offset: 0, data: new Uint8Array([1, 2, 3]) },
    { conn: 2, epoch: 4, offset: 2 ** 35, data: new Uint8Array(0) },
    { conn: 1, epoch: 5, offset: 3, data: new Uint8Array(5000).fill(9) },
  ];

  it('round-trip chunks and their bytes, an empty table too', () => {
    const back = unpackOutput(packOutput(chunks));
    expect(back.map(({ conn, epoch, offset }) => ({ conn, epoch, offset }))).toEqual(chunks.map(({ conn, epoch, offset }) => ({ conn, epoch, offset })));
    back.forEach((c, i) => expect(Buffer.compare(c.data, chunks[i]!.data), `chunk ${i}`).toBe(0));
    expect(unpackOutput(packOutput([]))).toEqual([]);
  });

  it('refuse a truncated table, lengths past its end, trailing bytes and bad numbers', () => {
    const good = packOutput(chunks);
    expect(codeOf(() => unpackOutput(new Uint8Array(3)))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => unpackOutput(good.subarray(0, good.length - 1)))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => unpackOutput(Uint8Array.of(...good, 0)))).toBe('FTVM_ERR_FRAME_MALFORMED');
    const count = good.slice();
    new DataView(count.buffer).setUint32(0, 0xffffffff, true);
    expect(codeOf(() => unpackOutput(count))).toBe('FTVM_ERR_FRAME_MALFORMED');
    const len = good.slice();
    new DataView(len.buffer).setUint32(4 + 24, 0x7fffffff, true);
    expect(codeOf(() => unpackOutput(len))).toBe('FTVM_ERR_FRAME_MALFORMED');
    const neg = good.slice();
    new DataView(neg.buffer).setFloat64(4 + 16, -1, true);
    expect(codeOf(() => unpackOutput(neg))).toBe('FTVM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => unpackOutput([{ conn: 1 }]))).toBe('FTVM_ERR_FRAME_MALFORMED');
  });
});
