export * from "./errors.js";
/**
 * The ftvm guest ABI, version 1. Shared by the VMM (host side) and, by value, by the
 * AssemblyScript SDK (packages/guest-sdk/assembly/abi.ts mirrors these constants).
 *
 * A guest is a reactor-style wasm module. Between two event dispatches its stack is
 * empty, so memory + mutable globals + the VMM's device state is its whole state.
 */

/** Bumped on any incompatible change. The VMM refuses a module whose version differs. */
export const ABI_VERSION = 1;

/** The import module name of every host function. */
export const IMPORT_MODULE = 'ftvm';

/** Wasm page (memory.grow unit), bytes. */
export const WASM_PAGE_BYTES = 65536;
/** Dirty-log page, bytes. Every dirty-page number in ftvm is in these units. */
export const PAGE_BYTES = 4096;
export const PAGE_SHIFT = 12;
export const PAGES_PER_WASM_PAGE = WASM_PAGE_BYTES / PAGE_BYTES;

/**
 * The reserved low region of guest memory, [0, RESERVED_BYTES). On Node 20 (no
 * multi-memory) the dirty bytemap lives here: byte p is 1 when 4 KiB page p was
 * written since the last collection; 1 MiB of bytemap covers 4 GiB of memory.
 * Guests must place no data below it (AssemblyScript: `--memoryBase 1048576`).
 *
 * Instrumented stores mark their page AFTER the store, so a guest store into this
 * region always leaves a mark on a page < RESERVED_PAGES: the VMM sees it at the next
 * collection and reports FTVM_ERR_GUEST_RESERVED_WRITE. The guest cannot corrupt its
 * dirty log silently.
 */
export const RESERVED_BYTES = 1 << 20;
export const RESERVED_PAGES = RESERVED_BYTES / PAGE_BYTES;
export const BYTEMAP_BASE = 0;
/** Largest memory the bytemap covers: 4 GiB. */
export const MAX_MEMORY_BYTES = RESERVED_BYTES * PAGE_BYTES;

/** The exported immutable i32 global holding the guest's ABI version. */
export const EXPORT_ABI_VERSION = 'ftvm_abi_version';

/** Exports every guest must have. */
export const REQUIRED_EXPORTS = {
  memory: 'memory',
  init: 'ftvm_init',
  alloc: 'ftvm_alloc',
  onOpen: 'ftvm_on_open',
  onData: 'ftvm_on_data',
  onClose: 'ftvm_on_close',
  onTimer: 'ftvm_on_timer',
} as const;

/** Signature of each required function export (params, results), wasm value types. */
export const EXPORT_SIGNATURES: Record<string, { params: string[]; results: string[] }> = {
  ftvm_init: { params: [], results: [] },
  ftvm_alloc: { params: ['i32'], results: ['i32'] },
  ftvm_on_open: { params: ['i32'], results: [] },
  ftvm_on_data: { params: ['i32', 'i32', 'i32'], results: [] },
  ftvm_on_close: { params: ['i32'], results: [] },
  ftvm_on_timer: { params: [], results: [] },
};

/**
 * Host functions, module "ftvm". Semantics:
 * - send(conn, ptr, len): output bytes on a connection; held by the proxy until commit.
 * - close(conn): close a connection after its pending output.
 * - clock_register(ptr): the guest names the address of its 32-byte pvclock page
 *   (like a kvmclock MSR write); the VMM keeps it up to date from then on.
 * - rdtsc() -> i64: the virtual TSC (ticks; frequency in the pvclock mul/shift).
 * - timer_set(deadline_guest_ns: i64): arm the one-shot timer at an absolute guest
 *   time; a value <= 0 disarms it. ftvm_on_timer fires once guest time >= deadline.
 * - disk_read/disk_write(block, ptr, n) -> i32: n 4 KiB blocks; 0 on success, < 0 error.
 * - disk_blocks() -> i32: size of the virtual disk in 4 KiB blocks (0: no disk).
 * - random(ptr, len): fill with entropy. log(level, ptr, len): UTF-8 text to the console.
 */
export const IMPORT_SIGNATURES: Record<string, { params: string[]; results: string[] }> = {
  send: { params: ['i32', 'i32', 'i32'], results: [] },
  close: { params: ['i32'], results: [] },
  clock_register: { params: ['i32'], results: [] },
  rdtsc: { params: [], results: ['i64'] },
  timer_set: { params: ['i64'], results: [] },
  disk_read: { params: ['i32', 'i32', 'i32'], results: ['i32'] },
  disk_write: { params: ['i32', 'i32', 'i32'], results: ['i32'] },
  disk_blocks: { params: [], results: ['i32'] },
  random: { params: ['i32', 'i32'], results: [] },
  log: { params: ['i32', 'i32', 'i32'], results: [] },
};

/** Prefix of the exports the instrumenter adds for each mutable global (by index). */
export const GLOBAL_EXPORT_PREFIX = 'ftvm_g';

/** log() levels. */
export const LogLevel = { error: 0, warn: 1, info: 2, debug: 3 } as const;
/** The names of the log() levels, by number. */
export const LOG_LEVEL_NAMES = ['error', 'warn', 'info', 'debug'] as const;

/**
 * pvclock_vcpu_time_info, 32 bytes (Linux/KVM layout):
 * u32 version; u32 pad0; u64 tsc_timestamp; u64 system_time; u32 tsc_to_system_mul;
 * s8 tsc_shift; u8 flags; u8 pad[2].
 * time_ns = system_time + (((tsc - tsc_timestamp) shifted by tsc_shift) * mul) >> 32
 */
export const PVCLOCK = {
  size: 32,
  version: 0,
  tscTimestamp: 8,
  systemTime: 16,
  tscToSystemMul: 24,
  tscShift: 28,
  flags: 29,
  FLAG_TSC_STABLE: 1 << 0,
  FLAG_GUEST_STOPPED: 1 << 1,
} as const;

/** Shipped guest names. */
export const SHIPPED_GUESTS = ['kv', 'http', 'dirtier', 'clockprobe'] as const;
export type ShippedGuest = (typeof SHIPPED_GUESTS)[number];
