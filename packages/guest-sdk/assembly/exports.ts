// The exports every ftvm guest must have, implemented once. A guest's entry file
// re-exports them:   export * from "@ftvm/guest-sdk/assembly/exports";
// and registers its handler at top level:   setGuest(new MyGuest());

import { ABI_VERSION } from "./abi";
// Loads the abort replacement that asc `--use abort=...` names.
import "./abort";
import { registerClock } from "./clock";
import { guest } from "./guest";
import { dispatchTimers, syncHostTimer } from "./timers";

/** The ABI version this guest was built against (an immutable i32 global). */
export const ftvm_abi_version: i32 = ABI_VERSION;

// Input buffers handed out by ftvm_alloc and not yet consumed by ftvm_on_data. The
// host allocates one per delivery; a few may be outstanding at once.
const MAX_OUTSTANDING: i32 = 16;
const outstanding = new StaticArray<usize>(MAX_OUTSTANDING);

export function ftvm_init(): void {
  registerClock();
  guest().onInit();
  syncHostTimer();
}

/** A buffer of len bytes for the host to fill with input. Unmanaged memory: the GC
 *  neither moves nor frees it; ftvm_on_data frees it after the handler returns. */
export function ftvm_alloc(len: i32): usize {
  if (len < 0) abort("ftvm_alloc: negative length");
  for (let i = 0; i < MAX_OUTSTANDING; i++) {
    if (unchecked(outstanding[i]) == 0) {
      let p = heap.alloc(<usize>len);
      unchecked(outstanding[i] = p);
      return p;
    }
  }
  abort("ftvm_alloc: more than 16 buffers outstanding (each needs an ftvm_on_data)");
  return 0;
}

export function ftvm_on_open(conn: i32): void {
  guest().onOpen(conn);
  syncHostTimer();
}

export function ftvm_on_data(conn: i32, ptr: usize, len: i32): void {
  guest().onData(conn, ptr, len);
  for (let i = 0; i < MAX_OUTSTANDING; i++) {
    if (unchecked(outstanding[i]) == ptr && ptr != 0) {
      unchecked(outstanding[i] = 0);
      heap.free(ptr);
      break;
    }
  }
  syncHostTimer();
}

export function ftvm_on_close(conn: i32): void {
  guest().onClose(conn);
  syncHostTimer();
}

export function ftvm_on_timer(): void {
  dispatchTimers((tag: i32): void => { guest().onTimer(tag); });
}
