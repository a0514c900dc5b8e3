import binaryen from 'binaryen';
import { describe, expect, it } from 'vitest';
import { prepareGuest, readGuest, Vmm, type OutputItem, type VmmError } from '@ftvm/vmm';
import { compileFixtureGuest } from '../../../test/helpers/asc.js';

const resp = (...args: string[]) => Buffer.from(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
const kv = (() => {
  const { name, wasm } = readGuest('kv');
  return prepareGuest(name, wasm);
})();

/** A guest from WAT: the ABI's exports around `body`, which defines ftvm_init. */
function watGuest(body: string) {
  const m = binaryen.parseText(`(module (memory (export "memory") 40 64)
    (global (export "ftvm_abi_version") i32 (i32.const 1))
    (func (export "ftvm_alloc") (param i32) (result i32) (i32.const 1048576))
    (func (export "ftvm_on_open") (param i32))
    (func (export "ftvm_on_data") (param i32 i32 i32))
    (func (export "ftvm_on_close") (param i32))
    (func (export "ftvm_on_timer"))
    ${body})`);
  try {
    m.setFeatures(binaryen.Features.MVP | binaryen.Features.MutableGlobals | binaryen.Features.ExceptionHandling);
    return prepareGuest('wat', m.emitBinary());
  } finally {
    m.dispose();
  }
}

/** Output bytes of `conn` until `want` of them arrived (or the time is up). */
function collectOutput(vmm: Vmm, conn: number, want: number, ms = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const on = (it: OutputItem) => {
      if (it.conn !== conn) return;
      got += Buffer.from(it.data).toString();
      if (got.length >= want) done();
    };
    const t = setTimeout(() => {
      vmm.off('output', on);
      reject(new Error(`only ${JSON.stringify(got)} after ${ms} ms`));
    }, ms);
    const done = () => {
      clearTimeout(t);
      vmm.off('output', on);
      resolve(got);
    };
    vmm.on('output', on);
  });
}

