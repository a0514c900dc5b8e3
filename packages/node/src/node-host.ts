import { EventEmitter } from 'node:events';
import { createPolicy } from '@ftvm/core';
import { LOG_LEVEL_NAMES } from '@ftvm/guest-abi';
import { connect, listen, type Hello, type Link, type Listener, type ListenerStats, type TlsOptions } from '@ftvm/protocol';
import { PrimaryRuntime } from '@ftvm/primary';
import { SecondaryRuntime, type RetainedOutput } from '@ftvm/secondary';
import { GuestImage, Vmm, type DiskSpec, type PreparedGuest, type VmmOptions } from '@ftvm/vmm';
import { NodeError } from './errors.js';
import { serveNodeControl, type MigrateHost } from './migrate.js';

export type NodeRole = 'primary' | 'secondary';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export interface NodeOptions {
  nodeId: string;
  host: string;
  port: number;
  token: Uint8Array;
  /** The operator's --insecure: an empty token is accepted (anyone can connect). */
  insecure?: boolean;
  /** wss:// links: this node's certificate and key, and the CA that signs its peers' (mutual TLS). */
  tls?: TlsOptions;
  /** Established links this node's listener serves at once (proxy, replication, control). Default 16. */
  maxLinks?: number;
  guest: PreparedGuest;
  /** Role at start: a primary boots the guest; a secondary waits for checkpoints. */
  role: NodeRole;
  /** The other node's address: a primary dials it to get a secondary; a fenced primary rejoins it. */
  peer?: string;
  /** A secondary dials this primary to join it (full sync, then epochs). */
  join?: string;
  policy: string;
  /** Policy options (intervalMs for periodic; minGapMs, maxIntervalMs, dirtyBudgetBytes for adaptive). */
  policyOptions?: Record<string, unknown>;
  onSecondaryLoss: 'continue' | 'block';
  compression: boolean;
  /** VmmOptions.earlyCopy (default true). */
  earlyCopy?: boolean;
  eventTimeoutMs: number;
  /** Silence after which the peer is lost, ms. Default 1000. */
  detectionTimeoutMs?: number;
  /**
   * This node's own disk file (prepared: see prepareDisk). The primary's guest runs on it;
   * as a secondary the node commits each epoch's blocks to it; a promotion runs the guest
   * on it as committed. Default: no disk.
   */
  disk?: DiskSpec;
  /** As a secondary, keep the committed image in a prestarted vCPU too (fast promotion, twice the memory). Default true. */
  readyVcpu?: boolean;
}

export interface NodeEvents {
  role: [role: NodeRole, term: number];
  log: [level: LogLevel, msg: string, fields?: Record<string, unknown>];
  primary: [rt: PrimaryRuntime];
  secondary: [rt: SecondaryRuntime];
}

const MiB = 1024 * 1024;
/** Replication frames carry device state and retained output in their header. */
const LINK_LIMITS = { maxHeaderBytes: 32 * MiB, maxPayloadBytes: 64 * MiB };

/**
 * One replication node: a single listener serving every link it may need in any role
 * (checkpoints while secondary, the proxy's net link while primary), switching role on
 * promotion (secondary -> primary) and on fencing (primary -> secondary, then rejoin).
 */
export class NodeHost extends EventEmitter<NodeEvents> implements MigrateHost {
  private listener: Listener | null = null;
  /** The node a primary dials for a secondary (--peer/--secondary; a migration points it at its target). */
  peerUrl: string | undefined;
  migrating = false;
  role: NodeRole;
  primary: PrimaryRuntime | null = null;
  secondary: SecondaryRuntime | null = null;
  private dialing = false;
  private closed = false;
  private dialTimer: NodeJS.Timeout | null = null;

  constructor(readonly opts: NodeOptions) {
    super();
    this.role = opts.role;
    this.peerUrl = opts.peer;
  }

