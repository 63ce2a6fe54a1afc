//! The virtio network device (virtio 1.2, 5.1; QEMU's `virtio-net-pci`).
//!
//! Device type 1 with one queue pair: 0 `receiveq`, 1 `transmitq`, 2 `controlq`.
//!
//! # What a transmitted packet becomes
//! Every ferrite backend (user networking, sockets, tap without a vnet header) wants
//! complete, correctly checksummed, wire-sized frames, so the device finishes what the
//! driver offloaded ([`tx`]): a partial checksum (`NEEDS_CSUM`) is computed and stored, and a
//! TCP super-packet (`GSO_TCPV4`/`GSO_TCPV6`, with or without ECN) is cut into segments by
//! [`crate::net::gso`]. UDP fragmentation (`HOST_UFO`) and segmentation (`HOST_USO`) are not
//! implemented and not offered. A malformed packet is dropped and counted, never a panic.
//!
//! # Receive
//! [`VirtioNetRx`] is the handle the machine's network backend thread calls
//! ([`rx`]). With `VIRTIO_NET_F_MRG_RXBUF` a frame spreads over as many receive chains as it
//! needs; without it one chain must hold the header and the frame. Filtering follows the
//! control queue's `PROMISC`/`ALLMULTI`/`MAC_TABLE_SET` ([`filter`]).
//!
//! # Threads
//! The device itself runs on vCPU threads under the transport lock. The receive queue and
//! everything the backend thread needs (MAC, filter, link state, interrupt) live in one
//! `Mutex<NetState>` shared with [`VirtioNetRx`]; lock order: transport -> `NetState` ->
//! interrupt state. The sink's `send` and `rx_space` run on the vCPU thread under the
//! transport lock but never under `NetState`'s, so a backend may even call
//! [`VirtioNetRx::receive`] from inside `rx_space`.
//!
//! Transmit runs synchronously in [`VirtioDevice::queue_notify`] (like the e1000's ring
//! walk): `FrameSink::send` never blocks, so the work is copying and checksumming bounded by
//! [`TX_BUDGET_QUEUES`] queues' worth of chains per notification, and a worker thread would
//! only add a wake-up per kick and a thread to stop on reset.
//!
//! # Snapshots
//! The transport carries the negotiated features and the rings; [`persist`] carries what the
//! device keeps of its own (address, receive filter, link state) as the `virtio-net` section.

mod config;
mod ctrl;
mod filter;
pub mod header;
mod persist;
mod rx;
mod tx;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_rx;
#[cfg(test)]
mod tests_state;

pub use persist::{MacTableState, VirtioNetState};
pub use rx::VirtioNetRx;

use super::{ActivateContext, ActivateError, Queue, VirtioDevice, VIRTIO_F_ANY_LAYOUT, VIRTIO_ID_NET};
use crate::net::FrameSink;
use ferrite_memory::Dma;
use filter::RxFilter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Feature bits (5.1.3).
/// The device handles packets with a partial checksum.
pub const VIRTIO_NET_F_CSUM: u64 = 1 << 0;
/// The driver handles packets with a partial checksum.
pub const VIRTIO_NET_F_GUEST_CSUM: u64 = 1 << 1;
/// The device reports the maximum MTU in `mtu`.
pub const VIRTIO_NET_F_MTU: u64 = 1 << 3;
/// The device has a MAC address in `mac`.
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// The driver can receive TSOv4 / TSOv6 / TCP with ECN / UFO (never offered: the device
/// always delivers plain frames).
pub const VIRTIO_NET_F_GUEST_TSO4: u64 = 1 << 7;
pub const VIRTIO_NET_F_GUEST_TSO6: u64 = 1 << 8;
pub const VIRTIO_NET_F_GUEST_ECN: u64 = 1 << 9;
pub const VIRTIO_NET_F_GUEST_UFO: u64 = 1 << 10;
/// The device can segment TCP over IPv4 / IPv6, with ECN.
pub const VIRTIO_NET_F_HOST_TSO4: u64 = 1 << 11;
pub const VIRTIO_NET_F_HOST_TSO6: u64 = 1 << 12;
pub const VIRTIO_NET_F_HOST_ECN: u64 = 1 << 13;
/// The device can fragment UDP (not offered).
pub const VIRTIO_NET_F_HOST_UFO: u64 = 1 << 14;
/// The driver can merge receive buffers.
pub const VIRTIO_NET_F_MRG_RXBUF: u64 = 1 << 15;
/// `status` is valid (link state).
pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
/// The control queue exists.
pub const VIRTIO_NET_F_CTRL_VQ: u64 = 1 << 17;
/// Control queue: receive mode (promiscuous, all-multicast) and MAC filter table.
pub const VIRTIO_NET_F_CTRL_RX: u64 = 1 << 18;
/// Control queue: VLAN filtering (not offered).
pub const VIRTIO_NET_F_CTRL_VLAN: u64 = 1 << 19;
/// The driver can send gratuitous packets (not offered).
pub const VIRTIO_NET_F_GUEST_ANNOUNCE: u64 = 1 << 21;
/// Multiqueue (not offered).
pub const VIRTIO_NET_F_MQ: u64 = 1 << 22;
/// Control queue: set the MAC address.
pub const VIRTIO_NET_F_CTRL_MAC_ADDR: u64 = 1 << 23;