describe('the inline vCPU (VmmOptions.vcpu inline)', () => {
  it('runs the guest on this thread: events, outputs, epochs and a restore, as a worker vCPU does', async () => {
    const vmm = await Vmm.boot(kv, { vcpu: 'inline' });
    expect(vmm.vcpuKind).toBe('inline');
    expect(vmm.vcpuWhyWorker).toBeNull();
    vmm.open(1);
    const out = collectOutput(vmm, 1, '+OK\r\n$2\r\nv1\r\n'.length);
    vmm.input(1, resp('SET', 'k', 'v1'));
    vmm.input(1, resp('GET', 'k'));
    expect(await out).toBe('+OK\r\n$2\r\nv1\r\n');
    const c = await vmm.collect();
    expect(c.pages.length).toBeGreaterThan(0);
    const ckpt = await vmm.capture();
    await vmm.stop();
    // Its checkpoint restores into a worker vCPU, and the key is there.
    const back = await Vmm.restore(kv, ckpt, { vcpu: 'worker' });
    expect(back.vcpuKind).toBe('worker');
    back.open(2);
    const got = collectOutput(back, 2, '$2\r\nv1\r\n'.length);
    back.input(2, resp('GET', 'k'));
    expect(await got).toBe('$2\r\nv1\r\n');
    await back.stop();
  });

  it('stops a runaway event with FTVM_ERR_GUEST_TIMEOUT by its fuel, names its connection, and rolls back', async () => {
    const { name, wasm } = readGuest(await compileFixtureGuest('faulty'));
    const guest = prepareGuest(name, wasm);
    expect(guest.interruptible).toBe(true);
    const vmm = await Vmm.boot(guest, { vcpu: 'inline', eventTimeoutMs: 300 });
    expect(vmm.vcpuKind).toBe('inline');
    vmm.open(1);
    const one = collectOutput(vmm, 1, 2);
    vmm.input(1, Buffer.from('a'));
    expect(await one).toBe('1\n');
    const ckpt = await vmm.capture();
    const fault = new Promise<VmmError>((resolve) => vmm.once('fault', resolve));
    vmm.open(2);
    const t0 = performance.now();
    vmm.input(2, Buffer.from('L'));
    const err = await fault;
    const ms = performance.now() - t0;
    expect(err.code).toBe('FTVM_ERR_GUEST_TIMEOUT');
    expect(err.message).toBe('guest event ran longer than eventTimeoutMs (300 ms); vCPU stopped');
    expect(err.conn).toBe(2);
    // One refill of fuel past the deadline, not a watchdog period.
    expect(ms).toBeGreaterThanOrEqual(300);
    expect(ms).toBeLessThan(1500);
    expect(vmm.state).toBe('faulted');
    // The fault path a worker's timeout takes: roll back, the guest serves again.
    await vmm.rollback(ckpt);
    expect(vmm.vcpuKind).toBe('inline');
    const two = collectOutput(vmm, 1, 2);
    vmm.input(1, Buffer.from('b'));
    expect(await two).toBe('2\n');
    await vmm.stop();
  });

  it('stops a runaway ftvm_init: the start fails with FTVM_ERR_GUEST_INIT instead of blocking this thread', async () => {
    const vmm = Vmm.boot(watGuest('(func (export "ftvm_init") (loop $l (br $l)))'), { vcpu: 'inline', eventTimeoutMs: 200 });
    await expect(vmm).rejects.toMatchObject({ code: 'FTVM_ERR_GUEST_INIT', message: expect.stringContaining('eventTimeoutMs (200 ms)') });
  });

  it('a guest with an exception handler (it could catch the fuel\'s throw) runs as a worker', async () => {
    const g = watGuest('(tag $t) (func (export "ftvm_init") (try (do (throw $t)) (catch_all)))');
    expect(g.interruptible).toBe(false);
    const vmm = await Vmm.boot(g, { vcpu: 'inline' });
    expect(vmm.vcpuKind).toBe('worker');
    await vmm.stop();
  });

  it('runs as a worker, and says why, when the guest or the options leave no way to stop it inline', async () => {
    const fifo = Vmm.boot(kv, { vcpu: 'inline', vcpuSched: 'fifo' }).then(
      async (v) => {
        const why = v.vcpuWhyWorker;
        await v.stop();
        return why;
      },
      // chrt refused (no CAP_SYS_NICE): the worker was chosen all the same.
      (e: VmmError) => (e.code === 'FTVM_ERR_VCPU_SCHED' ? 'vcpuSched fifo schedules a thread of its own' : Promise.reject(e)),
    );
    expect(await fifo).toMatch(/fifo/);
    const pre = await Vmm.prestart(kv, 2 << 20, { vcpu: 'inline' });
    expect(pre.vcpuKind).toBe('worker');
    expect(pre.vcpuWhyWorker).toMatch(/prestarted/);
    await pre.stop();
    const shadow = { ...kv, interruptible: false };
    const w = await Vmm.boot(shadow, { vcpu: 'inline' });
    expect(w.vcpuKind).toBe('worker');
    expect(w.vcpuWhyWorker).toMatch(/no fuel counter/);
    await w.stop();
  });

  it('refuses an unknown vcpu mode with FTVM_ERR_VMM_OPTION', async () => {
    await expect(Vmm.boot(kv, { vcpu: 'fiber' as 'inline' })).rejects.toMatchObject({ code: 'FTVM_ERR_VMM_OPTION', message: 'vcpu must be one of worker, inline, got fiber' });
  });

  it('after stop() nothing of the vCPU runs on this thread any more', async () => {
    const vmm = await Vmm.boot(kv, { vcpu: 'inline' });
    let after = 0;
    vmm.open(1);
    for (let i = 0; i < 200; i++) vmm.input(1, resp('SET', `k${i}`, 'x'.repeat(1000)));
    await vmm.collect();
    await vmm.stop();
    vmm.on('output', () => after++);
    vmm.on('clock', () => after++);
    vmm.on('progress', () => after++);
    vmm.input(1, resp('GET', 'k1'));
    await new Promise((r) => setTimeout(r, 100));
    expect(after).toBe(0);
  });
});
