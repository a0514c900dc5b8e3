import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { describe, expect, it } from 'vitest';

/** Issue 21 item 12: following the README leaves no disk image, snapshot or disk folder in the checkout. */
describe('the README examples', () => {
  it('write their files outside the checkout', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const blocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!).join('\n');
    const paths = [...blocks.matchAll(/(?:--disk|--disk-dir|-o|ftvm restore)\s+(\S+)/g)].map((m) => m[1]!);
    expect(paths.length).toBeGreaterThan(5);
    for (const p of paths) {
      expect(isAbsolute(p), p).toBe(true);
      expect(p.startsWith('/tmp/'), p).toBe(true);
    }
  });
});
