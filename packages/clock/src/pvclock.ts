/**
 * pvclock_vcpu_time_info maths and the seqlock protocol around it, as KVM and the
 * Linux guest implement them. Pure: memory is a DataView, the TSC is a callback.
 *
 * Layout (little-endian, 32 bytes, offsets in PVCLOCK from @ftvm/guest-abi):
 *   u32 version; u32 pad0; u64 tsc_timestamp; u64 system_time;
 *   u32 tsc_to_system_mul; s8 tsc_shift; u8 flags; u8 pad[2]
 * Guest time (ns) = system_time + ((tsc - tsc_timestamp) shifted by tsc_shift) * mul >> 32,
 * with u64 wrap-around exactly as in Linux's pvclock_scale_delta().
 */
import { PVCLOCK } from '@ftvm/guest-abi';
import { clockError } from './errors.js';

export interface PvclockFields {
  /** TSC value (ticks) at which systemTime was exact. u64. */
  tscTimestamp: bigint;
  /** Guest time (ns) at tscTimestamp. u64. */
  systemTime: bigint;
  /** tsc_to_system_mul: 32.32 fixed-point ns per (shifted) tick. u32. */
  mul: number;
  /** tsc_shift: s8, applied to the tick delta before the multiply. */
  shift: number;
  /** PVCLOCK.FLAG_* bits. u8. */
  flags: number;
}

export interface TimeScale {
  mul: number;
  shift: number;
}

const U64_MASK = (1n << 64n) - 1n;
const HIGH32 = 0xffff_ffff_0000_0000n;
const BIT31 = 0x8000_0000n;

function u64(x: bigint): bigint {
  return x & U64_MASK;
}

/**
 * Linux kvm_get_time_scale(): the (mul, shift) that converts ticks of a `baseHz` clock
 * into units of a `scaledHz` clock. mul ends in [2^31, 2^32) so the slope keeps 31
 * significant bits (relative error < 2^-31, about 0.0005 ppm).
 */
export function timeScale(scaledHz: bigint, baseHz: bigint): TimeScale {
  if (scaledHz <= 0n || scaledHz > U64_MASK >> 2n) {
    throw clockError('FTVM_ERR_CLOCK_OPTION', `scaledHz must be in (0, 2^62), got ${scaledHz}`);
  }
  if (baseHz <= 0n || baseHz > U64_MASK) {
    throw clockError('FTVM_ERR_CLOCK_OPTION', `baseHz must be in (0, 2^64), got ${baseHz}`);
  }
  let tps64 = baseHz;
  let scaled64 = scaledHz;
  let shift = 0;
  while (tps64 > scaled64 * 2n || (tps64 & HIGH32) !== 0n) {
    tps64 >>= 1n;
    shift--;
  }
  let tps32 = tps64;
  while (tps32 <= scaled64 || (scaled64 & HIGH32) !== 0n) {
    if ((scaled64 & HIGH32) !== 0n || (tps32 & BIT31) !== 0n) scaled64 >>= 1n;
    else tps32 <<= 1n;
    shift++;
  }
  if (shift < -128 || shift > 127) {
    throw clockError('FTVM_ERR_CLOCK_OPTION', `scale ${scaledHz}/${baseHz} needs tsc_shift ${shift}, outside s8`);
  }
  // div_frac(): (scaled64 << 32) / tps32; tps32 > scaled64 here, so the quotient fits u32.
  return { mul: Number((scaled64 << 32n) / tps32), shift };
}

/** The (mul, shift) for a TSC of `tscHz` ticks per second to ns (Linux: kvm_get_time_scale(NSEC_PER_SEC, tsc_hz)). */
export function scaleFor(tscHz: number): TimeScale {
  if (!Number.isSafeInteger(tscHz) || tscHz <= 0) {
    throw clockError('FTVM_ERR_CLOCK_OPTION', `tscHz must be a positive integer, got ${tscHz}`);
  }
  return timeScale(1_000_000_000n, BigInt(tscHz));
}

