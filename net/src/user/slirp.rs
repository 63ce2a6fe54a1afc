//! A small, safe binding to libslirp (Debian's libslirp0 4.7; the API of libslirp.h with
//! `SlirpConfig` version 4). All of this crate's libslirp `unsafe` lives here.
//!
//! Why our own binding: the crates.io bindings do not fit. `libslirp-sys` 4.2.1 stops at
//! config version 3 (no `disable_dhcp`, no `timer_new_opaque`/`slirp_handle_timer`) and
//! finds the library through pkg-config, which for Debian's slirp.pc also demands glib's
//! development files; `libslirp` 4.3.2 builds on it and brings mio 0.6, structopt and, for
//! its helper, zbus. What ferrite needs is a dozen functions driven from one poll thread.
//!
//! A [`Slirp`] never leaves the thread that made it (it holds raw pointers, so it is
//! neither `Send` nor `Sync`): libslirp is not thread-safe, and the backend thread makes,
//! polls and frees it.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void, CString};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::time::{Duration, Instant};

use crate::options::{OptionError, UserOptions};
use crate::queue::RxQueue;
use crate::sys::PollSet;
use crate::NetError;

mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    /// libslirp's opaque state.
    #[repr(C)]
    pub(super) struct RawSlirp {
        _private: [u8; 0],
    }

    // libslirp.h: flags of SlirpAddPollCb and SlirpGetREventsCb.
    pub(super) const POLL_IN: c_int = 1 << 0;
    pub(super) const POLL_OUT: c_int = 1 << 1;
    pub(super) const POLL_PRI: c_int = 1 << 2;
    pub(super) const POLL_ERR: c_int = 1 << 3;
    pub(super) const POLL_HUP: c_int = 1 << 4;

    /// libslirp.h: the SlirpConfig version whose fields are below.
    pub(super) const CONFIG_VERSION: u32 = 4;

    pub(super) type TimerCb = Option<unsafe extern "C" fn(opaque: *mut c_void)>;
    pub(super) type AddPollCb = unsafe extern "C" fn(fd: c_int, events: c_int, opaque: *mut c_void) -> c_int;
    pub(super) type GetREventsCb = unsafe extern "C" fn(idx: c_int, opaque: *mut c_void) -> c_int;

    /// libslirp.h `SlirpCb` (through the version 4 fields).
    #[repr(C)]
    pub(super) struct Callbacks {
        pub send_packet: Option<unsafe extern "C" fn(buf: *const c_void, len: usize, opaque: *mut c_void) -> isize>,
        pub guest_error: Option<unsafe extern "C" fn(msg: *const c_char, opaque: *mut c_void)>,
        pub clock_get_ns: Option<unsafe extern "C" fn(opaque: *mut c_void) -> i64>,
        pub timer_new: Option<unsafe extern "C" fn(cb: TimerCb, cb_opaque: *mut c_void, opaque: *mut c_void) -> *mut c_void>,
        pub timer_free: Option<unsafe extern "C" fn(timer: *mut c_void, opaque: *mut c_void)>,
        pub timer_mod: Option<unsafe extern "C" fn(timer: *mut c_void, expire_ms: i64, opaque: *mut c_void)>,
        pub register_poll_fd: Option<unsafe extern "C" fn(fd: c_int, opaque: *mut c_void)>,
        pub unregister_poll_fd: Option<unsafe extern "C" fn(fd: c_int, opaque: *mut c_void)>,
        pub notify: Option<unsafe extern "C" fn(opaque: *mut c_void)>,
        pub init_completed: Option<unsafe extern "C" fn(slirp: *mut RawSlirp, opaque: *mut c_void)>,
        pub timer_new_opaque: Option<unsafe extern "C" fn(id: c_int, cb_opaque: *mut c_void, opaque: *mut c_void) -> *mut c_void>,
    }

    /// libslirp.h `SlirpConfig`, version 4.
    #[repr(C)]
    pub(super) struct Config {
        pub version: u32,
        pub restricted: c_int,
        pub in_enabled: bool,
        pub vnetwork: libc::in_addr,
        pub vnetmask: libc::in_addr,
        pub vhost: libc::in_addr,
        pub in6_enabled: bool,
        pub vprefix_addr6: libc::in6_addr,
        pub vprefix_len: u8,
        pub vhost6: libc::in6_addr,
        pub vhostname: *const c_char,
        pub tftp_server_name: *const c_char,
        pub tftp_path: *const c_char,
        pub bootfile: *const c_char,
        pub vdhcp_start: libc::in_addr,
        pub vnameserver: libc::in_addr,
        pub vnameserver6: libc::in6_addr,
        pub vdnssearch: *mut *const c_char,
        pub vdomainname: *const c_char,
        pub if_mtu: usize,
        pub if_mru: usize,
        pub disable_host_loopback: bool,
        pub enable_emu: bool,
        pub outbound_addr: *const libc::sockaddr_in,
        pub outbound_addr6: *const libc::sockaddr_in6,
        pub disable_dns: bool,
        pub disable_dhcp: bool,
    }

    #[link(name = "slirp")]
    extern "C" {
        pub(super) fn slirp_new(cfg: *const Config, callbacks: *const Callbacks, opaque: *mut c_void) -> *mut RawSlirp;
        pub(super) fn slirp_cleanup(slirp: *mut RawSlirp);
        pub(super) fn slirp_pollfds_fill(slirp: *mut RawSlirp, timeout: *mut u32, add_poll: AddPollCb, opaque: *mut c_void);
        pub(super) fn slirp_pollfds_poll(slirp: *mut RawSlirp, select_error: c_int, get_revents: GetREventsCb, opaque: *mut c_void);
        pub(super) fn slirp_input(slirp: *mut RawSlirp, pkt: *const u8, pkt_len: c_int);
        pub(super) fn slirp_handle_timer(slirp: *mut RawSlirp, id: c_int, cb_opaque: *mut c_void);
        pub(super) fn slirp_add_hostfwd(
            slirp: *mut RawSlirp,
            is_udp: c_int,
            host_addr: libc::in_addr,
            host_port: c_int,
            guest_addr: libc::in_addr,
            guest_port: c_int,
        ) -> c_int;
    }
}

