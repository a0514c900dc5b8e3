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

describe('docs are true to the code', () => {
  it('docs/errors.md lists every FTVM_ERR_ code the sources raise', () => {
    const codes = new Set<string>();
    for (const pkg of readdirSync(join(root, 'packages'))) {
      let files: string[] = [];
      try {
        files = sources(join(root, 'packages', pkg, 'src'));
      } catch {
        continue;
      }
      for (const f of files) for (const m of readFileSync(f, 'utf8').matchAll(/FTVM_ERR_[A-Z0-9_]+[A-Z0-9]/g)) codes.add(m[0]);
    }
    const doc = readFileSync(join(root, 'docs/errors.md'), 'utf8');
    const missing = [...codes].filter((c) => !doc.includes(`\`${c}\``)).sort();
    expect(missing).toEqual([]);
    expect(codes.size).toBeGreaterThan(50);
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
