// RESP2 helpers for the kv tests: encode commands as clients do.

/** A command as a RESP multibulk array (what redis-cli and redis-benchmark send). */
export function cmd(...args: (string | Uint8Array)[]): string {
  let s = `*${args.length}\r\n`;
  for (const a of args) {
    const bytes = typeof a === 'string' ? Buffer.from(a) : Buffer.from(a);
    s += `$${bytes.length}\r\n${bytes.toString('latin1')}\r\n`;
  }
  return s;
}

export function bulk(s: string | null): string {
  return s === null ? '$-1\r\n' : `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
}

export function arr(...items: string[]): string {
  return `*${items.length}\r\n${items.join('')}`;
}

export function int(n: number | bigint): string {
  return `:${n}\r\n`;
}

export const OK = '+OK\r\n';
export const NIL = '$-1\r\n';
