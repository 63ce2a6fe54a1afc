//! The hold-back queue: frames for the guest that the card had no room for.
//!
//! A backend offers each received frame to the card. When the card refuses one, that frame
//! and every later one wait here, in order, until the card reports new receive buffers
//! ([`crate::NetBackend::rx_space`]). While frames wait, the backend stops reading its source
//! (so TCP inside slirp, or the socket's peer, slows down instead of losing data); frames
//! that still arrive (slirp's timers, replies to the guest's own packets) are queued behind,
//! and beyond the bounds the oldest are dropped and counted.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::{Peer, Stats};

/// At most this many frames wait for the card.
pub(crate) const MAX_HELD_FRAMES: usize = 256;
/// At most this many bytes of frames wait for the card.
pub(crate) const MAX_HELD_BYTES: usize = 1 << 20;

pub(crate) struct RxQueue {
    peer: Arc<dyn Peer>,
    stats: Arc<Stats>,
    held: VecDeque<Vec<u8>>,
    held_bytes: usize,
}

impl RxQueue {
    pub(crate) fn new(peer: Arc<dyn Peer>, stats: Arc<Stats>) -> Self {
        RxQueue { peer, stats, held: VecDeque::new(), held_bytes: 0 }
    }

    /// Whether frames are waiting (the backend then stops reading its source).
    pub(crate) fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Hands one frame towards the card: straight to it when nothing waits and it takes the
    /// frame, otherwise behind the waiting ones.
    pub(crate) fn offer(&mut self, frame: &[u8]) {
        if self.held.is_empty() && self.peer.deliver(frame) {
            Stats::bump(&self.stats.rx_frames);
            return;
        }
        self.held_bytes += frame.len();
        self.held.push_back(frame.to_vec());
        while self.held.len() > MAX_HELD_FRAMES || self.held_bytes > MAX_HELD_BYTES {
            let old = self.held.pop_front().expect("the bounds are exceeded only while frames wait");
            self.held_bytes -= old.len();
            Stats::bump(&self.stats.rx_dropped);
        }
    }

    /// Offers the waiting frames again, oldest first, until the card refuses one.
    pub(crate) fn flush(&mut self) {
        while let Some(frame) = self.held.front() {
            if !self.peer.deliver(frame) {
                return;
            }
            Stats::bump(&self.stats.rx_frames);
            let frame = self.held.pop_front().expect("front exists");
            self.held_bytes -= frame.len();
        }
    }

    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        self.held_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    /// Takes frames only while `open`; records what it took.
    #[derive(Default)]
    struct Gate {
        open: AtomicBool,
        got: Mutex<Vec<Vec<u8>>>,
    }

    impl Peer for Gate {
        fn deliver(&self, frame: &[u8]) -> bool {
            if self.open.load(Ordering::SeqCst) {
                self.got.lock().unwrap().push(frame.to_vec());
            }
            self.open.load(Ordering::SeqCst)
        }
    }

    fn frame(i: u32, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[..4].copy_from_slice(&i.to_be_bytes());
        f
    }

    #[test]
    fn refused_frames_wait_and_come_out_in_order() {
        let gate = Arc::new(Gate::default());
        let stats = Arc::new(Stats::default());
        let mut q = RxQueue::new(gate.clone(), stats.clone());
        gate.open.store(true, Ordering::SeqCst);
        q.offer(&frame(0, 60));
        gate.open.store(false, Ordering::SeqCst);
        for i in 1..10 {
            q.offer(&frame(i, 60));
        }
        assert!(q.is_holding());
        q.flush(); // still closed: nothing moves
        assert_eq!(gate.got.lock().unwrap().len(), 1);
        gate.open.store(true, Ordering::SeqCst);
        // Even with the card open again, a new frame goes behind the waiting ones.
        q.offer(&frame(10, 60));
        assert_eq!(gate.got.lock().unwrap().len(), 1);
        q.flush();
        assert!(!q.is_holding());
        let got = gate.got.lock().unwrap();
        let order: Vec<u32> = got.iter().map(|f| u32::from_be_bytes(f[..4].try_into().unwrap())).collect();
        assert_eq!(order, (0..=10).collect::<Vec<_>>());
        assert_eq!(stats.snapshot().rx_frames, 11);
        assert_eq!(stats.snapshot().rx_dropped, 0);
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_are_dropped() {
        let gate = Arc::new(Gate::default());
        let stats = Arc::new(Stats::default());
        let mut q = RxQueue::new(gate.clone(), stats.clone());
        for i in 0..1000 {
            q.offer(&frame(i, 64));
        }
        assert_eq!(q.held.len(), MAX_HELD_FRAMES);
        assert_eq!(stats.snapshot().rx_dropped, 1000 - MAX_HELD_FRAMES as u64);
        // By bytes: 9000-byte jumbo frames hit the 1 MiB bound before the frame count.
        for i in 1000..1200 {
            q.offer(&frame(i, 9000));
        }
        assert!(q.held_bytes() <= MAX_HELD_BYTES);
        assert_eq!(q.held.len(), MAX_HELD_BYTES / 9000);
        gate.open.store(true, Ordering::SeqCst);
        q.flush();
        let got = gate.got.lock().unwrap();
        let first = u32::from_be_bytes(got[0][..4].try_into().unwrap());
        let last = u32::from_be_bytes(got.last().unwrap()[..4].try_into().unwrap());
        assert_eq!(last, 1199, "the newest frames survive");
        assert_eq!(first as usize, 1200 - MAX_HELD_BYTES / 9000);
        assert_eq!(q.held_bytes(), 0);
    }
}
