import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One redis-cli command; returns its raw output (no trailing newline). */
export async function redisCli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-p', String(port), '--no-raw', ...args], { timeout: 10_000 });
  return stdout.replace(/\n$/, '');
}

export async function redisBenchmark(port: number, args: string[], timeoutMs = 120_000): Promise<{ stdout: string; stderr: string }> {
  return run('redis-benchmark', ['-p', String(port), ...args], { timeout: timeoutMs, maxBuffer: 16 << 20 });
}
