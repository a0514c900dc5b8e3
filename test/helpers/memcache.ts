import { execFile } from 'node:child_process';
import { connect, type Socket } from 'node:net';

/** A memcached text-protocol connection: raw writes, replies read until a predicate holds. */
export class McClient {
  private buf = '';
  private waiters: (() => void)[] = [];
  closed = false;
  private constructor(private readonly sock: Socket) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      this.buf += d;
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    sock.on('error', () => undefined);
  }

  static connect(port: number): Promise<McClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(new McClient(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Sends text and returns everything received until `done(reply)` is true (or timeout/close). */
  async request(text: string, done: (reply: string) => boolean, timeoutMs = 30_000): Promise<string> {
    this.buf = '';
    this.sock.write(text, 'latin1');
    const end = Date.now() + timeoutMs;
    while (!done(this.buf) && !this.closed && Date.now() < end) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.buf;
  }

  end(): void {
    this.sock.end();
  }
}

const count = (s: string, needle: string): number => s.split(needle).length - 1;

/** Stores n keys `${prefix}i` pipelined; returns how many were STORED. */
export async function mcFill(port: number, prefix: string, n: number, value: (i: number) => string): Promise<number> {
  const c = await McClient.connect(port);
  let text = '';
  for (let i = 0; i < n; i++) text += `set ${prefix}${i} ${i} 0 ${value(i).length}\r\n${value(i)}\r\n`;
  const r = await c.request(text, (b) => count(b, '\r\n') >= n);
  c.end();
  return count(r, 'STORED\r\n');
}

/** Reads keys `${prefix}i` back (get with 50 keys per line); returns the keys missing or wrong. */
export async function mcCheck(port: number, prefix: string, n: number, value: (i: number) => string): Promise<string[]> {
  const c = await McClient.connect(port);
  const bad: string[] = [];
  for (let start = 0; start < n; start += 50) {
    const keys = Array.from({ length: Math.min(50, n - start) }, (_, j) => `${prefix}${start + j}`);
    const r = await c.request(`get ${keys.join(' ')}\r\n`, (b) => b.endsWith('END\r\n'));
    keys.forEach((k, j) => {
      const i = start + j;
      if (!r.includes(`VALUE ${k} ${i} ${value(i).length}\r\n${value(i)}\r\n`)) bad.push(k);
    });
  }
  c.end();
  return bad;
}

/** Runs `memccapable -a` (the ascii conformance suite; it flushes the server) and returns its exit code and output. */
export function memccapable(port: number, timeoutMs = 120_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('memccapable', ['-h', '127.0.0.1', '-p', String(port), '-a', '-t', '10'], { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, out: stdout + stderr });
    });
  });
}

/** The 27 ascii tests memccapable 1.1 runs with -a, each reported `[pass]`. */
export const MEMCCAPABLE_ASCII_TESTS = 27;