/**
 * Guest time (ns) the fields give at `tsc`: Linux __pvclock_read_cycles(). The 64x32
 * multiply is exact (bigint), then >> 32, i.e. mul_u64_u32_shr(delta, mul, 32).
 * A tsc before tscTimestamp wraps as u64 in Linux too: callers never pass one.
 */
export function pvclockTimeNs(fields: PvclockFields, tsc: bigint): bigint {
  let delta = u64(tsc - fields.tscTimestamp);
  if (fields.shift < 0) delta >>= BigInt(-fields.shift);
  else delta = u64(delta << BigInt(fields.shift));
  return u64(fields.systemTime + ((delta * BigInt(fields.mul)) >> 32n));
}

/** Throws FTVM_ERR_CLOCK_FIELDS unless every field fits its C type. */
export function checkFields(fields: PvclockFields): void {
  const bad = (name: string, v: unknown): never => {
    throw clockError('FTVM_ERR_CLOCK_FIELDS', `pvclock ${name} out of range: ${String(v)}`);
  };
  if (typeof fields.tscTimestamp !== 'bigint' || fields.tscTimestamp < 0n || fields.tscTimestamp > U64_MASK) bad('tscTimestamp', fields.tscTimestamp);
  if (typeof fields.systemTime !== 'bigint' || fields.systemTime < 0n || fields.systemTime > U64_MASK) bad('systemTime', fields.systemTime);
  if (!Number.isInteger(fields.mul) || fields.mul < 0 || fields.mul > 0xffff_ffff) bad('mul', fields.mul);
  if (!Number.isInteger(fields.shift) || fields.shift < -128 || fields.shift > 127) bad('shift', fields.shift);
  if (!Number.isInteger(fields.flags) || fields.flags < 0 || fields.flags > 0xff) bad('flags', fields.flags);
}

function checkAddress(view: DataView, addr: number): void {
  // 4-byte alignment keeps the u32 version word aligned (the VMM's clock_register checks the same).
  if (!Number.isInteger(addr) || addr < 0 || addr % 4 !== 0 || addr + PVCLOCK.size > view.byteLength) {
    throw clockError(
      'FTVM_ERR_CLOCK_ADDRESS',
      `pvclock address ${addr} must be 4-byte aligned with ${PVCLOCK.size} bytes inside a ${view.byteLength}-byte view`,
    );
  }
}

/** Reads the fields without the seqlock (host side, when no writer can run concurrently). */
export function loadPvclockFields(view: DataView, addr: number): PvclockFields {
  checkAddress(view, addr);
  return {
    tscTimestamp: view.getBigUint64(addr + PVCLOCK.tscTimestamp, true),
    systemTime: view.getBigUint64(addr + PVCLOCK.systemTime, true),
    mul: view.getUint32(addr + PVCLOCK.tscToSystemMul, true),
    shift: view.getInt8(addr + PVCLOCK.tscShift),
    flags: view.getUint8(addr + PVCLOCK.flags),
  };
}

/**
 * The host's update protocol, one store per step so a test can interleave guest reads
 * between any two stores: version := odd, the five fields, version := even.
 * Each update adds 2 to the version. Without `version`, the next one is derived from the
 * page itself (the page travels in checkpoints, so the sequence survives failover); a
 * version found odd (junk, or an update torn by a crash) is first rounded up to even, as
 * KVM does on its first write. With `version` (an even u32: the value after the update),
 * the caller keeps the sequence and version - 1 is written first. Returns the new version.
 */
