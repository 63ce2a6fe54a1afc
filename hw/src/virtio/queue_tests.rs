//! The split virtqueue driven from the guest side, as a driver lays out its rings, over real
//! guest memory; plus a guest-side ring helper the transport tests share.

use super::interrupt::{Shared, VIRTIO_ISR_CONFIG, VIRTIO_ISR_QUEUE};
use super::queue::*;
use super::*;
use crate::testing::{FakeLine, FakeMsi};
use ferrite_memory::{Dma, GuestMemory};
use std::sync::Arc;

pub(super) const RAM: u64 = 0x40_0000;

/// The driver's view of one split queue in guest memory.
pub(super) struct GuestRing {
    pub dma: Dma,
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub avail_idx: u16,
    pub last_used: u16,
}

impl GuestRing {
    /// A zeroed ring of `size` entries with its parts at `desc`, `avail`, `used`.
    pub fn new(dma: Dma, size: u16, desc: u64, avail: u64, used: u64) -> Self {
        let n = u64::from(size);
        dma.memory().zero(desc, 16 * n).unwrap();
        dma.memory().zero(avail, 6 + 2 * n).unwrap();
        dma.memory().zero(used, 6 + 8 * n).unwrap();
        GuestRing { dma, size, desc, avail, used, avail_idx: 0, last_used: 0 }
    }

    /// Rings at `base` in the legacy layout (alignment 4096).
    pub fn legacy(dma: Dma, size: u16, base: u64) -> Self {
        let n = u64::from(size);
        let avail = base + 16 * n;
        let used = (avail + 6 + 2 * n).div_ceil(4096) * 4096;
        Self::new(dma, size, base, avail, used)
    }

    pub fn set_desc_in(&self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..16].copy_from_slice(&next.to_le_bytes());
        self.dma.write(table + 16 * u64::from(i), &b).unwrap();
    }

    pub fn set_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.set_desc_in(self.desc, i, addr, len, flags, next);
    }

    fn w16(&self, addr: u64, v: u16) {
        self.dma.write(addr, &v.to_le_bytes()).unwrap();
    }

    fn r16(&self, addr: u64) -> u16 {
        let mut b = [0; 2];
        self.dma.read(addr, &mut b).unwrap();
        u16::from_le_bytes(b)
    }

    /// Makes chain `head` available and publishes the new index.
    pub fn push(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        self.w16(self.avail + 4 + 2 * slot, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.w16(self.avail + 2, self.avail_idx);
    }

    pub fn set_avail_idx(&mut self, idx: u16) {
        self.avail_idx = idx;
        self.w16(self.avail + 2, idx);
    }

    pub fn set_avail_flags(&self, flags: u16) {
        self.w16(self.avail, flags);
    }

    pub fn set_used_event(&self, v: u16) {
        self.w16(self.avail + 4 + 2 * u64::from(self.size), v);
    }

    pub fn avail_event(&self) -> u16 {
        self.r16(self.used + 4 + 8 * u64::from(self.size))
    }

    pub fn used_flags(&self) -> u16 {
        self.r16(self.used)
    }

    pub fn used_idx(&self) -> u16 {
        self.r16(self.used + 2)
    }

    /// The used elements since the last call, as (id, len); then, as Linux does when it
    /// re-enables callbacks, asks for an interrupt at the next used entry (`used_event`).
    pub fn take_used(&mut self) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let idx = self.used_idx();
        while self.last_used != idx {
            let slot = u64::from(self.last_used % self.size);
            let id = self.dma.read_u32(self.used + 4 + 8 * slot).unwrap();
            let len = self.dma.read_u32(self.used + 8 + 8 * slot).unwrap();
            out.push((id, len));
            self.last_used = self.last_used.wrapping_add(1);
        }
        self.set_used_event(self.last_used);
        out
    }
}

