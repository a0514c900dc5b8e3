import { describe, expect, it } from 'vitest';
import { runPrecopy, type PrecopySink } from '../src/engine.js';
import { MpRule, PlainRule } from '../src/stop-rules.js';
import { ThrottleController } from '../src/throttle.js';
import { ManualClock, SimGuest, SimSink } from './sim.js';

const MEM = 64 * 256; // 64 MiB of 4 KiB pages
/** 100 MB/s: 100_000 bytes per ms. */
const LINK = 100_000;

function setup(ws: number, rate: number, pattern: 'random' | 'hot' = 'random') {
  const clock = new ManualClock();
  const guest = new SimGuest(clock, { memPages: MEM, firstPage: 256, wsPages: ws, rate, pattern });
  const sink = new SimSink(clock, MEM, LINK);
  return { clock, guest, sink };
}

describe('pre-copy engine on a simulated guest', () => {
  it('moves an idle guest in one round and an empty stop-and-copy, with the destination equal to the source', async () => {
    for (const stopRule of ['plain', 'mp'] as const) {
      const { clock, guest, sink } = setup(1000, 0);
      const r = await runPrecopy(guest, sink, { stopRule }, clock);
      expect(r.ok).toBe(true);
      expect(r.reason).toBe('fits');
      expect(r.rounds).toBe(1);
      expect(r.finalPages).toBe(0);
      expect(r.pagesSent).toBe(MEM - 256);
      expect(sink.committed).toBe(true);
      expect(sink.version).toEqual(guest.version);
    }
  });

  it('plain gives up on a write-heavy guest after maxRounds and leaves it running', async () => {
    const { clock, guest, sink } = setup(8000, 40_000);
    const r = await runPrecopy(guest, sink, { stopRule: 'plain', downtimeLimitMs: 100, maxRounds: 10 }, clock);
    expect(r.ok).toBe(false);
    expect(r.error?.code).toBe('FTVM_ERR_PRECOPY_NO_CONVERGENCE');
    expect(r.rounds).toBe(10);
    expect(sink.aborted).not.toBeNull();
    expect(sink.committed).toBe(false);
    expect(guest.held).toBe(false);
    expect(guest.tracking).toBe(false);
  });

  it('mp stops early on the same write-heavy guest, completes, and the destination equals the source', async () => {
    const { clock, guest, sink } = setup(8000, 40_000);
    const r = await runPrecopy(guest, sink, { stopRule: 'mp', downtimeLimitMs: 100, maxRounds: 10 }, clock);
    expect(r.ok).toBe(true);
    expect(r.reason).toBe('pattern');
    expect(r.rounds).toBeLessThanOrEqual(4);
    expect(r.downtimeMs).toBeGreaterThan(100);
    expect(guest.held).toBe(true);
    expect(sink.version).toEqual(guest.version);
  });

  it('mp sends fewer bytes in less time than plain with a relaxed downtime limit that lets plain finish at max rounds', async () => {
    const a = setup(8000, 40_000);
    const plain = await runPrecopy(a.guest, a.sink, { stopRule: 'plain', downtimeLimitMs: 100, maxRounds: 30 }, a.clock);
    const b = setup(8000, 40_000);
    const mp = await runPrecopy(b.guest, b.sink, { stopRule: 'mp', downtimeLimitMs: 100, maxRounds: 30 }, b.clock);
    expect(plain.ok).toBe(false);
    expect(mp.ok).toBe(true);
    expect(mp.wireBytes).toBeLessThan(plain.wireBytes * 0.7);
    expect(mp.totalMs).toBeLessThan(plain.totalMs * 0.7);
  });

  it('a small working set converges under plain: the dirty set shrinks to the limit', async () => {
    const { clock, guest, sink } = setup(200, 20_000);
    const r = await runPrecopy(guest, sink, { stopRule: 'plain', downtimeLimitMs: 20 }, clock);
    expect(r.ok).toBe(true);
    expect(r.reason).toBe('fits');
    expect(r.downtimeMs).toBeLessThan(20 + 1);
    expect(sink.version).toEqual(guest.version);
  });

  it('paces rounds to the bandwidth limit', async () => {
    const { clock, guest, sink } = setup(100, 0);
    const limit = 20_000_000; // 20 MB/s, below the 100 MB/s link
    const r = await runPrecopy(guest, sink, { stopRule: 'plain', bandwidthLimit: limit }, clock);
    expect(r.ok).toBe(true);
    const expectMs = (r.wireBytes / limit) * 1000;
    expect(r.totalMs).toBeGreaterThanOrEqual(expectMs * 0.99);
    expect(r.totalMs).toBeLessThan(expectMs * 1.1);
  });

  it('throttle auto steps the dispatch delay up while the guest outruns the rounds, reports it, and lifts it at the end', async () => {
    const { clock, guest, sink } = setup(8000, 40_000);
    const r = await runPrecopy(guest, sink, { stopRule: 'plain', throttle: 'auto', downtimeLimitMs: 100, maxRounds: 40 }, clock);
    expect(r.maxThrottleMs).toBeGreaterThan(0);
    expect(r.roundStats.some((s) => s.throttleMs > 0)).toBe(true);
    expect(guest.throttleCalls.at(-1)).toBe(0);
    // Throttled hard enough, plain converges where it failed unthrottled.
    expect(r.ok).toBe(true);
    expect(sink.version).toEqual(guest.version);
  });

  it('stop-the-world sends every page with the vCPU held and no rounds', async () => {
    const { clock, guest, sink } = setup(8000, 40_000);
    const r = await runPrecopy(guest, sink, { live: false }, clock);
    expect(r.ok).toBe(true);
    expect(r.rounds).toBe(0);
    expect(r.finalPages).toBe(MEM - 256);
    expect(r.downtimeMs).toBeCloseTo(r.totalMs, 5);
    expect(sink.rounds).toEqual([{ round: 0, pages: MEM - 256, final: true }]);
    expect(sink.version).toEqual(guest.version);
  });

  it('a destination failing mid-stop-and-copy fails the run and resumes the guest', async () => {
    const { clock, guest, sink } = setup(100, 1000);
    const failing: PrecopySink = {
      ...sink,
      beginRound: sink.beginRound.bind(sink),
      endRound: sink.endRound.bind(sink),
      abort: sink.abort.bind(sink),
      pages: async (p, d) => {
        if (guest.held) throw Object.assign(new Error('link lost'), { code: 'FTVM_ERR_LINK_CLOSED' });
        return sink.pages(p, d);
      },
      commit: sink.commit.bind(sink),
    };
    const r = await runPrecopy(guest, failing, { stopRule: 'mp' }, clock);
    expect(r.ok).toBe(false);
    expect(r.error?.code).toBe('FTVM_ERR_LINK_CLOSED');
    expect(guest.held).toBe(false);
    expect(sink.committed).toBe(false);
  });

  it('reports progress with rounds, pages left and throttle', async () => {
    const { clock, guest, sink } = setup(2000, 10_000);
    const seen: string[] = [];
    await runPrecopy(guest, sink, { stopRule: 'mp', onProgress: (p) => seen.push(p.phase) }, clock);
    expect(seen[0]).toBe('round');
    expect(seen).toContain('stop-and-copy');
    expect(seen.at(-1)).toBe('done');
  });
});

