// Output, console, entropy and disk on top of the raw host imports.

import {
  host_send, host_close, host_log, host_random, host_disk_read, host_disk_write, host_disk_blocks,
  LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG,
} from "./abi";

/** Sends raw bytes [ptr, ptr + len). The host copies them during the call. */
export function sendBytes(conn: i32, ptr: usize, len: i32): void {
  if (len > 0) host_send(conn, ptr, len);
}

/**
 * Sends a string (as UTF-8), a Uint8Array, an ArrayBuffer or a StaticArray<u8>.
 * Output is held by the proxy until the checkpoint that produced it commits.
 */
export function send<T>(conn: i32, data: T): void {
  if (isString<T>()) {
    let buf = String.UTF8.encode(changetype<string>(data));
    sendBytes(conn, changetype<usize>(buf), buf.byteLength);
  } else if (data instanceof Uint8Array) {
    let a = changetype<Uint8Array>(data);
    sendBytes(conn, a.dataStart, a.byteLength);
  } else if (data instanceof ArrayBuffer) {
    let b = changetype<ArrayBuffer>(data);
    sendBytes(conn, changetype<usize>(b), b.byteLength);
  } else if (data instanceof StaticArray<u8>) {
    let s = changetype<StaticArray<u8>>(data);
    sendBytes(conn, changetype<usize>(s), s.length);
  } else {
    ERROR("send: data must be a string, Uint8Array, ArrayBuffer or StaticArray<u8>");
  }
}

/** Closes a connection after its pending output. */
export function close(conn: i32): void {
  host_close(conn);
}

/** Logs UTF-8 text at a level (LOG_ERROR=0 .. LOG_DEBUG=3). */
export function log(level: i32, msg: string): void {
  let buf = String.UTF8.encode(msg);
  host_log(level, changetype<usize>(buf), buf.byteLength);
}
export function logError(msg: string): void { log(LOG_ERROR, msg); }
export function logWarn(msg: string): void { log(LOG_WARN, msg); }
export function logInfo(msg: string): void { log(LOG_INFO, msg); }
export function logDebug(msg: string): void { log(LOG_DEBUG, msg); }

/** Fills [ptr, ptr + len) with host entropy. */
export function randomBytes(ptr: usize, len: i32): void {
  if (len > 0) host_random(ptr, len);
}

// Scratch word for randomU64; static, so no allocation per call.
const RANDOM_WORD: usize = memory.data(8, 8);

/** 64 random bits from the host. */
export function randomU64(): u64 {
  host_random(RANDOM_WORD, 8);
  return load<u64>(RANDOM_WORD);
}

/** A random integer in [0, bound) (bound > 0); bias below 2^-32 for bound < 2^32. */
export function randomBelow(bound: u32): u32 {
  return <u32>(randomU64() % <u64>bound);
}

/** Reads n 4 KiB blocks from the virtual disk into ptr; 0 on success, < 0 on error. */
export function diskRead(block: i32, ptr: usize, n: i32): i32 { return host_disk_read(block, ptr, n); }
/** Writes n 4 KiB blocks from ptr to the virtual disk; 0 on success, < 0 on error. */
export function diskWrite(block: i32, ptr: usize, n: i32): i32 { return host_disk_write(block, ptr, n); }
/** Size of the virtual disk, 4 KiB blocks (0: no disk). */
export function diskBlocks(): i32 { return host_disk_blocks(); }
