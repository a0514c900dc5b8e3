/*
 * memcached guest: the memcached text protocol on the ftvm C SDK.
 *
 * Commands: get gets set add replace append prepend cas delete incr decr touch
 * flush_all version verbosity stats quit, with noreply. Expiry deadlines are guest
 * time (ftvm_now), so they survive failover; LRU eviction keeps items within
 * MEM_LIMIT bytes. Replies to one delivery go out in one send.
 */
#include "ftvm.h"

#include <stdlib.h>
#include <string.h>

#define MEM_LIMIT (64u << 20)      /* bytes of items (headers + keys + values), like memcached -m 64 */
#define ITEM_MAX (1u << 20)        /* largest value, like memcached -I 1m */
#define KEY_MAX 250
#define LINE_MAX 65536             /* a command line longer than this closes the connection */
#define MAX_TOKENS 24
#define REL_EXPTIME_MAX 2592000    /* 30 days: larger exptimes are absolute (guest seconds) */
#define SWEEP_MS 1000              /* expired-item sweep period, while items with a TTL exist */
#define SWEEP_BUCKETS 4096
#define NS 1000000000LL
#define VERSION "1.6.18-ftvm"

enum { TIMER_FLUSH = 1, TIMER_SWEEP = 2 };

typedef struct item {
  struct item *hnext, *prev, *next;
  uint64_t cas;
  int64_t exp; /* guest ns; 0: never */
  uint32_t flags, nkey, nval, hash;
  char data[]; /* key then value */
} item;

typedef struct conn {
  int32_t id;
  struct conn *next;
  uint8_t *in; /* pending input: a partial command */
  size_t len, cap;
  size_t swallow; /* bytes of a refused value still to skip */
  int closed;
} conn;

static item **table;
static uint32_t table_mask;
static uint32_t nitems, nexp;
static item *lru_head, *lru_tail;
static uint64_t mem_used, cas_seq;
static int64_t boot_ns;
static int sweep_timer = -1, flush_timer = -1;
static uint32_t sweep_cursor;

#define CONN_BUCKETS 256
static conn *conns[CONN_BUCKETS];

static struct {
  uint64_t curr_conns, total_conns, cmd_get, cmd_set, cmd_flush, cmd_touch, get_hits, get_misses,
      get_expired, delete_hits, delete_misses, incr_hits, incr_misses, decr_hits, decr_misses, cas_hits,
      cas_misses, cas_badval, touch_hits, touch_misses, bytes_read, bytes_written, total_items, evictions,
      expired, verbosity;
} st;

/* ---- output ---- */
static char *ob;
static size_t olen, ocap;

static void out_reserve(size_t n) {
  if (olen + n <= ocap) return;
  size_t c = ocap ? ocap : 65536;
  while (c < olen + n) c *= 2;
  char *p = realloc(ob, c);
  if (!p) ftvm_fatal("out of memory (output)");
  ob = p;
  ocap = c;
}
static void out(const void *p, size_t n) {
  out_reserve(n);
  memcpy(ob + olen, p, n);
  olen += n;
}
#define OUT(s) out(s, sizeof(s) - 1)
static void out_u64(uint64_t v) {
  char b[20];
  int i = 20;
  do b[--i] = (char)('0' + v % 10); while ((v /= 10));
  out(b + i, 20 - i);
}
static void flush_out(conn *c) {
  if (olen) {
    ftvm_send(c->id, ob, olen);
    st.bytes_written += olen;
  }
  olen = 0;
  if (ocap > (4u << 20)) { /* do not keep a huge reply buffer around */
    free(ob);
    ob = NULL;
    ocap = 0;
  }
}

/* ---- items ---- */
static uint32_t hash(const char *k, size_t n) { /* FNV-1a */
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)k[i]) * 16777619u;
  return h;
}

static void lru_unlink(item *it) {
  if (it->prev) it->prev->next = it->next; else lru_head = it->next;
  if (it->next) it->next->prev = it->prev; else lru_tail = it->prev;
  it->prev = it->next = NULL;
}
static void lru_push(item *it) {
  it->prev = NULL;
  it->next = lru_head;
  if (lru_head) lru_head->prev = it; else lru_tail = it;
  lru_head = it;
}

