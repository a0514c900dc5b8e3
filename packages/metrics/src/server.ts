import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { ClusterStatus, type ClusterStatusOptions, type StatusPeer } from './cluster.js';
import { MetricsError } from './errors.js';
import type { Readiness, RoleMetrics } from './registry.js';
import { statusPageHtml } from './status-page.js';

/**
 * Conventional --metrics-port of each role (deploy/prometheus/prometheus.yml scrapes the first
 * three). `run` has its own so an unprotected guest never shows up as a cluster role.
 */
export const DEFAULT_METRICS_PORTS: Readonly<Record<'proxy' | 'primary' | 'secondary' | 'run', number>> = Object.freeze({
  proxy: 9100,
  primary: 9101,
  secondary: 9102,
  run: 9103,
});

export interface MetricsServerOptions {
  /** TCP port; 0 picks a free one (tests). Conventional: proxy 9100, primary 9101, secondary 9102. */
  port: number;
  /** Bind address. Default 127.0.0.1; containers pass 0.0.0.0. */
  host?: string;
  /** Fills registry, health, ready and status from one role's metrics; explicit fields below win. */
  metrics?: RoleMetrics;
  registry?: Registry;
  /** /healthz: liveness. Default: always ok (answering proves the event loop runs). */
  health?: () => Readiness;
  /** /readyz: 200 when ok, else 503 with the detail. Default: not ready. */
  ready?: () => Readiness;
  /** /api/status JSON (the status page polls it with ?since=<unix ms>). Default: 404 on /api/status. */
  status?: (query: URLSearchParams) => unknown;
  /** Concurrent connections accepted; more are refused by the kernel backlog / closed. Default 64. */
  maxConnections?: number;
  /**
   * Other roles' metrics servers to show on this status page (e.g. the proxy lists the two
   * nodes, as `ftvm up` runs them): served merged at /api/cluster. At most 8. Default none.
   */
  peers?: readonly StatusPeer[];
  /** Polling bounds for `peers`. */
  cluster?: ClusterStatusOptions;
}

export interface MetricsServer {
  readonly port: number;
  readonly host: string;
  /** e.g. http://127.0.0.1:9101 */
  readonly url: string;
  close(): Promise<void>;
}

// The page only talks to its own origin; inline script and style are the whole app (the host is offline).
const CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'";

function sendJson(res: http.ServerResponse, status: number, body: unknown, head: boolean): void {
  const text = JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v));
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(head ? undefined : text);
}

function sendText(res: http.ServerResponse, status: number, type: string, text: string, head: boolean, extra: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...extra });
  res.end(head ? undefined : text);
}

function validate(opts: MetricsServerOptions): void {
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new MetricsError('FTVM_ERR_INVALID_OPTION', `metrics port must be an integer in 0..65535, got ${String(opts.port)}`);
  }
  if (opts.host !== undefined && (typeof opts.host !== 'string' || opts.host.length === 0)) {
    throw new MetricsError('FTVM_ERR_INVALID_OPTION', 'metrics host must be a non-empty string');
  }
  if (!opts.registry && !opts.metrics && !(opts.peers && opts.peers.length > 0)) {
    throw new MetricsError('FTVM_ERR_INVALID_OPTION', 'startMetricsServer needs a registry, metrics or peers (a view-only status page)');
  }
  const max = opts.maxConnections ?? 64;
  if (!Number.isInteger(max) || max < 1 || max > 10_000) {
    throw new MetricsError('FTVM_ERR_INVALID_OPTION', `metrics maxConnections must be an integer in 1..10000, got ${String(max)}`);
  }
}

/**
 * Serves one role's /metrics, /healthz, /readyz, /api/status and the status page at `/`.
 * Resolves once listening; rejects with FTVM_ERR_METRICS_LISTEN when the port cannot be bound.
 */