  log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    this.emit('log', level, msg, fields);
  }

  /** How this node dials another's listener with a replication link. */
  replicationConnectOptions(term: number): Parameters<typeof connect>[1] {
    return {
      token: this.opts.token,
      insecure: this.opts.insecure,
      tls: this.opts.tls,
      role: this.role,
      link: 'replication',
      nodeId: this.opts.nodeId,
      term,
      guestDigest: Buffer.from(this.opts.guest.digest, 'hex'),
      limits: LINK_LIMITS,
      timeoutMs: 2000,
    };
  }

  get term(): number {
    return this.primary?.term ?? this.secondary?.term ?? 0;
  }

  get url(): string {
    return this.listener?.url ?? '';
  }

  /** What the listener refused so far (metrics). */
  get listenerStats(): Readonly<ListenerStats> | undefined {
    return this.listener?.stats;
  }

  /** Links open on the listener now. */
  get linkCount(): number {
    return this.listener?.links.size ?? 0;
  }

  async start(): Promise<number> {
    const o = this.opts;
    if (o.role === 'primary') {
      const vmm = await Vmm.boot(o.guest, this.vmmOptions());
      // The first rollback point: every page (the data segments were written before the dirty log existed).
      const image = new GuestImage();
      image.apply(await vmm.collect(true));
      this.becomePrimary(vmm, 0, image.epoch, image);
    } else {
      this.becomeSecondary(0);
    }
    this.listener = await listen({
      host: o.host,
      port: o.port,
      token: o.token,
      insecure: o.insecure,
      tls: o.tls,
      maxLinks: o.maxLinks ?? 16,
      limits: LINK_LIMITS,
      identity: () => ({ nodeId: o.nodeId, role: this.role, term: this.term, epoch: this.primary?.core.committedEpoch ?? this.secondary?.committedEpoch ?? 0 }),
      accept: (hello) => this.accept(hello),
      onLink: (link, hello) => this.onLink(link, hello),
    });
    return this.listener.port;
  }

  private accept(hello: Hello): void {
    if (hello.link === 'replication' && hello.guestDigest && Buffer.from(hello.guestDigest).toString('hex') !== this.opts.guest.digest)
      throw new NodeError('FTVM_ERR_GUEST_MISMATCH', `peer ${hello.nodeId} runs guest ${Buffer.from(hello.guestDigest).toString('hex').slice(0, 12)}, this node ${this.opts.guest.digest.slice(0, 12)}`);
    if (hello.link === 'control' && hello.role !== 'cli') throw new NodeError('FTVM_ERR_ROLE', `a node takes control links from the cli only, not from a ${hello.role}`);
    // promote and fence come on the net link: only from a peer that authenticated as the proxy.
    if (hello.link === 'net' && hello.role !== 'proxy') throw new NodeError('FTVM_ERR_ROLE', `a node takes net links from the proxy only, not from a ${hello.role}`);
    if (hello.link === 'replication' && hello.role !== 'primary' && hello.role !== 'secondary')
      throw new NodeError('FTVM_ERR_ROLE', `a node takes replication links from a primary or secondary only, not from a ${hello.role}`);
    if (hello.link !== 'replication' && hello.link !== 'net' && hello.link !== 'control') throw new NodeError('FTVM_ERR_ROLE', `a node does not serve '${hello.link}' links`);
  }

  private onLink(link: Link, hello: Hello): void {
    link.on('error', (e) => this.emit('log', 'warn', 'link error', { peer: hello.nodeId, code: e.code, message: e.message }));
    if (hello.link === 'control') {
      // The operator's requests (ftvm migrate --from this node).
      serveNodeControl(link, this);
      return;
    }
    if (hello.link === 'net') {
      // One proxy at a time: a live proxy link is not displaced by another peer (a stray or
      // duplicate proxy would otherwise cut the real one off and trigger a failover). A link
      // silent for a second is stale (a restarted proxy) and is replaced.
      if ((this.primary ?? this.secondary)?.proxyAlive(1000)) {
        link.close(4010, 'FTVM_ERR_BUSY: a live proxy link exists');
        return;
      }
      this.emit('log', 'info', 'proxy connected', { peer: hello.nodeId });
      if (this.primary) this.primary.attachProxy(link);
      else this.secondary!.attachProxy(link);
      return;
    }
    if (this.primary && hello.role === 'secondary') {
      if (this.primary.hasSecondary) {
        link.close(4010, 'FTVM_ERR_BUSY: this primary already has a secondary');
        return;
      }
      this.primary.attachSecondary(link);
      return;
    }
    if (this.secondary && hello.role === 'primary') {
      this.emit('log', 'info', 'primary connected', { peer: hello.nodeId, term: hello.term });
      this.secondary.attachPrimary(link);
      return;
    }
    link.close(4099, `FTVM_ERR_ROLE: a ${this.role} does not take a replication link from a ${hello.role}`);
  }

  /** The primary's VMM: a disk keeps an undo file so a guest fault rolls it back with memory. */
  private vmmOptions(): VmmOptions {
    const o = this.opts;
    return { eventTimeoutMs: o.eventTimeoutMs, syncEachOutput: o.policy === 'sync-io', disk: o.disk, diskUndo: o.disk !== undefined, earlyCopy: o.earlyCopy };
  }

  private becomePrimary(vmm: Vmm, term: number, startEpoch: number, image: GuestImage, retained?: RetainedOutput): PrimaryRuntime {
    const o = this.opts;
    const rt = new PrimaryRuntime({
      vmm,
      term,
      startEpoch,
      image,
      policy: createPolicy(o.policy, o.policyOptions ?? {}),
      policyName: o.policy,
      onSecondaryLost: o.onSecondaryLoss,
      secondaryTimeoutMs: o.detectionTimeoutMs ?? 1000,
      compression: o.compression,
      retained,
    });
    this.primary = rt;
    this.secondary = null;
    this.role = 'primary';
    rt.on('log', (l, m, f) => this.emit('log', l, m, f));
    // The guest's own log() lines, at the level it gave (unknown levels as info).
    rt.vmm.on('log', (l, m) => this.emit('log', LOG_LEVEL_NAMES[l] ?? 'info', `guest: ${m}`));
    rt.on('protection', (p, reason) =>
      this.emit('log', p ? 'info' : 'warn', p ? 'PROTECTED: the secondary holds every committed epoch' : 'UNPROTECTED: running without a secondary', { reason }),
    );
    rt.on('stopped', (reason, t) => void this.demote(reason, t));
    this.emit('role', 'primary', term);
    this.emit('primary', rt);
    this.dialPeer();
    return rt;
  }

  private becomeSecondary(term: number): SecondaryRuntime {
    const rt = new SecondaryRuntime({
      term,
      primaryTimeoutMs: this.opts.detectionTimeoutMs ?? 1000,
      disk: this.opts.disk,
      prestart: this.opts.readyVcpu === false ? undefined : () => Vmm.prestart(this.opts.guest, 0, this.vmmOptions()),
    });
    const rec = rt.diskRecovery;
    if (rec && rec.action !== 'none')
      this.emit('log', 'warn', rec.action === 'replayed' ? `disk journal: finished the commit of epoch ${rec.epoch} a crash interrupted` : 'disk journal: dropped an epoch a crash left uncommitted', { ...rec });
    this.secondary = rt;
    this.primary = null;
    this.role = 'secondary';
    rt.on('log', (l, m, f) => this.emit('log', l, m, f));
    rt.on('promote', (image, _digest, t, retained, vcpu) => void this.promote(rt, image, t, retained, vcpu));
    this.emit('role', 'secondary', term);
    this.emit('secondary', rt);
    if (this.opts.join) this.dialPeer();
    return rt;
  }

  private async promote(rt: SecondaryRuntime, image: GuestImage, term: number, retained: RetainedOutput, vcpu: Vmm | null): Promise<void> {
    const t0 = performance.now();
    const proxy = rt.detachProxy();
    const devices = image.devices!;
    const offsets = { epoch: image.epoch, maxConnId: devices.maxConnId, conns: devices.conns };
    retained.truncate(new Map(offsets.conns.map((c) => [c.conn, c.outProduced])));
    let vmm: Vmm | null = null;
    if (vcpu) {
      // The vCPU's memory holds the committed image already: it only starts (no copy).
      try {
        await vcpu.restoreInto(image.checkpointMeta(this.opts.guest.digest), { inPlace: true });
        vmm = vcpu;
      } catch (e) {
        this.emit('log', 'warn', 'the ready vCPU did not start: restoring the committed image instead', { message: (e as Error).message });
        void vcpu.stop();
      }
    }
    try {
      // The disk file holds the same committed epoch as the image (the journal commits both together).
      vmm ??= await Vmm.restore(this.opts.guest, image.toCheckpoint(this.opts.guest.digest), this.vmmOptions());
    } catch (e) {
      // The image is not given up for an empty secondary: the node keeps it (inert, its
      // runtime stopped) and the proxy's promote times out; an operator restarts it.
      this.emit('log', 'error', 'promotion failed: the committed image did not restore; the node keeps it and serves no role', { code: 'FTVM_ERR_PROMOTE_RESTORE', message: (e as Error).message });
      proxy?.close(4099, 'promotion failed');
      return;
    }
    // Decision to the promoted guest's first event handled (the first batch's answer).
    const decided = rt.promotedAt ?? t0;
    vmm.once('progress', () => this.emit('log', 'info', 'promoted guest handled its first event', { sinceDecisionMs: Math.round((performance.now() - decided) * 100) / 100, inPlace: vmm === vcpu }));
    const p = this.becomePrimary(vmm, term, image.epoch, image, retained);
    if (proxy) p.attachProxy(proxy, offsets);
    this.emit('log', 'warn', `PROMOTED to primary in term ${term} from epoch ${image.epoch}`, { restoreMs: Math.round((performance.now() - t0) * 10) / 10, inPlace: vmm === vcpu });
  }

  private async demote(reason: string, term: number): Promise<void> {
    const proxy = this.primary?.detachProxy();
    // The proxy re-dials and learns the new role from the status it gets.
    proxy?.close(4000, 'role changed');
    this.emit('log', 'warn', `this node is now a secondary (${reason})`, { term });
    // The new primary dials this node (its peer) to make it its secondary again.
    this.becomeSecondary(term);
  }

  /**
   * Keeps one replication link: a primary dials its peer (to get a secondary), a secondary
   * dials only the primary it was told to --join. Only one side dials, so two links never race.
   */
  private dialPeer(): void {
    if (this.dialing || this.closed || (!this.peerUrl && !this.opts.join)) return;
    this.dialing = true;
    let backoff = 100;
    // A refusal (wrong token, another guest, ...) is logged once per code, not on every retry.
    let lastCode: string | undefined;
    const attempt = async (): Promise<void> => {
      this.dialTimer = null;
      if (this.closed) return;
      const asPrimary = this.role === 'primary';
      const target = asPrimary ? this.peerUrl : this.opts.join;
      const busy = !target || (asPrimary ? this.primary?.hasSecondary : this.secondary?.hasPrimary);
      if (!busy) {
        try {
          const link = await connect(target!, this.replicationConnectOptions(this.term));
          if (this.closed || (this.role === 'primary') !== asPrimary) link.close(4000, 'role changed');
          // A migration attached its target (or moved the peer) while this dial was under way.
          else if (asPrimary && (this.primary?.hasSecondary || target !== this.peerUrl)) link.close(4000, 'secondary attached meanwhile');
          else if (this.primary) this.primary.attachSecondary(link);
          else this.secondary!.attachPrimary(link);
          backoff = 100;
          lastCode = undefined;
        } catch (e) {
          const err = e as { code?: string; message?: string };
          if (err.code !== lastCode) this.emit('log', 'warn', `cannot link to ${asPrimary ? 'the secondary' : 'the primary'} ${target}: retrying`, { code: err.code, message: err.message });
          lastCode = err.code;
          backoff = Math.min(backoff * 2, 2000);
        }
      }
      if (!this.closed) {
        this.dialTimer = setTimeout(() => void attempt(), busy ? 500 : backoff);
        this.dialTimer.unref();
      }
    };
    void attempt();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.dialTimer) clearTimeout(this.dialTimer);
    this.primary?.stop('node closing');
    this.secondary?.stop();
    await this.listener?.close();
  }
}
