//! kvrs: a Redis-protocol (RESP2) key-value guest in Rust, for redis-cli and
//! redis-benchmark. Strings only: PING ECHO SET(EX PX NX XX) GET DEL EXISTS INCR INCRBY
//! DECR DECRBY APPEND STRLEN MSET MGET DBSIZE FLUSHALL FLUSHDB EXPIRE PEXPIRE TTL PTTL
//! PERSIST SELECT 0, CONFIG/COMMAND/CLIENT stubs for clients, QUIT. TTLs are guest-time
//! deadlines, so a failover neither resets nor shortens them.

use std::collections::HashMap;

const MAX_PENDING: usize = 64 << 20; // per-connection unparsed input
const MAX_INLINE: usize = 64 << 10; // inline command and header lines
const MAX_ARGS: usize = 1 << 20;
const SWEEP_MS: i64 = 1000;
const TAG_SWEEP: i32 = 1;

struct Entry {
    val: Vec<u8>,
    exp: i64, // guest ns; 0: none
}

struct Kv {
    db: HashMap<Vec<u8>, Entry>,
    ttls: usize, // entries with exp != 0 (an upper bound: lazily corrected by the sweep)
    sweep_armed: bool,
    pending: HashMap<i32, Vec<u8>>,
    out: Vec<u8>,
}

