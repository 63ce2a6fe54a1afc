//! The packed virtqueue driven from the guest side as Linux's virtio_ring lays out packed
//! rings (id in every descriptor, head flags written last, wrap counters on both sides,
//! indirect tables, out-of-order completion); plus a guest-side ring helper the transport
//! and device tests share.

use super::interrupt::{Shared, VIRTIO_ISR_CONFIG};
use super::queue::packed::*;
use super::queue::*;
use super::queue_tests::{Rng, RAM};
use super::*;
use crate::testing::{FakeLine, FakeMsi};
use ferrite_memory::{Dma, GuestMemory};
use std::sync::Arc;

/// One buffer element a test driver adds: (address, length, device-writable).
pub(super) type Elem = (u64, u32, bool);

/// The driver's view of one packed queue in guest memory.
pub(super) struct PackedDriver {
    pub dma: Dma,
    pub size: u16,
    pub desc: u64,
    pub driver_event: u64,
    pub device_event: u64,
    next_avail: u16,
    avail_wrap: bool,
    next_used: u16,
    used_wrap: bool,
    /// Ring slots each in-flight id took (0: free).
    slots: Vec<u16>,
}

impl PackedDriver {
    /// A zeroed ring of `size` descriptors with its event suppression structures.
    pub fn new(dma: Dma, size: u16, desc: u64, driver_event: u64, device_event: u64) -> Self {
        dma.memory().zero(desc, 16 * u64::from(size)).unwrap();
        dma.memory().zero(driver_event, 4).unwrap();
        dma.memory().zero(device_event, 4).unwrap();
        let slots = vec![0; usize::from(size)];
        let (next_avail, avail_wrap, next_used, used_wrap) = (0, true, 0, true);
        PackedDriver { dma, size, desc, driver_event, device_event, next_avail, avail_wrap, next_used, used_wrap, slots }
    }

