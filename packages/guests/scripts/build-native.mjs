// Builds the C and Rust guests with Debian's toolchains (clang + wasi-libc, rustc) into
// prebuilt/<name>.wasm. Those files are committed: `npm install` needs neither toolchain.
// CI runs `--check`: rebuild into a temporary directory and compare byte for byte.
//
// Usage: node scripts/build-native.mjs [--check] [--out <dir>] [name...]
//        node scripts/build-native.mjs --add-abi-version <file.wasm>...   (a guest of your own)

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const RUSTC = '/usr/bin/rustc'; // Debian's (a rustup rustc on PATH would build other bytes)

// Every path is relative to packages/guests (the cwd), so none depends on the checkout's
// location; no debug info (wasi-libc's and Rust's std carry DWARF with build paths).
// --stack-first + 1.25 MiB (C) / 2 MiB (Rust) of stack: the stack sits right above the
// reserved 1 MiB bytemap and grows down toward it, so an overflow stores into the
// bytemap and the VMM reports FTVM_ERR_GUEST_RESERVED_WRITE instead of the stack
// silently overwriting data. Data and heap follow the stack.
export const C_FLAGS = [
  '--target=wasm32-wasi', '-O2', '-mbulk-memory', '-std=c11', '-Wall', '-Wextra', '-Wno-unused-parameter', '-Werror',
  '-nostartfiles', '-I', '../guest-sdk-c/include',
  '-Wl,--no-entry', '-Wl,--stack-first', '-Wl,-z,stack-size=1310720', '-Wl,--strip-debug',
];
export const C_SDK = ['../guest-sdk-c/src/ftvm.c', '../guest-sdk-c/src/wasi.c'];
export const RUST_FLAGS = [
  '--edition', '2021', '--target', 'wasm32-unknown-unknown', '-C', 'opt-level=3', '-C', 'panic=abort',
  '-C', 'strip=debuginfo', '-C', 'debuginfo=0', '-C', 'codegen-units=1',
];
const RUST_LINK = ['-C', 'link-arg=-zstack-size=2097152', '-C', 'link-arg=--strip-debug'];

export const NATIVE_GUESTS = {
  memcached: { lang: 'c', src: 'c/memcached.c' },
  kvrs: { lang: 'rust', src: 'rust/kvrs.rs' },
};

