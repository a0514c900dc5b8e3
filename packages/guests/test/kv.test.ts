import { describe, it, expect, beforeEach } from 'vitest';
import { GuestHarness } from './harness.js';
import { cmd, bulk, arr, int, OK, NIL } from './resp.js';

const MS = 1_000_000;
const C = 1;

let h: GuestHarness;
beforeEach(() => {
  h = GuestHarness.load('kv').init();
  h.open(C);
});

/** Sends the commands in one chunk and returns the reply bytes as latin1 text. */
const q = (...cmds: string[]): string => h.ask(C, cmds.join(''));

describe('kv: connection and strings', () => {
  it('answers PING typed by hand and as a multibulk', () => {
    expect(q('PING\r\n')).toBe('+PONG\r\n');
    expect(q(cmd('PING'))).toBe('+PONG\r\n');
    expect(q(cmd('ping', 'hello'))).toBe(bulk('hello'));
    expect(q(cmd('PING', 'a', 'b'))).toBe("-ERR wrong number of arguments for 'ping' command\r\n");
  });

  it('splits inline commands on spaces and tabs and accepts a bare LF', () => {
    expect(q('SET  k \t v\n', 'GET k\r\n')).toBe(OK + bulk('v'));
  });

  it('ignores empty inline lines and empty multibulks without replying', () => {
    expect(q('\r\n', '*0\r\n', cmd('PING'))).toBe('+PONG\r\n');
  });

  it('stores and returns binary-safe values', () => {
    const v = Buffer.from([0, 13, 10, 255, 36, 42]);
    h.data(C, Buffer.from(cmd('SET', 'bin', v), 'latin1'));
    expect(h.text(C)).toBe(OK);
    h.data(C, Buffer.from(cmd('GET', 'bin'), 'latin1'));
    expect(Buffer.from(h.out(C))).toEqual(Buffer.concat([Buffer.from('$6\r\n'), v, Buffer.from('\r\n')]));
  });

  it('implements SET, GET, DEL, EXISTS, ECHO and STRLEN', () => {
    expect(q(cmd('GET', 'a'))).toBe(NIL);
    expect(q(cmd('SET', 'a', '1'), cmd('SET', 'b', '22'), cmd('GET', 'a'), cmd('STRLEN', 'b'), cmd('STRLEN', 'zz'))).toBe(
      OK + OK + bulk('1') + int(2) + int(0),
    );
    expect(q(cmd('EXISTS', 'a', 'b', 'a', 'c'))).toBe(int(3));
    expect(q(cmd('DEL', 'a', 'c'), cmd('GET', 'a'), cmd('EXISTS', 'a'))).toBe(int(1) + NIL + int(0));
    expect(q(cmd('ECHO', 'hi there'))).toBe(bulk('hi there'));
  });

  it('honours SET NX, XX and GET', () => {
    expect(q(cmd('SET', 'k', 'v1', 'XX'))).toBe(NIL);
    expect(q(cmd('SET', 'k', 'v1', 'NX'))).toBe(OK);
    expect(q(cmd('SET', 'k', 'v2', 'nx'))).toBe(NIL);
    expect(q(cmd('SET', 'k', 'v3', 'XX', 'GET'))).toBe(bulk('v1'));
    expect(q(cmd('GET', 'k'))).toBe(bulk('v3'));
    expect(q(cmd('SET', 'k', 'v', 'NX', 'XX'))).toBe('-ERR syntax error\r\n');
    expect(q(cmd('SET', 'k', 'v', 'BOGUS'))).toBe('-ERR syntax error\r\n');
  });

  it('expires SET EX and PX keys in guest time, lazily', () => {
    expect(q(cmd('SET', 'e', 'x', 'PX', '100'), cmd('SET', 's', 'y', 'EX', '10'))).toBe(OK + OK);
    h.advance(99 * MS);
    expect(q(cmd('GET', 'e'), cmd('PTTL', 'e'))).toBe(bulk('x') + int(1));
    h.advance(1 * MS);
    expect(q(cmd('GET', 'e'), cmd('TTL', 'e'), cmd('TTL', 's'))).toBe(NIL + int(-2) + int(10));
    expect(q(cmd('SET', 'e', 'x', 'EX', '0'))).toBe("-ERR invalid expire time in 'set' command\r\n");
    expect(q(cmd('SET', 'e', 'x', 'EX', 'ten'))).toBe('-ERR value is not an integer or out of range\r\n');
  });

  it('keeps the TTL on KEEPTTL and INCR, drops it on a plain SET', () => {
    q(cmd('SET', 'k', '1', 'EX', '100'));
    expect(q(cmd('INCR', 'k'), cmd('TTL', 'k'))).toBe(int(2) + int(100));
    expect(q(cmd('SET', 'k', '5', 'KEEPTTL'), cmd('TTL', 'k'))).toBe(OK + int(100));
    expect(q(cmd('SET', 'k', '5'), cmd('TTL', 'k'))).toBe(OK + int(-1));
  });

  it('implements INCR, INCRBY, DECR, DECRBY with Redis errors', () => {
    expect(q(cmd('INCR', 'n'), cmd('INCRBY', 'n', '10'), cmd('DECR', 'n'), cmd('DECRBY', 'n', '-5'))).toBe(
      int(1) + int(11) + int(10) + int(15),
    );
    expect(q(cmd('GET', 'n'))).toBe(bulk('15'));
    q(cmd('SET', 's', 'abc'));
    expect(q(cmd('INCR', 's'))).toBe('-ERR value is not an integer or out of range\r\n');
    expect(q(cmd('INCRBY', 'n', '1.5'))).toBe('-ERR value is not an integer or out of range\r\n');
    q(cmd('SET', 'big', '9223372036854775807'));
    expect(q(cmd('INCR', 'big'))).toBe('-ERR increment or decrement would overflow\r\n');
    q(cmd('SET', 'neg', '-9223372036854775808'));
    expect(q(cmd('DECR', 'neg'))).toBe('-ERR increment or decrement would overflow\r\n');
    expect(q(cmd('INCR', 'neg'))).toBe(int(-9223372036854775807n));
    expect(q(cmd('INCR', 'a', 'b'))).toBe("-ERR wrong number of arguments for 'incr' command\r\n");
  });

  it('implements APPEND, MSET and MGET', () => {
    expect(q(cmd('APPEND', 'a', 'foo'), cmd('APPEND', 'a', 'bar'), cmd('GET', 'a'))).toBe(int(3) + int(6) + bulk('foobar'));
    expect(q(cmd('MSET', 'x', '1', 'y', '2'))).toBe(OK);
    q(cmd('LPUSH', 'l', 'v'));
    expect(q(cmd('MGET', 'x', 'nope', 'y', 'l'))).toBe(arr(bulk('1'), NIL, bulk('2'), NIL));
    expect(q(cmd('MSET', 'x', '1', 'y'))).toBe("-ERR wrong number of arguments for 'mset' command\r\n");
  });

  it('counts keys with DBSIZE and empties the keyspace with FLUSHALL', () => {
    q(cmd('SET', 'a', '1'), cmd('SADD', 's', 'm'), cmd('HSET', 'h', 'f', 'v'));
    expect(q(cmd('DBSIZE'))).toBe(int(3));
    expect(q(cmd('FLUSHALL'), cmd('DBSIZE'), cmd('GET', 'a'))).toBe(OK + int(0) + NIL);
  });
});

