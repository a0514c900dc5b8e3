// The event handler a guest registers. Override what you need; the defaults ignore
// the event. Dispatch happens one event at a time with an empty stack in between,
// which is what lets the VMM checkpoint the guest between any two events.

export abstract class Guest {
  /** First boot only, after the clock is registered. Never called on restore. */
  onInit(): void {}
  /** A client connection opened. */
  onOpen(conn: i32): void {}
  /**
   * Input bytes [ptr, ptr + len) on a connection. The buffer belongs to the SDK and is
   * freed when this returns: copy what must outlive the call.
   */
  onData(conn: i32, ptr: usize, len: i32): void {}
  /** The connection is gone (closed by the client or after `close`). */
  onClose(conn: i32): void {}
  /** A logical timer armed with `setTimer`/`after` is due; `tag` is the caller's value. */
  onTimer(tag: i32): void {}
}

// The registered guest. Set by the guest module's top-level code (the wasm start
// function), so it is part of memory + globals and survives checkpoint/restore.
let current: Guest | null = null;

/** Registers the guest's handler; call it from the guest module's top level. */
export function setGuest(guest: Guest): void {
  current = guest;
}

/** The registered handler; traps with a message when the guest registered none. */
export function guest(): Guest {
  let g = current;
  if (g === null) {
    abort("no guest registered: call setGuest(new MyGuest()) at the top level of the guest module");
    unreachable();
  }
  return changetype<Guest>(g);
}