/// What a transport's restore rebuilds over `to`, given a copy of the guest RAM behind
/// `rings`: one ready queue per ring, each where its used index stands, and the driver's
/// rings carrying on over the copy.
pub(super) fn restored_rings(
    rings: &[GuestRing],
    to: &Dma,
    features: u64,
    interrupt: &Interrupt,
) -> (Vec<Queue>, Vec<GuestRing>) {
    if let Some(r) = rings.first() {
        let mut ram = vec![0; RAM as usize];
        r.dma.read(0, &mut ram).unwrap();
        to.write(0, &ram).unwrap();
    }
    let mut queues = Vec::new();
    let mut out = Vec::new();
    for (i, r) in rings.iter().enumerate() {
        let cfg = QueueConfig { size: r.size, ready: true, desc_table: r.desc, avail_ring: r.avail, used_ring: r.used };
        let mut q = Queue::new(i as u16, cfg, features, to.clone(), interrupt.clone());
        q.set_split_position(r.used_idx());
        queues.push(q);
        out.push(GuestRing { dma: to.clone(), ..*r });
    }
    (queues, out)
}

const DESC: u64 = 0x1_0000;
const AVAIL: u64 = 0x2_0000;
const USED: u64 = 0x3_0000;
const BUFS: u64 = 0x10_0000;
const INDIRECT: u64 = 0x8_0000;

struct Fixture {
    ring: GuestRing,
    queue: Queue,
    shared: Arc<Shared>,
    line: Arc<FakeLine>,
}

fn fixture(size: u16, features: u64) -> Fixture {
    let mem = Arc::new(GuestMemory::new(RAM, 0).unwrap());
    let dma = Dma::new(mem);
    let shared = Arc::new(Shared::new(1, None));
    let line = Arc::new(FakeLine::default());
    shared.attach(line.clone(), Arc::new(FakeMsi::default()));
    let interrupt = Interrupt::new(shared.clone(), shared.epoch());
    let ring = GuestRing::new(dma.clone(), size, DESC, AVAIL, USED);
    let cfg = QueueConfig { size, ready: true, desc_table: DESC, avail_ring: AVAIL, used_ring: USED };
    let queue = Queue::new(0, cfg, features, dma, interrupt);
    Fixture { ring, queue, shared, line }
}

const ALL: u64 = VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX | VIRTIO_F_VERSION_1;

impl Fixture {
    /// Pops once and expects the queue to break with `want`.
    fn expect_broken(&mut self, want: QueueError) {
        assert_eq!(self.queue.pop(), None);
        assert_eq!(self.queue.error(), Some(want));
        assert!(self.shared.needs_reset());
        assert!(!self.queue.is_ready());
        assert_eq!(self.shared.take_isr() & VIRTIO_ISR_CONFIG, VIRTIO_ISR_CONFIG, "config change signalled");
        assert_eq!(self.queue.pop(), None, "stays broken");
    }
}

