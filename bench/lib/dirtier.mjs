// The dirtier guest driven in-process through a Vmm (no network): shared by the
// micro-benchmarks that measure the VMM's own mechanisms (pause.mjs, migration.mjs).
import { Vmm } from '../../packages/vmm/dist/index.js';

export const PAGES_PER_MIB = 256;

/** Sends one line to the dirtier on connection `conn` and resolves with its reply line (rejects on ERR). */
export function dirtierLine(vmm, conn, text) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const on = (it) => {
      if (it.conn !== conn) return;
      buf += Buffer.from(it.data).toString();
      if (buf.includes('\n')) {
        vmm.off('output', on);
        const l = buf.split('\n')[0];
        if (l.startsWith('ERR')) reject(new Error(`dirtier: ${l} (for ${text})`));
        else resolve(l);
      }
    };
    vmm.on('output', on);
    vmm.input(conn, Buffer.from(`${text}\n`));
  });
}

/**
 * Boots a dirtier whose working set of `wsMiB` is grown in <= 64 MiB steps and filled
 * (first-touching 1 GiB in one event would trip the event timeout), on connection 1.
 */
export async function bootFilledDirtier(guest, wsMiB, vmmOptions = {}) {
  const vmm = await Vmm.boot(guest, { eventTimeoutMs: 30_000, ...vmmOptions });
  vmm.open(1);
  for (let mib = Math.min(64, wsMiB); ; mib = Math.min(wsMiB, mib + 64)) {
    await dirtierLine(vmm, 1, `SET ws_pages=${mib * PAGES_PER_MIB} rate=0`);
    await dirtierLine(vmm, 1, 'FILL');
    // A collect per step keeps the local dirty log small (as the RunServer's checkpoints do).
    await vmm.collect();
    if (mib >= wsMiB) break;
  }
  return vmm;
}
