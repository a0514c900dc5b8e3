//! The ftvm guest SDK for Rust: the guest side of ABI v1 (packages/guest-abi).
//!
//! A guest implements [`Guest`] and names its type with [`guest!`], which defines the
//! required `ftvm_*` exports. Build with Debian's rustc for `wasm32-unknown-unknown`
//! (no cargo, no registry): see README.md for the exact flags.

use std::alloc::{alloc, dealloc, Layout};

/// Raw host imports, module `ftvm`.
pub mod host {
    #[link(wasm_import_module = "ftvm")]
    extern "C" {
        pub fn send(conn: i32, ptr: *const u8, len: i32);
        pub fn close(conn: i32);
        pub fn clock_register(ptr: *mut u8);
        pub fn rdtsc() -> i64;
        pub fn timer_set(deadline_ns: i64);
        pub fn disk_read(block: i32, ptr: *mut u8, n: i32) -> i32;
        pub fn disk_write(block: i32, ptr: *const u8, n: i32) -> i32;
        pub fn disk_blocks() -> i32;
        pub fn random(ptr: *mut u8, len: i32);
        pub fn log(level: i32, ptr: *const u8, len: i32);
    }
}

pub const ABI_VERSION: i32 = 1;
pub const PAGE_BYTES: usize = 4096;
pub const LOG_ERROR: i32 = 0;
pub const LOG_WARN: i32 = 1;
pub const LOG_INFO: i32 = 2;
pub const LOG_DEBUG: i32 = 3;

/// Event handlers. One event runs at a time; between events the guest's whole state is
/// its memory and globals, which the VMM checkpoints.
pub trait Guest {
    /// First boot only; never on restore.
    fn init(&mut self) {}
    fn open(&mut self, _conn: i32) {}
    /// `data` is valid during the call only.
    fn data(&mut self, conn: i32, data: &[u8]);
    fn close(&mut self, _conn: i32) {}
    /// A timer armed with [`timer_at`] / [`timer_after_ms`] fired.
    fn timer(&mut self, _tag: i32) {}
}

/// Output on a connection; the proxy holds it until its checkpoint is acknowledged.
pub fn send(conn: i32, data: &[u8]) {
    unsafe { host::send(conn, data.as_ptr(), data.len() as i32) }
}

/// Closes a connection after its pending output.
pub fn close(conn: i32) {
    unsafe { host::close(conn) }
}

pub fn log(level: i32, msg: &str) {
    unsafe { host::log(level, msg.as_ptr(), msg.len() as i32) }
}

pub fn random(buf: &mut [u8]) {
    unsafe { host::random(buf.as_mut_ptr(), buf.len() as i32) }
}

pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    random(&mut b);
    u64::from_le_bytes(b)
}

/// Virtual disk, 4 KiB blocks: `Err(code)` on a negative status.
pub fn disk_read(block: i32, buf: &mut [u8]) -> Result<(), i32> {
    let r = unsafe { host::disk_read(block, buf.as_mut_ptr(), (buf.len() / PAGE_BYTES) as i32) };
    if r < 0 { Err(r) } else { Ok(()) }
}
pub fn disk_write(block: i32, buf: &[u8]) -> Result<(), i32> {
    let r = unsafe { host::disk_write(block, buf.as_ptr(), (buf.len() / PAGE_BYTES) as i32) };
    if r < 0 { Err(r) } else { Ok(()) }
}
/// Disk size in 4 KiB blocks; 0: no disk.
pub fn disk_blocks() -> i32 {
    unsafe { host::disk_blocks() }
}

// ---- clock: the kvmclock-style pvclock page ----

#[repr(C, align(32))]
struct PvClock {
    version: u32,
    pad0: u32,
    tsc_timestamp: u64,
    system_time: u64,
    tsc_to_system_mul: u32,
    tsc_shift: i8,
    flags: u8,
    pad: [u8; 2],
}