    fn write_desc(&self, table: u64, i: u16, addr: u64, len: u32, id: u16, flags: u16) {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&id.to_le_bytes());
        b[14..16].copy_from_slice(&flags.to_le_bytes());
        self.dma.write(table + 16 * u64::from(i), &b).unwrap();
    }

    fn wrap_flags(wrap: bool) -> u16 {
        if wrap {
            VIRTQ_DESC_F_AVAIL
        } else {
            VIRTQ_DESC_F_USED
        }
    }

    /// Free ring slots.
    pub fn free_slots(&self) -> u16 {
        self.size - self.slots.iter().sum::<u16>()
    }

    fn free_id(&self) -> u16 {
        self.slots.iter().position(|&s| s == 0).expect("a free id") as u16
    }

    /// Writes raw descriptors (flags without the wrap bits, which are added per slot) with
    /// the head's flags last; returns the slots' ids as given. No bookkeeping: for malformed
    /// chains.
    pub fn add_raw(&mut self, descs: &[(u64, u32, u16, u16)]) {
        let (first, first_wrap) = (self.next_avail, self.avail_wrap);
        for (i, &(addr, len, id, flags)) in descs.iter().enumerate() {
            let f = flags | Self::wrap_flags(self.avail_wrap);
            if i == 0 {
                self.write_desc(self.desc, self.next_avail, addr, len, id, 0);
            } else {
                self.write_desc(self.desc, self.next_avail, addr, len, id, f);
            }
            self.next_avail += 1;
            if self.next_avail == self.size {
                self.next_avail = 0;
                self.avail_wrap = !self.avail_wrap;
            }
        }
        let (_, _, _, flags) = descs[0];
        let head_flags = (flags | Self::wrap_flags(first_wrap)).to_le_bytes();
        self.dma.write(self.desc + 16 * u64::from(first) + 14, &head_flags).unwrap();
    }

    /// Makes a chain of `elems` available (NEXT on all but the last); returns its id.
    pub fn add(&mut self, elems: &[Elem]) -> u16 {
        assert!(elems.len() <= usize::from(self.free_slots()));
        let id = self.free_id();
        let last = elems.len() - 1;
        let descs: Vec<_> = elems
            .iter()
            .enumerate()
            .map(|(i, &(a, l, w))| {
                let next = if i < last { VIRTQ_DESC_F_NEXT } else { 0 };
                (a, l, id, next | if w { VIRTQ_DESC_F_WRITE } else { 0 })
            })
            .collect();
        self.add_raw(&descs);
        self.slots[usize::from(id)] = elems.len() as u16;
        id
    }

    /// Makes `elems` available through one indirect descriptor with its table at `table`.
    pub fn add_indirect(&mut self, table: u64, elems: &[Elem]) -> u16 {
        for (i, &(a, l, w)) in elems.iter().enumerate() {
            self.write_desc(table, i as u16, a, l, 0, if w { VIRTQ_DESC_F_WRITE } else { 0 });
        }
        let id = self.free_id();
        self.add_raw(&[(table, 16 * elems.len() as u32, id, VIRTQ_DESC_F_INDIRECT)]);
        self.slots[usize::from(id)] = 1;
        id
    }

    /// The used descriptors written since the last call, as (id, len), skipping each chain's
    /// slots as a driver does.
    pub fn take_used(&mut self) -> Vec<(u16, u32)> {
        let mut out = Vec::new();
        loop {
            let at = self.desc + 16 * u64::from(self.next_used);
            let flags = self.r16(at + 14);
            let used = flags & VIRTQ_DESC_F_USED != 0;
            let avail = flags & VIRTQ_DESC_F_AVAIL != 0;
            if used != self.used_wrap || avail != self.used_wrap {
                return out;
            }
            let id = self.r16(at + 12);
            let len = self.dma.read_u32(at + 8).unwrap();
            let n = std::mem::take(&mut self.slots[usize::from(id)]);
            assert_ne!(n, 0, "used id {id} was in flight");
            out.push((id, len));
            self.next_used += n;
            if self.next_used >= self.size {
                self.next_used -= self.size;
                self.used_wrap = !self.used_wrap;
            }
        }
    }

    fn r16(&self, addr: u64) -> u16 {
        let mut b = [0; 2];
        self.dma.read(addr, &mut b).unwrap();
        u16::from_le_bytes(b)
    }

    /// Writes the driver event suppression structure.
    pub fn set_driver_event(&self, off_wrap: u16, flags: u16) {
        let mut b = [0u8; 4];
        b[..2].copy_from_slice(&off_wrap.to_le_bytes());
        b[2..].copy_from_slice(&flags.to_le_bytes());
        self.dma.write(self.driver_event, &b).unwrap();
    }

    /// Asks for an interrupt at the next used position (Linux's enable_cb with EVENT_IDX).
    pub fn want_next_used(&self) {
        let wrap = if self.used_wrap { RING_EVENT_WRAP } else { 0 };
        self.set_driver_event(self.next_used | wrap, RING_EVENT_FLAGS_DESC);
    }

    /// The device event suppression structure as (off_wrap, flags).
    pub fn device_event(&self) -> (u16, u16) {
        (self.r16(self.device_event), self.r16(self.device_event + 2))
    }

    /// The next slot the driver fills, with its wrap counter, as an `off_wrap`.
    pub fn avail_off_wrap(&self) -> u16 {
        self.next_avail | if self.avail_wrap { RING_EVENT_WRAP } else { 0 }
    }
}

const DESC: u64 = 0x1_0000;
const DRIVER_EVENT: u64 = 0x2_0000;
const DEVICE_EVENT: u64 = 0x3_0000;
const BUFS: u64 = 0x10_0000;
const INDIRECT: u64 = 0x8_0000;
const ALL: u64 = VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX | VIRTIO_F_VERSION_1 | VIRTIO_F_RING_PACKED;

