import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockDevice, DISK_BLOCK_BYTES, DiskStatus, prepareDisk, readBlocksAsync, undoPath } from '@ftvm/vmm';

const dir = () => mkdtempSync(join(tmpdir(), 'ftvm-disk-'));
const block = (fill: number) => new Uint8Array(DISK_BLOCK_BYTES).fill(fill);

describe('prepareDisk', () => {
  it('creates a zero-filled file of the given size and reopens it at its own size', () => {
    const p = join(dir(), 'd.img');
    expect(prepareDisk(p, 64 * 1024)).toEqual({ path: p, blocks: 16 });
    expect(statSync(p).size).toBe(64 * 1024);
    expect(prepareDisk(p)).toEqual({ path: p, blocks: 16 });
  });

  it('extends an existing file and keeps its data', () => {
    const p = join(dir(), 'd.img');
    writeFileSync(p, block(7));
    expect(prepareDisk(p, 4 * DISK_BLOCK_BYTES).blocks).toBe(4);
    const b = readFileSync(p);
    expect(b[0]).toBe(7);
    expect(b[DISK_BLOCK_BYTES]).toBe(0);
  });

  it('refuses to shrink, a missing file without a size, and sizes that are not whole blocks', () => {
    const p = join(dir(), 'd.img');
    prepareDisk(p, 8 * DISK_BLOCK_BYTES);
    expect(() => prepareDisk(p, 4 * DISK_BLOCK_BYTES)).toThrow(expect.objectContaining({ code: 'FTVM_ERR_DISK_SHRINK' }));
    expect(() => prepareDisk(join(dir(), 'none.img'))).toThrow(expect.objectContaining({ code: 'FTVM_ERR_DISK_SIZE' }));
    expect(() => prepareDisk(join(dir(), 'x.img'), 5000)).toThrow(expect.objectContaining({ code: 'FTVM_ERR_DISK_SIZE' }));
    const odd = join(dir(), 'odd.img');
    writeFileSync(odd, new Uint8Array(100));
    expect(() => prepareDisk(odd)).toThrow(expect.objectContaining({ code: 'FTVM_ERR_DISK_SIZE' }));
  });
});

