import type { FtvmEvents, StatusPeer } from '@ftvm/metrics';
import type { FrameLimits, TlsOptions } from '@ftvm/protocol';
import { PROXY_ERR, ProxyError } from './errors.js';

/** Where the runtime's log lines go; the CLI passes its Logger. */
export interface ProxyLog {
  error(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
}

export interface ProxyRuntimeOptions {
  /** Client TCP port; 0 picks a free one. */
  port: number;
  /** Client listen address. Default 127.0.0.1. */
  host?: string;
  /** ws:// URLs of the nodes' listeners, in node-id order. */
  nodes: string[];
  /** Node ids, one per URL. Default "a", "b", "c", ... */
  nodeIds?: string[];
  /** Shared link secret (see @ftvm/protocol loadToken). */
  token: Uint8Array;
  /** The operator's --insecure: an empty token is accepted. */
  insecure?: boolean;
  /** wss:// node links: the CA that signs the nodes' certificates, and this proxy's certificate and key (mutual TLS). */
  tls?: TlsOptions;
  /** Our nodeId in the link hello. Default "proxy". */
  proxyId?: string;

  // ---- ProxyCore (see @ftvm/core README for meaning) ----
  /** Silence from the active primary after which it is lost, ms. Default 1000. */
  failoverTimeoutMs?: number;
  /** A promoted node must answer with its offsets within this, ms. Default 10000. */
  promoteTimeoutMs?: number;
  /** Total logged client input, bytes. Default 64 MiB. */
  maxInputLogBytes?: number;
  /** One connection's logged input, bytes. Default 8 MiB. */
  maxConnInputLogBytes?: number;
  /** Total held output, bytes. Default 64 MiB. */
  maxHeldOutputBytes?: number;

  // ---- runtime ----
  /** Heartbeat to every node, ms. Default 100. */
  heartbeatIntervalMs?: number;
  /** First reconnect delay after a link drops or a connect fails, ms; doubles up to reconnectMaxMs. Default 50. */
  reconnectMinMs?: number;
  /** Longest reconnect delay, ms. Default 1000. */
  reconnectMaxMs?: number;
  /** Connect + handshake deadline per attempt, ms. Default 2000. */
  connectTimeoutMs?: number;
  /** Open client connections; more are refused (closed at once). Default 10000. */
  maxClients?: number;
  /** Bytes queued towards one client beyond which it is a slow reader and is dropped. Default 16 MiB. */
  maxClientWriteBufferBytes?: number;
  /** Bytes queued towards all clients together beyond which the slowest reader is dropped first. Default 256 MiB. */
  maxTotalClientWriteBufferBytes?: number;
  /** Bytes queued on one node link beyond which the link fails (4009) and reconnects. Default 256 MiB. */
  maxLinkBufferedBytes?: number;
  /** A client whose connection the guest closed gets this long to close its side, ms. Default 30000. */
  clientLingerMs?: number;
  /** Frame limits on node links (header/payload). Default: @ftvm/protocol's. */
  limits?: Partial<FrameLimits>;
  /** Event bus for metrics; default a private one (`runtime.events`). */
  events?: FtvmEvents;
  /** Serve /metrics, /healthz, /readyz on this port (0: any free). Default: none. */
  metricsPort?: number;
  /** Address of the metrics server. Default: `host`. */
  metricsHost?: string;
  /**
   * Other roles' metrics servers shown on this proxy's status page (the nodes, as `ftvm up`
   * runs them), so the one page the operator opens shows protection, epochs and pauses. Default none.
   */
  statusPeers?: StatusPeer[];
  log?: ProxyLog;
}

export type ResolvedOptions = Required<Omit<ProxyRuntimeOptions, 'events' | 'metricsPort' | 'metricsHost' | 'statusPeers' | 'limits' | 'log' | 'tls'>> &
  Pick<ProxyRuntimeOptions, 'events' | 'metricsPort' | 'metricsHost' | 'statusPeers' | 'limits' | 'log' | 'tls'>;

const KNOWN = new Set<string>([
  'port', 'host', 'nodes', 'nodeIds', 'token', 'insecure', 'tls', 'proxyId', 'failoverTimeoutMs', 'promoteTimeoutMs', 'maxInputLogBytes',
  'maxConnInputLogBytes', 'maxHeldOutputBytes', 'heartbeatIntervalMs', 'reconnectMinMs', 'reconnectMaxMs', 'connectTimeoutMs',
  'maxClients', 'maxClientWriteBufferBytes', 'maxTotalClientWriteBufferBytes', 'maxLinkBufferedBytes', 'clientLingerMs', 'limits', 'events', 'metricsPort',
  'metricsHost', 'statusPeers', 'log',
]);

const MiB = 1024 * 1024;
const opt = (m: string): ProxyError => new ProxyError(PROXY_ERR.OPTION, m);

function int(o: Record<string, unknown>, key: string, def: number | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = o[key] ?? def;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw opt(`${key} must be an integer from ${min} to ${max}, got ${String(o[key])}`);
  }
  return v;
}

