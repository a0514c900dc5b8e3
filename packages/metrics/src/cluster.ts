import { MetricsError } from './errors.js';
import type { RoleState, StatusSample } from './status.js';
import { Ring } from './window.js';

/** Another role's metrics server whose /api/status the status page shows next to its own. */
export interface StatusPeer {
  /** Shown on the page, e.g. "a" or "node a" (1..32 chars). */
  name: string;
  /** Base URL of its metrics server, e.g. http://127.0.0.1:9101 (http or https, no path). */
  url: string;
}

export interface ClusterStatusOptions {
  /** A peer that does not answer within this is shown unreachable, ms. Default 800. */
  fetchTimeoutMs?: number;
  /** Samples kept per peer (1 s each). Default 600. */
  capacity?: number;
  /** Largest /api/status body read from a peer, bytes. Default 4 MiB. */
  maxBodyBytes?: number;
  /** Peers are fetched at most this often however many pages poll, ms. Default 500. */
  minRefreshMs?: number;
  /** Clock, unix ms. Default Date.now. */
  now?: () => number;
}

export interface PeerSnapshot {
  name: string;
  url: string;
  /** The last fetch answered with a status. */
  ok: boolean;
  /** Why the last fetch failed (timeout, refused, bad body). */
  error: string | null;
  /** Unix ms of the last good answer. */
  seenAt: number | null;
  startedAt: number | null;
  current: RoleState | null;
  /** Oldest first; only those newer than the `since` asked for. */
  samples: StatusSample[];
}

export interface ClusterSnapshot {
  version: 1;
  now: number;
  peers: PeerSnapshot[];
}

interface PeerState {
  peer: StatusPeer;
  ring: Ring<StatusSample>;
  startedAt: number | null;
  newest: number | null;
  current: RoleState | null;
  ok: boolean;
  error: string | null;
  seenAt: number | null;
}

export const MAX_STATUS_PEERS = 8;
/** A restarted peer whose start is this far behind our newest sample of it has another clock, ms. */
const RESTART_CLOCK_SLACK_MS = 1000;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,31}$/;

function validPeer(p: StatusPeer): void {
  if (typeof p?.name !== 'string' || !NAME_RE.test(p.name)) {
    throw new MetricsError('FTVM_ERR_INVALID_OPTION', `status peer name must be 1..32 letters, digits, space, '.', '_' or '-', got '${String(p?.name)}'`);
  }
  let u: URL;
  try {
    u = new URL(p.url);
  } catch {
    throw new MetricsError('FTVM_ERR_INVALID_OPTION', `status peer '${p.name}' url must be an http(s) base URL, got '${String(p.url)}'`);
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || (u.pathname !== '/' && u.pathname !== '') || u.search || u.username) {
    throw new MetricsError('FTVM_ERR_INVALID_OPTION', `status peer '${p.name}' url must be http(s)://host:port without path or credentials, got '${p.url}'`);
  }
}

/** Reads at most `limit` bytes of a response body; throws past it (a peer must not balloon our memory). */
async function boundedText(res: Response, limit: number): Promise<string> {
  const len = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(len) && len > limit) throw new Error(`body of ${len} bytes > ${limit}`);
  if (!res.body) return '';
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > limit) {
      await reader.cancel();
      throw new Error(`body over ${limit} bytes`);
    }
    parts.push(value);
  }
  return Buffer.concat(parts).toString('utf8');
}

/**
 * Follows the /api/status of other roles (the nodes behind a proxy, say) so one status page
 * shows the whole cluster. Peers are polled on demand — when a page asks — at most every
 * `minRefreshMs`, each with `?since=` so a sample crosses the network once; each peer's
 * samples sit in a bounded ring. Memory: O(peers × capacity).
 */
export class ClusterStatus {
  private readonly peers: PeerState[];
  private readonly fetchTimeoutMs: number;
  private readonly maxBodyBytes: number;
  private readonly minRefreshMs: number;
  private readonly now: () => number;
  private refreshedAt = -Infinity;
  private refreshing: Promise<void> | null = null;

