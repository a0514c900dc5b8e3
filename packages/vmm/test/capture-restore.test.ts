import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Vmm, checkpointDigest, decodeCheckpoint, encodeCheckpoint, prepareGuest, readGuest, type OutputItem } from '@ftvm/vmm';

const run = promisify(execFile);
const child = fileURLToPath(new URL('../../../test/fixtures/restore-child.mjs', import.meta.url));
const resp = (...args: string[]) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;

type Ev = { k: 'open' | 'close'; conn: number } | { k: 'data'; conn: number; data: string };

function drive(vmm: Vmm, events: Ev[]): void {
  for (const ev of events) {
    if (ev.k === 'data') vmm.input(ev.conn, Buffer.from(ev.data, 'latin1'));
    else if (ev.k === 'open') vmm.open(ev.conn);
    else vmm.close(ev.conn);
  }
}

describe('capture in one process, restore in another', () => {
  let vmm: Vmm;
  const out: Record<number, string> = {};
  const guest = (() => {
    const { name, wasm } = readGuest('kv');
    return prepareGuest(name, wasm);
  })();

  beforeAll(async () => {
    vmm = await Vmm.boot(guest);
    vmm.on('output', (it: OutputItem) => {
      out[it.conn] = (out[it.conn] ?? '') + Buffer.from(it.data).toString('latin1');
    });
  });
  afterAll(async () => {
    await vmm?.stop();
  });

  it('the restored kv guest serves the same data, and its checkpoints equal the original\'s by digest', async () => {
    const setup: Ev[] = [{ k: 'open', conn: 1 }];
    for (let i = 0; i < 500; i++) setup.push({ k: 'data', conn: 1, data: resp('SET', `key:${i}`, `value-${i}-${'x'.repeat(i % 97)}`) });
    setup.push({ k: 'data', conn: 1, data: resp('RPUSH', 'list', 'a', 'b', 'c') + resp('HSET', 'h', 'f', 'v') + resp('INCRBY', 'n', '41') });
    drive(vmm, setup);
    const ckpt = await vmm.capture();
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-ckpt-'));
    writeFileSync(join(dir, 'ckpt.bin'), encodeCheckpoint(ckpt));
    // The encoding round-trips.
    expect(checkpointDigest(decodeCheckpoint(encodeCheckpoint(ckpt)))).toBe(checkpointDigest(ckpt));

    // The same events, later, on both sides (conn 1 stays open across the checkpoint).
    const later: Ev[] = [
      { k: 'data', conn: 1, data: resp('GET', 'key:7') + resp('GET', 'key:499') + resp('INCR', 'n') },
      { k: 'open', conn: 2 },
      { k: 'data', conn: 2, data: resp('LRANGE', 'list', '0', '-1') + resp('HGET', 'h', 'f') + resp('SET', 'after', 'restore') + resp('DBSIZE') },
      { k: 'close', conn: 2 },
    ];
    writeFileSync(join(dir, 'events.json'), JSON.stringify(later));
    const before = { ...out };
    // Guest time is an input: both sides see the same frozen time for these events.
    vmm.setClock({ tscTimestamp: 0n, systemTime: 1_700_000_000_000_000_000n, mul: 0, shift: 0, flags: 1 }, 0n);
    drive(vmm, later);
    const after = await vmm.capture();

    const { stdout } = await run(process.execPath, [child, join(dir, 'ckpt.bin'), join(dir, 'events.json')], { timeout: 60_000 });
    const restored = JSON.parse(stdout) as { restored: string; after: string; out: Record<string, string> };
    expect(restored.restored).toBe(checkpointDigest(ckpt));
    expect(restored.after).toBe(checkpointDigest(after));
    const newOut1 = out[1]!.slice(before[1]!.length);
    expect(restored.out['1']).toBe(newOut1);
    expect(newOut1).toBe(`$${'value-7-'.length + 7}\r\nvalue-7-${'x'.repeat(7)}\r\n$${'value-499-'.length + 499 % 97}\r\nvalue-499-${'x'.repeat(499 % 97)}\r\n:42\r\n`);
    expect(restored.out['2']).toBe(out[2]);
    expect(out[2]).toBe('*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nv\r\n+OK\r\n:504\r\n');
  });
});
