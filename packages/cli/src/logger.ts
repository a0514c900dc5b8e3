import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import { ProgressReporter } from '@ftvm/metrics';
import { LOG_LEVEL_NAMES } from '@ftvm/guest-abi';

/**
 * The CLI's logger: pino underneath, one line per record on stderr (stdout carries only the
 * machine-readable lines such as `ftvm primary: listening on …`).
 *
 * Formats (FTVM_LOG_FORMAT):
 * - `json`: one JSON object per line: `{"level":"info","time":"<ISO 8601>","pid":…,"role":…,"msg":…,<fields>}`.
 * - `human`: `HH:MM:SS.mmm LEVEL [role] msg key=value …`, levels coloured on a TTY (unless NO_COLOR).
 * - unset (or anything else): human. JSON is opt-in (the container images set FTVM_LOG_FORMAT=json):
 *   scripts and tests read stderr lines such as ` PROTECTED:` and `metrics url=…`.
 *
 * Messages and field values are the same in both formats, so a word a test or an operator
 * greps for (`PROMOTED to primary`, `FTVM_ERR_GUEST_TRAP`, `UNPROTECTED`) is in both.
 */
export type Level = 'error' | 'warn' | 'info' | 'debug';
export type LogFormat = 'json' | 'human';
export const LOG_LEVELS: readonly Level[] = ['error', 'warn', 'info', 'debug'];
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'human'];

/**
 * FTVM_LOG_FORMAT=json|human wins; otherwise human lines, on a terminal or not (an operator
 * reading `npm start > file` reads the same lines). JSON is opt-in; the container images set it.
 */
export function logFormatFromEnv(env: NodeJS.ProcessEnv = process.env): LogFormat {
  return (env.FTVM_LOG_FORMAT ?? '').trim().toLowerCase() === 'json' ? 'json' : 'human';
}

/** Where log lines go; process.stderr by default. */
export interface LogSink {
  write(line: string): unknown;
  isTTY?: boolean;
}

export interface LoggerOptions {
  format?: LogFormat;
  sink?: LogSink;
  /** Colour the level in the human format. Default: sink is a TTY and NO_COLOR is unset. */
  color?: boolean;
  /**
   * Show progress of long tasks (`progress` events of any metrics bus in this process): a
   * redrawn bar on a TTY, a plain line every `progressIntervalMs` otherwise. Default true.
   */
  progress?: boolean;
  /** Non-TTY progress lines at most this often per task, ms. Default 5000. */
  progressIntervalMs?: number;
}

/** Keys pino writes itself; every other key of a record is a field. */
const RECORD_KEYS = new Set(['level', 'time', 'pid', 'hostname', 'role', 'msg']);
const COLOR: Record<string, string> = { error: '\x1b[31m', warn: '\x1b[33m', info: '\x1b[36m', debug: '\x1b[90m' };
/** Longest human line, chars: a runaway field (a big buffer) must not flood a terminal. */
const MAX_HUMAN_LINE = 16_384;

const fieldText = (v: unknown): string =>
  typeof v === 'string' ? v : JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x)) ?? String(v);

