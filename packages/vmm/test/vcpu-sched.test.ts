import { describe, expect, it } from 'vitest';
import { Vmm, prepareGuest, readGuest, setDefaultVcpuSched } from '@ftvm/vmm';

// SCHED_FIFO itself is checked with real processes in packages/cli/test/vcpu-sched.test.ts.
describe('VmmOptions.vcpuSched', () => {
  it('refuses a class other than normal or fifo, before any thread starts', async () => {
    const { name, wasm } = readGuest('kv');
    await expect(Vmm.boot(prepareGuest(name, wasm), { vcpuSched: 'rr' as never })).rejects.toMatchObject({
      code: 'FTVM_ERR_VMM_OPTION',
      message: 'vcpuSched must be one of normal, fifo, got rr',
    });
    expect(() => setDefaultVcpuSched('idle' as never)).toThrow(/vcpuSched must be one of normal, fifo, got idle/);
  });
});