export function* pvclockWriteSteps(view: DataView, addr: number, fields: PvclockFields, version?: number): Generator<void, number, void> {
  checkAddress(view, addr);
  checkFields(fields);
  if (version !== undefined && (!Number.isInteger(version) || version < 0 || version > 0xffff_fffe || version % 2 !== 0)) {
    throw clockError('FTVM_ERR_CLOCK_OPTION', `version must be an even u32 (the value after the update), got ${version}`);
  }
  let even: number;
  if (version === undefined) {
    let base = view.getUint32(addr + PVCLOCK.version, true);
    if (base % 2 === 1) base = (base + 1) >>> 0;
    even = (base + 2) >>> 0;
  } else {
    even = version;
  }
  const odd = (even - 1) >>> 0;
  view.setUint32(addr + PVCLOCK.version, odd, true);
  yield;
  view.setBigUint64(addr + PVCLOCK.tscTimestamp, fields.tscTimestamp, true);
  yield;
  view.setBigUint64(addr + PVCLOCK.systemTime, fields.systemTime, true);
  yield;
  view.setUint32(addr + PVCLOCK.tscToSystemMul, fields.mul, true);
  yield;
  view.setInt8(addr + PVCLOCK.tscShift, fields.shift);
  yield;
  view.setUint8(addr + PVCLOCK.flags, fields.flags);
  yield;
  view.setUint32(addr + PVCLOCK.version, even, true);
  return even;
}

/** Runs the whole update protocol at once (see pvclockWriteSteps). Returns the new version. */
export function writePvclock(view: DataView, addr: number, fields: PvclockFields, version?: number): number {
  const steps = pvclockWriteSteps(view, addr, fields, version);
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

export interface PvclockReading {
  /** Guest time, ns. */
  timeNs: bigint;
  /** The TSC value the time was computed at. */
  tsc: bigint;
  /** The (even) version the fields were read under. */
  version: number;
  fields: PvclockFields;
}

/**
 * One attempt of the guest's seqlock read, one load per step: version, fields, rdtsc,
 * version again. Returns null when the attempt must be retried (version odd, or changed
 * while reading), otherwise a consistent reading.
 */
export function* pvclockReadAttempt(
  view: DataView,
  addr: number,
  rdtsc: () => bigint,
): Generator<void, PvclockReading | null, void> {
  checkAddress(view, addr);
  const version = view.getUint32(addr + PVCLOCK.version, true);
  if (version % 2 === 1) return null;
  yield;
  const tscTimestamp = view.getBigUint64(addr + PVCLOCK.tscTimestamp, true);
  yield;
  const systemTime = view.getBigUint64(addr + PVCLOCK.systemTime, true);
  yield;
  const mul = view.getUint32(addr + PVCLOCK.tscToSystemMul, true);
  yield;
  const shift = view.getInt8(addr + PVCLOCK.tscShift);
  yield;
  const flags = view.getUint8(addr + PVCLOCK.flags);
  yield;
  const tsc = rdtsc();
  yield;
  if (view.getUint32(addr + PVCLOCK.version, true) !== version) return null;
  const fields: PvclockFields = { tscTimestamp, systemTime, mul, shift, flags };
  return { timeNs: pvclockTimeNs(fields, tsc), tsc, version, fields };
}

/** Default bound on seqlock attempts before readPvclock gives up. */
export const DEFAULT_READ_RETRIES = 1000;

/**
 * The guest-side read loop (Linux pvclock_clocksource_read): retries until a consistent
 * reading, at most `maxAttempts` times, then FTVM_ERR_CLOCK_READ_RETRIES (a writer that
 * died mid-update leaves the version odd forever; the reader must not hang).
 */
export function readPvclock(
  view: DataView,
  addr: number,
  rdtsc: () => bigint,
  maxAttempts: number = DEFAULT_READ_RETRIES,
): PvclockReading {
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw clockError('FTVM_ERR_CLOCK_OPTION', `maxAttempts must be a positive integer, got ${maxAttempts}`);
  }
  for (let i = 0; i < maxAttempts; i++) {
    const attempt = pvclockReadAttempt(view, addr, rdtsc);
    for (;;) {
      const r = attempt.next();
      if (r.done === true) {
        if (r.value !== null) return r.value;
        break;
      }
    }
  }
  throw clockError('FTVM_ERR_CLOCK_READ_RETRIES', `pvclock at ${addr}: no consistent read in ${maxAttempts} attempts`);
}