#[test]
fn direct_chain_readable_then_writable() {
    let mut f = fixture(8, 0);
    f.ring.set_desc(3, BUFS, 16, VIRTQ_DESC_F_NEXT, 5);
    f.ring.set_desc(5, BUFS + 0x100, 100, VIRTQ_DESC_F_NEXT, 1);
    f.ring.set_desc(1, BUFS + 0x1000, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
    f.ring.set_desc(2, BUFS + 0x2000, 1, VIRTQ_DESC_F_WRITE, 0);
    assert!(!f.queue.has_available());
    assert_eq!(f.queue.pop(), None);
    f.ring.push(3);
    assert!(f.queue.has_available());
    let c = f.queue.pop().unwrap();
    assert_eq!(c.head(), 3);
    assert_eq!(c.readable(), &[Buffer { addr: BUFS, len: 16 }, Buffer { addr: BUFS + 0x100, len: 100 }]);
    assert_eq!(c.writable(), &[Buffer { addr: BUFS + 0x1000, len: 512 }, Buffer { addr: BUFS + 0x2000, len: 1 }]);
    assert_eq!((c.readable_len(), c.writable_len()), (116, 513));
    assert_eq!(f.queue.pop(), None);
    f.queue.add_used(3, 77);
    assert_eq!(f.ring.take_used(), vec![(3, 77)]);
    assert!(!f.line.level());
    assert!(f.queue.notify(), "flags 0: notify");
    assert!(f.line.level(), "INTx without MSI-X");
    assert_eq!(f.shared.take_isr(), VIRTIO_ISR_QUEUE);
    assert!(!f.line.level(), "ISR read deasserts");
    assert!(!f.queue.notify(), "nothing new used");
}

#[test]
fn no_interrupt_flag_without_event_idx() {
    let mut f = fixture(4, 0);
    f.ring.set_desc(0, BUFS, 8, VIRTQ_DESC_F_WRITE, 0);
    f.ring.set_avail_flags(VIRTQ_AVAIL_F_NO_INTERRUPT);
    f.ring.push(0);
    let c = f.queue.pop().unwrap();
    f.queue.add_used(c.head(), 8);
    assert!(!f.queue.notify());
    assert!(!f.line.level());
    f.ring.set_avail_flags(0);
    f.ring.push(0);
    let c = f.queue.pop().unwrap();
    f.queue.add_used(c.head(), 8);
    assert!(f.queue.notify());
    assert_eq!(f.ring.avail_event(), 0, "avail_event untouched without EVENT_IDX");
}

#[test]
fn event_idx_suppresses_both_ways() {
    let mut f = fixture(8, ALL);
    f.ring.set_desc(0, BUFS, 8, VIRTQ_DESC_F_WRITE, 0);
    // The driver wants an interrupt only once used idx passes 2 (i.e. the third buffer).
    f.ring.set_used_event(2);
    // It sets NO_INTERRUPT too, which must be ignored with EVENT_IDX.
    f.ring.set_avail_flags(VIRTQ_AVAIL_F_NO_INTERRUPT);
    let mut signalled = Vec::new();
    for _ in 0..4 {
        f.ring.push(0);
        let c = f.queue.pop().unwrap();
        assert_eq!(f.ring.avail_event(), f.ring.avail_idx, "device asks for the next entry");
        f.queue.add_used(c.head(), 8);
        signalled.push(f.queue.notify());
    }
    assert_eq!(signalled, vec![false, false, true, false]);
    // A batch that crosses used_event in the middle signals once.
    f.ring.set_used_event(5);
    for _ in 0..3 {
        f.ring.push(0);
    }
    while let Some(c) = f.queue.pop() {
        f.queue.add_used(c.head(), 8);
    }
    assert_eq!(f.ring.used_idx(), 7);
    assert!(f.queue.notify());
    // Empty queue: avail_event equals the next index the driver will fill.
    assert_eq!(f.queue.pop(), None);
    assert_eq!(f.ring.avail_event(), 7);
    // Polling: avail_event stops moving; enabling again reports what is pending.
    f.queue.disable_notifications();
    f.ring.push(0);
    let c = f.queue.pop().unwrap();
    f.queue.add_used(c.head(), 1);
    assert_eq!(f.ring.avail_event(), 7);
    f.ring.push(0);
    assert!(f.queue.enable_notifications(), "one already pending");
    assert_eq!(f.ring.avail_event(), 8);
}

#[test]
fn no_notify_flag_when_polling_without_event_idx() {
    let mut f = fixture(4, 0);
    f.queue.disable_notifications();
    assert_eq!(f.ring.used_flags(), VIRTQ_USED_F_NO_NOTIFY);
    assert!(!f.queue.enable_notifications());
    assert_eq!(f.ring.used_flags(), 0);
}

#[test]
fn indices_wrap_at_65536() {
    let mut f = fixture(4, ALL);
    f.ring.set_desc(0, BUFS, 4, VIRTQ_DESC_F_WRITE, 0);
    f.ring.set_desc(1, BUFS + 4, 4, VIRTQ_DESC_F_WRITE, 0);
    let mut n = 0u32;
    while n < 70_000 {
        f.ring.push((n % 2) as u16);
        f.ring.push(((n + 1) % 2) as u16);
        for _ in 0..2 {
            let c = f.queue.pop().unwrap();
            f.queue.add_used(c.head(), 4);
            n += 1;
        }
        assert_eq!(f.ring.take_used().len(), 2);
    }
    assert_eq!(f.ring.used_idx(), (n % 65536) as u16);
    assert!(f.queue.error().is_none());
}

#[test]
fn indirect_tables() {
    let mut f = fixture(8, ALL);
    // A direct readable header, then an indirect table with one readable and two writable.
    f.ring.set_desc(4, BUFS, 16, VIRTQ_DESC_F_NEXT, 6);
    // The WRITE flag on the descriptor pointing at the table is ignored.
    f.ring.set_desc(6, INDIRECT, 48, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
    f.ring.set_desc_in(INDIRECT, 0, BUFS + 0x10, 32, VIRTQ_DESC_F_NEXT, 2);
    f.ring.set_desc_in(INDIRECT, 2, BUFS + 0x1000, 64, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    f.ring.set_desc_in(INDIRECT, 1, BUFS + 0x2000, 8, VIRTQ_DESC_F_WRITE, 0);
    f.ring.push(4);
    let c = f.queue.pop().unwrap();
    assert_eq!(c.head(), 4);
    assert_eq!(c.readable(), &[Buffer { addr: BUFS, len: 16 }, Buffer { addr: BUFS + 0x10, len: 32 }]);
    assert_eq!(c.writable(), &[Buffer { addr: BUFS + 0x1000, len: 64 }, Buffer { addr: BUFS + 0x2000, len: 8 }]);
    // The largest accepted table.
    let n = MAX_INDIRECT_DESCRIPTORS as u16;
    for i in 0..n {
        let flags = VIRTQ_DESC_F_WRITE | if i + 1 < n { VIRTQ_DESC_F_NEXT } else { 0 };
        f.ring.set_desc_in(INDIRECT, i, BUFS, 1, flags, i + 1);
    }
    f.ring.set_desc(0, INDIRECT, u32::from(n) * 16, VIRTQ_DESC_F_INDIRECT, 0);
    f.ring.push(0);
    assert_eq!(f.queue.pop().unwrap().writable().len(), usize::from(n));
}

#[test]
fn chain_reader_and_writer_cross_buffers() {
    let f = fixture(4, 0);
    let dma = f.queue.dma().clone();
    dma.write(BUFS, b"hello ").unwrap();
    dma.write(BUFS + 0x100, b"world").unwrap();
    let c = DescriptorChain {
        head: 0,
        readable: vec![Buffer { addr: BUFS, len: 6 }, Buffer { addr: BUFS + 0x80, len: 0 }, Buffer { addr: BUFS + 0x100, len: 5 }],
        writable: vec![Buffer { addr: BUFS + 0x200, len: 3 }, Buffer { addr: BUFS + 0x300, len: 4 }],
    };
    let mut r = c.reader(&dma);
    let mut b = [0u8; 11];
    r.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hello world");
    assert_eq!(r.remaining(), 0);
    assert_eq!(r.read(&mut b).unwrap(), 0);
    let mut r = c.reader(&dma);
    assert_eq!(r.skip(4), 4);
    assert!(matches!(r.read_exact(&mut [0u8; 8]), Err(ChainError::Short { wanted: 8, available: 7 })));
    let mut w = c.writer(&dma);
    assert_eq!(w.write(b"abcdefghij").unwrap(), 7, "only 7 writable bytes");
    assert_eq!(w.written_u32(), 7);
    let mut out = [0u8; 4];
    dma.read(BUFS + 0x300, &mut out).unwrap();
    assert_eq!(&out, b"defg");
    // A buffer outside RAM fails the copy without panicking.
    let bad = DescriptorChain {
        head: 0,
        readable: vec![Buffer { addr: RAM - 2, len: 8 }],
        writable: vec![Buffer { addr: BUFS, len: 2 }, Buffer { addr: u64::MAX - 1, len: 8 }],
    };
    assert!(matches!(bad.reader(&dma).read(&mut [0; 8]), Err(ChainError::Read(_))));
    let mut w = bad.writer(&dma);
    assert!(matches!(w.write(&[1; 8]), Err(ChainError::Write(_))));
    assert_eq!(w.written(), 2, "what reached RAM before the failure");
}

#[test]
fn malformed_rings_break_the_queue() {
    // A direct loop: 0 -> 1 -> 0.
    let mut f = fixture(4, ALL);
    f.ring.set_desc(0, BUFS, 1, VIRTQ_DESC_F_NEXT, 1);
    f.ring.set_desc(1, BUFS, 1, VIRTQ_DESC_F_NEXT, 0);
    f.ring.push(0);
    f.expect_broken(QueueError::ChainTooLong { head: 0, limit: 4 });

    // A loop inside an indirect table.
    let mut f = fixture(4, ALL);
    f.ring.set_desc(0, INDIRECT, 64, VIRTQ_DESC_F_INDIRECT, 0);
    for i in 0..4 {
        f.ring.set_desc_in(INDIRECT, i, BUFS, 1, VIRTQ_DESC_F_NEXT, (i + 1) % 4);
    }
    f.ring.push(0);
    f.expect_broken(QueueError::ChainTooLong { head: 0, limit: 4 });

    // Indirect inside indirect.
    let mut f = fixture(4, ALL);
    f.ring.set_desc(0, INDIRECT, 16, VIRTQ_DESC_F_INDIRECT, 0);
    f.ring.set_desc_in(INDIRECT, 0, INDIRECT, 16, VIRTQ_DESC_F_INDIRECT, 0);
    f.ring.push(0);
    f.expect_broken(QueueError::NestedIndirect);

    // Indirect with NEXT.
    let mut f = fixture(4, ALL);
    f.ring.set_desc(0, INDIRECT, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
    f.ring.push(0);
    f.expect_broken(QueueError::IndirectWithNext);

    // Empty, ragged and oversized indirect tables.
    for len in [0, 24, (MAX_INDIRECT_DESCRIPTORS + 1) * 16, !15] {
        let mut f = fixture(4, ALL);
        f.ring.set_desc(0, INDIRECT, len, VIRTQ_DESC_F_INDIRECT, 0);
        f.ring.push(0);
        f.expect_broken(QueueError::IndirectLength { len });
    }

    // Indirect without the feature.
    let mut f = fixture(4, VIRTIO_F_EVENT_IDX);
    f.ring.set_desc(0, INDIRECT, 16, VIRTQ_DESC_F_INDIRECT, 0);
    f.ring.push(0);
    f.expect_broken(QueueError::IndirectNotNegotiated);

    // Writable before readable, directly and inside an indirect table.
    let mut f = fixture(4, ALL);
    f.ring.set_desc(0, BUFS, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    f.ring.set_desc(1, BUFS, 1, 0, 0);
    f.ring.push(0);
    f.expect_broken(QueueError::ReadableAfterWritable);
    let mut f = fixture(4, ALL);
    f.ring.set_desc(0, BUFS, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    f.ring.set_desc(1, INDIRECT, 16, VIRTQ_DESC_F_INDIRECT, 0);
    f.ring.set_desc_in(INDIRECT, 0, BUFS, 1, 0, 0);
    f.ring.push(0);
    f.expect_broken(QueueError::ReadableAfterWritable);

    // Head and next outside the table.
    let mut f = fixture(4, ALL);
    f.ring.push(4);
    f.expect_broken(QueueError::DescriptorIndex { index: 4, len: 4 });
    let mut f = fixture(4, ALL);
    f.ring.set_desc(2, BUFS, 1, VIRTQ_DESC_F_NEXT, 0xFFFF);
    f.ring.push(2);
    f.expect_broken(QueueError::DescriptorIndex { index: 0xFFFF, len: 4 });

    // The available index jumping more than the queue size ahead.
    let mut f = fixture(4, ALL);
    f.ring.set_avail_idx(5);
    f.expect_broken(QueueError::AvailIndexJump { last: 0, idx: 5, size: 4 });
    let mut f = fixture(4, ALL);
    f.ring.set_avail_idx(0xFFFF);
    f.expect_broken(QueueError::AvailIndexJump { last: 0, idx: 0xFFFF, size: 4 });
}

#[test]
fn rings_outside_ram_break_the_queue() {
    let mem = Arc::new(GuestMemory::new(RAM, 0).unwrap());
    let dma = Dma::new(mem);
    let shared = Arc::new(Shared::new(1, None));
    let cases = [
        // Descriptor table beyond RAM.
        (RAM - 16, AVAIL, USED, ALL, "descriptor"),
        // Available ring beyond RAM.
        (DESC, RAM + 0x1000, USED, ALL, "available index"),
        // Used ring crossing the end of RAM: found when the element is written.
        (DESC, AVAIL, RAM - 8, VIRTIO_F_INDIRECT_DESC, "used ring"),
        // Used ring whose avail_event address wraps around: an error, not a write at 0.
        (DESC, AVAIL, u64::MAX - 3, ALL, "avail_event"),
    ];
    for (desc, avail, used, features, what) in cases {
        shared.reset();
        let irq = Interrupt::new(shared.clone(), shared.epoch());
        let cfg = QueueConfig { size: 4, ready: true, desc_table: desc, avail_ring: avail, used_ring: used };
        let mut q = Queue::new(0, cfg, features, dma.clone(), irq);
        dma.memory().zero(0, 0x100).unwrap();
        if avail < RAM {
            let mut ring = GuestRing { dma: dma.clone(), size: 4, desc, avail, used, avail_idx: 0, last_used: 0 };
            ring.push(3);
            if desc < RAM - 16 {
                ring.set_desc(3, BUFS, 4, VIRTQ_DESC_F_WRITE, 0);
            }
        }
        if let Some(c) = q.pop() {
            q.add_used(c.head(), 4);
        }
        match q.error() {
            Some(QueueError::RingRead { what: w, .. } | QueueError::RingWrite { what: w, .. }) => assert_eq!(w, what),
            e => panic!("{what}: {e:?}"),
        }
        assert!(shared.needs_reset());
        let mut low = [0u8; 0x100];
        dma.read(0, &mut low).unwrap();
        assert_eq!(low, [0; 0x100], "{what}: nothing written at wrapped addresses");
    }
}

#[test]
fn a_reset_disarms_the_queue() {
    let mut f = fixture(4, ALL);
    f.ring.set_desc(0, BUFS, 4, VIRTQ_DESC_F_WRITE, 0);
    f.ring.push(0);
    let c = f.queue.pop().unwrap();
    f.shared.reset();
    assert!(!f.queue.is_ready());
    f.queue.add_used(c.head(), 4);
    assert_eq!(f.ring.used_idx(), 0, "no write after the reset");
    f.ring.push(0);
    assert_eq!(f.queue.pop(), None);
    assert!(!f.queue.notify());
    f.queue.interrupt().signal_queue(0);
    f.queue.interrupt().signal_config();
    f.queue.interrupt().set_needs_reset();
    assert_eq!(f.shared.take_isr(), 0);
    assert!(!f.shared.needs_reset());
    assert!(!f.line.level());
}

#[test]
fn queues_and_interrupts_work_from_another_thread() {
    fn assert_send<T: Send>() {}
    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
    assert_send::<Queue>();
    assert_send::<DescriptorChain>();
    assert_send_sync_clone::<Interrupt>();

    let mut f = fixture(8, ALL);
    for i in 0..8 {
        f.ring.set_desc(i, BUFS + 0x100 * u64::from(i), 0x100, VIRTQ_DESC_F_WRITE, 0);
    }
    let mut queue = f.queue;
    let worker = std::thread::spawn(move || {
        let mut done = 0;
        while done < 1000 {
            while let Some(c) = queue.pop() {
                let dma = queue.dma().clone();
                let mut w = c.writer(&dma);
                w.write(&[c.head() as u8; 4]).unwrap();
                queue.add_used(c.head(), w.written_u32());
                done += 1;
            }
            queue.notify();
            std::thread::yield_now();
        }
        queue
    });
    let mut got = 0;
    let mut next = 0u16;
    while got < 1000 {
        // Keep at most 8 in flight.
        while next.wrapping_sub(f.ring.last_used) < 8 && next < 1000 {
            f.ring.push(next % 8);
            next += 1;
        }
        for (id, len) in f.ring.take_used() {
            assert_eq!(len, 4);
            let mut b = [0u8; 4];
            f.ring.dma.read(BUFS + 0x100 * u64::from(id), &mut b).unwrap();
            assert_eq!(b, [id as u8; 4]);
            got += 1;
        }
        std::thread::yield_now();
    }
    let queue = worker.join().unwrap();
    assert!(queue.error().is_none());
    assert!(f.line.level(), "interrupt raised from the worker");
}

/// Deterministic pseudo-random numbers for the fuzz tests.
pub(super) use crate::testing::XorShift as Rng;

#[test]
fn random_rings_never_panic_or_hang() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    for round in 0..300 {
        let mut f = fixture(16, if round % 3 == 0 { VIRTIO_F_EVENT_IDX } else { ALL });
        let pick_addr = |r: &mut Rng| match r.next() % 4 {
            0 => r.next(),
            1 => INDIRECT + (r.next() % 4) * 16,
            _ => BUFS + r.next() % 0x1000,
        };
        for i in 0..16 {
            let flags = (rng.next() & 7) as u16;
            let (a, l, n) = (pick_addr(&mut rng), (rng.next() % 80) as u32, (rng.next() % 18) as u16);
            f.ring.set_desc(i, a, l, flags, n);
            let (a, l, n) = (pick_addr(&mut rng), (rng.next() % 80) as u32, (rng.next() % 6) as u16);
            f.ring.set_desc_in(INDIRECT, i, a, l, (rng.next() & 7) as u16, n);
        }
        for _ in 0..(rng.next() % 20) {
            f.ring.push((rng.next() % 17) as u16);
        }
        if rng.next().is_multiple_of(8) {
            f.ring.set_avail_idx(rng.next() as u16);
        }
        let mut popped = 0;
        while let Some(c) = f.queue.pop() {
            popped += 1;
            assert!(popped <= 20);
            assert!(c.readable().len() + c.writable().len() <= 16 + MAX_INDIRECT_DESCRIPTORS as usize);
            f.queue.add_used(c.head(), rng.next() as u32);
        }
        f.queue.notify();
        if f.queue.error().is_some() {
            assert!(f.shared.needs_reset());
        }
    }
}

#[test]
fn undo_pop_yields_the_same_chains_again() {
    let mut f = fixture(4, ALL);
    for i in 0..3 {
        f.ring.set_desc(i, BUFS + 0x100 * u64::from(i), 64, VIRTQ_DESC_F_WRITE, 0);
        f.ring.push(i);
    }
    let a = f.queue.pop().unwrap();
    let b = f.queue.pop().unwrap();
    f.queue.undo_pop(2);
    assert_eq!(f.queue.pop(), Some(a));
    assert_eq!(f.queue.pop(), Some(b));
    assert_eq!(f.queue.pop().unwrap().head(), 2);
    assert_eq!(f.queue.pop(), None);
}

#[test]
fn notify_on_more_asks_for_the_next_addition() {
    let mut f = fixture(8, ALL);
    f.ring.set_desc(0, BUFS, 64, VIRTQ_DESC_F_WRITE, 0);
    f.ring.push(0);
    f.ring.push(0);
    f.queue.pop().unwrap();
    f.queue.undo_pop(1);
    assert!(!f.queue.notify_on_more(), "nothing added meanwhile");
    assert_eq!(f.ring.avail_event(), 2, "kick when entry 2 is added, not at entry 0");
    f.queue.pop().unwrap();
    assert_eq!(f.ring.avail_event(), 1, "popping resumes the usual avail_event");

    let mut f = fixture(8, 0);
    f.queue.disable_notifications();
    assert_eq!(f.ring.used_flags(), VIRTQ_USED_F_NO_NOTIFY);
    assert!(!f.queue.notify_on_more());
    assert_eq!(f.ring.used_flags(), 0, "without EVENT_IDX: notifications back on");
}
