import { accessSync, constants } from 'node:fs';
import path from 'node:path';

/** Absolute path of an executable found on PATH, or undefined. */
export function findBinary(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/**
 * For tests that need a system binary: returns its path, or skips the test with the install hint.
 * In CI (CI env var set) a missing binary fails the test instead: CI must not silently skip.
 */
export function requireBinary(ctx: { skip: (note?: string) => never }, names: string[], debianPackage: string): string {
  for (const n of names) {
    const p = findBinary(n);
    if (p) return p;
  }
  const why = `${names.join(' / ')} not installed (apt-get install -y ${debianPackage})`;
  if (process.env.CI) throw new Error(`${why}; required in CI`);
  return ctx.skip(why);
}
