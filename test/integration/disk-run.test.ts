import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawnFtvm } from '../helpers/ftvm.js';
import { haveTool } from '../helpers/tools.js';
import { redisCli } from '../helpers/redis.js';

const enabled = haveTool('redis-cli');

async function runOn(disk: string, extra: string[] = []) {
  const srv = spawnFtvm(['run', '--guest', 'kv', '--port', '0', '--disk', disk, ...extra]);
  const port = Number((await srv.waitFor(/listening on [^:]+:(\d+)/, 30_000))[1]);
  return { srv, cli: (...a: string[]) => redisCli(port, ...a) };
}

describe.runIf(enabled)('ftvm run --disk: kv keeps its data on the virtual disk', () => {
  it('returns a SET after a restart on the same disk (clean stop and SIGKILL), with DISKCHECK OK', async () => {
    const disk = join(mkdtempSync(join(tmpdir(), 'ftvm-diskrun-')), 'kv.img');
    const a = await runOn(disk, ['--disk-size', '4M']);
    expect(statSync(disk).size).toBe(4 << 20);
    expect(await a.cli('SET', 'greeting', 'hello disk')).toBe('OK');
    expect(await a.cli('RPUSH', 'q', 'one', 'two')).toBe('(integer) 2');
    expect(await a.cli('DISKCHECK')).toBe('OK');
    await a.srv.stop('SIGTERM');

    const b = await runOn(disk);
    expect(await b.cli('GET', 'greeting')).toBe('"hello disk"');
    expect(await b.cli('LRANGE', 'q', '0', '-1')).toBe('1) "one"\n2) "two"');
    expect(await b.cli('INCR', 'n')).toBe('(integer) 1');
    // Writes go through to the file: a process killed outright keeps what it acknowledged.
    await b.srv.stop('SIGKILL');

    const c = await runOn(disk, ['--disk-size', '8M']);
    expect(statSync(disk).size).toBe(8 << 20);
    expect(await c.cli('GET', 'n')).toBe('"1"');
    expect(await c.cli('GET', 'greeting')).toBe('"hello disk"');
    expect(await c.cli('DISKCHECK')).toBe('OK');
    await c.srv.stop();
  }, 60_000);

  it('refuses a disk size that is not whole blocks, and one that would shrink the file', async () => {
    const disk = join(mkdtempSync(join(tmpdir(), 'ftvm-diskrun-')), 'kv.img');
    const bad = spawnFtvm(['run', '--guest', 'kv', '--port', '0', '--disk', disk, '--disk-size', '5000']);
    await bad.waitFor(/FTVM_ERR_CLI_BAD_VALUE/);
    expect(await bad.stop()).not.toBe(0);
    const a = await runOn(disk, ['--disk-size', '1M']);
    await a.srv.stop();
    const shrink = spawnFtvm(['run', '--guest', 'kv', '--port', '0', '--disk', disk, '--disk-size', '512K']);
    await shrink.waitFor(/FTVM_ERR_DISK_SHRINK/);
    expect(await shrink.stop()).not.toBe(0);
  }, 60_000);
});
