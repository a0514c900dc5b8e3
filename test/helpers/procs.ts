import { afterEach } from 'vitest';
import { spawnFtvm, type Spawned } from './ftvm.js';

/** `spawn` starts `ftvm <args>` with `env`; every process it started is SIGKILLed after each test. */
export function useProcesses(env: Record<string, string> = {}): (args: string[]) => Spawned {
  let procs: Spawned[] = [];
  afterEach(async () => {
    for (const p of procs) await p.stop('SIGKILL');
    procs = [];
  });
  return (args) => {
    const p = spawnFtvm(args, env);
    procs.push(p);
    return p;
  };
}
