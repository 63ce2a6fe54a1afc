//! Network backends: what an emulated network card's frames reach on the host.
//!
//! A backend runs on its own thread. Frames the card transmits are handed over with
//! [`NetBackend::send`] (never blocking); frames for the guest are offered to the card
//! through the [`Peer`] the backend was opened with.
//!
//! The backends, opened from QEMU's `-netdev` options ([`NetdevOptions::parse`]):
//! - `user`: libslirp's user-mode stack (NAT, DHCP, DNS forwarding, host port forwards);
//! - `socket`: frames over TCP (`listen=`/`connect=`, QEMU's length-prefixed framing),
//!   UDP multicast (`mcast=`) or unicast UDP (`udp=`), to another ferrite or QEMU;
//! - `tap`: a host tap device.
//!
//! When the card refuses a frame (no receive buffers), the backend keeps it and everything
//! after it in a bounded queue and stops reading its source until [`NetBackend::rx_space`]
//! says the card has room again, so TCP slows down instead of losing data.

mod options;
mod queue;
mod socket;
mod sys;
mod tap;
mod user;
mod worker;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use options::{FwdProtocol, HostFwd, HostPort, NetdevOptions, OptionError, SocketOptions, TapOptions, UserOptions};

/// The card side of a backend: where frames for the guest go.
pub trait Peer: Send + Sync + 'static {
    /// Offers one Ethernet frame (no FCS) to the card. `false`: the card has no room now; the
    /// backend holds the frame (in a bounded queue, dropping the oldest beyond it) and offers
    /// it again after [`NetBackend::rx_space`].
    ///
    /// Called on the backend's thread, with no backend lock held: it may call
    /// [`NetBackend::send`] and [`NetBackend::rx_space`] (directly or from another thread it
    /// waits for).
    fn deliver(&self, frame: &[u8]) -> bool;
}

/// Why a backend could not be set up. Messages are meant for the user who wrote the option.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The `-netdev` value is malformed or asks for something ferrite does not do.
    #[error(transparent)]
    Options(#[from] OptionError),

    #[error("hostfwd={rule}: cannot listen on host port {port}: {source}")]
    Hostfwd { rule: String, port: u16, source: io::Error },

    #[error("user networking: libslirp refused the configuration")]
    SlirpInit,

    #[error("socket: cannot resolve '{addr}': {source}")]
    Resolve { addr: String, source: io::Error },

    #[error("socket: cannot listen on {addr}: {source}")]
    Listen { addr: String, port: u16, source: io::Error },

    #[error("socket: cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },

    #[error("socket: cannot join multicast group {group}{}: {source}", on.map(|a| format!(" on local address {a}")).unwrap_or_default())]
    Multicast { group: String, on: Option<std::net::Ipv4Addr>, source: io::Error },

    #[error("socket: cannot bind UDP address {addr}: {source}")]
    Udp { addr: String, port: u16, source: io::Error },

    #[error("tap: /dev/net/tun does not exist (load the tun module: modprobe tun)")]
    TunMissing,

    #[error("tap: permission denied opening /dev/net/tun (it needs read-write access; run as a user in the owning group, or as root)")]
    TunDenied,

    #[error("tap: no permission to create or attach tap device '{ifname}': it needs CAP_NET_ADMIN, or a persistent tap device owned by this user (ip tuntap add {ifname} mode tap user $USER)")]
    TapDenied { ifname: String },

    #[error("tap: tap device '{ifname}' is busy (another program has it open)")]
    TapBusy { ifname: String },

    #[error("tap: cannot open tap device '{ifname}': {source}")]
    Tap { ifname: String, source: io::Error },

    #[error("cannot start the network backend's thread: {0}")]
    Thread(#[source] io::Error),
}

/// Frame counters of one backend (for monitors and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames the card took.
    pub rx_frames: u64,
    /// Frames for the guest dropped: the card stayed full beyond the hold-back queue's bounds.
    pub rx_dropped: u64,
    /// Frames from the card that left through the backend.
    pub tx_frames: u64,
    /// Frames from the card dropped: the backend was behind or had no peer (socket not
    /// connected, tap down).
    pub tx_dropped: u64,
}

/// The live counters behind [`NetStats`].
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) rx_frames: AtomicU64,
    pub(crate) rx_dropped: AtomicU64,
    pub(crate) tx_frames: AtomicU64,
    pub(crate) tx_dropped: AtomicU64,
}

impl Stats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> NetStats {
        NetStats {
            rx_frames: self.rx_frames.load(Ordering::Relaxed),
            rx_dropped: self.rx_dropped.load(Ordering::Relaxed),
            tx_frames: self.tx_frames.load(Ordering::Relaxed),
            tx_dropped: self.tx_dropped.load(Ordering::Relaxed),
        }
    }
}

/// At most this many frames from the card wait for the backend thread; more are dropped.
/// (Twice a typical transmit ring, so a guest's full-ring burst fits.)
const TX_QUEUE_FRAMES: usize = 512;

/// An open backend and its thread. Dropping it stops the thread and closes its sockets.
pub struct NetBackend {
    frames: crossbeam_channel::Sender<Vec<u8>>,
    ctl: Arc<worker::Control>,
    thread: Option<JoinHandle<()>>,
}

impl NetBackend {
    /// Opens the backend (binds hostfwd ports, connects/listens sockets, opens tap) and
    /// starts its thread. Errors are clear user errors (a port in use names the port; tap
    /// without permission says so).
    pub fn open(opts: &NetdevOptions, peer: Arc<dyn Peer>) -> Result<NetBackend, NetError> {
        let ctl = Arc::new(worker::Control::new().map_err(NetError::Thread)?);
        let (tx, rx) = crossbeam_channel::bounded(TX_QUEUE_FRAMES);
        let queue = queue::RxQueue::new(peer, ctl.stats.clone());
        let link = worker::Link { ctl: ctl.clone(), frames: rx };
        let thread = match opts.clone() {
            NetdevOptions::User(o) => worker::spawn("net-user", link, move |stats| user::UserDriver::open(&o, queue, stats))?,
            NetdevOptions::Socket(o) => {
                worker::spawn("net-socket", link, move |stats| socket::SocketDriver::open(&o, queue, stats))?
            }
            NetdevOptions::Tap(o) => worker::spawn("net-tap", link, move |stats| tap::TapDriver::open(&o, queue, stats))?,
        };
        Ok(NetBackend { frames: tx, ctl, thread: Some(thread) })
    }

    /// A frame from the card (Ethernet, no FCS). Never blocks: hands it to the backend
    /// thread and wakes it; drops the frame when the thread is that far behind.
    pub fn send(&self, frame: &[u8]) {
        if self.frames.try_send(frame.to_vec()).is_err() {
            Stats::bump(&self.ctl.stats.tx_dropped);
            return;
        }
        self.ctl.frames_queued();
    }

    /// The card has new receive buffers: re-offer held frames (wakes the thread).
    pub fn rx_space(&self) {
        self.ctl.rx_space();
    }

    /// Frame counters so far.
    pub fn stats(&self) -> NetStats {
        self.ctl.stats.snapshot()
    }
}

impl Drop for NetBackend {
    fn drop(&mut self) {
        self.ctl.stop();
        if let Some(thread) = self.thread.take() {
            // Dropped from inside the backend's own thread (the last reference went away
            // in a deliver call chain): the loop ends after this call returns; joining
            // ourselves would deadlock.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

#[allow(dead_code)]
fn _peer_is_object_safe(_: Arc<dyn Peer>) {}

#[allow(dead_code)]
fn _backend_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<NetBackend>();
}
