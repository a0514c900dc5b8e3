// The ftvm guest ABI, version 1, mirrored by value from packages/guest-abi/src/index.ts
// (AssemblyScript cannot import TypeScript). A test in packages/guests checks that the
// two stay equal.

export const ABI_VERSION: i32 = 1;
export const IMPORT_MODULE = "ftvm";

/** Wasm page (memory.grow unit), bytes. */
export const WASM_PAGE_BYTES: i32 = 65536;
/** Dirty-log page, bytes. */
export const PAGE_BYTES: i32 = 4096;
export const PAGE_SHIFT: i32 = 12;

/** [0, RESERVED_BYTES) holds the VMM's dirty bytemap: guests place nothing there
 *  (compile with `--memoryBase 1048576`). */
export const RESERVED_BYTES: i32 = 1 << 20;

export const LOG_ERROR: i32 = 0;
export const LOG_WARN: i32 = 1;
export const LOG_INFO: i32 = 2;
export const LOG_DEBUG: i32 = 3;

/** pvclock_vcpu_time_info layout (Linux/KVM), byte offsets into the 32-byte page. */
export const PVCLOCK_SIZE: i32 = 32;
export const PVCLOCK_VERSION: i32 = 0;
export const PVCLOCK_TSC_TIMESTAMP: i32 = 8;
export const PVCLOCK_SYSTEM_TIME: i32 = 16;
export const PVCLOCK_TSC_TO_SYSTEM_MUL: i32 = 24;
export const PVCLOCK_TSC_SHIFT: i32 = 28;
export const PVCLOCK_FLAGS: i32 = 29;
export const PVCLOCK_FLAG_TSC_STABLE: u8 = 1 << 0;
export const PVCLOCK_FLAG_GUEST_STOPPED: u8 = 1 << 1;

// Host imports, module "ftvm". Only the ones a guest actually uses end up in its
// import section (asc drops unused declarations). Semantics: see guest-abi.

/** Output bytes on a connection; the host copies them during the call. */
@external("ftvm", "send") export declare function host_send(conn: i32, ptr: usize, len: i32): void;
/** Close a connection after its pending output. */
@external("ftvm", "close") export declare function host_close(conn: i32): void;
/** Name the address of the 32-byte pvclock page (a kvmclock MSR write). */
@external("ftvm", "clock_register") export declare function host_clock_register(ptr: usize): void;
/** The virtual TSC, ticks. */
@external("ftvm", "rdtsc") export declare function host_rdtsc(): i64;
/** Arm the one-shot timer at an absolute guest time, ns; <= 0 disarms. */
@external("ftvm", "timer_set") export declare function host_timer_set(deadlineNs: i64): void;
/** Read n 4 KiB blocks; 0 on success, < 0 on error. */
@external("ftvm", "disk_read") export declare function host_disk_read(block: i32, ptr: usize, n: i32): i32;
/** Write n 4 KiB blocks; 0 on success, < 0 on error. */
@external("ftvm", "disk_write") export declare function host_disk_write(block: i32, ptr: usize, n: i32): i32;
/** Size of the virtual disk in 4 KiB blocks (0: no disk). */
@external("ftvm", "disk_blocks") export declare function host_disk_blocks(): i32;
/** Fill [ptr, ptr+len) with entropy. */
@external("ftvm", "random") export declare function host_random(ptr: usize, len: i32): void;
/** UTF-8 text to the console. */
@external("ftvm", "log") export declare function host_log(level: i32, ptr: usize, len: i32): void;