/// The callbacks, for every instance (libslirp keeps the pointer).
static CALLBACKS: ffi::Callbacks = ffi::Callbacks {
    send_packet: Some(send_packet),
    guest_error: Some(guest_error),
    clock_get_ns: Some(clock_get_ns),
    timer_new: Some(timer_new),
    timer_free: Some(timer_free),
    timer_mod: Some(timer_mod),
    register_poll_fd: Some(register_poll_fd),
    unregister_poll_fd: Some(register_poll_fd),
    notify: Some(notify),
    init_completed: Some(init_completed),
    timer_new_opaque: Some(timer_new_opaque),
};

/// The clock libslirp sees starts here (in ns), so no timestamp is 0, which its TCP code
/// reads as "timer not armed".
const CLOCK_BASE_NS: i64 = 1_000_000_000;

/// What a timer does when it fires.
#[derive(Clone, Copy)]
enum Fire {
    /// Made by `timer_new`: call `cb(cb_opaque)`.
    Callback(unsafe extern "C" fn(*mut c_void), *mut c_void),
    /// Made by `timer_new_opaque`: `slirp_handle_timer(slirp, id, cb_opaque)`.
    Id(c_int, *mut c_void),
}

struct Timer {
    handle: usize,
    fire: Fire,
    expire_ms: Option<i64>,
}

/// The state callbacks reach through libslirp's `opaque` pointer. Only shared references
/// to it ever exist (mutation goes through cells), so the callbacks' references and the
/// owner's never conflict.
struct Context {
    queue: RefCell<RxQueue>,
    epoch: Instant,
    timers: RefCell<Vec<Timer>>,
    next_handle: Cell<usize>,
    /// A panic caught in a callback (it must not unwind through C), re-raised once libslirp
    /// has returned.
    panic: Cell<Option<Box<dyn Any + Send>>>,
}

impl Context {
    fn now_ns(&self) -> i64 {
        CLOCK_BASE_NS + self.epoch.elapsed().as_nanos() as i64
    }
}

/// One libslirp instance and the Rust state its callbacks use.
pub(crate) struct Slirp {
    raw: NonNull<ffi::RawSlirp>,
    /// From `Box::into_raw`; freed in `drop` after libslirp is gone.
    ctx: NonNull<Context>,
}