/// A ready queue of `size` at the test addresses.
fn ring_config(size: u16) -> QueueConfig {
    QueueConfig { size, ready: true, desc_table: DESC, avail_ring: DRIVER_EVENT, used_ring: DEVICE_EVENT }
}

struct Fixture {
    ring: PackedDriver,
    queue: Queue,
    shared: Arc<Shared>,
}

fn fixture(size: u16, features: u64) -> Fixture {
    let dma = Dma::new(Arc::new(GuestMemory::new(RAM, 0).unwrap()));
    let shared = Arc::new(Shared::new(1, None));
    shared.attach(Arc::new(FakeLine::default()), Arc::new(FakeMsi::default()));
    let interrupt = Interrupt::new(shared.clone(), shared.epoch());
    let ring = PackedDriver::new(dma.clone(), size, DESC, DRIVER_EVENT, DEVICE_EVENT);
    let queue = Queue::new(0, ring_config(size), features | VIRTIO_F_RING_PACKED, dma, interrupt);
    Fixture { ring, queue, shared }
}

impl Fixture {
    fn expect_broken(&mut self, want: QueueError) {
        assert_eq!(self.queue.pop(), None);
        assert_eq!(self.queue.error(), Some(want));
        assert!(self.shared.needs_reset());
        assert!(!self.queue.is_ready());
        assert_eq!(self.shared.take_isr() & VIRTIO_ISR_CONFIG, VIRTIO_ISR_CONFIG);
        assert_eq!(self.queue.pop(), None, "stays broken");
    }

    fn pop_and_use(&mut self, len: u32) -> u16 {
        let c = self.queue.pop().expect("a chain");
        self.queue.add_used(c.head(), len);
        c.head()
    }
}

fn r(addr: u64, len: u32) -> Elem {
    (addr, len, false)
}

fn w(addr: u64, len: u32) -> Elem {
    (addr, len, true)
}

#[test]
fn chain_in_the_ring_and_its_used_descriptor() {
    let mut f = fixture(8, 0);
    assert!(!f.queue.has_available());
    assert_eq!(f.queue.pop(), None);
    let id = f.ring.add(&[r(BUFS, 16), r(BUFS + 0x100, 100), w(BUFS + 0x1000, 512), w(BUFS + 0x2000, 1)]);
    assert!(f.queue.has_available());
    let c = f.queue.pop().unwrap();
    assert_eq!(c.head(), id, "head is the buffer id");
    assert_eq!(c.readable(), &[Buffer { addr: BUFS, len: 16 }, Buffer { addr: BUFS + 0x100, len: 100 }]);
    assert_eq!(c.writable(), &[Buffer { addr: BUFS + 0x1000, len: 512 }, Buffer { addr: BUFS + 0x2000, len: 1 }]);
    assert_eq!(f.queue.pop(), None);
    f.queue.add_used(id, 77);
    // The used descriptor overwrites the chain's first slot: id, len, AVAIL|USED|WRITE.
    let flags = f.ring.r16(DESC + 14);
    assert_eq!(flags, VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED | VIRTQ_DESC_F_WRITE);
    assert_eq!(f.ring.take_used(), vec![(id, 77)]);
    assert!(f.queue.notify(), "events enabled");
    assert!(!f.queue.notify(), "nothing new used");
    // A used descriptor with nothing written has WRITE clear.
    let id = f.ring.add(&[r(BUFS, 4)]);
    f.pop_and_use(0);
    assert_eq!(f.ring.r16(DESC + 16 * 4 + 14), VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED);
    assert_eq!(f.ring.take_used(), vec![(id, 0)]);
}