static size_t item_size(uint32_t nkey, uint32_t nval) { return sizeof(item) + nkey + nval; }

static void item_unlink(item *it) {
  item **pp = &table[it->hash & table_mask];
  while (*pp != it) pp = &(*pp)->hnext;
  *pp = it->hnext;
  lru_unlink(it);
  nitems--;
  if (it->exp) nexp--;
  mem_used -= item_size(it->nkey, it->nval);
  free(it);
}

static void table_grow(void) {
  uint32_t n = (table_mask + 1) * 2;
  item **t = calloc(n, sizeof *t);
  if (!t) return; /* keep the old table: longer chains, still correct */
  for (uint32_t i = 0; i <= table_mask; i++) {
    for (item *it = table[i], *nx; it; it = nx) {
      nx = it->hnext;
      it->hnext = t[it->hash & (n - 1)];
      t[it->hash & (n - 1)] = it;
    }
  }
  free(table);
  table = t;
  table_mask = n - 1;
}

static int expired(const item *it, int64_t now) { return it->exp && it->exp <= now; }

/* The live item for a key (expired ones are removed on the way). */
static item *find(const char *k, size_t n, int64_t now) {
  uint32_t h = hash(k, n);
  for (item *it = table[h & table_mask]; it; it = it->hnext) {
    if (it->hash == h && it->nkey == n && memcmp(it->data, k, n) == 0) {
      if (expired(it, now)) {
        st.expired++;
        item_unlink(it);
        return NULL;
      }
      return it;
    }
  }
  return NULL;
}

static void sweep_arm(void) {
  if (nexp && sweep_timer < 0) sweep_timer = ftvm_timer_after_ms(SWEEP_MS, TIMER_SWEEP);
}

/* A new item (not yet linked), evicting from the LRU tail to make room; NULL when it
 * cannot fit at all. */
static item *item_alloc(const char *k, uint32_t nkey, uint32_t nval) {
  size_t sz = item_size(nkey, nval);
  if (sz > MEM_LIMIT) return NULL;
  while (mem_used + sz > MEM_LIMIT && lru_tail) {
    st.evictions++;
    item_unlink(lru_tail);
  }
  item *it = malloc(sz);
  while (!it && lru_tail) { /* the wasm heap is full: evict until malloc succeeds */
    st.evictions++;
    item_unlink(lru_tail);
    it = malloc(sz);
  }
  if (!it) return NULL;
  memset(it, 0, sizeof *it);
  it->nkey = nkey;
  it->nval = nval;
  it->hash = hash(k, nkey);
  memcpy(it->data, k, nkey);
  return it;
}

/* Links it in place of old (if any). */
static void item_link(item *it, item *old) {
  if (old) item_unlink(old);
  if (nitems + 1 > (table_mask + 1) + (table_mask + 1) / 2) table_grow();
  item **b = &table[it->hash & table_mask];
  it->hnext = *b;
  *b = it;
  lru_push(it);
  nitems++;
  if (it->exp) nexp++;
  mem_used += item_size(it->nkey, it->nval);
  it->cas = ++cas_seq;
  st.total_items++;
  sweep_arm();
}

static int64_t deadline(int64_t exptime, int64_t now) {
  if (exptime == 0) return 0;
  if (exptime < 0) return 1; /* already expired */
  if (exptime <= REL_EXPTIME_MAX) return now + exptime * NS;
  int64_t abs = (exptime - boot_ns / NS) * NS + boot_ns; /* absolute: guest seconds */
  return abs > 0 ? abs : 1;
}

static void flush_all_items(void) {
  while (lru_head) item_unlink(lru_head);
}

/* ---- parsing helpers ---- */
typedef struct {
  const char *p;
  size_t n;
} tok;

