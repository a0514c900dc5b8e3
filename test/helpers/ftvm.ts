import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../packages/cli/dist/main.js', import.meta.url));

export interface Spawned {
  proc: ChildProcess;
  out: string[];
  err: string[];
  /** Resolves with the first stdout/stderr line matching re (rejects on exit or timeout). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Resolves with the exit code (null if a signal ended it) when the process exits by itself or is stopped. */
  exited: Promise<number | null>;
}

/** Starts `ftvm <args>` as a real child process. */
export function spawnFtvm(args: string[], env: Record<string, string> = {}): Spawned {
  const proc = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: string[] = [];
  const err: string[] = [];
  const waiters: Array<{ re: RegExp; resolve: (m: RegExpMatchArray) => void }> = [];
  const feed = (sink: string[]) => (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) {
      if (!line) continue;
      sink.push(line);
      for (const w of [...waiters]) {
        const m = line.match(w.re);
        if (m) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    }
  };
  proc.stdout!.on('data', feed(out));
  proc.stderr!.on('data', feed(err));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return {
    proc,
    out,
    err,
    exited,
    waitFor(re, timeoutMs = 20_000) {
      for (const line of [...out, ...err]) {
        const m = line.match(re);
        if (m) return Promise.resolve(m);
      }
      return new Promise((resolve, reject) => {
        const w = { re, resolve };
        waiters.push(w);
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${re}; stderr:\n${err.join('\n')}`)), timeoutMs);
        void exited.then((code) => {
          clearTimeout(t);
          reject(new Error(`ftvm exited (${code}) before ${re}; stderr:\n${err.join('\n')}`));
        });
        const res = w.resolve;
        w.resolve = (m) => {
          clearTimeout(t);
          res(m);
        };
      });
    },
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/** Waits for a line matching re among the lines printed after index `from` of out+err. */
export async function waitForLineAfter(s: Spawned, re: RegExp, from: { out: number; err: number }, timeoutMs = 30_000): Promise<string> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const hit = [...s.out.slice(from.out), ...s.err.slice(from.err)].find((l) => re.test(l));
    if (hit) return hit;
    if (Date.now() > end) throw new Error(`timed out waiting for ${re}; stderr tail:\n${s.err.slice(-20).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const mark = (s: Spawned): { out: number; err: number } => ({ out: s.out.length, err: s.err.length });
