/**
 * The operator's control channel to a running guest (`ftvm run --control`, `ftvm restore`,
 * `ftvm receive`): a protocol listener taking `control` links from the cli, authenticated
 * with the shared token. The protocol has no request messages of its own for these
 * operations yet, so requests and replies ride on `status` messages:
 *
 *   cli -> guest:  status { role: 'cli', state: 'snapshot' | 'migrate', detail: request }
 *   guest -> cli:  status { state: 'progress', detail: PrecopyProgress } ...
 *                  status { state: 'done' | 'failed', detail: result }
 */
import { connect, listen, type Link, type Listener, type Opaque, type TlsOptions } from '@ftvm/protocol';
import type { RunServer } from '@ftvm/vmm';
import { realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { PrecopyError, SnapshotError } from './errors.js';
import { runPrecopy, type DiskMode, type PrecopyOptions, type PrecopyProgress, type PrecopyResult } from './engine.js';
import { MigrationSender } from './migration.js';
import { takeSnapshot } from './snapshot.js';
import { runServerSource, type VmmSource } from './vmm-source.js';
import type { StopRuleName } from './stop-rules.js';
import type { ThrottleMode } from './throttle.js';

/** Engine options a request may carry (plain data). */
export interface PrecopyRequestOptions {
  stopRule?: StopRuleName;
  downtimeLimitMs?: number;
  maxRounds?: number;
  bandwidthLimit?: number;
  throttle?: ThrottleMode;
  /** Migration of a guest with a disk: copy it (PUSH / stop-and-copy / PULL) or open the same file (shared). */
  diskMode?: DiskMode;
}

export type ControlRequest =
  | ({ op: 'snapshot'; path: string; live: boolean } & PrecopyRequestOptions)
  | ({ op: 'migrate'; to: string; syncTimeoutMs?: number; handoverTimeoutMs?: number } & PrecopyRequestOptions);

export interface ControlServerOptions {
  host?: string;
  port: number;
  token: Uint8Array;
  insecure?: boolean;
  tls?: TlsOptions;
  nodeId?: string;
  /** Snapshots are written here only (a request names a file in it); absent: snapshots are refused. */
  snapshotDir?: string;
  guest: string;
  /** The original module (stored in snapshots). */
  moduleWasm: Uint8Array;
  moduleDigest: string;
  /** The guest moved away (migration acked): the process should exit. The server is already closed. */
  onMigrated?: (r: PrecopyResult) => void;
  /** Every operation's progress and end, for logs and metrics. */
  onEvent?: (what: 'progress' | 'done' | 'failed', op: ControlRequest['op'], detail: PrecopyProgress | PrecopyResult) => void;
}

function engineOptions(r: PrecopyRequestOptions): PrecopyOptions {
  const o: PrecopyOptions = {};
  if (r.stopRule !== undefined) o.stopRule = r.stopRule;
  if (r.downtimeLimitMs !== undefined) o.downtimeLimitMs = r.downtimeLimitMs;
  if (r.maxRounds !== undefined) o.maxRounds = r.maxRounds;
  if (r.bandwidthLimit !== undefined) o.bandwidthLimit = r.bandwidthLimit;
  if (r.throttle !== undefined) o.throttle = r.throttle;
  if (r.diskMode !== undefined) o.diskMode = r.diskMode;
  return o;
}

/** Plain data for a status detail: no NaN/Infinity surprises, no typed arrays of pages. */
function plain(v: unknown): Opaque {
  // A status header is at most 64 KiB: keep the last 100 rounds of a long run.
  if (v && typeof v === 'object' && Array.isArray((v as PrecopyResult).roundStats) && (v as PrecopyResult).roundStats.length > 100)
    v = { ...(v as PrecopyResult), roundStats: (v as PrecopyResult).roundStats.slice(-100) };
  return JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? null : typeof x === 'bigint' ? x.toString() : x))) as Opaque;
}

/**
 * Where a snapshot request may write: a plain file name in the serving process's snapshot
 * directory (or a path whose directory is exactly it), never anywhere else.
 */
export function snapshotPath(dir: string | undefined, requested: unknown): string {
  if (dir === undefined) throw new SnapshotError('FTVM_ERR_SNAPSHOT_PATH', 'this guest takes no snapshots: start it with --snapshot-dir <dir>');
  if (typeof requested !== 'string' || requested === '') throw new SnapshotError('FTVM_ERR_SNAPSHOT_PATH', 'a snapshot request names a file');
  const root = realpathSync(dir);
  const full = isAbsolute(requested) ? resolve(requested) : resolve(root, requested);
  const name = basename(full);
  const parent = (() => {
    try {
      return realpathSync(dirname(full));
    } catch {
      return dirname(full);
    }
  })();
  if (parent !== root || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/.test(name))
    throw new SnapshotError('FTVM_ERR_SNAPSHOT_PATH', `${requested} is not a file name in the snapshot directory ${root}`);
  return join(root, name);
}

