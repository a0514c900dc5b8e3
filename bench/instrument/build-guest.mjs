// Compiles bench/instrument/guest.ts with asc (once per source change) and returns the .wasm path.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
export const ASC_ARGS = ['-O3', '--runtime', 'stub', '--memoryBase', '1048576', '--noAssert', '--use', 'abort=', '--initialMemory', '1024'];

export function buildGuest() {
  const src = join(here, 'guest.ts');
  const hash = createHash('sha256').update(readFileSync(src)).update(ASC_ARGS.join(' ')).digest('hex').slice(0, 16);
  const outDir = join(root, 'node_modules', '.cache', 'ftvm-bench');
  const out = join(outDir, `guest-${hash}.wasm`);
  if (!existsSync(out)) {
    mkdirSync(outDir, { recursive: true });
    execFileSync(join(root, 'node_modules', '.bin', 'asc'), [src, ...ASC_ARGS, '-o', out], { stdio: 'inherit' });
  }
  return out;
}
