/**
 * Migration of a replicated primary behind `ftvm proxy` (the proxy follows the guest, client
 * connections stay open): a planned switchover built from the fault-tolerance machinery.
 *
 * 1. The target is a node (`ftvm secondary --listen …`, empty). This primary dials it with a
 *    replication link and makes it its secondary, dropping the one it had (said in the log):
 *    the full sync is the background full collect (a one-round pre-copy in the vCPU worker),
 *    then epochs flow; the primary is PROTECTED by the target once it acked the full image.
 *    Meanwhile the proxy was told to dial the target (`handover`, ready: false).
 * 2. Handover: the primary holds its vCPU at an event boundary, ends one last epoch there,
 *    and waits for the target's ack of it (PrimaryCore.startHandover): the target's committed
 *    image is now exactly this primary's state, and its commit went to the proxy.
 * 3. It asks the proxy to promote the target (`handover`, ready: true). The proxy promotes it
 *    in term + 1 through its failover path (held output released up to the promoted image's
 *    offsets, input past them replayed, every client connection kept) and fences this node
 *    once the target serves. The fence ends the migration: this node becomes a secondary
 *    (the target, started with `--peer` naming this node, re-protects with it).
 *
 * A refusal or a timeout resumes the guest here (the proxy refuses everything of the old
 * term anyway, so a late promotion of the target is still safe: this node would be fenced).
 */
import { connect, type Link, type Message, type Opaque } from '@ftvm/protocol';
import type { EpochStats, PrimaryRuntime } from '@ftvm/primary';
import { NodeError } from './errors.js';

export interface MigrateRequest {
  /** The target node's listener, ws://host:port. */
  to: string;
  /** The target must hold the full image (PROTECTED) within this, ms. Default 300,000. */
  syncTimeoutMs?: number;
  /** The last epoch's ack, then the proxy's fence, must come within this, ms each. Default 15,000. */
  handoverTimeoutMs?: number;
}

/** Shaped like a pre-copy result, so `ftvm migrate` prints either the same way. */
export interface MigrateResult {
  ok: boolean;
  stopRule: 'handover';
  reason: string;
  /** One round: the full sync (pages copied between events, then one hold). */
  rounds: number;
  totalMs: number;
  /** The full sync: request -> the target acked the full image (PROTECTED), ms. */
  syncMs: number;
  /** vCPU held for the handover -> this node fenced (the target serves), ms. */
  downtimeMs: number;
  estimatedDowntimeMs: number;
  /** Checkpoint bytes sent to the target (pages and disk blocks, encoded). */
  wireBytes: number;
  pagesSent: number;
  /** Pages of the last epoch (ended at the hold). */
  finalPages: number;
  maxThrottleMs: number;
  roundStats: never[];
  /** Last epoch of this primary, and the term the target serves in. */
  finalEpoch?: number;
  term?: number;
  error?: { code: string; message: string };
}

/** What the migration needs of its node (NodeHost). */
export interface MigrateHost {
  readonly primary: PrimaryRuntime | null;
  readonly url: string;
  /** The node a primary keeps dialing for a secondary; the migration points it at the target. */
  peerUrl: string | undefined;
  /** One migration at a time per node. */
  migrating: boolean;
  replicationConnectOptions(term: number): Parameters<typeof connect>[1];
  log(level: 'error' | 'warn' | 'info' | 'debug', msg: string, fields?: Record<string, unknown>): void;
}

/** A node link URL: ws://, or wss:// with TLS. */
const WS_URL = /^wss?:\/\/[^/\s]+(\/\S*)?$/;

/** Validates a control request's detail; throws FTVM_ERR_MIGRATE_BAD_REQUEST. */
export function parseMigrateRequest(detail: Opaque | undefined): MigrateRequest {
  const d = (detail ?? {}) as Record<string, Opaque>;
  if (typeof d !== 'object' || Array.isArray(d) || d instanceof Uint8Array) throw new NodeError('FTVM_ERR_MIGRATE_BAD_REQUEST', 'a migrate request is a map');
  if (typeof d.to !== 'string' || !WS_URL.test(d.to)) throw new NodeError('FTVM_ERR_MIGRATE_BAD_REQUEST', `to must be a ws:// or wss:// URL, got ${JSON.stringify(d.to)}`);
  const ms = (k: string): number | undefined => {
    const v = d[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > 86_400_000) throw new NodeError('FTVM_ERR_MIGRATE_BAD_REQUEST', `${k} must be an integer 1..86400000 (ms)`);
    return v;
  };
  return { to: d.to, syncTimeoutMs: ms('syncTimeoutMs'), handoverTimeoutMs: ms('handoverTimeoutMs') };
}

class MigrateFailed extends NodeError {}

/** Resolves with the first of several outcomes; `off` removes every listener it added. */
function race<T>(setup: (done: (v: T) => void) => () => void, timeoutMs: number, onTimeout: () => T): Promise<T> {
  return new Promise<T>((resolve) => {
    let settled = false;
    let off: () => void = () => undefined;
    const done = (v: T): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      off();
      resolve(v);
    };
    const timer = setTimeout(() => done(onTimeout()), timeoutMs);
    off = setup(done);
  });
}

