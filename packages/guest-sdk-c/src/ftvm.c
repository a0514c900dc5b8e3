/*
 * The ftvm_* exports of ABI v1 for a C guest, on top of the ftvm_guest_* handlers.
 * The ftvm_abi_version global is added after linking (C cannot define a wasm global
 * export): packages/guests/scripts/build-native.mjs does it.
 */
#include "ftvm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT(n) __attribute__((export_name(#n)))

/* pvclock_vcpu_time_info (Linux/KVM layout). 32-aligned: never straddles a 4 KiB page. */
struct pvclock {
  uint32_t version;
  uint32_t pad0;
  uint64_t tsc_timestamp;
  uint64_t system_time;
  uint32_t tsc_to_system_mul;
  int8_t tsc_shift;
  uint8_t flags;
  uint8_t pad[2];
};
static volatile struct pvclock pvclock __attribute__((aligned(32)));

int64_t ftvm_now(void) {
  for (int tries = 0; tries < (1 << 20); tries++) {
    uint32_t v1 = pvclock.version;
    if (v1 & 1) continue;
    if (v1 == 0) return 0;
    uint64_t ts = pvclock.tsc_timestamp, sys = pvclock.system_time;
    uint32_t mul = pvclock.tsc_to_system_mul;
    int shift = pvclock.tsc_shift;
    uint64_t tsc = (uint64_t)ftvm_host_rdtsc();
    if (pvclock.version != v1) continue;
    uint64_t d = (int64_t)(tsc - ts) > 0 ? tsc - ts : 0;
    if (shift >= 0) d <<= shift;
    else d >>= -shift;
    /* (d * mul) >> 32, exact for any 64-bit d. */
    return (int64_t)(sys + (d >> 32) * mul + (((d & 0xffffffffu) * mul) >> 32));
  }
  ftvm_fatal("pvclock version never settled");
}

/* ---- logical timers ---- */
struct timer {
  int64_t deadline;
  uint32_t seq; /* 0: free */
  int32_t tag;
};
static struct timer timers[FTVM_MAX_TIMERS];
static uint32_t timer_seq = 1;
static int64_t host_deadline; /* what timer_set last armed (0: none) */

int ftvm_timer_at(int64_t deadline, int32_t tag) {
  for (int i = 0; i < FTVM_MAX_TIMERS; i++) {
    if (timers[i].seq) continue;
    timers[i].deadline = deadline < 1 ? 1 : deadline;
    timers[i].tag = tag;
    timers[i].seq = timer_seq++;
    return i;
  }
  return -1;
}

int ftvm_timer_after_ms(int64_t ms, int32_t tag) { return ftvm_timer_at(ftvm_now() + ms * 1000000, tag); }

int ftvm_timer_cancel(int id) {
  if (id < 0 || id >= FTVM_MAX_TIMERS || !timers[id].seq) return 0;
  timers[id].seq = 0;
  return 1;
}

/* After every event: the host's one-shot timer follows the earliest logical deadline. */
static void rearm(void) {
  int64_t next = 0;
  for (int i = 0; i < FTVM_MAX_TIMERS; i++)
    if (timers[i].seq && (next == 0 || timers[i].deadline < next)) next = timers[i].deadline;
  if (next != host_deadline) {
    host_deadline = next;
    ftvm_host_timer_set(next);
  }
}

/* ---- misc ---- */
void ftvm_random(void *p, size_t n) { ftvm_host_random(p, (int32_t)n); }

uint64_t ftvm_random_u64(void) {
  uint64_t v;
  ftvm_host_random(&v, sizeof v);
  return v;
}

void ftvm_log(int level, const char *msg, size_t len) { ftvm_host_log(level, msg, (int32_t)len); }

void ftvm_logf(int level, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  ftvm_host_log(level, buf, n < (int)sizeof buf ? n : (int)sizeof buf - 1);
}

_Noreturn void ftvm_fatal(const char *msg) {
  static const char prefix[] = "abort: ";
  char buf[256];
  size_t n = strlen(msg);
  if (n > sizeof buf - sizeof prefix) n = sizeof buf - sizeof prefix;
  memcpy(buf, prefix, sizeof prefix - 1);
  memcpy(buf + sizeof prefix - 1, msg, n);
  ftvm_host_log(FTVM_LOG_ERROR, buf, (int32_t)(sizeof prefix - 1 + n));
  __builtin_trap();
}

/* ---- the ABI exports ---- */
extern void __wasm_call_ctors(void);

EXPORT(ftvm_init) void ftvm_init(void) {
  __wasm_call_ctors();
  ftvm_host_clock_register((void *)&pvclock);
  ftvm_guest_init();
  rearm();
}

/* Input buffers: one kept for reuse (a delivery writes the same pages each time),
 * others from malloc. Each is freed by the ftvm_on_data it is passed to. */
static uint8_t *rx_buf;
static size_t rx_cap;
static int rx_busy;
#define RX_KEEP_MAX (1u << 20)

EXPORT(ftvm_alloc) uint8_t *ftvm_alloc(int32_t len) {
  if (len < 0) ftvm_fatal("ftvm_alloc: negative length");
  size_t n = len ? (size_t)len : 1;
  if (!rx_busy && n <= RX_KEEP_MAX) {
    if (n > rx_cap) {
      size_t cap = rx_cap ? rx_cap : 16384;
      while (cap < n) cap *= 2;
      free(rx_buf);
      rx_buf = malloc(cap);
      if (!rx_buf) ftvm_fatal("ftvm_alloc: out of memory");
      rx_cap = cap;
    }
    rx_busy = 1;
    return rx_buf;
  }
  uint8_t *p = malloc(n);
  if (!p) ftvm_fatal("ftvm_alloc: out of memory");
  return p;
}

EXPORT(ftvm_on_data) void ftvm_on_data(int32_t conn, uint8_t *ptr, int32_t len) {
  ftvm_guest_data(conn, ptr, (size_t)len);
  if (ptr == rx_buf) rx_busy = 0;
  else free(ptr);
  rearm();
}

EXPORT(ftvm_on_open) void ftvm_on_open(int32_t conn) {
  ftvm_guest_open(conn);
  rearm();
}

EXPORT(ftvm_on_close) void ftvm_on_close(int32_t conn) {
  ftvm_guest_close(conn);
  rearm();
}

/* Runs the timers due now, earliest first; the set is fixed on entry, so a handler that
 * arms an already-due timer waits for the next host timer instead of looping. */
EXPORT(ftvm_on_timer) void ftvm_on_timer(void) {
  host_deadline = 0; /* the host timer is one-shot: it just fired */
  int64_t now = ftvm_now();
  uint32_t limit = timer_seq;
  for (;;) {
    int best = -1;
    for (int i = 0; i < FTVM_MAX_TIMERS; i++) {
      struct timer *t = &timers[i];
      if (t->seq && t->seq < limit && t->deadline <= now && (best < 0 || t->deadline < timers[best].deadline)) best = i;
    }
    if (best < 0) break;
    timers[best].seq = 0;
    ftvm_guest_timer(timers[best].tag);
  }
  rearm();
}
