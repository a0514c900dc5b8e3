// Guest time from the kvmclock-style pvclock page the VMM keeps up to date.

import {
  host_clock_register, host_rdtsc,
  PVCLOCK_VERSION, PVCLOCK_TSC_TIMESTAMP, PVCLOCK_SYSTEM_TIME, PVCLOCK_TSC_TO_SYSTEM_MUL, PVCLOCK_TSC_SHIFT,
} from "./abi";

// 32 bytes, 32-aligned, in the static data segment (above --memoryBase, so above the
// reserved 1 MiB): aligned to its own size, it never straddles a 4 KiB page, so the
// host updates exactly one page.
const PVCLOCK_PAGE: usize = memory.data(32, 32);

// A seqlock reader that never sees an even, stable version is talking to a broken
// host; trapping after this many tries beats hanging the vCPU forever.
const MAX_SEQLOCK_TRIES: i32 = 1 << 20;

/** Address of the pvclock structure. */
export function pvclockAddress(): usize {
  return PVCLOCK_PAGE;
}

/** Names the pvclock page to the host. Called once by ftvm_init (never on restore:
 *  the registration is VMM device state that travels with checkpoints). */
export function registerClock(): void {
  host_clock_register(PVCLOCK_PAGE);
}

/**
 * (delta * mul) >> 32 without losing the high bits: delta is split into 32-bit halves,
 * hi * mul is exact after the shift, lo * mul fits in 64 bits.
 */
// @ts-ignore: decorator
@inline
export function scaleDelta(delta: u64, mul: u32, shift: i32): u64 {
  if (shift >= 0) delta <<= <u64>shift;
  else delta >>= <u64>(-shift);
  let m = <u64>mul;
  return (delta >> 32) * m + (((delta & 0xffffffff) * m) >> 32);
}

/**
 * Guest time in ns, read with the kvmclock protocol: retry while the version is odd
 * (host mid-update) or changed during the read. Returns 0 before the host wrote the
 * page. A TSC behind tsc_timestamp (not expected from a correct host) counts as no
 * elapsed time, so the result is never below system_time.
 * Plain loads suffice: the optimizer cannot move a memory load across the rdtsc host
 * call, which may write memory, and the host's own writes are ordered by the version.
 */
export function now(): i64 {
  let p = PVCLOCK_PAGE;
  for (let tries = 0; tries < MAX_SEQLOCK_TRIES; tries++) {
    let v1 = load<u32>(p + PVCLOCK_VERSION);
    if (v1 & 1) continue;
    if (v1 == 0) return 0;
    let tscTimestamp = load<u64>(p + PVCLOCK_TSC_TIMESTAMP);
    let systemTime = load<u64>(p + PVCLOCK_SYSTEM_TIME);
    let mul = load<u32>(p + PVCLOCK_TSC_TO_SYSTEM_MUL);
    let shift = <i32>load<i8>(p + PVCLOCK_TSC_SHIFT);
    let tsc = <u64>host_rdtsc();
    let v2 = load<u32>(p + PVCLOCK_VERSION);
    if (v1 != v2) continue;
    let delta: u64 = <i64>(tsc - tscTimestamp) > 0 ? tsc - tscTimestamp : 0;
    return <i64>(systemTime + scaleDelta(delta, mul, shift));
  }
  abort("pvclock version never settled");
  return 0;
}
