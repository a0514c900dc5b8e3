import { SHIPPED_GUESTS } from '@ftvm/guest-abi';
import { NodeHost, bridgeNodeMetrics, type NodeRole } from '@ftvm/node';
import { FtvmEvents, createRoleMetrics, registerSecurityMetrics, startMetricsServer, type MetricsServer, type PolicyName } from '@ftvm/metrics';
import { CLOCK_DEFAULTS, CLOCK_MODES, type ClockMode } from '@ftvm/clock';
import { DISK_BLOCK_BYTES, MAX_DISK_BYTES, VCPU_SCHEDS, prepareDisk, prepareGuest, readGuest, setDefaultClockOptions, setDefaultVcpuSched, type DiskSpec, type ResolvedClockOptions, type VcpuSched } from '@ftvm/vmm';
import { hostPort, int, oneOf, size, type FlagTable } from '../flags.js';
import { Logger, type Level } from '../logger.js';
import { CliError } from '../errors.js';
import { credentialFlags, credentials } from '../credentials.js';

/**
 * The clock device's flags (ftvm run, primary, secondary; up passes the first three on).
 * They map 1:1 onto the compensator's options; the last two are test and drill hooks.
 */
export const clockFlags: FlagTable = {
  'clock-mode': { type: 'string', default: CLOCK_DEFAULTS.mode, parse: oneOf(...CLOCK_MODES), help: 'guest time across pauses and failover: freeze (stops while paused: drifts), step (jumps to the reference on resume), slew (bounded rate change, never backwards)' },
  'clock-max-slew-ppm': { type: 'string', default: CLOCK_DEFAULTS.maxSlewPpm, parse: int(1, 500_000), help: 'largest rate change used to absorb a lag, ppm' },
  'clock-step-threshold-ms': { type: 'string', default: CLOCK_DEFAULTS.stepThresholdMs, parse: int(0, 86_400_000), help: 'slew mode: a larger lag is stepped forward instead' },
  'clock-skew-ms': { type: 'string', default: 0, parse: int(-86_400_000, 86_400_000), help: 'testing/drills only: run this process as if its host clock were off by this many ms (negative: behind; write --clock-skew-ms=-2000)' },
  'clock-rate-ppm': { type: 'string', default: 0, parse: int(-100_000, 100_000), help: 'testing/drills only: run this process as if its host clock ran this many ppm fast' },
};

/** Sets the clock of every VMM this process will create from the clock flags. */
export function applyClockFlags(f: Record<string, unknown>): ResolvedClockOptions {
  return setDefaultClockOptions({
    mode: f['clock-mode'] as ClockMode,
    maxSlewPpm: f['clock-max-slew-ppm'] as number,
    stepThresholdMs: f['clock-step-threshold-ms'] as number,
    skew: { offsetNs: BigInt(f['clock-skew-ms'] as number) * 1_000_000n, ratePpm: f['clock-rate-ppm'] as number },
  });
}

/** The vCPU thread's scheduling class (ftvm run, primary, secondary, receive, restore; up passes it on). */
export const vcpuFlags: FlagTable = {
  'vcpu-sched': { type: 'string', default: 'normal', parse: oneOf(...VCPU_SCHEDS), help: 'vCPU thread scheduling: normal, or fifo (SCHED_FIFO priority 1: no other process stretches a checkpoint hold; needs root and a core to spare)' },
};

/** Sets the vCPU scheduling class of every VMM this process will create from --vcpu-sched. */
export function applyVcpuFlags(f: Record<string, unknown>): void {
  setDefaultVcpuSched(f['vcpu-sched'] as VcpuSched);
}

/** The virtual disk's flags (ftvm run, primary, secondary; up gives each node its own file). */
export const diskFlags: FlagTable = {
  disk: { type: 'string', help: 'file backing the guest\'s virtual disk (4 KiB blocks); created with --disk-size, reopened as it is' },
  'disk-size': { type: 'string', parse: size(DISK_BLOCK_BYTES, MAX_DISK_BYTES, DISK_BLOCK_BYTES), help: 'disk size, e.g. 64M or 1G: creates or extends the file (never shrinks it)' },
};

/** The disk the flags name (created or extended), or undefined without --disk. */
export function diskFromFlags(f: Record<string, unknown>): DiskSpec | undefined {
  const path = f.disk as string | undefined;
  if (path === undefined) {
    if (f['disk-size'] !== undefined) throw new CliError('FTVM_ERR_CLI_BAD_VALUE', '--disk-size needs --disk <file>');
    return undefined;
  }
  return prepareDisk(path, f['disk-size'] as number | undefined);
}

