/*
 * WASI calls wasi-libc may make, mapped onto the ftvm ABI. wasi-libc calls each WASI
 * function through an undefined symbol __imported_wasi_snapshot_preview1_<name>; a
 * definition here resolves it at link time, so the module imports nothing from WASI
 * (the VMM refuses any import outside module "ftvm"). The linker drops the ones a
 * guest never calls. A WASI call not listed here still shows up as an import, and
 * `ftvm inspect` / the VMM reject the module: that is the check.
 *
 * stdout/stderr go to the ftvm log (info / error); time is guest time (no wall clock);
 * entropy is the host's; there are no files, arguments or environment.
 */
#include "ftvm.h"

#define WASI(n) __imported_wasi_snapshot_preview1_##n
#define ERRNO_BADF 8
#define ERRNO_INVAL 28
#define ERRNO_NOSYS 52

struct ciovec {
  const uint8_t *buf;
  uint32_t len;
};

/* One write may come as several iovecs (stdio's buffer, then the new data): they are
 * joined, and each line becomes one log message. */
int32_t WASI(fd_write)(int32_t fd, int32_t iovs, int32_t n, int32_t nwritten) {
  if (fd != 1 && fd != 2) return ERRNO_BADF;
  const struct ciovec *v = (const struct ciovec *)iovs;
  int level = fd == 1 ? FTVM_LOG_INFO : FTVM_LOG_ERROR;
  char line[1024];
  uint32_t len = 0, total = 0;
  for (int32_t i = 0; i < n; i++) {
    for (uint32_t j = 0; j < v[i].len; j++) {
      char c = (char)v[i].buf[j];
      if (c != '\n') line[len++] = c;
      if (c == '\n' || len == sizeof line) {
        if (len) ftvm_host_log(level, line, (int32_t)len);
        len = 0;
      }
    }
    total += v[i].len;
  }
  if (len) ftvm_host_log(level, line, (int32_t)len);
  *(uint32_t *)nwritten = total;
  return 0;
}

int32_t WASI(fd_read)(int32_t fd, int32_t iovs, int32_t n, int32_t nread) { return ERRNO_BADF; }
int32_t WASI(fd_close)(int32_t fd) { return ERRNO_BADF; }
int32_t WASI(fd_seek)(int32_t fd, int64_t off, int32_t whence, int32_t newoff) { return ERRNO_BADF; }
/* stdout and stderr say they are a terminal (a character device that cannot seek), so
 * stdio line-buffers them: each printf line reaches the log when it ends. */
int32_t WASI(fd_fdstat_get)(int32_t fd, int32_t stat) {
  if (fd != 1 && fd != 2) return ERRNO_BADF;
  uint8_t *p = (uint8_t *)stat;
  for (int i = 0; i < 24; i++) p[i] = 0;
  p[0] = 2;                            /* filetype: character device */
  *(uint64_t *)(p + 8) = 1ull << 6;    /* rights: fd_write */
  return 0;
}
int32_t WASI(fd_prestat_get)(int32_t fd, int32_t buf) { return ERRNO_BADF; }
int32_t WASI(fd_prestat_dir_name)(int32_t fd, int32_t path, int32_t len) { return ERRNO_BADF; }

/* Every clock reads guest time (ns): it continues across failover and restore. */
int32_t WASI(clock_time_get)(int32_t id, int64_t precision, int32_t out) {
  *(uint64_t *)out = (uint64_t)ftvm_now();
  return 0;
}
int32_t WASI(clock_res_get)(int32_t id, int32_t out) {
  *(uint64_t *)out = 1;
  return 0;
}

int32_t WASI(random_get)(int32_t buf, int32_t len) {
  ftvm_host_random((void *)buf, len);
  return 0;
}

static int32_t none(int32_t count, int32_t size) {
  *(uint32_t *)count = 0;
  *(uint32_t *)size = 0;
  return 0;
}
int32_t WASI(environ_sizes_get)(int32_t count, int32_t size) { return none(count, size); }
int32_t WASI(environ_get)(int32_t env, int32_t buf) { return 0; }
int32_t WASI(args_sizes_get)(int32_t count, int32_t size) { return none(count, size); }
int32_t WASI(args_get)(int32_t argv, int32_t buf) { return 0; }

int32_t WASI(sched_yield)(void) { return 0; }
int32_t WASI(poll_oneoff)(int32_t in, int32_t out, int32_t n, int32_t nevents) { return ERRNO_NOSYS; }

_Noreturn void WASI(proc_exit)(int32_t code) {
  ftvm_logf(FTVM_LOG_ERROR, "abort: exit(%d)", code);
  __builtin_trap();
}
