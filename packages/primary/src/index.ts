export { PrimaryRuntime, type PrimaryRuntimeOptions, type PrimaryRuntimeEvents, type EpochStats } from './primary-runtime.js';
export { PrimaryError } from './errors.js';
