//! virtio-blk driven as Linux's virtio_blk drives it: requests laid out in guest memory, the
//! queue notified, completions read back from the used ring; plus malformed requests.

use super::*;
use crate::testing::{FakeLine, FakeMsi, XorShift};
use crate::virtio::interrupt::Shared as IrqShared;
use crate::virtio::queue::{QueueConfig, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use crate::virtio::queue_tests::GuestRing;
use crate::virtio::{Interrupt, Queue, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1};
use ferrite_block::MemDisk;
use ferrite_memory::{Dma, GuestMemory};
use std::time::{Duration, Instant};

const RAM: u64 = 0x80_0000;
const SIZE: u16 = 16;
const HDR: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const STATUS: u64 = 0x30_0000;
const INDIRECT: u64 = 0x31_0000;
const DISK_BYTES: usize = 1 << 20;

struct Rig {
    dev: VirtioBlk,
    rings: Vec<GuestRing>,
    dma: Dma,
    disk: Arc<MemDisk>,
    line: Arc<FakeLine>,
}

fn ring_base(q: u16) -> u64 {
    0x1_0000 * (1 + 3 * u64::from(q))
}

fn rig_with(disk: MemDisk, opts: VirtioBlkOptions, features: u64) -> Rig {
    let disk = Arc::new(disk);
    let mut dev = VirtioBlk::new(disk.clone(), &opts).unwrap();
    let mem = Arc::new(GuestMemory::new(RAM, 0).unwrap());
    let dma = Dma::new(mem);
    let irq = Arc::new(IrqShared::new(usize::from(opts.num_queues), None));
    let line = Arc::new(FakeLine::default());
    irq.attach(line.clone(), Arc::new(FakeMsi::default()));
    let interrupt = Interrupt::new(irq.clone(), irq.epoch());
    let features = features | dev.device_features();
    let mut rings = Vec::new();
    let mut queues = Vec::new();
    for q in 0..opts.num_queues {
        let b = ring_base(q);
        let (desc, avail, used) = (b, b + 0x1000, b + 0x2000);
        rings.push(GuestRing::new(dma.clone(), SIZE, desc, avail, used));
        let cfg = QueueConfig { size: SIZE, ready: true, desc_table: desc, avail_ring: avail, used_ring: used };
        queues.push(Queue::new(q, cfg, features, dma.clone(), interrupt.clone()));
    }
    dev.activate(ActivateContext { features, queues, interrupt, dma: dma.clone() }).unwrap();
    Rig { dev, rings, dma, disk, line }
}

fn rig() -> Rig {
    let data: Vec<u8> = (0..DISK_BYTES).map(|i| (i / 512) as u8 ^ (i as u8)).collect();
    rig_with(MemDisk::new(data, false), VirtioBlkOptions { serial: "ferrite-disk-0".into(), ..Default::default() }, VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX | VIRTIO_F_INDIRECT_DESC)
}

fn header(kind: u32, sector: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    h
}

impl Rig {
    /// Submits a chain of (addr, len, writable) on queue `q` and waits for its completion;
    /// returns the used length.
    fn submit_on(&mut self, q: u16, bufs: &[(u64, u32, bool)]) -> u32 {
        let ring = &mut self.rings[usize::from(q)];
        for (i, &(addr, len, w)) in bufs.iter().enumerate() {
            let last = i + 1 == bufs.len();
            let flags = if w { VIRTQ_DESC_F_WRITE } else { 0 } | if last { 0 } else { VIRTQ_DESC_F_NEXT };
            ring.set_desc(i as u16, addr, len, flags, i as u16 + 1);
        }
        ring.push(0);
        self.dev.queue_notify(q);
        self.wait_used(q)
    }

    fn submit(&mut self, bufs: &[(u64, u32, bool)]) -> u32 {
        self.submit_on(0, bufs)
    }

    fn wait_used(&mut self, q: u16) -> u32 {
        let start = Instant::now();
        loop {
            let used = self.rings[usize::from(q)].take_used();
            if let Some(&(id, len)) = used.first() {
                assert_eq!(id, 0);
                return len;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "request never completed");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn status(&self) -> u8 {
        let mut b = [0u8; 1];
        self.dma.read(STATUS, &mut b).unwrap();
        b[0]
    }

    /// A request with a header, optional data in either direction, and the status byte.
    fn request(&mut self, kind: u32, sector: u64, out: &[u8], in_len: u32) -> (u8, u32) {
        self.dma.write(HDR, &header(kind, sector)).unwrap();
        self.dma.write(STATUS, &[0xAA]).unwrap();
        let mut bufs = vec![(HDR, 16, false)];
        if !out.is_empty() {
            self.dma.write(DATA, out).unwrap();
            bufs.push((DATA, out.len() as u32, false));
        }
        if in_len > 0 {
            bufs.push((DATA, in_len, true));
        }
        bufs.push((STATUS, 1, true));
        let len = self.submit(&bufs);
        (self.status(), len)
    }

    fn guest(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.dma.read(addr, &mut b).unwrap();
        b
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
}

#[test]
fn configuration_describes_the_disk() {
    let r = rig();
    let mut c = [0u8; CONFIG_LEN];
    r.dev.read_config(0, &mut c);
    assert_eq!(u64::from_le_bytes(c[0..8].try_into().unwrap()), (DISK_BYTES / 512) as u64);
    assert_eq!(u32::from_le_bytes(c[12..16].try_into().unwrap()), u32::from(DEFAULT_QUEUE_SIZE) - 2, "seg_max");
    assert_eq!(u32::from_le_bytes(c[20..24].try_into().unwrap()), 512, "blk_size");
    assert_eq!(c[32], 1, "writeback");
    assert_eq!(u16::from_le_bytes([c[34], c[35]]), 1, "num_queues");
    assert_eq!(u32::from_le_bytes(c[40..44].try_into().unwrap()), 1, "max_discard_seg");
    let f = r.dev.device_features();
    for bit in [VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_SEG_MAX] {
        assert_ne!(f & bit, 0);
    }
    assert_eq!(f & (VIRTIO_BLK_F_RO | VIRTIO_BLK_F_MQ), 0);
}

#[test]
fn read_write_round_trip() {
    let mut r = rig();
    let (st, len) = r.request(VIRTIO_BLK_T_IN, 3, &[], 1024);
    assert_eq!((st, len), (VIRTIO_BLK_S_OK, 1025));
    assert_eq!(r.guest(DATA, 1024), r.disk.contents()[3 * 512..5 * 512]);
    let data = pattern(4096, 9);
    let (st, len) = r.request(VIRTIO_BLK_T_OUT, 100, &data, 0);
    assert_eq!((st, len), (VIRTIO_BLK_S_OK, 1));
    assert_eq!(r.disk.contents()[100 * 512..100 * 512 + 4096], data[..]);
    let (st, _) = r.request(VIRTIO_BLK_T_FLUSH, 0, &[], 0);
    assert_eq!(st, VIRTIO_BLK_S_OK);
    let s = r.dev.stats();
    assert_eq!((s.reads, s.writes, s.flushes, s.bytes_read, s.bytes_written, s.failed), (1, 1, 1, 1024, 4096, 0));
    assert!(r.line.level(), "completion interrupt");
}

#[test]
fn header_and_data_split_anywhere() {
    let mut r = rig();
    let data = pattern(1536, 3);
    r.dma.write(HDR, &header(VIRTIO_BLK_T_OUT, 7)[..5]).unwrap();
    r.dma.write(HDR + 0x100, &header(VIRTIO_BLK_T_OUT, 7)[5..]).unwrap();
    r.dma.write(DATA, &data[..1]).unwrap();
    r.dma.write(DATA + 0x1000, &data[1..1000]).unwrap();
    r.dma.write(DATA + 0x3000, &data[1000..]).unwrap();
    let len = r.submit(&[(HDR, 5, false), (HDR + 0x100, 11, false), (DATA, 1, false), (DATA + 0x1000, 999, false), (DATA + 0x3000, 536, false), (STATUS, 1, true)]);
    assert_eq!((r.status(), len), (VIRTIO_BLK_S_OK, 1));
    assert_eq!(r.disk.contents()[7 * 512..7 * 512 + 1536], data[..]);
    // Read back into pieces, with the status sharing the last writable buffer.
    r.dma.write(HDR, &header(VIRTIO_BLK_T_IN, 7)).unwrap();
    let len = r.submit(&[(HDR, 16, false), (DATA + 0x8000, 700, true), (DATA + 0x9000, 837, true)]);
    assert_eq!(len, 1537);
    let mut got = r.guest(DATA + 0x8000, 700);
    got.extend(r.guest(DATA + 0x9000, 836));
    assert_eq!(got, data);
    assert_eq!(r.guest(DATA + 0x9000 + 836, 1)[0], VIRTIO_BLK_S_OK);
}

#[test]
fn indirect_chain() {
    let mut r = rig();
    r.dma.write(HDR, &header(VIRTIO_BLK_T_IN, 0)).unwrap();
    let table = [(HDR, 16u32, 0u16), (DATA, 512, VIRTQ_DESC_F_WRITE), (STATUS, 1, VIRTQ_DESC_F_WRITE)];
    for (i, (a, l, f)) in table.into_iter().enumerate() {
        let flags = if i < 2 { f | VIRTQ_DESC_F_NEXT } else { f };
        r.rings[0].set_desc_in(INDIRECT, i as u16, a, l, flags, i as u16 + 1);
    }
    r.rings[0].set_desc(0, INDIRECT, 48, VIRTQ_DESC_F_INDIRECT, 0);
    r.rings[0].push(0);
    r.dev.queue_notify(0);
    assert_eq!(r.wait_used(0), 513);
    assert_eq!(r.status(), VIRTIO_BLK_S_OK);
    assert_eq!(r.guest(DATA, 512), r.disk.contents()[..512]);
}

#[test]
fn get_id_returns_the_serial() {
    let mut r = rig();
    let (st, len) = r.request(VIRTIO_BLK_T_GET_ID, 0, &[], 20);
    assert_eq!((st, len), (VIRTIO_BLK_S_OK, 21));
    assert_eq!(&r.guest(DATA, 20)[..], b"ferrite-disk-0\0\0\0\0\0\0");
}

#[test]
fn malformed_requests_fail_cleanly() {
    let mut r = rig();
    let before = r.disk.contents();
    let last = (DISK_BYTES / 512) as u64;
    assert_eq!(r.request(VIRTIO_BLK_T_IN, last, &[], 512).0, VIRTIO_BLK_S_IOERR, "past the end");
    assert_eq!(r.request(VIRTIO_BLK_T_IN, last - 1, &[], 1024).0, VIRTIO_BLK_S_IOERR, "crossing the end");
    assert_eq!(r.request(VIRTIO_BLK_T_IN, u64::MAX / 256, &[], 512).0, VIRTIO_BLK_S_IOERR, "offset overflow");
    assert_eq!(r.request(VIRTIO_BLK_T_OUT, 0, &[1; 100], 0).0, VIRTIO_BLK_S_IOERR, "not whole sectors");
    assert_eq!(r.request(VIRTIO_BLK_T_GET_LIFETIME, 0, &[], 16).0, VIRTIO_BLK_S_UNSUPP);
    assert_eq!(r.request(0xDEAD, 0, &[], 0).0, VIRTIO_BLK_S_UNSUPP);
    assert_eq!(r.request(VIRTIO_BLK_T_SECURE_ERASE, 0, &[0; 16], 0).0, VIRTIO_BLK_S_UNSUPP);
    // A header too short to read.
    r.dma.write(STATUS, &[0xAA]).unwrap();
    assert_eq!(r.submit(&[(HDR, 8, false), (STATUS, 1, true)]), 1);
    assert_eq!(r.status(), VIRTIO_BLK_S_IOERR);
    // No writable byte at all: nothing can be answered.
    assert_eq!(r.submit(&[(HDR, 16, false)]), 0);
    // Data outside guest RAM.
    r.dma.write(HDR, &header(VIRTIO_BLK_T_IN, 0)).unwrap();
    assert_eq!(r.submit(&[(HDR, 16, false), (RAM - 256, 512, true), (STATUS, 1, true)]), 1, "only the status reached the guest");
    assert_eq!(r.status(), VIRTIO_BLK_S_IOERR);
    r.dma.write(HDR, &header(VIRTIO_BLK_T_OUT, 0)).unwrap();
    r.submit(&[(HDR, 16, false), (u64::MAX - 100, 512, false), (STATUS, 1, true)]);
    assert_eq!(r.status(), VIRTIO_BLK_S_IOERR);
    assert_eq!(r.disk.contents(), before, "no failed request changed the disk");
    assert!(r.dev.stats().failed >= 10);
}

#[test]
fn read_only_disk() {
    let mut r = rig_with(MemDisk::new(vec![7; 8192], true), VirtioBlkOptions::default(), VIRTIO_F_VERSION_1);
    assert_ne!(r.dev.device_features() & VIRTIO_BLK_F_RO, 0);
    assert_eq!(r.request(VIRTIO_BLK_T_OUT, 0, &[1; 512], 0).0, VIRTIO_BLK_S_IOERR);
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, &[], 512).0, VIRTIO_BLK_S_OK);
    assert_eq!(r.disk.contents(), vec![7; 8192]);
}

fn segment(sector: u64, sectors: u32, flags: u32) -> Vec<u8> {
    let mut s = sector.to_le_bytes().to_vec();
    s.extend(sectors.to_le_bytes());
    s.extend(flags.to_le_bytes());
    s
}

#[test]
fn discard_and_write_zeroes() {
    let mut r = rig();
    let before = r.disk.contents();
    assert_eq!(r.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &segment(10, 4, 0), 0).0, VIRTIO_BLK_S_OK);
    assert!(r.disk.contents()[10 * 512..14 * 512].iter().all(|&b| b == 0));
    assert_eq!(r.disk.contents()[9 * 512..10 * 512], before[9 * 512..10 * 512]);
    assert_eq!(r.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &segment(20, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP), 0).0, VIRTIO_BLK_S_OK);
    // MemDisk ignores discards (the contents are then unspecified, here unchanged).
    assert_eq!(r.request(VIRTIO_BLK_T_DISCARD, 0, &segment(30, 8, 0), 0).0, VIRTIO_BLK_S_OK);
    assert_eq!(r.request(VIRTIO_BLK_T_DISCARD, 0, &segment(30, 8, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP), 0).0, VIRTIO_BLK_S_UNSUPP);
    assert_eq!(r.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &segment(0, 1, 0x80), 0).0, VIRTIO_BLK_S_UNSUPP);
    let mut two = segment(0, 1, 0);
    two.extend(segment(4, 1, 0));
    assert_eq!(r.request(VIRTIO_BLK_T_DISCARD, 0, &two, 0).0, VIRTIO_BLK_S_IOERR, "more than max_discard_seg");
    assert_eq!(r.request(VIRTIO_BLK_T_DISCARD, 0, &segment(2047, 2, 0), 0).0, VIRTIO_BLK_S_IOERR, "past the end");
    assert_eq!(r.request(VIRTIO_BLK_T_DISCARD, 0, &segment(0, MAX_DISCARD_SECTORS + 1, 0), 0).0, VIRTIO_BLK_S_IOERR);
    assert_eq!(r.request(VIRTIO_BLK_T_DISCARD, 0, &segment(0, 1, 0)[..10], 0).0, VIRTIO_BLK_S_IOERR, "partial segment");
    let s = r.dev.stats();
    assert_eq!((s.discards, s.write_zeroes), (6, 3));
}

