import { parseArgs } from 'node:util';
import { CliError } from './errors.js';

/** One flag: its type, default, help text and validation live in one row. */
export interface FlagSpec<T = unknown> {
  type: 'string' | 'boolean';
  short?: string;
  default?: T;
  help: string;
  /** Parses and validates the raw value; throws a message naming the flag. */
  parse?: (raw: string, name: string) => T;
  required?: boolean;
  multiple?: boolean;
}

export type FlagTable = Record<string, FlagSpec>;

export interface CommandSpec<F extends FlagTable = FlagTable> {
  name: string;
  summary: string;
  usage: string;
  flags: F;
  /** Positional arguments allowed (name for help), none if absent. */
  positionals?: string[];
  run: (flags: Record<string, unknown>, positionals: string[]) => Promise<number | void>;
}

export const int =
  (min: number, max = Number.MAX_SAFE_INTEGER) =>
  (raw: string, name: string): number => {
    const n = Number(raw);
    if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max)
      throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--${name} must be an integer from ${min} to ${max}, got '${raw}'`);
    return n;
  };

const SIZE_UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/**
 * A size in bytes: a count of bytes or with a binary unit (64M, 1G, 512KiB; K/M/G/T are
 * powers of 1024), a multiple of `multiple`, from `min` to `max` bytes.
 */
export const size =
  (min: number, max: number, multiple = 1) =>
  (raw: string, name: string): number => {
    const m = /^(\d+)\s*([KMGT]?)(?:i?B)?$/i.exec(raw.trim());
    const n = m ? Number(m[1]) * SIZE_UNITS[m[2]!.toUpperCase()]! : NaN;
    if (!m || !Number.isSafeInteger(n) || n < min || n > max || n % multiple !== 0)
      throw new CliError(
        'FTVM_ERR_CLI_BAD_VALUE',
        `--${name} must be a size from ${min} to ${max} bytes${multiple > 1 ? ` in whole ${multiple}-byte blocks` : ''} (e.g. 64M, 1G), got '${raw}'`,
      );
    return n;
  };

export const oneOf =
  <T extends string>(...values: T[]) =>
  (raw: string, name: string): T => {
    if (!(values as string[]).includes(raw))
      throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--${name} must be one of ${values.join(', ')}, got '${raw}'`);
    return raw as T;
  };

export const hostPort = (raw: string, name: string): { host: string; port: number } => {
  const m = /^(.*):(\d+)$/.exec(raw);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || port < 0 || port > 65535)
    throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--${name} must be host:port (e.g. 127.0.0.1:7000), got '${raw}'`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
};

/** Parses argv for one command; unknown flags and bad values are coded errors. */
export function parseFlags(spec: CommandSpec, argv: string[]): { flags: Record<string, unknown>; positionals: string[] } {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, f] of Object.entries(spec.flags)) options[name] = { type: f.type, ...(f.short ? { short: f.short } : {}), ...(f.multiple ? { multiple: true } : {}) };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (e) {
    const err = e as Error & { code?: string };
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION')
      throw new CliError('FTVM_ERR_CLI_UNKNOWN_FLAG', `${err.message.split('.')[0]} for 'ftvm ${spec.name}' (see ftvm ${spec.name} --help)`);
    throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `${err.message.split('\n')[0]} (see ftvm ${spec.name} --help)`);
  }
  const flags: Record<string, unknown> = { help: parsed.values.help === true };
  if (flags.help) return { flags, positionals: parsed.positionals };
  for (const [name, f] of Object.entries(spec.flags)) {
    const raw = parsed.values[name];
    if (raw === undefined) {
      if (f.required) throw new CliError('FTVM_ERR_CLI_MISSING', `'ftvm ${spec.name}' needs --${name}: ${f.help}`);
      flags[name] = f.default;
    } else if (f.type === 'string' && f.parse) {
      flags[name] = Array.isArray(raw) ? raw.map((r) => f.parse!(String(r), name)) : f.parse(String(raw), name);
    } else {
      flags[name] = raw;
    }
  }
  const max = spec.positionals?.length ?? 0;
  if (parsed.positionals.length > max)
    throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `'ftvm ${spec.name}' takes ${max ? spec.positionals!.join(' ') : 'no arguments'}, got '${parsed.positionals.join(' ')}'`);
  return { flags, positionals: parsed.positionals };
}

export function helpText(spec: CommandSpec): string {
  const rows = Object.entries(spec.flags).map(([name, f]) => {
    const left = `  --${name}${f.type === 'string' ? ' <value>' : ''}`;
    const def = f.default !== undefined && f.default !== false ? ` (default: ${String(f.default)})` : f.required ? ' (required)' : '';
    return `${left.padEnd(34)} ${f.help}${def}`;
  });
  return [`ftvm ${spec.name}: ${spec.summary}`, '', `usage: ${spec.usage}`, '', 'options:', ...rows, `${'  -h, --help'.padEnd(34)} show this help`, ''].join('\n');
}

export const wsUrl = (raw: string, name: string): string => {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--${name} must be a ws:// URL (e.g. ws://127.0.0.1:7002), got '${raw}'`);
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new CliError('FTVM_ERR_CLI_BAD_VALUE', `--${name} must be a ws:// or wss:// URL, got '${raw}'`);
  return raw;
};
