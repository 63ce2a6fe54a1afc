//! INTx, MSI and MSI-X models, and shared functions on the bus.

use super::*;
use crate::testing::{FakeLine, FakeMsi, TestLink};

fn msi_dev(mmc_log2: u8, is_64bit: bool, pvm: bool) -> ConfigSpace {
    let mut c = ConfigSpace::new(0x1234, 0x1, 0xFF_00_00, 0);
    c.add_msi_capability(0x50, mmc_log2, is_64bit, pvm).unwrap();
    c
}

#[test]
fn intx_follows_status_and_interrupt_disable() {
    let line = FakeLine::default();
    let mut c = ConfigSpace::new(0x1234, 0x1, 0, 0);
    c.set_interrupt_pin(1);
    c.set_intx(true, &line);
    assert!(line.level() && c.intx_asserted());
    assert_eq!(c.read(PCI_STATUS as u8, 2) & 0x8, 0x8, "Interrupt Status");
    c.set_intx(true, &line);
    assert_eq!(line.drives(), 1, "driven on changes only");
    // Interrupt Disable deasserts the pin; the status bit stays (PCI 3.0, 6.2.3).
    c.write(PCI_COMMAND as u8, 2, u32::from(PCI_COMMAND_INTX_DISABLE));
    c.refresh_intx(&line);
    assert!(!line.level());
    assert!(c.interrupt_status() && !c.intx_asserted());
    c.write(PCI_COMMAND as u8, 2, 0);
    c.refresh_intx(&line);
    assert!(line.level());
    c.set_intx(false, &line);
    assert!(!line.level());
    assert_eq!(c.read(PCI_STATUS as u8, 2) & 0x8, 0);
    // Raised while disabled: nothing on the pin until enabled.
    c.write(PCI_COMMAND as u8, 2, u32::from(PCI_COMMAND_INTX_DISABLE));
    c.set_intx(true, &line);
    assert!(!line.level());
    c.write(PCI_COMMAND as u8, 2, 0);
    c.refresh_intx(&line);
    assert!(line.level());
    assert_eq!(line.drives(), 5);
}

#[test]
fn msi_capability_layout_and_masks() {
    let mut c = msi_dev(2, false, true);
    assert_eq!(c.u8(PCI_CAPABILITY_LIST), 0x50);
    assert_eq!(c.read(0x50, 4) & 0xFFFF, 0x0005, "ID, end of list");
    let control = c.read(0x52, 2) as u16;
    assert_eq!(control, 2 << 1 | MSI_CTRL_PVM, "4 vectors capable, 32-bit, PVM");
    // Only Enable and Multiple Message Enable are writable.
    c.write(0x52, 2, 0xFFFF);
    assert_eq!(c.read(0x52, 2) as u16, control | 0x71);
    c.write(0x52, 2, 0);
    // Address bits 1:0 read 0; data is 16 bits; mask only for the 4 implemented vectors.
    c.write(0x54, 4, 0xFFFF_FFFF);
    assert_eq!(c.read(0x54, 4), 0xFFFF_FFFC);
    c.write(0x58, 4, 0xFFFF_FFFF);
    assert_eq!(c.read(0x58, 4), 0xFFFF);
    c.write(0x5C, 4, 0xFFFF_FFFF);
    assert_eq!(c.read(0x5C, 4), 0xF);
    c.write(0x60, 4, 0xFFFF_FFFF);
    assert_eq!(c.read(0x60, 4), 0, "pending bits are read-only");

    let c = msi_dev(0, true, false);
    assert_eq!(c.read(0x52, 2) as u16, MSI_CTRL_64BIT);
    let mut bad = ConfigSpace::new(1, 2, 0, 0);
    assert!(bad.add_msi_capability(0x50, 6, false, false).is_err());
    assert!(bad.add_msi_capability(0xF0, 0, true, true).is_err(), "runs past 0xFF");
    bad.add_msi_capability(0x50, 0, false, false).unwrap();
    assert!(bad.add_msi_capability(0x60, 0, false, false).is_err(), "only one");
}

#[test]
fn msi_messages_follow_enable_vectors_and_masks() {
    let sink = FakeMsi::default();
    let mut c = msi_dev(2, true, true);
    c.write(0x54, 4, 0xFEE0_1000);
    c.write(0x58, 4, 0x1);
    c.write(0x5C, 2, 0x4062);
    assert_eq!(c.msi_message(0), None, "disabled");
    assert!(!c.msi_notify(0, &sink));
    // Enable with 2 of the 4 vectors allocated.
    c.write(0x52, 2, u32::from(MSI_CTRL_ENABLE | 1 << MSI_CTRL_MME_SHIFT));
    assert!(c.msi_enabled());
    assert_eq!(c.msi_vectors(), 2);
    assert_eq!(c.msi_message(0), Some((0x1_FEE0_1000, 0x4062)));
    assert_eq!(c.msi_message(1), Some((0x1_FEE0_1000, 0x4063)), "low data bit is the vector");
    assert_eq!(c.msi_message(2), None, "not allocated");
    assert!(c.msi_notify(1, &sink));
    assert!(!c.msi_notify(3, &sink));
    assert_eq!(sink.take(), vec![(0x1_FEE0_1000, 0x4063)]);
    // A masked vector becomes pending and goes out when unmasked.
    c.write(0x60, 4, 0b10);
    assert!(c.msi_masked(1));
    assert!(!c.msi_notify(1, &sink));
    assert!(c.msi_pending(1));
    assert_eq!(c.read(0x64, 4), 0b10);
    c.msi_flush_pending(&sink);
    assert!(sink.take().is_empty(), "still masked");
    c.write(0x60, 4, 0);
    c.msi_flush_pending(&sink);
    assert_eq!(sink.take(), vec![(0x1_FEE0_1000, 0x4063)]);
    assert!(!c.msi_pending(1));
    // MME above MMC is clamped to what the function can do.
    c.write(0x52, 2, u32::from(MSI_CTRL_ENABLE | 5 << MSI_CTRL_MME_SHIFT));
    assert_eq!(c.msi_vectors(), 4);
    assert_eq!(c.msi_message(3), Some((0x1_FEE0_1000, 0x4063)));
}

