// Logical timers multiplexed onto the host's single one-shot timer (timer_set).
// All deadlines are absolute guest time in ns, the clock now() reads.

import { host_timer_set } from "./abi";
import { now } from "./clock";

/** Most logical timers armed at once; setTimer returns -1 beyond it. */
export const MAX_TIMERS: i32 = 1024;

class Timer {
  constructor(public id: i32, public deadline: i64, public tag: i32) {}
}

let timers = new Array<Timer>();
let nextId: i32 = 1;
// The deadline last given to the host; 0 when disarmed.
let armed: i64 = 0;

/** Arms a logical timer at absolute guest time deadlineNs; the guest's onTimer(tag)
 *  runs once now() >= deadlineNs. Returns its id (> 0), or -1 when MAX_TIMERS are armed. */
export function setTimer(deadlineNs: i64, tag: i32 = 0): i32 {
  if (timers.length >= MAX_TIMERS) return -1;
  let id = nextId;
  // Ids wrap after 2^31 timers; 0 and negatives are never handed out.
  nextId = nextId == i32.MAX_VALUE ? 1 : nextId + 1;
  timers.push(new Timer(id, deadlineNs < 1 ? 1 : deadlineNs, tag));
  syncHostTimer();
  return id;
}

/** Arms a logical timer ms milliseconds of guest time from now. */
export function after(ms: i64, tag: i32 = 0): i32 {
  return setTimer(now() + ms * 1_000_000, tag);
}

/** Arms a logical timer ns nanoseconds of guest time from now. */
export function afterNs(ns: i64, tag: i32 = 0): i32 {
  return setTimer(now() + ns, tag);
}

/** Cancels a logical timer; false when it is not armed (fired or unknown). */
export function cancelTimer(id: i32): bool {
  for (let i = 0, n = timers.length; i < n; i++) {
    if (unchecked(timers[i]).id == id) {
      timers.splice(i, 1);
      syncHostTimer();
      return true;
    }
  }
  return false;
}

/** Number of armed logical timers. */
export function timerCount(): i32 {
  return timers.length;
}

/** Deadline of the earliest armed logical timer, ns; 0 when none. */
export function nextDeadline(): i64 {
  let best: i64 = 0;
  for (let i = 0, n = timers.length; i < n; i++) {
    let d = unchecked(timers[i]).deadline;
    if (best == 0 || d < best) best = d;
  }
  return best;
}

/** Keeps the host's one-shot timer at the earliest logical deadline. */
export function syncHostTimer(): void {
  let d = nextDeadline();
  if (d != armed) {
    armed = d;
    host_timer_set(d);
  }
}

/**
 * Runs every logical timer that is due, earliest first, then re-arms the host timer.
 * The due set is fixed on entry: a handler that arms an already-due timer waits for
 * the next host timer instead of looping here; one that cancels a due timer wins.
 */
export function dispatchTimers(fire: (tag: i32) => void): void {
  // The host timer is one-shot: once fired it is no longer armed.
  armed = 0;
  let t = now();
  let due = new Array<Timer>();
  for (let i = 0, n = timers.length; i < n; i++) {
    let tm = unchecked(timers[i]);
    if (tm.deadline <= t) due.push(tm);
  }
  due.sort((a: Timer, b: Timer): i32 => a.deadline < b.deadline ? -1 : a.deadline > b.deadline ? 1 : a.id - b.id);
  for (let k = 0, m = due.length; k < m; k++) {
    let tm = unchecked(due[k]);
    let idx = timers.indexOf(tm);
    if (idx < 0) continue;
    timers.splice(idx, 1);
    fire(tm.tag);
  }
  syncHostTimer();
}

/** Forgets every logical timer and disarms the host timer. */
export function clearTimers(): void {
  timers = new Array<Timer>();
  syncHostTimer();
}