static int parse_u64(tok t, uint64_t *v) {
  if (t.n == 0 || t.n > 20) return 0;
  uint64_t x = 0;
  for (size_t i = 0; i < t.n; i++) {
    unsigned d = (unsigned)(t.p[i] - '0');
    if (d > 9) return 0;
    if (x > (UINT64_MAX - d) / 10) return 0;
    x = x * 10 + d;
  }
  *v = x;
  return 1;
}
static int parse_i64(tok t, int64_t *v) {
  int neg = t.n && t.p[0] == '-';
  uint64_t x;
  tok u = {t.p + neg, t.n - neg};
  if (!parse_u64(u, &x) || x > (uint64_t)INT64_MAX) return 0;
  *v = neg ? -(int64_t)x : (int64_t)x;
  return 1;
}
static int is(tok t, const char *s) {
  size_t n = strlen(s);
  return t.n == n && memcmp(t.p, s, n) == 0;
}
static int noreply_at(tok *t, int ntok, int i) { return ntok > i && is(t[i], "noreply"); }

/* ---- commands ---- */
static void reply(int noreply, const char *s, size_t n) {
  if (!noreply) out(s, n);
}
#define REPLY(nr, s) reply(nr, s, sizeof(s) - 1)
#define BAD_FORMAT "CLIENT_ERROR bad command line format\r\n"

static void cmd_get(tok *t, int ntok, const char *end, int with_cas) {
  /* keys may exceed MAX_TOKENS: walk the rest of the line */
  if (ntok < 2) {
    OUT("ERROR\r\n");
    return;
  }
  int64_t now = ftvm_now();
  const char *p = t[1].p;
  while (p < end) {
    while (p < end && *p == ' ') p++;
    const char *k = p;
    while (p < end && *p != ' ') p++;
    size_t n = (size_t)(p - k);
    if (!n) break;
    if (n > KEY_MAX) {
      OUT(BAD_FORMAT);
      return;
    }
    st.cmd_get++;
    item *it = find(k, n, now);
    if (!it) {
      st.get_misses++;
      continue;
    }
    st.get_hits++;
    lru_unlink(it);
    lru_push(it);
    out_reserve(64 + n + it->nval);
    OUT("VALUE ");
    out(k, n);
    OUT(" ");
    out_u64(it->flags);
    OUT(" ");
    out_u64(it->nval);
    if (with_cas) {
      OUT(" ");
      out_u64(it->cas);
    }
    OUT("\r\n");
    out(it->data + it->nkey, it->nval);
    OUT("\r\n");
  }
  OUT("END\r\n");
}

enum { SET, ADD, REPLACE, APPEND, PREPEND, CAS };