#[test]
fn wrap_counters_and_out_of_order_completion() {
    // Power-of-two and other sizes; chains that wrap around the end of the ring.
    for size in [4u16, 5, 7, 16] {
        let mut f = fixture(size, ALL);
        let mut rng = Rng(u64::from(size) * 0x9E37_79B9);
        let mut pending: Vec<(u16, u32)> = Vec::new();
        let mut expected = Vec::new();
        let mut seen = Vec::new();
        for round in 0..400u32 {
            let n = 1 + rng.below(usize::from(size.min(4))) as u16;
            if f.ring.free_slots() >= n && rng.below(3) != 0 {
                let elems: Vec<Elem> = (0..n).map(|i| w(BUFS + 0x100 * u64::from(i), 64)).collect();
                f.ring.add(&elems);
                while let Some(c) = f.queue.pop() {
                    assert_eq!(c.writable().len(), c.writable().len());
                    pending.push((c.head(), round));
                }
            }
            // Complete a random in-flight chain (out of order).
            if !pending.is_empty() && rng.below(2) == 0 {
                let (id, tag) = pending.swap_remove(rng.below(pending.len()));
                f.queue.add_used(id, tag);
                expected.push((id, tag));
            }
            seen.extend(f.ring.take_used());
        }
        for (id, tag) in pending.drain(..) {
            f.queue.add_used(id, tag);
            expected.push((id, tag));
        }
        seen.extend(f.ring.take_used());
        assert_eq!(seen, expected, "size {size}: used in completion order");
        assert_eq!(f.queue.error(), None);
        assert_eq!(f.ring.free_slots(), size);
    }
}

#[test]
fn indirect_tables() {
    let mut f = fixture(4, ALL);
    let id = f.ring.add_indirect(INDIRECT, &[r(BUFS, 8), w(BUFS + 0x100, 32), w(BUFS + 0x200, 4)]);
    let c = f.queue.pop().unwrap();
    assert_eq!(c.head(), id);
    assert_eq!(c.readable(), &[Buffer { addr: BUFS, len: 8 }]);
    assert_eq!(c.writable().len(), 2);
    f.queue.add_used(id, 36);
    // Flags other than WRITE and the ids inside a table are ignored (2.8.19).
    f.ring.write_desc(INDIRECT, 0, BUFS, 8, 999, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_INDIRECT);
    f.ring.add_raw(&[(INDIRECT, 16, 1, VIRTQ_DESC_F_INDIRECT)]);
    let c = f.queue.pop().unwrap();
    assert_eq!(c.readable(), &[Buffer { addr: BUFS, len: 8 }]);
    assert_eq!(f.queue.error(), None);
}

#[test]
fn driver_event_suppression_modes() {
    let mut f = fixture(4, 0);
    f.ring.set_driver_event(0, RING_EVENT_FLAGS_DISABLE);
    f.ring.add(&[w(BUFS, 8)]);
    f.pop_and_use(8);
    assert!(!f.queue.notify(), "disabled");
    f.ring.set_driver_event(0, RING_EVENT_FLAGS_ENABLE);
    f.ring.add(&[w(BUFS, 8)]);
    f.pop_and_use(8);
    assert!(f.queue.notify(), "enabled");
    // DESC without EVENT_IDX is not valid; read as enabled.
    f.ring.set_driver_event(0x7FFF, RING_EVENT_FLAGS_DESC);
    f.ring.add(&[w(BUFS, 8)]);
    f.pop_and_use(8);
    assert!(f.queue.notify());

    // With EVENT_IDX: an interrupt only once the named position is used, wrap included.
    let mut f = fixture(4, ALL);
    f.ring.take_used();
    // Ask at slot 2 of the first lap: chains of 1, 2 (covers slots 1-2), 1.
    f.ring.set_driver_event(2 | RING_EVENT_WRAP, RING_EVENT_FLAGS_DESC);
    f.ring.add(&[w(BUFS, 8)]);
    f.pop_and_use(1);
    assert!(!f.queue.notify(), "slot 0");
    f.ring.add(&[w(BUFS, 8), w(BUFS + 8, 8)]);
    f.pop_and_use(1);
    assert!(f.queue.notify(), "slots 1-2 include the event");
    f.ring.take_used();
    // Slot 0 of the second lap (wrap counter 0) is not slot 0 of the first.
    f.ring.set_driver_event(1, RING_EVENT_FLAGS_DESC);
    f.ring.add(&[w(BUFS, 8)]);
    f.pop_and_use(1);
    assert!(!f.queue.notify(), "slot 3, lap 1");
    f.ring.take_used();
    f.ring.add(&[w(BUFS, 8)]);
    f.pop_and_use(1);
    assert!(!f.queue.notify(), "slot 0, lap 2");
    f.ring.add(&[w(BUFS, 8)]);
    f.pop_and_use(1);
    assert!(f.queue.notify(), "slot 1, lap 2");
    f.ring.take_used();
    // Linux's enable_cb: event at the next used position.
    f.ring.want_next_used();
    f.ring.add(&[w(BUFS, 8)]);
    f.pop_and_use(1);
    assert!(f.queue.notify());
    assert_eq!(f.queue.error(), None);
}