describe('stop rules', () => {
  const pages = (from: number, n: number) => Uint32Array.from({ length: n }, (_, i) => from + i);

  it('plain stops when the remainder fits the limit and fails at maxRounds', () => {
    const rule = new PlainRule({ downtimeLimitMs: 100, maxRounds: 3 });
    // 1000 pages x 4096 B at 100 KB/ms = 41 ms.
    expect(rule.decide({ round: 0, dirty: pages(0, 1000), bytesPerMs: 100_000, bytesPerPage: 4096 })).toMatchObject({ action: 'stop', reason: 'fits' });
    expect(rule.decide({ round: 1, dirty: pages(0, 5000), bytesPerMs: 100_000, bytesPerPage: 4096 })).toMatchObject({ action: 'continue' });
    expect(rule.decide({ round: 2, dirty: pages(0, 5000), bytesPerMs: 100_000, bytesPerPage: 4096 })).toMatchObject({ action: 'fail', reason: 'max-rounds' });
  });

  it('mp stops when the same regions come back and the dirty set stops shrinking', () => {
    const rule = new MpRule({ downtimeLimitMs: 10, regionPages: 64 });
    const r = { bytesPerMs: 100_000, bytesPerPage: 4096 };
    expect(rule.decide({ round: 0, dirty: pages(1000, 5000), ...r }).action).toBe('continue');
    expect(rule.decide({ round: 1, dirty: pages(1000, 4800), ...r })).toMatchObject({ action: 'stop', reason: 'pattern' });
    expect(rule.lastHotFraction).toBe(1);
  });

  it('mp keeps iterating while the dirty set moves to new regions or shrinks fast', () => {
    const rule = new MpRule({ downtimeLimitMs: 10, regionPages: 64 });
    const r = { bytesPerMs: 100_000, bytesPerPage: 4096 };
    rule.decide({ round: 0, dirty: pages(0, 5000), ...r });
    expect(rule.decide({ round: 1, dirty: pages(100_000, 5000), ...r }).action).toBe('continue');
    expect(rule.decide({ round: 2, dirty: pages(100_000, 2000), ...r }).action).toBe('continue');
  });

  it('refuses nonsense options with a coded error naming the option', () => {
    expect(() => new PlainRule({ maxRounds: 0 })).toThrow(/maxRounds/);
    expect(() => new MpRule({ hotFraction: 2 })).toThrow(/hotFraction/);
    expect(() => new ThrottleController({ mode: 'max' as 'auto' })).toThrow(/throttle must be one of/);
    for (const bad of [() => new PlainRule({ maxRounds: 0 }), () => new MpRule({ hotFraction: 2 }), () => new ThrottleController({ mode: 'max' as 'auto' })])
      expect(bad).toThrow(expect.objectContaining({ code: 'FTVM_ERR_PRECOPY_OPTION' }));
  });

  it('the throttle steps up after triggerRounds consecutive outrun rounds, and never when off', () => {
    const t = new ThrottleController({ mode: 'auto', triggerRounds: 2 });
    expect(t.afterRound(0, 100, 100)).toBe(0);
    expect(t.afterRound(1, 100, 10)).toBe(0);
    expect(t.afterRound(2, 100, 60)).toBe(0);
    expect(t.afterRound(3, 100, 60)).toBe(10);
    expect(t.afterRound(4, 100, 10)).toBe(10);
    const d = new ThrottleController({ mode: 'auto' });
    expect(d.afterRound(0, 100, 60)).toBe(10);
    expect(d.afterRound(1, 100, 60)).toBe(25);
    expect(new ThrottleController({ mode: 'off' }).afterRound(5, 1, 100)).toBe(0);
  });

  it('with throttle auto, mp throttles the guest before it settles for a long stop-and-copy, and the remainder shrinks', async () => {
    const run = async (throttle: 'auto' | 'off') => {
      const clock = new ManualClock();
      const guest = new SimGuest(clock, { memPages: MEM, firstPage: 256, wsPages: 8000, rate: 40_000 });
      const sink = new SimSink(clock, MEM, LINK);
      const r = await runPrecopy(guest, sink, { stopRule: 'mp', throttle, downtimeLimitMs: 100 }, clock);
      expect(sink.version).toEqual(guest.version);
      return r;
    };
    const off = await run('off');
    const auto = await run('auto');
    expect(off.ok && auto.ok).toBe(true);
    expect(auto.maxThrottleMs).toBeGreaterThan(0);
    expect(auto.finalPages).toBeLessThan(off.finalPages / 2);
    expect(auto.downtimeMs).toBeLessThan(off.downtimeMs / 2);
  });
});
