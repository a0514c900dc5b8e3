// Compiles every shipped guest (assembly/<name>.ts) to build/<name>.wasm with asc.
// Runs on `npm install` / `npm run build`. A guest is rebuilt only when its inputs
// changed (its source, the SDK sources, the flags or the compiler version): their
// hash is kept next to the output. Any compile error fails the build (exit 1).
//
// Usage: node scripts/build.mjs [--force] [name...]

import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { ASC_FLAGS } from './asc-flags.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = join(here, '..');
const srcDir = join(pkgDir, 'assembly');
const outDir = join(pkgDir, 'build');
const require = createRequire(import.meta.url);
const sdkDir = join(dirname(require.resolve('@ftvm/guest-sdk/package.json')), 'assembly');

export const GUESTS = ['kv', 'http', 'dirtier', 'clockprobe'];

// The flags every ftvm guest needs live in asc-flags.mjs (side-effect free, so other
// packages' tests can import them without running a build).
export { ASC_FLAGS };

function tsFiles(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((d) => (d.isDirectory() ? tsFiles(join(dir, d.name)) : d.name.endsWith('.ts') ? [join(dir, d.name)] : []))
    .sort();
}

function inputHash(name, ascVersion) {
  const h = createHash('sha256');
  h.update(JSON.stringify({ ascVersion, ASC_FLAGS, name }));
  // A guest imports only the SDK (never a sibling guest).
  for (const f of [join(srcDir, `${name}.ts`), ...tsFiles(sdkDir)]) {
    h.update(relative(pkgDir, f));
    h.update(readFileSync(f));
  }
  return h.digest('hex');
}

const ascBin = join(dirname(require.resolve('assemblyscript/package.json')), 'bin', 'asc.js');

// One asc process per guest, run in parallel: asc spends most of its time in binaryen's
// single-threaded optimizer.
export function compileGuest(entry, out) {
  const tmp = `${out}.tmp`;
  return new Promise((resolve, reject) => {
    // cwd = the package: asc finds @ftvm/guest-sdk in node_modules from there.
    const child = spawn(process.execPath, [ascBin, relative(pkgDir, entry), ...ASC_FLAGS, '-o', relative(pkgDir, tmp)], {
      cwd: pkgDir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let text = '';
    child.stdout.on('data', (d) => (text += d));
    child.stderr.on('data', (d) => (text += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) {
        rmSync(tmp, { force: true });
        reject(new Error(`${relative(pkgDir, entry)}: asc exited with ${code}\n${text}`));
        return;
      }
      renameSync(tmp, out);
      resolve();
    });
  });
}

async function main() {
  const args = process.argv.slice(2);
  const force = args.includes('--force');
  const names = args.filter((a) => !a.startsWith('--'));
  for (const n of names) if (!GUESTS.includes(n)) throw new Error(`unknown guest '${n}' (known: ${GUESTS.join(', ')})`);
  const ascVersion = JSON.parse(readFileSync(join(dirname(ascBin), '..', 'package.json'), 'utf8')).version;
  mkdirSync(outDir, { recursive: true });
  const t0 = Date.now();
  const stale = [];
  for (const name of names.length ? names : GUESTS) {
    const hash = inputHash(name, ascVersion);
    const hashFile = join(outDir, `${name}.hash`);
    const wasm = join(outDir, `${name}.wasm`);
    if (!force && existsSync(wasm) && existsSync(hashFile) && readFileSync(hashFile, 'utf8') === hash) continue;
    // The old hash goes first: an interrupted build must not look up to date.
    rmSync(hashFile, { force: true });
    stale.push({ name, hash, hashFile });
  }
  const failed = [];
  const queue = [...stale];
  const worker = async () => {
    for (let g = queue.shift(); g; g = queue.shift()) {
      try {
        await compileGuest(join(srcDir, `${g.name}.ts`), join(outDir, `${g.name}.wasm`));
        writeFileSync(g.hashFile, g.hash);
      } catch (e) {
        failed.push(e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(availableParallelism(), stale.length)) }, worker));
  if (failed.length) throw new Error(failed.map((e) => (e instanceof Error ? e.message : String(e))).join('\n'));
  const built = stale.map((g) => g.name);
  console.log(built.length ? `guests: built ${built.join(', ')} in ${Date.now() - t0} ms` : 'guests: up to date');
}

// Run as a script (not when imported for compileGuest/ASC_FLAGS).
if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
