import { createHash } from 'node:crypto';
import { Packr } from 'msgpackr';
import { PAGE_BYTES, PVCLOCK } from '@ftvm/guest-abi';
import { VmmError } from './errors.js';

export type GlobalValue = number | bigint;

/** Per-connection device state: the offsets every checkpoint carries. */
export interface ConnState {
  conn: number;
  /** Input bytes the guest has consumed (dispatched to ftvm_on_data). */
  inConsumed: number;
  /** Output bytes the guest has produced (send). */
  outProduced: number;
  /** The guest called close(conn), or the client's close was dispatched. */
  closed: boolean;
}

/** Clock device state. Host-specific values are excluded from the image digest. */
export interface ClockDeviceState {
  /** Guest address of the pvclock page, 0 before clock_register. */
  pvclockAddr: number;
  /** The virtual TSC at capture, and the host wall time (ns) it was read at. */
  tscAtCapture: bigint;
  wallNsAtCapture: bigint;
  /** Guest time (ns) at capture, as the pvclock fields give it. */
  guestNsAtCapture: bigint;
  /**
   * The compensator's ClockState (@ftvm/clock) at capture: a restore continues guest time
   * from it plus the wall time elapsed since, never backwards. Absent in hand-made checkpoints.
   */
  compensator?: unknown;
}

export interface DeviceState {
  /** Open connections, plus those closed since the previous checkpoint. */
  conns: ConnState[];
  /** Highest connection id the guest has seen opened (ids are never reused). */
  maxConnId: number;
  /** Armed one-shot timer deadline in guest ns, or null. */
  timerDeadlineNs: bigint | null;
  clock: ClockDeviceState;
}

/** A full checkpoint: everything needed to resume the guest in another process. */
export interface Checkpoint {
  format: 1;
  /** sha256 (hex) of the original (uninstrumented) module. */
  moduleDigest: string;
  epoch: number;
  memBytes: number;
  /** The whole linear memory, memBytes long. */
  memory: Uint8Array;
  globals: GlobalValue[];
  devices: DeviceState;
}

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'bigint' });

export function encodeCheckpoint(c: Checkpoint): Uint8Array {
  return packr.pack(c);
}

export function decodeCheckpoint(bytes: Uint8Array): Checkpoint {
  let c: Checkpoint;
  try {
    c = packr.unpack(bytes) as Checkpoint;
  } catch (e) {
    throw new VmmError('FTVM_ERR_CHECKPOINT_INVALID', `checkpoint does not decode: ${(e as Error).message}`, { cause: e });
  }
  if (!c || c.format !== 1) throw new VmmError('FTVM_ERR_CHECKPOINT_INVALID', `checkpoint format ${String(c?.format)} is not 1`);
  if (!(c.memory instanceof Uint8Array) || c.memory.length !== c.memBytes || c.memBytes % PAGE_BYTES !== 0)
    throw new VmmError('FTVM_ERR_CHECKPOINT_INVALID', `checkpoint memory is ${c.memory?.length} bytes, header says ${c.memBytes}`);
  if (!Array.isArray(c.globals) || !c.devices || !Array.isArray(c.devices.conns) || !Number.isSafeInteger(c.devices.maxConnId))
    throw new VmmError('FTVM_ERR_CHECKPOINT_INVALID', 'checkpoint lacks globals or device state');
  return c;
}

/**
 * Digest of a checkpoint's guest-visible state: memory, globals, connections and the
 * timer. Host-specific clock values are left out: the TSC, wall time, compensator state,
 * and the 32-byte pvclock structure in guest memory (hashed as zeros), which the clock
 * device rewrites whenever the vCPU resumes, and so on every restore.
 */
export function checkpointDigest(c: Pick<Checkpoint, 'memory' | 'globals' | 'devices' | 'memBytes'>): string {
  const h = createHash('sha256');
  h.update(`mem:${c.memBytes};`);
  const pv = c.devices.clock.pvclockAddr;
  if (pv > 0 && pv + PVCLOCK.size <= c.memory.length) {
    h.update(c.memory.subarray(0, pv));
    h.update(new Uint8Array(PVCLOCK.size));
    h.update(c.memory.subarray(pv + PVCLOCK.size));
  } else {
    h.update(c.memory);
  }
  h.update(`globals:${c.globals.map((g) => `${typeof g === 'bigint' ? 'L' : 'N'}${g.toString()}`).join(',')};`);
  const conns = [...c.devices.conns].sort((a, b) => a.conn - b.conn);
  h.update(`conns:${conns.map((s) => `${s.conn}/${s.inConsumed}/${s.outProduced}/${s.closed ? 1 : 0}`).join(',')};`);
  h.update(`maxConn:${c.devices.maxConnId};timer:${c.devices.timerDeadlineNs ?? 'none'};pvclock:${c.devices.clock.pvclockAddr}`);
  return h.digest('hex');
}

export function moduleDigest(wasm: Uint8Array): string {
  return createHash('sha256').update(wasm).digest('hex');
}
