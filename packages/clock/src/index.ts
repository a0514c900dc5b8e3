export { ClockError, type ClockErrorCode } from './errors.js';
export {
  type PvclockFields,
  type PvclockReading,
  type TimeScale,
  timeScale,
  scaleFor,
  pvclockTimeNs,
  checkFields,
  loadPvclockFields,
  pvclockWriteSteps,
  writePvclock,
  pvclockReadAttempt,
  readPvclock,
  DEFAULT_READ_RETRIES,
} from './pvclock.js';
export { type HostClock, type SkewOptions, createSystemHostClock, systemHostClock, ManualClock, SkewedClock } from './host-clock.js';
export {
  type ClockMode,
  type ClockOptions,
  type ClockState,
  type ClockStats,
  CLOCK_MODES,
  CLOCK_DEFAULTS,
  SLEW_DEADBAND_NS,
  ClockCompensator,
} from './compensator.js';
