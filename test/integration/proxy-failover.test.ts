/**
 * The whole stack as separate processes: `ftvm secondary`, `ftvm primary` (kv guest) and
 * `ftvm proxy`. One client connection sends INCR continuously; the primary is killed with
 * SIGKILL. The connection must stay open and the replies must be exactly 1, 2, 3, ...:
 * no reply lost, none from lost state, none twice.
 */
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';

const dir = mkdtempSync(join(tmpdir(), 'ftvm-proxy-failover-'));
const tokenFile = join(dir, 'token');
writeFileSync(tokenFile, 'failover-secret\n', { mode: 0o600 });
const procs: Spawned[] = [];
afterAll(async () => {
  for (const p of procs.reverse()) await p.stop('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** One RESP connection that sends `INCR c` and collects the integer replies. */
class IncrClient {
  replies: number[] = [];
  closed = false;
  private buf = '';
  constructor(readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buf += d;
      let m: RegExpExecArray | null;
      while ((m = /^:(-?\d+)\r\n/.exec(this.buf))) {
        this.replies.push(Number(m[1]));
        this.buf = this.buf.slice(m[0].length);
      }
    });
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => {});
  }
  incr(): void {
    this.socket.write('*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n');
  }
}

async function until(cond: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('ftvm proxy with real nodes', () => {
  it('keeps a client connection across SIGKILL of the primary, with every INCR answered exactly once, in order', { timeout: 120_000 }, async () => {
    const [pa, pb] = [await freePort(), await freePort()];
    const urlA = `ws://127.0.0.1:${pa}`;
    const urlB = `ws://127.0.0.1:${pb}`;
    const common = ['--guest', 'kv', '--token-file', tokenFile];
    const b = spawnFtvm(['secondary', '--listen', `127.0.0.1:${pb}`, '--node-id', 'b', '--peer', urlA, ...common]);
    procs.push(b);
    await b.waitFor(/listening on/, 30_000);
    const a = spawnFtvm(['primary', '--listen', `127.0.0.1:${pa}`, '--node-id', 'a', '--secondary', urlB, ...common]);
    procs.push(a);
    await a.waitFor(/listening on/, 30_000);
    const proxy = spawnFtvm(['proxy', '--port', '0', '--nodes', `${urlA},${urlB}`, '--token-file', tokenFile, '--failover-timeout-ms', '1000']);
    procs.push(proxy);
    const port = Number((await proxy.waitFor(/^ftvm proxy: listening on [^:]+:(\d+)$/, 30_000))[1]);
    await proxy.waitFor(/active node is now a \(term 0\)/, 30_000);
    await a.waitFor(/\] PROTECTED/, 30_000);

    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((r) => socket.once('connect', () => r()));
    const c = new IncrClient(socket);
    let sent = 0;
    const send = (): void => {
      sent++;
      c.incr();
    };
    for (let i = 0; i < 50; i++) send();
    await until(() => c.replies.length === 50, 'first 50 replies', 20_000);
    const ticker = setInterval(send, 5);
    await new Promise((r) => setTimeout(r, 300));
    await a.stop('SIGKILL');
    await proxy.waitFor(/active node is now b \(term 1\)/, 30_000);
    await new Promise((r) => setTimeout(r, 300));
    clearInterval(ticker);
    await until(() => c.replies.length === sent, `all ${sent} replies`, 30_000);
    expect(c.closed).toBe(false);
    expect(c.replies).toEqual(Array.from({ length: sent }, (_, i) => i + 1));
    expect(proxy.err.join('\n')).toMatch(/failover to b done in [\d.]+ ms/);
    socket.destroy();
  });
});
