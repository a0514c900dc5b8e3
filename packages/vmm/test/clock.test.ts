import { afterEach, describe, expect, it } from 'vitest';
import { PVCLOCK } from '@ftvm/guest-abi';
import { Vmm, checkpointDigest, prepareGuest, readGuest, resolveClockOptions, type VmmClockOptions } from '@ftvm/vmm';

/**
 * The clock device in the VMM: the compensator runs in the vCPU thread, every hold
 * (collect, pause) is a compensator pause, and a restore continues guest time. Guest time
 * is read the way a guest reads it: the clockprobe guest answers `TIME\n` from its pvclock page.
 */
const guest = (() => {
  const { name, wasm } = readGuest('clockprobe');
  return prepareGuest(name, wasm);
})();

const started: Vmm[] = [];
afterEach(async () => {
  for (const v of started.splice(0)) if (v.state === 'running') await v.stop();
});

async function boot(clock: VmmClockOptions): Promise<Vmm> {
  const v = await Vmm.boot(guest, { clock });
  started.push(v);
  return v;
}

let nextConn = 1;
/** Guest time (ns) as the guest reads it, through a TIME request on a fresh connection. */
async function guestTime(v: Vmm): Promise<bigint> {
  const conn = nextConn++;
  const got = new Promise<bigint>((resolve) => {
    const on = (it: { conn: number; data: Uint8Array }) => {
      if (it.conn !== conn) return;
      v.off('output', on);
      resolve(BigInt(Buffer.from(it.data).toString().trim()));
    };
    v.on('output', on);
  });
  v.open(conn);
  v.input(conn, Buffer.from('TIME\n'));
  const g = await got;
  v.close(conn);
  return g;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ms = (ns: bigint) => Number(ns) / 1e6;

describe('the VMM clock device', () => {
  it('freeze: guest time stops while the vCPU is held, so it lags by the summed hold time', async () => {
    const v = await boot({ mode: 'freeze' });
    const g0 = await guestTime(v);
    await v.pause();
    await sleep(60);
    v.resume();
    const g1 = await guestTime(v);
    const r = await v.clockReport();
    expect(r.mode).toBe('freeze');
    expect(r.pauses).toBeGreaterThanOrEqual(1);
    expect(ms(r.pausedNs)).toBeGreaterThanOrEqual(59);
    // Drift is exactly minus the time held (the reference runs on, guest time did not).
    expect(r.driftNs).toBe(-r.pausedNs);
    expect(g1).toBeGreaterThan(g0);
  });

  it('freeze: each collect holds the vCPU for its pauseMs and guest time loses exactly that', async () => {
    const v = await boot({ mode: 'freeze' });
    await guestTime(v);
    let summed = 0;
    for (let i = 0; i < 20; i++) summed += (await v.collect()).pauseMs;
    const r = await v.clockReport();
    // pauseMs (performance.now) and the host clock (hrtime) are read back to back: a few us apart per collect.
    expect(Math.abs(ms(r.driftNs) + summed)).toBeLessThan(0.05 * 20);
  });

  it('step: after a pause, guest time jumps forward to the reference (drift 0), never back', async () => {
    const v = await boot({ mode: 'step' });
    const g0 = await guestTime(v);
    await v.pause();
    await sleep(60);
    v.resume();
    const g1 = await guestTime(v);
    const r = await v.clockReport();
    expect(r.steps).toBeGreaterThanOrEqual(1);
    expect(ms(r.steppedNs)).toBeGreaterThanOrEqual(59);
    expect(Math.abs(Number(r.driftNs))).toBeLessThan(1000);
    expect(ms(g1 - g0)).toBeGreaterThanOrEqual(60);
  });

  it('slew: a 60 ms lag is absorbed by a bounded rate change, with no jump and guest time never decreasing', async () => {
    const v = await boot({ mode: 'slew', maxSlewPpm: 200_000 });
    await v.pause();
    await sleep(60);
    v.resume();
    const first = await v.clockReport();
    expect(first.steps).toBe(0);
    // Right after the resume the lag is still (nearly) the whole pause: no jump.
    expect(ms(first.driftNs)).toBeLessThan(-50);
    expect(v.clock).not.toBeNull();
    const reads: Array<{ h0: bigint; h1: bigint; g: bigint }> = [];
    for (let i = 0; i < 40; i++) {
      const h0 = v.hostClock.nowNs();
      const g = await guestTime(v);
      reads.push({ h0, h1: v.hostClock.nowNs(), g });
      await sleep(15);
    }
    for (let i = 1; i < reads.length; i++) {
      // Each read happened within [h0, h1] of its request: at most this much host time passed between two.
      const dh = Number(reads[i]!.h1 - reads[i - 1]!.h0);
      const dg = Number(reads[i]!.g - reads[i - 1]!.g);
      expect(dg).toBeGreaterThan(0);
      // Never faster than 1 + maxSlew.
      expect(dg).toBeLessThanOrEqual(dh * 1.2);
    }
    const r = await v.clockReport();
    expect(r.steps).toBe(0);
    expect(Math.abs(ms(r.driftNs))).toBeLessThan(0.1);
  });

  it('the host clock is injectable: a skewed VMM reads its host time offset and its guest boots at that time', async () => {
    const v = await boot({ skew: { offsetNs: 5_000_000_000n } });
    const wall = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
    expect(Math.abs(ms(v.hostClock.nowNs() - wall) - 5000)).toBeLessThan(5);
    const g = await guestTime(v);
    expect(Math.abs(ms(g - wall) - 5000)).toBeLessThan(50);
  });

  it('a skewed host clock may also run fast: 10000 ppm makes 200 ms of real time 202 ms of host time', async () => {
    const v = await boot({ skew: { ratePpm: 10_000 } });
    const h0 = v.hostClock.nowNs();
    const t0 = process.hrtime.bigint();
    await sleep(200);
    const dh = v.hostClock.nowNs() - h0;
    const dt = process.hrtime.bigint() - t0;
    expect(Number(dh) / Number(dt)).toBeCloseTo(1.01, 3);
  });

  it('a checkpoint carries the compensator state; a restore on a host 2 s behind continues guest time (never backwards) and then runs slower', async () => {
    const a = await boot({ mode: 'slew' });
    const before = await guestTime(a);
    const ckpt = await a.capture();
    const st = ckpt.devices.clock.compensator as { v: number; guestNs: bigint; mode: string };
    expect(st.v).toBe(1);
    expect(st.mode).toBe('slew');
    expect(st.guestNs).toBeGreaterThanOrEqual(before);
    await a.stop();
    await sleep(100);
    const b = await Vmm.restore(guest, ckpt, { clock: { mode: 'slew', skew: { offsetNs: -2_000_000_000n } } });
    started.push(b);
    const after = await guestTime(b);
    expect(after).toBeGreaterThanOrEqual(st.guestNs);
    const r = await b.clockReport();
    // This host measures the few 100 ms since capture as about -1.7 s: the guest is that far ahead of its reference, slewing slower.
    expect(ms(r.driftNs)).toBeGreaterThan(1000);
    expect(ms(r.driftNs)).toBeLessThan(2000);
    expect(r.ratePpm).toBeLessThan(0);
    expect(r.steps).toBe(0);
  });

  it('a restore on a host 2 s ahead (slew, gap over the 1 s threshold) steps guest time forward to the new reference once', async () => {
    const a = await boot({ mode: 'slew' });
    const ckpt = await a.capture();
    const g0 = (ckpt.devices.clock.compensator as { guestNs: bigint }).guestNs;
    await a.stop();
    const b = await Vmm.restore(guest, ckpt, { clock: { mode: 'slew', skew: { offsetNs: 2_000_000_000n } } });
    started.push(b);
    const g1 = await guestTime(b);
    const r = await b.clockReport();
    expect(r.steps).toBe(1);
    expect(ms(r.steppedNs)).toBeGreaterThan(1990);
    expect(Math.abs(ms(r.driftNs))).toBeLessThan(1);
    expect(ms(g1 - g0)).toBeGreaterThan(2000);
  });

  it('the checkpoint digest ignores the 32-byte pvclock structure but not the bytes around it', async () => {
    const v = await boot({});
    await guestTime(v);
    const c = await v.capture();
    const addr = c.devices.clock.pvclockAddr;
    expect(addr).toBeGreaterThan(0);
    const d0 = checkpointDigest(c);
    const inside = c.memory.slice();
    inside[addr + PVCLOCK.systemTime] = inside[addr + PVCLOCK.systemTime]! ^ 0xff;
    expect(checkpointDigest({ ...c, memory: inside })).toBe(d0);
    const outside = c.memory.slice();
    outside[addr + PVCLOCK.size] = outside[addr + PVCLOCK.size]! ^ 0xff;
    expect(checkpointDigest({ ...c, memory: outside })).not.toBe(d0);
  });

  it('an idle guest\'s pvclock page is not dirtied by resumes: fields reach the page only before the next event', async () => {
    const v = await boot({ mode: 'step' });
    await guestTime(v);
    await v.collect();
    await v.pause();
    await sleep(20);
    v.resume();
    // No event ran since the last collect: nothing is dirty, though the fields changed twice.
    expect((await v.collect()).pages.length).toBe(0);
  });

  it('rejects clock options that are out of range, naming them', async () => {
    const bad = (o: VmmClockOptions) => {
      try {
        resolveClockOptions(o);
      } catch (e) {
        return e as { code: string; message: string };
      }
      throw new Error('accepted');
    };
    expect(bad({ mode: 'jump' as never })).toMatchObject({ code: 'FTVM_ERR_VMM_OPTION', message: expect.stringContaining('clock.mode') });
    expect(bad({ maxSlewPpm: 0 }).message).toContain('maxSlewPpm');
    expect(bad({ stepThresholdMs: -1 }).message).toContain('stepThresholdMs');
    expect(bad({ tickMs: 0 }).message).toContain('clock.tickMs');
    expect(bad({ skew: { ratePpm: 1e6 } }).message).toContain('clock.skew.ratePpm');
    await expect(Vmm.boot(guest, { clock: { tickMs: 1.5 } })).rejects.toMatchObject({ code: 'FTVM_ERR_VMM_OPTION' });
  });
});