fn msix_dev() -> (ConfigSpace, MsixTable) {
    let mut c = ConfigSpace::new(0x1234, 0x2, 0x02_00_00, 0);
    c.add_bar(1, BarKind::Mem32 { prefetchable: false }, 0x1000).unwrap();
    let t = c.add_msix_capability(0x70, 1, 0x0, 1, 0x800, 3).unwrap();
    (c, t)
}

fn qword(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

fn rd(t: &MsixTable, bar: usize, off: u64, len: usize) -> u64 {
    let mut b = [0u8; 8];
    assert!(t.bar_read(bar, off, &mut b[..len]));
    u64::from_le_bytes(b)
}

#[test]
fn msix_capability_and_table_layout() {
    let (mut c, t) = msix_dev();
    assert_eq!(t.len(), 3);
    assert_eq!(c.read(0x70, 4), 0x0002_0011, "ID 0x11, table size 3 - 1");
    assert_eq!(c.read(0x74, 4), 0x0000_0001, "table at BAR1 + 0");
    assert_eq!(c.read(0x78, 4), 0x0000_0801, "PBA at BAR1 + 0x800");
    c.write(0x72, 2, 0xFFFF);
    assert_eq!(c.read(0x72, 2), 0xC002, "only Enable and Function Mask are writable");
    assert!(c.msix_enabled() && c.msix_function_masked());
    // Entries start masked with a zero message.
    assert_eq!(rd(&t, 1, 0x0C, 4), 1);
    assert_eq!(rd(&t, 1, 0x20, 8), 0);
    assert_eq!(rd(&t, 1, 0x2C, 4), 1);
    assert_eq!(rd(&t, 1, 0x800, 8), 0);
    // Outside the table and PBA, or another BAR: not ours.
    let mut b = [0u8; 4];
    assert!(!t.bar_read(1, 0x30, &mut b));
    assert!(!t.bar_read(0, 0x0, &mut b));
    assert!(!t.bar_read(1, 0x808, &mut b));
    // Partial accesses read all ones.
    let mut b = [0u8; 2];
    assert!(t.bar_read(1, 0x0, &mut b));
    assert_eq!(b, [0xFF; 2]);

    let mut c = ConfigSpace::new(1, 2, 0, 0);
    assert!(c.add_msix_capability(0x70, 0, 0, 0, 0x800, 1).is_err(), "BAR 0 not declared");
    c.add_bar(0, BarKind::Mem32 { prefetchable: false }, 0x1000).unwrap();
    assert!(c.add_msix_capability(0x70, 0, 4, 0, 0x800, 1).is_err(), "misaligned table");
    assert!(c.add_msix_capability(0x70, 0, 0, 0, 0x10, 2).is_err(), "PBA inside the table");
    assert!(c.add_msix_capability(0x70, 0, 0, 0, 0x800, 0).is_err(), "no vectors");
    assert!(c.add_msix_capability(0x70, 0, 0, 0, 0x800, 257).is_err(), "table beyond the BAR");
    assert!(c.add_msix_capability(0xF8, 0, 0, 0, 0x800, 1).is_err(), "capability past 0xFF");
    c.add_bar(2, BarKind::Io, 0x100).unwrap();
    assert!(c.add_msix_capability(0x70, 2, 0, 0, 0x800, 1).is_err(), "table in an I/O BAR");
    c.add_msix_capability(0x70, 0, 0, 0, 0x800, 128).unwrap();
}

#[test]
fn msix_delivery_masks_and_pending_bits() {
    let sink = FakeMsi::default();
    let (mut c, mut t) = msix_dev();
    // Vector 2: address (qword), data and unmask (qword).
    assert!(t.bar_write(1, 0x20, &qword(0xFEE0_0000), &sink));
    assert!(t.bar_write(1, 0x28, &qword(0x4051), &sink));
    assert_eq!(t.message(2), Some((0xFEE0_0000, 0x4051)));
    assert_eq!(rd(&t, 1, 0x2C, 4), 0, "unmasked");
    assert!(!t.notify(2, &sink), "MSI-X disabled");
    assert!(!t.pending(2));
    c.write(0x72, 2, u32::from(MSIX_CTRL_ENABLE));
    t.sync_control(&c, &sink);
    assert!(t.notify(2, &sink));
    assert_eq!(sink.take(), vec![(0xFEE0_0000, 0x4051)]);
    assert!(!t.notify(7, &sink), "no such vector");

    // Vector 0 is still masked: pending, visible in the PBA, sent on unmask.
    t.bar_write(1, 0x0, &0xFEE0_1000u32.to_le_bytes(), &sink);
    t.bar_write(1, 0x8, &0x4022u32.to_le_bytes(), &sink);
    assert!(!t.notify(0, &sink));
    assert_eq!(rd(&t, 1, 0x800, 8), 1);
    assert_eq!(rd(&t, 1, 0x800, 4), 1);
    t.bar_write(1, 0x800, &qword(0), &sink);
    assert_eq!(rd(&t, 1, 0x800, 8), 1, "the PBA is read-only");
    t.bar_write(1, 0xC, &0u32.to_le_bytes(), &sink);
    assert_eq!(sink.take(), vec![(0xFEE0_1000, 0x4022)]);
    assert_eq!(rd(&t, 1, 0x800, 8), 0);

    // Function Mask holds every vector; clearing it sends the pending ones.
    c.write(0x72, 2, u32::from(MSIX_CTRL_ENABLE | MSIX_CTRL_FUNCTION_MASK));
    t.sync_control(&c, &sink);
    assert!(!t.notify(2, &sink) && !t.notify(0, &sink));
    assert_eq!(rd(&t, 1, 0x800, 8), 0b101);
    assert!(sink.take().is_empty());
    c.write(0x72, 2, u32::from(MSIX_CTRL_ENABLE));
    t.sync_control(&c, &sink);
    assert_eq!(sink.take(), vec![(0xFEE0_1000, 0x4022), (0xFEE0_0000, 0x4051)]);
    assert_eq!(rd(&t, 1, 0x800, 8), 0);

    // Reserved Vector Control bits and address bits 1:0 read 0.
    t.bar_write(1, 0x1C, &0xFFFF_FFFEu32.to_le_bytes(), &sink);
    assert_eq!(rd(&t, 1, 0x1C, 4), 0);
    t.bar_write(1, 0x10, &0xFFFF_FFFFu32.to_le_bytes(), &sink);
    assert_eq!(rd(&t, 1, 0x10, 4), 0xFFFF_FFFC);
    t.reset();
    assert_eq!(rd(&t, 1, 0x10, 8), 0);
    assert_eq!(rd(&t, 1, 0x1C, 4), 1);
    assert!(!t.enabled());
}

/// A function that counts its attachments and serves a BAR.
struct Linked {
    cfg: ConfigSpace,
    links: usize,
    last_write: Option<(usize, u64, Vec<u8>)>,
}

impl PciDevice for Linked {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.cfg.read(offset, size)
    }
    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.cfg.write(offset, size, value)
    }
    fn bar_read(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        data.fill(index as u8 + offset as u8);
    }
    fn bar_write(&mut self, index: usize, offset: u64, data: &[u8]) {
        self.last_write = Some((index, offset, data.to_vec()));
    }
    fn attach(&mut self, link: PciLink) {
        self.links += 1;
        link.intx.set_level(true);
    }
}

