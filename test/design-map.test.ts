import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

/** docs/design.md is the newcomer's map: its package table names exactly the packages in the tree. */
describe('docs/design.md', () => {
  it('maps every package under packages/ and no other', () => {
    const tree = readdirSync(join(root, 'packages'), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
    const design = readFileSync(join(root, 'docs/design.md'), 'utf8');
    const mapped = [...design.matchAll(/^\| `packages\/([a-z0-9-]+)` \|/gm)].map((m) => m[1]!).sort();
    expect(mapped).toEqual(tree);
  });

  it('cites nothing outside the repository', () => {
    const design = readFileSync(join(root, 'docs/design.md'), 'utf8');
    expect(design).not.toMatch(/shared\/|DESIGN\.md|https?:\/\//);
  });
});
