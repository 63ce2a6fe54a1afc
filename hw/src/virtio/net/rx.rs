//! Receive (5.1.6.3-4): the backend thread offers frames through [`VirtioNetRx`]; each goes
//! into the driver's receive chains after a [`NetHdr`] with no offload flags (frames arrive
//! complete and checksummed, `DATA_VALID` is never claimed).
//!
//! * With `VIRTIO_NET_F_MRG_RXBUF`, a frame takes as many chains as it needs and
//!   `num_buffers` says how many; otherwise it takes one chain and `num_buffers` is 1 (when
//!   the header has the field).
//! * Too few buffers: nothing is consumed (the chains taken to look are put back), the
//!   device asks to be notified when the driver adds one, and `receive` returns `false`; the
//!   backend holds the frame until the driver's notification turns into
//!   [`crate::net::FrameSink::rx_space`].
//! * A frame that can never fit (one chain without mergeable buffers, or the whole ring with
//!   them, is too small) is dropped and the buffers stay for the next frames.
//! * Before the driver starts the device, after a reset, while the link is down, or with a
//!   receive queue the driver never enabled, frames are dropped (`true`): as on a wire with
//!   nobody listening, and so the backend does not hold stale frames.

use super::header::{NetHdr, HDR_LEN};
use super::{bump, NetShared, NetStats, RxQueue, VIRTIO_NET_F_STATUS};
use crate::net::gso::ETH_HLEN;
use crate::virtio::{ChainError, ChainWriter, DescriptorChain};
use std::sync::Arc;

/// Largest frame delivered to the guest (what a backend may hand over).
pub const MAX_RX_FRAME: usize = 0xFFFF;

/// The backend's handle on a card: deliver received frames, set the link state. Cheap to
/// clone, usable from any thread.
#[derive(Clone)]
pub struct VirtioNetRx {
    pub(super) shared: Arc<NetShared>,
}

/// What became of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    Delivered,
    Dropped,
    /// Not enough receive buffers right now.
    NoRoom,
}

/// The outcome of looking for buffers.
enum Gathered {
    Chains(Vec<DescriptorChain>),
    /// Fewer buffers than needed are available now.
    Short,
    /// The frame cannot fit whatever the driver adds.
    NeverFits,
}

impl VirtioNetRx {
    /// Offers one received frame (destination MAC first, no FCS). `false`: no room now, hold
    /// it and offer it again after the card calls `rx_space`. Frames the filter rejects are
    /// consumed silently.
    pub fn receive(&self, frame: &[u8]) -> bool {
        let mut guard = self.shared.lock();
        let st = &mut *guard;
        let outcome = match st.rx.as_mut() {
            Some(rx) if st.link_up && (ETH_HLEN..=MAX_RX_FRAME).contains(&frame.len()) => {
                let dst: [u8; 6] = frame[..6].try_into().expect("6 bytes");
                if !st.filter.accepts(&dst, &st.mac) {
                    return true;
                }
                rx.deliver(frame)
            }
            _ => Delivery::Dropped,
        };
        let counters = &self.shared.counters;
        match outcome {
            Delivery::Delivered => bump(&counters.rx_frames, 1),
            Delivery::Dropped => bump(&counters.rx_dropped, 1),
            Delivery::NoRoom => return false,
        }
        true
    }

    /// Sets the link state (`VIRTIO_NET_S_LINK_UP`); a running driver that negotiated
    /// `VIRTIO_NET_F_STATUS` gets a configuration change interrupt.
    pub fn set_link(&self, up: bool) {
        let mut st = self.shared.lock();
        if st.link_up == up {
            return;
        }
        st.link_up = up;
        if st.features & VIRTIO_NET_F_STATUS != 0 {
            if let Some(interrupt) = &st.interrupt {
                interrupt.signal_config();
            }
        }
    }

    /// Whether the link is up.
    pub fn link_up(&self) -> bool {
        self.shared.lock().link_up
    }

    /// The card's packet counters.
    pub fn stats(&self) -> NetStats {
        self.shared.counters.snapshot()
    }
}

impl RxQueue {
    fn deliver(&mut self, frame: &[u8]) -> Delivery {
        if !self.queue.is_ready() {
            return Delivery::Dropped;
        }
        let need = (self.hdr_len + frame.len()) as u64;
        // Look again as long as buffers arrived while asking to hear about them: the driver
        // may have added those before it saw the request, and then no notification comes for
        // them. Giving up after a fixed number of looks lost that wake-up, and the receive
        // path stalled for good (the driver waiting for frames, the backend for room). Each
        // look that goes round again saw the driver add buffers, so this ends.
        loop {
            match self.gather(need) {
                Gathered::Chains(chains) => return self.write(&chains, frame),
                Gathered::NeverFits => return Delivery::Dropped,
                Gathered::Short => {
                    if !self.queue.notify_on_more() {
                        return Delivery::NoRoom;
                    }
                }
            }
        }
    }

    /// Pops chains until they hold `need` bytes; puts them back if they do not.
    fn gather(&mut self, need: u64) -> Gathered {
        let mut chains = Vec::new();
        let mut capacity = 0u64;
        while capacity < need && (self.mergeable || chains.is_empty()) {
            let Some(chain) = self.queue.pop() else { break };
            capacity += chain.writable_len();
            chains.push(chain);
        }
        if capacity >= need {
            return Gathered::Chains(chains);
        }
        let popped = chains.len();
        // At most the queue size (a u16) can be popped per update of the available index.
        self.queue.undo_pop(popped as u16);
        if (!self.mergeable && popped == 1) || popped >= usize::from(self.queue.size()) {
            Gathered::NeverFits
        } else {
            Gathered::Short
        }
    }

    /// Writes the header and `frame` across `chains`, returns them all and signals once.
    fn write(&mut self, chains: &[DescriptorChain], frame: &[u8]) -> Delivery {
        let num_buffers = if self.mergeable { chains.len() as u16 } else { 1 };
        let hdr: [u8; HDR_LEN] = NetHdr { num_buffers, ..NetHdr::default() }.encode();
        let mut pieces: [&[u8]; 2] = [&hdr[..self.hdr_len], frame];
        let mut ok = true;
        for chain in chains {
            let mut writer = chain.writer(&self.dma);
            if ok {
                ok = write_pieces(&mut writer, &mut pieces).is_ok();
            }
            self.queue.add_used(chain.head(), writer.written_u32());
        }
        self.queue.notify();
        if ok {
            Delivery::Delivered
        } else {
            Delivery::Dropped
        }
    }
}

/// Writes as much of `pieces` (in order) as the chain takes, leaving the rest in `pieces`.
fn write_pieces(writer: &mut ChainWriter, pieces: &mut [&[u8]]) -> Result<(), ChainError> {
    for piece in pieces.iter_mut() {
        let n = writer.write(piece)?;
        *piece = &piece[n..];
        if !piece.is_empty() {
            break;
        }
    }
    Ok(())
}
