import { mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI } from '../../../test/helpers/ftvm.js';

/** Runs `ftvm <args>` to its exit (it must exit on its own): exit code and stderr. */
function ftvm(args: string[]): Promise<{ code: number | null; err: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const t = setTimeout(() => (p.kill('SIGKILL'), reject(new Error(`ftvm ${args.join(' ')} did not exit; stderr:\n${err}`))), 30_000);
    p.once('exit', (code) => (clearTimeout(t), resolve({ code, err })));
  });
}

describe('coded errors of the ftvm command line', () => {
  it('an unknown command and an unknown flag are usage errors (exit 2)', async () => {
    const cmd = await ftvm(['replicate']);
    expect(cmd.code).toBe(2);
    expect(cmd.err).toMatch(/ftvm: error FTVM_ERR_CLI_UNKNOWN_COMMAND: unknown command 'replicate' \(commands: .*run/);
    const flag = await ftvm(['run', '--guest', 'kv', '--colour', 'blue']);
    expect(flag.code).toBe(2);
    expect(flag.err).toMatch(/ftvm: error FTVM_ERR_CLI_UNKNOWN_FLAG: .*colour.* for 'ftvm run'/);
  });

  it('refuses a --vcpu that is neither inline nor worker', async () => {
    const r = await ftvm(['run', '--guest', 'kv', '--port', '0', '--vcpu', 'thread']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/FTVM_ERR_CLI_BAD_VALUE: --vcpu must be one of worker, inline, got 'thread'/);
  });

  it('refuses a URL flag that is neither ws:// nor wss://, before starting anything', async () => {
    const cases = [
      ['primary', '--listen', '127.0.0.1:0', '--secondary', 'http://127.0.0.1:7002'],
      ['secondary', '--listen', '127.0.0.1:0', '--join', 'tcp://127.0.0.1:7001'],
      ['proxy', '--port', '0', '--nodes', 'ws://127.0.0.1:7001,https://127.0.0.1:7002'],
      ['migrate', '--from', 'ws://127.0.0.1:7300', '--to', 'ftp://127.0.0.1:7400'],
    ];
    const results = await Promise.all(cases.map((args) => ftvm(args)));
    results.forEach((r, i) => {
      expect(r.code, cases[i]!.join(' ')).toBe(2);
      expect(r.err).toMatch(/FTVM_ERR_CLI_BAD_VALUE: --\w+ must be (a |comma-separated )ws:\/\/ or wss:\/\/ URL/);
    });
  });

  it('a --guest that is neither shipped nor a readable file fails the start with FTVM_ERR_GUEST_NOT_FOUND', async () => {
    const r = await ftvm(['run', '--guest', join(tmpdir(), 'no-such-guest.wasm'), '--port', '0']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/FTVM_ERR_GUEST_NOT_FOUND: --guest '.*no-such-guest\.wasm' is neither a shipped guest/);
  });

  it('a disk that cannot be created or opened fails the start with FTVM_ERR_DISK_OPEN', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-diskopen-'));
    const missingDir = await ftvm(['run', '--guest', 'kv', '--port', '0', '--disk', join(dir, 'no', 'such', 'dir', 'kv.img'), '--disk-size', '1M']);
    expect(missingDir.code).toBe(1);
    expect(missingDir.err).toMatch(/FTVM_ERR_DISK_OPEN: cannot create disk/);
    mkdirSync(join(dir, 'a-directory'));
    const notFile = await ftvm(['run', '--guest', 'kv', '--port', '0', '--disk', join(dir, 'a-directory'), '--disk-size', '1M']);
    expect(notFile.code).toBe(1);
    expect(notFile.err).toMatch(/FTVM_ERR_DISK_OPEN: disk .*a-directory is not a regular file/);
  });
});