#[test]
fn writeback_field_follows_the_driver_and_reset() {
    let mut r = rig();
    r.dev.write_config(32, &[0]);
    let mut c = [0u8; 1];
    r.dev.read_config(32, &mut c);
    assert_eq!(c[0], 0);
    // Writethrough still completes writes.
    assert_eq!(r.request(VIRTIO_BLK_T_OUT, 1, &[5; 512], 0).0, VIRTIO_BLK_S_OK);
    r.dev.write_config(0, &[0xFF; 8]);
    r.dev.read_config(0, &mut c);
    assert_ne!(c[0], 0xFF, "capacity is read-only");
    r.dev.reset();
    r.dev.read_config(32, &mut c);
    assert_eq!(c[0], 1);
}

#[test]
fn every_queue_serves_requests() {
    let opts = VirtioBlkOptions { num_queues: 3, ..Default::default() };
    let mut r = rig_with(MemDisk::new(vec![0; 65536], false), opts, VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX);
    assert_ne!(r.dev.device_features() & VIRTIO_BLK_F_MQ, 0);
    for q in 0..3u16 {
        let h = HDR + 0x100 * u64::from(q);
        let d = DATA + 0x1000 * u64::from(q);
        r.dma.write(h, &header(VIRTIO_BLK_T_OUT, u64::from(q))).unwrap();
        r.dma.write(d, &[q as u8 + 1; 512]).unwrap();
        assert_eq!(r.submit_on(q, &[(h, 16, false), (d, 512, false), (STATUS + u64::from(q), 1, true)]), 1);
    }
    let c = r.disk.contents();
    for q in 0..3usize {
        assert!(c[q * 512..(q + 1) * 512].iter().all(|&b| b == q as u8 + 1));
    }
}

