//! The transport and virtio-rng driven the way Linux's virtio_pci_modern and
//! virtio_pci_legacy drivers drive them: capability discovery by walking the PCI capability
//! list, status handshake, feature negotiation, queue setup, notifications, interrupts through
//! INTx + ISR and MSI-X; plus abuse.

use super::interrupt::VIRTIO_MSI_NO_VECTOR;
use super::pci::*;
use super::queue::*;
use super::queue_tests::{GuestRing, Rng};
use super::*;
use crate::pci::{
    PciDevice, MSIX_CTRL_ENABLE, MSIX_CTRL_FUNCTION_MASK, PCI_CAPABILITY_LIST, PCI_CAP_ID_MSIX, PCI_COMMAND,
    PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_IO, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, PCI_STATUS,
    PCI_STATUS_INTERRUPT,
};
use crate::testing::TestLink;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

const RAM: u64 = super::queue_tests::RAM;
const RING0: u64 = 0x1_0000;
const RING1: u64 = 0x2_0000;
const BUFS: u64 = 0x10_0000;
const MSI_ADDR: u64 = 0xFEE0_0000;

/// Bytes 0, 1, 2, ... so tests can check exactly what reached the guest.
struct Counter(u8);

impl EntropySource for Counter {
    fn fill(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        for b in buf {
            *b = self.0;
            self.0 = self.0.wrapping_add(1);
        }
        Ok(())
    }
}

/// The virtio structures a driver found in configuration space.
#[derive(Debug, Default)]
struct Caps {
    common: Option<u64>,
    isr: Option<u64>,
    device: Option<(u64, u32)>,
    notify: Option<(u64, u32)>,
    pci_cfg: Option<u8>,
    msix: Option<u8>,
}

/// A test driver around one transport (device tests use it to go through the transport).
pub(super) struct Drv<D: VirtioDevice + 'static> {
    pub(super) dev: VirtioPci<D>,
    pub(super) t: TestLink,
    caps: Caps,
}

fn rng_with(opts: VirtioPciOptions) -> Drv<VirtioRng> {
    Drv::new(VirtioRng::with_source(Box::new(Counter(0))), opts)
}

fn rng() -> Drv<VirtioRng> {
    rng_with(VirtioPciOptions::default())
}

impl<D: VirtioDevice + 'static> Drv<D> {
    pub(super) fn new(device: D, opts: VirtioPciOptions) -> Self {
        let t = TestLink::new(RAM);
        let mut dev = VirtioPci::new(device, opts).unwrap();
        dev.attach(t.link());
        let mut d = Drv { dev, t, caps: Caps::default() };
        let cmd = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
        d.dev.config_write(PCI_COMMAND as u8, 2, u32::from(cmd));
        d.find_caps();
        d
    }

    fn cfg(&mut self, off: u8, size: u8) -> u32 {
        self.dev.config_read(off, size)
    }

    /// Walks the capability list as virtio_pci_find_capability does.
    fn find_caps(&mut self) {
        self.caps = Caps::default();
        assert_ne!(self.cfg(PCI_STATUS as u8, 2) & 0x10, 0, "capability list");
        let mut p = self.cfg(PCI_CAPABILITY_LIST as u8, 1) as u8;
        let mut seen = 0;
        while p != 0 {
            seen += 1;
            assert!(seen < 48, "capability list loops");
            let id = self.cfg(p, 1) as u8;
            if id == PCI_CAP_ID_MSIX {
                self.caps.msix.get_or_insert(p);
            } else if id == PCI_CAP_ID_VNDR {
                let cfg_type = self.cfg(p + 3, 1) as u8;
                let bar = self.cfg(p + 4, 1) as usize;
                let offset = u64::from(self.cfg(p + 8, 4));
                let length = self.cfg(p + 12, 4);
                if cfg_type != VIRTIO_PCI_CAP_PCI_CFG {
                    assert_eq!(bar, MODERN_BAR);
                }
                match cfg_type {
                    VIRTIO_PCI_CAP_COMMON_CFG => {
                        self.caps.common.get_or_insert(offset);
                    }
                    VIRTIO_PCI_CAP_ISR_CFG => {
                        self.caps.isr.get_or_insert(offset);
                    }
                    VIRTIO_PCI_CAP_DEVICE_CFG => {
                        self.caps.device.get_or_insert((offset, length));
                    }
                    VIRTIO_PCI_CAP_NOTIFY_CFG => {
                        let mult = self.cfg(p + 16, 4);
                        self.caps.notify.get_or_insert((offset, mult));
                    }
                    VIRTIO_PCI_CAP_PCI_CFG => {
                        self.caps.pci_cfg.get_or_insert(p);
                    }
                    t => panic!("unknown cfg_type {t}"),
                }
            }
            p = self.cfg(p + 1, 1) as u8;
        }
    }

    fn r(&mut self, bar: usize, off: u64, size: usize) -> u64 {
        let mut b = [0u8; 8];
        self.dev.bar_read(bar, off, &mut b[..size]);
        u64::from_le_bytes(b)
    }

    fn w(&mut self, bar: usize, off: u64, size: usize, v: u64) {
        self.dev.bar_write(bar, off, &v.to_le_bytes()[..size]);
    }

    fn cr(&mut self, off: u64, size: usize) -> u64 {
        let base = self.caps.common.expect("common cap");
        self.r(MODERN_BAR, base + off, size)
    }

    fn cw(&mut self, off: u64, size: usize, v: u64) {
        let base = self.caps.common.expect("common cap");
        self.w(MODERN_BAR, base + off, size, v)
    }

    fn status(&mut self) -> u8 {
        self.cr(COMMON_STATUS, 1) as u8
    }

    pub(super) fn add_status(&mut self, bits: u8) {
        let s = self.status();
        self.cw(COMMON_STATUS, 1, u64::from(s | bits));
    }

    fn reset(&mut self) {
        self.cw(COMMON_STATUS, 1, 0);
        assert_eq!(self.status(), 0);
    }

    fn device_features(&mut self) -> u64 {
        self.cw(COMMON_DFSELECT, 4, 0);
        let lo = self.cr(COMMON_DF, 4);
        self.cw(COMMON_DFSELECT, 4, 1);
        let hi = self.cr(COMMON_DF, 4);
        lo | hi << 32
    }

    fn write_features(&mut self, f: u64) {
        self.cw(COMMON_GFSELECT, 4, 0);
        self.cw(COMMON_GF, 4, f & 0xFFFF_FFFF);
        self.cw(COMMON_GFSELECT, 4, 1);
        self.cw(COMMON_GF, 4, f >> 32);
    }

    /// Reset, ACKNOWLEDGE, DRIVER, accept `offered & want`, FEATURES_OK; returns the features.
    pub(super) fn negotiate(&mut self, want: u64) -> u64 {
        self.reset();
        self.add_status(STATUS_ACKNOWLEDGE);
        self.add_status(STATUS_DRIVER);
        let f = self.device_features() & want;
        self.write_features(f);
        self.add_status(STATUS_FEATURES_OK);
        assert_ne!(self.status() & STATUS_FEATURES_OK, 0, "features accepted");
        f
    }

    /// Sets up queue `q` with `size` entries at `base` (desc, avail, used 4 KiB apart),
    /// vector `vector`; returns the driver's view of it.
    pub(super) fn setup_queue(&mut self, q: u16, size: u16, base: u64, vector: u16) -> GuestRing {
        self.cw(COMMON_Q_SELECT, 2, u64::from(q));
        assert_eq!(self.cr(COMMON_Q_ENABLE, 2), 0, "not enabled yet");
        let max = self.cr(COMMON_Q_SIZE, 2) as u16;
        assert!(max >= size && max > 0);
        self.cw(COMMON_Q_SIZE, 2, u64::from(size));
        let ring = GuestRing::new(self.t.link().dma, size, base, base + 0x1000, base + 0x2000);
        for (lo, addr) in [(COMMON_Q_DESCLO, ring.desc), (COMMON_Q_AVAILLO, ring.avail), (COMMON_Q_USEDLO, ring.used)] {
            self.cw(lo, 4, addr & 0xFFFF_FFFF);
            self.cw(lo + 4, 4, addr >> 32);
        }
        self.cw(COMMON_Q_MSIX, 2, u64::from(vector));
        assert_eq!(self.cr(COMMON_Q_MSIX, 2) as u16, vector, "vector mapped");
        self.cw(COMMON_Q_ENABLE, 2, 1);
        ring
    }

    pub(super) fn notify(&mut self, q: u16) {
        self.cw(COMMON_Q_SELECT, 2, u64::from(q));
        let off = self.cr(COMMON_Q_NOFF, 2);
        let (base, mult) = self.caps.notify.expect("notify cap");
        self.w(MODERN_BAR, base + off * u64::from(mult), 2, u64::from(q));
    }

    fn isr(&mut self) -> u8 {
        let off = self.caps.isr.expect("isr cap");
        self.r(MODERN_BAR, off, 1) as u8
    }

    fn mem(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.t.mem.read(addr, &mut b).unwrap();
        b
    }

    /// Enables MSI-X with vector `i` -> (MSI_ADDR, 0x40 + i), all unmasked.
    fn enable_msix(&mut self) {
        let cap = self.caps.msix.expect("MSI-X cap");
        let n = (self.cfg(cap + 2, 2) & 0x7FF) + 1;
        for i in 0..u64::from(n) {
            self.w(MSIX_BAR, 16 * i, 4, MSI_ADDR);
            self.w(MSIX_BAR, 16 * i + 4, 4, 0);
            self.w(MSIX_BAR, 16 * i + 8, 4, 0x40 + i);
            self.w(MSIX_BAR, 16 * i + 12, 4, 0);
        }
        self.dev.config_write(cap + 2, 2, u32::from(MSIX_CTRL_ENABLE));
    }

    fn intx_status(&mut self) -> bool {
        self.cfg(PCI_STATUS as u8, 2) & u32::from(PCI_STATUS_INTERRUPT) != 0
    }
}

