/**
 * The C and Rust SDK examples (packages/guest-sdk-c/examples/echo.c,
 * packages/guest-sdk-rust/examples/echo.rs) built with the commands docs/guest-c.md and
 * docs/guest-rust.md give, then served by `ftvm run` to a real TCP client: the greeting,
 * the echo, and the once-a-second log line from a guest timer (printf through the WASI
 * mapping in C, ftvm::log in Rust).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { freePorts } from '../helpers/cluster.js';
import { spawnFtvm, type Spawned } from '../helpers/ftvm.js';
import { haveTool } from '../helpers/tools.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const pkg = (p: string) => join(root, 'packages', p);
const addAbi = (f: string) => execFileSync(process.execPath, [pkg('guests/scripts/build-native.mjs'), '--add-abi-version', f]);

/** Debian's rustc (a rustup one on PATH may lack the wasm32 std). */
function haveDebianRustc(): boolean {
  if (existsSync('/usr/bin/rustc')) return true;
  if (process.env.CI) throw new Error('/usr/bin/rustc is not installed; .ci/run must install rustc');
  console.warn('skipping: /usr/bin/rustc is not installed (Debian rustc + libstd-rust-dev-wasm32; CI installs them)');
  return false;
}

function talk(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const s = connect(port, '127.0.0.1', () => s.write('ping\n'));
    s.setEncoding('utf8');
    s.on('data', (d) => {
      got += d;
      if (got === 'hello\nping\n') s.end();
    });
    s.on('close', () => resolve(got));
    s.on('error', reject);
    setTimeout(() => s.destroy(), 10_000);
  });
}

describe('guest SDK examples built with Debian toolchains and served by ftvm run', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-sdk-'));
  const procs: Spawned[] = [];
  afterAll(async () => {
    for (const p of procs) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function serve(wasm: string): Promise<void> {
    const [port] = freePorts(1);
    const run = spawnFtvm(['run', '--guest', wasm, '--port', String(port)]);
    procs.push(run);
    await run.waitFor(/listening on/, 60_000);
    expect(await talk(port!)).toBe('hello\nping\n');
    await run.waitFor(/guest: echoed 5 bytes so far/, 20_000);
    await run.stop();
  }

  it.runIf(haveTool('clang'))('C: echo.c', async () => {
    const out = join(dir, 'echo-c.wasm');
    const sdk = pkg('guest-sdk-c');
    execFileSync('clang', [
      '--target=wasm32-wasi', '-O2', '-mbulk-memory', '-nostartfiles', '-I', join(sdk, 'include'),
      '-Wl,--no-entry', '-Wl,--stack-first', '-Wl,-z,stack-size=1310720', '-Wl,--strip-debug',
      '-o', out, join(sdk, 'examples/echo.c'), join(sdk, 'src/ftvm.c'), join(sdk, 'src/wasi.c'),
    ]);
    addAbi(out);
    await serve(out);
  }, 120_000);

  it.runIf(haveDebianRustc())('Rust: echo.rs', async () => {
    const sdk = pkg('guest-sdk-rust');
    const rlib = join(dir, 'libftvm.rlib');
    const out = join(dir, 'echo-rs.wasm');
    const common = ['--edition', '2021', '--target', 'wasm32-unknown-unknown', '-O'];
    execFileSync('/usr/bin/rustc', [...common, '--crate-type', 'rlib', '--crate-name', 'ftvm', '-o', rlib, join(sdk, 'src/lib.rs')]);
    execFileSync('/usr/bin/rustc', [
      ...common, '--crate-type', 'cdylib', '-C', 'link-arg=-zstack-size=2097152', '-C', 'strip=debuginfo',
      '--extern', `ftvm=${rlib}`, '-o', out, join(sdk, 'examples/echo.rs'),
    ]);
    addAbi(out);
    await serve(out);
  }, 120_000);
});
