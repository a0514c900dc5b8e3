import { describe, it, expect, beforeEach } from 'vitest';
import { GuestHarness } from './harness.js';
import { cmd, bulk, int, OK, NIL } from './resp.js';

const S = 1_000_000_000;
const C = 1;

let h: GuestHarness;
beforeEach(() => {
  h = GuestHarness.load('kvrs').init();
  h.open(C);
});

const q = (...cmds: string[]): string => h.ask(C, cmds.join(''));

describe('kvrs guest (Rust)', () => {
  it('answers inline and multibulk commands, pipelined, in one send per delivery', () => {
    h.data(C, Buffer.from('PING\r\n' + cmd('SET', 'k', 'v') + cmd('GET', 'k') + cmd('GET', 'nope'), 'latin1'));
    expect(h.sends(C)).toBe(1);
    expect(Buffer.from(h.out(C)).toString('latin1')).toBe('+PONG\r\n' + OK + bulk('v') + NIL);
    q(cmd('INCR', 'n'), cmd('INCR', 'n'));
    expect(q(cmd('INCRBY', 'n', '40'), cmd('DECR', 'n'), cmd('GET', 'n'))).toBe(int(42) + int(41) + bulk('41'));
    expect(q(cmd('INCR', 'k'))).toBe('-ERR value is not an integer or out of range\r\n');
    expect(q(cmd('DEL', 'k', 'n', 'x'), cmd('EXISTS', 'k'), cmd('DBSIZE'))).toBe(int(2) + int(0) + int(0));
    expect(q(cmd('GET'))).toBe("-ERR wrong number of arguments for 'get' command\r\n");
  });

  it('takes a command split across deliveries', () => {
    const c = cmd('SET', 'key', 'x'.repeat(1000));
    expect(q(c.slice(0, 7))).toBe('');
    expect(q(c.slice(7, 500))).toBe('');
    expect(q(c.slice(500), cmd('STRLEN', 'key'))).toBe(OK + int(1000));
  });

  it('expires keys on the guest clock and sweeps them', () => {
    expect(q(cmd('SET', 't', 'v', 'EX', '2'), cmd('SET', 'p', 'v'), cmd('TTL', 't'), cmd('TTL', 'p'))).toBe(OK + OK + int(2) + int(-1));
    h.runFor(1 * S);
    expect(q(cmd('GET', 't'))).toBe(bulk('v'));
    h.runFor(2 * S);
    expect(q(cmd('GET', 't'), cmd('TTL', 't'), cmd('DBSIZE'))).toBe(NIL + int(-2) + int(1));
    expect(h.timerDeadline).toBe(0n);
  });

  it('a protocol error replies and closes the connection', () => {
    expect(q('*1\r\n+x\r\n')).toBe("-ERR Protocol error: expected '$'\r\n");
    expect(h.closed.has(C)).toBe(true);
  });

  it('refuses a bulk length over the limit without a fault', () => {
    expect(q('*1\r\n$99999999999\r\n')).toBe('-ERR Protocol error: invalid bulk length\r\n');
    expect(h.logs.filter((l) => l.level === 0)).toEqual([]);
  });
});