// Aligned to its 32 bytes, so it never straddles a 4 KiB page.
static mut PVCLOCK: PvClock = PvClock { version: 0, pad0: 0, tsc_timestamp: 0, system_time: 0, tsc_to_system_mul: 0, tsc_shift: 0, flags: 0, pad: [0; 2] };

/// Guest time in ns (continues across failover and restore); 0 before the host wrote the page.
pub fn now() -> i64 {
    use core::ptr::{addr_of, read_volatile};
    for _ in 0..(1 << 20) {
        unsafe {
            let v1 = read_volatile(addr_of!(PVCLOCK.version));
            if v1 & 1 != 0 {
                continue;
            }
            if v1 == 0 {
                return 0;
            }
            let ts = read_volatile(addr_of!(PVCLOCK.tsc_timestamp));
            let sys = read_volatile(addr_of!(PVCLOCK.system_time));
            let mul = read_volatile(addr_of!(PVCLOCK.tsc_to_system_mul)) as u64;
            let shift = read_volatile(addr_of!(PVCLOCK.tsc_shift)) as i32;
            let tsc = host::rdtsc() as u64;
            if read_volatile(addr_of!(PVCLOCK.version)) != v1 {
                continue;
            }
            let mut d = if (tsc.wrapping_sub(ts) as i64) > 0 { tsc - ts } else { 0 };
            if shift >= 0 { d <<= shift } else { d >>= -shift }
            return sys.wrapping_add((d >> 32) * mul + (((d & 0xffff_ffff) * mul) >> 32)) as i64;
        }
    }
    panic!("pvclock version never settled");
}

// ---- logical timers on the one-shot host timer ----

pub const MAX_TIMERS: usize = 64;

#[derive(Clone, Copy)]
struct Timer {
    deadline: i64,
    seq: u32, // 0: free
    tag: i32,
}

static mut TIMERS: [Timer; MAX_TIMERS] = [Timer { deadline: 0, seq: 0, tag: 0 }; MAX_TIMERS];
static mut TIMER_SEQ: u32 = 1;
static mut HOST_DEADLINE: i64 = 0;

/// Arms a one-shot timer at an absolute guest time; `None` when [`MAX_TIMERS`] are armed.
pub fn timer_at(deadline_ns: i64, tag: i32) -> Option<usize> {
    unsafe {
        for (i, t) in TIMERS.iter_mut().enumerate() {
            if t.seq == 0 {
                *t = Timer { deadline: deadline_ns.max(1), seq: TIMER_SEQ, tag };
                TIMER_SEQ += 1;
                return Some(i);
            }
        }
    }
    None
}

pub fn timer_after_ms(ms: i64, tag: i32) -> Option<usize> {
    timer_at(now() + ms * 1_000_000, tag)
}

/// true when the timer was armed and is now cancelled.
pub fn timer_cancel(id: usize) -> bool {
    unsafe {
        match TIMERS.get_mut(id) {
            Some(t) if t.seq != 0 => {
                t.seq = 0;
                true
            }
            _ => false,
        }
    }
}

/// Runtime used by the [`guest!`] exports; not part of the guest-facing API.
#[doc(hidden)]
pub mod rt {
    use super::*;

    pub fn init() {
        unsafe { host::clock_register(core::ptr::addr_of_mut!(PVCLOCK) as *mut u8) };
        // A panic logs its message, then aborts (a trap the VMM reports).
        std::panic::set_hook(Box::new(|info| log(LOG_ERROR, &format!("abort: {}", info))));
    }

    /// After every event: the host timer follows the earliest logical deadline.
    pub fn rearm() {
        unsafe {
            let next = TIMERS.iter().filter(|t| t.seq != 0).map(|t| t.deadline).min().unwrap_or(0);
            if next != HOST_DEADLINE {
                HOST_DEADLINE = next;
                host::timer_set(next);
            }
        }
    }

