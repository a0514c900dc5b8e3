import diagnosticsChannel from 'node:diagnostics_channel';
import { MetricsError } from './errors.js';
import { diagnosticsChannelName, type FtvmDiagnosticsMessage, type FtvmEventMap, type TaskName } from './events.js';

export type ProgressUpdate = FtvmEventMap['progress'];

export interface ProgressReporterOptions {
  /** Writes text as is (the reporter adds its own '\r' / '\n'). */
  write: (text: string) => void;
  /** A TTY gets one line redrawn in place; anything else gets plain lines. */
  tty: boolean;
  /** Non-TTY: at most one line per task per this many ms between start and done. Default 5000. */
  intervalMs?: number;
  /** Clock, ms. Default performance.now. */
  now?: () => number;
  /** Bar width, characters (TTY). Default 24. */
  barWidth?: number;
}

interface TaskState {
  update: ProgressUpdate;
  startedAt: number;
  lastLineAt: number;
}

const KiB = 1024;
function amount(v: number, unit: ProgressUpdate['unit']): string {
  return unit === 'bytes' ? formatBytes(v) : `${Math.round(v)}`;
}

/** Bytes in the largest binary unit that keeps the number at least 1 (`512 B`, `3.4 KiB`, `1.2 MiB`). */
export function formatBytes(v: number): string {
  if (v >= KiB * KiB * KiB) return `${(v / (KiB * KiB * KiB)).toFixed(2)} GiB`;
  if (v >= KiB * KiB) return `${(v / (KiB * KiB)).toFixed(1)} MiB`;
  if (v >= KiB) return `${(v / KiB).toFixed(1)} KiB`;
  return `${Math.round(v)} B`;
}
const unitText = (u: ProgressUpdate['unit']): string => (u === 'bytes' ? '' : ` ${u}`);
const pct = (p: ProgressUpdate): number => (p.total > 0 ? Math.min(100, (100 * p.done) / p.total) : 0);

/**
 * Shows progress of long tasks (initial sync of a new secondary, migration, live snapshot,
 * restore) from `progress` events. On a TTY: one status line redrawn in place (`\r`), erased
 * before any other output (see `clear`/`redraw`) and replaced by a final line when a task ends.
 * Elsewhere: a plain line when a task starts, at most every `intervalMs` while it runs, and when
 * it ends. State is bounded by the four task names.
 */
export class ProgressReporter {
  private readonly tasks = new Map<TaskName, TaskState>();
  private readonly write: (text: string) => void;
  private readonly tty: boolean;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly barWidth: number;
  /** Chars of the live line currently on screen (TTY), 0 when none. */
  private shown = 0;

  constructor(opts: ProgressReporterOptions) {
    const intervalMs = opts.intervalMs ?? 5000;
    if (!Number.isFinite(intervalMs) || intervalMs < 0) {
      throw new MetricsError('FTVM_ERR_INVALID_OPTION', `progress intervalMs must be a number >= 0, got ${String(intervalMs)}`);
    }
    const barWidth = opts.barWidth ?? 24;
    if (!Number.isInteger(barWidth) || barWidth < 4 || barWidth > 200) {
      throw new MetricsError('FTVM_ERR_INVALID_OPTION', `progress barWidth must be an integer in 4..200, got ${String(barWidth)}`);
    }
    this.write = opts.write;
    this.tty = opts.tty;
    this.intervalMs = intervalMs;
    this.now = opts.now ?? (() => performance.now());
    this.barWidth = barWidth;
  }

  /** Tasks started and not finished. */
  get active(): TaskName[] {
    return [...this.tasks.keys()];
  }

  update(p: ProgressUpdate): void {
    const t = this.now();
    let st = this.tasks.get(p.task);
    const finished = p.total > 0 && p.done >= p.total;
    if (!st) {
      // A finished task we never saw start (a late subscriber): report it once, as done.
      st = { update: p, startedAt: t, lastLineAt: t };
      this.tasks.set(p.task, st);
      if (!finished) {
        this.line(`${p.task}: started${p.total > 0 ? `, ${amount(p.total, p.unit)}${unitText(p.unit)} to go` : ''}`);
        return;
      }
    }
    st.update = p;
    if (finished) {
      this.tasks.delete(p.task);
      const secs = ((t - st.startedAt) / 1000).toFixed(2);
      this.line(`${p.task}: done, ${amount(p.total, p.unit)}${unitText(p.unit)} in ${secs} s`);
      return;
    }
    if (this.tty) {
      this.redraw();
    } else if (t - st.lastLineAt >= this.intervalMs) {
      st.lastLineAt = t;
      this.line(this.describe(p));
    }
  }

  /** TTY: erase the live line so another writer can print a whole line. No-op elsewhere. */
  clear(): void {
    if (this.tty && this.shown > 0) {
      this.write('\r\x1b[K');
      this.shown = 0;
    }
  }

  /** TTY: draw the live line of the running tasks again (after `clear`). */
  redraw(): void {
    if (!this.tty) return;
    const text = [...this.tasks.values()].map((s) => this.bar(s.update)).join('   ');
    this.write(`\r\x1b[K${text}`);
    this.shown = text.length;
  }

  private line(text: string): void {
    this.clear();
    this.write(`${text}\n`);
    if (this.tty && this.tasks.size > 0) this.redraw();
  }

  private describe(p: ProgressUpdate): string {
    if (p.total === 0) return `${p.task}: ${amount(p.done, p.unit)}${unitText(p.unit)} so far`;
    return `${p.task}: ${pct(p).toFixed(0)}% (${amount(p.done, p.unit)}/${amount(p.total, p.unit)}${unitText(p.unit)})`;
  }

  private bar(p: ProgressUpdate): string {
    const filled = Math.round((pct(p) / 100) * this.barWidth);
    return `${p.task} [${'#'.repeat(filled)}${'.'.repeat(this.barWidth - filled)}] ${this.describe(p).slice(p.task.length + 2)}`;
  }

  /**
   * Feeds this reporter from every FtvmEvents bus of the process (the `ftvm:progress`
   * diagnostics channel), so it needs no reference to the runtime's bus. Returns the unsubscribe.
   */
  subscribe(): () => void {
    const name = diagnosticsChannelName('progress');
    const onMessage = (m: unknown): void => {
      const msg = m as FtvmDiagnosticsMessage<'progress'>;
      const p = msg?.payload;
      if (!p || typeof p.done !== 'number' || typeof p.total !== 'number' || !(p.done >= 0) || !(p.total >= 0)) return;
      this.update(p);
    };
    diagnosticsChannel.subscribe(name, onMessage);
    return () => diagnosticsChannel.unsubscribe(name, onMessage);
  }
}
