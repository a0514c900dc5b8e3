import { connect, type Socket } from 'node:net';

export const resp = (...args: string[]): string => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;

/**
 * A RESP client on one TCP connection that parses integer, simple-string, error and
 * bulk replies in order. It never reconnects: a dropped connection is a test failure.
 */
export class RespClient {
  readonly replies: string[] = [];
  closed = false;
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      this.parse();
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }
  static connect(port: number): Promise<RespClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(new RespClient(s)));
      s.once('error', reject);
    });
  }
  private parse(): void {
    for (;;) {
      const nl = this.buf.indexOf('\r\n');
      if (nl < 0) return;
      const type = String.fromCharCode(this.buf[0]!);
      const line = this.buf.subarray(1, nl).toString();
      if (type === '$') {
        const n = Number(line);
        if (n < 0) {
          this.replies.push('(nil)');
          this.buf = this.buf.subarray(nl + 2);
          continue;
        }
        if (this.buf.length < nl + 2 + n + 2) return;
        this.replies.push(this.buf.subarray(nl + 2, nl + 2 + n).toString());
        this.buf = this.buf.subarray(nl + 2 + n + 2);
        continue;
      }
      this.replies.push(type === '-' ? `ERR:${line}` : line);
      this.buf = this.buf.subarray(nl + 2);
    }
  }
  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  send(...args: string[]): void {
    this.socket.write(resp(...args));
  }
  async waitReplies(n: number, timeoutMs = 20_000): Promise<string[]> {
    const end = Date.now() + timeoutMs;
    while (this.replies.length < n && !this.closed && Date.now() < end) {
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
    return this.replies;
  }
  end(): void {
    this.socket.destroy();
  }
}
