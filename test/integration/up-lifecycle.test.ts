import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileFixtureGuest } from '../helpers/asc.js';
import { freePorts } from '../helpers/cluster.js';
import { mark, spawnFtvm, waitForLineAfter, type Spawned } from '../helpers/ftvm.js';

/** Issue 21, items 5-10: `ftvm up`'s start, stop and logs as an operator meets them. */

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Sends one line over TCP and resolves with the first reply chunk. */
function ask(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(line));
    s.once('data', (d) => {
      resolve(d.toString());
      s.destroy();
    });
    s.once('error', reject);
    s.setTimeout(10_000, () => reject(new Error('no reply')));
  });
}

const refused = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(false)));
    s.once('error', () => resolve(true));
  });

const pidsOf = (up: Spawned): number[] =>
  [/^\s+proxy\s/, /node a \(primary\)/, /node b \(secondary\)/].map((re) => Number(/pid (\d+)/.exec(up.out.find((l) => re.test(l)) ?? '')?.[1]));

describe('ftvm up', () => {
  let chatty: string;
  const dirs: string[] = [];
  /** A private TMPDIR per `ftvm up`, so what it leaves behind can be seen. */
  const tmp = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'ftvm-up-test-'));
    dirs.push(d);
    return d;
  };
  beforeAll(async () => {
    chatty = await compileFixtureGuest('chatty');
  }, 60_000);
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('a second up on the same ports fails with FTVM_ERR_UP_PORT_IN_USE, starts nothing and leaves no token; Ctrl-C on the first stops it with no failover', async () => {
    const [client, na, nb] = freePorts(3) as [number, number, number];
    const mb = freePorts(3)[0]!;
    const ports = ['--port', String(client), '--node-ports', `${na},${nb}`, '--metrics-port', String(mb)];
    const t1 = tmp();
    const first = spawnFtvm(['up', ...ports], { TMPDIR: t1 });
    try {
      await first.waitFor(/watch a failover/, 90_000);
      // The token the roles share is printed (migrate and snapshot need it), private to its owner.
      const tokenFile = /token file\s+(\S+)/.exec(first.out.join('\n'))?.[1];
      expect(tokenFile).toBeDefined();
      expect(statSync(tokenFile!).mode & 0o777).toBe(0o600);
      await first.waitFor(/ PROTECTED:/, 30_000);

      const t2 = tmp();
      const second = spawnFtvm(['up', ...ports], { TMPDIR: t2 });
      expect(await second.exited).toBe(1);
      const err = second.err.join('\n');
      expect(err).toMatch(/FTVM_ERR_UP_PORT_IN_USE/);
      expect(err).toContain(`127.0.0.1:${client}`);
      expect(err).not.toMatch(/unexpected error|\n\s+at /);
      expect(readdirSync(t2)).toEqual([]);

      const pids = pidsOf(first);
      expect(pids.every((p) => p > 0 && alive(p))).toBe(true);
      const from = mark(first);
      first.proc.kill('SIGINT');
      expect(await first.exited).toBe(0);
      const after = first.err.slice(from.err).join('\n');
      expect(after).not.toMatch(/PROMOTED|asking the proxy to promote/);
      expect(pids.filter(alive)).toEqual([]);
      expect(readdirSync(t1)).toEqual([]);
    } finally {
      await first.stop('SIGKILL');
    }
  }, 150_000);

  it('a role that cannot start stops up with FTVM_ERR_UP_ROLE_FAILED: no respawn, no token left', async () => {
    const [client, na, nb] = freePorts(3) as [number, number, number];
    const mb = freePorts(3)[0]!;
    const t = tmp();
    const up = spawnFtvm(['up', '--guest', join(t, 'missing.wasm'), '--port', String(client), '--node-ports', `${na},${nb}`, '--metrics-port', String(mb)], { TMPDIR: t });
    expect(await up.exited).toBe(1);
    expect(up.err.join('\n')).toMatch(/FTVM_ERR_UP_ROLE_FAILED/);
    expect(up.err.join('\n')).not.toMatch(/unexpected error/);
    // A respawned node would listen again after its 1 s delay.
    await new Promise((r) => setTimeout(r, 2500));
    expect(await refused(na)).toBe(true);
    expect(await refused(nb)).toBe(true);
    expect(readdirSync(t).filter((f) => f !== 'missing.wasm')).toEqual([]);
  }, 60_000);

  it('takes --token-file, logs the guest\'s own lines (from onInit too) and the promoted node\'s lines as primary', async () => {
    const [client, na, nb] = freePorts(3) as [number, number, number];
    const mb = freePorts(3)[0]!;
    const t = tmp();
    const tokenFile = join(t, 'my-token');
    writeFileSync(tokenFile, 'a-token-of-my-own', { mode: 0o600 });
    const up = spawnFtvm(['up', '--guest', chatty, '--token-file', tokenFile, '--port', String(client), '--node-ports', `${na},${nb}`, '--metrics-port', String(mb)], { TMPDIR: t });
    try {
      await up.waitFor(/watch a failover/, 90_000);
      expect(up.out.join('\n')).toMatch(new RegExp(`token file\\s+${tokenFile}$`, 'm'));
      // No redis-cli hint for a guest that does not speak Redis.
      expect(up.out.join('\n')).not.toMatch(/redis-cli/);
      await up.waitFor(/\[primary\] guest: chatty: init done/, 10_000);
      await up.waitFor(/ PROTECTED:/, 30_000);
      expect(await ask(client, 'hello\n')).toBe('ok\n');
      await up.waitFor(/WARN\s+\[primary\] guest: chatty: got 6 bytes/, 10_000);
      const from = mark(up);
      const [, pidA] = pidsOf(up);
      process.kill(pidA!, 'SIGKILL');
      // The promoted node's records carry its new role, the PROMOTED line first.
      await waitForLineAfter(up, /\[primary\] PROMOTED to primary/, from, 30_000);
      expect(await ask(client, 'again\n')).toBe('ok\n');
      await waitForLineAfter(up, /\[primary\] guest: chatty: got 6 bytes/, from, 10_000);
    } finally {
      await up.stop('SIGINT');
    }
    expect(existsSync(tokenFile)).toBe(true);
  }, 150_000);
});

describe('ftvm run', () => {
  it('logs a line the guest wrote in onInit, in human lines by default off a terminal', async () => {
    const wasm = await compileFixtureGuest('chatty');
    const run = spawnFtvm(['run', '--guest', wasm, '--port', '0'], { FTVM_LOG_FORMAT: '' });
    try {
      await run.waitFor(/listening on/, 30_000);
      const line = await run.waitFor(/guest: chatty: init done/, 10_000);
      expect(line.input).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO\s+\[run\] guest: chatty: init done$/);
    } finally {
      await run.stop();
    }
  }, 60_000);
});