#[test]
fn random_requests_never_panic_or_hang() {
    let mut rng = XorShift(0xB10C_0000_1234_5678);
    let mut r = rig();
    for _ in 0..400 {
        let kind = [0, 1, 4, 8, 11, 13, 14, rng.next() as u32][(rng.next() % 8) as usize];
        let mut h = header(kind, rng.next() % 4096);
        if rng.next() % 4 == 0 {
            h = (rng.next() as u128).to_le_bytes();
        }
        r.dma.write(HDR, &h).unwrap();
        let n = 1 + rng.next() % 6;
        let mut bufs = Vec::new();
        let mut writable = false;
        for _ in 0..n {
            writable |= rng.next() % 3 == 0;
            let addr = match rng.next() % 5 {
                0 => rng.next(),
                1 => RAM - rng.next() % 1024,
                _ => DATA + rng.next() % 0x10000,
            };
            bufs.push((addr, (rng.next() % 5000) as u32, writable));
        }
        if rng.next() % 2 == 0 {
            bufs.insert(0, (HDR, 16, false));
        }
        let len = r.submit(&bufs);
        let writable_len: u64 = bufs.iter().filter(|b| b.2).map(|b| u64::from(b.1)).sum();
        assert!(u64::from(len) <= writable_len);
    }
}