/** One pino JSON record -> the human line (without the newline). Exported for tests. */
export function humanLine(record: Record<string, unknown>, color = false): string {
  const time = typeof record.time === 'string' ? record.time.slice(11, 23) : new Date().toISOString().slice(11, 23);
  const level = String(record.level ?? 'info');
  const label = level.toUpperCase().padEnd(5);
  const extra = Object.entries(record)
    .filter(([k]) => !RECORD_KEYS.has(k))
    .map(([k, v]) => `${k}=${fieldText(v)}`)
    .join(' ');
  const line = `${time} ${color ? `${COLOR[level] ?? ''}${label}\x1b[0m` : label} [${String(record.role ?? '')}] ${String(record.msg ?? '')}${extra ? ' ' + extra : ''}`;
  return line.length > MAX_HUMAN_LINE ? `${line.slice(0, MAX_HUMAN_LINE)}… (${line.length - MAX_HUMAN_LINE} more chars)` : line;
}

/** A pino destination that rewrites each JSON record as a human line. Synchronous, like stderr. */
function humanDestination(sink: LogSink, color: boolean, bar: () => ProgressReporter | null): DestinationStream {
  return {
    write(chunk: string): void {
      // A live progress bar shares the terminal: erase it, print the record, draw it again.
      const progress = bar();
      progress?.clear();
      for (const raw of chunk.split('\n')) {
        if (!raw) continue;
        let rec: Record<string, unknown>;
        try {
          rec = JSON.parse(raw) as Record<string, unknown>;
        } catch {
          sink.write(`${raw}\n`);
          continue;
        }
        sink.write(`${humanLine(rec, color)}\n`);
      }
      progress?.redraw();
    },
  };
}

/** A sink as a pino destination (JSON lines pass through unchanged). */
function jsonDestination(sink: LogSink): DestinationStream {
  if (sink === process.stderr) return pino.destination({ dest: 2, sync: true });
  return { write: (chunk: string) => void sink.write(chunk) };
}

export class Logger {
  readonly format: LogFormat;
  /** The root logger; `pino` is its child carrying the current role. */
  private readonly root: PinoLogger;
  private pino: PinoLogger;
  private progress: ProgressReporter | null = null;
  private unsubscribeProgress: (() => void) | null = null;

  constructor(
    private currentRole: string,
    level: Level = 'info',
    opts: LoggerOptions = {},
  ) {
    const sink = opts.sink ?? process.stderr;
    this.format = opts.format ?? logFormatFromEnv(process.env);
    const color = opts.color ?? (Boolean(sink.isTTY) && process.env.NO_COLOR === undefined);
    this.root = pino(
      {
        level: LOG_LEVELS.includes(level) ? level : 'info',
        base: { pid: process.pid },
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
      },
      this.format === 'json' ? jsonDestination(sink) : humanDestination(sink, color, () => this.progress),
    );
    this.pino = this.root.child({ role: currentRole });
    if (opts.progress ?? true) {
      const tty = this.format === 'human' && Boolean(sink.isTTY);
      // Off a TTY, progress goes through the logger so JSON consumers get records, not bars.
      this.progress = new ProgressReporter({
        tty,
        intervalMs: opts.progressIntervalMs ?? 5000,
        write: tty ? (text) => void sink.write(text) : (text) => this.pino.info({ progress: true }, text.replace(/\n$/, '')),
      });
      this.unsubscribeProgress = this.progress.subscribe();
    }
  }

  /** Stop showing progress (idempotent). */
  close(): void {
    this.progress?.clear();
    this.unsubscribeProgress?.();
    this.unsubscribeProgress = null;
    this.progress = null;
  }

  get role(): string {
    return this.currentRole;
  }

  /** Records from now on carry this role (a node promoted or demoted in place). */
  setRole(role: string): void {
    if (role === this.currentRole) return;
    this.currentRole = role;
    this.pino = this.root.child({ role });
  }

  setLevel(l: Level): void {
    if (!LOG_LEVELS.includes(l)) return;
    this.root.level = l;
    this.pino.level = l;
  }

  get level(): Level {
    return this.pino.level as Level;
  }

  isLevelEnabled(l: Level): boolean {
    return this.pino.isLevelEnabled(l);
  }

  log(level: Level, msg: string, fields: Record<string, unknown> = {}): void {
    const lv = LOG_LEVELS.includes(level) ? level : 'info';
    if (!this.pino.isLevelEnabled(lv)) return;
    // bigint fields (guest clock values) are not JSON: write them as decimal strings.
    let safe = fields;
    for (const v of Object.values(fields)) {
      if (typeof v === 'bigint') {
        safe = Object.fromEntries(Object.entries(fields).map(([k, x]) => [k, typeof x === 'bigint' ? x.toString() : x]));
        break;
      }
    }
    this.pino[lv](safe, msg);
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

export const GUEST_LOG_LEVELS: readonly Level[] = LOG_LEVEL_NAMES;
