import { describe, expect, it } from 'vitest';
import { RetainedOutput } from '@ftvm/secondary';

const chunk = (conn: number, epoch: number, offset: number) => ({ conn, epoch, offset, data: new Uint8Array([epoch, conn]) });

describe('retained output', () => {
  it("gives an epoch's chunks in order, with later epochs' chunks already added, and after confirms", () => {
    const r = new RetainedOutput();
    r.add([chunk(1, 3, 0), chunk(2, 3, 0), chunk(1, 4, 2), chunk(2, 4, 2), chunk(1, 4, 4), chunk(1, 5, 6)]);
    expect(r.ofEpoch(4).map((c) => [c.conn, c.offset])).toEqual([[1, 2], [2, 2], [1, 4]]);
    expect(r.ofEpoch(3)).toHaveLength(2);
    expect(r.ofEpoch(5)).toHaveLength(1);
    expect(r.ofEpoch(2)).toEqual([]);
    expect(r.ofEpoch(6)).toEqual([]);
    r.confirm(3);
    expect(r.ofEpoch(3)).toEqual([]);
    expect(r.ofEpoch(4)).toHaveLength(3);
    expect(r.bytes).toBe(8);
  });

  it('still finds every chunk of an epoch when chunks were added out of epoch order', () => {
    const r = new RetainedOutput();
    r.add([chunk(1, 5, 0), chunk(1, 3, 0), chunk(2, 5, 0)]);
    expect(r.ofEpoch(5).map((c) => c.conn)).toEqual([1, 2]);
    expect(r.ofEpoch(3)).toHaveLength(1);
    r.clear();
    r.add([chunk(1, 7, 0), chunk(2, 7, 0)]);
    expect(r.ofEpoch(7)).toHaveLength(2);
  });
});
