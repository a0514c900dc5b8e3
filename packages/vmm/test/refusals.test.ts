import { describe, expect, it } from 'vitest';
import { decodeCheckpoint, encodeCheckpoint, prepareGuest, readGuest, Vmm } from '@ftvm/vmm';

/** What the VMM refuses: a checkpoint it cannot use, and requests to a guest that is not running. */
describe('Vmm refusals', () => {
  const kv = (() => {
    const { name, wasm } = readGuest('kv');
    return prepareGuest(name, wasm);
  })();
  const http = (() => {
    const { name, wasm } = readGuest('http');
    return prepareGuest(name, wasm);
  })();

  it('a checkpoint of another module, or one that does not decode, is FTVM_ERR_CHECKPOINT_INVALID', async () => {
    const vmm = await Vmm.boot(kv);
    const ckpt = await vmm.capture();
    await vmm.stop();
    await expect(Vmm.restore(http, ckpt)).rejects.toMatchObject({ code: 'FTVM_ERR_CHECKPOINT_INVALID', message: expect.stringMatching(/checkpoint is of module \w+, guest is \w+/) });
    const bytes = encodeCheckpoint(ckpt);
    expect(decodeCheckpoint(bytes).memBytes).toBe(ckpt.memBytes);
    expect(() => decodeCheckpoint(bytes.subarray(0, bytes.length >> 1))).toThrow(expect.objectContaining({ code: 'FTVM_ERR_CHECKPOINT_INVALID' }));
    // The checkpoint of its own module restores.
    const back = await Vmm.restore(kv, ckpt);
    await back.stop();
  });

  it('a request to a stopped guest is FTVM_ERR_GUEST_STOPPED', async () => {
    const vmm = await Vmm.boot(kv);
    await vmm.stop();
    await expect(vmm.capture()).rejects.toMatchObject({ code: 'FTVM_ERR_GUEST_STOPPED', message: 'the guest is stopped' });
  });
});
