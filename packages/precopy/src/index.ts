export { PrecopyError, SnapshotError } from './errors.js';
export {
  runPrecopy, wallClock,
  type FinalState, type DiskMode, type DiskResult, type PullStats, type RoundDisk, type PrecopyClock, type PrecopyOptions, type PrecopyProgress, type PrecopyResult, type PrecopySink, type PrecopySource, type RoundStat,
} from './engine.js';
export {
  MpRule, PlainRule, STOP_RULES, STOP_RULE_DEFAULTS, estimateDowntimeMs, makeStopRule, resolveStopRuleOptions,
  type RoundReport, type StopDecision, type StopRule, type StopRuleName, type StopRuleOptions,
} from './stop-rules.js';
export { THROTTLE_MODES, THROTTLE_STEPS_MS, ThrottleController, type ThrottleMode, type ThrottleOptions } from './throttle.js';
export { VmmSource, runServerSource, type VmmSourceHooks } from './vmm-source.js';
export { PageStream } from './page-stream.js';
export { SNAPSHOT_MAGIC, SNAPSHOT_VERSION, Section, SnapshotWriter, readSnapshot, writeSnapshotDisk, type ReadSnapshot, type SnapshotInfo } from './snapshot-file.js';
export { takeSnapshot, type SnapshotOptions, type SnapshotResult } from './snapshot.js';
export { MigrationReceiver, MigrationSender, type MigrationReceiverOptions, type MigrationSenderOptions, type ReceiveStats, type ReceivedDisk, blockBitmap } from './migration.js';
export { controlRequest, serveControl, type ControlRequest, type ControlServerOptions, type PrecopyRequestOptions } from './control.js';
