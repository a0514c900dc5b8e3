import type { FtvmEvents, PolicyName } from '@ftvm/metrics';
import type { NodeHost } from './node-host.js';

/** Period of the link-state poll, ms: the runtimes emit no event when a link closes. */
const LINK_POLL_MS = 500;
/** In-flight epochs tracked for ftvm_inflight_bytes; the primary keeps at most 8 in flight. */
const MAX_TRACKED_INFLIGHT = 64;
/** Failure seen -> promoted longer than this is not one failover (detection defaults are ~1 s), ms. */
const MAX_DETECTION_TO_PROMOTION_MS = 30_000;

/**
 * Publishes a node's runtime events on the metrics bus: the runtimes stay free of
 * metrics code, and only @ftvm/metrics knows prom-client.
 */
export function bridgeNodeMetrics(node: NodeHost, bus: FtvmEvents, policy: PolicyName): void {
  // One poll per role instance; replaced (and the old one cleared) on every role change.
  let poll: NodeJS.Timeout | null = null;
  let watched: 'primary' | 'secondary' | null = null;
  // Returns a check to run at once when an event hints that the link changed.
  const watchLink = (peer: 'primary' | 'secondary', up: () => boolean, onChange?: (up: boolean) => void): (() => void) => {
    if (poll) clearInterval(poll);
    // A role change ends the old role's link (a promoted node no longer follows a primary).
    if (watched !== null && watched !== peer) bus.emit('link', { peer: watched, up: false });
    watched = peer;
    let last = up();
    bus.emit('link', { peer, up: last });
    const check = (): void => {
      const now = up();
      if (now === last) return;
      bus.emit('link', { peer, up: (last = now) });
      onChange?.(now);
    };
    poll = setInterval(check, LINK_POLL_MS);
    poll.unref();
    return check;
  };
  // performance.now() when this node's secondary runtime asked for promotion (failure detected), ms.
  let lostAt: number | null = null;
  // A secondary's first checkpoint applied after a primary connects is the full sync.
  let secondarySyncing = false;
  node.on('log', (_level, msg, f) => {
    // A promoted node counts its own failover: failure detected -> serving as primary.
    // The proxy may promote before this node's own heartbeat timeout says 'primary lost':
    // then the failure was first seen here as the primary link breaking.
    if (msg === 'link error' && node.role === 'secondary') lostAt ??= performance.now();
    if (msg.startsWith('PROMOTED to primary')) {
      const restoreMs = typeof f?.restoreMs === 'number' ? f.restoreMs : 0;
      // A link error long before (e.g. the proxy's link) is not this failure's detection.
      const since = lostAt === null ? Infinity : performance.now() - lostAt;
      bus.emit('failover', { durationMs: since <= MAX_DETECTION_TO_PROMOTION_MS ? since : restoreMs, term: node.term });
      lostAt = null;
    }
    if (msg.startsWith('guest fault') && typeof f?.code === 'string') bus.emit('guestFault', { code: f.code });
    if (msg === 'primary connected' && node.role === 'secondary') {
      lostAt = null;
      secondarySyncing = true;
      bus.emit('progress', { task: 'sync', done: 0, total: 0, unit: 'pages' });
    }
  });
  // The term a secondary knows moves when a primary of a newer term connects, without a role event.
  let announcedTerm = -1;
  const announceTerm = (): void => {
    if (node.term === announcedTerm) return;
    announcedTerm = node.term;
    bus.emit('role', { role: node.role, term: node.term });
  };
  node.on('role', (role, term) => {
    announcedTerm = term;
    bus.emit('role', { role, term });
    bus.emit('ready', { ready: role === 'primary', reason: role === 'primary' ? 'serving the guest' : 'waiting for a full sync' });
  });
  node.on('primary', (rt) => {
    // A lost secondary never acks what was in flight: forget it (and an unfinished sync).
    const checkLink = watchLink('secondary', () => rt.hasSecondary, (up) => {
      if (up) return;
      inflight.clear();
      inflightBytes = 0;
      emitInflight();
      // An unfinished sync starts over (from 0) when a secondary connects again.
      sync = null;
    });
    bus.emit('protection', { protected: false, reason: 'primary: no synced secondary yet' });
    // The guest's clock: drift = guest time minus reference, after every vCPU resume and slew tick.
    rt.vmm.on('clock', (r) => bus.emit('clockDrift', { driftNs: r.driftNs, mode: r.mode }));
    // Initial full sync: from 'secondary connected' until the core says protected (the full
    // checkpoint is acked). Its size is the largest epoch collected meanwhile: the full one
    // (every non-zero page) dwarfs the incremental epochs that may finish around it.
    let sync: { pages: number } | null = null;
    // Wire bytes of checkpoints sent and not yet acked, by epoch (bounded: see MAX_TRACKED_INFLIGHT).
    const inflight = new Map<number, number>();
    let inflightBytes = 0;
    // From our own table: the runtime emits 'acked' before its core counts the ack.
    const emitInflight = (): void => bus.emit('inFlight', { epochs: inflight.size, bytes: inflightBytes });
    rt.on('log', (_level, msg) => {
      if (msg.startsWith('secondary connected')) {
        checkLink();
        sync = { pages: 0 };
        bus.emit('progress', { task: 'sync', done: 0, total: 0, unit: 'pages' });
        inflight.clear();
        inflightBytes = 0;
      }
    });
    rt.on('collected', (_epoch, _pauseMs, dirtyPages) => {
      if (sync === null || dirtyPages <= sync.pages) return;
      sync.pages = dirtyPages;
      bus.emit('progress', { task: 'sync', done: 0, total: dirtyPages, unit: 'pages' });
    });
    rt.on('protection', (p, reason) => {
      checkLink();
      if (p && sync !== null) {
        // At least one page: a full checkpoint is never empty, and done/total must read 1.
        const pages = Math.max(1, sync.pages);
        bus.emit('progress', { task: 'sync', done: pages, total: pages, unit: 'pages' });
        sync = null;
      }
      bus.emit('protection', { protected: p, reason });
    });
    rt.on('collected', (epoch, pauseMs, dirtyPages, durationMs, earlyPages) => bus.emit('epochEnded', { epoch, policy, durationMs, pauseMs, dirtyPages, earlyPages }));
    rt.on('sent', (s) => {
      bus.emit('checkpointSent', { epoch: s.epoch, wireBytes: s.wireBytes, rawBytes: s.rawBytes, byCodec: s.byCodec, diskBlocks: s.diskBlocks, diskWireBytes: s.diskWireBytes });
      if (inflight.size >= MAX_TRACKED_INFLIGHT) {
        inflight.clear();
        inflightBytes = 0;
      }
      inflight.set(s.epoch, s.wireBytes);
      inflightBytes += s.wireBytes;
      emitInflight();
    });
    rt.on('acked', (epoch, ackLatencyMs) => {
      bus.emit('checkpointAcked', { epoch, ackLatencyMs });
      for (const [e, b] of inflight) {
        if (e > epoch) continue;
        inflightBytes -= b;
        inflight.delete(e);
      }
      emitInflight();
    });
    rt.on('committed', (epoch) => bus.emit('committed', { epoch }));
    rt.on('contained', (on, reason) => {
      bus.emit('guestContained', { contained: on });
      bus.emit('ready', { ready: !on, reason: on ? `guest contained: ${reason}` : 'serving the guest' });
    });
    rt.on('scrub', (checked, bad) => bus.emit('scrub', { pagesChecked: checked, mismatches: bad.length }));
  });
  node.on('secondary', (rt) => {
    // Seen from the secondary, the guest is protected while this node holds an applied image
    // and hears its primary: losing either host then leaves a copy that can serve.
    let holds = false;
    const protection = (linked: boolean): void =>
      bus.emit('protection', linked && holds
        ? { protected: true, reason: 'secondary: holds the committed image and follows the primary' }
        : { protected: false, reason: linked ? 'secondary: waiting for the full sync' : 'secondary: no primary link' });
    watchLink('primary', () => rt.hasPrimary, (up) => {
      // A new primary link starts with a full sync: the held image is no longer current.
      if (up) holds = false;
      protection(up);
    });
    protection(rt.hasPrimary);
    rt.on('applied', (_epoch, pages) => {
      if (!secondarySyncing) return;
      secondarySyncing = false;
      bus.emit('progress', { task: 'sync', done: pages, total: pages, unit: 'pages' });
    });
    rt.on('applied', (epoch) => {
      announceTerm();
      if (!holds) {
        holds = true;
        protection(true);
      }
      bus.emit('committed', { epoch });
      bus.emit('ready', { ready: true, reason: `holds epoch ${epoch}` });
    });
    rt.on('diskCommitted', (epoch, blocks, durationMs) => bus.emit('diskCommitted', { epoch, blocks, durationMs }));
    rt.on('log', (level, msg, f) => {
      if (msg.startsWith('primary lost')) lostAt ??= performance.now();
      if (msg === 'checkpoint not applied') bus.emit('checkpointRejected', { epoch: Number(f?.epoch ?? 0), reason: String(f?.reason ?? '') });
    });
  });
}
