import { readFileSync } from 'node:fs';
import { ProtocolError } from './errors.js';

export interface LoadedToken {
  /** The shared secret (UTF-8 bytes, surrounding whitespace trimmed); empty when none is configured. */
  token: Uint8Array;
  /** Where it came from; 'none' means links are unauthenticated in effect: the runtime should warn. */
  source: 'file' | 'env' | 'none';
}

/** Largest token file read, bytes: a token is a short secret, not a data file. */
const MAX_TOKEN_FILE_BYTES = 4096;

/**
 * The shared link secret: `tokenFile` (--token-file) wins over `env` (FTVM_TOKEN).
 * With neither, both sides use an empty secret; the handshake still runs, so a peer
 * with a token configured cannot talk to one without.
 */
export function loadToken({ tokenFile, env = process.env.FTVM_TOKEN }: { tokenFile?: string; env?: string } = {}): LoadedToken {
  const opts = { tokenFile, env };
  if (opts.tokenFile !== undefined) {
    let text: Buffer;
    try {
      text = readFileSync(opts.tokenFile);
    } catch (e) {
      throw new ProtocolError('FTVM_ERR_TOKEN_FILE', `cannot read token file ${opts.tokenFile}: ${(e as Error).message}`);
    }
    if (text.length > MAX_TOKEN_FILE_BYTES) throw new ProtocolError('FTVM_ERR_TOKEN_FILE', `token file ${opts.tokenFile} is over ${MAX_TOKEN_FILE_BYTES} bytes`);
    const token = text.toString('utf8').trim();
    if (token.length === 0) throw new ProtocolError('FTVM_ERR_TOKEN_FILE', `token file ${opts.tokenFile} is empty`);
    return { token: new Uint8Array(Buffer.from(token, 'utf8')), source: 'file' };
  }
  const fromEnv = opts.env?.trim();
  if (fromEnv) return { token: new Uint8Array(Buffer.from(fromEnv, 'utf8')), source: 'env' };
  return { token: new Uint8Array(0), source: 'none' };
}