#[test]
fn device_event_suppression() {
    // Without EVENT_IDX: DISABLE while polling, ENABLE otherwise.
    let mut f = fixture(4, 0);
    f.queue.disable_notifications();
    assert_eq!(f.ring.device_event().1, RING_EVENT_FLAGS_DISABLE);
    assert!(!f.queue.enable_notifications());
    assert_eq!(f.ring.device_event().1, RING_EVENT_FLAGS_ENABLE);
    f.queue.disable_notifications();
    f.ring.add(&[w(BUFS, 8)]);
    assert!(f.queue.enable_notifications(), "one already pending");

    // With EVENT_IDX: DESC at the next descriptor to read, moved by every pop.
    let mut f = fixture(3, ALL);
    assert_eq!(f.queue.pop(), None);
    assert_eq!(f.ring.device_event(), (RING_EVENT_WRAP, RING_EVENT_FLAGS_DESC));
    for _ in 0..4 {
        f.ring.add(&[w(BUFS, 8), w(BUFS + 8, 8)]);
        f.pop_and_use(1);
        f.ring.take_used();
        assert_eq!(f.ring.device_event(), (f.ring.avail_off_wrap(), RING_EVENT_FLAGS_DESC));
    }
    f.queue.disable_notifications();
    assert_eq!(f.ring.device_event().1, RING_EVENT_FLAGS_DISABLE);
    assert!(!f.queue.enable_notifications());
    assert_eq!(f.ring.device_event(), (f.ring.avail_off_wrap(), RING_EVENT_FLAGS_DESC));
}

#[test]
fn undo_pop_and_notify_on_more() {
    let mut f = fixture(5, ALL);
    let a = f.ring.add(&[w(BUFS, 8), w(BUFS + 8, 8)]);
    let b = f.ring.add(&[w(BUFS + 0x100, 8)]);
    let first = (f.queue.pop().unwrap(), f.queue.pop().unwrap());
    assert_eq!((first.0.head(), first.1.head()), (a, b));
    f.queue.undo_pop(2);
    assert!(!f.queue.notify_on_more(), "nothing added meanwhile");
    assert_eq!(f.ring.device_event().1, RING_EVENT_FLAGS_ENABLE);
    let again = (f.queue.pop().unwrap(), f.queue.pop().unwrap());
    assert_eq!(again, first, "the same chains again, same ids");
    f.queue.undo_pop(1);
    f.ring.add(&[w(BUFS + 0x200, 8)]);
    // Counted among the available ones: only additions after the scan count as "more".
    assert!(!f.queue.notify_on_more());
    assert_eq!(f.queue.pop().unwrap().head(), b);
    assert!(f.queue.pop().is_some());
    for id in [a, b, 2] {
        f.queue.add_used(id, 0);
    }
    assert_eq!(f.ring.take_used().len(), 3);
    assert_eq!(f.queue.error(), None);
}