#[test]
fn shared_functions_on_the_bus() {
    let t = TestLink::new(0x10_0000);
    let mut bus = PciBus::new();
    let devfn = DevFn::new(4, 0).unwrap();
    let dev = Arc::new(Mutex::new(Linked { cfg: ConfigSpace::new(0x1234, 7, 0, 0), links: 0, last_write: None }));
    bus.plug(devfn, dev.clone(), t.link()).unwrap();
    assert!(t.line.level(), "attach got the link");
    assert_eq!(
        bus.plug(devfn, dev.clone(), t.link()),
        Err(PciError::SlotOccupied(devfn))
    );
    assert_eq!(dev.lock().unwrap().links, 1, "a refused plug does not attach");
    assert_eq!(bus.config_read(devfn, 0, 4), 0x0007_1234);

    // The machine reaches the BARs through its own handle, locking only this function.
    let shared = bus.shared(devfn).unwrap();
    let mut b = [0u8; 4];
    lock_device(&shared).bar_read(2, 0x10, &mut b);
    assert_eq!(b, [0x12; 4]);
    lock_device(&shared).bar_write(0, 8, &[1, 2]);
    assert_eq!(bus.with_device(devfn, |d: &mut Linked| d.last_write.clone()), Some(Some((0, 8, vec![1, 2]))));
    assert!(bus.with_device(devfn, |_: &mut I440fx| ()).is_none(), "wrong type");
    assert!(bus.shared(DevFn::new(5, 0).unwrap()).is_none());

    // Default BAR accessors: all ones, writes ignored.
    let chipset = bus.add_device(I440FX_DEVFN, I440fx::new()).unwrap();
    let mut b = [0u8; 8];
    chipset.lock().unwrap().bar_read(0, 0, &mut b);
    assert_eq!(b, [0xFF; 8]);
}