fn in_addr(a: Ipv4Addr) -> libc::in_addr {
    libc::in_addr { s_addr: u32::from_ne_bytes(a.octets()) }
}

fn in6_addr(a: Ipv6Addr) -> libc::in6_addr {
    libc::in6_addr { s6_addr: a.octets() }
}

fn cstring(option: &str, value: &[u8]) -> Result<CString, NetError> {
    CString::new(value).map_err(|_| {
        NetError::Options(OptionError::InvalidValue {
            option: option.into(),
            value: String::from_utf8_lossy(value).into_owned(),
            expected: "must not contain a NUL character".into(),
        })
    })
}

fn opt_cstring(option: &str, value: Option<&str>) -> Result<Option<CString>, NetError> {
    value.map(|v| cstring(option, v.as_bytes())).transpose()
}

fn ptr_of(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(ptr::null(), |s| s.as_ptr())
}

impl Slirp {
    /// Creates the stack for `opts`; frames for the guest go to `queue`.
    pub(crate) fn new(opts: &UserOptions, queue: RxQueue) -> Result<Slirp, NetError> {
        let hostname = opt_cstring("hostname", opts.hostname.as_deref())?;
        let domainname = opt_cstring("domainname", opts.domainname.as_deref())?;
        let tftp_server_name = opt_cstring("tftp-server-name", opts.tftp_server_name.as_deref())?;
        let bootfile = opt_cstring("bootfile", opts.bootfile.as_deref())?;
        let tftp = opts.tftp.as_ref().map(|p| cstring("tftp", p.as_os_str().as_bytes())).transpose()?;
        let search: Vec<CString> = opts.dnssearch.iter().map(|d| cstring("dnssearch", d.as_bytes())).collect::<Result<_, _>>()?;
        let mut search_ptrs: Vec<*const c_char> = search.iter().map(|s| s.as_ptr()).chain([ptr::null()]).collect();
        let cfg = ffi::Config {
            version: ffi::CONFIG_VERSION,
            restricted: c_int::from(opts.restrict),
            in_enabled: opts.ipv4,
            vnetwork: in_addr(opts.net),
            vnetmask: in_addr(opts.netmask),
            vhost: in_addr(opts.host),
            in6_enabled: opts.ipv6,
            vprefix_addr6: in6_addr(opts.ipv6_prefix),
            vprefix_len: opts.ipv6_prefix_len,
            vhost6: in6_addr(opts.ipv6_host),
            vhostname: ptr_of(&hostname),
            tftp_server_name: ptr_of(&tftp_server_name),
            tftp_path: ptr_of(&tftp),
            bootfile: ptr_of(&bootfile),
            vdhcp_start: in_addr(opts.dhcpstart),
            vnameserver: in_addr(opts.dns),
            vnameserver6: in6_addr(opts.ipv6_dns),
            vdnssearch: if search.is_empty() { ptr::null_mut() } else { search_ptrs.as_mut_ptr() },
            vdomainname: ptr_of(&domainname),
            if_mtu: 0, // libslirp's default, 1500
            if_mru: 0,
            disable_host_loopback: false,
            enable_emu: false,
            outbound_addr: ptr::null(),
            outbound_addr6: ptr::null(),
            disable_dns: false,
            disable_dhcp: false,
        };
        let ctx = Box::new(Context {
            queue: RefCell::new(queue),
            epoch: Instant::now(),
            timers: RefCell::new(Vec::new()),
            next_handle: Cell::new(1),
            panic: Cell::new(None),
        });
        let ctx = NonNull::from(Box::leak(ctx));
        // SAFETY: `cfg` is a complete version-4 SlirpConfig whose string pointers (and the
        // NULL-terminated search list) point into CStrings alive until after this call;
        // libslirp copies what it keeps. CALLBACKS is 'static, as libslirp keeps a pointer
        // to it. `ctx` stays valid until after slirp_cleanup (see Drop).
        let raw = unsafe { ffi::slirp_new(&cfg, &CALLBACKS, ctx.as_ptr().cast()) };
        let Some(raw) = NonNull::new(raw) else {
            // SAFETY: `ctx` came from Box::leak above and libslirp, having failed, keeps no
            // pointer to it.
            drop(unsafe { Box::from_raw(ctx.as_ptr()) });
            return Err(NetError::SlirpInit);
        };
        let slirp = Slirp { raw, ctx };
        slirp.rethrow();
        Ok(slirp)
    }

