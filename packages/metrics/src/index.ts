export { MetricsError } from './errors.js';
export {
  FtvmEvents, diagnosticsChannelName, EVENT_NAMES, ROLES, POLICIES, CODECS, CLOCK_MODES, TASKS, PROGRESS_UNITS, PEERS, DROP_REASONS,
} from './events.js';
export type {
  FtvmEventMap, FtvmEventName, FtvmListener, FtvmEventsOptions, FtvmDiagnosticsMessage, Role, PolicyName, CodecName,
  CodecStats, ClockMode, TaskName, ProgressUnit, PeerName, DropReason,
} from './events.js';
export {
  createRoleMetrics, METRIC_NAMES, PAUSE_BUCKETS, DELAY_BUCKETS, EPOCH_DURATION_BUCKETS, DIRTY_PAGES_BUCKETS,
  COMPRESSION_WINDOW, MAX_FAULT_CODES,
} from './registry.js';
export type { RoleMetrics, RoleMetricsOptions, Readiness } from './registry.js';
export { StatusRecorder } from './status.js';
export type { RoleState, StatusSample, StatusSnapshot, StatusRecorderOptions } from './status.js';
export { startMetricsServer, DEFAULT_METRICS_PORTS } from './server.js';
export type { MetricsServer, MetricsServerOptions } from './server.js';
export { STATUS_PAGE_HTML } from './status-page.js';
export { Ring, Reservoir } from './window.js';
export { ProgressReporter, formatBytes } from './progress.js';
export type { ProgressReporterOptions, ProgressUpdate } from './progress.js';
export { ClusterStatus, MAX_STATUS_PEERS } from './cluster.js';
export type { StatusPeer, ClusterStatusOptions, ClusterSnapshot, PeerSnapshot } from './cluster.js';
export { registerSecurityMetrics } from './security.js';
export type { ListenerCounts, SecurityMetricsSource } from './security.js';