/** Runs one migration of `host`'s primary to `req.to` (see the file comment). Never throws. */
export async function migratePrimary(host: MigrateHost, req: MigrateRequest): Promise<MigrateResult> {
  const t0 = performance.now();
  const res: MigrateResult = {
    ok: false, stopRule: 'handover', reason: '', rounds: 0, totalMs: 0, syncMs: 0, downtimeMs: 0, estimatedDowntimeMs: 0,
    wireBytes: 0, pagesSent: 0, finalPages: 0, maxThrottleMs: 0, roundStats: [],
  };
  const p = host.primary;
  let owner = false;
  let onSent: ((s: EpochStats) => void) | undefined;
  try {
    if (!p) throw new MigrateFailed('FTVM_ERR_MIGRATE_NOT_PRIMARY', 'this node is not the primary: migrate from the primary node (or from ftvm run --control)');
    if (!p.hasProxy) {
      throw new MigrateFailed('FTVM_ERR_MIGRATE_NO_PROXY', 'this primary has no proxy link: nothing would carry the clients over (an unprotected guest migrates with ftvm run --control)');
    }
    if (req.to === host.url) throw new MigrateFailed('FTVM_ERR_MIGRATE_TARGET', `the target ${req.to} is this node`);
    if (host.migrating || p.core.handingOver) throw new MigrateFailed('FTVM_ERR_BUSY', 'a migration is already under way');
    host.migrating = true;
    owner = true;
    const reuse = req.to === host.peerUrl && p.hasSecondary && p.core.isProtected;
    onSent = (s) => {
      res.wireBytes += s.wireBytes + s.diskWireBytes;
      res.pagesSent += s.dirtyPages;
    };
    p.on('sent', onSent);
    // ---- 1. the target becomes this primary's secondary ----
    if (!reuse) {
      let link: Link;
      try {
        link = await connect(req.to, host.replicationConnectOptions(p.term));
      } catch (e) {
        const err = e as Error & { code?: string };
        throw new MigrateFailed('FTVM_ERR_MIGRATE_TARGET', `cannot reach the target ${req.to}: ${err.code ?? ''} ${err.message}`.replace('  ', ' '));
      }
      if (link.peer.role !== 'secondary') {
        link.close(4000, 'not a migration target');
        throw new MigrateFailed('FTVM_ERR_MIGRATE_TARGET', `the target ${req.to} is a ${link.peer.role}: start it as an empty node (ftvm secondary --listen …)`);
      }
      if (host.primary !== p || p.core.state === 'stopped') {
        link.close(4000, 'role changed');
        throw new MigrateFailed('FTVM_ERR_MIGRATE_NOT_PRIMARY', 'this node stopped being the primary');
      }
      const oldPeer = host.peerUrl;
      host.log('warn', `migration: the target ${req.to} replaces the secondary${p.hasSecondary ? ` (dropping ${oldPeer ?? 'the current one'}: unprotected until the target holds the full image)` : ''}`);
      host.peerUrl = req.to;
      p.sendHandover(req.to, false, 0, 0);
      p.attachSecondary(link);
      const synced = await race<string | null>(
        (done) => {
          const onProt = (prot: boolean): void => {
            if (prot) done(null);
          };
          const onClose = (): void => done('the target closed the replication link during the full sync');
          const onStop = (why: string): void => done(`the primary stopped: ${why}`);
          p.on('protection', onProt);
          link.once('close', onClose);
          p.once('stopped', onStop);
          return () => {
            p.off('protection', onProt);
            link.off('close', onClose);
            p.off('stopped', onStop);
          };
        },
        req.syncTimeoutMs ?? 300_000,
        () => `the target did not hold the full image within ${req.syncTimeoutMs ?? 300_000} ms`,
      );
      if (synced !== null) {
        // Back to the old secondary (the dial loop reconnects it and full-syncs it).
        host.peerUrl = oldPeer;
        link.close(4000, 'migration failed');
        throw new MigrateFailed('FTVM_ERR_MIGRATE_SYNC', synced);
      }
    } else {
      p.sendHandover(req.to, false, 0, 0);
    }
    res.rounds = 1;
    res.syncMs = performance.now() - t0;
    host.log('info', `migration: the target ${req.to} holds the guest (PROTECTED); handing over`, { syncMs: Math.round(res.syncMs), wireBytes: res.wireBytes });
    // ---- 2. hold, last epoch, its ack ----
    const heldAt = performance.now();
    let lastPages = 0;
    const onLast = (s: EpochStats): void => {
      lastPages = s.dirtyPages;
    };
    p.on('sent', onLast);
    try {
      p.startHandover();
    } catch (e) {
      throw new MigrateFailed('FTVM_ERR_MIGRATE_SYNC', `cannot hand over: ${(e as Error).message}`);
    }
    const timeout = req.handoverTimeoutMs ?? 15_000;
    const ready = await race<{ epoch: number } | { fail: string }>(
      (done) => {
        const onReady = (epoch: number): void => done({ epoch });
        const onAbort = (why: string): void => done({ fail: `the target did not ack the last epoch: ${why}` });
        const onStop = (why: string): void => done({ fail: `the primary stopped: ${why}` });
        p.on('handoverReady', onReady);
        p.on('handoverAborted', onAbort);
        p.once('stopped', onStop);
        return () => {
          p.off('handoverReady', onReady);
          p.off('handoverAborted', onAbort);
          p.off('stopped', onStop);
        };
      },
      timeout,
      () => ({ fail: `no ack of the last epoch within ${timeout} ms` }),
    );
    p.off('sent', onLast);
    if ('fail' in ready) {
      p.abortHandover();
      throw new MigrateFailed('FTVM_ERR_MIGRATE_SYNC', ready.fail);
    }
    res.finalEpoch = ready.epoch;
    res.finalPages = lastPages;
    // ---- 3. the proxy promotes the target; our fence says it serves ----
    const fenced = race<{ term: number } | { code: string; fail: string }>(
      (done) => {
        const onStop = (why: string, term: number): void =>
          // 'fenced: term T+1 belongs to another node (ours: T)'
          done(why.startsWith('fenced') ? { term: Number(/term (\d+)/.exec(why)?.[1] ?? term + 1) } : { code: 'FTVM_ERR_MIGRATE_HANDOVER', fail: `the primary stopped: ${why}` });
        const onDeny = (why: string): void => done({ code: 'FTVM_ERR_MIGRATE_REFUSED', fail: `the proxy refused the handover: ${why}` });
        p.once('stopped', onStop);
        p.on('handoverDenied', onDeny);
        return () => {
          p.off('stopped', onStop);
          p.off('handoverDenied', onDeny);
        };
      },
      timeout,
      () => ({ code: 'FTVM_ERR_MIGRATE_HANDOVER', fail: `the proxy did not complete the handover within ${timeout} ms` }),
    );
    if (!p.sendHandover(req.to, true, ready.epoch, performance.now() - heldAt)) {
      p.abortHandover();
      throw new MigrateFailed('FTVM_ERR_MIGRATE_NO_PROXY', 'the proxy link is down: the handover cannot be asked for');
    }
    const out = await fenced;
    if ('fail' in out) {
      // The guest runs here again; the target stays this primary's secondary.
      p.abortHandover();
      throw new MigrateFailed(out.code, out.fail);
    }
    res.downtimeMs = performance.now() - heldAt;
    res.term = out.term;
    res.ok = true;
    res.reason = `handover to ${req.to} (term ${out.term}); this node is a secondary now`;
  } catch (e) {
    const err = e as Error & { code?: string };
    res.ok = false;
    res.reason = err.message;
    res.error = { code: err.code ?? 'FTVM_ERR_MIGRATE_HANDOVER', message: err.message };
  } finally {
    if (onSent) p?.off('sent', onSent);
    if (owner) host.migrating = false;
  }
  res.totalMs = performance.now() - t0;
  host.log(res.ok ? 'info' : 'error', res.ok ? 'migration done' : 'migration failed: the guest keeps running here', {
    ...(res.error ? { code: res.error.code } : {}), reason: res.reason, totalMs: Math.round(res.totalMs), syncMs: Math.round(res.syncMs),
    downtimeMs: Math.round(res.downtimeMs * 10) / 10, wireBytes: res.wireBytes,
  });
  return res;
}

