export { AbiError, DirtyLogError, InstrumentError } from './errors.js';
export { checkAbi, type AbiExport, type AbiImport, type AbiReport } from './abi.js';
export {
  instrument,
  INSTRUMENTED_SECTION,
  INSTRUMENTER_VERSION,
  type GlobalExport,
  type InstrumentOptions,
  type InstrumentResult,
  type InstrumentStats,
} from './instrument.js';
export { MARK_RANGE_FUNCTION } from './rewrite.js';
export { FUEL_GLOBAL, FUEL_IMPORT } from './fuel.js';
export {
  BytemapDirtyLog,
  copyPages,
  pagesInRange,
  ShadowDirtyLog,
  type DirtyCollection,
  type DirtyLog,
} from './dirty-log.js';
export type { FuncType, MemoryDesc, ValType, ExternKind } from './wasm-reader.js';
export { cacheKey, defaultCacheDir, instrumentCached, type CachedInstrumentResult } from './cache.js';
export { inspectModule, type InspectReport } from './cli-inspect.js';
