import type { Vmm } from '@ftvm/vmm';

/** Sends one line to an in-process guest on connection `conn` and resolves with its first reply line. */
export function vmmLine(vmm: Vmm, conn: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    let buf = '';
    const on = (it: { conn: number; data: Uint8Array }) => {
      if (it.conn !== conn) return;
      buf += Buffer.from(it.data).toString();
      if (buf.includes('\n')) {
        vmm.off('output', on);
        resolve(buf.split('\n')[0]!);
      }
    };
    vmm.on('output', on);
    vmm.input(conn, Buffer.from(`${text}\n`));
  });
}
