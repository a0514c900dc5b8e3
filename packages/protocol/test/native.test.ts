import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { requireNative } from '../src/index.js';

describe('requireNative', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-native-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const from = pathToFileURL(join(dir, 'index.js')).href;

  it('loads the LZ4 binding on this Node.js', () => {
    const lz4 = requireNative<{ compressSync(b: Uint8Array): Buffer }>('lz4-napi', import.meta.url);
    expect(lz4.compressSync(new Uint8Array(4096)).length).toBeLessThan(64);
  });

  it('turns an addon that does not load into FTVM_ERR_NATIVE_MODULE naming this Node.js and the fix', () => {
    // Not an ELF object: the dynamic loader refuses it as it refuses an addon built for another Node.
    writeFileSync(join(dir, 'broken.node'), 'not a shared object');
    let err: (Error & { code?: string }) | undefined;
    try {
      requireNative('./broken.node', from);
    } catch (e) {
      err = e as Error & { code?: string };
    }
    expect(err?.code).toBe('FTVM_ERR_NATIVE_MODULE');
    expect(err?.message).toContain(`Node.js ${process.version}`);
    expect(err?.message).toContain('./broken.node');
    expect(err?.message).toContain('npm install');
  });

  it('turns a missing addon into FTVM_ERR_NATIVE_MODULE', () => {
    expect(() => requireNative('ftvm-no-such-addon', from)).toThrow(expect.objectContaining({ code: 'FTVM_ERR_NATIVE_MODULE' }));
  });
});
