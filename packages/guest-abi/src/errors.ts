/**
 * Base of every coded error ftvm raises. Users match on `code` (stable, `FTVM_ERR_*`),
 * never on the message. Each package declares its subclasses in its own src/errors.ts;
 * docs/errors.md lists every code.
 */
export class FtvmError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
  toJSON(): { code: string; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** The guest module does not satisfy the ABI (missing or wrong export, version, import). */
export class AbiError extends FtvmError {}

export function isFtvmError(e: unknown): e is FtvmError {
  const code = e instanceof Error ? (e as Error & { code?: unknown }).code : undefined;
  return typeof code === 'string' && code.startsWith('FTVM_ERR_');
}
