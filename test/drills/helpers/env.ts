import { execFile, execFileSync } from 'node:child_process';

/** The image every drill container runs: built by deploy/image/build.sh (npm run drills does it). */
export const IMAGE = process.env.FTVM_DRILL_IMAGE ?? 'ftvm:local';
/** `npm run drills -- --soak`: the long run (100 primary crashes). */
export const SOAK = process.env.FTVM_DRILL_SOAK === '1';

/**
 * Why the drills cannot run here (no Docker engine, or no image), or null when they can.
 * Checked once per file, synchronously, so a suite can decide to skip before it is declared.
 */
export function dockerProblem(): string | null {
  try {
    execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { stdio: 'pipe', timeout: 10_000 });
  } catch (e) {
    return `no Docker engine reachable (${String((e as Error).message).split('\n')[0]}); start dockerd or run .ci/run`;
  }
  try {
    execFileSync('docker', ['image', 'inspect', IMAGE], { stdio: 'pipe', timeout: 10_000 });
  } catch {
    return `image ${IMAGE} not found; build it with deploy/image/build.sh (npm run drills does)`;
  }
  return null;
}

/**
 * Whether drills may run. In CI (CI=true) a missing engine is a failure, thrown here so the
 * file fails loudly; elsewhere the drill is skipped with the printed reason.
 */
export function canRunDrills(): boolean {
  const problem = dockerProblem();
  if (problem === null) return true;
  if (process.env.CI) throw new Error(`drills need Docker in CI: ${problem}`);
  console.warn(`skipping drills: ${problem}`);
  return false;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Runs the docker CLI without blocking the event loop: the drill's load client runs in this
 * process, and a synchronous `docker kill`/`rm`/`stop` (hundreds of ms on vfs) would stop it
 * reading replies, counting the CLI's own time as client-visible pause. Rejects with stderr.
 */
export function dockerAsync(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('docker', args, { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`docker ${args.join(' ')}: ${stderr || err.message}`));
      else resolve(stdout.trim());
    });
  });
}

/** Runs the docker CLI; throws with its stderr on failure. */
export function docker(...args: string[]): string {
  return execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 }).trim();
}
