import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DiskJournal, journalPath } from '@ftvm/secondary';

const CHILD = fileURLToPath(new URL('./fixtures/journal-child.mjs', import.meta.url));
const BLOCKS = 64;
const B = 4096;

/** A block as the child writes it: fill byte repeated, block number in the first 4 bytes. */
function blockBytes(b: number, fill: number): Uint8Array {
  const d = new Uint8Array(B).fill(fill);
  new DataView(d.buffer).setUint32(0, b, true);
  return d;
}

/** The disk image after applying plan (full: everything else zero) onto base. */
function image(base: Uint8Array, plan: Array<[number, number]>, full: boolean): Uint8Array {
  const out = full ? new Uint8Array(BLOCKS * B) : base.slice();
  for (const [b, f] of plan) out.set(blockBytes(b, f), b * B);
  return out;
}

/** A deterministic pseudo-random source (so a failure reproduces from its seed). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function randomPlan(r: () => number, fill: number): Array<[number, number]> {
  const set = new Set<number>();
  const n = 1 + Math.floor(r() * 20);
  while (set.size < n) set.add(Math.floor(r() * BLOCKS));
  return [...set].map((b) => [b, fill]);
}

/** Disk at epoch N-1 = epoch1 plan applied on zeros. */
function setup(r: () => number) {
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-journal-'));
  const disk = join(dir, 'd.img');
  const prev = image(new Uint8Array(BLOCKS * B), randomPlan(r, 0x11), false);
  writeFileSync(disk, prev);
  return { dir, disk, prev };
}

function runChild(disk: string, dir: string, epoch: number, full: boolean, crashAt: string, plan: Array<[number, number]>) {
  const planFile = join(dir, `plan-${epoch}.json`);
  writeFileSync(planFile, JSON.stringify(plan));
  return spawnSync(process.execPath, [CHILD, disk, String(BLOCKS), String(epoch), full ? '1' : '0', crashAt, planFile], { encoding: 'utf8' });
}

function recover(disk: string) {
  const j = new DiskJournal({ path: disk, blocks: BLOCKS });
  const r = j.recover();
  j.close();
  return r;
}

describe('the disk redo journal', () => {
  it('leaves the disk at exactly epoch N-1 or N after a crash at any step (killed process, both kinds of checkpoint)', () => {
    const points = ['staged', 'sealed', 'applying', 'applied', 'none'] as const;
    // Which epoch each crash point must leave: before the commit record is durable, N-1.
    const want = { staged: 'prev', sealed: 'next', applying: 'next', applied: 'next', none: 'next' } as const;
    let seed = 1;
    for (const full of [false, true]) {
      for (const at of points) {
        for (let round = 0; round < 2; round++) {
          const r = rng(seed++);
          const { dir, disk, prev } = setup(r);
          const plan = randomPlan(r, 0x22 + round);
          const next = image(prev, plan, full);
          const res = runChild(disk, dir, 7, full, at, plan);
          expect(res.signal, `${res.stderr}`).toBe(at === 'none' ? null : 'SIGKILL');
          const rec = recover(disk);
          const got = new Uint8Array(readFileSync(disk));
          const which = Buffer.compare(got, next) === 0 ? 'next' : Buffer.compare(got, prev) === 0 ? 'prev' : 'neither';
          expect({ full, at, which, rec: rec.action }).toEqual({
            full,
            at,
            which: want[at],
            rec: at === 'staged' ? 'discarded' : at === 'none' ? 'none' : 'replayed',
          });
          expect(statSync(journalPath(disk)).size).toBe(0);
        }
      }
    }
  }, 60_000);

  it('drops a sealed journal that was cut short or corrupted before the disk was touched', () => {
    for (const damage of ['truncate', 'flip'] as const) {
      for (let k = 0; k < 4; k++) {
        const r = rng(1000 + k + (damage === 'flip' ? 50 : 0));
        const { dir, disk, prev } = setup(r);
        const plan = randomPlan(r, 0x33);
        // Crashed right after the commit record was written: the disk is still N-1.
        runChild(disk, dir, 9, false, 'sealed', plan);
        const jp = journalPath(disk);
        const size = statSync(jp).size;
        if (damage === 'truncate') truncateSync(jp, Math.floor(r() * size));
        else {
          const j = readFileSync(jp);
          j[Math.floor(r() * size)] ^= 0x40;
          writeFileSync(jp, j);
        }
        const rec = recover(disk);
        expect(rec.action).toBe(size === 0 ? 'none' : 'discarded');
        expect(Buffer.compare(readFileSync(disk), prev)).toBe(0);
      }
    }
  });

  it('refuses blocks outside the disk and a block sent twice in one epoch', () => {
    const { disk } = setup(rng(5));
    const j = new DiskJournal({ path: disk, blocks: BLOCKS });
    j.recover();
    j.begin(1, false);
    expect(() => j.add(BLOCKS, new Uint8Array(B))).toThrow(expect.objectContaining({ code: 'FTVM_ERR_DISK_JOURNAL' }));
    j.add(3, new Uint8Array(B));
    expect(() => j.add(3, new Uint8Array(B))).toThrow(expect.objectContaining({ code: 'FTVM_ERR_DISK_JOURNAL' }));
    j.close();
  });
});
