import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? sources(join(dir, d.name)) : d.name.endsWith('.ts') ? [join(dir, d.name)] : [],
  );
}

/** Every FTVM_ERR_ code named in the files. */
function codesIn(files: string[]): Set<string> {
  const codes = new Set<string>();
  for (const f of files) for (const m of readFileSync(f, 'utf8').matchAll(/FTVM_ERR_[A-Z0-9_]+[A-Z0-9]/g)) codes.add(m[0]);
  return codes;
}

/** The .ts files under packages/<pkg>/<dir> of every package that has one. */
function packageFiles(dir: string): string[] {
  return readdirSync(join(root, 'packages')).flatMap((pkg) => {
    try {
      return sources(join(root, 'packages', pkg, dir));
    } catch {
      return [];
    }
  });
}

/**
 * Codes raised in src that no test needs to name: none a user or an operator can meet through
 * the CLI, a link or a file; each is a fallback or an invariant that only a bug reaches.
 */
const UNTESTED_CODES: Record<string, string> = {
  FTVM_ERR_CORE_STALE_IMAGE: 'proxy invariant: a promoted image older than output already released; the failover rules make it unreachable',
  FTVM_ERR_MIGRATION_REFUSED: "fallback for a nack without a code; the link's schema refuses such a nack before it arrives",
  FTVM_ERR_MIGRATION_RESTORE: "fallback for an uncoded failure to start the received guest; the VMM's start failures carry their own codes",
  FTVM_ERR_PRECOPY_FAILED: 'fallback for an uncoded exception in a pre-copy; coded failures keep their code',
  FTVM_ERR_PRECOPY_RANGE: "the vCPU refusing a page list outside memory; the engine asks only for pages the dirty log gave it",
  FTVM_ERR_PROMOTE_RESTORE: 'a committed image that passed its digest failing to instantiate on promotion: a bug or a host out of memory, no input reaches it',
};

describe('docs are true to the code', () => {
  it('docs/errors.md lists every FTVM_ERR_ code the sources raise', () => {
    const codes = codesIn(packageFiles('src'));
    const doc = readFileSync(join(root, 'docs/errors.md'), 'utf8');
    const missing = [...codes].filter((c) => !doc.includes(`\`${c}\``)).sort();
    expect(missing).toEqual([]);
    expect(codes.size).toBeGreaterThan(50);
  });

  it('every FTVM_ERR_ code the sources raise is met by a test, but for a short reasoned list of internal ones', () => {
    const raised = codesIn(packageFiles('src'));
    // The files npm test runs (vitest.config.ts: the drills run apart, in containers).
    // (Not this file: its list names codes without testing them.)
    const self = fileURLToPath(import.meta.url);
    const tests = [...packageFiles('test'), ...sources(join(root, 'test')).filter((f) => !f.includes('/test/drills/'))].filter((f) => f.endsWith('.test.ts') && f !== self);
    const tested = codesIn(tests);
    const untested = [...raised].filter((c) => !tested.has(c) && !(c in UNTESTED_CODES)).sort();
    expect(
      untested,
      `codes raised in packages/*/src that no *.test.ts names. Give each a test that meets it where a user does (CLI, link, file) and asserts the code; or, if only a bug can raise it, add it with its reason to UNTESTED_CODES in test/docs.test.ts. Untested: ${untested.join(', ')}`,
    ).toEqual([]);
    // The list stays short and true: each entry is still raised, and still untested.
    expect(Object.keys(UNTESTED_CODES).filter((c) => !raised.has(c) || tested.has(c)), 'stale UNTESTED_CODES entries').toEqual([]);
    expect(Object.keys(UNTESTED_CODES).length).toBeLessThanOrEqual(8);
  });

  it('every command in the README exists and every flag it shows is accepted', async () => {
    const { commands } = await import('@ftvm/cli');
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    // Commands as the README shows them: in code blocks and code spans.
    const code = [...readme.matchAll(/```[a-z]*\n([\s\S]*?)```|`([^`\n]+)`/g)].map((m) => m[1] ?? m[2]).join('\n');
    const shown = [...code.matchAll(/ftvm (\w+)((?: --?[\w-]+(?: [^\s|`\\]+)?)*)/g)];
    expect(shown.length).toBeGreaterThan(3);
    for (const [, name, rest] of shown) {
      const cmd = commands.find((c) => c.name === name);
      expect(cmd, `README shows 'ftvm ${name}'`).toBeDefined();
      for (const [, flag] of (rest ?? '').matchAll(/--([\w-]+)/g)) {
        if (flag === 'help') continue;
        expect(Object.keys(cmd!.flags), `'ftvm ${name} --${flag}' in the README`).toContain(flag);
      }
    }
  });
});