pub(super) const RING_FEATURES: u64 = VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX;

/// A device of any type with `n` queues and an 8-byte configuration, doing nothing.
struct Dummy {
    ty: u16,
    sizes: Vec<u16>,
}

impl VirtioDevice for Dummy {
    fn device_type(&self) -> u16 {
        self.ty
    }
    fn device_features(&self) -> u64 {
        // Device bits, a transport bit it must not be able to offer, and a high device bit.
        1 << 5 | VIRTIO_F_RING_PACKED | 1 << 50
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.sizes
    }
    fn config_len(&self) -> usize {
        8
    }
    fn activate(&mut self, _ctx: ActivateContext) -> Result<(), ActivateError> {
        Ok(())
    }
    fn queue_notify(&mut self, _index: u16) {}
    fn reset(&mut self) {}
}

#[test]
fn pci_identity() {
    let mut d = rng();
    assert_eq!(d.cfg(0, 4), 0x1005_1AF4, "transitional entropy device");
    assert_eq!(d.cfg(8, 1), 0, "transitional revision 0");
    assert_eq!(d.cfg(0x2C, 4), 0x0004_1AF4, "subsystem = device type");
    assert_eq!(d.cfg(8, 4) >> 8, 0x00_FF_00, "class: unclassified/other");
    assert_eq!(d.cfg(0x3D, 1), 1, "INTA");
    // BAR sizing.
    for (bar, want) in [(0u8, 0xFFFF_FFE1u32), (1, 0xFFFF_F000), (4, 0xFFFF_C00C), (5, 0xFFFF_FFFF)] {
        d.dev.config_write(0x10 + 4 * bar, 4, 0xFFFF_FFFF);
        assert_eq!(d.cfg(0x10 + 4 * bar, 4), want, "BAR{bar}");
    }
    assert_eq!(d.cfg(0x18, 4), 0, "no BAR2");

    let mut d = rng_with(VirtioPciOptions { disable_legacy: true, ..Default::default() });
    assert_eq!(d.cfg(0, 4), 0x1044_1AF4, "modern-only: 0x1040 + 4");
    assert_eq!(d.cfg(8, 1), 1);
    assert_eq!(d.cfg(0x2C, 4), 0x1100_1AF4);
    assert_eq!(d.cfg(0x10, 4), 0, "no legacy BAR0");

    let mut d = rng_with(VirtioPciOptions { disable_modern: true, ..Default::default() });
    assert_eq!(d.cfg(0, 4), 0x1005_1AF4);
    assert_eq!((d.caps.common, d.caps.msix.is_some()), (None, true), "legacy-only: MSI-X only");
    assert_eq!(d.cfg(0x20, 4), 0, "no BAR4");

    let mut blk = Drv::new(Dummy { ty: VIRTIO_ID_BLOCK, sizes: vec![128] }, VirtioPciOptions::default());
    assert_eq!(blk.cfg(0, 4), 0x1001_1AF4);
    assert_eq!(blk.cfg(8, 4) >> 8, 0x01_00_00);
    let mut net = Drv::new(Dummy { ty: VIRTIO_ID_NET, sizes: vec![256; 3] }, VirtioPciOptions::default());
    assert_eq!(net.cfg(0, 4), 0x1000_1AF4);
    assert_eq!(net.cfg(0x2E, 2), 1);
    assert_eq!((net.cfg(net.caps.msix.unwrap() + 2, 2) & 0x7FF) + 1, 4, "queues + 1 vectors");

    let err = |ty, opts| VirtioPci::new(Dummy { ty, sizes: vec![8] }, opts).err().unwrap();
    let both = VirtioPciOptions { disable_legacy: true, disable_modern: true, msix_vectors: None, packed: false };
    assert!(matches!(err(4, both), VirtioPciError::NoInterface));
    assert!(matches!(err(16, VirtioPciOptions::default()), VirtioPciError::NoTransitionalId(16)));
    let gpu = VirtioPci::new(Dummy { ty: 16, sizes: vec![8] }, VirtioPciOptions { disable_legacy: true, ..Default::default() });
    assert_eq!(gpu.unwrap().config().u16(2), 0x1050);
    for sizes in [vec![], vec![3], vec![0], vec![8; MAX_QUEUES + 1]] {
        assert!(VirtioPci::new(Dummy { ty: 4, sizes }, VirtioPciOptions::default()).is_err());
    }
}

