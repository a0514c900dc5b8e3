/**
 * The attacks of issue 23, each against real processes on loopback: every one is refused
 * with a coded error and the cluster (or guest) keeps serving its clients.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect, encodeFrame, type ConnectOptions } from '@ftvm/protocol';
import { Cluster, freePorts } from '../helpers/cluster.js';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { RespClient } from '../helpers/resp.js';

const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
  return 'no error';
};

/** SET then GET through `port`: the service answers. */
async function serves(port: number, key: string): Promise<void> {
  const c = await RespClient.connect(port);
  try {
    c.send('SET', key, `v-${key}`);
    c.send('GET', key);
    expect(await c.waitReplies(2)).toEqual(['OK', `v-${key}`]);
  } finally {
    c.end();
  }
}

/** The coded error an ftvm command exited with (its `ftvm: error CODE:` line). */
async function exitError(s: Spawned): Promise<{ code: number | null; error: string }> {
  const code = await s.exited;
  const lines = [...s.err, ...s.out];
  // `ftvm: error CODE: ...` (a refused start) or a log line's code field (a failed request).
  for (const l of lines) {
    const m = /(?:ftvm: error |\bcode[=":\s]+)(FTVM_ERR_[A-Z0-9_]+)/.exec(l);
    if (m) return { code, error: m[1]! };
  }
  return { code, error: `none in: ${lines.slice(-5).join(' | ')}` };
}

async function scrape(url: string): Promise<string> {
  return (await fetch(`${url}/metrics`)).text();
}

function metric(text: string, name: string, labels = ''): number {
  const re = new RegExp(`^${name}${labels.replace(/[{}"=]/g, (c) => `\\${c}`)} (\\S+)$`, 'm');
  return Number(re.exec(text)?.[1] ?? NaN);
}

describe('attacks on a replicated cluster', () => {
  const cluster = new Cluster({ metrics: true });
  const token = (): Uint8Array => new Uint8Array(Buffer.from(readFileSync(cluster.tokenFile, 'utf8').trim()));
  const base = (over: Partial<ConnectOptions>): ConnectOptions => ({ token: token(), role: 'proxy', link: 'net', nodeId: 'attacker', term: 99, timeoutMs: 3000, ...over });
  beforeAll(() => cluster.start(), 120_000);
  afterAll(() => cluster.stop());

  it('fence or promote without the token: AUTH_FAILED (a wrong token, or none with --insecure), and the cluster serves on', { timeout: 60_000 }, async () => {
    const wrong = new TextEncoder().encode('guessed-token');
    // A would-be proxy on the primary (fence) and on the secondary (promote).
    expect(await codeOf(connect(cluster.url('a'), base({ token: wrong })))).toBe('FTVM_ERR_AUTH_FAILED');
    expect(await codeOf(connect(cluster.url('b'), base({ token: wrong })))).toBe('FTVM_ERR_AUTH_FAILED');
    expect(await codeOf(connect(cluster.url('b'), base({ token: new Uint8Array(0), insecure: true })))).toBe('FTVM_ERR_AUTH_FAILED');
    // An empty token is refused before anything is sent.
    expect(await codeOf(connect(cluster.url('b'), base({ token: new Uint8Array(0) })))).toBe('FTVM_ERR_NO_TOKEN');
    // Even with the token, a net link (promote, fence) is the proxy's only; a control link carries requests only.
    expect(await codeOf(connect(cluster.url('b'), base({ role: 'cli' })))).toBe('FTVM_ERR_ROLE');
    const ctl = await connect(cluster.url('a'), base({ role: 'cli', link: 'control' }));
    const closed = new Promise<string>((r) => ctl.once('close', (_c, reason) => r(reason)));
    ctl.send({ t: 'fence', term: 99 });
    expect(await closed).toMatch(/^FTVM_ERR_UNEXPECTED_MESSAGE/);
    await serves(cluster.ports.proxy, 'after-fence-attempts');
    expect(cluster.primaryKey()).toBe('a');
    expect(cluster.nodes.a.err.some((l) => /fenced|this node is now a secondary/.test(l))).toBe(false);
  });

  it('replacing the replication link: AUTH_FAILED, the primary stays PROTECTED', { timeout: 60_000 }, async () => {
    const before = cluster.nodes.a.err.length;
    const hello = { role: 'primary' as const, link: 'replication' as const, term: 99 };
    expect(await codeOf(connect(cluster.url('b'), base({ ...hello, token: new TextEncoder().encode('nope') })))).toBe('FTVM_ERR_AUTH_FAILED');
    expect(await codeOf(connect(cluster.url('a'), base({ role: 'secondary', link: 'replication', token: new TextEncoder().encode('nope') })))).toBe('FTVM_ERR_AUTH_FAILED');
    await new Promise((r) => setTimeout(r, 1500));
    expect(cluster.nodes.a.err.slice(before).filter((l) => /UNPROTECTED/.test(l))).toEqual([]);
    expect(metric(await scrape(cluster.metricsUrl('a')), 'ftvm_protected')).toBe(1);
    expect(metric(await scrape(cluster.metricsUrl('b')), 'ftvm_listener_refused_connections', '{reason="handshake"}')).toBeGreaterThan(0);
    await serves(cluster.ports.proxy, 'after-replication-attempt');
  });

  it('migrating to a rogue receiver: the target fails to prove the token (MIGRATE_TARGET), the guest stays', { timeout: 90_000 }, async () => {
    const [rogue, rogueMetrics] = freePorts(2) as [number, number];
    const fake = spawnFtvm(['secondary', '--listen', `127.0.0.1:${rogue}`, '--node-id', 'rogue', '--insecure', '--metrics-port', String(rogueMetrics)]);
    try {
      await fake.waitFor(/listening on/, 60_000);
      expect(fake.err.some((l) => /WARNING: running with --insecure/.test(l))).toBe(true);
      expect(metric(await scrape(`http://127.0.0.1:${rogueMetrics}`), 'ftvm_insecure')).toBe(1);
      expect(metric(await scrape(cluster.metricsUrl('a')), 'ftvm_insecure')).toBe(0);
      const m = spawnFtvm(['migrate', '--from', cluster.url('a'), '--to', `ws://127.0.0.1:${rogue}`, '--token-file', cluster.tokenFile, '--sync-timeout-ms', '5000']);
      const r = await exitError(m);
      expect(r.code).toBe(1);
      expect(r.error).toBe('FTVM_ERR_MIGRATE_TARGET');
      expect(m.err.join('\n')).toMatch(/AUTH_FAILED/);
      // A migrate request without the token never leaves the client.
      const bare = await exitError(spawnFtvm(['migrate', '--from', cluster.url('a'), '--to', `ws://127.0.0.1:${rogue}`], { FTVM_TOKEN: '' }));
      expect(bare).toEqual({ code: 1, error: 'FTVM_ERR_NO_TOKEN' });
    } finally {
      await fake.stop('SIGKILL');
    }
    expect(cluster.primaryKey()).toBe('a');
    await serves(cluster.ports.proxy, 'after-rogue-migration');
  });

  it('10,000 idle connections to a node listener: dropped past the bound, the node keeps serving', { timeout: 120_000 }, async () => {
    // The node's own open files: what the idle connections cost it.
    const fds = (): number => readdirSync(`/proc/${cluster.nodes.a.proc.pid}/fd`).length;
    const before = fds();
    const sockets: Socket[] = [];
    let peakFds = before;
    for (let batch = 0; batch < 20; batch++) {
      await Promise.all(Array.from({ length: 500 }, () => new Promise<void>((resolve) => {
        const s = tcpConnect(cluster.ports.a, '127.0.0.1');
        sockets.push(s);
        s.once('connect', () => resolve());
        s.once('error', () => resolve());
        s.once('close', () => resolve());
      })));
      peakFds = Math.max(peakFds, fds());
    }
    expect(sockets.length).toBe(10_000);
    // Meanwhile: clients are served through the proxy, whose link to this node is already up.
    await serves(cluster.ports.proxy, 'during-idle-flood');
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 500));
      peakFds = Math.max(peakFds, fds());
    }
    const dropped = metric(await scrape(cluster.metricsUrl('a')), 'ftvm_listener_refused_connections', '{reason="dropped"}');
    console.log(`idle flood: node a fds ${before} before, peak ${peakFds}; dropped at accept ${dropped}`);
    for (const s of sockets) s.destroy();
    // The node holds at most maxLinks (16) + pending handshakes (64) sockets however many arrive.
    expect(peakFds - before).toBeLessThanOrEqual(80);
    expect(dropped).toBeGreaterThan(9000);
    await serves(cluster.ports.proxy, 'after-idle-flood');
  });
});

