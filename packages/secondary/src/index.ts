export { SecondaryRuntime, type SecondaryRuntimeOptions, type SecondaryRuntimeEvents, type WireDevices, type WireDisk } from './secondary-runtime.js';
export { RetainedOutput, type RetainedChunk } from './retained.js';
export { SecondaryError } from './errors.js';
export { DiskJournal, journalPath, type DiskJournalOptions, type JournalCrashPoint, type RecoverResult } from './disk-journal.js';
export { ReadyVcpu, type ReadyVcpuOptions } from './ready-vcpu.js';
