// Every package is documented and findable: a README of its own, a line in README.md's layout,
// and every page under docs/ reachable by links from README.md. And every package's tarball
// (`npm run pack`, docs/guests.md) holds what its main, exports and bin name.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { GUEST_NAMES, guestWasmPath } from '@ftvm/guests';

const root = fileURLToPath(new URL('..', import.meta.url));
// Every folder under packages/ is a package; the npm workspaces among them are packed.
const packages = readdirSync(join(root, 'packages'), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
const workspaces = packages.filter((p) => existsSync(join(root, 'packages', p, 'package.json')));

describe('packages and docs are findable', () => {
  it("every package has a README.md; a workspace's names it", () => {
    expect(packages.length).toBeGreaterThan(10);
    const missing = packages.filter((p) => !existsSync(join(root, 'packages', p, 'README.md')));
    expect(missing, 'packages without a README.md').toEqual([]);
    for (const p of workspaces) {
      const name = (JSON.parse(readFileSync(join(root, 'packages', p, 'package.json'), 'utf8')) as { name: string }).name;
      expect(readFileSync(join(root, 'packages', p, 'README.md'), 'utf8'), `packages/${p}/README.md`).toMatch(new RegExp(`^# ${name}$`, 'm'));
    }
  });

  it("README.md's layout lists every package", () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Layout'));
    const layout = section.match(/```\n([\s\S]*?)```/)?.[1] ?? '';
    expect(layout).toContain('packages/');
    const missing = packages.filter((p) => !new RegExp(`(^|\\s)${p}/(\\s|$)`, 'm').test(layout));
    expect(missing, "packages missing from README.md's layout").toEqual([]);
  });

  it('every page in docs/ is reachable by links from README.md', () => {
    const seen = new Set<string>();
    const queue = ['README.md'];
    while (queue.length) {
      const page = queue.shift()!;
      if (seen.has(page)) continue;
      seen.add(page);
      for (const m of readFileSync(join(root, page), 'utf8').matchAll(/\]\(([^)#\s]+\.md)(#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(m[1]!)) continue;
        const target = normalize(join(dirname(page), m[1]!));
        expect(existsSync(join(root, target)), `${page} links ${m[1]}`).toBe(true);
        if (target.startsWith('docs/')) queue.push(target);
      }
    }
    const pages = readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`);
    expect(pages.filter((p) => !seen.has(p)), 'docs/ pages no link from README.md leads to').toEqual([]);
  });

  it("every package's tarball holds what its main, exports and bin name", () => {
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--workspaces', '--dry-run', '--json', '--silent'], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 }),
    ) as Array<{ name: string; files: Array<{ path: string }> }>;
    expect(packed.map((p) => p.name).sort()).toEqual(
      workspaces.map((p) => (JSON.parse(readFileSync(join(root, 'packages', p, 'package.json'), 'utf8')) as { name: string }).name).sort(),
    );
    for (const p of workspaces) {
      const dir = join(root, 'packages', p);
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name: string;
        main?: string;
        exports?: Record<string, Record<string, string>>;
        bin?: Record<string, string>;
      };
      const files = new Set(packed.find((x) => x.name === pkg.name)!.files.map((f) => f.path));
      const named = [pkg.main, ...Object.values(pkg.exports ?? {}).flatMap((e) => Object.values(e)), ...Object.values(pkg.bin ?? {})];
      for (const f of named.filter((x): x is string => !!x)) {
        expect(files.has(relative('.', normalize(f))), `${pkg.name} packs ${f}`).toBe(true);
      }
      expect([...files].some((f) => f.startsWith('test/') || f.startsWith('src/')), `${pkg.name} packs no tests or sources`).toBe(false);
    }
    // The shipped guests' modules, where @ftvm/guests looks for them.
    const guests = new Set(packed.find((x) => x.name === '@ftvm/guests')!.files.map((f) => f.path));
    for (const g of GUEST_NAMES) expect(guests.has(relative(join(root, 'packages', 'guests'), guestWasmPath(g))), `@ftvm/guests packs ${g}`).toBe(true);
  });
});