    fn ctx(&self) -> &Context {
        // SAFETY: `ctx` is valid from `new` until `drop`, and only shared references to it
        // are ever made.
        unsafe { self.ctx.as_ref() }
    }

    /// The hold-back queue the stack's frames for the guest go to.
    pub(crate) fn queue(&self) -> &RefCell<RxQueue> {
        &self.ctx().queue
    }

    /// Re-raises a panic a callback caught.
    fn rethrow(&self) {
        if let Some(p) = self.ctx().panic.take() {
            resume_unwind(p);
        }
    }

    /// Forwards connections to `host` (TCP or UDP) to `guest`. Err: libslirp could not
    /// bind the host address (the caller finds out why).
    pub(crate) fn add_hostfwd(&mut self, udp: bool, host: SocketAddrV4, guest: SocketAddrV4) -> Result<(), ()> {
        // SAFETY: `raw` is a live instance used only on this thread; the addresses are
        // passed by value.
        let r = unsafe {
            ffi::slirp_add_hostfwd(
                self.raw.as_ptr(),
                c_int::from(udp),
                in_addr(*host.ip()),
                c_int::from(host.port()),
                in_addr(*guest.ip()),
                c_int::from(guest.port()),
            )
        };
        if r < 0 {
            Err(())
        } else {
            Ok(())
        }
    }

    /// A frame from the guest.
    pub(crate) fn input(&mut self, frame: &[u8]) {
        let Ok(len) = c_int::try_from(frame.len()) else { return };
        // SAFETY: `frame` is valid for `len` bytes for the call; libslirp copies it. The
        // callbacks it makes meanwhile reach `ctx` through shared references only.
        unsafe { ffi::slirp_input(self.raw.as_ptr(), frame.as_ptr(), len) };
        self.rethrow();
    }

