import { FtvmError } from '@ftvm/guest-abi';

/** A shipped guest is unknown, or its .wasm has not been built. */
export class GuestError extends FtvmError {}
