import { describe, expect, it } from 'vitest';
import { ByteQueue } from '../src/byte-queue.js';

const te = new TextEncoder();
const td = new TextDecoder();
const text = (cs: { bytes: Uint8Array }[]) => cs.map((c) => td.decode(c.bytes)).join('');

describe('ByteQueue', () => {
  it('takes bytes up to an offset inside a chunk, splitting it and keeping the rest addressable', () => {
    const q = new ByteQueue(10);
    q.push(te.encode('hello'), 1);
    q.push(te.encode('world'), 2);
    const taken = q.takeUpTo(17);
    expect(text(taken)).toBe('hellowo');
    expect(taken.map((c) => [c.offset, c.tag])).toEqual([[10, 1], [15, 2]]);
    expect([q.start, q.end, q.size]).toEqual([17, 20, 3]);
    expect(q.peekFrom(18).map((c) => [c.offset, td.decode(c.bytes)])).toEqual([[18, 'ld']]);
  });

  it('truncates from an offset inside a chunk and continues appending there', () => {
    const q = new ByteQueue(0);
    q.push(te.encode('abc'));
    q.push(te.encode('def'));
    q.truncate(4);
    expect([q.end, text(q.peekFrom(0))]).toEqual([4, 'abcd']);
    q.push(te.encode('X'));
    expect(text(q.peekFrom(0))).toBe('abcdX');
  });

  it('takes leading chunks by tag only while tags stay at or below the bound', () => {
    const q = new ByteQueue(0);
    q.push(te.encode('a'), 1);
    q.push(te.encode('b'), 2);
    q.push(te.encode('c'), 3);
    expect(text(q.takeTaggedUpTo(2))).toBe('ab');
    expect(q.start).toBe(2);
  });

  it('ignores empty pushes and never moves start backwards', () => {
    const q = new ByteQueue(5);
    q.push(new Uint8Array(0));
    expect(q.chunkCount).toBe(0);
    q.push(te.encode('xy'));
    q.takeUpTo(3);
    expect(q.start).toBe(5);
    q.takeUpTo(100);
    expect([q.start, q.size]).toEqual([7, 0]);
  });
});
