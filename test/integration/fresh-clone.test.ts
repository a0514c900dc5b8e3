// A newcomer's first commands: clone the repository (its committed HEAD), `npm install` once,
// then `npx ftvm --help` and `npx ftvm <command> --help` for every command README.md shows.
// Slow (a full install and build): one clone for the whole file.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codeBlocks, sh, userEnv } from '../helpers/shell.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const env = userEnv();

/** The `ftvm <command>` names in README.md's code (fenced blocks and `inline` spans). */
function readmeCommands(readme: string): string[] {
  const code = [...codeBlocks(readme).map((b) => b.text), ...[...readme.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!)];
  const names = new Set<string>();
  for (const c of code) for (const m of c.matchAll(/\bftvm ([a-z][a-z-]*)/g)) names.add(m[1]!);
  return [...names].sort();
}

describe('a fresh clone: npm install once, then npx ftvm', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'ftvm-clone-'));
  const clone = join(tmp, 'ftvm');
  let install: ReturnType<typeof sh>;
  beforeAll(() => {
    const head = execFileSync('git', ['-C', ROOT, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
    execFileSync('git', ['clone', '--quiet', ROOT, clone]);
    execFileSync('git', ['-C', clone, 'checkout', '--quiet', '--detach', head]);
    const t0 = Date.now();
    install = sh('npm install', clone, env, 1_200_000);
    console.log(`fresh clone of ${head.slice(0, 7)}: npm install took ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }, 1_300_000);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('npm install exits 0', () => {
    expect(install.code, `${install.out}\n${install.err}\n${install.error ?? ''}`).toBe(0);
  });

  it('npx ftvm --help and every command README.md names, with --help, exit 0 and print their usage', () => {
    expect(install.code).toBe(0);
    const top = sh('npx ftvm --help', clone, env, 60_000);
    expect(top.code, top.err).toBe(0);
    expect(top.out).toContain('usage: ftvm <command> [options]');
    const commands = readmeCommands(readFileSync(join(clone, 'README.md'), 'utf8'));
    // The README's table alone names six; a parse that found few would prove nothing.
    expect(commands).toEqual(expect.arrayContaining(['up', 'primary', 'secondary', 'proxy', 'run', 'inspect']));
    for (const c of commands) {
      expect(top.out, `ftvm --help lists ${c}`).toMatch(new RegExp(`^  ${c} `, 'm'));
      const r = sh(`npx ftvm ${c} --help`, clone, env, 60_000);
      expect(r.code, `npx ftvm ${c} --help: ${r.err}`).toBe(0);
      expect(r.out, `npx ftvm ${c} --help`).toContain(`usage: ftvm ${c}`);
    }
    console.log(`README names: ${commands.join(', ')}`);
  }, 600_000);
});
