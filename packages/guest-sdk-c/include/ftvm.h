/*
 * The ftvm guest SDK for C: the guest side of ABI v1 (packages/guest-abi).
 *
 * A guest defines the five ftvm_guest_* handlers below and links src/ftvm.c, which
 * implements the required ftvm_* exports on top of them. Build flags: see README.md.
 */
#ifndef FTVM_H
#define FTVM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- ABI constants (mirror @ftvm/guest-abi) ---- */
#define FTVM_ABI_VERSION 1
#define FTVM_PAGE_BYTES 4096
/* [0, 1 MiB) is the VMM's dirty bytemap: link with --global-base=1048576. */
#define FTVM_RESERVED_BYTES (1u << 20)
#define FTVM_LOG_ERROR 0
#define FTVM_LOG_WARN 1
#define FTVM_LOG_INFO 2
#define FTVM_LOG_DEBUG 3

/* ---- raw host imports, module "ftvm" ---- */
#define FTVM_IMPORT(n) __attribute__((import_module("ftvm"), import_name(#n)))
FTVM_IMPORT(send) void ftvm_host_send(int32_t conn, const void *ptr, int32_t len);
FTVM_IMPORT(close) void ftvm_host_close(int32_t conn);
FTVM_IMPORT(clock_register) void ftvm_host_clock_register(void *pvclock);
FTVM_IMPORT(rdtsc) int64_t ftvm_host_rdtsc(void);
FTVM_IMPORT(timer_set) void ftvm_host_timer_set(int64_t deadline_ns);
FTVM_IMPORT(disk_read) int32_t ftvm_host_disk_read(int32_t block, void *ptr, int32_t n);
FTVM_IMPORT(disk_write) int32_t ftvm_host_disk_write(int32_t block, const void *ptr, int32_t n);
FTVM_IMPORT(disk_blocks) int32_t ftvm_host_disk_blocks(void);
FTVM_IMPORT(random) void ftvm_host_random(void *ptr, int32_t len);
FTVM_IMPORT(log) void ftvm_host_log(int32_t level, const void *ptr, int32_t len);

/* ---- handlers the guest defines (all five are required) ---- */
/* First boot only; never on restore (memory and globals are restored instead). */
void ftvm_guest_init(void);
void ftvm_guest_open(int32_t conn);
/* data is valid during the call only. */
void ftvm_guest_data(int32_t conn, const uint8_t *data, size_t len);
void ftvm_guest_close(int32_t conn);
/* A logical timer armed with ftvm_timer_at/ftvm_timer_after_ms fired. */
void ftvm_guest_timer(int32_t tag);

/* ---- SDK ---- */
/* Output on a connection; held by the proxy until the checkpoint is acknowledged. */
static inline void ftvm_send(int32_t conn, const void *p, size_t len) { ftvm_host_send(conn, p, (int32_t)len); }
/* Close after pending output. */
static inline void ftvm_close(int32_t conn) { ftvm_host_close(conn); }

/* Guest time in ns (kvmclock protocol over the pvclock page); 0 before the host wrote it.
 * Continues across failover and restore. */
int64_t ftvm_now(void);

/* Logical one-shot timers multiplexed on the host timer. Returns an id >= 0, or -1
 * when FTVM_MAX_TIMERS are armed. */
#define FTVM_MAX_TIMERS 64
int ftvm_timer_at(int64_t deadline_ns, int32_t tag);
int ftvm_timer_after_ms(int64_t ms, int32_t tag);
/* 1 when the timer was armed and is now cancelled. */
int ftvm_timer_cancel(int id);

void ftvm_random(void *p, size_t n);
uint64_t ftvm_random_u64(void);

void ftvm_log(int level, const char *msg, size_t len);
/* printf-style, truncated at 1 KiB. */
void ftvm_logf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs at level error and traps (the VMM sees a fault). */
_Noreturn void ftvm_fatal(const char *msg);

/* Virtual disk in 4 KiB blocks: 0 on success, < 0 on error; ftvm_disk_blocks() 0 = no disk. */
static inline int32_t ftvm_disk_read(int32_t block, void *p, int32_t n) { return ftvm_host_disk_read(block, p, n); }
static inline int32_t ftvm_disk_write(int32_t block, const void *p, int32_t n) { return ftvm_host_disk_write(block, p, n); }
static inline int32_t ftvm_disk_blocks(void) { return ftvm_host_disk_blocks(); }

#ifdef __cplusplus
}
#endif
#endif