/**
 * Serves one `control` link on a node (the cli's `ftvm migrate --from <node>`): the same
 * status-message requests as a `ftvm run --control` listener (see @ftvm/precopy control.ts),
 * of which a node serves `migrate`.
 */
export function serveNodeControl(link: Link, host: MigrateHost & { role: string; term: number }): void {
  const send = (state: string, detail: unknown): void => {
    link.trySend({ t: 'status', role: host.role === 'primary' ? 'primary' : 'secondary', term: host.term, epoch: 0, state, detail: JSON.parse(JSON.stringify(detail)) as Opaque });
  };
  const fail = (code: string, message: string): void => send('failed', { ok: false, reason: message, error: { code, message } });
  link.on('message', (m: Message) => {
    if (m.t === 'heartbeat') return;
    // A control link asks for a migration and nothing else: a fence, promote or commit on it is refused.
    if (m.t !== 'status') {
      link.fail(new NodeError('FTVM_ERR_UNEXPECTED_MESSAGE', `${m.t} is not a control request (a control link asks for migrate only)`));
      return;
    }
    if (m.state !== 'migrate') {
      fail('FTVM_ERR_CONTROL_UNSUPPORTED', `a replication node serves migrate requests only, not ${m.state} (snapshots: ftvm run --control)`);
      return;
    }
    let req: MigrateRequest;
    try {
      req = parseMigrateRequest(m.detail);
    } catch (e) {
      fail((e as NodeError).code, (e as Error).message);
      return;
    }
    host.log('info', `migration to ${req.to} asked for`, { peer: link.peer.nodeId });
    void migratePrimary(host, req).then((r) => send(r.ok ? 'done' : 'failed', r));
  });
}
