import { connect, type Socket } from 'node:net';

/** A TCP client that collects newline-terminated replies. */
export class LineClient {
  readonly lines: string[] = [];
  closed = false;
  private buf = '';
  private waiters: Array<() => void> = [];
  private constructor(readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        this.lines.push(this.buf.slice(0, i));
        this.buf = this.buf.slice(i + 1);
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }
  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  static connect(port: number, host = '127.0.0.1'): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, host, () => resolve(new LineClient(s)));
      s.once('error', reject);
    });
  }
  send(s: string): void {
    this.socket.write(s);
  }
  /** Waits until `n` lines arrived (or the socket closed, or the timeout). */
  async waitLines(n: number, timeoutMs = 10_000): Promise<string[]> {
    const end = Date.now() + timeoutMs;
    while (this.lines.length < n && !this.closed && Date.now() < end) {
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
    return this.lines;
  }
  async waitClosed(timeoutMs = 10_000): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < end) await new Promise<void>((r) => { this.waiters.push(r); setTimeout(r, 50); });
    return this.closed;
  }
  end(): void {
    this.socket.destroy();
  }
}
