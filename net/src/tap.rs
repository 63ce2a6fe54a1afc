//! `-netdev tap`: a host tap device through /dev/net/tun. Each read is one frame, each
//! write one frame (no packet-information prefix, no virtio-net header). Ferrite runs no
//! ifup scripts: the device is configured outside it (addresses, bridge, link up).

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::Duration;

use crate::options::TapOptions;
use crate::queue::RxQueue;
use crate::socket::MAX_FRAME;
use crate::sys::{self, PollSet};
use crate::worker::Driver;
use crate::{NetError, Stats};

const TUN_PATH: &str = "/dev/net/tun";
/// Frames read per poll wakeup.
const READ_BURST: usize = 32;

pub(crate) struct TapDriver {
    queue: RefCell<RxQueue>,
    stats: Arc<Stats>,
    file: File,
    idx: Option<usize>,
    buf: Vec<u8>,
}

/// Opens /dev/net/tun and attaches it to tap device `ifname` (None: a new `tapN`).
/// Returns the file and the device's name.
pub(crate) fn open_tap(ifname: Option<&str>) -> Result<(File, String), NetError> {
    let shown = ifname.unwrap_or("tapN").to_string();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(TUN_PATH)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) => NetError::TunMissing,
            Some(libc::EACCES | libc::EPERM) => NetError::TunDenied,
            _ => NetError::Tap { ifname: shown.clone(), source: e },
        })?;
    let name = sys::tun_set_tap(&file, ifname.unwrap_or("")).map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => NetError::TapDenied { ifname: shown.clone() },
        Some(libc::EBUSY) => NetError::TapBusy { ifname: shown.clone() },
        _ => NetError::Tap { ifname: shown.clone(), source: e },
    })?;
    Ok((file, name))
}

impl TapDriver {
    pub(crate) fn open(opts: &TapOptions, queue: RxQueue, stats: Arc<Stats>) -> Result<Self, NetError> {
        let (file, _name) = open_tap(opts.ifname.as_deref())?;
        Ok(TapDriver { queue: RefCell::new(queue), stats, file, idx: None, buf: vec![0; MAX_FRAME] })
    }
}

impl Driver for TapDriver {
    fn queue(&self) -> &RefCell<RxQueue> {
        &self.queue
    }

    fn transmit(&mut self, frame: &[u8]) {
        // A full device queue (EAGAIN) or a device that is down (EIO): the frame is lost, as
        // on a congested or unplugged wire.
        let sent = matches!((&self.file).write(frame), Ok(n) if n == frame.len());
        Stats::bump(if sent { &self.stats.tx_frames } else { &self.stats.tx_dropped });
    }

    fn prepare(&mut self, polls: &mut PollSet, receive: bool) -> Option<Duration> {
        self.idx = receive.then(|| polls.add(self.file.as_fd(), libc::POLLIN));
        None
    }

    fn dispatch(&mut self, polls: &PollSet) {
        let Some(idx) = self.idx.take() else { return };
        if polls.revents(idx) == 0 {
            return;
        }
        for _ in 0..READ_BURST {
            let len = match (&self.file).read(&mut self.buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let mut queue = self.queue.borrow_mut();
            queue.offer(&self.buf[..len]);
            if queue.is_holding() {
                return;
            }
        }
    }
}