#[test]
fn malformed_rings_break_the_queue() {
    let table = |f: &Fixture, n: u16| {
        for i in 0..n {
            f.ring.write_desc(INDIRECT, i, BUFS, 8, 0, 0);
        }
    };
    // A chain as long as the ring with NEXT on every descriptor.
    let mut f = fixture(4, ALL);
    f.ring.add_raw(&[(BUFS, 8, 0, VIRTQ_DESC_F_NEXT); 4]);
    f.expect_broken(QueueError::ChainTooLong { head: 0, limit: 4 });
    // A chain whose second descriptor was never made available.
    let mut f = fixture(4, ALL);
    f.ring.add_raw(&[(BUFS, 8, 0, VIRTQ_DESC_F_NEXT)]);
    f.expect_broken(QueueError::ChainNotAvailable { position: 1 });
    // Indirect misuse.
    let mut f = fixture(4, VIRTIO_F_EVENT_IDX);
    table(&f, 1);
    f.ring.add_raw(&[(INDIRECT, 16, 0, VIRTQ_DESC_F_INDIRECT)]);
    f.expect_broken(QueueError::IndirectNotNegotiated);
    let mut f = fixture(4, ALL);
    f.ring.add_raw(&[(INDIRECT, 16, 0, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT), (BUFS, 8, 0, 0)]);
    f.expect_broken(QueueError::IndirectWithNext);
    let mut f = fixture(4, ALL);
    table(&f, 1);
    f.ring.add_raw(&[(BUFS, 8, 0, VIRTQ_DESC_F_NEXT), (INDIRECT, 16, 0, VIRTQ_DESC_F_INDIRECT)]);
    f.expect_broken(QueueError::IndirectWithNext);
    for len in [0, 24, 16 * (MAX_INDIRECT_DESCRIPTORS + 1)] {
        let mut f = fixture(4, ALL);
        f.ring.add_raw(&[(INDIRECT, len, 0, VIRTQ_DESC_F_INDIRECT)]);
        f.expect_broken(QueueError::IndirectLength { len });
    }
    // Readable after writable, in the ring and in a table.
    let mut f = fixture(4, ALL);
    f.ring.add_raw(&[(BUFS, 8, 0, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE), (BUFS, 8, 0, 0)]);
    f.expect_broken(QueueError::ReadableAfterWritable);
    let mut f = fixture(4, ALL);
    f.ring.write_desc(INDIRECT, 0, BUFS, 8, 0, VIRTQ_DESC_F_WRITE);
    f.ring.write_desc(INDIRECT, 1, BUFS, 8, 0, 0);
    f.ring.add_raw(&[(INDIRECT, 32, 0, VIRTQ_DESC_F_INDIRECT)]);
    f.expect_broken(QueueError::ReadableAfterWritable);
    // Buffer ids: outside the queue, or already in flight.
    let mut f = fixture(4, ALL);
    f.ring.add_raw(&[(BUFS, 8, 4, 0)]);
    f.expect_broken(QueueError::BufferId { id: 4, size: 4 });
    let mut f = fixture(4, ALL);
    f.ring.add_raw(&[(BUFS, 8, 1, 0)]);
    f.ring.add_raw(&[(BUFS, 8, 1, 0)]);
    assert!(f.queue.pop().is_some());
    f.expect_broken(QueueError::BufferId { id: 1, size: 4 });
    // The device returning an id that is not in flight is caught too.
    let mut f = fixture(4, ALL);
    f.queue.add_used(2, 0);
    assert_eq!(f.queue.error(), Some(QueueError::UnknownUsedId { id: 2 }));
}

