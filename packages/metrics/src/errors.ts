import { FtvmError } from '@ftvm/guest-abi';

/**
 * Errors raised by @ftvm/metrics. Codes:
 * - FTVM_ERR_INVALID_OPTION: an option of createRoleMetrics / startMetricsServer / FtvmEvents is out of range.
 * - FTVM_ERR_METRICS_LISTEN: the metrics HTTP server could not bind its host:port.
 * - FTVM_ERR_METRICS_LISTENER: a bus listener threw while `strict` was set (tests); never raised otherwise.
 */
export class MetricsError extends FtvmError {}