/// `status` bit: the link is up.
pub const VIRTIO_NET_S_LINK_UP: u16 = 1;

/// Queue sizes: QEMU's default for receive and transmit, 64 for control.
pub const NET_QUEUE_SIZES: [u16; 3] = [256, 256, 64];
pub const RX_QUEUE: u16 = 0;
pub const TX_QUEUE: u16 = 1;
pub const CTRL_QUEUE: u16 = 2;
/// Most transmit chains handled per notification, in queue sizes (see [`tx`]).
pub const TX_BUDGET_QUEUES: usize = 4;

/// Device options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioNetOptions {
    /// Offer `VIRTIO_NET_F_MTU` with this MTU.
    pub mtu: Option<u16>,
}

/// Packet counters (frames as seen by the guest: a segmented packet counts one frame per
/// segment sent, a dropped packet one drop).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames handed to the backend.
    pub tx_frames: u64,
    /// Guest packets dropped (malformed, too long, link down).
    pub tx_dropped: u64,
    /// Frames delivered to the guest.
    pub rx_frames: u64,
    /// Frames from the backend dropped (device not running, link down, no buffer large
    /// enough, malformed); frames filtered out by address are not counted.
    pub rx_dropped: u64,
}

#[derive(Default)]
struct Counters {
    tx_frames: AtomicU64,
    tx_dropped: AtomicU64,
    rx_frames: AtomicU64,
    rx_dropped: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> NetStats {
        NetStats {
            tx_frames: self.tx_frames.load(Ordering::Relaxed),
            tx_dropped: self.tx_dropped.load(Ordering::Relaxed),
            rx_frames: self.rx_frames.load(Ordering::Relaxed),
            rx_dropped: self.rx_dropped.load(Ordering::Relaxed),
        }
    }
}

/// The receive side of a running device.
struct RxQueue {
    queue: Queue,
    dma: Dma,
    hdr_len: usize,
    mergeable: bool,
}

/// What the backend thread and the vCPUs share.
struct NetState {
    /// The MAC the device was created with (restored on reset).
    configured_mac: [u8; 6],
    mac: [u8; 6],
    link_up: bool,
    filter: RxFilter,
    /// Negotiated features while running, else 0.
    features: u64,
    rx: Option<RxQueue>,
    interrupt: Option<super::Interrupt>,
}

struct NetShared {
    state: Mutex<NetState>,
    counters: Counters,
    sink: Arc<dyn FrameSink>,
}

impl NetShared {
    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The network device.
pub struct VirtioNet {
    shared: Arc<NetShared>,
    opts: VirtioNetOptions,
    features: u64,
    tx: Option<Queue>,
    ctrl: Option<Queue>,
    dma: Option<Dma>,
    /// Reused packet buffer for transmit.
    tx_buf: Vec<u8>,
}

impl VirtioNet {
    /// A card with address `mac` sending to `sink`, and the handle its backend delivers
    /// received frames through. The link starts up.
    pub fn new(mac: [u8; 6], sink: Arc<dyn FrameSink>, opts: VirtioNetOptions) -> (VirtioNet, VirtioNetRx) {
        let state = NetState {
            configured_mac: mac,
            mac,
            link_up: true,
            filter: RxFilter::default(),
            features: 0,
            rx: None,
            interrupt: None,
        };
        let shared = Arc::new(NetShared { state: Mutex::new(state), counters: Counters::default(), sink });
        let rx = VirtioNetRx { shared: shared.clone() };
        let dev = VirtioNet { shared, opts, features: 0, tx: None, ctrl: None, dma: None, tx_buf: Vec::new() };
        (dev, rx)
    }

