export { SecondaryRuntime, type SecondaryRuntimeOptions, type SecondaryRuntimeEvents, type WireDevices } from './secondary-runtime.js';
export { RetainedOutput, type RetainedChunk } from './retained.js';
export { SecondaryError } from './errors.js';
