import { readFileSync, existsSync } from 'node:fs';
import { instrumentCached } from '@ftvm/instrument';
import { SHIPPED_GUESTS, type ShippedGuest } from '@ftvm/guest-abi';
import { guestWasmPath } from '@ftvm/guests';
import { moduleDigest } from './checkpoint.js';
import { VmmError } from './errors.js';

/** A guest module ready to run: instrumented once, started many times (boot, restore, rollback). */
export interface PreparedGuest {
  name: string;
  /** sha256 of the original module: checkpoints name it, restore checks it. */
  digest: string;
  wasm: Uint8Array;
  dirtyMode: 'bytemap' | 'shadow';
  globalExports: string[];
  warnings: string[];
  /**
   * The instrumented module burns fuel (bytemap mode) and has no exception handler that could
   * catch the fuel's throw: an inline vCPU can stop its runaway events (see inline-vcpu.ts).
   */
  interruptible: boolean;
}

/** Reads a guest by shipped name (kv, http, dirtier, clockprobe, memcached, kvrs) or .wasm path. */
export function readGuest(guest: string): { name: string; wasm: Uint8Array } {
  if ((SHIPPED_GUESTS as readonly string[]).includes(guest)) {
    const path = guestWasmPath(guest as ShippedGuest);
    if (!existsSync(path)) throw new VmmError('FTVM_ERR_GUEST_NOT_FOUND', `shipped guest '${guest}' is not built (${path}); run npm run build`);
    return { name: guest, wasm: new Uint8Array(readFileSync(path)) };
  }
  if (!existsSync(guest))
    throw new VmmError('FTVM_ERR_GUEST_NOT_FOUND', `--guest '${guest}' is neither a shipped guest (${SHIPPED_GUESTS.join(', ')}) nor a readable .wasm file`);
  return { name: guest, wasm: new Uint8Array(readFileSync(guest)) };
}

export function prepareGuest(name: string, wasm: Uint8Array): PreparedGuest {
  const r = instrumentCached(wasm);
  return {
    name,
    digest: moduleDigest(wasm),
    wasm: r.wasm,
    dirtyMode: r.mode,
    globalExports: r.stats.globalExports.map((g) => g.name),
    warnings: r.warnings,
    interruptible: r.mode === 'bytemap' && r.stats.tries === 0,
  };
}
