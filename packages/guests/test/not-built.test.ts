import { describe, expect, it, vi } from 'vitest';

// A checkout where the guests were never built: the kv .wasm is missing (faked: other tests read the real file).
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  return { ...fs, existsSync: (p: Parameters<typeof fs.existsSync>[0]) => (String(p).endsWith('/build/kv.wasm') ? false : fs.existsSync(p)) };
});

describe('a shipped guest that is not built', () => {
  it('is FTVM_ERR_GUEST_NOT_BUILT, naming the build command', async () => {
    const { loadGuestWasm } = await import('@ftvm/guests');
    expect(() => loadGuestWasm('kv')).toThrow(expect.objectContaining({ code: 'FTVM_ERR_GUEST_NOT_BUILT', message: expect.stringMatching(/guest 'kv' is not built .*npm run build -w @ftvm\/guests/) }));
    expect(loadGuestWasm('http').length).toBeGreaterThan(0);
  });
});