    /// The packet counters.
    pub fn stats(&self) -> NetStats {
        self.shared.counters.snapshot()
    }

    /// The current MAC address (the driver may change it).
    pub fn mac(&self) -> [u8; 6] {
        self.shared.lock().mac
    }

    fn offered_features(&self) -> u64 {
        let mtu = if self.opts.mtu.is_some() { VIRTIO_NET_F_MTU } else { 0 };
        VIRTIO_NET_F_CSUM
            | VIRTIO_NET_F_GUEST_CSUM
            | VIRTIO_NET_F_MAC
            | VIRTIO_NET_F_HOST_TSO4
            | VIRTIO_NET_F_HOST_TSO6
            | VIRTIO_NET_F_HOST_ECN
            | VIRTIO_NET_F_MRG_RXBUF
            | VIRTIO_NET_F_STATUS
            | VIRTIO_NET_F_CTRL_VQ
            | VIRTIO_NET_F_CTRL_RX
            | VIRTIO_NET_F_CTRL_MAC_ADDR
            | VIRTIO_F_ANY_LAYOUT
            | mtu
    }
}

/// Whether `features` respects the dependencies of 5.1.3.1: segmentation needs checksum
/// offload, ECN needs a TSO, the control queue features need the control queue.
pub fn features_consistent(features: u64) -> bool {
    let has = |f: u64| features & f == f;
    let tso = VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6;
    let needs_csum = tso | VIRTIO_NET_F_HOST_ECN | VIRTIO_NET_F_HOST_UFO;
    let needs_ctrl = VIRTIO_NET_F_CTRL_RX | VIRTIO_NET_F_CTRL_VLAN | VIRTIO_NET_F_CTRL_MAC_ADDR;
    (features & needs_csum == 0 || has(VIRTIO_NET_F_CSUM))
        && (!has(VIRTIO_NET_F_HOST_ECN) || features & tso != 0)
        && (features & needs_ctrl == 0 || has(VIRTIO_NET_F_CTRL_VQ))
}

impl VirtioDevice for VirtioNet {
    fn device_type(&self) -> u16 {
        VIRTIO_ID_NET
    }

    fn device_features(&self) -> u64 {
        self.offered_features()
    }

    fn accept_features(&mut self, features: u64) -> bool {
        features_consistent(features)
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &NET_QUEUE_SIZES
    }

    fn config_len(&self) -> usize {
        config::CONFIG_LEN
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let bytes = config::layout(&self.shared.lock(), self.opts.mtu);
        config::copy_out(&bytes, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        config::write_mac(&mut self.shared.lock().mac, offset, data);
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let mut queues = ctx.queues.into_iter();
        let (rx, tx, ctrl) = (queues.next(), queues.next(), queues.next());
        let rx = rx.ok_or(ActivateError::QueueNotReady(RX_QUEUE))?;
        self.features = ctx.features;
        {
            let mut st = self.shared.lock();
            st.features = ctx.features;
            st.interrupt = Some(ctx.interrupt);
            st.rx = Some(RxQueue {
                queue: rx,
                dma: ctx.dma.clone(),
                hdr_len: header::header_len(ctx.features),
                mergeable: ctx.features & VIRTIO_NET_F_MRG_RXBUF != 0,
            });
        }
        self.tx = tx;
        self.ctrl = ctrl.filter(|_| ctx.features & VIRTIO_NET_F_CTRL_VQ != 0);
        self.dma = Some(ctx.dma);
        // Legacy drivers may have posted and notified before DRIVER_OK.
        self.process_ctrl();
        self.process_tx();
        self.shared.sink.rx_space();
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        match index {
            RX_QUEUE => self.shared.sink.rx_space(),
            TX_QUEUE => self.process_tx(),
            CTRL_QUEUE => self.process_ctrl(),
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.features = 0;
        self.tx = None;
        self.ctrl = None;
        self.dma = None;
        self.tx_buf = Vec::new();
        let mut st = self.shared.lock();
        st.features = 0;
        st.rx = None;
        st.interrupt = None;
        st.mac = st.configured_mac;
        st.filter = RxFilter::default();
    }
}