#[test]
fn capabilities_as_linux_finds_them() {
    let mut d = rng();
    assert_eq!(d.caps.common, Some(COMMON_CFG_OFFSET));
    assert_eq!(d.caps.isr, Some(ISR_CFG_OFFSET));
    assert_eq!(d.caps.device, None, "entropy device has no configuration");
    assert_eq!(d.caps.notify, Some((NOTIFY_CFG_OFFSET, 4)));
    assert_eq!(d.caps.pci_cfg, Some(CAP_PCI_CFG));
    assert_eq!(d.caps.msix, Some(CAP_MSIX));
    assert_eq!(d.cfg(CAP_COMMON + 2, 1), 16, "cap_len");
    assert_eq!(d.cfg(CAP_NOTIFY + 2, 1), 20);
    assert_eq!(d.cfg(CAP_PCI_CFG + 2, 1), 20);
    assert!(d.cfg(CAP_COMMON + 12, 4) as u64 >= 0x38, "common length covers the structure");
    // MSI-X: 2 vectors, table in BAR1 at 0, PBA in BAR1 at 0x800.
    assert_eq!(d.cfg(CAP_MSIX + 2, 2), 1);
    assert_eq!(d.cfg(CAP_MSIX + 4, 4), 1);
    assert_eq!(d.cfg(CAP_MSIX + 8, 4), 0x801);
    // The capability fields are read-only to the driver (except the PCI cfg window).
    d.dev.config_write(CAP_NOTIFY + 8, 4, 0x1234);
    d.dev.config_write(CAP_NOTIFY + 16, 4, 0);
    assert_eq!(d.cfg(CAP_NOTIFY + 8, 4) as u64, NOTIFY_CFG_OFFSET);
    assert_eq!(d.cfg(CAP_NOTIFY + 16, 4), 4);

    let d = Drv::new(Dummy { ty: VIRTIO_ID_CONSOLE, sizes: vec![32; 4] }, VirtioPciOptions::default());
    assert_eq!(d.caps.device, Some((DEVICE_CFG_OFFSET, 8)));
}

#[test]
fn modern_driver_gets_random_bytes_over_intx() {
    let mut d = rng();
    let f = d.negotiate(RING_FEATURES);
    assert_eq!(f, RING_FEATURES, "rng offers exactly the ring features and VERSION_1");
    assert_eq!(d.cr(COMMON_NUMQ, 2), 1);
    let mut ring = d.setup_queue(0, 4, RING0, VIRTIO_MSI_NO_VECTOR);
    d.add_status(STATUS_DRIVER_OK);
    assert_eq!(d.status(), STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    assert!(d.dev.is_activated());
    // 16 bytes; 100 bytes over two buffers; 100 KiB (capped at 64 KiB).
    ring.set_desc(0, BUFS, 16, VIRTQ_DESC_F_WRITE, 0);
    ring.set_desc(1, BUFS + 0x100, 60, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
    ring.set_desc(2, BUFS + 0x200, 40, VIRTQ_DESC_F_WRITE, 0);
    ring.set_desc(3, BUFS + 0x1_0000, 100 * 1024, VIRTQ_DESC_F_WRITE, 0);
    for h in [0, 1, 3] {
        ring.push(h);
    }
    assert!(!d.t.line.level());
    d.notify(0);
    assert_eq!(ring.take_used(), vec![(0, 16), (1, 100), (3, 64 * 1024)]);
    let first: Vec<u8> = (0..16).collect();
    assert_eq!(d.mem(BUFS, 16), first);
    let second: Vec<u8> = (16..116).collect();
    assert_eq!([d.mem(BUFS + 0x100, 60), d.mem(BUFS + 0x200, 40)].concat(), second);
    assert_eq!(d.mem(BUFS + 0x1_0000 + 64 * 1024, 4), [0; 4], "nothing past 64 KiB");
    // INTx with ISR bit 0, read-to-clear.
    assert!(d.t.line.level());
    assert!(d.intx_status(), "PCI status interrupt bit");
    assert_eq!(d.isr(), 1);
    assert!(!d.t.line.level());
    assert!(!d.intx_status());
    assert_eq!(d.isr(), 0);
    // Interrupt Disable masks the pin, not the state.
    ring.push(0);
    d.dev.config_write(PCI_COMMAND as u8, 2, u32::from(PCI_COMMAND_MEMORY | PCI_COMMAND_INTX_DISABLE));
    d.notify(0);
    assert!(!d.t.line.level());
    assert!(d.intx_status());
    d.dev.config_write(PCI_COMMAND as u8, 2, u32::from(PCI_COMMAND_MEMORY));
    assert!(d.t.line.level());
    assert_eq!(d.isr(), 1);
    assert_eq!(ring.take_used(), vec![(0, 16)]);
}

#[test]
fn host_entropy_is_not_constant() {
    let mut d = Drv::new(VirtioRng::new().unwrap(), VirtioPciOptions::default());
    d.negotiate(RING_FEATURES);
    let mut ring = d.setup_queue(0, 8, RING0, VIRTIO_MSI_NO_VECTOR);
    d.add_status(STATUS_DRIVER_OK);
    ring.set_desc(0, BUFS, 256, VIRTQ_DESC_F_WRITE, 0);
    ring.push(0);
    d.notify(0);
    assert_eq!(ring.take_used(), vec![(0, 256)]);
    let bytes = d.mem(BUFS, 256);
    let distinct = bytes.iter().collect::<std::collections::HashSet<_>>().len();
    assert!(distinct > 100, "256 random bytes take many values, got {distinct}");
}

#[test]
fn msix_vectors_for_queue_and_config() {
    let mut d = rng();
    d.enable_msix();
    assert!(!d.t.line.level());
    d.negotiate(RING_FEATURES);
    // Vector 5 does not exist: the mapping fails and reads back NO_VECTOR.
    d.cw(COMMON_MSIX, 2, 5);
    assert_eq!(d.cr(COMMON_MSIX, 2) as u16, VIRTIO_MSI_NO_VECTOR);
    d.cw(COMMON_MSIX, 2, 0);
    assert_eq!(d.cr(COMMON_MSIX, 2), 0);
    let mut ring = d.setup_queue(0, 8, RING0, 1);
    d.add_status(STATUS_DRIVER_OK);
    ring.set_desc(0, BUFS, 8, VIRTQ_DESC_F_WRITE, 0);
    ring.push(0);
    d.notify(0);
    assert_eq!(ring.take_used(), vec![(0, 8)]);
    assert_eq!(d.t.msi.take(), vec![(MSI_ADDR, 0x41)], "queue vector 1");
    assert!(!d.t.line.level(), "no INTx with MSI-X");
    assert_eq!(d.isr(), 0, "ISR unused for queues with MSI-X");
    // A masked vector is held pending and sent when unmasked.
    d.w(MSIX_BAR, 16 + 12, 4, 1);
    ring.push(0);
    d.notify(0);
    assert!(d.t.msi.take().is_empty());
    assert_eq!(d.r(MSIX_BAR, 0x800, 8), 0b10, "PBA bit 1");
    d.w(MSIX_BAR, 16 + 12, 4, 0);
    assert_eq!(d.t.msi.take(), vec![(MSI_ADDR, 0x41)]);
    assert_eq!(ring.take_used().len(), 1);
    // The function mask likewise.
    let cap = d.caps.msix.unwrap();
    d.dev.config_write(cap + 2, 2, u32::from(MSIX_CTRL_ENABLE | MSIX_CTRL_FUNCTION_MASK));
    ring.push(0);
    d.notify(0);
    assert!(d.t.msi.take().is_empty());
    d.dev.config_write(cap + 2, 2, u32::from(MSIX_CTRL_ENABLE));
    assert_eq!(d.t.msi.take(), vec![(MSI_ADDR, 0x41)]);
    assert_eq!(ring.take_used().len(), 1);
    // Unmapped queue vector: no interrupt at all.
    d.cw(COMMON_Q_SELECT, 2, 0);
    d.cw(COMMON_Q_MSIX, 2, u64::from(VIRTIO_MSI_NO_VECTOR));
    ring.push(0);
    d.notify(0);
    assert_eq!(ring.take_used().len(), 1);
    assert!(d.t.msi.take().is_empty());
    assert!(!d.t.line.level());
}

#[test]
fn legacy_driver_over_the_io_bar() {
    let mut d = rng();
    let io = LEGACY_BAR;
    d.w(io, LEGACY_STATUS, 1, 0);
    assert_eq!(d.r(io, LEGACY_STATUS, 1), 0);
    d.w(io, LEGACY_STATUS, 1, u64::from(STATUS_ACKNOWLEDGE));
    d.w(io, LEGACY_STATUS, 1, u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER));
    let host = d.r(io, LEGACY_HOST_FEATURES, 4);
    assert_eq!(host, VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX, "bits 0-31 only");
    d.w(io, LEGACY_GUEST_FEATURES, 4, VIRTIO_F_INDIRECT_DESC | 1 << 3);
    assert_eq!(d.r(io, LEGACY_GUEST_FEATURES, 4), VIRTIO_F_INDIRECT_DESC, "unoffered bit dropped");
    d.w(io, LEGACY_QUEUE_SEL, 2, 0);
    let size = d.r(io, LEGACY_QUEUE_NUM, 2) as u16;
    assert_eq!(size, RNG_QUEUE_SIZE_FOR_TESTS);
    let mut ring = GuestRing::legacy(d.t.link().dma, size, RING0);
    assert_eq!(ring.used, RING0 + 0x1000, "legacy layout");
    d.w(io, LEGACY_QUEUE_PFN, 4, RING0 >> 12);
    assert_eq!(d.r(io, LEGACY_QUEUE_PFN, 4), RING0 >> 12);
    d.w(io, LEGACY_QUEUE_SEL, 2, 1);
    assert_eq!(d.r(io, LEGACY_QUEUE_NUM, 2), 0, "no queue 1");
    // A legacy driver may post and notify before DRIVER_OK: served at activation.
    ring.set_desc(5, BUFS, 32, VIRTQ_DESC_F_WRITE, 0);
    ring.push(5);
    d.w(io, LEGACY_QUEUE_NOTIFY, 2, 0);
    assert_eq!(ring.used_idx(), 0);
    d.w(io, LEGACY_STATUS, 1, u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK));
    assert!(d.dev.is_activated());
    assert_eq!(d.dev.driver_features(), VIRTIO_F_INDIRECT_DESC);
    assert_eq!(ring.take_used(), vec![(5, 32)]);
    assert!(d.t.line.level());
    assert_eq!(d.r(io, LEGACY_ISR, 1), 1);
    assert!(!d.t.line.level());
    assert_eq!(d.r(io, LEGACY_ISR, 1), 0, "read-to-clear");
    ring.push(5);
    d.w(io, LEGACY_QUEUE_NOTIFY, 2, 0);
    assert_eq!(ring.take_used(), vec![(5, 32)]);
    assert_eq!((0..32).collect::<Vec<u8>>(), d.mem(BUFS, 32).iter().map(|b| b - 32).collect::<Vec<_>>());
    // Guest features are frozen once running.
    d.w(io, LEGACY_GUEST_FEATURES, 4, 0);
    assert_eq!(d.r(io, LEGACY_GUEST_FEATURES, 4), VIRTIO_F_INDIRECT_DESC);
    // Reset through the legacy interface.
    d.w(io, LEGACY_STATUS, 1, 0);
    assert_eq!(d.r(io, LEGACY_STATUS, 1), 0);
    assert_eq!(d.r(io, LEGACY_QUEUE_PFN, 4), 0);
    assert!(!d.dev.is_activated());
}