#[test]
fn reset_stops_the_workers_and_activation_starts_again() {
    let mut r = rig();
    r.dev.reset();
    // A kick after reset reaches no worker and nothing breaks.
    r.dev.queue_notify(0);
    r.dev.queue_notify(7);
    r.dev.quiesce();
}

#[test]
fn the_write_cache_mode_is_saved_and_another_disk_refused() {
    use ferrite_persist::{load, save};
    let opts = VirtioBlkOptions::default();
    let mut a = VirtioBlk::new(Arc::new(MemDisk::new(vec![0; 4096], false)), &opts).unwrap();
    let wb = writeback_offset();
    a.write_config(wb, &[0]);
    let saved = save(&a, "vda");
    let mut b = VirtioBlk::new(Arc::new(MemDisk::new(vec![0; 4096], false)), &opts).unwrap();
    b.write_config(wb, &[1]);
    load(&mut b, &saved).unwrap();
    let (mut ca, mut cb) = ([0u8; 1], [0u8; 1]);
    a.read_config(wb, &mut ca);
    b.read_config(wb, &mut cb);
    assert_eq!((ca, cb), ([0], [0]));
    let mut other = VirtioBlk::new(Arc::new(MemDisk::new(vec![0; 8192], false)), &opts).unwrap();
    assert!(load(&mut other, &saved).unwrap_err().to_string().contains("capacity_bytes"));
}
