//! The balloon driven as a driver would: rings in guest memory, `activate` and `queue_notify`
//! called directly (no PCI transport).

use super::*;
use crate::testing::{FakeLine, FakeMsi, XorShift};
use crate::virtio::interrupt::{Shared, VIRTIO_ISR_CONFIG};
use crate::virtio::queue::{VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use crate::virtio::queue_tests::GuestRing;
use crate::virtio::{Interrupt, QueueConfig, VIRTIO_F_VERSION_1};
use ferrite_memory::{GuestMemory, FOUR_GIB};

const RAM_LOW: u64 = 0x80_0000;
const RAM_HIGH: u64 = 0x10_0000;
const RING_SIZE: u16 = 8;
/// Where the test's request buffers (PFN arrays, stats) go.
const BUFS: u64 = 0x10_0000;
/// Pages the tests fill and give to the balloon.
const VICTIM: u64 = 0x40_0000;

const STATS: u64 = VIRTIO_BALLOON_F_STATS_VQ;
const REPORTING: u64 = VIRTIO_BALLOON_F_FREE_PAGE_REPORTING;

struct Fixture {
    dev: VirtioBalloon,
    ctl: BalloonControl,
    shared: Arc<Shared>,
    line: Arc<FakeLine>,
    dma: Dma,
    rings: Vec<GuestRing>,
    next_desc: Vec<u16>,
}

/// A balloon with `opts`, activated with `features` and every queue enabled.
fn fixture(opts: VirtioBalloonOptions, features: u64) -> Fixture {
    let (dev, ctl) = VirtioBalloon::new(opts);
    let mut f = unactivated(dev, ctl);
    f.activate(features).unwrap();
    f
}

fn unactivated(dev: VirtioBalloon, ctl: BalloonControl) -> Fixture {
    let dma = Dma::new(Arc::new(GuestMemory::new(RAM_LOW, RAM_HIGH).unwrap()));
    let shared = Arc::new(Shared::new(dev.queue_max_sizes().len(), None));
    let line = Arc::new(FakeLine::default());
    shared.attach(line.clone(), Arc::new(FakeMsi::default()));
    let rings = (0..dev.queue_max_sizes().len() as u64)
        .map(|i| {
            let base = 0x1_0000 * (i + 1);
            GuestRing::new(dma.clone(), RING_SIZE, base, base + 0x4000, base + 0x8000)
        })
        .collect();
    let next_desc = vec![0; dev.queue_max_sizes().len()];
    Fixture { dev, ctl, shared, line, dma, rings, next_desc }
}

impl Fixture {
    fn activate(&mut self, features: u64) -> Result<(), ActivateError> {
        let interrupt = Interrupt::new(self.shared.clone(), self.shared.epoch());
        let queues = self
            .rings
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let cfg = QueueConfig {
                    size: r.size,
                    ready: true,
                    desc_table: r.desc,
                    avail_ring: r.avail,
                    used_ring: r.used,
                };
                Queue::new(i as u16, cfg, features, self.dma.clone(), interrupt.clone())
            })
            .collect();
        self.dev.activate(ActivateContext { features, queues, interrupt, dma: self.dma.clone() })
    }

    /// Posts a chain of `(addr, len, device_writable)` buffers on queue `q` (without
    /// notifying); returns its head.
    fn post(&mut self, q: usize, bufs: &[(u64, u32, bool)]) -> u16 {
        let ring = &mut self.rings[q];
        let head = self.next_desc[q];
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let d = (head + i as u16) % ring.size;
            let next = (d + 1) % ring.size;
            let more = if i + 1 < bufs.len() { VIRTQ_DESC_F_NEXT } else { 0 };
            let write = if writable { VIRTQ_DESC_F_WRITE } else { 0 };
            ring.set_desc(d, addr, len, more | write, next);
        }
        self.next_desc[q] = (head + bufs.len() as u16) % ring.size;
        ring.push(head);
        head
    }

    /// Sends `pfns` on the inflate or deflate queue and notifies it.
    fn send_pfns(&mut self, q: u16, pfns: &[u32]) -> u16 {
        let bytes: Vec<u8> = pfns.iter().flat_map(|p| p.to_le_bytes()).collect();
        self.dma.write(BUFS, &bytes).unwrap();
        let head = self.post(usize::from(q), &[(BUFS, bytes.len() as u32, false)]);
        self.dev.queue_notify(q);
        head
    }

    /// Posts a stats buffer with `entries` on queue `q` and notifies it.
    fn send_stats(&mut self, q: u16, entries: &[(u16, u64)]) -> u16 {
        let bytes: Vec<u8> =
            entries.iter().flat_map(|(t, v)| t.to_le_bytes().into_iter().chain(v.to_le_bytes())).collect();
        self.dma.write(BUFS + 0x1000, &bytes).unwrap();
        let head = self.post(usize::from(q), &[(BUFS + 0x1000, bytes.len() as u32, false)]);
        self.dev.queue_notify(q);
        head
    }

    fn page_is_zero(&self, gpa: u64) -> bool {
        let mut b = [0u8; 4096];
        self.dma.read(gpa, &mut b).unwrap();
        b.iter().all(|&x| x == 0)
    }

    fn config_u32(&self, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        self.dev.read_config(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn config_interrupts(&self) -> bool {
        self.shared.take_config_changed() && self.shared.take_isr() & VIRTIO_ISR_CONFIG != 0
    }
}

fn pfn(gpa: u64) -> u32 {
    (gpa / BALLOON_PAGE_SIZE) as u32
}

#[test]
fn offers_stats_and_optional_features() {
    let (dev, _) = VirtioBalloon::new(VirtioBalloonOptions::default());
    assert_eq!(dev.device_type(), 5);
    assert_eq!(dev.device_features(), STATS);
    assert_eq!(dev.queue_max_sizes(), &[128, 128, 128]);
    assert_eq!(dev.config_len(), 8);
    let (dev, _) = VirtioBalloon::new(VirtioBalloonOptions { deflate_on_oom: true, free_page_reporting: true });
    assert_eq!(dev.device_features(), STATS | VIRTIO_BALLOON_F_DEFLATE_ON_OOM | REPORTING);
    assert_eq!(dev.queue_max_sizes(), &[128, 128, 128, 32]);
}

#[test]
fn queue_indexes_follow_negotiated_features() {
    assert_eq!(queue_roles(0), QueueRoles { stats: None, reporting: None });
    assert_eq!(queue_roles(STATS), QueueRoles { stats: Some(2), reporting: None });
    assert_eq!(queue_roles(REPORTING), QueueRoles { stats: None, reporting: Some(2) });
    assert_eq!(queue_roles(STATS | REPORTING), QueueRoles { stats: Some(2), reporting: Some(3) });
}

#[test]
fn inflate_gives_pages_back_and_deflate_takes_them() {
    let mut f = fixture(VirtioBalloonOptions::default(), STATS | VIRTIO_F_VERSION_1);
    f.dma.write(VICTIM, &[0xaa; 0x3000]).unwrap();
    f.dma.write(FOUR_GIB, &[0xbb; 16]).unwrap();
    let hole = pfn(RAM_LOW);
    let head = f.send_pfns(0, &[pfn(VICTIM), pfn(VICTIM) + 1, hole, pfn(FOUR_GIB), pfn(VICTIM)]);
    assert_eq!(f.rings[0].take_used(), vec![(u32::from(head), 0)]);
    assert!(f.line.level(), "used buffer interrupt");
    assert!(f.page_is_zero(VICTIM) && f.page_is_zero(VICTIM + 0x1000) && f.page_is_zero(FOUR_GIB));
    assert!(!f.page_is_zero(VICTIM + 0x2000), "a page not inflated keeps its data");
    assert_eq!(f.ctl.inflated_pages(), 3);
    assert_eq!(f.ctl.ignored_pfns(), 1, "the PFN in the PCI hole");

    let head = f.send_pfns(1, &[pfn(VICTIM), pfn(VICTIM + 0x2000)]);
    assert_eq!(f.rings[1].take_used(), vec![(u32::from(head), 0)]);
    assert_eq!(f.ctl.inflated_pages(), 2);
    assert_eq!(f.ctl.ignored_pfns(), 2, "deflating a page not in the balloon");
}

#[test]
fn config_space_has_target_and_actual() {
    let mut f = fixture(VirtioBalloonOptions::default(), STATS);
    f.ctl.set_target(0x10_0000 + 100);
    assert_eq!(f.ctl.target_bytes(), 0x10_0000, "rounded down to pages");
    assert_eq!(f.config_u32(0), 256);
    f.dev.write_config(4, &100u32.to_le_bytes());
    assert_eq!(f.config_u32(4), 100);
    assert_eq!(f.ctl.actual_bytes(), 100 * 4096);
    f.dev.write_config(5, &[1]);
    assert_eq!(f.ctl.actual_bytes(), (100 + 256) * 4096, "byte-wide write");
    f.dev.write_config(0, &7u32.to_le_bytes());
    assert_eq!(f.config_u32(0), 256, "num_pages is the device's");
    let mut b = [0xffu8; 2];
    f.dev.read_config(6, &mut b);
    assert_eq!(b, [0, 0]);
    f.ctl.set_target(u64::MAX);
    assert_eq!(f.config_u32(0), u32::MAX, "clamped to what num_pages holds");
}

#[test]
fn set_target_raises_a_config_interrupt_while_running() {
    let (dev, ctl) = VirtioBalloon::new(VirtioBalloonOptions::default());
    let mut f = unactivated(dev, ctl);
    f.ctl.set_target(4096);
    assert!(!f.config_interrupts(), "no driver yet");
    f.activate(STATS).unwrap();
    f.ctl.set_target(8192);
    assert!(f.line.level(), "INTx without MSI-X");
    assert!(f.config_interrupts());
    assert!(!f.line.level(), "reading ISR deasserts");
    f.dev.reset();
    f.shared.reset();
    f.ctl.set_target(4096 * 3);
    assert!(!f.config_interrupts(), "inert after reset");
    assert_eq!(f.config_u32(0), 3, "the target is still recorded");
}

#[test]
fn stats_buffer_is_held_until_requested() {
    let mut f = fixture(VirtioBalloonOptions::default(), STATS);
    assert!(f.ctl.stats().is_none());
    assert!(!f.ctl.request_stats(), "no buffer yet");
    let head = f.send_stats(2, &[(4, 1000), (5, 5000), (99, 7), (4, 1100)]);
    let s = f.ctl.stats().unwrap();
    assert_eq!((s.free_memory, s.total_memory, s.swap_in), (Some(1100), Some(5000), None));
    assert_eq!(s.other.get(&99), Some(&7));
    assert!(f.rings[2].take_used().is_empty(), "the device keeps the buffer");

    assert!(f.ctl.request_stats());
    assert_eq!(f.rings[2].take_used(), vec![(u32::from(head), 0)]);
    assert!(!f.ctl.request_stats(), "already given back");

    f.send_stats(2, &[(2, 3), (3, 4), (6, 2000), (7, 300), (8, 1), (9, 0), (0, 11), (1, 12)]);
    let s = f.ctl.stats().unwrap();
    assert_eq!(s.free_memory, None, "a fresh set replaces the old one");
    assert_eq!(
        (s.major_faults, s.minor_faults, s.available_memory, s.disk_caches),
        (Some(3), Some(4), Some(2000), Some(300))
    );
    assert_eq!(
        (s.hugetlb_allocations, s.hugetlb_failures, s.swap_in, s.swap_out),
        (Some(1), Some(0), Some(11), Some(12))
    );
    assert!(f.ctl.request_stats());
}

#[test]
fn free_page_reporting_discards_ranges_and_returns_chains() {
    let opts = VirtioBalloonOptions { free_page_reporting: true, ..Default::default() };
    let mut f = fixture(opts, STATS | REPORTING);
    f.dma.write(VICTIM, &[0xcc; 0x5000]).unwrap();
    let head = f.post(
        3,
        &[
            (VICTIM, 0x2000, true),
            (VICTIM + 0x2800, 0x1000, true), // no whole page inside
            (VICTIM + 0x3800, 0x1900, true), // the page at 0x4000 only
            (RAM_LOW, 0x1000, true),         // the PCI hole
        ],
    );
    f.dev.queue_notify(3);
    assert_eq!(f.rings[3].take_used(), vec![(u32::from(head), 0)]);
    assert_eq!(f.ctl.reported_bytes(), 0x3000);
    assert!(f.page_is_zero(VICTIM) && f.page_is_zero(VICTIM + 0x1000) && f.page_is_zero(VICTIM + 0x4000));
    assert!(!f.page_is_zero(VICTIM + 0x2000) && !f.page_is_zero(VICTIM + 0x3000));
    assert_eq!(f.ctl.inflated_pages(), 0, "reported pages are not in the balloon");
}

#[test]
fn reporting_queue_is_index_2_without_stats() {
    let opts = VirtioBalloonOptions { free_page_reporting: true, ..Default::default() };
    let mut f = fixture(opts, REPORTING);
    f.dma.write(VICTIM, &[0xcc; 0x1000]).unwrap();
    let head = f.post(2, &[(VICTIM, 0x1000, true)]);
    f.dev.queue_notify(2);
    assert_eq!(f.rings[2].take_used(), vec![(u32::from(head), 0)]);
    assert_eq!(f.ctl.reported_bytes(), 0x1000);
    assert!(!f.ctl.request_stats(), "no stats queue");
    f.dev.queue_notify(3);
    assert!(f.rings[3].take_used().is_empty(), "index 3 has no role");
}

#[test]
fn buffers_posted_before_activation_are_served() {
    let (dev, ctl) = VirtioBalloon::new(VirtioBalloonOptions::default());
    let mut f = unactivated(dev, ctl);
    f.dma.write(VICTIM, &[1; 4096]).unwrap();
    f.dma.write(BUFS, &pfn(VICTIM).to_le_bytes()).unwrap();
    let head = f.post(0, &[(BUFS, 4, false)]);
    f.activate(STATS).unwrap();
    assert_eq!(f.rings[0].take_used(), vec![(u32::from(head), 0)]);
    assert!(f.page_is_zero(VICTIM));
}

#[test]
fn reset_keeps_the_target_and_forgets_the_driver() {
    let mut f = fixture(VirtioBalloonOptions::default(), STATS);
    f.ctl.set_target(0x8000);
    f.send_pfns(0, &[pfn(VICTIM)]);
    f.dev.write_config(4, &1u32.to_le_bytes());
    f.send_stats(2, &[(4, 1)]);
    f.dev.reset();
    f.shared.reset();
    assert_eq!((f.ctl.target_bytes(), f.ctl.actual_bytes(), f.ctl.inflated_pages()), (0x8000, 0, 0));
    assert!(!f.ctl.request_stats(), "held buffer dropped");
    assert!(f.ctl.stats().is_some(), "the last figures stay");
    f.dev.queue_notify(0);
}

#[test]
fn inflate_and_deflate_queues_are_required() {
    let (dev, ctl) = VirtioBalloon::new(VirtioBalloonOptions::default());
    let mut f = unactivated(dev, ctl);
    f.rings.truncate(1);
    assert!(matches!(f.activate(STATS), Err(ActivateError::QueueNotReady(1))));
}

#[test]
fn random_guest_input_never_panics() {
    let opts = VirtioBalloonOptions { free_page_reporting: true, deflate_on_oom: true };
    let mut f = fixture(opts, STATS | REPORTING);
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    let ram_pages = (RAM_LOW / BALLOON_PAGE_SIZE) as u32;
    for round in 0..300 {
        let q = rng.below(4) as u16;
        let writable = rng.next() & 1 != 0;
        let mut bufs = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let addr = match rng.below(4) {
                0 => rng.next(),
                1 => u64::MAX - rng.below(0x3000) as u64,
                2 => VICTIM + rng.below(0x10_0000) as u64,
                _ => FOUR_GIB + rng.below(0x20_0000) as u64,
            };
            let len = match rng.below(3) {
                0 => rng.next() as u32,
                1 => rng.below(0x4000) as u32,
                _ => 0,
            };
            bufs.push((addr, len, writable));
        }
        if q < 2 && rng.next() & 1 != 0 {
            // A PFN array in a buffer the device can read: RAM, holes and garbage.
            let pfns: Vec<u8> = (0..rng.below(300))
                .map(|_| match rng.below(3) {
                    0 => rng.next() as u32,
                    _ => ram_pages / 2 + rng.below(ram_pages as usize / 2) as u32,
                })
                .flat_map(u32::to_le_bytes)
                .collect();
            f.dma.write(BUFS, &pfns).unwrap();
            bufs = vec![(BUFS, pfns.len() as u32 + rng.below(3) as u32, false)];
        }
        if q == 2 && rng.next() & 1 != 0 {
            let junk: Vec<u8> = (0..rng.below(800)).map(|_| rng.next() as u8).collect();
            f.dma.write(BUFS + 0x1000, &junk).unwrap();
            bufs = vec![(BUFS + 0x1000, junk.len() as u32, false)];
        }
        f.post(usize::from(q), &bufs);
        f.dev.queue_notify(q);
        if round % 7 == 0 {
            f.ctl.request_stats();
        }
        for r in &mut f.rings {
            r.take_used();
        }
    }
    assert!(f.ctl.inflated_pages() <= u64::from(ram_pages) + RAM_HIGH / BALLOON_PAGE_SIZE);
}

#[test]
fn the_balloon_sizes_are_saved_and_restored() {
    use ferrite_persist::{load, save};
    let (mut a, actl) = VirtioBalloon::new(VirtioBalloonOptions::default());
    actl.set_target(64 << 20);
    a.write_config(4, &100u32.to_le_bytes());
    let (mut b, bctl) = VirtioBalloon::new(VirtioBalloonOptions::default());
    load(&mut b, &save(&a, "balloon0")).unwrap();
    assert_eq!((bctl.target_bytes(), bctl.actual_bytes()), (64 << 20, 100 * 4096));
    let (mut ca, mut cb) = ([0u8; 8], [0u8; 8]);
    a.read_config(0, &mut ca);
    b.read_config(0, &mut cb);
    assert_eq!(ca, cb);
}