describe('kv: lists, sets, hashes, expiry', () => {
  it('implements LPUSH, RPUSH, LPOP, RPOP, LLEN and LRANGE', () => {
    expect(q(cmd('RPUSH', 'l', 'a', 'b', 'c'), cmd('LPUSH', 'l', 'z', 'y'))).toBe(int(3) + int(5));
    expect(q(cmd('LRANGE', 'l', '0', '-1'))).toBe(arr(bulk('y'), bulk('z'), bulk('a'), bulk('b'), bulk('c')));
    expect(q(cmd('LRANGE', 'l', '-2', '100'))).toBe(arr(bulk('b'), bulk('c')));
    expect(q(cmd('LRANGE', 'l', '3', '1'))).toBe('*0\r\n');
    expect(q(cmd('LRANGE', 'nope', '0', '-1'))).toBe('*0\r\n');
    expect(q(cmd('LPOP', 'l'), cmd('RPOP', 'l'), cmd('LLEN', 'l'))).toBe(bulk('y') + bulk('c') + int(3));
    expect(q(cmd('LPOP', 'l', '2'))).toBe(arr(bulk('z'), bulk('a')));
    expect(q(cmd('RPOP', 'l'), cmd('EXISTS', 'l'), cmd('LPOP', 'l'), cmd('LPOP', 'l', '3'))).toBe(
      bulk('b') + int(0) + NIL + '*-1\r\n',
    );
    expect(q(cmd('LRANGE', 'l', 'x', '1'))).toBe('-ERR value is not an integer or out of range\r\n');
  });

  it('keeps list order across ring-buffer growth from both ends', () => {
    const want: string[] = [];
    for (let i = 0; i < 100; i++) {
      if (i % 3 === 0) {
        q(cmd('LPUSH', 'l', `v${i}`));
        want.unshift(`v${i}`);
      } else {
        q(cmd('RPUSH', 'l', `v${i}`));
        want.push(`v${i}`);
      }
    }
    expect(q(cmd('LRANGE', 'l', '0', '-1'))).toBe(arr(...want.map(bulk)));
  });

  it('implements SADD, SCARD, SMEMBERS, SISMEMBER and SPOP', () => {
    expect(q(cmd('SADD', 's', 'a', 'b', 'a'), cmd('SADD', 's', 'b', 'c'), cmd('SCARD', 's'))).toBe(int(2) + int(1) + int(3));
    const members = q(cmd('SMEMBERS', 's'));
    expect(members.startsWith('*3\r\n')).toBe(true);
    for (const m of ['a', 'b', 'c']) expect(members).toContain(bulk(m));
    expect(q(cmd('SISMEMBER', 's', 'a'), cmd('SISMEMBER', 's', 'q'))).toBe(int(1) + int(0));
    const popped = new Set<string>();
    for (let i = 0; i < 3; i++) popped.add(q(cmd('SPOP', 's')));
    expect([...popped].sort()).toEqual([bulk('a'), bulk('b'), bulk('c')]);
    expect(q(cmd('SPOP', 's'), cmd('SCARD', 's'), cmd('EXISTS', 's'))).toBe(NIL + int(0) + int(0));
  });

  it('implements HSET, HGET and HGETALL', () => {
    expect(q(cmd('HSET', 'h', 'f1', 'v1', 'f2', 'v2'), cmd('HSET', 'h', 'f1', 'new'))).toBe(int(2) + int(0));
    expect(q(cmd('HGET', 'h', 'f1'), cmd('HGET', 'h', 'nope'), cmd('HGET', 'nope', 'f'))).toBe(bulk('new') + NIL + NIL);
    const all = q(cmd('HGETALL', 'h'));
    expect(all.startsWith('*4\r\n')).toBe(true);
    expect(all).toContain(bulk('f1') + bulk('new'));
    expect(all).toContain(bulk('f2') + bulk('v2'));
    expect(q(cmd('HSET', 'h', 'f1'))).toBe("-ERR wrong number of arguments for 'hset' command\r\n");
  });

  it('answers WRONGTYPE for an operation on a key of another type', () => {
    q(cmd('SET', 'str', 'v'), cmd('LPUSH', 'list', 'v'));
    const wt = '-WRONGTYPE Operation against a key holding the wrong kind of value\r\n';
    expect(q(cmd('LPUSH', 'str', 'x'))).toBe(wt);
    expect(q(cmd('GET', 'list'))).toBe(wt);
    expect(q(cmd('SADD', 'list', 'x'))).toBe(wt);
    expect(q(cmd('HGET', 'str', 'f'))).toBe(wt);
    expect(q(cmd('INCR', 'list'))).toBe(wt);
    expect(q(cmd('TYPE', 'list'), cmd('TYPE', 'str'), cmd('TYPE', 'none'))).toBe('+list\r\n+string\r\n+none\r\n');
  });

  it('implements EXPIRE and TTL with Redis rounding and NX/XX/GT/LT', () => {
    expect(q(cmd('EXPIRE', 'k', '10'))).toBe(int(0));
    q(cmd('SET', 'k', 'v'));
    expect(q(cmd('TTL', 'k'), cmd('EXPIRE', 'k', '10', 'XX'), cmd('EXPIRE', 'k', '10', 'NX'))).toBe(int(-1) + int(0) + int(1));
    h.advance(1400 * MS);
    expect(q(cmd('TTL', 'k'))).toBe(int(9));
    h.advance(200 * MS);
    expect(q(cmd('TTL', 'k'))).toBe(int(8));
    expect(q(cmd('EXPIRE', 'k', '5', 'GT'), cmd('EXPIRE', 'k', '5', 'LT'), cmd('TTL', 'k'))).toBe(int(0) + int(1) + int(5));
    expect(q(cmd('PERSIST', 'k'), cmd('TTL', 'k'))).toBe(int(1) + int(-1));
    expect(q(cmd('EXPIRE', 'k', '-1'), cmd('EXISTS', 'k'))).toBe(int(1) + int(0));
  });

  it('reclaims expired keys nobody reads with the active-expiry timer', () => {
    for (let i = 0; i < 500; i++) q(cmd('SET', `k${i}`, 'v', 'PX', '50'));
    q(cmd('SET', 'keep', 'v'));
    expect(q(cmd('DBSIZE'))).toBe(int(501));
    expect(h.timerDeadline).toBeGreaterThan(0n);
    h.runFor(2000 * MS);
    expect(q(cmd('DBSIZE'))).toBe(int(1));
    // No volatile keys left: the sweep timer is no longer armed.
    h.runFor(1000 * MS);
    expect(h.timerDeadline).toBe(0n);
  });
});

