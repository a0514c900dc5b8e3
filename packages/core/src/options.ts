import { CORE_ERR, CoreOptionError } from './errors.js';

/**
 * Option readers: each validates once, at construction, and names the option in its
 * message ("adaptive.minGapMs must be a finite number >= 0, got -1").
 */

export function optNumber(
  scope: string,
  opts: Record<string, unknown> | undefined,
  name: string,
  def: number,
  check: { min?: number; minExclusive?: number; integer?: boolean } = {},
): number {
  const v = opts?.[name];
  if (v === undefined) return def;
  const full = scope ? `${scope}.${name}` : name;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new CoreOptionError(CORE_ERR.OPTION, `${full} must be a finite number, got ${String(v)}`);
  }
  if (check.integer && !Number.isInteger(v)) {
    throw new CoreOptionError(CORE_ERR.OPTION, `${full} must be an integer, got ${v}`);
  }
  if (check.min !== undefined && v < check.min) {
    throw new CoreOptionError(CORE_ERR.OPTION, `${full} must be >= ${check.min}, got ${v}`);
  }
  if (check.minExclusive !== undefined && v <= check.minExclusive) {
    throw new CoreOptionError(CORE_ERR.OPTION, `${full} must be > ${check.minExclusive}, got ${v}`);
  }
  return v;
}

export function optEnum<T extends string>(
  scope: string,
  opts: Record<string, unknown> | undefined,
  name: string,
  values: readonly T[],
  def: T,
): T {
  const v = opts?.[name];
  if (v === undefined) return def;
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
    const full = scope ? `${scope}.${name}` : name;
    throw new CoreOptionError(CORE_ERR.OPTION, `${full} must be one of ${values.join(', ')}, got ${String(v)}`);
  }
  return v as T;
}

/** Refuses option names the reader does not know (a typo must not silently use a default). */
export function rejectUnknown(scope: string, opts: Record<string, unknown> | undefined, known: readonly string[]): void {
  if (opts === undefined) return;
  if (typeof opts !== 'object' || opts === null) {
    throw new CoreOptionError(CORE_ERR.OPTION, `${scope} options must be an object`);
  }
  for (const k of Object.keys(opts)) {
    if (!known.includes(k)) {
      throw new CoreOptionError(CORE_ERR.OPTION, `${scope}.${k} is not an option (known: ${known.join(', ')})`);
    }
  }
}
