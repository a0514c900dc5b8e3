import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PREBUILT_GUESTS, SHIPPED_GUESTS, type ShippedGuest } from '@ftvm/guest-abi';
import { GuestError } from './errors.js';

export { GuestError } from './errors.js';

/** Names of the shipped guests, each built to build/<name>.wasm. */
export const GUEST_NAMES: readonly ShippedGuest[] = SHIPPED_GUESTS;

export type GuestName = ShippedGuest;

export function isGuestName(name: string): name is GuestName {
  return (GUEST_NAMES as readonly string[]).includes(name);
}

/**
 * Absolute path of a shipped guest's .wasm. Resolved from this module, which lives in
 * src/ (tests) or dist/ (built): both are siblings of build/ (AssemblyScript, built on
 * install) and prebuilt/ (C and Rust, committed; scripts/build-native.mjs).
 */
export function guestWasmPath(name: string): string {
  if (!isGuestName(name)) {
    throw new GuestError('FTVM_ERR_GUEST_UNKNOWN', `unknown guest '${name}' (known: ${GUEST_NAMES.join(', ')})`);
  }
  const dir = PREBUILT_GUESTS.includes(name) ? 'prebuilt' : 'build';
  return fileURLToPath(new URL(`../${dir}/${name}.wasm`, import.meta.url));
}

/** The bytes of a shipped guest's .wasm (not instrumented: the VMM does that). */
export function loadGuestWasm(name: string): Uint8Array {
  const path = guestWasmPath(name);
  if (!existsSync(path)) {
    throw new GuestError(
      'FTVM_ERR_GUEST_NOT_BUILT',
      `guest '${name}' is not built (${path} missing): run \`npm run build -w @ftvm/guests\``,
    );
  }
  return new Uint8Array(readFileSync(path));
}