describe('kv: sorted sets and streams (redis-benchmark default run)', () => {
  it('implements ZADD, ZCARD, ZSCORE, ZRANGE and ZPOPMIN in score order', () => {
    expect(q(cmd('ZADD', 'z', '3', 'c', '1', 'a', '2', 'b'), cmd('ZADD', 'z', '1.5', 'a'), cmd('ZCARD', 'z'))).toBe(
      int(3) + int(0) + int(3),
    );
    expect(q(cmd('ZRANGE', 'z', '0', '-1', 'WITHSCORES'))).toBe(arr(bulk('a'), bulk('1.5'), bulk('b'), bulk('2'), bulk('c'), bulk('3')));
    expect(q(cmd('ZSCORE', 'z', 'b'), cmd('ZSCORE', 'z', 'q'))).toBe(bulk('2') + NIL);
    expect(q(cmd('ZADD', 'z', 'CH', '0', 'c'), cmd('ZRANGE', 'z', '0', '0'))).toBe(int(1) + arr(bulk('c')));
    expect(q(cmd('ZPOPMIN', 'z'), cmd('ZPOPMIN', 'z', '5'), cmd('EXISTS', 'z'))).toBe(
      arr(bulk('c'), bulk('0')) + arr(bulk('a'), bulk('1.5'), bulk('b'), bulk('2')) + int(0),
    );
    expect(q(cmd('ZPOPMIN', 'z'))).toBe('*0\r\n');
    expect(q(cmd('ZADD', 'z', 'x', 'm'))).toBe('-ERR value is not a valid float\r\n');
    expect(q(cmd('ZADD', 'z', '-inf', 'lo', '+inf', 'hi'), cmd('ZRANGE', 'z', '0', '-1', 'WITHSCORES'))).toBe(
      int(2) + arr(bulk('lo'), bulk('-inf'), bulk('hi'), bulk('inf')),
    );
  });

  it('orders equal scores by member bytes', () => {
    q(cmd('ZADD', 'z', '1', 'bb', '1', 'b', '1', 'a', '0', 'zz'));
    expect(q(cmd('ZRANGE', 'z', '0', '-1'))).toBe(arr(bulk('zz'), bulk('a'), bulk('b'), bulk('bb')));
  });

  it('implements XADD with guest-time ids and XLEN', () => {
    h.advance(5 * MS);
    expect(q(cmd('XADD', 's', '*', 'f', 'v'))).toBe(bulk('1005-0'));
    expect(q(cmd('XADD', 's', '*', 'f', 'v'))).toBe(bulk('1005-1'));
    expect(q(cmd('XADD', 's', '1005-1', 'f', 'v'))).toBe(
      '-ERR The ID specified in XADD is equal or smaller than the target stream top item\r\n',
    );
    expect(q(cmd('XADD', 's', '2000-7', 'f', 'v'), cmd('XLEN', 's'), cmd('TYPE', 's'))).toBe(bulk('2000-7') + int(3) + '+stream\r\n');
    expect(q(cmd('XADD', 's', 'MAXLEN', '~', '2', '*', 'f', 'v'), cmd('XLEN', 's'))).toBe(bulk('2000-8') + int(2));
    expect(q(cmd('XADD', 's', '*', 'f'))).toBe("-ERR wrong number of arguments for 'xadd' command\r\n");
  });
});