/* Returns bytes consumed (the data block + CRLF), 0 when more input is needed. */
static size_t cmd_store(conn *c, int op, tok *t, int ntok, const char *data, size_t avail) {
  int need = op == CAS ? 6 : 5;
  uint64_t flags, nbytes, casv = 0;
  int64_t exptime;
  if (ntok < need || ntok > need + 1 || t[1].n > KEY_MAX || !parse_u64(t[2], &flags) || flags > UINT32_MAX ||
      !parse_i64(t[3], &exptime) || !parse_u64(t[4], &nbytes) || nbytes > INT32_MAX ||
      (op == CAS && !parse_u64(t[5], &casv)) || (ntok == need + 1 && !is(t[need], "noreply"))) {
    OUT(BAD_FORMAT);
    return (size_t)-1; /* no data block is read: the next line is a command */
  }
  int nr = noreply_at(t, ntok, need);
  if (nbytes > ITEM_MAX) {
    OUT("SERVER_ERROR object too large for cache\r\n");
    c->swallow = nbytes + 2;
    return (size_t)-1;
  }
  if (avail < nbytes + 2) return 0;
  if (data[nbytes] != '\r' || data[nbytes + 1] != '\n') {
    OUT("CLIENT_ERROR bad data chunk\r\n");
    /* like memcached: skip the announced length + 2 and carry on */
    return nbytes + 2;
  }
  st.cmd_set++;
  int64_t now = ftvm_now();
  const char *k = t[1].p;
  uint32_t nk = (uint32_t)t[1].n;
  item *old = find(k, nk, now);
  if ((op == ADD && old) || ((op == REPLACE || op == APPEND || op == PREPEND) && !old)) {
    if (op == ADD && old) { /* memcached bumps an item that add found */
      lru_unlink(old);
      lru_push(old);
    }
    REPLY(nr, "NOT_STORED\r\n");
    return nbytes + 2;
  }
  if (op == CAS) {
    if (!old) {
      st.cas_misses++;
      REPLY(nr, "NOT_FOUND\r\n");
      return nbytes + 2;
    }
    if (old->cas != casv) {
      st.cas_badval++;
      REPLY(nr, "EXISTS\r\n");
      return nbytes + 2;
    }
    st.cas_hits++;
  }
  uint32_t nv = (uint32_t)nbytes;
  if (op == APPEND || op == PREPEND) {
    if ((uint64_t)old->nval + nv > ITEM_MAX) {
      REPLY(nr, "SERVER_ERROR out of memory storing object\r\n");
      return nbytes + 2;
    }
    nv += old->nval;
  }
  /* old is taken off the LRU while the new item is built, so eviction spares it */
  if (old) lru_unlink(old);
  item *it = item_alloc(k, nk, nv);
  if (old) lru_push(old);
  if (!it) {
    REPLY(nr, "SERVER_ERROR out of memory storing object\r\n");
    return nbytes + 2;
  }
  char *v = it->data + nk;
  if (op == APPEND) {
    memcpy(v, old->data + nk, old->nval);
    memcpy(v + old->nval, data, nbytes);
  } else if (op == PREPEND) {
    memcpy(v, data, nbytes);
    memcpy(v + nbytes, old->data + nk, old->nval);
  } else {
    memcpy(v, data, nbytes);
  }
  if (op == APPEND || op == PREPEND) {
    it->flags = old->flags;
    it->exp = old->exp;
  } else {
    it->flags = (uint32_t)flags;
    it->exp = deadline(exptime, now);
  }
  item_link(it, old);
  REPLY(nr, "STORED\r\n");
  return nbytes + 2;
}

static void cmd_delete(tok *t, int ntok) {
  /* delete <key> [0] [noreply] */
  int nr = is(t[ntok - 1], "noreply");
  int args = ntok - nr;
  if (args < 2 || args > 3 || (args == 3 && !is(t[2], "0")) || t[1].n > KEY_MAX) {
    OUT("CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n");
    return;
  }
  item *it = find(t[1].p, t[1].n, ftvm_now());
  if (it) {
    st.delete_hits++;
    item_unlink(it);
    REPLY(nr, "DELETED\r\n");
  } else {
    st.delete_misses++;
    REPLY(nr, "NOT_FOUND\r\n");
  }
}

/* `<cmd> <key> <arg> [noreply]`: 1 with noreply, 0 without, -1 (ERROR sent) when malformed. */
static int key_arg_noreply(tok *t, int ntok) {
  if (ntok < 3 || ntok > 4 || t[1].n > KEY_MAX || (ntok == 4 && !is(t[3], "noreply"))) {
    OUT("ERROR\r\n");
    return -1;
  }
  return ntok == 4;
}