const RNG_QUEUE_SIZE_FOR_TESTS: u16 = super::rng::RNG_QUEUE_SIZE;

#[test]
fn legacy_msix_moves_the_device_configuration() {
    let mut d = Drv::new(Echo::new(), VirtioPciOptions::default());
    let io = LEGACY_BAR;
    assert_eq!(d.r(io, LEGACY_CONFIG, 4), 0x1234_5678, "config at 20 without MSI-X");
    assert_eq!(d.r(io, LEGACY_CONFIG + 1, 2), 0x3456, "any width");
    d.enable_msix();
    assert_eq!(d.r(io, LEGACY_CONFIG_MSIX, 4), 0x1234_5678, "config at 24 with MSI-X");
    d.w(io, LEGACY_CONFIG_VECTOR, 2, 0);
    d.w(io, LEGACY_QUEUE_SEL, 2, 1);
    d.w(io, LEGACY_QUEUE_VECTOR, 2, 2);
    d.w(io, LEGACY_QUEUE_SEL, 2, 0);
    d.w(io, LEGACY_QUEUE_VECTOR, 2, 7);
    assert_eq!(d.r(io, LEGACY_CONFIG_VECTOR, 2), 0);
    assert_eq!(d.r(io, LEGACY_QUEUE_VECTOR, 2), u64::from(VIRTIO_MSI_NO_VECTOR), "only 3 vectors");
    d.w(io, LEGACY_QUEUE_SEL, 2, 1);
    assert_eq!(d.r(io, LEGACY_QUEUE_VECTOR, 2), 2);
    d.w(io, LEGACY_CONFIG_MSIX + 4, 4, 0xAABB_CCDD);
    assert_eq!(d.r(io, LEGACY_CONFIG_MSIX + 4, 4), 0xAABB_CCDD);
    let dev_base = d.caps.device.unwrap().0;
    assert_eq!(d.r(MODERN_BAR, dev_base + 4, 4), 0xAABB_CCDD, "same config through BAR4");
}

#[test]
fn event_idx_through_the_transport() {
    let mut d = rng();
    d.negotiate(RING_FEATURES);
    let mut ring = d.setup_queue(0, 8, RING0, VIRTIO_MSI_NO_VECTOR);
    d.add_status(STATUS_DRIVER_OK);
    ring.set_desc(0, BUFS, 4, VIRTQ_DESC_F_WRITE, 0);
    ring.set_used_event(1);
    let mut irqs = Vec::new();
    for _ in 0..4 {
        ring.push(0);
        d.notify(0);
        irqs.push(d.isr());
        assert_eq!(ring.avail_event(), ring.avail_idx, "asks for a kick on the next buffer");
    }
    assert_eq!(irqs, vec![0, 1, 0, 0], "only when used idx passes used_event");
    assert_eq!(ring.take_used().len(), 4);
}

