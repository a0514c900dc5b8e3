import { loadTls, loadToken, type TlsOptions } from '@ftvm/protocol';
import type { FlagTable } from './flags.js';
import type { Logger } from './logger.js';

/**
 * Credentials of every role that opens or dials a link (primary, secondary, proxy, run/restore/receive
 * --control, snapshot, migrate): the shared token, required unless --insecure, and optional TLS.
 */
export const credentialFlags: FlagTable = {
  'token-file': { type: 'string', help: 'file holding the shared secret (else $FTVM_TOKEN); make one with `ftvm token <file>`' },
  insecure: { type: 'boolean', default: false, help: 'run without a token: anyone who reaches this process\'s link port controls it (tests on one host only)' },
  'tls-cert': { type: 'string', help: 'PEM certificate of this process: its listener serves wss:// (with --tls-key); also its client certificate for mutual TLS' },
  'tls-key': { type: 'string', help: 'PEM private key of --tls-cert' },
  'tls-ca': { type: 'string', help: 'PEM CA certificate: dial wss:// peers signed by it, and require listener clients to present a certificate signed by it (mutual TLS)' },
};

export interface Credentials {
  token: Uint8Array;
  insecure: boolean;
  tls?: TlsOptions;
}

/** Reads the credential flags: FTVM_ERR_NO_TOKEN without a token (unless --insecure, said loudly). */
export function credentials(f: Record<string, unknown>, log: Logger): Credentials {
  const insecure = f.insecure === true;
  const { token, source } = loadToken({ tokenFile: f['token-file'] as string | undefined, insecure });
  if (source === 'none') {
    log.warn('INSECURE: no token (--insecure): anyone who can reach this process\'s link port can fence, promote, migrate or read the guest');
    process.stderr.write('ftvm: WARNING: running with --insecure: links are NOT authenticated; never use this on a network\n');
  }
  const tls = loadTls({ cert: f['tls-cert'] as string | undefined, key: f['tls-key'] as string | undefined, ca: f['tls-ca'] as string | undefined });
  return { token, insecure: source === 'none', ...(tls ? { tls } : {}) };
}
