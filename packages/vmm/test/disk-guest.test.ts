import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Vmm, prepareDisk, prepareGuest, readGuest, type OutputItem } from '@ftvm/vmm';

const resp = (...args: string[]) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
const guest = (() => {
  const { name, wasm } = readGuest('kv');
  return prepareGuest(name, wasm);
})();

/** A kv VMM with a reply reader on conn 1. */
async function kvOn(opts: Parameters<typeof Vmm.boot>[1]) {
  const vmm = await Vmm.boot(guest, opts);
  let text = '';
  vmm.on('output', (it: OutputItem) => {
    text += Buffer.from(it.data).toString('latin1');
  });
  vmm.open(1);
  /** Sends commands and resolves with the replies they produced (one line each here). */
  const ask = async (...cmds: string[][]): Promise<string[]> => {
    const from = text.length;
    vmm.input(1, Buffer.from(cmds.map((c) => resp(...c)).join(''), 'latin1'));
    for (let i = 0; i < 200; i++) {
      const lines = text.slice(from).split('\r\n').filter((l) => l && !/^\$\d+$/.test(l));
      if (lines.length >= cmds.length) return lines;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`no reply to ${JSON.stringify(cmds)}; got ${JSON.stringify(text.slice(from))}`);
  };
  return { vmm, ask };
}

describe('kv on the virtual disk', () => {
  it('keeps its data across a reboot on the same disk, and disk and memory agree', async () => {
    const spec = prepareDisk(join(mkdtempSync(join(tmpdir(), 'ftvm-kvdisk-')), 'kv.img'), 1 << 20);
    const a = await kvOn({ disk: spec });
    expect(await a.ask(['SET', 'k', 'v1'], ['RPUSH', 'l', 'x', 'y'], ['INCRBY', 'n', '5'], ['SADD', 's', 'a', 'b', 'c'], ['SPOP', 's'])).toHaveLength(5);
    const big = 'z'.repeat(10_000); // a record spanning three blocks
    expect(await a.ask(['SET', 'big', big], ['DISKCHECK'])).toEqual(['+OK', '+OK']);
    const card = await a.ask(['SCARD', 's']);
    await a.vmm.stop();

    const b = await kvOn({ disk: spec });
    expect(await b.ask(['GET', 'k'], ['LLEN', 'l'], ['GET', 'n'], ['SCARD', 's'], ['STRLEN', 'big'], ['DISKCHECK'])).toEqual([
      'v1',
      ':2',
      '5',
      card[0],
      ':10000',
      '+OK',
    ]);
    await b.vmm.stop();
  });

  it('answers DISKCHECK with an error when there is no disk', async () => {
    const a = await kvOn({});
    expect(await a.ask(['SET', 'k', 'v'], ['DISKCHECK'])).toEqual(['+OK', '-ERR no disk log (run with --disk)']);
    await a.vmm.stop();
  });

  it('rolls the disk back with memory on a local rollback, so the two still agree', async () => {
    const spec = prepareDisk(join(mkdtempSync(join(tmpdir(), 'ftvm-kvdisk-')), 'kv.img'), 1 << 20);
    const a = await kvOn({ disk: spec, diskUndo: true });
    await a.ask(['SET', 'before', '1']);
    const ckpt = await a.vmm.capture();
    expect(await a.ask(['SET', 'after', '2'], ['SET', 'x'.repeat(5000), 'y'.repeat(9000)])).toEqual(['+OK', '+OK']);
    await a.vmm.rollback(ckpt);
    a.vmm.open(2);
    expect(await a.ask(['GET', 'before'], ['EXISTS', 'after'], ['DISKCHECK'])).toEqual(['1', ':0', '+OK']);
    await a.vmm.stop();
  });

  it('without the undo file, the same rollback leaves the disk ahead of memory and DISKCHECK says so', async () => {
    const spec = prepareDisk(join(mkdtempSync(join(tmpdir(), 'ftvm-kvdisk-')), 'kv.img'), 1 << 20);
    const a = await kvOn({ disk: spec });
    await a.ask(['SET', 'before', '1']);
    const ckpt = await a.vmm.capture();
    await a.ask(['SET', 'after', '2']);
    await a.vmm.rollback(ckpt);
    a.vmm.open(2);
    const [check] = await a.ask(['DISKCHECK']);
    expect(check).toMatch(/^-ERR disk holds data past the log end/);
    await a.vmm.stop();
  });
});
