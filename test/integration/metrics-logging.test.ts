import { afterAll, describe, expect, it } from 'vitest';
import diagnosticsChannel from 'node:diagnostics_channel';
import { FtvmEvents, ProgressReporter } from '@ftvm/metrics';
import { Logger, humanLine, logFormatFromEnv } from '../../packages/cli/src/logger.js';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';

/** Structured logs (pino), the human format, --log-level, and progress lines. */

function capture(isTTY = false): { lines: string[]; raw: string[]; sink: { write: (s: string) => boolean; isTTY: boolean } } {
  const raw: string[] = [];
  return {
    raw,
    get lines() {
      return raw.join('').split('\n').filter((l) => l !== '');
    },
    sink: { write: (s: string) => (raw.push(s), true), isTTY },
  };
}

describe('the CLI logger', () => {
  it('writes one JSON object per line with level, time, pid, role, msg and the fields', () => {
    const c = capture();
    const log = new Logger('primary', 'info', { format: 'json', sink: c.sink, progress: false });
    log.warn('UNPROTECTED: running without a secondary', { reason: 'no secondary yet', epoch: 7, drift: -12n });
    expect(c.lines).toHaveLength(1);
    const rec = JSON.parse(c.lines[0]!) as Record<string, unknown>;
    expect(rec).toMatchObject({ level: 'warn', pid: process.pid, role: 'primary', msg: 'UNPROTECTED: running without a secondary', reason: 'no secondary yet', epoch: 7, drift: '-12' });
    expect(new Date(String(rec.time)).getTime()).toBeGreaterThan(Date.now() - 60_000);
  });

  it('writes the human format the tests and operators grep: time, LEVEL, [role], msg, key=value', () => {
    const c = capture();
    const log = new Logger('proxy', 'info', { format: 'human', sink: c.sink, progress: false });
    log.info('metrics', { url: 'http://127.0.0.1:9100/metrics', n: { a: 1 } });
    log.warn('PROTECTED: the secondary holds every committed epoch');
    expect(c.lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO  \[proxy\] metrics url=http:\/\/127\.0\.0\.1:9100\/metrics n=\{"a":1\}$/);
    expect(c.lines[1]).toMatch(/ PROTECTED:/);
    // No colour codes off a TTY.
    expect(c.raw.join('')).not.toContain('\x1b[');
  });

  it('drops records below the level, and setLevel changes it', () => {
    const c = capture();
    const log = new Logger('run', 'warn', { format: 'json', sink: c.sink, progress: false });
    log.info('hidden');
    log.debug('hidden');
    log.error('shown');
    log.setLevel('debug');
    log.debug('now shown');
    expect(c.lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['shown', 'now shown']);
    expect(log.level).toBe('debug');
  });

  it('writes human lines unless FTVM_LOG_FORMAT=json, on a terminal or not', () => {
    expect(logFormatFromEnv({ FTVM_LOG_FORMAT: 'json' })).toBe('json');
    expect(logFormatFromEnv({ FTVM_LOG_FORMAT: ' JSON ' })).toBe('json');
    expect(logFormatFromEnv({ FTVM_LOG_FORMAT: 'human' })).toBe('human');
    expect(logFormatFromEnv({ FTVM_LOG_FORMAT: 'weird' })).toBe('human');
    expect(logFormatFromEnv({})).toBe('human');
  });

  it('cuts a runaway human line instead of flooding the terminal', () => {
    const line = humanLine({ time: '2026-01-01T00:00:00.000Z', level: 'info', role: 'x', msg: 'big', blob: 'y'.repeat(100_000) });
    expect(line.length).toBeLessThan(17_000);
    expect(line).toMatch(/more chars\)$/);
  });

  it('shows progress of a bus in the process: plain lines off a TTY, through the logger', () => {
    const c = capture();
    const log = new Logger('secondary', 'info', { format: 'json', sink: c.sink, progressIntervalMs: 0 });
    try {
      const bus = new FtvmEvents({ name: 'secondary' });
      bus.emit('progress', { task: 'sync', done: 0, total: 4096, unit: 'pages' });
      bus.emit('progress', { task: 'sync', done: 1024, total: 4096, unit: 'pages' });
      bus.emit('progress', { task: 'sync', done: 4096, total: 4096, unit: 'pages' });
    } finally {
      log.close();
    }
    const msgs = c.lines.map((l) => JSON.parse(l) as { msg: string; progress?: boolean });
    expect(msgs.map((m) => m.msg)).toEqual(['sync: started, 4096 pages to go', 'sync: 25% (1024/4096 pages)', expect.stringMatching(/^sync: done, 4096 pages in [\d.]+ s$/)]);
    expect(msgs.every((m) => m.progress === true)).toBe(true);
    // Closed: no more subscribers left behind.
    expect(diagnosticsChannel.hasSubscribers('ftvm:progress')).toBe(false);
  });

  it('draws one progress line in place on a TTY, erased around log lines', () => {
    const c = capture(true);
    const log = new Logger('primary', 'info', { format: 'human', sink: c.sink, color: false });
    try {
      const bus = new FtvmEvents({ name: 'primary' });
      bus.emit('progress', { task: 'migration', done: 0, total: 1 << 20, unit: 'bytes' });
      bus.emit('progress', { task: 'migration', done: 1 << 19, total: 1 << 20, unit: 'bytes' });
      log.info('round 1 done');
      bus.emit('progress', { task: 'migration', done: 1 << 20, total: 1 << 20, unit: 'bytes' });
    } finally {
      log.close();
    }
    const out = c.raw.join('');
    expect(out).toContain('\r\x1b[Kmigration [############............] 50% (512.0 KiB/1.0 MiB)');
    // The log line is printed on a cleared line, then the bar is drawn again.
    expect(out).toMatch(/\r\x1b\[K\d\d:\d\d:\d\d\.\d{3} INFO  \[primary\] round 1 done\n\r\x1b\[Kmigration \[/);
    expect(out).toMatch(/migration: done, 1\.0 MiB in [\d.]+ s\n$/);
  });

  it('refuses bad progress options with a coded error', () => {
    expect(() => new ProgressReporter({ write: () => undefined, tty: false, intervalMs: -1 })).toThrow(/intervalMs/);
    expect(() => new ProgressReporter({ write: () => undefined, tty: true, barWidth: 1 })).toThrow(/barWidth/);
  });
});

describe('logs of a real ftvm process', () => {
  const procs: Spawned[] = [];
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
  });

  it('FTVM_LOG_FORMAT=json: every stderr line is a JSON record; stdout keeps the machine line', async () => {
    const p = spawnFtvm(['run', '--port', '0'], { FTVM_LOG_FORMAT: 'json' });
    procs.push(p);
    const port = Number((await p.waitFor(/listening on [^:]+:(\d+)/))[1]);
    const c = await RespClient.connect(port);
    c.send('SET', 'a', '1');
    expect(await c.waitReplies(1)).toEqual(['OK']);
    c.end();
    await p.waitFor(/serving kv unprotected/);
    expect(p.err.length).toBeGreaterThan(1);
    for (const line of p.err) {
      const rec = JSON.parse(line) as Record<string, unknown>;
      expect(rec.role).toBe('run');
      expect(['error', 'warn', 'info', 'debug']).toContain(rec.level);
      expect(typeof rec.msg).toBe('string');
    }
    expect(p.out).toContain(`ftvm run: listening on 127.0.0.1:${port}`);
  });

  it('--log-level warn hides info records', async () => {
    const p = spawnFtvm(['run', '--port', '0', '--log-level', 'warn']);
    procs.push(p);
    await p.waitFor(/listening on/);
    await new Promise((r) => setTimeout(r, 200));
    expect(p.err.filter((l) => / INFO  /.test(l))).toEqual([]);
  });
});