describe('kv: admin commands clients send', () => {
  it('answers CONFIG GET save and appendonly as redis-benchmark expects', () => {
    expect(q(cmd('CONFIG', 'GET', 'save'))).toBe(arr(bulk('save'), bulk('')));
    expect(q(cmd('CONFIG', 'GET', 'appendonly'))).toBe(arr(bulk('appendonly'), bulk('no')));
    expect(q(cmd('CONFIG', 'GET', 'nonexistent'))).toBe('*0\r\n');
    expect(q(cmd('CONFIG', 'SET', 'save', ''))).toBe(OK);
  });

  it('answers COMMAND, CLIENT, SELECT 0 and INFO harmlessly', () => {
    expect(q(cmd('COMMAND', 'DOCS'))).toBe('*0\r\n');
    expect(q(cmd('CLIENT', 'SETNAME', 'x'), cmd('CLIENT', 'SETINFO', 'lib-name', 'redis-cli'))).toBe(OK + OK);
    expect(q(cmd('SELECT', '0'), cmd('SELECT', '1'))).toBe(OK + '-ERR DB index is out of range\r\n');
    const info = q(cmd('INFO'));
    expect(info).toMatch(/^\$\d+\r\n# Server\r\nredis_version:/);
    const len = Number(/^\$(\d+)/.exec(info)![1]);
    expect(Buffer.byteLength(info) - info.indexOf('\r\n') - 4).toBe(len);
  });

  it('replies the Redis unknown-command error, with its arguments, and keeps going', () => {
    expect(q(cmd('FOO', 'a', 'b c'), cmd('PING'))).toBe(
      "-ERR unknown command 'FOO', with args beginning with: 'a' 'b c' \r\n+PONG\r\n",
    );
    expect(q('NOPE\r\n')).toBe("-ERR unknown command 'NOPE', with args beginning with: \r\n");
  });

  it('answers wrong arity with the lower-case command name', () => {
    expect(q(cmd('GET'))).toBe("-ERR wrong number of arguments for 'get' command\r\n");
    expect(q(cmd('Lrange', 'l', '0'))).toBe("-ERR wrong number of arguments for 'lrange' command\r\n");
  });

  it('closes after QUIT', () => {
    expect(q(cmd('QUIT'), cmd('PING'))).toBe(OK);
    expect(h.closed.has(C)).toBe(true);
  });
});

describe('kv: RESP framing', () => {
  const pipeline = [
    cmd('SET', 'key:1', 'hello world'),
    cmd('GET', 'key:1'),
    'PING\r\n',
    cmd('RPUSH', 'list', 'a', 'bb', 'ccc'),
    cmd('LRANGE', 'list', '0', '-1'),
    cmd('INCRBY', 'ctr', '41'),
    cmd('NOSUCH'),
    cmd('INCR', 'ctr'),
  ].join('');
  const expected =
    OK + bulk('hello world') + '+PONG\r\n' + int(3) + arr(bulk('a'), bulk('bb'), bulk('ccc')) + int(41) +
    "-ERR unknown command 'NOSUCH', with args beginning with: \r\n" + int(42);

  it('answers a pipeline delivered in one chunk', () => {
    expect(q(pipeline)).toBe(expected);
  });

  it('answers the same pipeline split in two at every byte boundary', () => {
    const bytes = Buffer.from(pipeline, 'latin1');
    for (let cut = 1; cut < bytes.length; cut++) {
      h = GuestHarness.load('kv').init();
      h.data(C, bytes.subarray(0, cut));
      h.data(C, bytes.subarray(cut));
      expect(Buffer.from(h.out(C)).toString('latin1'), `cut at ${cut}`).toBe(expected);
    }
  });

  it('answers the same pipeline delivered one byte at a time', () => {
    const bytes = Buffer.from(pipeline, 'latin1');
    for (let i = 0; i < bytes.length; i++) h.data(C, bytes.subarray(i, i + 1));
    expect(Buffer.from(h.out(C)).toString('latin1')).toBe(expected);
  });

  it('keeps per-connection input apart', () => {
    const a = Buffer.from(cmd('SET', 'x', 'from-a'), 'latin1');
    const b = Buffer.from(cmd('GET', 'x'), 'latin1');
    h.open(2);
    h.data(C, a.subarray(0, 10));
    h.data(2, b.subarray(0, 5));
    h.data(C, a.subarray(10));
    h.data(2, b.subarray(5));
    expect(h.text(C)).toBe(OK);
    expect(h.text(2)).toBe(bulk('from-a'));
  });

  it('sends one reply batch per delivery', () => {
    q(cmd('PING'), cmd('PING'), cmd('PING'));
    h.data(C, cmd('PING') + cmd('PING'));
    expect(h.sends(C)).toBe(1);
  });

  it('answers a protocol error and closes, after replying to the commands before it', () => {
    expect(q(cmd('PING'), '*1\r\n+foo\r\n', cmd('PING'))).toBe(
      "+PONG\r\n-ERR Protocol error: expected '$', got '+'\r\n",
    );
    expect(h.closed.has(C)).toBe(true);
    expect(q(cmd('PING'))).toBe('');
  });

  it('rejects invalid multibulk and bulk lengths', () => {
    expect(q('*x\r\n')).toBe('-ERR Protocol error: invalid multibulk length\r\n');
    h.open(2);
    h.data(2, '*1\r\n$-5\r\n');
    expect(h.text(2)).toBe('-ERR Protocol error: invalid bulk length\r\n');
    h.open(3);
    h.data(3, '*1\r\n$999999999999\r\n');
    expect(h.text(3)).toBe('-ERR Protocol error: invalid bulk length\r\n');
    expect(h.closed.has(2) && h.closed.has(3)).toBe(true);
  });

  it('bounds an inline request to 64 KiB', () => {
    h.data(C, 'SET k ' + 'x'.repeat(70 * 1024));
    expect(h.text(C)).toBe('-ERR Protocol error: too big inline request\r\n');
    expect(h.closed.has(C)).toBe(true);
  });

  it('accepts a 1 MiB value arriving in 4 KiB pieces', () => {
    const v = 'v'.repeat(1 << 20);
    const bytes = Buffer.from(cmd('SET', 'big', v) + cmd('STRLEN', 'big'), 'latin1');
    for (let o = 0; o < bytes.length; o += 4096) h.data(C, bytes.subarray(o, o + 4096));
    expect(h.text(C)).toBe(OK + int(1 << 20));
  });
});

describe('kv: memory', () => {
  it('holds 20,000 keys written by 50 pipelining clients', () => {
    const clients = 50;
    for (let c = 10; c < 10 + clients; c++) h.open(c);
    for (let round = 0; round < 400; round++) {
      for (let c = 10; c < 10 + clients; c++) {
        const k = `key:${round * clients + c}`;
        h.data(c, cmd('SET', k, 'x'.repeat(3) + k) + cmd('GET', k));
        expect(h.text(c)).toBe(OK + bulk('xxx' + k));
      }
    }
    expect(q(cmd('DBSIZE'))).toBe(int(20000));
    expect(q(cmd('GET', 'key:12345'))).toBe(bulk('xxxkey:12345'));
  });

  it('reuses memory when the same keys are overwritten many times (the GC frees)', () => {
    const value = 'v'.repeat(1000);
    const round = () => {
      let batch = '';
      for (let i = 0; i < 1000; i++) batch += cmd('SET', `k${i}`, value);
      h.data(C, batch);
      h.out(C);
    };
    for (let i = 0; i < 5; i++) round();
    const settled = h.mem().length;
    for (let i = 0; i < 100; i++) round();
    // 100 MB of values were written; live data is ~1 MB.
    expect(h.mem().length).toBeLessThanOrEqual(settled * 2);
  });
});