#[test]
fn rings_outside_ram_break_the_queue() {
    let dma = Dma::new(Arc::new(GuestMemory::new(RAM, 0).unwrap()));
    let layouts = [(RAM - 8, DRIVER_EVENT, DEVICE_EVENT), (DESC, RAM, DEVICE_EVENT), (DESC, DRIVER_EVENT, u64::MAX - 1)];
    for (desc, driver, device) in layouts {
        let shared = Arc::new(Shared::new(1, None));
        let interrupt = Interrupt::new(shared.clone(), shared.epoch());
        let cfg = QueueConfig { size: 4, ready: true, desc_table: desc, avail_ring: driver, used_ring: device };
        let mut q = Queue::new(0, cfg, ALL, dma.clone(), interrupt);
        let mut ring = PackedDriver::new(dma.clone(), 4, DESC, DRIVER_EVENT, DEVICE_EVENT);
        if desc == DESC {
            ring.add(&[w(BUFS, 8)]);
        }
        // Device event written on an empty pop, driver event read on notify.
        while let Some(c) = q.pop() {
            q.add_used(c.head(), 8);
        }
        q.notify();
        let broken = matches!(q.error(), Some(QueueError::RingRead { .. } | QueueError::RingWrite { .. }));
        assert!(broken, "{desc:#x} {driver:#x} {device:#x}: {:?}", q.error());
        assert!(shared.needs_reset());
    }
}

#[test]
fn queue_sizes_need_not_be_powers_of_two() {
    let dma = Dma::new(Arc::new(GuestMemory::new(RAM, 0).unwrap()));
    let shared = Arc::new(Shared::new(1, None));
    let split = ALL & !VIRTIO_F_RING_PACKED;
    for (size, features, ready) in [(5, ALL, true), (5, split, false), (0, ALL, false), (32768, ALL, true)] {
        let cfg = QueueConfig { size, ready: true, ..ring_config(0) };
        let q = Queue::new(0, cfg, features, dma.clone(), Interrupt::new(shared.clone(), shared.epoch()));
        assert_eq!(q.is_ready(), ready, "size {size}");
    }
}

#[test]
fn random_rings_never_panic_or_hang() {
    let mut rng = Rng(0x5EED_0BAD_F00D_1234);
    for round in 0..300 {
        let size = 1 + rng.below(9) as u16;
        let mut f = fixture(size, if round % 3 == 0 { VIRTIO_F_EVENT_IDX } else { ALL });
        let addr = |r: &mut Rng| match r.below(4) {
            0 => r.next(),
            1 => INDIRECT + r.below(4) as u64 * 16,
            _ => BUFS + r.below(0x1000) as u64,
        };
        for i in 0..size {
            let flags = (rng.next() as u16) & (7 | VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED);
            let (a, l, id) = (addr(&mut rng), rng.below(80) as u32, rng.below(usize::from(size) + 2) as u16);
            f.ring.write_desc(DESC, i, a, l, id, flags);
            let (a, l) = (addr(&mut rng), rng.below(80) as u32);
            f.ring.write_desc(INDIRECT, i, a, l, 0, rng.next() as u16);
        }
        f.ring.set_driver_event(rng.next() as u16, rng.next() as u16);
        let mut popped = Vec::new();
        for _ in 0..3 * usize::from(size) {
            match rng.below(6) {
                0 => f.queue.undo_pop(rng.below(3) as u16),
                1 => drop(f.queue.notify_on_more()),
                2 => {
                    if let Some(id) = popped.pop() {
                        f.queue.add_used(id, rng.next() as u32);
                    }
                }
                3 => drop(f.queue.notify()),
                _ => {
                    if let Some(c) = f.queue.pop() {
                        popped.push(c.head());
                    }
                }
            }
        }
    }
}