static void cmd_arith(tok *t, int ntok, int incr) {
  uint64_t delta;
  int nr = key_arg_noreply(t, ntok);
  if (nr < 0) return;
  if (!parse_u64(t[2], &delta)) {
    OUT("CLIENT_ERROR invalid numeric delta argument\r\n");
    return;
  }
  int64_t now = ftvm_now();
  item *it = find(t[1].p, t[1].n, now);
  if (!it) {
    if (incr) st.incr_misses++; else st.decr_misses++;
    REPLY(nr, "NOT_FOUND\r\n");
    return;
  }
  uint64_t v;
  tok cur = {it->data + it->nkey, it->nval};
  while (cur.n && cur.p[cur.n - 1] == ' ') cur.n--; /* values memcached padded in place */
  if (!parse_u64(cur, &v)) {
    OUT("CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
    return;
  }
  if (incr) {
    v += delta; /* wraps at 2^64, like memcached */
    st.incr_hits++;
  } else {
    v = delta > v ? 0 : v - delta;
    st.decr_hits++;
  }
  char b[20];
  int i = 20;
  uint64_t x = v;
  do b[--i] = (char)('0' + x % 10); while ((x /= 10));
  uint32_t n = (uint32_t)(20 - i);
  if (n <= it->nval) { /* in place, padded with spaces like memcached: keeps the item */
    memcpy(it->data + it->nkey, b + i, n);
    memset(it->data + it->nkey + n, ' ', it->nval - n);
    it->cas = ++cas_seq;
    lru_unlink(it);
    lru_push(it);
  } else {
    lru_unlink(it); /* spared by eviction while the new item is built */
    item *nw = item_alloc(it->data, it->nkey, n);
    lru_push(it);
    if (!nw) {
      REPLY(nr, "SERVER_ERROR out of memory\r\n");
      return;
    }
    memcpy(nw->data + nw->nkey, b + i, n);
    nw->flags = it->flags;
    nw->exp = it->exp;
    item_link(nw, it);
  }
  if (!nr) {
    out(b + i, n);
    OUT("\r\n");
  }
}

static void cmd_touch(tok *t, int ntok) {
  int64_t exptime;
  int nr = key_arg_noreply(t, ntok);
  if (nr < 0) return;
  if (!parse_i64(t[2], &exptime)) {
    OUT("CLIENT_ERROR invalid exptime argument\r\n");
    return;
  }
  st.cmd_touch++;
  int64_t now = ftvm_now();
  item *it = find(t[1].p, t[1].n, now);
  if (!it) {
    st.touch_misses++;
    REPLY(nr, "NOT_FOUND\r\n");
    return;
  }
  st.touch_hits++;
  if (it->exp) nexp--;
  it->exp = deadline(exptime, now);
  if (it->exp) nexp++;
  sweep_arm();
  lru_unlink(it);
  lru_push(it);
  REPLY(nr, "TOUCHED\r\n");
}

static void cmd_flush(tok *t, int ntok) {
  int nr = is(t[ntok - 1], "noreply");
  int args = ntok - nr;
  int64_t delay = 0;
  if (args > 2 || (args == 2 && (!parse_i64(t[1], &delay) || delay < 0))) {
    OUT(BAD_FORMAT);
    return;
  }
  st.cmd_flush++;
  if (flush_timer >= 0) ftvm_timer_cancel(flush_timer);
  flush_timer = -1;
  if (delay > 0) flush_timer = ftvm_timer_at(deadline(delay, ftvm_now()), TIMER_FLUSH);
  else flush_all_items();
  REPLY(nr, "OK\r\n");
}

static void stat(const char *name, uint64_t v) {
  OUT("STAT ");
  out(name, strlen(name));
  OUT(" ");
  out_u64(v);
  OUT("\r\n");
}

static void cmd_stats(tok *t, int ntok) {
  if (ntok > 1) {
    if (is(t[1], "reset")) {
      uint64_t cc = st.curr_conns, tc = st.total_conns, v = st.verbosity;
      memset(&st, 0, sizeof st);
      st.curr_conns = cc;
      st.total_conns = tc;
      st.verbosity = v;
      OUT("RESET\r\n");
    } else if (is(t[1], "settings")) {
      stat("maxbytes", MEM_LIMIT);
      stat("item_size_max", ITEM_MAX);
      stat("evictions", 1);
      stat("verbosity", st.verbosity);
      OUT("END\r\n");
    } else if (is(t[1], "items") || is(t[1], "slabs") || is(t[1], "sizes") || is(t[1], "conns")) {
      OUT("END\r\n");
    } else {
      OUT("ERROR\r\n");
    }
    return;
  }
  int64_t now = ftvm_now();
  stat("pid", 1);
  stat("uptime", (uint64_t)((now - boot_ns) / NS));
  stat("time", (uint64_t)(now / NS));
  OUT("STAT version " VERSION "\r\n");
  stat("pointer_size", 32);
  stat("curr_connections", st.curr_conns);
  stat("total_connections", st.total_conns);
  stat("cmd_get", st.cmd_get);
  stat("cmd_set", st.cmd_set);
  stat("cmd_flush", st.cmd_flush);
  stat("cmd_touch", st.cmd_touch);
  stat("get_hits", st.get_hits);
  stat("get_misses", st.get_misses);
  stat("get_expired", st.get_expired);
  stat("delete_misses", st.delete_misses);
  stat("delete_hits", st.delete_hits);
  stat("incr_misses", st.incr_misses);
  stat("incr_hits", st.incr_hits);
  stat("decr_misses", st.decr_misses);
  stat("decr_hits", st.decr_hits);
  stat("cas_misses", st.cas_misses);
  stat("cas_hits", st.cas_hits);
  stat("cas_badval", st.cas_badval);
  stat("touch_hits", st.touch_hits);
  stat("touch_misses", st.touch_misses);
  stat("bytes_read", st.bytes_read);
  stat("bytes_written", st.bytes_written);
  stat("limit_maxbytes", MEM_LIMIT);
  stat("threads", 1);
  stat("bytes", mem_used);
  stat("curr_items", nitems);
  stat("total_items", st.total_items);
  stat("expired_unfetched", st.expired);
  stat("evictions", st.evictions);
  OUT("END\r\n");
}

/* One command line [line, eol) followed by avail bytes at data. Returns the bytes of the
 * data block it consumed (0 for non-storage commands), or (size_t)-2 when the data
 * block is incomplete, or (size_t)-3 to close the connection. */
static size_t command(conn *c, const char *line, const char *eol, const char *data, size_t avail) {
  tok t[MAX_TOKENS];
  int ntok = 0;
  const char *p = line;
  while (p < eol && ntok < MAX_TOKENS) {
    while (p < eol && *p == ' ') p++;
    if (p == eol) break;
    const char *s = p;
    while (p < eol && *p != ' ') p++;
    t[ntok].p = s;
    t[ntok].n = (size_t)(p - s);
    ntok++;
  }
  if (ntok == 0) {
    OUT("ERROR\r\n");
    return 0;
  }
  tok cmd = t[0];
  if (is(cmd, "get") || is(cmd, "gets")) {
    cmd_get(t, ntok, eol, cmd.n == 4);
    return 0;
  }
  int op = is(cmd, "set") ? SET : is(cmd, "add") ? ADD : is(cmd, "replace") ? REPLACE : is(cmd, "append") ? APPEND
      : is(cmd, "prepend") ? PREPEND : is(cmd, "cas") ? CAS : -1;
  if (op >= 0) {
    if (ntok == MAX_TOKENS) {
      OUT(BAD_FORMAT);
      return 0;
    }
    size_t r = cmd_store(c, op, t, ntok, data, avail);
    if (r == (size_t)-1) return 0;
    return r ? r : (size_t)-2;
  }
  if (is(cmd, "delete")) cmd_delete(t, ntok);
  else if (is(cmd, "incr")) cmd_arith(t, ntok, 1);
  else if (is(cmd, "decr")) cmd_arith(t, ntok, 0);
  else if (is(cmd, "touch")) cmd_touch(t, ntok);
  else if (is(cmd, "flush_all")) cmd_flush(t, ntok);
  else if (is(cmd, "version")) OUT("VERSION " VERSION "\r\n"); /* 1.6: arguments ignored */
  else if (is(cmd, "verbosity")) { /* as memcached 1.6 answers it */
    uint64_t v;
    int nr = is(t[ntok - 1], "noreply");
    if (ntok == 1 || ntok > 3) OUT("ERROR\r\n");
    else if (nr && ntok == 2) ;
    else if (!parse_u64(t[1], &v)) OUT(BAD_FORMAT);
    else {
      st.verbosity = v;
      REPLY(nr, "OK\r\n");
    }
  } else if (is(cmd, "stats")) cmd_stats(t, ntok);
  else if (is(cmd, "quit")) return (size_t)-3;
  else OUT("ERROR\r\n");
  return 0;
}

/* Parses complete commands in [buf, buf+n); returns bytes consumed, or (size_t)-1 to close. */
static size_t parse(conn *c, const uint8_t *buf, size_t n) {
  size_t pos = 0;
  while (pos < n) {
    if (c->swallow) {
      size_t k = n - pos < c->swallow ? n - pos : c->swallow;
      c->swallow -= k;
      pos += k;
      continue;
    }
    const char *line = (const char *)buf + pos;
    const char *nl = memchr(line, '\n', n - pos);
    if (!nl) {
      if (n - pos > LINE_MAX) {
        OUT("CLIENT_ERROR line too long\r\n");
        return (size_t)-1;
      }
      break;
    }
    const char *eol = nl > line && nl[-1] == '\r' ? nl - 1 : nl;
    const char *data = nl + 1;
    size_t avail = n - (size_t)(data - (const char *)buf);
    size_t r = command(c, line, eol, data, avail);
    if (r == (size_t)-2) break; /* wait for the rest of the value */
    if (r == (size_t)-3) return (size_t)-1;
    pos = (size_t)(data - (const char *)buf) + r;
  }
  return pos;
}

/* ---- connections ---- */
static conn **conn_slot(int32_t id) {
  conn **pp = &conns[(uint32_t)id % CONN_BUCKETS];
  while (*pp && (*pp)->id != id) pp = &(*pp)->next;
  return pp;
}

void ftvm_guest_init(void) {
  boot_ns = ftvm_now();
  table_mask = 1023;
  table = calloc(table_mask + 1, sizeof *table);
  if (!table) ftvm_fatal("out of memory (table)");
}

void ftvm_guest_open(int32_t id) {
  conn *c = calloc(1, sizeof *c);
  if (!c) ftvm_fatal("out of memory (conn)");
  c->id = id;
  conn **pp = conn_slot(id);
  c->next = *pp;
  *pp = c;
  st.curr_conns++;
  st.total_conns++;
}

void ftvm_guest_close(int32_t id) {
  conn **pp = conn_slot(id);
  conn *c = *pp;
  if (!c) return;
  *pp = c->next;
  free(c->in);
  free(c);
  st.curr_conns--;
}

void ftvm_guest_data(int32_t id, const uint8_t *data, size_t n) {
  conn *c = *conn_slot(id);
  if (!c || c->closed) return;
  st.bytes_read += n;
  size_t used;
  if (c->len == 0) {
    /* parse in place; keep only an incomplete tail */
    used = parse(c, data, n);
    if (used != (size_t)-1 && used < n) {
      size_t rest = n - used;
      if (rest > c->cap) {
        free(c->in);
        c->in = malloc(rest);
        if (!c->in) ftvm_fatal("out of memory (input)");
        c->cap = rest;
      }
      memcpy(c->in, data + used, rest);
      c->len = rest;
    }
  } else {
    if (c->len + n > c->cap) {
      size_t cap = c->cap * 2 > c->len + n ? c->cap * 2 : c->len + n;
      uint8_t *p = realloc(c->in, cap);
      if (!p) ftvm_fatal("out of memory (input)");
      c->in = p;
      c->cap = cap;
    }
    memcpy(c->in + c->len, data, n);
    c->len += n;
    used = parse(c, c->in, c->len);
    if (used != (size_t)-1) {
      memmove(c->in, c->in + used, c->len - used);
      c->len -= used;
    }
  }
  flush_out(c);
  if (used == (size_t)-1) {
    c->closed = 1;
    ftvm_close(id);
  } else if (c->len == 0 && c->cap > 65536) { /* drop a big buffer once the large value is done */
    free(c->in);
    c->in = NULL;
    c->cap = 0;
  }
}

void ftvm_guest_timer(int32_t tag) {
  if (tag == TIMER_FLUSH) {
    flush_timer = -1;
    flush_all_items();
  } else if (tag == TIMER_SWEEP) {
    sweep_timer = -1;
    int64_t now = ftvm_now();
    for (int i = 0; i < SWEEP_BUCKETS && nexp; i++) {
      sweep_cursor = (sweep_cursor + 1) & table_mask;
      for (item *it = table[sweep_cursor], *nx; it; it = nx) {
        nx = it->hnext;
        if (expired(it, now)) {
          st.expired++;
          item_unlink(it);
        }
      }
    }
    sweep_arm();
  }
}