  constructor(peers: readonly StatusPeer[], opts: ClusterStatusOptions = {}) {
    if (!Array.isArray(peers) || peers.length > MAX_STATUS_PEERS) {
      throw new MetricsError('FTVM_ERR_INVALID_OPTION', `status peers must be a list of at most ${MAX_STATUS_PEERS}`);
    }
    for (const p of peers) validPeer(p);
    if (new Set(peers.map((p) => p.name)).size !== peers.length) {
      throw new MetricsError('FTVM_ERR_INVALID_OPTION', `status peer names must be distinct: ${peers.map((p) => p.name).join(', ')}`);
    }
    const capacity = opts.capacity ?? 600;
    this.fetchTimeoutMs = opts.fetchTimeoutMs ?? 800;
    this.maxBodyBytes = opts.maxBodyBytes ?? 4 * 1024 * 1024;
    this.minRefreshMs = opts.minRefreshMs ?? 500;
    for (const [k, v, lo, hi] of [['fetchTimeoutMs', this.fetchTimeoutMs, 10, 60_000], ['maxBodyBytes', this.maxBodyBytes, 1024, 256 * 1024 * 1024], ['minRefreshMs', this.minRefreshMs, 0, 60_000]] as const) {
      if (!Number.isInteger(v) || v < lo || v > hi) throw new MetricsError('FTVM_ERR_INVALID_OPTION', `cluster status ${k} must be an integer in ${lo}..${hi}, got ${String(v)}`);
    }
    this.now = opts.now ?? Date.now;
    this.peers = peers.map((p) => ({
      peer: { name: p.name, url: p.url.replace(/\/$/, '') },
      ring: new Ring<StatusSample>(capacity),
      startedAt: null,
      newest: null,
      current: null,
      ok: false,
      error: 'not polled yet',
      seenAt: null,
    }));
  }

  get size(): number {
    return this.peers.length;
  }

  /** Refreshes the peers (unless done within minRefreshMs) and returns what is known. */
  async snapshot(since?: number): Promise<ClusterSnapshot> {
    if (this.now() - this.refreshedAt >= this.minRefreshMs) {
      // Concurrent pages share one round of fetches.
      this.refreshing ??= this.refresh().finally(() => {
        this.refreshedAt = this.now();
        this.refreshing = null;
      });
      await this.refreshing;
    }
    return {
      version: 1,
      now: this.now(),
      peers: this.peers.map((s) => ({
        name: s.peer.name,
        url: s.peer.url,
        ok: s.ok,
        error: s.error,
        seenAt: s.seenAt,
        startedAt: s.startedAt,
        current: s.current,
        samples: since === undefined || !Number.isFinite(since) ? s.ring.toArray() : s.ring.toArray().filter((x) => x.t > since),
      })),
    };
  }

  private async refresh(): Promise<void> {
    await Promise.all(this.peers.map((s) => this.poll(s)));
  }

  private async poll(s: PeerState): Promise<void> {
    const url = `${s.peer.url}/api/status${s.newest === null ? '' : `?since=${s.newest}`}`;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(this.fetchTimeoutMs), headers: { accept: 'application/json' } });
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      const body = JSON.parse(await boundedText(res, this.maxBodyBytes)) as { startedAt?: unknown; current?: unknown; samples?: unknown };
      if (typeof body !== 'object' || body === null || typeof body.startedAt !== 'number' || typeof body.current !== 'object' || body.current === null || !Array.isArray(body.samples)) {
        throw new Error('not an ftvm /api/status answer');
      }
      if (s.startedAt !== body.startedAt) {
        // The peer restarted. Its history goes on (a respawned node keeps its name) unless the
        // new process started before our newest sample: a clock behind ours, start over.
        if (s.newest !== null && body.startedAt < s.newest - RESTART_CLOCK_SLACK_MS) {
          s.ring = new Ring<StatusSample>(s.ring.capacity);
          s.newest = null;
        }
        s.startedAt = body.startedAt;
      }
      for (const x of body.samples as StatusSample[]) {
        if (typeof x?.t !== 'number' || (s.newest !== null && x.t <= s.newest)) continue;
        s.ring.push(x);
        s.newest = x.t;
      }
      s.current = body.current as RoleState;
      s.ok = true;
      s.error = null;
      s.seenAt = this.now();
    } catch (e) {
      s.ok = false;
      const err = e as Error;
      s.error = (err.name === 'TimeoutError' ? `no answer in ${this.fetchTimeoutMs} ms` : err.cause instanceof Error ? err.cause.message : err.message).slice(0, 200);
    }
  }
}
