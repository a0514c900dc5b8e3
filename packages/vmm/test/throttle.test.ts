import { describe, expect, it } from 'vitest';
import { Vmm, prepareGuest, readGuest, type OutputItem } from '@ftvm/vmm';

const resp = (...args: string[]) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
const guest = (() => {
  const { name, wasm } = readGuest('kv');
  return prepareGuest(name, wasm);
})();

describe('the pre-copy throttle and the stop-and-copy', () => {
  it('events the throttle holds are not run before the hold: they run after resume, in order', async () => {
    const vmm = await Vmm.boot(guest, {});
    let text = '';
    vmm.on('output', (it: OutputItem) => {
      text += Buffer.from(it.data).toString('latin1');
    });
    try {
      vmm.open(1);
      vmm.input(1, Buffer.from(resp('SET', 'a', '1'), 'latin1'));
      for (let i = 0; i < 200 && !text.includes('+OK'); i++) await new Promise((r) => setTimeout(r, 10));
      expect(text).toBe('+OK\r\n');
      await vmm.startDirtyTracking();
      await vmm.dirtyPages();
      // A long dispatch delay: these two commands wait in the throttle.
      vmm.throttle(5000);
      vmm.input(1, Buffer.from(resp('SET', 'b', '2') + resp('INCR', 'n'), 'latin1'));
      await new Promise((r) => setTimeout(r, 100));
      expect(text).toBe('+OK\r\n');
      const t0 = performance.now();
      const final = await vmm.precopyFinal();
      // The hold came at once (not after the delay), before the held commands ran: the
      // remainder has no page they would write, and no reply left.
      expect(performance.now() - t0).toBeLessThan(2000);
      expect(final.pages.length).toBe(0);
      await new Promise((r) => setTimeout(r, 100));
      expect(text).toBe('+OK\r\n');
      vmm.throttle(0);
      vmm.resume();
      for (let i = 0; i < 200 && !text.includes(':1'); i++) await new Promise((r) => setTimeout(r, 10));
      expect(text).toBe('+OK\r\n+OK\r\n:1\r\n');
    } finally {
      await vmm.stop();
    }
  });
});
