export { PrecopyError, SnapshotError } from './errors.js';
export {
  runPrecopy, wallClock,
  type FinalState, type PrecopyClock, type PrecopyOptions, type PrecopyProgress, type PrecopyResult, type PrecopySink, type PrecopySource, type RoundStat,
} from './engine.js';
export {
  MpRule, PlainRule, STOP_RULES, STOP_RULE_DEFAULTS, estimateDowntimeMs, makeStopRule, resolveStopRuleOptions,
  type RoundReport, type StopDecision, type StopRule, type StopRuleName, type StopRuleOptions,
} from './stop-rules.js';
export { THROTTLE_MODES, THROTTLE_STEPS_MS, ThrottleController, type ThrottleMode, type ThrottleOptions } from './throttle.js';
