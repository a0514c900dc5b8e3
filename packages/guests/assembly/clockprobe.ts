// clockprobe: reports guest time, for clock-drift measurements. Lines on any connection:
//   TIME        -> <guest_ns>
//   TICK <ms>   -> OK   (arms a periodic self-timer every <ms> ms of guest time; 0 stops it)
//   STATS       -> ticks=.. last_now=.. period_ms=.. late_max_ns=.. late_last_ns=.. missed=..
// Ticks are scheduled on a fixed grid (deadline += period), so lateness does not
// accumulate; a tick that finds itself more than a period late counts as `missed`
// and restarts the grid from now.

import {
  Guest, setGuest, now, setTimer, cancelTimer, InputBuffer, ByteWriter, bytesEqualAscii, parseI64, parseOk,
  close, indexOfByte,
} from "@ftvm/guest-sdk/assembly";
export * from "@ftvm/guest-sdk/assembly/exports";

const MAX_LINE_BYTES: i32 = 1024;
/** Longest tick period, ms (1 hour). */
const MAX_PERIOD_MS: i64 = 3_600_000;

let periodNs: i64 = 0;
let deadline: i64 = 0;
let timerId: i32 = 0;
let ticks: i64 = 0;
let lastNow: i64 = 0;
let lateMax: i64 = 0;
let lateLast: i64 = 0;
let missed: i64 = 0;

class Conn {
  input: InputBuffer = new InputBuffer(MAX_LINE_BYTES);
}
let conns = new Map<i32, Conn>();
const out = new ByteWriter();

function arm(): void {
  if (timerId > 0) { cancelTimer(timerId); timerId = 0; }
  if (periodNs > 0) timerId = setTimer(deadline, 1);
}

function tick(): void {
  timerId = 0;
  if (periodNs == 0) return;
  let t = now();
  ticks++;
  lastNow = t;
  lateLast = t - deadline;
  if (lateLast > lateMax) lateMax = lateLast;
  deadline += periodNs;
  if (deadline <= t) {
    missed += (t - deadline) / periodNs + 1;
    deadline = t + periodNs;
  }
  arm();
}

function line(p: usize, n: i32): void {
  if (n > 0 && load<u8>(p + <usize>(n - 1)) == 13) n--;
  let sp = indexOfByte(p, n, 32);
  let cl = sp < 0 ? n : sp;
  if (bytesEqualAscii(p, cl, "TIME", true) && sp < 0) {
    out.int(now()).byte(10);
  } else if (bytesEqualAscii(p, cl, "TICK", true) && sp > 0) {
    let ms = parseI64(p + <usize>(sp + 1), n - sp - 1);
    if (!parseOk || ms < 0 || ms > MAX_PERIOD_MS) {
      out.ascii("ERR TICK takes a period in ms, 0..").int(MAX_PERIOD_MS).byte(10);
      return;
    }
    periodNs = ms * 1_000_000;
    ticks = 0;
    lateMax = 0;
    lateLast = 0;
    missed = 0;
    deadline = now() + periodNs;
    arm();
    out.ascii("OK\n");
  } else if (bytesEqualAscii(p, cl, "STATS", true) && sp < 0) {
    out.ascii("ticks=").int(ticks)
      .ascii(" last_now=").int(lastNow)
      .ascii(" period_ms=").int(periodNs / 1_000_000)
      .ascii(" late_max_ns=").int(lateMax)
      .ascii(" late_last_ns=").int(lateLast)
      .ascii(" missed=").int(missed)
      .byte(10);
  } else if (n > 0) {
    out.ascii("ERR unknown command (TIME, TICK <ms>, STATS)\n");
  }
}

class ClockProbe extends Guest {
  onData(conn: i32, ptr: usize, len: i32): void {
    let c: Conn;
    if (conns.has(conn)) c = conns.get(conn);
    else { c = new Conn(); conns.set(conn, c); }
    if (!c.input.append(ptr, len)) {
      out.ascii("ERR line longer than ").int(MAX_LINE_BYTES).ascii(" bytes\n").flush(conn);
      c.input.free();
      close(conn);
      return;
    }
    let buf = c.input;
    while (true) {
      let nl = indexOfByte(buf.data(), buf.length, 10);
      if (nl < 0) break;
      line(buf.data(), nl);
      buf.consume(nl + 1);
    }
    out.flush(conn);
  }

  onClose(conn: i32): void {
    if (conns.has(conn)) {
      conns.get(conn).input.free();
      conns.delete(conn);
    }
  }

  onTimer(tag: i32): void {
    if (tag == 1) tick();
  }
}

setGuest(new ClockProbe());
