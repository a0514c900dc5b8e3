import { resolve } from 'node:path';
import { formatBytes } from '@ftvm/metrics';
import { STOP_RULES, THROTTLE_MODES, type PrecopyProgress, type PrecopyRequestOptions, type PrecopyResult, type StopRuleName, type ThrottleMode } from '@ftvm/precopy';
import { CliError } from '../errors.js';
import { int, oneOf, type FlagTable } from '../flags.js';
import { credentialFlags } from '../credentials.js';

/** Bytes per second: a number with an optional k/M/G suffix (powers of 1000, bytes), 0 = unlimited. */
export const rate = (raw: string, name: string): number => {
  const m = /^(\d+(?:\.\d+)?)([kKmMgG]?)(?:B\/s)?$/.exec(raw.trim());
  if (!m) throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--${name} must be bytes/s with an optional k, M or G suffix (e.g. 100M), got '${raw}'`);
  const mul = { '': 1, k: 1e3, K: 1e3, m: 1e6, M: 1e6, g: 1e9, G: 1e9 }[m[2]!]!;
  return Math.round(Number(m[1]) * mul);
};

/** Engine flags shared by ftvm migrate and ftvm snapshot. */
export const precopyFlags: FlagTable = {
  'stop-rule': { type: 'string', default: 'mp', parse: oneOf(...STOP_RULES), help: 'plain: iterate until the remainder fits --downtime-limit-ms, give up after --max-rounds; mp: also stop early when the same memory regions keep coming back' },
  'downtime-limit-ms': { type: 'string', default: 300, parse: int(0, 600_000), help: 'largest acceptable stop-and-copy, at the measured bandwidth' },
  'max-rounds': { type: 'string', default: 30, parse: int(1, 10_000), help: 'most pre-copy rounds (round 0 included)' },
  'bandwidth-limit': { type: 'string', default: 0, parse: rate, help: 'cap on bytes/s sent (k/M/G suffix; 0: unlimited)' },
  throttle: { type: 'string', default: 'off', parse: oneOf(...THROTTLE_MODES), help: 'auto: delay the guest\'s event dispatch in steps while it dirties memory faster than rounds send it' },
  ...credentialFlags,
};

export function requestOptions(f: Record<string, unknown>): PrecopyRequestOptions {
  return {
    stopRule: f['stop-rule'] as StopRuleName,
    downtimeLimitMs: f['downtime-limit-ms'] as number,
    maxRounds: f['max-rounds'] as number,
    bandwidthLimit: f['bandwidth-limit'] as number,
    throttle: f.throttle as ThrottleMode,
  };
}

export const absolute = (p: string): string => resolve(p);


export function progressLine(p: PrecopyProgress): string {
  const eta = p.etaMs === null || !Number.isFinite(p.etaMs) ? '?' : `${(p.etaMs / 1000).toFixed(1)} s`;
  return `${p.phase} ${p.round}: ${p.pagesLeft}/${p.roundPages} ${p.phase === 'pull' ? 'blocks' : 'pages'} left, dirty ${Math.round(p.dirtyPagesPerSec)} pages/s, throttle ${p.throttleMs} ms, sent ${formatBytes(p.wireBytes)}, ETA ${eta}`;
}

/** Progress: one line redrawn on a TTY; off a TTY, one line per round and phase. */
export function progressPrinter(): { update: (p: PrecopyProgress) => void; end: () => void } {
  const tty = process.stderr.isTTY === true;
  let last = '';
  let shown = false;
  return {
    update(p) {
      if (tty) {
        process.stderr.write(`\r\x1b[K${progressLine(p)}`);
        shown = true;
        return;
      }
      const key = `${p.phase}:${p.round}`;
      if (key === last) return;
      last = key;
      process.stderr.write(`${progressLine(p)}\n`);
    },
    end() {
      if (tty && shown) process.stderr.write('\r\x1b[K');
    },
  };
}

export function summary(r: PrecopyResult & { path?: string; fileBytes?: number }): Record<string, unknown> {
  return {
    ok: r.ok, stopRule: r.stopRule, reason: r.reason, rounds: r.rounds, totalMs: Math.round(r.totalMs), downtimeMs: Math.round(r.downtimeMs),
    wireBytes: r.wireBytes, pagesSent: r.pagesSent, finalPages: r.finalPages, maxThrottleMs: r.maxThrottleMs,
    ...(r.fileBytes !== undefined ? { fileBytes: r.fileBytes } : {}),
    ...(r.downtimeParts ? { downtimeParts: { holdMs: Math.round(r.downtimeParts.holdMs), sendMs: Math.round(r.downtimeParts.sendMs), startMs: Math.round(r.downtimeParts.startMs) } } : {}),
    ...(r.disk ? { disk: r.disk } : {}),
  };
}