describe('BlockDevice', () => {
  it('reads back what it wrote and refuses ranges outside the disk', () => {
    const spec = prepareDisk(join(dir(), 'd.img'), 8 * DISK_BLOCK_BYTES);
    const d = new BlockDevice(spec);
    const buf = new Uint8Array(3 * DISK_BLOCK_BYTES);
    buf.set(block(1), 0);
    buf.set(block(2), DISK_BLOCK_BYTES);
    buf.set(block(3), 2 * DISK_BLOCK_BYTES);
    expect(d.write(5, 3, buf, 0)).toBe(DiskStatus.OK);
    const back = new Uint8Array(3 * DISK_BLOCK_BYTES);
    expect(d.read(5, 3, back, 0)).toBe(DiskStatus.OK);
    expect(back).toEqual(buf);
    expect(d.write(6, 3, buf, 0)).toBe(DiskStatus.BAD_RANGE);
    expect(d.read(-1, 1, back, 0)).toBe(DiskStatus.BAD_RANGE);
    expect(d.read(0, 0, back, 0)).toBe(DiskStatus.BAD_RANGE);
    expect(d.read(0, 1.5, back, 0)).toBe(DiskStatus.BAD_RANGE);
    d.close();
  });

  it('reports each written block once in the dirty set, sorted, and starts a new set after taking it', () => {
    const spec = prepareDisk(join(dir(), 'd.img'), 100 * DISK_BLOCK_BYTES);
    const d = new BlockDevice(spec);
    for (const b of [42, 3, 99, 3, 17, 42]) d.write(b, 1, block(b), 0);
    d.write(8, 2, new Uint8Array(2 * DISK_BLOCK_BYTES).fill(9), 0);
    expect([...d.takeDirty()]).toEqual([3, 8, 9, 17, 42, 99]);
    expect([...d.takeDirty()]).toEqual([]);
    d.write(0, 1, block(5), 0);
    const dirty = d.takeDirty();
    expect([...dirty]).toEqual([0]);
    expect(d.readList(dirty)).toEqual(block(5));
    d.close();
  });

  it('keeps a pre-copy dirty set of its own: epoch collects (takeDirty) do not take its blocks, nor it theirs', async () => {
    const spec = prepareDisk(join(dir(), 'd.img'), 64 * DISK_BLOCK_BYTES);
    const d = new BlockDevice(spec);
    d.write(1, 1, block(1), 0);
    expect([...d.takePrecopyDirty()]).toEqual([]); // not tracking yet
    d.startPrecopyTracking();
    d.write(7, 1, block(7), 0);
    d.write(2, 2, new Uint8Array(2 * DISK_BLOCK_BYTES).fill(4), 0);
    expect([...d.takeDirty()]).toEqual([1, 2, 3, 7]);
    d.write(60, 1, block(60), 0);
    expect([...d.takePrecopyDirty()]).toEqual([2, 3, 7, 60]);
    expect([...d.takePrecopyDirty()]).toEqual([]);
    expect([...d.takeDirty()]).toEqual([60]);
    d.stopPrecopyTracking();
    d.write(5, 1, block(5), 0);
    expect([...d.takePrecopyDirty()]).toEqual([]);
    // The main thread's reader (PUSH rounds, PULL answers) sees what the device wrote.
    const fd = openSync(spec.path, 'r');
    const got = await readBlocksAsync(fd, [7, 60, 61, 5]);
    closeSync(fd);
    expect(got.subarray(0, DISK_BLOCK_BYTES)).toEqual(block(7));
    expect(got.subarray(DISK_BLOCK_BYTES, 2 * DISK_BLOCK_BYTES)).toEqual(block(60));
    expect(got.subarray(2 * DISK_BLOCK_BYTES, 3 * DISK_BLOCK_BYTES).every((x) => x === 0)).toBe(true);
    expect(got.subarray(3 * DISK_BLOCK_BYTES)).toEqual(block(5));
    d.close();
  });

  it('lists only non-zero blocks for a full copy', () => {
    const spec = prepareDisk(join(dir(), 'd.img'), 600 * DISK_BLOCK_BYTES);
    const d = new BlockDevice(spec);
    d.write(1, 1, block(1), 0);
    d.write(300, 1, block(2), 0);
    d.write(599, 1, block(3), 0);
    d.write(300, 1, block(0), 0);
    const { blocks, data } = d.readNonZero();
    expect([...blocks]).toEqual([1, 599]);
    expect(data.subarray(DISK_BLOCK_BYTES)).toEqual(block(3));
    d.close();
  });

  it('rolls the disk back to the last takeDirty with the undo file, and a fresh device never applies a stale one', () => {
    const spec = prepareDisk(join(dir(), 'd.img'), 8 * DISK_BLOCK_BYTES);
    const a = new BlockDevice(spec, { undo: 'fresh' });
    a.write(1, 1, block(1), 0);
    a.takeDirty(); // the checkpoint: block 1 = 1
    a.write(1, 1, block(2), 0);
    a.write(1, 1, block(3), 0);
    a.write(2, 2, new Uint8Array(2 * DISK_BLOCK_BYTES).fill(4), 0);
    a.close();
    expect(existsSync(undoPath(spec.path))).toBe(false);

    // Same again, then a rollback (the undo file is kept by the owner of the descriptors).
    const b = new BlockDevice(spec, { undo: 'fresh' });
    b.write(1, 1, block(1), 0);
    b.write(2, 2, new Uint8Array(2 * DISK_BLOCK_BYTES).fill(0), 0);
    b.takeDirty(); // checkpoint: block 1 = 1, blocks 2-3 = 0
    b.write(1, 1, block(2), 0);
    b.write(1, 1, block(3), 0);
    b.write(3, 1, block(4), 0);
    const undoBytes = statSync(undoPath(spec.path)).size;
    expect(undoBytes).toBe(2 * (4 + DISK_BLOCK_BYTES));
    // Simulate the successor vCPU of a rollback: a device over the same files applying the undo.
    const fds = { disk: (b as unknown as { fd: number }).fd, undo: (b as unknown as { undoFd: number }).undoFd };
    const c = new BlockDevice(spec, { undo: 'apply', fds });
    const got = new Uint8Array(3 * DISK_BLOCK_BYTES);
    c.read(1, 3, got, 0);
    expect(got.subarray(0, DISK_BLOCK_BYTES)).toEqual(block(1));
    expect(got.subarray(DISK_BLOCK_BYTES)).toEqual(new Uint8Array(2 * DISK_BLOCK_BYTES));
    expect(statSync(undoPath(spec.path)).size).toBe(0);
    b.close();
  });
});
