//! The few host calls std has no safe wrapper for: poll(2) and the tun ioctl. (libslirp's
//! binding has a module of its own, `user::slirp`.)

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The descriptors one backend-thread iteration sleeps on.
#[derive(Default)]
pub(crate) struct PollSet {
    fds: Vec<libc::pollfd>,
}

impl PollSet {
    pub(crate) fn clear(&mut self) {
        self.fds.clear();
    }

    /// Adds `fd` with `events` (`libc::POLLIN`, ...); returns its index for [`Self::revents`].
    pub(crate) fn add(&mut self, fd: BorrowedFd<'_>, events: i16) -> usize {
        self.add_raw(fd.as_raw_fd(), events)
    }

    /// As [`Self::add`] for a descriptor owned by C code (libslirp). A negative `fd` is
    /// skipped by poll(2) and reports no events.
    pub(crate) fn add_raw(&mut self, fd: RawFd, events: i16) -> usize {
        self.fds.push(libc::pollfd { fd, events, revents: 0 });
        self.fds.len() - 1
    }

    /// What poll(2) reported for entry `idx` (0 for an unknown index).
    pub(crate) fn revents(&self, idx: usize) -> i16 {
        self.fds.get(idx).map_or(0, |p| p.revents)
    }

    /// Sleeps until an entry is ready or `timeout` (None: forever) passes. EINTR is a normal
    /// wakeup with no events.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let ms = match timeout {
            None => -1,
            // Round up so a 0.3 ms timer does not turn into a busy loop of 0 ms polls.
            Some(t) => t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32,
        };
        for p in &mut self.fds {
            p.revents = 0;
        }
        // SAFETY: `fds` is a live, exclusively borrowed array of `len` initialised pollfd
        // structs; poll(2) writes only their `revents` fields.
        let r = unsafe { libc::poll(self.fds.as_mut_ptr(), self.fds.len() as libc::nfds_t, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        Ok(())
    }
}

/// Wakes the backend thread out of poll(2): a non-blocking socket pair, whose read end is
/// in every poll set. (A pair rather than a pipe: a full buffer fails instead of blocking,
/// and a pending byte already guarantees the wakeup.)
pub(crate) struct Waker {
    tx: UnixStream,
    rx: UnixStream,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Self> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(Waker { tx, rx })
    }

    pub(crate) fn wake(&self) {
        // WouldBlock: bytes are pending already, so the thread wakes anyway.
        let _ = (&self.tx).write(&[1]);
    }

    /// Consumes pending wakeups (on the backend thread, after poll).
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.rx).read(&mut buf), Ok(n) if n > 0) {}
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.rx.as_fd()
    }
}

/// linux/if_tun.h: TUNSETIFF = _IOW('T', 202, int).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// linux/if_tun.h: an Ethernet (layer 2) device.
const IFF_TAP: libc::c_short = 0x0002;
/// linux/if_tun.h: frames without the 4-byte packet-information prefix.
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` as TUNSETIFF reads and writes it: the name, then the flags in the union.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Attaches the open /dev/net/tun `file` to tap device `name` (empty: the kernel picks
/// `tapN`), Ethernet frames without a prefix and without a virtio-net header. Returns the
/// device's name.
pub(crate) fn tun_set_tap(file: &File, name: &str) -> io::Result<String> {
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags: IFF_TAP | IFF_NO_PI, _pad: [0; 22] };
    // The caller checked the length (at most IFNAMSIZ - 1 bytes, so a NUL always follows).
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq` (40 bytes on Linux, the size of
    // IfReq: name, flags, padding) through the pointer, which is valid and exclusively
    // borrowed for the call; the fd is open for the call's duration.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = req.name.iter().position(|&b| b == 0).unwrap_or(libc::IFNAMSIZ);
    Ok(String::from_utf8_lossy(&req.name[..len]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_the_kernel_size() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }

    #[test]
    fn waker_wakes_poll_and_drains() {
        let w = Waker::new().unwrap();
        let mut set = PollSet::default();
        for _ in 0..100_000 {
            w.wake(); // never blocks, however often
        }
        set.add(w.fd(), libc::POLLIN);
        set.wait(Some(Duration::from_secs(5))).unwrap();
        assert_ne!(set.revents(0) & libc::POLLIN, 0);
        w.drain();
        set.wait(Some(Duration::from_millis(10))).unwrap();
        assert_eq!(set.revents(0), 0);
    }
}