/** Default node ids: "a", "b", ... "z", then "n26", "n27", ... */
export function defaultNodeId(i: number): string {
  return i < 26 ? String.fromCharCode(97 + i) : `n${i}`;
}

/** Validates once, in the constructor; every message names the option. */
export function resolveOptions(opts: ProxyRuntimeOptions): ResolvedOptions {
  if (opts === null || typeof opts !== 'object') throw opt('options must be an object');
  const o = opts as unknown as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KNOWN.has(k)) throw opt(`unknown option ${k}`);
  if (!Array.isArray(opts.nodes) || opts.nodes.length === 0) throw opt('nodes must be a non-empty array of ws:// URLs');
  for (const u of opts.nodes) {
    let url: URL | undefined;
    try {
      url = typeof u === 'string' ? new URL(u) : undefined;
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'ws:' && url.protocol !== 'wss:')) throw opt(`nodes: '${String(u)}' is not a ws:// or wss:// URL`);
  }
  const nodeIds = opts.nodeIds ?? opts.nodes.map((_, i) => defaultNodeId(i));
  if (!Array.isArray(nodeIds) || nodeIds.length !== opts.nodes.length || nodeIds.some((n) => typeof n !== 'string' || n === '')) {
    throw opt(`nodeIds must list one non-empty id per node URL (${opts.nodes.length})`);
  }
  if (new Set(nodeIds).size !== nodeIds.length) throw opt('nodeIds must not repeat an id');
  if (!(opts.token instanceof Uint8Array)) throw opt('token must be a Uint8Array (empty for none)');
  const host = opts.host ?? '127.0.0.1';
  if (typeof host !== 'string' || host === '') throw opt('host must be a non-empty string');
  const proxyId = opts.proxyId ?? 'proxy';
  if (typeof proxyId !== 'string' || proxyId === '' || proxyId.length > 256) throw opt('proxyId must be a string of 1..256 characters');
  const reconnectMinMs = int(o, 'reconnectMinMs', 50, 1, 60_000);
  const reconnectMaxMs = int(o, 'reconnectMaxMs', 1000, 1, 600_000);
  if (reconnectMaxMs < reconnectMinMs) throw opt(`reconnectMaxMs (${reconnectMaxMs}) must be >= reconnectMinMs (${reconnectMinMs})`);
  if (opts.metricsPort !== undefined) int(o, 'metricsPort', undefined, 0, 65535);
  if (opts.statusPeers !== undefined) {
    if (opts.metricsPort === undefined) throw opt('statusPeers needs metricsPort (they are shown on its status page)');
    if (!Array.isArray(opts.statusPeers)) throw opt('statusPeers must be an array of { name, url }');
  }
  if (opts.metricsHost !== undefined && (typeof opts.metricsHost !== 'string' || opts.metricsHost === '')) throw opt('metricsHost must be a non-empty string');
  if (opts.log !== undefined && ['error', 'warn', 'info', 'debug'].some((l) => typeof (opts.log as unknown as Record<string, unknown>)[l] !== 'function')) {
    throw opt('log must have error, warn, info and debug functions');
  }
  return {
    port: int(o, 'port', undefined, 0, 65535),
    host,
    nodes: [...opts.nodes],
    nodeIds: [...nodeIds],
    token: opts.token,
    insecure: opts.insecure === true,
    tls: opts.tls,
    proxyId,
    failoverTimeoutMs: int(o, 'failoverTimeoutMs', 1000, 1),
    promoteTimeoutMs: int(o, 'promoteTimeoutMs', 10_000, 1),
    maxInputLogBytes: int(o, 'maxInputLogBytes', 64 * MiB, 1),
    maxConnInputLogBytes: int(o, 'maxConnInputLogBytes', 8 * MiB, 1),
    maxHeldOutputBytes: int(o, 'maxHeldOutputBytes', 64 * MiB, 1),
    heartbeatIntervalMs: int(o, 'heartbeatIntervalMs', 100, 1, 60_000),
    reconnectMinMs,
    reconnectMaxMs,
    connectTimeoutMs: int(o, 'connectTimeoutMs', 2000, 1, 600_000),
    maxClients: int(o, 'maxClients', 10_000, 1, 1_000_000),
    maxClientWriteBufferBytes: int(o, 'maxClientWriteBufferBytes', 16 * MiB, 1),
    maxTotalClientWriteBufferBytes: int(o, 'maxTotalClientWriteBufferBytes', 256 * MiB, 1),
    maxLinkBufferedBytes: int(o, 'maxLinkBufferedBytes', 256 * MiB, 1),
    clientLingerMs: int(o, 'clientLingerMs', 30_000, 1),
    limits: opts.limits,
    events: opts.events,
    metricsPort: opts.metricsPort,
    metricsHost: opts.metricsHost,
    statusPeers: opts.statusPeers,
    log: opts.log,
  };
}
