import { describe, expect, it } from 'vitest';
import { STATUS_PAGE_HTML } from '../src/index.js';

function scriptOf(html: string): string {
  const m = /<script>([\s\S]*?)<\/script>/.exec(html);
  if (!m) throw new Error('no inline script');
  return m[1]!;
}

describe('status page', () => {
  it('references no external URL, script, stylesheet, font or image', () => {
    expect(STATUS_PAGE_HTML).not.toMatch(/https?:/i);
    expect(STATUS_PAGE_HTML).not.toMatch(/\/\/[a-z0-9.-]+\.[a-z]{2,}/i);
    expect(STATUS_PAGE_HTML).not.toMatch(/<script[^>]+src=/i);
    expect(STATUS_PAGE_HTML).not.toMatch(/<link\b/i);
    expect(STATUS_PAGE_HTML).not.toMatch(/@import|url\(/i);
    expect(STATUS_PAGE_HTML).not.toMatch(/<img\b|<iframe\b/i);
  });

  it('polls only its own relative api/status and api/cluster endpoints', () => {
    const fetches = [...scriptOf(STATUS_PAGE_HTML).matchAll(/fetch\(([^,)]+)/g)].map((m) => m[1]!);
    expect(fetches).toHaveLength(2);
    const literals = fetches.flatMap((f) => [...f.matchAll(/"([^"]*)"/g)].map((m) => m[1]));
    expect(literals.sort()).toEqual(['api/cluster', 'api/cluster?since=', 'api/status', 'api/status?since=']);
  });

  it('has a syntactically valid inline script', () => {
    expect(() => new Function(scriptOf(STATUS_PAGE_HTML))).not.toThrow();
  });

  it('has a place for every required view', () => {
    for (const id of ['protection', 'role', 'term', 'c-protected', 'c-epochs', 'c-pause', 'c-bw', 'c-delay', 'c-failovers', 'c-drift']) {
      expect(STATUS_PAGE_HTML).toContain(`id="${id}"`);
    }
  });
});
