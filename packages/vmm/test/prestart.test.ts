import { describe, expect, it } from 'vitest';
import { Vmm, checkpointDigest, prepareGuest, readGuest, type OutputItem } from '@ftvm/vmm';

const resp = (...args: string[]) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
const guest = (() => {
  const { name, wasm } = readGuest('kv');
  return prepareGuest(name, wasm);
})();

/** Sends commands on conn 1 and waits for `n` reply lines. */
async function ask(vmm: Vmm, cmds: string[][], n: number): Promise<string[]> {
  let text = '';
  const on = (it: OutputItem) => {
    text += Buffer.from(it.data).toString('latin1');
  };
  vmm.on('output', on);
  vmm.input(1, Buffer.from(cmds.map((c) => resp(...c)).join(''), 'latin1'));
  for (let i = 0; i < 300; i++) {
    const lines = text.split('\r\n').filter((l) => l && !/^\$\d+$/.test(l));
    if (lines.length >= n) {
      vmm.off('output', on);
      return lines;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  vmm.off('output', on);
  throw new Error(`no reply to ${JSON.stringify(cmds)}: ${JSON.stringify(text)}`);
}

describe('Vmm.prestart: a vCPU booted ahead of the checkpoint it restores', () => {
  it('restoreInto() serves what the checkpoint holds, with its digest, also when memory grew after the prestart', async () => {
    const src = await Vmm.boot(guest);
    src.open(1);
    await ask(src, [['SET', 'a', '1']], 1);
    const early = await src.capture();
    // The source grows after the target prestarted with its round-0 size.
    await ask(src, Array.from({ length: 400 }, (_, i) => ['SET', `big:${i}`, 'x'.repeat(4000)]), 400);
    const ckpt = await src.capture();
    expect(ckpt.memBytes).toBeGreaterThan(early.memBytes);
    const dst = await Vmm.prestart(guest, early.memBytes);
    try {
      expect(dst.state).toBe('prestarted');
      await dst.restoreInto(ckpt);
      expect(dst.state).toBe('running');
      const again = await dst.capture();
      expect(checkpointDigest(again)).toBe(checkpointDigest({ ...ckpt, epoch: again.epoch, devices: again.devices }));
      expect(await ask(dst, [['GET', 'a'], ['GET', 'big:399']], 2)).toEqual(['1', 'x'.repeat(4000)]);
    } finally {
      await src.stop();
      await dst.stop();
    }
  });

  it('refuses a checkpoint smaller than the prestarted memory, and restoreInto() twice', async () => {
    const src = await Vmm.boot(guest);
    const small = await src.capture();
    const dst = await Vmm.prestart(guest, small.memBytes + 65536 * 16);
    await expect(dst.restoreInto(small)).rejects.toMatchObject({ code: 'FTVM_ERR_GUEST_INIT' });
    await expect(dst.restoreInto(small)).rejects.toMatchObject({ code: 'FTVM_ERR_VMM_OPTION' });
    await expect(Vmm.prestart(guest, 1000)).rejects.toMatchObject({ code: 'FTVM_ERR_VMM_OPTION' });
    await src.stop();
    await dst.stop();
  });
});
