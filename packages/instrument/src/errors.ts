import { FtvmError } from '@ftvm/guest-abi';

export { AbiError } from '@ftvm/guest-abi';

/** Misuse of the instrument package's API (bad option, bad argument). */
export class InstrumentError extends FtvmError {}

/** A dirty-log collector was given memory or page numbers it cannot handle. */
export class DirtyLogError extends FtvmError {}
