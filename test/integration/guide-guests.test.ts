// Follows docs/guests.md as a newcomer would, in an empty folder outside the repo: its tagged
// code blocks are the files written and the commands run (ports swapped for free ones).
//   ```<lang> file=<path>   written to <path>
//   ```sh run               run with bash; must exit 0
//   ```text output          each line appears in the output of the run block before it
//   ```sh serve             started in the background until the next serve block or the end
//   ```sh client            each line `<command>   # <expected stdout>` (or `kill -9 <primary pid>`)
// Besides the page: a connection held across the kill keeps working, and a module built without
// the SDK's abort fails `ftvm inspect` as the page says.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { freePorts } from '../helpers/cluster.js';
import { LineClient } from '../helpers/lines.js';
import { codeBlocks, sh as shIn, userEnv } from '../helpers/shell.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DOC = join(ROOT, 'docs', 'guests.md');

// The page's ports, each replaced by a free one; 9100 is up's --metrics-port (the nodes take the next two).
const PAGE_PORTS = [6390, 6380, 7001, 7002, 9100];

const env = userEnv({ FTVM: ROOT });

const sh = (script: string, cwd: string, timeoutMs?: number) => shIn(script, cwd, env, timeoutMs);
const collapse = (s: string) => s.replace(/\s+/g, ' ').trim();

class Served {
  readonly out: string[] = [];
  private err = '';
  readonly exited: Promise<void>;
  constructor(readonly proc: ChildProcess) {
    let buf = '';
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (d: string) => {
      buf += d;
      const lines = buf.split('\n');
      buf = lines.pop()!;
      this.out.push(...lines);
    });
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (d: string) => (this.err = (this.err + d).slice(-20_000)));
    this.exited = new Promise((r) => proc.once('exit', () => r()));
  }
  async waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      for (const l of this.out) {
        const m = l.match(re);
        if (m) return m;
      }
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) throw new Error(`served command exited before ${re}:\n${this.log()}`);
      if (Date.now() > end) throw new Error(`timed out waiting for ${re}:\n${this.log()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  log(): string {
    return `${this.out.join('\n')}\n--- stderr (tail):\n${this.err}`;
  }
  /** Stops the whole process group (npx, the shell, ftvm and the roles it started). */
  async stop(): Promise<void> {
    const pid = this.proc.pid!;
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      try {
        process.kill(-pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      const t = setTimeout(() => {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }, 10_000);
      await this.exited;
      clearTimeout(t);
    }
    // up's children are in the group too and may outlive their parent by a moment.
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(-pid, 0);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

describe('docs/guests.md, followed from an empty folder outside the repo', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-guide-'));
  const served: Served[] = [];
  afterAll(async () => {
    for (const s of served) await s.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('packs, installs, builds, inspects, serves and replicates the counter guest through a SIGKILL of the primary', async () => {
    expect(relative(ROOT, dir).startsWith('..')).toBe(true);
    const markdown = readFileSync(DOC, 'utf8');
    const free = freePorts(PAGE_PORTS.length + 2);
    const portOf = new Map(PAGE_PORTS.map((p, i) => [p, free[i]!]));
    for (const p of PAGE_PORTS) expect(markdown, `port ${p} on the page`).toMatch(new RegExp(`\\b${p}\\b`));
    const ports = (s: string) => s.replace(/\b\d{4,5}\b/g, (n) => String(portOf.get(Number(n)) ?? n));

    const seen: Record<string, number> = {};
    let lastOutput = '';
    let current: Served | undefined;
    let primaryPid: number | undefined;
    let held: LineClient | undefined;
    let clientPort = 0;
    for (const b of codeBlocks(markdown)) {
      const file = b.tags.find((t) => t.startsWith('file='))?.slice(5);
      const tag = file ? 'file' : b.tags[0];
      if (!tag) continue;
      seen[tag] = (seen[tag] ?? 0) + 1;
      if (file) {
        mkdirSync(dirname(join(dir, file)), { recursive: true });
        writeFileSync(join(dir, file), b.text);
      } else if (tag === 'run') {
        const r = sh(ports(b.text), dir);
        lastOutput = r.out + r.err;
        expect(r.code, `${b.text}\n${lastOutput}\n${r.error ?? ''}`).toBe(0);
      } else if (tag === 'output') {
        for (const line of b.text.split('\n').filter((l) => l.trim())) expect(collapse(lastOutput)).toContain(collapse(line));
      } else if (tag === 'serve') {
        await current?.stop();
        const cmd = ports(b.text.trim());
        clientPort = Number(cmd.match(/--port (\d+)/)![1]);
        current = new Served(spawn('bash', ['-c', `exec ${cmd}`], { cwd: dir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] }));
        served.push(current);
        const m = await current.waitFor(/listening on|watch a failover: +kill -9 (\d+)/, 120_000);
        primaryPid = m[1] ? Number(m[1]) : undefined;
      } else if (tag === 'client') {
        for (const line of b.text.split('\n').filter((l) => l.trim())) {
          if (line.trim() === 'kill -9 <primary pid>') {
            expect(primaryPid, 'the served command printed the primary pid').toBeGreaterThan(0);
            // A connection of our own, opened before the kill and used after it.
            held = await LineClient.connect(clientPort);
            held.send('INCR held\n');
            expect(await held.waitLines(1)).toEqual(['1']);
            process.kill(primaryPid!, 'SIGKILL');
            seen.kill = 1;
            continue;
          }
          const [cmd, expected] = line.split(/\s+#\s+/) as [string, string | undefined];
          const r = sh(ports(cmd), dir, 60_000);
          expect(r.code, `${cmd}\n${r.out}${r.err}`).toBe(0);
          if (expected !== undefined) expect(r.out.trim(), cmd).toBe(expected.trim());
        }
      }
    }
    expect(seen).toMatchObject({ file: 3, run: 3, output: 1, serve: 2, client: 2, kill: 1 });
    // The connection held across the failover still works, and its counter survived.
    held!.send('INCR held\n');
    expect(await held!.waitLines(2)).toEqual(['1', '2']);
    expect(held!.closed).toBe(false);
    held!.socket.destroy();
    await current?.stop();

    // As the page says: built without --use abort=..., the module imports env.abort and fails inspect.
    const build = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { scripts: { build: string } }).scripts.build;
    const noAbort = build.replace(/ --use abort=\S+/, '').replace('build/counter.wasm', 'build/no-abort.wasm');
    expect(noAbort).not.toBe(build);
    expect(sh(`npx ${noAbort}`, dir).code).toBe(0);
    const r = sh('npx ftvm inspect build/no-abort.wasm', dir);
    expect(r.code).toBe(1);
    expect(r.out + r.err).toMatch(/ABI: +FAILED FTVM_ERR_ABI_UNKNOWN_IMPORT: import "env.abort" \(func\) is not part of the ftvm ABI/);
  }, 900_000);
});