    /// Adds libslirp's sockets to `polls` (without read interest unless `receive`);
    /// returns how long poll may sleep.
    pub(crate) fn fill(&mut self, polls: &mut PollSet, receive: bool) -> Option<Duration> {
        let mut timeout_ms = u32::MAX;
        let mut fill = Fill { polls, receive };
        // SAFETY: `fill` outlives the call and is reached only by add_poll, as a unique
        // reference, one callback at a time; `timeout_ms` is a valid u32 for the call.
        unsafe {
            ffi::slirp_pollfds_fill(self.raw.as_ptr(), &mut timeout_ms, add_poll, (&mut fill as *mut Fill).cast());
        }
        self.rethrow();
        let slirp = (timeout_ms != u32::MAX).then(|| Duration::from_millis(timeout_ms.into()));
        let now_ms = self.ctx().now_ns() / 1_000_000;
        let timers = self.ctx().timers.borrow();
        let timer = timers
            .iter()
            .filter_map(|t| t.expire_ms)
            .min()
            .map(|at| Duration::from_millis(at.saturating_sub(now_ms).max(0) as u64));
        match (slirp, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Lets libslirp act on what poll reported (`error`: poll itself failed), then runs
    /// due timers.
    pub(crate) fn poll(&mut self, polls: &PollSet, error: bool) {
        // SAFETY: `polls` outlives the call and get_revents only reads it.
        unsafe {
            ffi::slirp_pollfds_poll(
                self.raw.as_ptr(),
                c_int::from(error),
                get_revents,
                (polls as *const PollSet).cast_mut().cast(),
            );
        }
        self.rethrow();
        self.run_timers();
    }

    fn run_timers(&mut self) {
        let now_ms = self.ctx().now_ns() / 1_000_000;
        let due: Vec<(usize, Fire)> = {
            let mut timers = self.ctx().timers.borrow_mut();
            timers
                .iter_mut()
                .filter(|t| t.expire_ms.is_some_and(|at| at <= now_ms))
                .map(|t| {
                    t.expire_ms = None;
                    (t.handle, t.fire)
                })
                .collect()
        };
        for (handle, fire) in due {
            // An earlier timer's callback may have freed this one.
            if !self.ctx().timers.borrow().iter().any(|t| t.handle == handle) {
                continue;
            }
            match fire {
                // SAFETY: libslirp gave this callback and its argument to timer_new for
                // this instance, which is alive; it is called on the instance's thread.
                Fire::Callback(cb, arg) => unsafe { cb(arg) },
                // SAFETY: as above, with the id and argument libslirp gave timer_new_opaque.
                Fire::Id(id, arg) => unsafe { ffi::slirp_handle_timer(self.raw.as_ptr(), id, arg) },
            }
            self.rethrow();
        }
    }
}

impl Drop for Slirp {
    fn drop(&mut self) {
        // SAFETY: `raw` is live and not used after this; the callbacks slirp_cleanup makes
        // (timer_free, unregister_poll_fd) find `ctx` still valid.
        unsafe { ffi::slirp_cleanup(self.raw.as_ptr()) };
        // SAFETY: `ctx` came from Box::leak in `new`, and libslirp, now gone, was the only
        // other holder of the pointer.
        drop(unsafe { Box::from_raw(self.ctx.as_ptr()) });
    }
}

/// What add_poll needs during slirp_pollfds_fill.
struct Fill<'a> {
    polls: &'a mut PollSet,
    receive: bool,
}

/// # Safety
/// `opaque` is the Context pointer given to slirp_new (true for every callback below that
/// takes one), valid while the instance lives; only shared references to it are made.
unsafe fn context<'a>(opaque: *mut c_void) -> &'a Context {
    // SAFETY: see the function's contract.
    unsafe { &*opaque.cast::<Context>() }
}

unsafe extern "C" fn send_packet(buf: *const c_void, len: usize, opaque: *mut c_void) -> isize {
    // SAFETY: libslirp passes the instance's opaque pointer.
    let ctx = unsafe { context(opaque) };
    // SAFETY: libslirp passes a frame valid for `len` bytes for the call's duration.
    let frame = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) };
    // A panic in the card's deliver must not unwind into C: keep it for `rethrow`.
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| ctx.queue.borrow_mut().offer(frame))) {
        let first = ctx.panic.take().unwrap_or(p);
        ctx.panic.set(Some(first));
    }
    len as isize
}

unsafe extern "C" fn guest_error(_msg: *const c_char, _opaque: *mut c_void) {
    // The guest sent something malformed; libslirp dropped it. Like QEMU without
    // `-d guest_errors`, say nothing.
}

unsafe extern "C" fn clock_get_ns(opaque: *mut c_void) -> i64 {
    // SAFETY: libslirp passes the instance's opaque pointer.
    unsafe { context(opaque) }.now_ns()
}

fn new_timer(ctx: &Context, fire: Fire) -> *mut c_void {
    let handle = ctx.next_handle.get();
    ctx.next_handle.set(handle + 1);
    ctx.timers.borrow_mut().push(Timer { handle, fire, expire_ms: None });
    // A handle, not an address: libslirp only passes it back.
    handle as *mut c_void
}

unsafe extern "C" fn timer_new(cb: ffi::TimerCb, cb_opaque: *mut c_void, opaque: *mut c_void) -> *mut c_void {
    // SAFETY: libslirp passes the instance's opaque pointer.
    let ctx = unsafe { context(opaque) };
    match cb {
        Some(cb) => new_timer(ctx, Fire::Callback(cb, cb_opaque)),
        None => ptr::null_mut(),
    }
}

unsafe extern "C" fn timer_new_opaque(id: c_int, cb_opaque: *mut c_void, opaque: *mut c_void) -> *mut c_void {
    // SAFETY: libslirp passes the instance's opaque pointer.
    new_timer(unsafe { context(opaque) }, Fire::Id(id, cb_opaque))
}

unsafe extern "C" fn timer_free(timer: *mut c_void, opaque: *mut c_void) {
    // SAFETY: libslirp passes the instance's opaque pointer.
    let ctx = unsafe { context(opaque) };
    ctx.timers.borrow_mut().retain(|t| t.handle != timer as usize);
}

