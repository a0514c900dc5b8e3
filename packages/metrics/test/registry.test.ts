import { register as globalRegister } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { COMPRESSION_WINDOW, FtvmEvents, MAX_FAULT_CODES, METRIC_NAMES, PAUSE_BUCKETS, createRoleMetrics } from '../src/index.js';
import { startTestRole } from './helpers/role.js';

describe('createRoleMetrics', () => {
  it('registers on a registry of its own, never on prom-client\'s global one', async () => {
    const r = await startTestRole('primary');
    expect(r.metrics.registry).not.toBe(globalRegister);
    expect((await globalRegister.getMetricsAsJSON()).some((m) => m.name.startsWith('ftvm_'))).toBe(false);
    const s = await r.scrape();
    expect(s.types.get('ftvm_epochs_total')).toBe('counter');
  });

  it('exports every documented ftvm_* family, and no undocumented one', async () => {
    const r = await startTestRole('primary');
    const s = await r.scrape();
    const families = [...s.types.keys()].filter((n) => n.startsWith('ftvm_')).sort();
    expect(families).toEqual([...METRIC_NAMES].sort());
  });

  it('includes the default Node process metrics', async () => {
    const r = await startTestRole('proxy');
    const s = await r.scrape();
    expect(s.types.get('process_cpu_seconds_total')).toBe('counter');
    expect(s.types.has('nodejs_eventloop_lag_seconds')).toBe(true);
  });

  it('shows the role as a state set and follows a promotion with its term', async () => {
    const r = await startTestRole('secondary');
    let s = await r.scrape();
    expect(s.value('ftvm_role', { role: 'secondary' })).toBe(1);
    expect(s.value('ftvm_role', { role: 'primary' })).toBe(0);
    expect(s.value('ftvm_term')).toBe(0);
    r.bus.emit('role', { role: 'primary', term: 3 });
    s = await r.scrape();
    expect(s.value('ftvm_role', { role: 'secondary' })).toBe(0);
    expect(s.value('ftvm_role', { role: 'primary' })).toBe(1);
    expect(s.value('ftvm_term')).toBe(3);
  });

  it('counts epochs by policy and observes duration, pause and dirty pages in the right buckets', async () => {
    const r = await startTestRole('primary');
    r.bus.emit('epochEnded', { epoch: 1, policy: 'adaptive', durationMs: 4, pauseMs: 0.3, dirtyPages: 10 });
    r.bus.emit('epochEnded', { epoch: 2, policy: 'adaptive', durationMs: 30, pauseMs: 0.04, dirtyPages: 1000, earlyPages: 900 });
    const s = await r.scrape();
    expect(s.value('ftvm_epochs_total', { policy: 'adaptive' })).toBe(2);
    expect(s.value('ftvm_epochs_total', { policy: 'periodic' })).toBe(0);
    expect(s.value('ftvm_epoch_pause_seconds_count')).toBe(2);
    expect(s.value('ftvm_epoch_pause_seconds_sum')).toBeCloseTo(0.00034, 9);
    // 40 µs lands in the first (50 µs) bucket; 300 µs first fits under 500 µs.
    expect(s.value('ftvm_epoch_pause_seconds_bucket', { le: '0.00005' })).toBe(1);
    expect(s.value('ftvm_epoch_pause_seconds_bucket', { le: '0.00025' })).toBe(1);
    expect(s.value('ftvm_epoch_pause_seconds_bucket', { le: '0.0005' })).toBe(2);
    expect(s.value('ftvm_epoch_duration_seconds_bucket', { le: '0.005' })).toBe(1);
    expect(s.value('ftvm_epoch_duration_seconds_bucket', { le: '0.05' })).toBe(2);
    expect(s.value('ftvm_epoch_dirty_pages_bucket', { le: '16' })).toBe(1);
    expect(s.value('ftvm_epoch_dirty_pages_bucket', { le: '1024' })).toBe(2);
    expect(s.value('ftvm_epoch_early_copied_pages_total')).toBe(900);
  });

  it('counts the proxy\'s commits by the node that sent them, and refuses an unknown source', async () => {
    const r = await startTestRole('proxy');
    r.bus.emit('committed', { epoch: 1, source: 'secondary' });
    r.bus.emit('committed', { epoch: 2, source: 'secondary' });
    r.bus.emit('committed', { epoch: 3, source: 'primary' });
    r.bus.emit('committed', { epoch: 4, source: 'tertiary' as 'primary' });
    const s = await r.scrape();
    expect(s.value('ftvm_proxy_commits_total', { source: 'secondary' })).toBe(2);
    expect(s.value('ftvm_proxy_commits_total', { source: 'primary' })).toBe(1);
    expect(s.value('ftvm_committed_epoch')).toBe(3);
    expect(s.value('ftvm_metrics_invalid_events_total', { event: 'committed' })).toBe(1);
  });

  it('counts replicated disk blocks and their wire bytes, and observes secondary disk commits', async () => {
    const r = await startTestRole('primary');
    r.bus.emit('checkpointSent', { epoch: 1, wireBytes: 100, rawBytes: 4096, diskBlocks: 3, diskWireBytes: 700 });
    r.bus.emit('checkpointSent', { epoch: 2, wireBytes: 100, rawBytes: 4096 });
    r.bus.emit('diskCommitted', { epoch: 1, blocks: 3, durationMs: 4 });
    r.bus.emit('diskCommitted', { epoch: 2, blocks: -1, durationMs: 4 });
    const s = await r.scrape();
    expect(s.value('ftvm_disk_blocks_replicated_total')).toBe(3);
    expect(s.value('ftvm_disk_replication_wire_bytes_total')).toBe(700);
    expect(s.value('ftvm_disk_commits_total')).toBe(1);
    expect(s.value('ftvm_disk_commit_seconds_bucket', { le: '0.005' })).toBe(1);
    expect(s.value('ftvm_metrics_invalid_events_total', { event: 'diskCommitted' })).toBe(1);
  });

  it('uses pause buckets from 50 µs to 1 s and delay buckets from 0.1 ms to 5 s', async () => {
    const r = await startTestRole('primary');
    const s = await r.scrape();
    const les = (name: string): string[] => s.samples.filter((x) => x.name === name).map((x) => x.labels.le!);
    expect(les('ftvm_epoch_pause_seconds_bucket')).toEqual([...PAUSE_BUCKETS.map((b) => b.toFixed(5).replace(/0+$/, '').replace(/\.$/, '')), '+Inf']);
    expect(Number(les('ftvm_epoch_pause_seconds_bucket')[0])).toBe(50e-6);
    expect(les('ftvm_output_delay_seconds_bucket').slice(0, 1)).toEqual(['0.0001']);
    expect(les('ftvm_output_delay_seconds_bucket').slice(-2)).toEqual(['5', '+Inf']);
    expect(les('ftvm_checkpoint_ack_latency_seconds_bucket').slice(-2)).toEqual(['5', '+Inf']);
  });

  it('adds wire and raw bytes, per-codec pages and bytes, and ack latency', async () => {
    const r = await startTestRole('primary');
    r.bus.emit('checkpointSent', {
      epoch: 1, wireBytes: 5000, rawBytes: 16384,
      byCodec: { ZERO: { pages: 2, bytes: 0 }, XOR_LZ4: { pages: 1, bytes: 700 }, RAW: { pages: 1, bytes: 4096 } },
    });
    r.bus.emit('checkpointSent', { epoch: 2, wireBytes: 1000, rawBytes: 4096, byCodec: { LZ4: { pages: 1, bytes: 950 } } });
    r.bus.emit('checkpointAcked', { epoch: 1, ackLatencyMs: 2 });
    r.bus.emit('inFlight', { epochs: 1, bytes: 1000 });
    const s = await r.scrape();
    expect(s.value('ftvm_replication_wire_bytes_total')).toBe(6000);
    expect(s.value('ftvm_replication_raw_bytes_total')).toBe(20480);
    expect(s.value('ftvm_replication_pages_total', { codec: 'ZERO' })).toBe(2);
    expect(s.value('ftvm_replication_codec_bytes_total', { codec: 'XOR_LZ4' })).toBe(700);
    expect(s.value('ftvm_replication_codec_bytes_total', { codec: 'LZ4' })).toBe(950);
    expect(s.sum('ftvm_replication_pages_total')).toBe(5);
    expect(s.value('ftvm_replication_compression_ratio')).toBeCloseTo(20480 / 6000, 9);
    expect(s.value('ftvm_checkpoints_sent_total')).toBe(2);
    expect(s.value('ftvm_checkpoints_acked_total')).toBe(1);
    expect(s.value('ftvm_checkpoint_ack_latency_seconds_bucket', { le: '0.0025' })).toBe(1);
    expect(s.value('ftvm_checkpoint_ack_latency_seconds_bucket', { le: '0.001' })).toBe(0);
    expect(s.value('ftvm_inflight_epochs')).toBe(1);
    expect(s.value('ftvm_inflight_bytes')).toBe(1000);
  });

  it('computes the compression ratio over the last checkpoints only', async () => {
    const r = await startTestRole('primary');
    r.bus.emit('checkpointSent', { epoch: 0, wireBytes: 1000, rawBytes: 1000 });
    for (let e = 1; e <= COMPRESSION_WINDOW; e++) r.bus.emit('checkpointSent', { epoch: e, wireBytes: 100, rawBytes: 400 });
    const s = await r.scrape();
    expect(s.value('ftvm_replication_compression_ratio')).toBeCloseTo(4, 9);
  });

  it('tracks held output as a level, released output and its delay, and replayed input', async () => {
    const r = await startTestRole('proxy');
    r.bus.emit('outputHeld', { bytes: 300, conns: 2 });
    r.bus.emit('outputReleased', { bytes: 200, delayMs: 0.5 });
    r.bus.emit('outputReleased', { bytes: 100, delayMs: 40 });
    r.bus.emit('outputHeld', { bytes: 0, conns: 0 });
    r.bus.emit('inputReplayed', { bytes: 77 });
    const s = await r.scrape();
    expect(s.value('ftvm_output_held_bytes')).toBe(0);
    expect(s.value('ftvm_output_held_connections')).toBe(0);
    expect(s.value('ftvm_output_released_bytes_total')).toBe(300);
    expect(s.value('ftvm_output_delay_seconds_count')).toBe(2);
    expect(s.value('ftvm_output_delay_seconds_bucket', { le: '0.0005' })).toBe(1);
    expect(s.value('ftvm_output_delay_seconds_bucket', { le: '0.05' })).toBe(2);
    expect(s.value('ftvm_input_replayed_bytes_total')).toBe(77);
  });

  it('records failovers, the last failover duration and raises the term', async () => {
    const r = await startTestRole('proxy');
    const before = Date.now() / 1000;
    r.bus.emit('failover', { durationMs: 850, term: 4 });
    const s = await r.scrape();
    expect(s.value('ftvm_failovers_total')).toBe(1);
    expect(s.value('ftvm_last_failover_duration_seconds')).toBeCloseTo(0.85, 9);
    expect(s.value('ftvm_last_failover_timestamp_seconds')).toBeGreaterThanOrEqual(Math.floor(before));
    expect(s.value('ftvm_term')).toBe(4);
  });

  it('exports signed clock drift in seconds from bigint or number nanoseconds', async () => {
    const r = await startTestRole('secondary');
    r.bus.emit('clockDrift', { driftNs: -2_500_000n, mode: 'slew' });
    expect((await r.scrape()).value('ftvm_clock_drift_seconds')).toBeCloseTo(-0.0025, 12);
    r.bus.emit('clockDrift', { driftNs: 1_000_000_000, mode: 'step' });
    expect((await r.scrape()).value('ftvm_clock_drift_seconds')).toBe(1);
    expect(r.metrics.state.clockMode).toBe('step');
  });

  it('counts guest faults by code and folds codes past the cardinality bound into OTHER', async () => {
    const r = await startTestRole('run');
    r.bus.emit('guestFault', { code: 'FTVM_ERR_GUEST_TRAP' });
    r.bus.emit('guestFault', { code: 'FTVM_ERR_GUEST_TRAP' });
    for (let i = 0; i < MAX_FAULT_CODES + 5; i++) r.bus.emit('guestFault', { code: `FTVM_ERR_X${i}` });
    const s = await r.scrape();
    expect(s.value('ftvm_guest_faults_total', { code: 'FTVM_ERR_GUEST_TRAP' })).toBe(2);
    const codes = new Set(s.samples.filter((x) => x.name === 'ftvm_guest_faults_total').map((x) => x.labels.code));
    expect(codes.size).toBe(MAX_FAULT_CODES + 1);
    expect(s.value('ftvm_guest_faults_total', { code: 'OTHER' })).toBe(6);
    expect(s.sum('ftvm_guest_faults_total')).toBe(MAX_FAULT_CODES + 7);
  });

  it('shows task progress as done, total and ratio, dropping the series of a unit no longer used', async () => {
    const r = await startTestRole('primary');
    r.bus.emit('progress', { task: 'migration', done: 100, total: 400, unit: 'pages' });
    let s = await r.scrape();
    expect(s.value('ftvm_task_progress_ratio', { task: 'migration' })).toBe(0.25);
    expect(s.value('ftvm_task_done', { task: 'migration', unit: 'pages' })).toBe(100);
    r.bus.emit('progress', { task: 'migration', done: 5, total: 10, unit: 'blocks' });
    s = await r.scrape();
    expect(s.value('ftvm_task_done', { task: 'migration', unit: 'pages' })).toBeUndefined();
    expect(s.value('ftvm_task_total', { task: 'migration', unit: 'blocks' })).toBe(10);
    expect(s.value('ftvm_task_progress_ratio', { task: 'migration' })).toBe(0.5);
  });

  it('moves protection, readiness, commit, clients, links, scrub and throttle series', async () => {
    const r = await startTestRole('primary');
    r.bus.emit('protection', { protected: true, reason: 'secondary synced' });
    r.bus.emit('ready', { ready: true, reason: 'serving' });
    r.bus.emit('committed', { epoch: 9 });
    r.bus.emit('committed', { epoch: 8 });
    r.bus.emit('clients', { connected: 5 });
    r.bus.emit('link', { peer: 'secondary', up: true });
    r.bus.emit('scrub', { pagesChecked: 64, mismatches: 0 });
    r.bus.emit('scrub', { pagesChecked: 64, mismatches: 1 });
    r.bus.emit('checkpointRejected', { epoch: 3, reason: 'digest' });
    r.bus.emit('throttle', { ratio: 0.25 });
    const s = await r.scrape();
    expect(s.value('ftvm_protected')).toBe(1);
    expect(s.value('ftvm_ready')).toBe(1);
    expect(s.value('ftvm_committed_epoch')).toBe(9);
    expect(s.value('ftvm_client_connections')).toBe(5);
    expect(s.value('ftvm_link_up', { peer: 'secondary' })).toBe(1);
    expect(s.value('ftvm_scrub_pages_total')).toBe(128);
    expect(s.value('ftvm_scrub_mismatches_total')).toBe(1);
    expect(s.value('ftvm_checkpoints_rejected_total')).toBe(1);
    expect(s.value('ftvm_vcpu_throttle_ratio')).toBe(0.25);
  });

  it('lets the committed epoch restart after a role change (a promoted or re-synced node)', async () => {
    const r = await startTestRole('secondary');
    r.bus.emit('committed', { epoch: 50 });
    r.bus.emit('role', { role: 'primary', term: 1 });
    r.bus.emit('committed', { epoch: 1 });
    expect((await r.scrape()).value('ftvm_committed_epoch')).toBe(1);
  });

  it('drops malformed events, counts them, and leaves the series untouched', async () => {
    const r = await startTestRole('primary');
    const bad = r.bus as unknown as { emit(e: string, p: unknown): void };
    bad.emit('epochEnded', { epoch: 1, policy: 'adaptive', durationMs: NaN, pauseMs: 1, dirtyPages: 1 });
    bad.emit('epochEnded', { epoch: 1, policy: 'bogus', durationMs: 1, pauseMs: 1, dirtyPages: 1 });
    bad.emit('checkpointSent', { epoch: 1, wireBytes: -1, rawBytes: 1 });
    bad.emit('checkpointSent', { epoch: 1, wireBytes: 1, rawBytes: 1, byCodec: { GZIP: { pages: 1, bytes: 1 } } });
    bad.emit('guestFault', { code: 'lower case\nnewline' });
    bad.emit('throttle', { ratio: 2 });
    bad.emit('committed', null);
    const s = await r.scrape();
    expect(s.sum('ftvm_epochs_total')).toBe(0);
    expect(s.value('ftvm_replication_wire_bytes_total')).toBe(0);
    expect(s.sum('ftvm_guest_faults_total')).toBe(0);
    expect(s.value('ftvm_metrics_invalid_events_total', { event: 'epochEnded' })).toBe(2);
    expect(s.value('ftvm_metrics_invalid_events_total', { event: 'checkpointSent' })).toBe(2);
    expect(r.metrics.invalidEvents).toBe(7);
  });

  it('stops following the bus after close()', () => {
    const bus = new FtvmEvents();
    const m = createRoleMetrics('primary', bus, { defaultMetrics: false, status: { autoStart: false } });
    expect(bus.listenerCount('committed')).toBe(1);
    m.close();
    m.close();
    expect(bus.listenerCount('committed')).toBe(0);
    bus.emit('committed', { epoch: 4 });
    expect(m.state.committedEpoch).toBeNull();
  });

  it('rejects an unknown role with FTVM_ERR_INVALID_OPTION', () => {
    expect(() => createRoleMetrics('leader' as 'primary', new FtvmEvents())).toThrow(expect.objectContaining({ code: 'FTVM_ERR_INVALID_OPTION' }));
  });

  it('keeps two roles in one process apart', async () => {
    const a = await startTestRole('primary');
    const b = await startTestRole('secondary');
    a.bus.emit('epochEnded', { epoch: 1, policy: 'periodic', durationMs: 25, pauseMs: 1, dirtyPages: 3 });
    expect((await a.scrape()).value('ftvm_epochs_total', { policy: 'periodic' })).toBe(1);
    expect((await b.scrape()).value('ftvm_epochs_total', { policy: 'periodic' })).toBe(0);
  });
});
