// Compiles every shipped guest (assembly/<name>.ts) to build/<name>.wasm with asc.
// Runs on `npm install` / `npm run build`. A guest is rebuilt only when its inputs
// changed (its source, the SDK sources, the flags or the compiler version): their
// hash is kept next to the output. Any compile error fails the build (exit 1).
//
// Usage: node scripts/build.mjs [--force] [name...]

import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = join(here, '..');
const srcDir = join(pkgDir, 'assembly');
const outDir = join(pkgDir, 'build');
const require = createRequire(import.meta.url);
const sdkDir = join(dirname(require.resolve('@ftvm/guest-sdk/package.json')), 'assembly');

export const GUESTS = ['kv', 'http', 'dirtier', 'clockprobe'];

// The flags every ftvm guest needs (see packages/guest-sdk/README.md):
// - incremental runtime: the stub runtime never frees, a long-running server would leak;
// - memoryBase 1 MiB: [0, 1 MiB) is the VMM's dirty bytemap;
// - abort mapped into the SDK, so module "ftvm" is the only import module.
export const ASC_FLAGS = [
  '--runtime', 'incremental',
  '--memoryBase', '1048576',
  '-O3',
  '--use', 'abort=~lib/@ftvm/guest-sdk/assembly/abort/ftvmAbort',
];

function tsFiles(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((d) => (d.isDirectory() ? tsFiles(join(dir, d.name)) : d.name.endsWith('.ts') ? [join(dir, d.name)] : []))
    .sort();
}

function inputHash(name, ascVersion) {
  const h = createHash('sha256');
  h.update(JSON.stringify({ ascVersion, ASC_FLAGS, name }));
  // Every guest hashes the shared sources too: a guest may import a sibling helper.
  for (const f of [...tsFiles(srcDir), ...tsFiles(sdkDir)]) {
    h.update(relative(pkgDir, f));
    h.update(readFileSync(f));
  }
  return h.digest('hex');
}

async function compile(asc, name) {
  const entry = join(srcDir, `${name}.ts`);
  const out = join(outDir, `${name}.wasm`);
  const tmp = `${out}.tmp`;
  let errText = '';
  const { error } = await asc.main([relative(pkgDir, entry), ...ASC_FLAGS, '-o', relative(pkgDir, tmp)], {
    stdout: { write: (s) => { errText += s; return true; } },
    stderr: { write: (s) => { errText += s; return true; } },
    // asc resolves paths against the package directory, where node_modules/@ftvm/guest-sdk is reachable.
    baseDir: pkgDir,
  });
  if (error) {
    rmSync(tmp, { force: true });
    throw new Error(`guest ${name}: compile failed: ${error.message}\n${errText}`);
  }
  renameSync(tmp, out);
}

async function main() {
  const args = process.argv.slice(2);
  const force = args.includes('--force');
  const names = args.filter((a) => !a.startsWith('--'));
  for (const n of names) if (!GUESTS.includes(n)) throw new Error(`unknown guest '${n}' (known: ${GUESTS.join(', ')})`);
  const { default: asc } = await import('assemblyscript/asc');
  const ascVersion = asc.version;
  mkdirSync(outDir, { recursive: true });
  const t0 = Date.now();
  const built = [];
  for (const name of names.length ? names : GUESTS) {
    const hash = inputHash(name, ascVersion);
    const hashFile = join(outDir, `${name}.hash`);
    const wasm = join(outDir, `${name}.wasm`);
    if (!force && existsSync(wasm) && existsSync(hashFile) && readFileSync(hashFile, 'utf8') === hash) continue;
    await compile(asc, name);
    writeFileSync(hashFile, hash);
    built.push(name);
  }
  console.log(built.length ? `guests: built ${built.join(', ')} in ${Date.now() - t0} ms` : 'guests: up to date');
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