unsafe extern "C" fn timer_mod(timer: *mut c_void, expire_ms: i64, opaque: *mut c_void) {
    // SAFETY: libslirp passes the instance's opaque pointer.
    let ctx = unsafe { context(opaque) };
    if let Some(t) = ctx.timers.borrow_mut().iter_mut().find(|t| t.handle == timer as usize) {
        t.expire_ms = Some(expire_ms);
    }
}

/// Also unregister_poll_fd: every poll set is built afresh by slirp_pollfds_fill.
unsafe extern "C" fn register_poll_fd(_fd: c_int, _opaque: *mut c_void) {}

/// libslirp can take more data for a guestfwd socket; ferrite has none, and the loop polls
/// again anyway.
unsafe extern "C" fn notify(_opaque: *mut c_void) {}

unsafe extern "C" fn init_completed(_slirp: *mut ffi::RawSlirp, _opaque: *mut c_void) {}

unsafe extern "C" fn add_poll(fd: c_int, events: c_int, opaque: *mut c_void) -> c_int {
    // SAFETY: `opaque` is the `Fill` that Slirp::fill passed, alive and not otherwise
    // referenced during slirp_pollfds_fill.
    let fill = unsafe { &mut *opaque.cast::<Fill>() };
    let mut ev = 0;
    if events & ffi::POLL_IN != 0 && fill.receive {
        ev |= libc::POLLIN;
    }
    if events & ffi::POLL_PRI != 0 && fill.receive {
        ev |= libc::POLLPRI;
    }
    if events & ffi::POLL_OUT != 0 {
        ev |= libc::POLLOUT;
    }
    // Held back and only reading wanted: a placeholder poll(2) skips (fd -1), so a hang-up
    // on the socket cannot wake the loop over and over; libslirp sees it once reading resumes.
    let fd = if ev == 0 { -1 } else { fd };
    fill.polls.add_raw(fd, ev) as c_int
}

unsafe extern "C" fn get_revents(idx: c_int, opaque: *mut c_void) -> c_int {
    // SAFETY: `opaque` is the PollSet Slirp::poll passed, alive and only read meanwhile.
    let polls = unsafe { &*opaque.cast::<PollSet>() };
    let Ok(idx) = usize::try_from(idx) else { return 0 };
    let rev = polls.revents(idx);
    let mut out = 0;
    for (poll, slirp) in [
        (libc::POLLIN, ffi::POLL_IN),
        (libc::POLLOUT, ffi::POLL_OUT),
        (libc::POLLPRI, ffi::POLL_PRI),
        (libc::POLLERR, ffi::POLL_ERR),
        (libc::POLLHUP, ffi::POLL_HUP),
    ] {
        if rev & poll != 0 {
            out |= slirp;
        }
    }
    out
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::ffi;
    use std::mem::{offset_of, size_of};

    /// The layouts match libslirp.h as a C compiler lays it out on x86-64 (measured with
    /// offsetof against Debian's libslirp-dev 4.7).
    #[test]
    fn layouts_match_libslirp_h() {
        assert_eq!(size_of::<ffi::Config>(), 184);
        assert_eq!(offset_of!(ffi::Config, in_enabled), 8);
        assert_eq!(offset_of!(ffi::Config, vnetwork), 12);
        assert_eq!(offset_of!(ffi::Config, in6_enabled), 24);
        assert_eq!(offset_of!(ffi::Config, vprefix_addr6), 28);
        assert_eq!(offset_of!(ffi::Config, vprefix_len), 44);
        assert_eq!(offset_of!(ffi::Config, vhost6), 48);
        assert_eq!(offset_of!(ffi::Config, vhostname), 64);
        assert_eq!(offset_of!(ffi::Config, vdhcp_start), 96);
        assert_eq!(offset_of!(ffi::Config, vnameserver6), 104);
        assert_eq!(offset_of!(ffi::Config, vdnssearch), 120);
        assert_eq!(offset_of!(ffi::Config, if_mtu), 136);
        assert_eq!(offset_of!(ffi::Config, disable_host_loopback), 152);
        assert_eq!(offset_of!(ffi::Config, outbound_addr), 160);
        assert_eq!(offset_of!(ffi::Config, disable_dns), 176);
        assert_eq!(offset_of!(ffi::Config, disable_dhcp), 177);
        assert_eq!(size_of::<ffi::Callbacks>(), 88);
    }
}