#[test]
fn random_driver_sees_every_buffer_once() {
    let mut rng = Rng(42);
    for size in [1u16, 3, 8, 13] {
        let mut f = fixture(size, ALL);
        let mut in_flight: Vec<DescriptorChain> = Vec::new();
        let mut added = 0usize;
        let mut used = 0usize;
        for _ in 0..2000 {
            if rng.below(2) == 0 && f.ring.free_slots() > 0 {
                let n = 1 + rng.below(usize::from(f.ring.free_slots()).min(3));
                let elems: Vec<Elem> = (0..n).map(|i| (BUFS + i as u64 * 64, 64, i + 1 == n)).collect();
                if rng.below(3) == 0 {
                    f.ring.add_indirect(INDIRECT + 0x1000 * added as u64 % 0x10_000, &elems);
                } else {
                    f.ring.add(&elems);
                }
                added += 1;
            }
            while let Some(c) = f.queue.pop() {
                in_flight.push(c);
            }
            if !in_flight.is_empty() && rng.below(2) == 0 {
                let c = in_flight.swap_remove(rng.below(in_flight.len()));
                assert_eq!(c.writable_len(), 64);
                f.queue.add_used(c.head(), 64);
            }
            if rng.below(4) == 0 {
                f.ring.want_next_used();
                f.queue.notify();
            }
            used += f.ring.take_used().len();
        }
        for c in in_flight.drain(..) {
            f.queue.add_used(c.head(), 64);
        }
        used += f.ring.take_used().len();
        assert_eq!(used, added, "size {size}");
        assert_eq!(f.queue.error(), None);
    }
}

#[test]
fn virtio_blk_reads_and_writes_over_a_packed_ring() {
    use ferrite_block::MemDisk;
    use std::time::{Duration, Instant};
    const SIZE: u16 = 6;
    const HDR: u64 = 0x20_0000;
    const STATUS: u64 = 0x30_0000;
    let data: Vec<u8> = (0..1 << 16).map(|i| (i / 512) as u8 ^ (i as u8)).collect();
    let disk = Arc::new(MemDisk::new(data.clone(), false));
    let mut dev = VirtioBlk::new(disk.clone(), &VirtioBlkOptions::default()).unwrap();
    let dma = Dma::new(Arc::new(GuestMemory::new(RAM, 0).unwrap()));
    let shared = Arc::new(Shared::new(1, None));
    shared.attach(Arc::new(FakeLine::default()), Arc::new(FakeMsi::default()));
    let interrupt = Interrupt::new(shared.clone(), shared.epoch());
    let mut ring = PackedDriver::new(dma.clone(), SIZE, DESC, DRIVER_EVENT, DEVICE_EVENT);
    let features = ALL | dev.device_features();
    let queue = Queue::new(0, ring_config(SIZE), features, dma.clone(), interrupt.clone());
    dev.activate(ActivateContext { features, queues: vec![queue], interrupt, dma: dma.clone() }).unwrap();
    let header = |kind: u32, sector: u64| {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        h
    };
    // Enough requests (3 slots each, or 1 indirect) to wrap the ring of 6 several times.
    for n in 0..12u64 {
        let (hdr, status, buf) = (HDR + 0x100 * n, STATUS + n, BUFS + 0x1000 * n);
        let write = n % 3 == 2;
        dma.write(hdr, &header(u32::from(write), n)).unwrap();
        let payload = vec![n as u8; 512];
        if write {
            dma.write(buf, &payload).unwrap();
        }
        let elems = [r(hdr, 16), (buf, 512, !write), w(status, 1)];
        let id = if n % 2 == 0 { ring.add(&elems) } else { ring.add_indirect(INDIRECT + 0x100 * n, &elems) };
        dev.queue_notify(0);
        let start = Instant::now();
        let used = loop {
            let used = ring.take_used();
            if !used.is_empty() {
                break used;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "request {n} never completed");
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(used, vec![(id, if write { 1 } else { 513 })]);
        let mut st = [0xAAu8];
        dma.read(status, &mut st).unwrap();
        assert_eq!(st, [0], "VIRTIO_BLK_S_OK");
        let sector = n as usize * 512;
        let mut got = vec![0u8; 512];
        if write {
            assert_eq!(disk.contents()[sector..sector + 512], payload[..]);
        } else {
            dma.read(buf, &mut got).unwrap();
            assert_eq!(got, data[sector..sector + 512]);
        }
    }
    dev.reset();
}
