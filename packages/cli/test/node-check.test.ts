import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { MIN_NODE, nodeRefusal } from '../src/node-check.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const BIN = join(root, 'packages/cli/bin/ftvm.js');
const MAIN = join(root, 'packages/cli/dist/main.js');

/** Runs an entry with `node` and returns its exit code and stderr (bounded in time). */
function runEntry(node: string, args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(node, args, { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stderr: r.stderr };
}

/** No line of a V8 stack trace ("    at f (file:1:2)"). */
const noStack = (s: string): void => expect(s).not.toMatch(/^\s+at /m);

describe('the Node.js version gate', () => {
  it.each(['v20.15.0', 'v20.20.2', 'v21.0.0', 'v22.23.3', 'v24.21.0', 'v26.10.0'])('lets ftvm run on %s', (v) => {
    expect(nodeRefusal(v)).toBeUndefined();
  });

  it.each(['v20.14.0', 'v20.11.1', 'v18.20.8', 'v16.20.2', 'v12.22.12'])('refuses %s, naming it and what to do', (v) => {
    const why = nodeRefusal(v);
    expect(why).toContain(`this is Node.js ${v}`);
    expect(why).toContain(`needs Node.js ${MIN_NODE} or later`);
    expect(why).toContain('docs/node-version.md');
  });

  it('starts where package.json engines starts', () => {
    const engines = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).engines.node as string;
    expect(engines.split('||')[0]!.trim().replace(/^[\^>=~]+/, '')).toBe(MIN_NODE);
  });

  // A real Node older than the floor (CI installs one from the npm `node` package, .ci/run).
  const oldNode = process.env.FTVM_TEST_OLD_NODE;
  if (!oldNode) {
    if (process.env.CI) throw new Error('FTVM_TEST_OLD_NODE is not set; .ci/run must install an old Node for this test');
    console.warn('skipping: FTVM_TEST_OLD_NODE is not set (a node binary older than ' + MIN_NODE + '; CI sets it)');
  }
  it.runIf(oldNode)('refuses to start a role on an old Node with FTVM_ERR_NODE_VERSION and no stack, through the bin and through dist/main.js', () => {
    const version = spawnSync(oldNode!, ['--version'], { encoding: 'utf8' }).stdout.trim();
    expect(nodeRefusal(version)).toBeDefined();
    for (const entry of [BIN, MAIN]) {
      const r = runEntry(oldNode!, [entry, 'up']);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^ftvm: error FTVM_ERR_NODE_VERSION: .*this is Node\\.js ${version.replace(/\./g, '\\.')}`));
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      noStack(r.stderr);
    }
  });
});

describe('a native addon that does not load', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-native-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('stops a role with FTVM_ERR_NATIVE_MODULE naming this Node.js, and no stack', () => {
    // The addon resolves to a file the dynamic loader refuses, as it refuses an addon built
    // for another Node ABI.
    const broken = join(dir, 'lz4-napi.node');
    writeFileSync(broken, 'not a shared object');
    const preload = join(dir, 'break-lz4.cjs');
    writeFileSync(
      preload,
      `const Module = require('node:module');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  return request === 'lz4-napi' ? ${JSON.stringify(broken)} : resolve.call(this, request, ...rest);
};
`,
    );
    const r = runEntry(process.execPath, ['--require', preload, BIN, 'up']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^ftvm: error FTVM_ERR_NATIVE_MODULE: the native module 'lz4-napi' does not load on Node\.js v\d+/);
    expect(r.stderr).toContain(process.version);
    expect(r.stderr).toContain('npm install');
    noStack(r.stderr);
  });

  it('runs the bin normally when the addons load', () => {
    const r = spawnSync(process.execPath, [BIN, 'up', '--help'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('ftvm up');
  });
});