describe('frame injection into an authenticated link (on-path relay between the proxy and a node)', () => {
  /**
   * A TCP relay that forwards whole WebSocket frames from the proxy to the node and, when
   * asked, writes one extra, well-formed, masked WebSocket frame between two of them.
   */
  class Relay {
    server!: Server;
    port = 0;
    private pending: Buffer | null = null;
    private upstreams: Socket[] = [];
    constructor(private readonly target: number) {}
    async start(): Promise<void> {
      this.server = createServer((down) => {
        const up = tcpConnect(this.target, '127.0.0.1');
        this.upstreams.push(up);
        let buf = Buffer.alloc(0);
        let upgraded = false;
        down.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          if (!upgraded) {
            const end = buf.indexOf('\r\n\r\n');
            if (end < 0) return;
            up.write(buf.subarray(0, end + 4));
            buf = buf.subarray(end + 4);
            upgraded = true;
          }
          for (;;) {
            const n = wsFrameLength(buf);
            if (n < 0 || buf.length < n) break;
            up.write(buf.subarray(0, n));
            buf = buf.subarray(n);
            if (this.pending) {
              up.write(this.pending);
              this.pending = null;
            }
          }
        });
        up.on('data', (d) => down.write(d));
        const end = (): void => {
          down.destroy();
          up.destroy();
        };
        down.on('close', end).on('error', end);
        up.on('close', end).on('error', end);
      });
      await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
      this.port = (this.server.address() as { port: number }).port;
    }
    inject(frame: Buffer): void {
      this.pending = frame;
    }
    close(): void {
      for (const u of this.upstreams) u.destroy();
      this.server.close();
    }
  }

  /** Length of the WebSocket frame at the start of buf, or -1 while its header is incomplete. */
  function wsFrameLength(buf: Buffer): number {
    if (buf.length < 2) return -1;
    const masked = (buf[1]! & 0x80) !== 0;
    let len = buf[1]! & 0x7f;
    let off = 2;
    if (len === 126) {
      if (buf.length < 4) return -1;
      len = buf.readUInt16BE(2);
      off = 4;
    } else if (len === 127) {
      if (buf.length < 10) return -1;
      len = Number(buf.readBigUInt64BE(2));
      off = 10;
    }
    return off + (masked ? 4 : 0) + len;
  }

  /** A masked binary WebSocket frame (client to server) carrying `payload`. */
  function wsFrame(payload: Uint8Array): Buffer {
    const mask = Buffer.from([1, 2, 3, 4]);
    const head = payload.length < 126 ? Buffer.from([0x82, 0x80 | payload.length]) : Buffer.from([0x82, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
    const body = Buffer.from(payload).map((b, i) => b ^ mask[i % 4]!);
    return Buffer.concat([head, mask, body]);
  }

  const [pa, pb, pp] = freePorts(3) as [number, number, number];
  const env = { FTVM_TOKEN: 'injection-test-token' };
  const relay = new Relay(pa);
  const procs: Spawned[] = [];
  beforeAll(async () => {
    await relay.start();
    const b = spawnFtvm(['secondary', '--listen', `127.0.0.1:${pb}`, '--node-id', 'b', '--peer', `ws://127.0.0.1:${pa}`], env);
    procs.push(b);
    await b.waitFor(/listening on/, 60_000);
    const a = spawnFtvm(['primary', '--listen', `127.0.0.1:${pa}`, '--node-id', 'a', '--secondary', `ws://127.0.0.1:${pb}`], env);
    procs.push(a);
    await a.waitFor(/ PROTECTED:/, 60_000);
    // The proxy reaches node a through the relay.
    const proxy = spawnFtvm(['proxy', '--port', String(pp), '--nodes', `ws://127.0.0.1:${relay.port},ws://127.0.0.1:${pb}`], env);
    procs.push(proxy);
    await proxy.waitFor(/listening on/, 30_000);
    await a.waitFor(/proxy connected/, 30_000);
  }, 120_000);
  afterAll(async () => {
    relay.close();
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  });

  it('a fence written into the proxy\'s link is detected (FRAME_AUTH, 4011) and never applied; clients are served', { timeout: 60_000 }, async () => {
    await serves(pp, 'before-injection');
    const a = procs[1]!;
    const from = a.err.length;
    const c = await RespClient.connect(pp);
    relay.inject(wsFrame(encodeFrame({ t: 'fence', term: 1000 })));
    // Traffic on the link carries the injected frame in right behind a real one.
    c.send('SET', 'x', '1');
    await c.waitReplies(1);
    c.end();
    const deadline = Date.now() + 10_000;
    while (!a.err.slice(from).some((l) => /FTVM_ERR_FRAME_AUTH/.test(l)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(a.err.slice(from).find((l) => /FTVM_ERR_FRAME_AUTH/.test(l))).toBeTruthy();
    // The injected fence (term 1000) never took effect. The node closed the tampered link, which the
    // proxy sees as the primary's loss: it may fail over to b in its own next term, as for a cut cable.
    expect(procs.flatMap((p) => p.err).filter((l) => /term 1000/.test(l))).toEqual([]);
    await serves(pp, 'after-injection');
  });
});

describe('attacks on an unprotected guest (ftvm run --control)', () => {
  const [port, ctl, rogue, rport, mport] = freePorts(5) as [number, number, number, number, number];
  const env = { FTVM_TOKEN: 'run-attack-token' };
  let dir = '';
  let run: Spawned;
  const procs: Spawned[] = [];
  beforeAll(async () => {
    dir = join(statSync('/tmp').isDirectory() ? '/tmp' : '.', `ftvm-attacks-${process.pid}`);
    mkdirSync(join(dir, 'snaps'), { recursive: true });
    run = spawnFtvm(['run', '--guest', 'kv', '--port', String(port), '--control', `127.0.0.1:${ctl}`, '--snapshot-dir', join(dir, 'snaps'), '--metrics-port', String(mport)], env);
    procs.push(run);
    await run.waitFor(/ftvm control: listening/, 60_000);
  }, 90_000);
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  });

  it('roles refuse to start without credentials: FTVM_ERR_NO_TOKEN, saying how to make one', { timeout: 60_000 }, async () => {
    const bare = { FTVM_TOKEN: '' };
    for (const args of [
      ['run', '--port', '0', '--control', '127.0.0.1:0'],
      ['primary', '--listen', '127.0.0.1:0'],
      ['proxy', '--port', '0', '--nodes', 'ws://127.0.0.1:1'],
      ['receive', '--listen', '127.0.0.1:0'],
      ['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--live', '-o', 'x.snap'],
    ]) {
      const p = spawnFtvm(args, bare);
      procs.push(p);
      const r = await exitError(p);
      expect(r, args[0]).toEqual({ code: 1, error: 'FTVM_ERR_NO_TOKEN' });
      expect(p.err.join('\n')).toMatch(/ftvm token/);
    }
  });

  it('ftvm token writes a 0600 file and never overwrites one', async () => {
    const file = join(dir, 'new-token');
    const first = spawnFtvm(['token', file]);
    expect(await first.exited).toBe(0);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim()).toMatch(/^[0-9a-f]{64}$/);
    const before = readFileSync(file);
    const again = spawnFtvm(['token', file]);
    expect(await exitError(again)).toEqual({ code: 1, error: 'FTVM_ERR_TOKEN_FILE' });
    expect(readFileSync(file).equals(before)).toBe(true);
  });

  it('a snapshot to an arbitrary path or over a file is refused; one in --snapshot-dir is 0600', { timeout: 60_000 }, async () => {
    const victim = join(dir, 'victim.txt');
    writeFileSync(victim, 'do not touch');
    const out = spawnFtvm(['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--live', '-o', victim], env);
    expect(await exitError(out)).toEqual({ code: 1, error: 'FTVM_ERR_SNAPSHOT_PATH' });
    const up = spawnFtvm(['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--live', '-o', '../escape.snap'], env);
    expect(await exitError(up)).toEqual({ code: 1, error: 'FTVM_ERR_SNAPSHOT_PATH' });
    expect(existsSync(join(dir, 'escape.snap'))).toBe(false);
    expect(readFileSync(victim, 'utf8')).toBe('do not touch');
    const wrong = spawnFtvm(['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--live', '-o', 'a.snap'], { FTVM_TOKEN: 'not-the-token' });
    expect(await exitError(wrong)).toEqual({ code: 1, error: 'FTVM_ERR_AUTH_FAILED' });
    const ok = spawnFtvm(['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--live', '-o', 'good.snap'], env);
    expect(await ok.exited).toBe(0);
    const good = join(dir, 'snaps', 'good.snap');
    expect(statSync(good).mode & 0o777).toBe(0o600);
    const before = readFileSync(good);
    const over = spawnFtvm(['snapshot', '--from', `ws://127.0.0.1:${ctl}`, '--live', '-o', 'good.snap'], env);
    expect(await exitError(over)).toEqual({ code: 1, error: 'FTVM_ERR_SNAPSHOT_EXISTS' });
    expect(readFileSync(good).equals(before)).toBe(true);
    await serves(port, 'after-snapshot-attacks');
  });

  it('restoring a forged snapshot (written under another token, or altered) is refused with SNAPSHOT_AUTH', { timeout: 60_000 }, async () => {
    const good = join(dir, 'snaps', 'good.snap');
    const other = spawnFtvm(['restore', good, '--port', '0'], { FTVM_TOKEN: 'attacker-token' });
    expect(await exitError(other)).toEqual({ code: 1, error: 'FTVM_ERR_SNAPSHOT_AUTH' });
    const forged = join(dir, 'forged.snap');
    const bytes = Buffer.from(readFileSync(good));
    bytes[Math.floor(bytes.length / 2)]! ^= 0x40;
    writeFileSync(forged, bytes);
    const altered = spawnFtvm(['restore', forged, '--port', '0'], env);
    expect(await exitError(altered)).toEqual({ code: 1, error: 'FTVM_ERR_SNAPSHOT_AUTH' });
    // The genuine file restores.
    const real = spawnFtvm(['restore', good, '--port', String(rport)], env);
    procs.push(real);
    await real.waitFor(/ftvm restore: listening/, 30_000);
    await serves(rport, 'restored');
    await real.stop();
  });

  it('migrating to a rogue receiver (another token) fails on the server proof; the guest stays here', { timeout: 90_000 }, async () => {
    const fake = spawnFtvm(['receive', '--listen', `127.0.0.1:${rogue}`, '--port', '0'], { FTVM_TOKEN: 'rogue-token' });
    procs.push(fake);
    await fake.waitFor(/migration listener on/, 30_000);
    const m = spawnFtvm(['migrate', '--from', `ws://127.0.0.1:${ctl}`, '--to', `ws://127.0.0.1:${rogue}`], env);
    const r = await exitError(m);
    expect(r.code).toBe(1);
    expect(m.err.join('\n')).toMatch(/FTVM_ERR_AUTH_FAILED/);
    expect(fake.out.some((l) => /ftvm receive: listening on/.test(l))).toBe(false);
    await serves(port, 'after-rogue-receiver');
  });

  it('a client that asks for much more output than it reads is disconnected past maxPendingOutputBytes', { timeout: 60_000 }, async () => {
    const w = await RespClient.connect(port);
    w.send('SET', 'wide', 'w'.repeat(1 << 20));
    expect(await w.waitReplies(1)).toEqual(['OK']);
    w.end();
    const from = run.err.length;
    // 64 pipelined GETs of 1 MiB each, never read: 64 MiB of output for 1 KiB of input.
    const greedy = tcpConnect(port, '127.0.0.1');
    greedy.pause();
    greedy.on('error', () => undefined);
    greedy.write(Array.from({ length: 64 }, () => '*2\r\n$3\r\nGET\r\n$4\r\nwide\r\n').join(''));
    // The client never reads, so it would not see the close: the server's log says it.
    await run.waitFor(/client dropped.*maxPendingOutputBytes/, 20_000);
    expect(run.err.slice(from).some((l) => /client dropped/.test(l))).toBe(true);
    expect(metric(await scrape(`http://127.0.0.1:${mport}`), 'ftvm_clients_dropped_total', '{reason="slow_reader"}')).toBe(1);
    greedy.destroy();
    await serves(port, 'after-greedy-reader');
  });

  it('four clients each sending a 48 MiB partial bulk to kv: refused past the input budget, RSS bounded, memory returned', { timeout: 120_000 }, async () => {
    const rss = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${run.proc.pid}/status`, 'utf8'))?.[1] ?? NaN) * 1024;
    await serves(port, 'before-bulk');
    const base = rss();
    const chunk = Buffer.alloc(1 << 20, 0x61);
    const clients: Socket[] = [];
    const replies: string[] = [];
    let peak = base;
    await Promise.all(Array.from({ length: 4 }, (_, i) => new Promise<void>((resolve) => {
      const s = tcpConnect(port, '127.0.0.1', () => {
        s.write(`*3\r\n$3\r\nSET\r\n$4\r\nbig${i}\r\n$${60 << 20}\r\n`);
        let sent = 0;
        const pump = (): void => {
          while (sent < 48 && !s.destroyed) {
            sent++;
            if (!s.write(chunk)) return void s.once('drain', pump);
          }
          resolve();
        };
        pump();
      });
      s.on('data', (d) => replies.push(`${i}:${d.toString().trim()}`));
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      clients.push(s);
    })));
    for (let t = 0; t < 20; t++) {
      peak = Math.max(peak, rss());
      await new Promise((r) => setTimeout(r, 100));
    }
    // The guest still serves while the partial bulks are pending.
    await serves(port, 'during-bulk');
    for (const s of clients) s.destroy();
    await new Promise((r) => setTimeout(r, 3000));
    const after = rss();
    // At most one 48 MiB request fits the 80 MiB budget together with the others: the rest are told so and closed.
    expect(replies.filter((r) => /pending input of all clients/.test(r)).length).toBeGreaterThanOrEqual(2);
    console.log(`kv partial-bulk attack: RSS base ${(base / 2 ** 20).toFixed(0)} MiB, peak ${(peak / 2 ** 20).toFixed(0)} MiB, after close ${(after / 2 ** 20).toFixed(0)} MiB`);
    // Bound: unbudgeted, this took the process from 334 MB to 1.23 GB, 1.5 GB after close (issue 23). Budgeted, the
    // growth (one request's 60 MiB buffer in guest memory, its rollback copy, socket buffers) stays under 512 MiB.
    expect(peak - base).toBeLessThan(512 * 2 ** 20);
    // Wasm memory never shrinks, so the guest's freed buffer stays resident (reused by the next request): after
    // the close RSS does not grow (within 8 MiB of allocator noise); it does not fall back to the base.
    expect(after).toBeLessThanOrEqual(peak + 8 * 2 ** 20);
    await serves(port, 'after-bulk');
  });
});

