/** Minimal leveled logger for the CLI: human lines on stderr (JSON when FTVM_LOG_FORMAT=json). */
export type Level = 'error' | 'warn' | 'info' | 'debug';
const ORDER: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export class Logger {
  constructor(
    readonly role: string,
    private level: Level = 'info',
    private json = process.env.FTVM_LOG_FORMAT === 'json',
  ) {}
  setLevel(l: Level): void {
    this.level = l;
  }
  log(level: Level, msg: string, fields: Record<string, unknown> = {}): void {
    if (ORDER[level] > ORDER[this.level]) return;
    if (this.json) {
      process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, role: this.role, msg, ...fields }, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
      return;
    }
    const extra = Object.entries(fields)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x))}`)
      .join(' ');
    process.stderr.write(`${new Date().toISOString().slice(11, 23)} ${level.toUpperCase().padEnd(5)} [${this.role}] ${msg}${extra ? ' ' + extra : ''}\n`);
  }
  error(m: string, f?: Record<string, unknown>): void {
    this.log('error', m, f);
  }
  warn(m: string, f?: Record<string, unknown>): void {
    this.log('warn', m, f);
  }
  info(m: string, f?: Record<string, unknown>): void {
    this.log('info', m, f);
  }
  debug(m: string, f?: Record<string, unknown>): void {
    this.log('debug', m, f);
  }
}

export const GUEST_LOG_LEVELS: Level[] = ['error', 'warn', 'info', 'debug'];
