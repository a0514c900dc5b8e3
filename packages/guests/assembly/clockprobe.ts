import { Guest, setGuest, now } from "@ftvm/guest-sdk/assembly";
export * from "@ftvm/guest-sdk/assembly/exports";
class P extends Guest {
  onData(conn: i32, ptr: usize, len: i32): void { now(); }
}
setGuest(new P());