enum Parse {
    Cmd(Vec<Vec<u8>>, usize), // args, bytes consumed
    Incomplete,
    Error(&'static str),
}

fn find_crlf(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < b.len() {
        if b[i] == b'\r' && b[i + 1] == b'\n' {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn parse_int(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse::<i64>().ok()
}

/// One command from the start of b.
fn parse(b: &[u8]) -> Parse {
    if b.is_empty() {
        return Parse::Incomplete;
    }
    if b[0] != b'*' {
        // inline command: space-separated words up to CRLF (or LF)
        let nl = match b.iter().position(|&c| c == b'\n') {
            Some(i) => i,
            None => return if b.len() > MAX_INLINE { Parse::Error("too big inline request") } else { Parse::Incomplete },
        };
        let line = if nl > 0 && b[nl - 1] == b'\r' { &b[..nl - 1] } else { &b[..nl] };
        let args = line.split(|&c| c == b' ').filter(|w| !w.is_empty()).map(|w| w.to_vec()).collect();
        return Parse::Cmd(args, nl + 1);
    }
    let end = match find_crlf(b, 1) {
        Some(e) => e,
        None => return if b.len() > MAX_INLINE { Parse::Error("too big mbulk count string") } else { Parse::Incomplete },
    };
    let n = match parse_int(&b[1..end]) {
        Some(n) if n >= 0 && (n as usize) <= MAX_ARGS => n as usize,
        Some(n) if n < 0 => return Parse::Cmd(Vec::new(), end + 2),
        _ => return Parse::Error("invalid multibulk length"),
    };
    let mut pos = end + 2;
    let mut args = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        if pos >= b.len() {
            return Parse::Incomplete;
        }
        if b[pos] != b'$' {
            return Parse::Error("expected '$'");
        }
        let e = match find_crlf(b, pos + 1) {
            Some(e) => e,
            None => return if b.len() - pos > MAX_INLINE { Parse::Error("too big bulk count string") } else { Parse::Incomplete },
        };
        let len = match parse_int(&b[pos + 1..e]) {
            Some(l) if l >= 0 && (l as usize) <= MAX_PENDING => l as usize,
            _ => return Parse::Error("invalid bulk length"),
        };
        let start = e + 2;
        if b.len() < start + len + 2 {
            return Parse::Incomplete;
        }
        args.push(b[start..start + len].to_vec());
        pos = start + len + 2;
    }
    Parse::Cmd(args, pos)
}

impl Kv {
    fn new() -> Kv {
        Kv { db: HashMap::new(), ttls: 0, sweep_armed: false, pending: HashMap::new(), out: Vec::with_capacity(1 << 16) }
    }

    fn simple(&mut self, s: &str) {
        self.out.push(b'+');
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }
    fn err(&mut self, s: &str) {
        self.out.push(b'-');
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }
    fn int(&mut self, n: i64) {
        self.out.extend_from_slice(format!(":{}\r\n", n).as_bytes());
    }
    fn bulk(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.out.extend_from_slice(b"$-1\r\n"),
            Some(v) => {
                self.out.extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
                self.out.extend_from_slice(v);
                self.out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// The live entry for a key (an expired one is removed).
    fn live(&mut self, k: &[u8], now: i64) -> Option<&mut Entry> {
        let expired = matches!(self.db.get(k), Some(e) if e.exp != 0 && e.exp <= now);
        if expired {
            self.db.remove(k);
        }
        self.db.get_mut(k)
    }

    fn set_exp(&mut self, exp: i64) {
        if exp != 0 {
            self.ttls += 1;
            if !self.sweep_armed {
                self.sweep_armed = ftvm::timer_after_ms(SWEEP_MS, TAG_SWEEP).is_some();
            }
        }
    }

    fn wrong_args(&mut self, name: &[u8]) {
        let n = String::from_utf8_lossy(name).to_lowercase();
        self.err(&format!("ERR wrong number of arguments for '{}' command", n));
    }

    fn incr_by(&mut self, k: &[u8], by: i64, now: i64) {
        let cur = match self.live(k, now) {
            None => 0,
            Some(e) => match std::str::from_utf8(&e.val).ok().and_then(|s| s.parse::<i64>().ok()) {
                Some(v) => v,
                None => return self.err("ERR value is not an integer or out of range"),
            },
        };
        let next = match cur.checked_add(by) {
            Some(v) => v,
            None => return self.err("ERR increment or decrement would overflow"),
        };
        let val = next.to_string().into_bytes();
        match self.db.get_mut(k) {
            Some(e) => e.val = val,
            None => {
                self.db.insert(k.to_vec(), Entry { val, exp: 0 });
            }
        }
        self.int(next);
    }

    /// Runs one command; false closes the connection (QUIT).
    fn exec(&mut self, a: &[Vec<u8>]) -> bool {
        if a.is_empty() {
            return true;
        }
        let now = ftvm::now();
        let name = a[0].to_ascii_uppercase();
        let argc = a.len();
        let arity_ok = |min: usize, max: usize| argc >= min && argc <= max;
        match &name[..] {
            b"PING" if arity_ok(1, 2) => {
                if argc == 2 { self.bulk(Some(&a[1])) } else { self.simple("PONG") }
            }
            b"ECHO" if argc == 2 => self.bulk(Some(&a[1])),
            b"QUIT" => {
                self.simple("OK");
                return false;
            }
            b"SELECT" if argc == 2 => {
                if a[1] == b"0" { self.simple("OK") } else { self.err("ERR DB index is out of range") }
            }
            b"GET" if argc == 2 => {
                let v = self.live(&a[1], now).map(|e| e.val.clone());
                self.bulk(v.as_deref());
            }
            b"SET" if argc >= 3 => {
                let (mut exp, mut nx, mut xx) = (0i64, false, false);
                let mut i = 3;
                while i < argc {
                    let opt = a[i].to_ascii_uppercase();
                    match &opt[..] {
                        b"NX" => nx = true,
                        b"XX" => xx = true,
                        b"EX" | b"PX" if i + 1 < argc => {
                            let n = match parse_int(&a[i + 1]) {
                                Some(n) if n > 0 => n,
                                _ => return { self.err("ERR invalid expire time in 'set' command"); true },
                            };
                            let ns = if &opt[..] == b"EX" { n.saturating_mul(1_000_000_000) } else { n.saturating_mul(1_000_000) };
                            exp = now.saturating_add(ns);
                            i += 1;
                        }
                        _ => return { self.err("ERR syntax error"); true },
                    }
                    i += 1;
                }
                if nx && xx {
                    self.err("ERR syntax error");
                    return true;
                }
                let exists = self.live(&a[1], now).is_some();
                if (nx && exists) || (xx && !exists) {
                    self.bulk(None);
                    return true;
                }
                self.db.insert(a[1].clone(), Entry { val: a[2].clone(), exp });
                self.set_exp(exp);
                self.simple("OK");
            }
            b"MSET" if argc >= 3 && argc % 2 == 1 => {
                for kv in a[1..].chunks(2) {
                    self.db.insert(kv[0].clone(), Entry { val: kv[1].clone(), exp: 0 });
                }
                self.simple("OK");
            }
            b"MGET" if argc >= 2 => {
                self.out.extend_from_slice(format!("*{}\r\n", argc - 1).as_bytes());
                for k in &a[1..] {
                    let v = self.live(k, now).map(|e| e.val.clone());
                    self.bulk(v.as_deref());
                }
            }
            b"DEL" | b"EXISTS" if argc >= 2 => {
                let mut n = 0;
                for k in &a[1..] {
                    if self.live(k, now).is_some() {
                        n += 1;
                        if &name[..] == b"DEL" {
                            self.db.remove(k);
                        }
                    }
                }
                self.int(n);
            }
            b"INCR" if argc == 2 => self.incr_by(&a[1], 1, now),
            b"DECR" if argc == 2 => self.incr_by(&a[1], -1, now),
            b"INCRBY" | b"DECRBY" if argc == 3 => match parse_int(&a[2]) {
                Some(by) if &name[..] == b"INCRBY" => self.incr_by(&a[1], by, now),
                Some(by) if by != i64::MIN => self.incr_by(&a[1], -by, now),
                _ => self.err("ERR value is not an integer or out of range"),
            },
            b"APPEND" if argc == 3 => {
                let len = match self.live(&a[1], now) {
                    Some(e) => {
                        e.val.extend_from_slice(&a[2]);
                        e.val.len()
                    }
                    None => {
                        self.db.insert(a[1].clone(), Entry { val: a[2].clone(), exp: 0 });
                        a[2].len()
                    }
                };
                self.int(len as i64);
            }
            b"STRLEN" if argc == 2 => {
                let n = self.live(&a[1], now).map_or(0, |e| e.val.len());
                self.int(n as i64);
            }
            b"DBSIZE" if argc == 1 => {
                let n = self.db.values().filter(|e| e.exp == 0 || e.exp > now).count();
                self.int(n as i64);
            }
            b"FLUSHALL" | b"FLUSHDB" => {
                self.db.clear();
                self.ttls = 0;
                self.simple("OK");
            }
            b"EXPIRE" | b"PEXPIRE" if argc == 3 => {
                let n = match parse_int(&a[2]) {
                    Some(n) => n,
                    None => return { self.err("ERR value is not an integer or out of range"); true },
                };
                let ns = if &name[..] == b"EXPIRE" { n.saturating_mul(1_000_000_000) } else { n.saturating_mul(1_000_000) };
                let exp = now.saturating_add(ns).max(1);
                let found = match self.live(&a[1], now) {
                    Some(e) => {
                        e.exp = exp;
                        true
                    }
                    None => false,
                };
                if found {
                    self.set_exp(exp);
                }
                self.int(found as i64);
            }
            b"TTL" | b"PTTL" if argc == 2 => {
                let unit = if &name[..] == b"TTL" { 1_000_000_000 } else { 1_000_000 };
                let r = match self.live(&a[1], now) {
                    None => -2,
                    Some(e) if e.exp == 0 => -1,
                    Some(e) => (e.exp - now + unit - 1) / unit,
                };
                self.int(r);
            }
            b"PERSIST" if argc == 2 => {
                let r = match self.live(&a[1], now) {
                    Some(e) if e.exp != 0 => {
                        e.exp = 0;
                        1
                    }
                    _ => 0,
                };
                self.int(r);
            }
            // what redis-cli and redis-benchmark ask on connect
            b"CONFIG" if argc >= 2 => {
                if a[1].eq_ignore_ascii_case(b"GET") { self.out.extend_from_slice(b"*0\r\n") } else { self.simple("OK") }
            }
            b"COMMAND" => self.out.extend_from_slice(b"*0\r\n"),
            b"CLIENT" => self.simple("OK"),
            b"PING" | b"ECHO" | b"SELECT" | b"GET" | b"SET" | b"MSET" | b"MGET" | b"DEL" | b"EXISTS" | b"INCR" | b"DECR" | b"INCRBY"
            | b"DECRBY" | b"APPEND" | b"STRLEN" | b"DBSIZE" | b"EXPIRE" | b"PEXPIRE" | b"TTL" | b"PTTL" | b"PERSIST" | b"CONFIG" => {
                self.wrong_args(&a[0])
            }
            _ => {
                let n = String::from_utf8_lossy(&a[0]).into_owned();
                self.err(&format!("ERR unknown command '{}'", n));
            }
        }
        true
    }

    /// Parses and runs every complete command in b; returns (bytes consumed, keep open).
    fn run(&mut self, b: &[u8]) -> (usize, bool) {
        let mut pos = 0;
        loop {
            match parse(&b[pos..]) {
                Parse::Incomplete => return (pos, true),
                Parse::Error(why) => {
                    self.err(&format!("ERR Protocol error: {}", why));
                    return (pos, false);
                }
                Parse::Cmd(args, used) => {
                    pos += used;
                    if !self.exec(&args) {
                        return (pos, false);
                    }
                }
            }
        }
    }
}

impl ftvm::Guest for Kv {
    fn open(&mut self, conn: i32) {
        self.pending.insert(conn, Vec::new());
    }

    fn data(&mut self, conn: i32, data: &[u8]) {
        let mut buf = match self.pending.remove(&conn) {
            Some(b) => b,
            None => return, // closed by us (QUIT, protocol error): ignore the rest
        };
        let (used, open) = if buf.is_empty() {
            let (used, open) = self.run(data); // in place; keep only a partial tail
            buf.extend_from_slice(&data[used..]);
            (0, open)
        } else {
            buf.extend_from_slice(data);
            self.run(&buf)
        };
        buf.drain(..used);
        let out = std::mem::take(&mut self.out);
        if !out.is_empty() {
            ftvm::send(conn, &out);
        }
        self.out = out;
        self.out.clear();
        if !open || buf.len() > MAX_PENDING {
            if open {
                ftvm::send(conn, b"-ERR Protocol error: request too big\r\n");
            }
            ftvm::close(conn);
            return;
        }
        if buf.capacity() > 1 << 20 && buf.is_empty() {
            buf = Vec::new();
        }
        self.pending.insert(conn, buf);
    }

    fn close(&mut self, conn: i32) {
        self.pending.remove(&conn);
    }

    fn timer(&mut self, tag: i32) {
        if tag != TAG_SWEEP {
            return;
        }
        let now = ftvm::now();
        self.db.retain(|_, e| e.exp == 0 || e.exp > now);
        self.ttls = self.db.values().filter(|e| e.exp != 0).count();
        self.sweep_armed = self.ttls > 0 && ftvm::timer_after_ms(SWEEP_MS, TAG_SWEEP).is_some();
    }
}

ftvm::guest!(Kv, Kv::new());