/** Flags every node command takes (ftvm primary, ftvm secondary). */
export const nodeFlags: FlagTable = {
  listen: { type: 'string', required: true, parse: hostPort, help: 'host:port this node listens on for every link (proxy, replication)' },
  guest: { type: 'string', default: 'kv', help: `shipped guest (${SHIPPED_GUESTS.join(', ')}) or path to a .wasm module (both nodes run the same one)` },
  'node-id': { type: 'string', help: 'name of this node in logs and handshakes (default: the listen address)' },
  ...credentialFlags,
  'max-links': { type: 'string', default: 16, parse: int(1, 4096), help: 'links this node\'s listener serves at once (proxy, replication, control); more are refused' },
  policy: { type: 'string', default: 'adaptive', parse: oneOf('adaptive', 'periodic', 'sync-io'), help: 'epoch policy' },
  'interval-ms': { type: 'string', parse: int(1, 60_000), help: 'epoch interval for --policy periodic (default 25), max interval for adaptive (default 50)' },
  'min-gap-ms': { type: 'string', parse: int(0, 1000), help: 'adaptive: least time between two epoch ends; output sooner joins the next epoch (default 1)' },
  'group-commit': { type: 'string', parse: oneOf('on', 'off'), help: 'adaptive: while a checkpoint awaits its ack, output gathers into one epoch (default off)' },
  'on-secondary-loss': { type: 'string', default: 'continue', parse: oneOf('continue', 'block'), help: 'primary without a secondary: go on unprotected, or hold output' },
  'detection-timeout-ms': { type: 'string', default: 1000, parse: int(10, 600_000), help: 'silence after which the peer is lost' },
  compression: { type: 'string', default: 'on', parse: oneOf('on', 'off'), help: 'XOR-delta/LZ4 page encoding on the wire' },
  'event-timeout-ms': { type: 'string', default: 2000, parse: int(1, 3_600_000), help: 'a guest event running longer is a fault' },
  'early-copy': { type: 'string', default: 'on', parse: oneOf('on', 'off'), help: 'copy dirty pages between events so the epoch hold copies only the rest' },
  'metrics-port': { type: 'string', parse: int(0, 65535), help: 'port for /metrics, /healthz, /readyz and the status page' },
  'metrics-host': { type: 'string', default: '127.0.0.1', help: 'address the metrics server listens on (not the --listen host: metrics are unauthenticated)' },
  'log-level': { type: 'string', default: 'info', parse: oneOf('error', 'warn', 'info', 'debug'), help: 'log level' },
  ...clockFlags,
  ...vcpuFlags,
  ...diskFlags,
};

export async function runNode(role: NodeRole, f: Record<string, unknown>, extra: { peer?: string; join?: string }): Promise<number> {
  const log = new Logger(role, f['log-level'] as Level);
  const listen = f.listen as { host: string; port: number };
  const creds = credentials(f, log);
  const { name, wasm } = readGuest(f.guest as string);
  const guest = prepareGuest(name, wasm);
  for (const w of guest.warnings) log.warn(w);
  const clock = applyClockFlags(f);
  applyVcpuFlags(f);
  if (clock.skew.offsetNs !== 0n || clock.skew.ratePpm !== 0)
    log.warn('testing: this process runs on a skewed host clock', { skewMs: Number(clock.skew.offsetNs / 1_000_000n), ratePpm: clock.skew.ratePpm });
  const policy = f.policy as string;
  const interval = f['interval-ms'] as number | undefined;
  const minGap = f['min-gap-ms'] as number | undefined;
  if (minGap !== undefined && policy !== 'adaptive') throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--min-gap-ms applies to --policy adaptive, not ${policy}`);
  const groupCommit = f['group-commit'] as string | undefined;
  if (groupCommit !== undefined && policy !== 'adaptive') throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--group-commit applies to --policy adaptive, not ${policy}`);
  const policyOptions: Record<string, number | boolean> = interval === undefined ? {} : policy === 'periodic' ? { intervalMs: interval } : policy === 'adaptive' ? { maxIntervalMs: interval } : {};
  if (minGap !== undefined) policyOptions.minGapMs = minGap;
  if (groupCommit !== undefined) policyOptions.groupCommit = groupCommit === 'on';
  const disk = diskFromFlags(f);
  if (disk) log.info('disk', { file: disk.path, blocks: disk.blocks, bytes: disk.blocks * 4096 });
  const node = new NodeHost({
    nodeId: (f['node-id'] as string | undefined) ?? `${listen.host}:${listen.port}`,
    host: listen.host,
    port: listen.port,
    ...creds,
    maxLinks: f['max-links'] as number,
    guest,
    role,
    peer: extra.peer,
    join: extra.join,
    policy,
    policyOptions,
    onSecondaryLoss: f['on-secondary-loss'] as 'continue' | 'block',
    compression: f.compression === 'on',
    eventTimeoutMs: f['event-timeout-ms'] as number,
    earlyCopy: f['early-copy'] === 'on',
    detectionTimeoutMs: f['detection-timeout-ms'] as number,
    disk,
  });
  node.on('log', (l, m, fields) => log.log(l, m, fields));
  let metrics: MetricsServer | null = null;
  if (f['metrics-port'] !== undefined) {
    const bus = new FtvmEvents({ name: role });
    // Registered before start so the first role and protection events are counted.
    const roleMetrics = createRoleMetrics(role, bus);
    bridgeNodeMetrics(node, bus, policy as PolicyName);
    registerSecurityMetrics(roleMetrics.registry, { insecure: creds.insecure, listener: () => node.listenerStats && { links: node.linkCount, ...node.listenerStats } });
    metrics = await startMetricsServer({ port: f['metrics-port'] as number, host: f['metrics-host'] as string, metrics: roleMetrics });
    log.info('metrics', { url: `${metrics.url}/metrics`, status: `${metrics.url}/` });
  }
  node.on('role', (r, term) => {
    log.setRole(r);
    log.info(`role: ${r}`, { term });
    process.stdout.write(`ftvm ${role}: role ${r} term ${term}\n`);
  });
  const port = await node.start();
  log.info(`listening`, { listen: `${listen.host}:${port}`, guest: name, policy, clock: clock.mode });
  process.stdout.write(`ftvm ${role}: listening on ${listen.host}:${port}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await node.close();
  await metrics?.close();
  return 0;
}