    /// The timers due now, earliest first; the set is fixed on entry.
    pub fn fire(mut f: impl FnMut(i32)) {
        unsafe {
            HOST_DEADLINE = 0; // the one-shot host timer just fired
            let now = now();
            let limit = TIMER_SEQ;
            loop {
                let mut best: Option<usize> = None;
                for (i, t) in TIMERS.iter().enumerate() {
                    if t.seq != 0 && t.seq < limit && t.deadline <= now && best.map_or(true, |b| t.deadline < TIMERS[b].deadline) {
                        best = Some(i);
                    }
                }
                match best {
                    Some(b) => {
                        TIMERS[b].seq = 0;
                        f(TIMERS[b].tag);
                    }
                    None => break,
                }
            }
        }
    }

    // Input buffers: one kept for reuse (a delivery writes the same pages each time),
    // others allocated; each is released by the ftvm_on_data it is passed to.
    static mut RX: *mut u8 = core::ptr::null_mut();
    static mut RX_CAP: usize = 0;
    static mut RX_BUSY: bool = false;
    const RX_KEEP_MAX: usize = 1 << 20;

    fn layout(n: usize) -> Layout {
        Layout::from_size_align(n.max(1), 8).expect("ftvm_alloc: bad length")
    }

    pub fn alloc_rx(len: i32) -> *mut u8 {
        assert!(len >= 0, "ftvm_alloc: negative length");
        let n = len as usize;
        unsafe {
            if !RX_BUSY && n <= RX_KEEP_MAX {
                if n > RX_CAP {
                    if !RX.is_null() {
                        dealloc(RX, layout(RX_CAP));
                    }
                    let mut cap = RX_CAP.max(16384);
                    while cap < n {
                        cap *= 2;
                    }
                    RX = alloc(layout(cap));
                    assert!(!RX.is_null(), "ftvm_alloc: out of memory");
                    RX_CAP = cap;
                }
                RX_BUSY = true;
                return RX;
            }
            let p = alloc(layout(n));
            assert!(!p.is_null(), "ftvm_alloc: out of memory");
            p
        }
    }

    pub unsafe fn release_rx(ptr: *mut u8, len: i32) {
        if ptr == RX {
            RX_BUSY = false;
        } else {
            dealloc(ptr, layout(len as usize));
        }
    }
}

/// Defines the `ftvm_*` exports for a guest type: `ftvm::guest!(MyGuest, MyGuest::new());`
/// The constructor runs in `ftvm_init` (first boot only); on restore the guest value
/// comes back with memory.
#[macro_export]
macro_rules! guest {
    ($ty:ty, $ctor:expr) => {
        static mut FTVM_GUEST: Option<$ty> = None;

        fn ftvm_guest() -> &'static mut $ty {
            unsafe { FTVM_GUEST.as_mut().expect("ftvm: no guest (ftvm_init not run)") }
        }

        #[no_mangle]
        pub extern "C" fn ftvm_init() {
            $crate::rt::init();
            unsafe { FTVM_GUEST = Some($ctor) };
            $crate::Guest::init(ftvm_guest());
            $crate::rt::rearm();
        }

        #[no_mangle]
        pub extern "C" fn ftvm_alloc(len: i32) -> *mut u8 {
            $crate::rt::alloc_rx(len)
        }

        #[no_mangle]
        pub unsafe extern "C" fn ftvm_on_data(conn: i32, ptr: *mut u8, len: i32) {
            $crate::Guest::data(ftvm_guest(), conn, core::slice::from_raw_parts(ptr, len as usize));
            $crate::rt::release_rx(ptr, len);
            $crate::rt::rearm();
        }

        #[no_mangle]
        pub extern "C" fn ftvm_on_open(conn: i32) {
            $crate::Guest::open(ftvm_guest(), conn);
            $crate::rt::rearm();
        }

        #[no_mangle]
        pub extern "C" fn ftvm_on_close(conn: i32) {
            $crate::Guest::close(ftvm_guest(), conn);
            $crate::rt::rearm();
        }

        #[no_mangle]
        pub extern "C" fn ftvm_on_timer() {
            $crate::rt::fire(|tag| $crate::Guest::timer(ftvm_guest(), tag));
            $crate::rt::rearm();
        }
    };
}
