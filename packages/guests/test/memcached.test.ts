import { describe, it, expect, beforeEach } from 'vitest';
import { GuestHarness } from './harness.js';

const S = 1_000_000_000;
const C = 1;

let h: GuestHarness;
beforeEach(() => {
  h = GuestHarness.load('memcached').init();
  h.open(C);
});

const q = (input: string): string => h.ask(C, input);

function stat(name: string): number {
  const m = new RegExp(`STAT ${name} (\\d+)\\r\\n`).exec(q('stats\r\n'));
  if (!m) throw new Error(`no stat ${name}`);
  return Number(m[1]);
}

describe('memcached guest (C)', () => {
  it('stores, gets, and answers gets with a cas that cas then checks', () => {
    expect(q('set k 5 0 3\r\nabc\r\n')).toBe('STORED\r\n');
    expect(q('get k nope\r\n')).toBe('VALUE k 5 3\r\nabc\r\nEND\r\n');
    const cas = /VALUE k 5 3 (\d+)\r\n/.exec(q('gets k\r\n'))![1];
    expect(q(`cas k 0 0 1 ${cas}\r\nx\r\n`)).toBe('STORED\r\n');
    expect(q(`cas k 0 0 1 ${cas}\r\ny\r\n`)).toBe('EXISTS\r\n');
    expect(q('cas missing 0 0 1 1\r\ny\r\n')).toBe('NOT_FOUND\r\n');
  });

  it('add, replace, append, prepend, delete, incr, decr, touch and noreply', () => {
    expect(q('add a 0 0 1\r\n1\r\nadd a 0 0 1\r\n2\r\n')).toBe('STORED\r\nNOT_STORED\r\n');
    expect(q('replace b 0 0 1\r\n1\r\nreplace a 0 0 2\r\n10\r\n')).toBe('NOT_STORED\r\nSTORED\r\n');
    expect(q('append a 0 0 1\r\n0\r\nprepend a 0 0 1\r\n9\r\nget a\r\n')).toBe('STORED\r\nSTORED\r\nVALUE a 0 4\r\n9100\r\nEND\r\n');
    expect(q('incr a 5\r\ndecr a 10000\r\nincr a 18446744073709551615\r\n')).toBe('9105\r\n0\r\n18446744073709551615\r\n');
    expect(q('incr nope 1\r\nincr a x\r\n')).toBe('NOT_FOUND\r\nCLIENT_ERROR invalid numeric delta argument\r\n');
    expect(q('set s 0 0 1 noreply\r\nz\r\nincr s 1\r\n')).toBe('CLIENT_ERROR cannot increment or decrement non-numeric value\r\n');
    expect(q('touch a 100\r\ntouch nope 1\r\n')).toBe('TOUCHED\r\nNOT_FOUND\r\n');
    expect(q('delete a noreply\r\ndelete a\r\n')).toBe('NOT_FOUND\r\n');
  });

  it('takes commands and values split across deliveries and many per delivery', () => {
    expect(q('se')).toBe('');
    expect(q('t k 0 0 10\r\n01234')).toBe('');
    expect(q('56789\r')).toBe('');
    expect(q('\nget k\r\nget k\r\n')).toBe('STORED\r\n' + 'VALUE k 0 10\r\n0123456789\r\nEND\r\n'.repeat(2));
  });

  it('refuses a value over 1 MiB and skips its data; a bad data chunk is an error', () => {
    const big = 'x'.repeat((1 << 20) + 1);
    expect(q(`set big 0 0 ${big.length}\r\n${big}\r\nget big\r\n`)).toBe('SERVER_ERROR object too large for cache\r\nEND\r\n');
    // as memcached 1.6.18 answers it: the announced length + 2 is skipped, the rest is a line
    expect(q('set k 0 0 1\r\nab\r\nget k\r\n')).toBe('CLIENT_ERROR bad data chunk\r\nERROR\r\nEND\r\n');
    expect(q('set k 0 x 1\r\n')).toBe('CLIENT_ERROR bad command line format\r\n');
    expect(q('bogus\r\n')).toBe('ERROR\r\n');
  });

  it('expires on the guest clock: relative seconds, touch, negative, and delayed flush_all', () => {
    q('set r 0 2 1\r\nr\r\nset n 0 -1 1\r\nn\r\nset p 0 0 1\r\np\r\n');
    expect(q('get n\r\n')).toBe('END\r\n');
    h.runFor(1 * S);
    expect(q('get r\r\n')).toBe('VALUE r 0 1\r\nr\r\nEND\r\n');
    h.runFor(1.5 * S);
    expect(q('get r p\r\n')).toBe('VALUE p 0 1\r\np\r\nEND\r\n');
    expect(q('flush_all 3\r\n')).toBe('OK\r\n');
    h.runFor(2 * S);
    expect(q('get p\r\n')).toBe('VALUE p 0 1\r\np\r\nEND\r\n');
    h.runFor(2 * S);
    expect(q('get p\r\n')).toBe('END\r\n');
  });

  it('the sweep timer reclaims expired items nobody reads', () => {
    for (let i = 0; i < 100; i++) q(`set t${i} 0 1 1\r\nx\r\n`);
    expect(stat('curr_items')).toBe(100);
    h.runFor(3 * S);
    expect(stat('curr_items')).toBe(0);
    expect(h.timerDeadline).toBe(0n); // disarmed once no item has a TTL
  });

  it('evicts least recently used items to stay within 64 MiB', () => {
    const v = 'v'.repeat(1_000_000);
    for (let i = 0; i < 100; i++) {
      expect(q(`set big${i} 0 0 ${v.length}\r\n${v}\r\n`)).toBe('STORED\r\n');
      if (i === 10) q('get big0\r\n'); // recently used: survives the first wave of evictions
    }
    expect(stat('bytes')).toBeLessThanOrEqual(64 << 20);
    expect(stat('evictions')).toBeGreaterThan(30);
    expect(q('get big1\r\n')).toBe('END\r\n');
    expect(q('get big99\r\n')).toMatch(/^VALUE big99 0 1000000\r\n/);
    expect(h.mem().length).toBeLessThan(100 << 20);
  });

  it('quit closes the connection after earlier replies', () => {
    expect(q('version\r\nquit\r\nversion\r\n')).toMatch(/^VERSION \S+\r\n$/);
    expect(h.closed.has(C)).toBe(true);
  });
});