export function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  validate(opts);
  const cluster = opts.peers && opts.peers.length > 0 ? new ClusterStatus(opts.peers, opts.cluster) : null;
  const host = opts.host ?? '127.0.0.1';
  // Undefined for a view-only server (peers only): /metrics is then 404.
  const registry = opts.registry ?? opts.metrics?.registry;
  const health = opts.health ?? opts.metrics?.health ?? (() => ({ ok: true, detail: {} }));
  const ready = opts.ready ?? opts.metrics?.readiness ?? (() => ({ ok: false, detail: { reason: 'no readiness source' } }));
  const status = opts.status ?? (opts.metrics
    ? (q: URLSearchParams) => {
      const since = q.get('since');
      return opts.metrics!.status.snapshot(since === null ? {} : { since: Number(since) });
    }
    : undefined);

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const head = method === 'HEAD';
    if (method !== 'GET' && !head) {
      sendJson(res, 405, { error: 'method not allowed' }, false);
      return;
    }
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q >= 0 ? url.slice(0, q) : url;
    const query = new URLSearchParams(q >= 0 ? url.slice(q + 1) : '');
    switch (path) {
      case '/metrics': {
        if (!registry) break;
        const text = await registry.metrics();
        sendText(res, 200, registry.contentType, text, head);
        return;
      }
      case '/healthz': {
        const h = health();
        sendJson(res, h.ok ? 200 : 503, { ok: h.ok, ...h.detail }, head);
        return;
      }
      case '/readyz': {
        const r = ready();
        sendJson(res, r.ok ? 200 : 503, { ready: r.ok, ...r.detail }, head);
        return;
      }
      case '/api/status':
        if (!status) break;
        sendJson(res, 200, status(query), head);
        return;
      case '/api/cluster': {
        // Always answers (peers: [] when none), so the page knows whether to draw the cluster view.
        const since = Number(query.get('since') ?? NaN);
        sendJson(res, 200, cluster ? await cluster.snapshot(Number.isFinite(since) ? since : undefined) : { version: 1, now: Date.now(), peers: [] }, head);
        return;
      }
      case '/':
      case '/index.html':
        sendText(res, 200, 'text/html; charset=utf-8', statusPageHtml(await firstPaint()), head, {
          'content-security-policy': CSP,
          'x-content-type-options': 'nosniff',
        });
        return;
      default:
        break;
    }
    sendJson(res, 404, { error: 'not found', paths: ['/', '/metrics', '/healthz', '/readyz', '/api/status', '/api/cluster'] }, head);
  };

  /** The status and cluster JSON written into the page (a failing status leaves it to the polls). */
  const firstPaint = async (): Promise<{ status: unknown; cluster: unknown }> => {
    let s: unknown = null;
    try {
      s = status?.(new URLSearchParams()) ?? null;
    } catch {
      s = null;
    }
    return { status: s, cluster: cluster ? await cluster.snapshot() : null };
  };

  const server = http.createServer({ maxHeaderSize: 16 * 1024 }, (req, res) => {
    // Requests carry no body we care about; drain so keep-alive sockets stay usable.
    req.resume();
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: 'FTVM_ERR_METRICS_INTERNAL', message: String(err) }, false);
      else res.destroy();
    });
  });
  server.maxConnections = opts.maxConnections ?? 64;
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 64;

  return new Promise<MetricsServer>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new MetricsError('FTVM_ERR_METRICS_LISTEN', `metrics server cannot listen on ${host}:${opts.port}: ${err.code ?? err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(opts.port, host, () => {
      server.off('error', onError);
      // A later socket-level error must not crash the role; the server keeps serving other clients.
      server.on('error', () => {});
      const port = (server.address() as AddressInfo).port;
      const urlHost = host.includes(':') ? `[${host}]` : host;
      let closing: Promise<void> | undefined;
      resolve({
        port,
        host,
        url: `http://${urlHost}:${port}`,
        close: () => {
          closing ??= new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          });
          return closing;
        },
      });
    });
  });
}
