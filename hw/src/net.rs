//! The host side of a network card, as the card sees it: where transmitted frames go. The
//! backends (user networking, sockets, tap) live outside `hw`; the machine connects them.
//! Also the packet helpers every card shares: Internet checksums ([`csum`]) and TCP
//! segmentation ([`gso`]).

pub mod csum;
pub mod gso;

/// Where a network card's transmitted Ethernet frames go, and how it says it can take more.
pub trait FrameSink: Send + Sync {
    /// One frame as the card put it on the wire (destination MAC first, no FCS, at most
    /// 65535 bytes after segmentation offloads). Never blocks: a backend that cannot keep up
    /// drops the frame, as a real wire would lose it.
    fn send(&self, frame: &[u8]);

    /// The card has new receive buffers (the driver advanced its receive ring), so frames
    /// the backend held back because the card refused them may be offered again.
    fn rx_space(&self) {}
}

/// A sink that drops every frame (a card with no backend: `-netdev` missing, tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoBackend;

impl FrameSink for NoBackend {
    fn send(&self, _frame: &[u8]) {}
}