/** Serves control requests for the guest of `server`. One operation at a time. */
export async function serveControl(server: RunServer, o: ControlServerOptions): Promise<Listener> {
  let busy = false;
  const run = async (link: Link, req: ControlRequest): Promise<void> => {
    const send = (state: string, detail: unknown) => link.trySend({ t: 'status', role: 'primary', term: 0, epoch: 0, state, detail: plain(detail) });
    let lastProgress = 0;
    const onProgress = (p: PrecopyProgress): void => {
      o.onEvent?.('progress', req.op, p);
      const now = performance.now();
      // At most 10 progress messages a second, plus every phase change.
      if (p.phase === 'round' && p.pagesLeft > 0 && now - lastProgress < 100) return;
      lastProgress = now;
      send('progress', p);
    };
    const source: VmmSource = runServerSource(server);
    let result: PrecopyResult;
    if (req.op === 'snapshot') {
      const path = snapshotPath(o.snapshotDir, req.path);
      result = await takeSnapshot(source, path, {
        ...engineOptions(req), live: req.live, onProgress, guest: o.guest, moduleWasm: o.moduleWasm, moduleDigest: o.moduleDigest, macKey: o.token,
      });
    } else {
      let sender: MigrationSender;
      try {
        sender = await MigrationSender.connect(req.to, { token: o.token, insecure: o.insecure, tls: o.tls, moduleDigest: o.moduleDigest, nodeId: o.nodeId });
      } catch (e) {
        const err = e as Error & { code?: string };
        send('failed', { ok: false, reason: `cannot reach ${req.to}: ${err.message}`, error: { code: err.code ?? 'FTVM_ERR_CONNECT_FAILED', message: err.message } });
        return;
      }
      result = await runPrecopy(source, sender, { ...engineOptions(req), onProgress });
      sender.close();
      if (result.ok) {
        // The target runs the guest now: this copy must never run again.
        await server.close();
      }
    }
    o.onEvent?.(result.ok ? 'done' : 'failed', req.op, result);
    send(result.ok ? 'done' : 'failed', result);
    if (result.ok && req.op === 'migrate') {
      // The process exits next: let the cli read the result and close first (bounded wait, ms).
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 2000);
        link.once('close', () => (clearTimeout(t), resolve()));
      });
      o.onMigrated?.(result);
    }
  };
  return listen({
    host: o.host,
    port: o.port,
    token: o.token,
    insecure: o.insecure,
    tls: o.tls,
    maxLinks: 8,
    identity: () => ({ nodeId: o.nodeId ?? `guest-${process.pid}`, role: 'primary', term: 0, epoch: 0 }),
    accept: (hello) => {
      if (hello.link !== 'control') throw new PrecopyError('FTVM_ERR_UNEXPECTED_LINK', `the control listener takes control links only, not ${hello.link}`);
    },
    onLink: (link) => {
      link.on('message', (m) => {
        if (m.t !== 'status' || (m.state !== 'snapshot' && m.state !== 'migrate')) return;
        const req = { ...(m.detail as object), op: m.state } as ControlRequest;
        if (busy) {
          link.trySend({ t: 'status', role: 'primary', term: 0, epoch: 0, state: 'failed', detail: { ok: false, reason: 'another snapshot or migration is in progress', error: { code: 'FTVM_ERR_BUSY', message: 'busy' } } });
          return;
        }
        busy = true;
        run(link, req)
          .catch((e: Error & { code?: string }) => {
            link.trySend({ t: 'status', role: 'primary', term: 0, epoch: 0, state: 'failed', detail: { ok: false, reason: e.message, error: { code: e.code ?? 'FTVM_ERR_PRECOPY_FAILED', message: e.message } } });
          })
          .finally(() => {
            busy = false;
          });
      });
    },
  });
}

/** The cli's side: sends one request, reports progress, resolves with the result detail. */
export async function controlRequest(
  url: string,
  auth: { token: Uint8Array; insecure?: boolean; tls?: TlsOptions },
  req: ControlRequest,
  onProgress?: (p: PrecopyProgress) => void,
): Promise<PrecopyResult & { path?: string; fileBytes?: number }> {
  const link = await connect(url, { ...auth, role: 'cli', link: 'control', nodeId: `cli-${process.pid}`, term: 0 });
  try {
    return await new Promise((resolve, reject) => {
      link.on('message', (m) => {
        if (m.t !== 'status') return;
        if (m.state === 'progress') onProgress?.(m.detail as unknown as PrecopyProgress);
        else if (m.state === 'done' || m.state === 'failed') resolve(m.detail as unknown as PrecopyResult);
      });
      link.on('close', (code, reason) => reject(new PrecopyError('FTVM_ERR_CONTROL_LINK', `the control link to ${url} closed (${code} ${reason})`)));
      const { op, ...detail } = req;
      link.send({ t: 'status', role: 'cli', term: 0, epoch: 0, state: op, detail: plain(detail) });
    });
  } finally {
    link.close();
  }
}
