import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PAGE_BYTES, RESERVED_PAGES } from '@ftvm/guest-abi';
import { NodeHost, type NodeOptions } from '@ftvm/node';
import { prepareGuest, readGuest } from '@ftvm/vmm';

const token = new Uint8Array(Buffer.from('scrub-test'));

describe('the integrity scrub', () => {
  const { name, wasm } = readGuest('kv');
  const guest = prepareGuest(name, wasm);
  const base: Omit<NodeOptions, 'nodeId' | 'role' | 'port'> = {
    host: '127.0.0.1', token, guest, policy: 'adaptive', onSecondaryLoss: 'continue', compression: true, eventTimeoutMs: 2000,
  };
  const secondary = new NodeHost({ ...base, nodeId: 's', role: 'secondary', port: 0 });
  let primary: NodeHost;

  beforeAll(async () => {
    const port = await secondary.start();
    primary = new NodeHost({ ...base, nodeId: 'p', role: 'primary', port: 0, peer: `ws://127.0.0.1:${port}` });
    await primary.start();
    await new Promise<void>((resolve) => primary.primary!.on('protection', (p) => p && resolve()));
  }, 60_000);
  afterAll(async () => {
    await primary?.close();
    await secondary.close();
  });

  it('finds a page of the secondary image that differs from memory within one pass, and repairs it (the next pass finds nothing)', async () => {
    const rt = primary.primary!;
    const memPages = rt.vmm.memBytes / PAGE_BYTES;
    const victim = RESERVED_PAGES + 3;
    expect(victim).toBeLessThan(memPages);
    const img = secondary.secondary!.image.memory();
    // The operator's view: the primary node logs the mismatch with its code.
    const logged: Array<Record<string, unknown>> = [];
    primary.on('log', (_level, _msg, fields) => {
      if (fields?.code === 'FTVM_ERR_SCRUB_MISMATCH') logged.push(fields);
    });
    // Pages the scrub compared since the corruption, before the slice that found it: under one pass.
    let checkedBefore = 0;
    // A page the dirty log "missed": the secondary holds bytes the primary never had.
    img[victim * PAGE_BYTES + 123] ^= 0x5a;
    const found = await new Promise<number[]>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`scrub never reported the page (${checkedBefore} pages checked, memory ${memPages} pages)`)), 30_000);
      const onScrub = (checked: number, bad: number[]): void => {
        if (!bad.includes(victim)) {
          checkedBefore += checked;
          return;
        }
        clearTimeout(t);
        rt.off('scrub', onScrub);
        resolve(bad);
      };
      rt.on('scrub', onScrub);
    });
    expect(found).toEqual([victim]);
    expect(checkedBefore).toBeLessThan(memPages);
    expect(logged).toEqual([expect.objectContaining({ code: 'FTVM_ERR_SCRUB_MISMATCH', pages: [victim], count: 1 })]);
    // Repaired: resent in the next epoch; the secondary's page equals live memory again.
    const live = await rt.vmm.readPages(victim, 1);
    for (let i = 0; i < 100; i++) {
      const now = secondary.secondary!.image.memory().subarray(victim * PAGE_BYTES, (victim + 1) * PAGE_BYTES);
      if (Buffer.compare(now, live) === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(Buffer.compare(secondary.secondary!.image.memory().subarray(victim * PAGE_BYTES, (victim + 1) * PAGE_BYTES), live)).toBe(0);
    // The next full pass finds nothing: the repair holds, and no other page differs.
    const next = await new Promise<{ checked: number; bad: number[] }>((resolve, reject) => {
      const acc = { checked: 0, bad: [] as number[] };
      const t = setTimeout(() => reject(new Error(`no full scrub pass within 30 s (${acc.checked} of ${memPages} pages)`)), 30_000);
      const onScrub = (checked: number, bad: number[]): void => {
        acc.checked += checked;
        acc.bad.push(...bad);
        if (acc.checked < memPages) return;
        clearTimeout(t);
        rt.off('scrub', onScrub);
        resolve(acc);
      };
      rt.on('scrub', onScrub);
    });
    expect(next.bad).toEqual([]);
  }, 60_000);
});
