import { execFileSync } from 'node:child_process';

/**
 * Whether an external tool (redis-cli, wrk, docker...) is on PATH. In CI a missing tool
 * is a failure (.ci/run installs them); elsewhere the caller skips with a printed reason.
 */
export function haveTool(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    if (process.env.CI) throw new Error(`${name} is not installed; .ci/run must install it`);
    console.warn(`skipping: ${name} is not installed (install it to run this test; CI installs it)`);
    return false;
  }
}
