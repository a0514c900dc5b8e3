export { Vmm, type VmmOptions, type VmmEvents, type VmmClockOptions, type ResolvedClockOptions, setDefaultClockOptions, resolveClockOptions, setDefaultVcpuSched, VCPU_SCHEDS, type VcpuSched, VCPU_MODES, type VcpuMode } from './vmm.js';
export { VmmError } from './errors.js';
export { GuestImage } from './guest-image.js';
export { RunServer, type RunServerOptions } from './run-server.js';
export { readGuest, prepareGuest, type PreparedGuest } from './prepare.js';
export {
  encodeCheckpoint,
  decodeCheckpoint,
  checkpointDigest,
  moduleDigest,
  type Checkpoint,
  type DeviceState,
  type ConnState,
  type ClockDeviceState,
  type GlobalValue,
} from './checkpoint.js';
export type { Collected, OutputItem, GuestEvent, ClockReport, PrecopyFinal } from './worker-messages.js';
export {
  prepareDisk,
  BlockDevice,
  openDiskFds,
  closeDiskFds,
  undoPath,
  DiskStatus,
  PullState,
  readBlocksAsync,
  DISK_BLOCK_BYTES,
  MAX_DISK_BYTES,
  MAX_DISK_BLOCKS,
  type DiskSpec,
  type DiskFds,
  type BlockDeviceOptions,
} from './disk.js';