#[test]
fn feature_negotiation_rules() {
    let mut d = Drv::new(Dummy { ty: VIRTIO_ID_CONSOLE, sizes: vec![16; 2] }, VirtioPciOptions::default());
    d.reset();
    let offered = d.device_features();
    assert_eq!(offered, 1 << 5 | 1 << 50 | RING_FEATURES, "no packed ring, transport bits added");
    d.cw(COMMON_DFSELECT, 4, 2);
    assert_eq!(d.cr(COMMON_DF, 4), 0);
    d.add_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    // Unoffered bits are dropped; without VERSION_1 FEATURES_OK is refused.
    d.write_features(1 << 5 | 1 << 7 | VIRTIO_F_RING_PACKED);
    d.cw(COMMON_GFSELECT, 4, 0);
    assert_eq!(d.cr(COMMON_GF, 4), 1 << 5);
    d.add_status(STATUS_FEATURES_OK);
    assert_eq!(d.status() & STATUS_FEATURES_OK, 0);
    d.write_features(1 << 5 | VIRTIO_F_VERSION_1);
    d.add_status(STATUS_FEATURES_OK);
    assert_ne!(d.status() & STATUS_FEATURES_OK, 0);
    // Frozen after FEATURES_OK.
    d.write_features(RING_FEATURES);
    assert_eq!(d.dev.driver_features(), 1 << 5 | VIRTIO_F_VERSION_1);
    // Status bits are not cleared by writes other than 0.
    d.cw(COMMON_STATUS, 1, u64::from(STATUS_ACKNOWLEDGE));
    assert_ne!(d.status() & STATUS_FEATURES_OK, 0);

    // A modern DRIVER_OK without FEATURES_OK: the device needs a reset.
    d.reset();
    d.add_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    d.add_status(STATUS_DRIVER_OK);
    assert!(!d.dev.is_activated());
    assert_ne!(d.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    assert_eq!(d.isr(), 2, "config change interrupt");
    // The driver cannot set DEVICE_NEEDS_RESET itself.
    d.reset();
    d.add_status(STATUS_DEVICE_NEEDS_RESET);
    assert_eq!(d.status(), 0);

    // Modern-only devices refuse a legacy DRIVER_OK (there is no legacy BAR anyway).
    let mut d = rng_with(VirtioPciOptions { disable_legacy: true, ..Default::default() });
    d.w(LEGACY_BAR, LEGACY_STATUS, 1, 7);
    assert_eq!(d.status(), 0);
}

#[test]
fn activation_failure_needs_reset() {
    let mut d = rng();
    d.negotiate(RING_FEATURES);
    // The request queue is never enabled.
    d.add_status(STATUS_DRIVER_OK);
    assert!(!d.dev.is_activated());
    assert_ne!(d.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    assert!(d.t.line.level());
    assert_eq!(d.isr(), 2);
    d.reset();
    assert!(!d.t.line.level());
}

#[test]
fn malformed_ring_needs_reset_and_reset_recovers() {
    let mut d = rng();
    d.enable_msix();
    d.negotiate(RING_FEATURES);
    d.cw(COMMON_MSIX, 2, 0);
    let mut ring = d.setup_queue(0, 8, RING0, 1);
    d.add_status(STATUS_DRIVER_OK);
    ring.set_desc(0, BUFS, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    ring.set_desc(1, BUFS, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
    ring.push(0);
    d.notify(0);
    assert_ne!(d.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    assert_eq!(d.t.msi.take(), vec![(MSI_ADDR, 0x40)], "config vector 0");
    assert_eq!(d.dev.device().queue().unwrap().error(), Some(QueueError::ChainTooLong { head: 0, limit: 8 }));
    // Further notifications do nothing.
    d.notify(0);
    assert_eq!(ring.used_idx(), 0);
    assert!(d.t.msi.take().is_empty());
    // Reset and start again: everything works.
    d.negotiate(RING_FEATURES);
    assert_eq!(d.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    let mut ring = d.setup_queue(0, 8, RING1, 1);
    d.add_status(STATUS_DRIVER_OK);
    ring.set_desc(2, BUFS, 4, VIRTQ_DESC_F_WRITE, 0);
    ring.push(2);
    d.notify(0);
    assert_eq!(ring.take_used(), vec![(2, 4)]);
    assert_eq!(d.t.msi.take(), vec![(MSI_ADDR, 0x41)]);
}

#[test]
fn reset_returns_everything_to_initial() {
    let mut d = Drv::new(Echo::new(), VirtioPciOptions::default());
    d.enable_msix();
    d.negotiate(RING_FEATURES);
    d.cw(COMMON_MSIX, 2, 0);
    d.setup_queue(0, 16, RING0, 1);
    d.setup_queue(1, 4, RING1, 2);
    d.add_status(STATUS_DRIVER_OK);
    assert_eq!(d.dev.device().state.lock().unwrap().activations, 1);
    d.cw(COMMON_DFSELECT, 4, 1);
    let resets = d.dev.device().state.lock().unwrap().resets;
    d.reset();
    assert_eq!(d.dev.device().state.lock().unwrap().resets, resets + 1, "device reset called");
    assert!(!d.dev.is_activated());
    assert_eq!(d.dev.driver_features(), 0);
    assert_eq!(d.cr(COMMON_DFSELECT, 4), 0);
    assert_eq!(d.cr(COMMON_MSIX, 2) as u16, VIRTIO_MSI_NO_VECTOR);
    assert_eq!(d.cr(COMMON_Q_SELECT, 2), 0);
    for (q, max) in [(0u16, 64u64), (1, 8)] {
        d.cw(COMMON_Q_SELECT, 2, u64::from(q));
        assert_eq!(d.cr(COMMON_Q_SIZE, 2), max);
        assert_eq!(d.cr(COMMON_Q_ENABLE, 2), 0);
        assert_eq!(d.cr(COMMON_Q_MSIX, 2) as u16, VIRTIO_MSI_NO_VECTOR);
        assert_eq!(d.cr(COMMON_Q_DESCLO, 8), 0);
        assert_eq!(d.cr(COMMON_Q_AVAILLO, 8), 0);
        assert_eq!(d.cr(COMMON_Q_USEDLO, 8), 0);
    }
    // The MSI-X table (PCI state) survives a virtio reset; a PCI reset clears it.
    assert_eq!(d.r(MSIX_BAR, 8, 4), 0x40);
    d.dev.reset();
    assert_eq!(d.r(MSIX_BAR, 8, 4), 0);
    assert_eq!(d.cfg(d.caps.msix.unwrap() + 2, 2), 2, "MSI-X disabled");
    assert_eq!(d.cfg(PCI_COMMAND as u8, 2), 0);
}

#[test]
fn queue_register_rules() {
    let mut d = Drv::new(Echo::new(), VirtioPciOptions::default());
    d.negotiate(RING_FEATURES);
    d.cw(COMMON_Q_SELECT, 2, 0);
    for bad in [0u64, 3, 128, 0xFFFF] {
        d.cw(COMMON_Q_SIZE, 2, bad);
        assert_eq!(d.cr(COMMON_Q_SIZE, 2), 64, "size {bad} refused");
    }
    d.cw(COMMON_Q_SIZE, 2, 32);
    // 64-bit addresses: halves and whole.
    d.cw(COMMON_Q_DESCLO, 8, 0x1_2345_6780);
    assert_eq!(d.cr(COMMON_Q_DESCLO, 4), 0x2345_6780);
    assert_eq!(d.cr(COMMON_Q_DESCHI, 4), 1);
    d.cw(COMMON_Q_DESCHI, 4, 0);
    assert_eq!(d.cr(COMMON_Q_DESCLO, 8), 0x2345_6780);
    // Odd widths are dropped.
    d.cw(COMMON_Q_DESCLO, 2, 0);
    d.cw(COMMON_Q_SIZE, 4, 8);
    assert_eq!(d.cr(COMMON_Q_DESCLO, 4), 0x2345_6780);
    assert_eq!(d.cr(COMMON_Q_SIZE, 2), 32);
    // Once enabled, the queue's registers stay; writing 0 to queue_enable is ignored.
    d.cw(COMMON_Q_ENABLE, 2, 1);
    d.cw(COMMON_Q_SIZE, 2, 8);
    d.cw(COMMON_Q_DESCLO, 4, 0);
    d.cw(COMMON_Q_ENABLE, 2, 0);
    assert_eq!(d.cr(COMMON_Q_SIZE, 2), 32);
    assert_eq!(d.cr(COMMON_Q_DESCLO, 4), 0x2345_6780);
    assert_eq!(d.cr(COMMON_Q_ENABLE, 2), 1);
    assert_eq!(d.cr(COMMON_Q_NOFF, 2), 0);
    assert_eq!(d.cr(COMMON_Q_NDATA, 2), 0);
    // A queue that does not exist reads as size 0 and ignores writes.
    d.cw(COMMON_Q_SELECT, 2, 9);
    d.cw(COMMON_Q_SIZE, 2, 8);
    d.cw(COMMON_Q_ENABLE, 2, 1);
    assert_eq!(d.cr(COMMON_Q_SIZE, 2), 0);
    assert_eq!(d.cr(COMMON_Q_ENABLE, 2), 0);
    assert_eq!(d.cr(COMMON_Q_SELECT, 2), 9);
    // Read-only fields ignore writes.
    d.cw(COMMON_NUMQ, 2, 7);
    d.cw(COMMON_DF, 4, 0);
    assert_eq!(d.cr(COMMON_NUMQ, 2), 2);
}

#[test]
fn pci_configuration_access_window() {
    let mut d = rng();
    let c = d.caps.pci_cfg.unwrap();
    let window = |d: &mut Drv<VirtioRng>, off: u64, len: u32| {
        d.dev.config_write(c + 4, 1, MODERN_BAR as u32);
        d.dev.config_write(c + 8, 4, off as u32);
        d.dev.config_write(c + 12, 4, len);
    };
    window(&mut d, COMMON_NUMQ, 2);
    assert_eq!(d.cfg(c + 16, 2), 1, "num_queues through the window");
    window(&mut d, COMMON_STATUS, 1);
    d.dev.config_write(c + 16, 1, u32::from(STATUS_ACKNOWLEDGE));
    assert_eq!(d.status(), STATUS_ACKNOWLEDGE);
    assert_eq!(d.cfg(c + 16, 1), u32::from(STATUS_ACKNOWLEDGE));
    // Misaligned, wrong length or wrong BAR: nothing happens.
    window(&mut d, COMMON_STATUS, 3);
    d.dev.config_write(c + 16, 4, 0);
    window(&mut d, COMMON_STATUS + 1, 2);
    d.dev.config_write(c + 16, 4, 0);
    d.dev.config_write(c + 4, 1, 1);
    d.dev.config_write(c + 16, 4, 0);
    assert_eq!(d.status(), STATUS_ACKNOWLEDGE);
    // ISR through the window is read-to-clear as well.
    let mut d2 = rng();
    d2.negotiate(RING_FEATURES);
    d2.add_status(STATUS_DRIVER_OK);
    let c2 = d2.caps.pci_cfg.unwrap();
    d2.dev.config_write(c2 + 4, 1, MODERN_BAR as u32);
    d2.dev.config_write(c2 + 8, 4, ISR_CFG_OFFSET as u32);
    d2.dev.config_write(c2 + 12, 4, 1);
    assert_eq!(d2.cfg(c2 + 16, 1), 2, "activation failed: config interrupt");
    assert_eq!(d2.cfg(c2 + 16, 1), 0);
}

#[test]
fn random_register_traffic_never_panics() {
    let mut rng_ = Rng(0xDEAD_BEEF_0BAD_F00D);
    for round in 0..8 {
        let opts = match round % 4 {
            0 => VirtioPciOptions::default(),
            1 => VirtioPciOptions { disable_legacy: true, ..Default::default() },
            2 => VirtioPciOptions { disable_modern: true, ..Default::default() },
            _ => VirtioPciOptions { msix_vectors: Some(0), ..Default::default() },
        };
        let mut d = if round % 2 == 0 {
            Drv::new(Box::new(VirtioRng::with_source(Box::new(Counter(0)))) as Box<dyn VirtioDevice>, opts)
        } else {
            Drv::new(Box::new(Echo::new()) as Box<dyn VirtioDevice>, opts)
        };
        // Point the rings somewhere so activation can touch memory.
        for _ in 0..20_000 {
            let size = [1usize, 2, 4, 8][(rng_.next() % 4) as usize];
            let v = match rng_.next() % 4 {
                0 => 0,
                1 => 1,
                2 => rng_.next() % 0x10000,
                _ => rng_.next(),
            };
            match rng_.next() % 10 {
                0 => {
                    let off = (rng_.next() % 256) as u8;
                    let size = size.min(4 - usize::from(off % 4)) as u8;
                    if off != PCI_COMMAND as u8 {
                        d.dev.config_write(off, size.max(1), v as u32);
                    }
                }
                1 => {
                    let off = (rng_.next() % 256) as u8;
                    d.cfg(off, 1);
                }
                2..=4 => {
                    let off = rng_.next() % 0x40;
                    d.w(MODERN_BAR, off, size, v);
                    d.r(MODERN_BAR, rng_.next() % 0x40, size);
                }
                5 => {
                    let off = rng_.next() % MODERN_BAR_SIZE;
                    d.w(MODERN_BAR, off, size, v);
                    d.r(MODERN_BAR, rng_.next() % MODERN_BAR_SIZE, size);
                }
                6 | 7 => {
                    let off = rng_.next() % 40;
                    d.w(LEGACY_BAR, off, size, v);
                    d.r(LEGACY_BAR, rng_.next() % 40, size);
                }
                8 => {
                    let off = rng_.next() % 0x1000;
                    d.w(MSIX_BAR, off, size, v);
                    d.r(MSIX_BAR, off, size);
                }
                _ => {
                    // Garbage in RAM where rings tend to point.
                    let addr = rng_.next() % 0x3000;
                    d.t.mem.write(addr, &v.to_le_bytes()).unwrap();
                    let q = rng_.next() % 3;
                    d.w(MODERN_BAR, NOTIFY_CFG_OFFSET + 4 * q, 2, q);
                    d.w(LEGACY_BAR, LEGACY_QUEUE_NOTIFY, 2, q);
                }
            }
            for bar in [0, 1, 2, 3, 4, 5, 6] {
                d.r(bar, rng_.next(), 4);
            }
        }
        // A PCI reset, then a clean bring-up works.
        d.dev.reset();
        d.dev.config_write(PCI_COMMAND as u8, 2, u32::from(PCI_COMMAND_IO | PCI_COMMAND_MEMORY));
        if round % 4 == 2 {
            continue;
        }
        d.negotiate(RING_FEATURES);
        let mut ring = d.setup_queue(0, 4, RING0, VIRTIO_MSI_NO_VECTOR);
        if round % 2 == 1 {
            d.setup_queue(1, 4, RING1, VIRTIO_MSI_NO_VECTOR);
        }
        d.add_status(STATUS_DRIVER_OK);
        assert!(d.dev.is_activated(), "round {round}");
        ring.set_desc(0, BUFS, 4, VIRTQ_DESC_F_WRITE, 0);
        ring.push(0);
        d.notify(0);
        wait_for(|| ring.used_idx() == 1);
        assert_eq!(ring.take_used(), vec![(0, if round % 2 == 0 { 4 } else { 0 })], "round {round}");
    }
}

/// Records what the transport asked of the echo device.
#[derive(Default)]
struct EchoState {
    activations: u32,
    resets: u32,
    config: [u8; 8],
}

/// A device with two queues and 8 bytes of configuration whose queue 0 is served by a worker
/// thread: each request's readable bytes are copied into its writable buffers; a request
/// starting with "cfg" bumps the configuration and signals a change, from the worker.
struct Echo {
    state: Arc<Mutex<EchoState>>,
    worker: Option<(mpsc::Sender<()>, std::thread::JoinHandle<Queue>)>,
}

impl Echo {
    fn new() -> Self {
        let state = EchoState { config: [0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0], ..Default::default() };
        Echo { state: Arc::new(Mutex::new(state)), worker: None }
    }
}

fn echo_worker(mut queue: Queue, interrupt: Interrupt, state: Arc<Mutex<EchoState>>, kicks: mpsc::Receiver<()>) -> Queue {
    while kicks.recv().is_ok() {
        while let Some(chain) = queue.pop() {
            let dma = queue.dma().clone();
            let mut data = vec![0u8; chain.readable_len().min(4096) as usize];
            let n = chain.reader(&dma).read(&mut data).unwrap_or(0);
            let mut w = chain.writer(&dma);
            let _ = w.write(&data[..n]);
            if data.starts_with(b"cfg") {
                state.lock().unwrap().config[0] += 1;
                interrupt.signal_config();
            }
            queue.add_used(chain.head(), w.written_u32());
        }
        queue.notify();
    }
    queue
}

impl VirtioDevice for Echo {
    fn device_type(&self) -> u16 {
        VIRTIO_ID_CONSOLE
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[64, 8]
    }
    fn config_len(&self) -> usize {
        8
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let s = self.state.lock().unwrap();
        data.copy_from_slice(&s.config[offset as usize..offset as usize + data.len()]);
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only the second word is writable.
        let mut s = self.state.lock().unwrap();
        for (i, b) in data.iter().enumerate() {
            let o = offset as usize + i;
            if o >= 4 {
                s.config[o] = *b;
            }
        }
    }
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let q = ctx.queues.into_iter().next().ok_or(ActivateError::QueueNotReady(0))?;
        if !q.is_ready() {
            return Err(ActivateError::QueueNotReady(0));
        }
        self.state.lock().unwrap().activations += 1;
        let (tx, rx) = mpsc::channel();
        let (state, irq) = (self.state.clone(), ctx.interrupt.clone());
        let handle = std::thread::spawn(move || echo_worker(q, irq, state, rx));
        tx.send(()).unwrap();
        self.worker = Some((tx, handle));
        Ok(())
    }
    fn queue_notify(&mut self, index: u16) {
        if index == 0 {
            if let Some((tx, _)) = &self.worker {
                let _ = tx.send(());
            }
        }
    }
    fn reset(&mut self) {
        if let Some((tx, handle)) = self.worker.take() {
            drop(tx);
            let q = handle.join().unwrap();
            assert!(!q.is_ready(), "the transport disarmed the queue before the device reset");
        }
        self.state.lock().unwrap().resets += 1;
    }
}

/// Waits (bounded) for `cond`.
fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    panic!("timed out");
}

#[test]
fn worker_thread_device() {
    let mut d = Drv::new(Echo::new(), VirtioPciOptions::default());
    d.enable_msix();
    d.negotiate(RING_FEATURES);
    d.cw(COMMON_MSIX, 2, 0);
    let mut ring = d.setup_queue(0, 16, RING0, 1);
    d.setup_queue(1, 8, RING1, 2);
    d.add_status(STATUS_DRIVER_OK);
    let (cfg_off, cfg_len) = d.caps.device.unwrap();
    assert_eq!(cfg_len, 8);
    assert_eq!(d.r(MODERN_BAR, cfg_off, 4), 0x1234_5678);
    assert_eq!(d.r(MODERN_BAR, cfg_off + 6, 4), 0, "past the end reads 0");
    d.w(MODERN_BAR, cfg_off, 4, 0);
    d.w(MODERN_BAR, cfg_off + 4, 2, 0xBEEF);
    assert_eq!(d.r(MODERN_BAR, cfg_off, 8), 0xBEEF_1234_5678);

    // Ordinary requests, served by the worker; MSI-X vector 1 from its thread.
    d.t.mem.write(BUFS, b"hello").unwrap();
    ring.set_desc(0, BUFS, 5, VIRTQ_DESC_F_NEXT, 1);
    ring.set_desc(1, BUFS + 0x100, 16, VIRTQ_DESC_F_WRITE, 0);
    ring.push(0);
    d.notify(0);
    wait_for(|| ring.used_idx() == 1);
    assert_eq!(ring.take_used(), vec![(0, 5)]);
    assert_eq!(d.mem(BUFS + 0x100, 5), b"hello");
    wait_for(|| !d.t.msi.take().is_empty());

    // A configuration change from the worker: config vector 0 and a new generation.
    let gen = d.cr(COMMON_CFGGENERATION, 1);
    d.t.mem.write(BUFS, b"cfg").unwrap();
    ring.push(0);
    d.notify(0);
    wait_for(|| ring.used_idx() == 2);
    let msgs = d.t.msi.take();
    assert!(msgs.contains(&(MSI_ADDR, 0x40)), "{msgs:?}");
    assert_eq!(d.r(MODERN_BAR, cfg_off, 1), 0x79);
    let gen2 = d.cr(COMMON_CFGGENERATION, 1);
    assert_ne!(gen, gen2, "config_generation moved");
    assert_eq!(d.r(MODERN_BAR, cfg_off, 1), 0x79);
    assert_eq!(d.cr(COMMON_CFGGENERATION, 1), gen2, "stable without changes");

    // Reset joins the worker; its stale handles are inert.
    let resets = d.dev.device().state.lock().unwrap().resets;
    d.reset();
    assert_eq!(d.dev.device().state.lock().unwrap().resets, resets + 1);
    ring.push(0);
    d.notify(0);
    assert_eq!(ring.used_idx(), 2);
}

#[test]
fn rng_requests_it_cannot_fill_complete_with_what_was_written() {
    let mut d = rng();
    d.negotiate(RING_FEATURES);
    let mut ring = d.setup_queue(0, 8, RING0, VIRTIO_MSI_NO_VECTOR);
    d.add_status(STATUS_DRIVER_OK);
    // Outside RAM; crossing the end of RAM after a good buffer; readable only (a driver bug).
    ring.set_desc(0, RAM + 0x1000, 64, VIRTQ_DESC_F_WRITE, 0);
    ring.set_desc(1, BUFS, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
    ring.set_desc(2, RAM - 4, 64, VIRTQ_DESC_F_WRITE, 0);
    ring.set_desc(3, BUFS, 64, 0, 0);
    ring.set_desc(4, BUFS + 0x100, 0, VIRTQ_DESC_F_WRITE, 0);
    for h in [0, 1, 3, 4] {
        ring.push(h);
    }
    d.notify(0);
    assert_eq!(ring.take_used(), vec![(0, 0), (1, 8), (3, 0), (4, 0)]);
    assert_eq!(d.status() & STATUS_DEVICE_NEEDS_RESET, 0, "buffer errors do not break the device");
    assert_eq!(d.isr(), 1);
}

#[test]
fn legacy_only_device() {
    let mut d = rng_with(VirtioPciOptions { disable_modern: true, ..Default::default() });
    let io = LEGACY_BAR;
    assert_eq!(d.r(MODERN_BAR, 0, 4), 0xFFFF_FFFF, "no BAR4");
    d.w(io, LEGACY_STATUS, 1, 0);
    d.w(io, LEGACY_STATUS, 1, u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER));
    assert_eq!(d.r(io, LEGACY_HOST_FEATURES, 4), VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX);
    d.w(io, LEGACY_GUEST_FEATURES, 4, VIRTIO_F_EVENT_IDX);
    // A legacy driver setting FEATURES_OK (it should not) gets it refused.
    d.w(io, LEGACY_STATUS, 1, u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK));
    assert_eq!(d.r(io, LEGACY_STATUS, 1) as u8 & STATUS_FEATURES_OK, 0);
    let mut ring = GuestRing::legacy(d.t.link().dma, RNG_QUEUE_SIZE_FOR_TESTS, RING1);
    d.w(io, LEGACY_QUEUE_PFN, 4, RING1 >> 12);
    d.w(io, LEGACY_STATUS, 1, u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK));
    assert!(d.dev.is_activated());
    for i in 0..20u16 {
        ring.set_desc(i % 8, BUFS + 0x40 * u64::from(i % 8), 0x40, VIRTQ_DESC_F_WRITE, 0);
        ring.push(i % 8);
        d.w(io, LEGACY_QUEUE_NOTIFY, 2, 0);
        assert_eq!(ring.take_used(), vec![(u32::from(i % 8), 0x40)]);
        assert_eq!(d.r(io, LEGACY_ISR, 1), 1, "event idx: an interrupt per request here");
    }
    assert_eq!(ring.avail_event(), 20);
}

#[test]
fn packed_rings_through_the_transport() {
    use super::packed_tests::PackedDriver;
    // Off by default, never through the legacy interface.
    assert_eq!(rng().device_features() & VIRTIO_F_RING_PACKED, 0);
    let legacy = rng_with(VirtioPciOptions { disable_modern: true, packed: true, ..Default::default() });
    assert_eq!(legacy.dev.offered_features() & VIRTIO_F_RING_PACKED, 0);
    let mut d = rng_with(VirtioPciOptions { packed: true, ..Default::default() });
    assert_ne!(d.device_features() & VIRTIO_F_RING_PACKED, 0);
    // Without RING_PACKED negotiated, a queue size of 5 is refused.
    d.negotiate(RING_FEATURES);
    d.cw(COMMON_Q_SIZE, 2, 5);
    assert_eq!(d.cr(COMMON_Q_SIZE, 2), u64::from(super::rng::RNG_QUEUE_SIZE));
    let f = d.negotiate(RING_FEATURES | VIRTIO_F_RING_PACKED);
    assert_eq!(f, RING_FEATURES | VIRTIO_F_RING_PACKED);
    d.setup_queue(0, 5, RING0, VIRTIO_MSI_NO_VECTOR);
    assert_eq!(d.cr(COMMON_Q_SIZE, 2), 5, "packed sizes need not be powers of two");
    let mut ring = PackedDriver::new(d.t.link().dma, 5, RING0, RING0 + 0x1000, RING0 + 0x2000);
    d.add_status(STATUS_DRIVER_OK);
    assert!(d.dev.is_activated());
    let mut next = 0u8;
    for round in 0..6u64 {
        let a = ring.add(&[(BUFS + 0x100 * round, 10, true), (BUFS + 0x100 * round + 0x80, 6, true)]);
        let b = ring.add(&[(BUFS + 0x1000, 3, true)]);
        d.notify(0);
        assert_eq!(ring.take_used(), vec![(a, 16), (b, 3)]);
        let first: Vec<u8> = (next..next + 10).collect();
        assert_eq!(d.mem(BUFS + 0x100 * round, 10), first);
        next = next.wrapping_add(19);
    }
    assert_eq!(d.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    assert!(d.isr() & 1 != 0, "used buffer interrupt");
}

// ---- save and restore of the transport ----

/// A fresh driver/transport with `a`'s guest RAM and transport state, as the machine restores
/// them; the driver side of queue 0 continues from `ring`.
fn restored_rng(a: &Drv<VirtioRng>, opts: VirtioPciOptions) -> Drv<VirtioRng> {
    use ferrite_persist::{load, save};
    let mut b = rng_with(opts);
    b.t.mem.write(0, &a.mem(0, RAM as usize)).unwrap();
    load(&mut b.dev, &save(&a.dev, "00:05.0")).unwrap();
    b
}

fn same_ring(ring: &GuestRing, d: &Drv<VirtioRng>) -> GuestRing {
    GuestRing { dma: d.t.link().dma, avail_idx: ring.avail_idx, last_used: ring.last_used, ..*ring }
}

#[test]
fn an_active_device_restored_takes_up_its_ring_where_it_stood() {
    let mut a = rng();
    a.negotiate(RING_FEATURES);
    let mut ring = a.setup_queue(0, 8, RING0, VIRTIO_MSI_NO_VECTOR);
    a.add_status(STATUS_DRIVER_OK);
    ring.set_desc(0, BUFS, 16, VIRTQ_DESC_F_WRITE, 0);
    ring.set_desc(1, BUFS + 0x100, 32, VIRTQ_DESC_F_WRITE, 0);
    ring.push(0);
    ring.push(1);
    a.notify(0);
    assert_eq!(ring.take_used(), vec![(0, 16), (1, 32)]);
    assert!(a.t.line.level(), "an interrupt pending across the save");

    let mut b = restored_rng(&a, VirtioPciOptions::default());
    let mut ring_b = same_ring(&ring, &b);
    assert!(b.dev.is_activated());
    assert!(b.t.line.level(), "INTx is re-driven");
    assert_eq!((b.status(), b.cr(COMMON_Q_SIZE, 2), b.dev.driver_features()), (a.status(), a.cr(COMMON_Q_SIZE, 2), a.dev.driver_features()));
    assert_eq!((b.isr(), a.isr()), (1, 1));
    for (d, r) in [(&mut a, &mut ring), (&mut b, &mut ring_b)] {
        r.push(1);
        r.push(0);
        d.notify(0);
        assert_eq!(r.take_used(), vec![(1, 32), (0, 16)], "entries 2 and 3 of the ring, not 0 and 1 again");
        assert_eq!(r.used_idx(), 4);
        assert!(d.t.line.level());
    }
}

#[test]
fn msix_routing_survives_a_restore() {
    let mut a = rng();
    a.enable_msix();
    a.negotiate(RING_FEATURES);
    let mut ring = a.setup_queue(0, 4, RING0, 1);
    a.cw(COMMON_MSIX, 2, 0);
    a.add_status(STATUS_DRIVER_OK);
    let mut b = restored_rng(&a, VirtioPciOptions::default());
    let mut ring_b = same_ring(&ring, &b);
    assert_eq!((b.cr(COMMON_MSIX, 2), b.cr(COMMON_Q_MSIX, 2)), (0, 1));
    for (d, r) in [(&mut a, &mut ring), (&mut b, &mut ring_b)] {
        r.set_desc(0, BUFS, 8, VIRTQ_DESC_F_WRITE, 0);
        r.push(0);
        d.notify(0);
        assert_eq!(d.t.msi.take(), vec![(MSI_ADDR, 0x41)]);
        assert!(!d.t.line.level());
    }
}

#[test]
fn a_transport_state_that_does_not_fit_is_refused() {
    use ferrite_persist::{Persist, RestoreError};
    let mut a = rng();
    a.negotiate(RING_FEATURES);
    a.setup_queue(0, 4, RING0, VIRTIO_MSI_NO_VECTOR);
    a.add_status(STATUS_DRIVER_OK);
    let mut b = rng();
    let fresh = b.dev.save();
    let mut s = a.dev.save();
    s.queues[0].size = 3;
    assert!(matches!(b.dev.restore(s), Err(RestoreError::Invalid { field: "queues.size", .. })));
    let mut s = a.dev.save();
    s.queues[0].msix_vector = 7;
    assert!(b.dev.restore(s).is_err());
    let mut p = rng_with(VirtioPciOptions { packed: true, ..Default::default() });
    p.negotiate(RING_FEATURES | VIRTIO_F_RING_PACKED);
    p.setup_queue(0, 4, RING0, VIRTIO_MSI_NO_VECTOR);
    p.add_status(STATUS_DRIVER_OK);
    let mut q = rng_with(VirtioPciOptions { packed: true, ..Default::default() });
    let e = q.dev.restore(p.dev.save()).unwrap_err();
    assert!(e.to_string().contains("packed"), "packed rings of an active device are not carried: {e}");
    let mut s = a.dev.save();
    s.device_type = VIRTIO_ID_NET;
    assert!(b.dev.restore(s).is_err());
    assert_eq!(b.dev.save(), fresh);
    assert!(!b.dev.is_activated());
}
