import { createRequire } from 'node:module';
import { ProtocolError } from './errors.js';

/**
 * Loads a native addon (a CommonJS package) relative to `from`, or throws
 * FTVM_ERR_NATIVE_MODULE naming this Node.js and the fix: a role that cannot load its
 * addons must say so in one line, not die on the loader's stack trace.
 */
export function requireNative<T>(id: string, from: string): T {
  try {
    return createRequire(from)(id) as T;
  } catch (e) {
    const cause = String((e as Error)?.message ?? e).split('\n')[0];
    throw new ProtocolError(
      'FTVM_ERR_NATIVE_MODULE',
      `the native module '${id}' does not load on Node.js ${process.version} (${process.platform}-${process.arch}): ${cause}. ` +
        'Reinstall the dependencies with this Node.js (rm -rf node_modules && npm install, optional dependencies included), or run ftvm on a supported Node.js (docs/node-version.md)',
    );
  }
}
