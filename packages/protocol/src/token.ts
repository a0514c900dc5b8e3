import { readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { ProtocolError } from './errors.js';
import type { TlsOptions } from './link.js';

export interface LoadedToken {
  /** The shared secret (UTF-8 bytes, surrounding whitespace trimmed); empty when none is configured. */
  token: Uint8Array;
  /** Where it came from; 'none' only with `insecure`: links are then unauthenticated in effect. */
  source: 'file' | 'env' | 'none';
}

/** Largest token file read, bytes: a token is a short secret, not a data file. */
const MAX_TOKEN_FILE_BYTES = 4096;

export const NO_TOKEN_HELP = 'make one with `ftvm token <file>` and pass --token-file <file> (or set FTVM_TOKEN) on every role';

/** FTVM_ERR_NO_TOKEN, saying how to make a token. */
export function noTokenError(): ProtocolError {
  return new ProtocolError('FTVM_ERR_NO_TOKEN', `no shared token: ${NO_TOKEN_HELP}; or pass --insecure to run unauthenticated`);
}

/**
 * The shared link secret: `tokenFile` (--token-file) wins over `env` (FTVM_TOKEN).
 * With neither: FTVM_ERR_NO_TOKEN, unless `insecure` (the operator's --insecure), when
 * both sides use an empty secret (the handshake still runs, so a peer with a token
 * configured cannot talk to one without).
 */
export function loadToken({ tokenFile, env = process.env.FTVM_TOKEN, insecure = false }: { tokenFile?: string; env?: string; insecure?: boolean } = {}): LoadedToken {
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
  if (!insecure) throw noTokenError();
  return { token: new Uint8Array(0), source: 'none' };
}

/** Writes a new random token (32 bytes, hex) to `path`, mode 0600; never over an existing file. */
export function writeTokenFile(path: string): void {
  try {
    writeFileSync(path, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ProtocolError('FTVM_ERR_TOKEN_FILE', err.code === 'EEXIST' ? `${path} exists: a token file is never overwritten (remove it first)` : `cannot write token file ${path}: ${err.message}`);
  }
}

/** Reads --tls-cert, --tls-key, --tls-ca (PEM files); undefined when none is given. */
export function loadTls(files: { cert?: string; key?: string; ca?: string }): TlsOptions | undefined {
  if (files.cert === undefined && files.key === undefined && files.ca === undefined) return undefined;
  if ((files.cert === undefined) !== (files.key === undefined))
    throw new ProtocolError('FTVM_ERR_TLS_CONFIG', '--tls-cert and --tls-key go together (a certificate and its private key)');
  const read = (what: string, path: string | undefined): Buffer | undefined => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (e) {
      throw new ProtocolError('FTVM_ERR_TLS_CONFIG', `cannot read ${what} ${path}: ${(e as Error).message}`);
    }
  };
  return { cert: read('--tls-cert', files.cert), key: read('--tls-key', files.key), ca: read('--tls-ca', files.ca) };
}
