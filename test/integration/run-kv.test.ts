import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { haveTool } from '../helpers/tools.js';
import { redisBenchmark, redisCli } from '../helpers/redis.js';

const enabled = haveTool('redis-cli') && haveTool('redis-benchmark');

describe.runIf(enabled)('ftvm run --guest kv answers real redis clients', () => {
  let srv: Spawned;
  let port: number;
  const cli = (...a: string[]) => redisCli(port, ...a);

  beforeAll(async () => {
    srv = spawnFtvm(['run', '--guest', 'kv', '--port', '0']);
    const m = await srv.waitFor(/listening on [^:]+:(\d+)/);
    port = Number(m[1]);
  });
  afterAll(async () => {
    await srv?.stop();
  });

  it('answers PING, ECHO and the string commands as Redis does', async () => {
    expect(await cli('PING')).toBe('PONG');
    expect(await cli('ECHO', 'hello')).toBe('"hello"');
    expect(await cli('SET', 'k', 'v')).toBe('OK');
    expect(await cli('GET', 'k')).toBe('"v"');
    expect(await cli('GET', 'missing')).toBe('(nil)');
    expect(await cli('SET', 'k', 'w', 'NX')).toBe('(nil)');
    expect(await cli('SET', 'k2', 'x', 'XX')).toBe('(nil)');
    expect(await cli('SET', 'k', 'w', 'XX')).toBe('OK');
    expect(await cli('APPEND', 'k', 'xyz')).toBe('(integer) 4');
    expect(await cli('STRLEN', 'k')).toBe('(integer) 4');
    expect(await cli('EXISTS', 'k', 'missing')).toBe('(integer) 1');
    expect(await cli('DEL', 'k')).toBe('(integer) 1');
    expect(await cli('EXISTS', 'k')).toBe('(integer) 0');
  });

  it('counts with INCR, INCRBY, DECR, DECRBY and rejects non-integers', async () => {
    expect(await cli('INCR', 'n')).toBe('(integer) 1');
    expect(await cli('INCRBY', 'n', '41')).toBe('(integer) 42');
    expect(await cli('DECR', 'n')).toBe('(integer) 41');
    expect(await cli('DECRBY', 'n', '40')).toBe('(integer) 1');
    await cli('SET', 's', 'abc');
    expect(await cli('INCR', 's')).toMatch(/^\(error\) ERR value is not an integer or out of range/);
  });

  it('handles MSET, MGET, DBSIZE and FLUSHALL', async () => {
    expect(await cli('MSET', 'a', '1', 'b', '2')).toBe('OK');
    expect(await cli('MGET', 'a', 'b', 'nope')).toBe('1) "1"\n2) "2"\n3) (nil)');
    expect(Number((await cli('DBSIZE')).replace('(integer) ', ''))).toBeGreaterThanOrEqual(2);
    expect(await cli('FLUSHALL')).toBe('OK');
    expect(await cli('DBSIZE')).toBe('(integer) 0');
  });

  it('handles lists: LPUSH, RPUSH, LPOP, RPOP, LLEN, LRANGE', async () => {
    expect(await cli('RPUSH', 'l', 'a', 'b', 'c')).toBe('(integer) 3');
    expect(await cli('LPUSH', 'l', 'z')).toBe('(integer) 4');
    expect(await cli('LRANGE', 'l', '0', '-1')).toBe('1) "z"\n2) "a"\n3) "b"\n4) "c"');
    expect(await cli('LPOP', 'l')).toBe('"z"');
    expect(await cli('RPOP', 'l')).toBe('"c"');
    expect(await cli('LLEN', 'l')).toBe('(integer) 2');
    expect(await cli('GET', 'l')).toMatch(/^\(error\) WRONGTYPE/);
  });

  it('handles sets: SADD, SCARD, SMEMBERS, SPOP', async () => {
    expect(await cli('SADD', 'st', 'x', 'y', 'x')).toBe('(integer) 2');
    expect(await cli('SCARD', 'st')).toBe('(integer) 2');
    const members = (await cli('SMEMBERS', 'st')).split('\n').map((l) => l.replace(/^\d+\) /, '')).sort();
    expect(members).toEqual(['"x"', '"y"']);
    expect(['"x"', '"y"']).toContain(await cli('SPOP', 'st'));
    expect(await cli('SCARD', 'st')).toBe('(integer) 1');
  });

  it('handles hashes: HSET, HGET, HGETALL', async () => {
    expect(await cli('HSET', 'h', 'f1', 'v1', 'f2', 'v2')).toBe('(integer) 2');
    expect(await cli('HGET', 'h', 'f2')).toBe('"v2"');
    expect(await cli('HGET', 'h', 'nope')).toBe('(nil)');
    const all = (await cli('HGETALL', 'h')).split('\n').map((l) => l.replace(/^\d+\) /, ''));
    const pairs = new Map<string, string>();
    for (let i = 0; i < all.length; i += 2) pairs.set(all[i]!, all[i + 1]!);
    expect(Object.fromEntries(pairs)).toEqual({ '"f1"': '"v1"', '"f2"': '"v2"' });
  });

  it('expires keys with EXPIRE, TTL and SET EX/PX', async () => {
    await cli('SET', 'e', '1');
    expect(await cli('TTL', 'e')).toBe('(integer) -1');
    expect(await cli('EXPIRE', 'e', '100')).toBe('(integer) 1');
    const ttl = Number((await cli('TTL', 'e')).replace('(integer) ', ''));
    expect(ttl).toBeGreaterThan(95);
    expect(ttl).toBeLessThanOrEqual(100);
    expect(await cli('TTL', 'missing')).toBe('(integer) -2');
    expect(await cli('SET', 'px', '1', 'PX', '150')).toBe('OK');
    expect(await cli('GET', 'px')).toBe('"1"');
    await new Promise((r) => setTimeout(r, 300));
    expect(await cli('GET', 'px')).toBe('(nil)');
  });

  it('answers CONFIG GET as redis-benchmark expects and errors on unknown commands', async () => {
    expect(await cli('CONFIG', 'GET', 'save')).toMatch(/^1\) "save"\n2\) /);
    expect(await cli('NOSUCHCMD', 'x')).toMatch(/^\(error\) ERR unknown command/);
    expect(await cli('GET')).toMatch(/^\(error\) ERR wrong number of arguments/);
    expect(await cli('PING')).toBe('PONG');
  });

  it('completes a redis-benchmark run of every listed test with no errors', async () => {
    const { stdout, stderr } = await redisBenchmark(port, [
      '-q', '-n', '2000', '-c', '20', '-t', 'ping,set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,lrange,mset',
    ]);
    const text = stdout + stderr;
    expect(text).not.toMatch(/error|ERR/i);
    // One result line per test, each with a throughput figure.
    for (const t of ['PING_INLINE', 'SET', 'GET', 'INCR', 'LPUSH', 'RPUSH', 'LPOP', 'RPOP', 'SADD', 'HSET', 'SPOP', 'LRANGE_100', 'MSET']) {
      expect(text).toMatch(new RegExp(`${t}[^\\n]*requests per second`));
    }
  });

  it('serves pipelined redis-benchmark traffic with no errors', async () => {
    const { stdout, stderr } = await redisBenchmark(port, ['-q', '-n', '5000', '-c', '10', '-P', '16', '-t', 'set,get,incr']);
    expect(stdout + stderr).not.toMatch(/error|ERR/i);
    expect(stdout).toMatch(/INCR[^\n]*requests per second/);
  });
});