function run(cmd, args) {
  try {
    execFileSync(cmd, args, { cwd: pkgDir, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(' ')}\n${e.stderr?.toString() ?? e.message}`);
  }
}

function build(name, outDir, tmp) {
  const g = NATIVE_GUESTS[name];
  const out = join(outDir, `${name}.wasm`);
  if (g.lang === 'c') {
    run('clang', [...C_FLAGS, '-o', out, g.src, ...C_SDK]);
  } else {
    // rustc writes an upstream crate's source path absolute (panic locations): map the
    // checkout's location away.
    const remap = ['--remap-path-prefix', `${pkgDir}=packages/guests`];
    const sdk = join(tmp, 'libftvm.rlib');
    run(RUSTC, [...RUST_FLAGS, ...remap, '--crate-type', 'rlib', '--crate-name', 'ftvm', '-C', 'metadata=ftvm-sdk-1', '-o', sdk, '../guest-sdk-rust/src/lib.rs']);
    run(RUSTC, [...RUST_FLAGS, ...remap, ...RUST_LINK, '--crate-type', 'cdylib', '--crate-name', name, '--extern', `ftvm=${sdk}`, '-o', out, g.src]);
  }
  writeFileSync(out, addAbiVersion(readFileSync(out)));
  return out;
}

// ---- adding the ftvm_abi_version export: an immutable i32 global = ABI version ----
// Neither C nor Rust can define a wasm global export, so it is appended after linking.

function uleb(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function readUleb(buf, pos) {
  let n = 0;
  let shift = 0;
  for (;;) {
    const b = buf[pos++];
    n += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (!(b & 0x80)) return [n, pos];
  }
}

function sections(wasm) {
  const list = [];
  let pos = 8;
  while (pos < wasm.length) {
    const id = wasm[pos];
    const [size, body] = readUleb(wasm, pos + 1);
    list.push({ id, start: pos, body, end: body + size });
    pos = body + size;
  }
  return list;
}

function importedGlobals(wasm, sec) {
  if (!sec) return 0;
  let [count, p] = readUleb(wasm, sec.body);
  let globals = 0;
  for (let i = 0; i < count; i++) {
    for (let k = 0; k < 2; k++) {
      const [len, q] = readUleb(wasm, p);
      p = q + len;
    }
    const kind = wasm[p++];
    if (kind === 0) [, p] = readUleb(wasm, p);
    else if (kind === 1) { p++; const [flags, q] = readUleb(wasm, p + 0); p = q; [, p] = readUleb(wasm, p); if (flags & 1) [, p] = readUleb(wasm, p); }
    else if (kind === 2) { const [flags, q] = readUleb(wasm, p); p = q; [, p] = readUleb(wasm, p); if (flags & 1) [, p] = readUleb(wasm, p); }
    else if (kind === 3) { p += 2; globals++; }
    else throw new Error(`import kind ${kind}`);
  }
  return globals;
}

function section(id, content) {
  return Buffer.from([id, ...uleb(content.length), ...content]);
}

export function addAbiVersion(wasm, version = 1) {
  const secs = sections(wasm);
  const globalSec = secs.find((s) => s.id === 6);
  const exportSec = secs.find((s) => s.id === 7);
  if (!exportSec) throw new Error('module has no export section');
  let defined = 0;
  let globalBody = Buffer.alloc(0);
  if (globalSec) {
    const [n, p] = readUleb(wasm, globalSec.body);
    defined = n;
    globalBody = wasm.subarray(p, globalSec.end);
  }
  const index = importedGlobals(wasm, secs.find((s) => s.id === 2)) + defined;
  const newGlobal = section(6, [...uleb(defined + 1), ...globalBody, 0x7f, 0x00, 0x41, ...uleb(version), 0x0b]);
  const [ne, ep] = readUleb(wasm, exportSec.body);
  const name = Buffer.from('ftvm_abi_version');
  const newExport = section(7, [...uleb(ne + 1), ...wasm.subarray(ep, exportSec.end), ...uleb(name.length), ...name, 0x03, ...uleb(index)]);
  const parts = [wasm.subarray(0, 8)];
  for (const s of secs) {
    if (s.id === 6) continue;
    if (s.id === 7) {
      parts.push(newGlobal, newExport);
      continue;
    }
    parts.push(wasm.subarray(s.start, s.end));
  }
  return Buffer.concat(parts);
}

function main() {
  const args = process.argv.slice(2);
  if (args[0] === '--add-abi-version') {
    // For a guest built outside this script (docs/guest-c.md, docs/guest-rust.md).
    for (const f of args.slice(1)) writeFileSync(f, addAbiVersion(readFileSync(f)));
    return;
  }
  const check = args.includes('--check');
  const oi = args.indexOf('--out');
  const names = args.filter((a, i) => !a.startsWith('--') && (oi < 0 || i !== oi + 1));
  for (const n of names) if (!NATIVE_GUESTS[n]) throw new Error(`unknown native guest '${n}' (known: ${Object.keys(NATIVE_GUESTS).join(', ')})`);
  const tmp = mkdtempSync(join(tmpdir(), 'ftvm-native-'));
  const prebuilt = join(pkgDir, 'prebuilt');
  const outDir = check ? join(tmp, 'out') : oi >= 0 ? resolve(args[oi + 1]) : prebuilt;
  mkdirSync(outDir, { recursive: true });
  let bad = 0;
  try {
    for (const name of names.length ? names : Object.keys(NATIVE_GUESTS)) {
      const out = build(name, outDir, tmp);
      const bytes = readFileSync(out);
      if (!check) {
        console.log(`native guests: built ${name} (${bytes.length} bytes) -> ${out}`);
        continue;
      }
      const committed = join(prebuilt, `${name}.wasm`);
      if (existsSync(committed) && Buffer.compare(readFileSync(committed), bytes) === 0) {
        console.log(`native guests: ${name} rebuilt from source matches prebuilt/${name}.wasm (${bytes.length} bytes)`);
      } else {
        bad++;
        console.error(`native guests: ${name} rebuilt from source differs from prebuilt/${name}.wasm: run node scripts/build-native.mjs and commit`);
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  if (bad) process.exit(1);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  try {
    main();
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  }
}
