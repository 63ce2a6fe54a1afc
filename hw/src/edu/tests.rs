use super::*;
use crate::pci::{
    lock_device, DevFn, PciBus, PciEvent, MSI_CTRL_64BIT, MSI_CTRL_ENABLE, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE,
    PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, PCI_STATUS, PCI_STATUS_INTERRUPT,
};
use crate::testing::TestLink;
use std::sync::{Arc, Mutex};

/// Guest RAM: 2 MiB at 0.
const RAM: u64 = 0x20_0000;

pub(super) fn attached() -> (Edu, TestLink) {
    let t = TestLink::new(RAM);
    let mut e = Edu::new();
    e.attach(t.link());
    (e, t)
}

pub(super) fn r32(e: &mut Edu, off: u64) -> u32 {
    let mut b = [0u8; 4];
    e.bar_read(0, off, &mut b);
    u32::from_le_bytes(b)
}

pub(super) fn w32(e: &mut Edu, off: u64, v: u32) {
    e.bar_write(0, off, &v.to_le_bytes());
}

fn r64(e: &mut Edu, off: u64) -> u64 {
    let mut b = [0u8; 8];
    e.bar_read(0, off, &mut b);
    u64::from_le_bytes(b)
}

fn w64(e: &mut Edu, off: u64, v: u64) {
    e.bar_write(0, off, &v.to_le_bytes());
}

fn set_command(e: &mut Edu, bits: u16) {
    e.config_write(PCI_COMMAND as u8, 2, u32::from(bits));
}

/// Points the MSI capability at `address`/`data` and enables it.
fn enable_msi(e: &mut Edu, address: u64, data: u16) {
    let cap = EDU_MSI_CAP;
    e.config_write(cap + 4, 4, address as u32);
    e.config_write(cap + 8, 4, (address >> 32) as u32);
    e.config_write(cap + 12, 2, u32::from(data));
    e.config_write(cap + 2, 2, u32::from(MSI_CTRL_ENABLE));
}

#[test]
fn pci_header() {
    let mut e = Edu::new();
    assert_eq!(e.config_read(0, 4), 0x11e8_1234);
    assert_eq!(e.config_read(8, 4) >> 8, 0xFF_00_00, "class");
    assert_eq!(e.config_read(0x3D, 1), 1, "INTA");
    e.config_write(0x10, 4, 0xFFFF_FFFF);
    assert_eq!(e.config_read(0x10, 4), 0xFFF0_0000, "1 MiB, 32-bit, non-prefetchable");
    assert_eq!(e.config_read(0x14, 4), 0, "no BAR1");
    assert_ne!(e.config_read(PCI_STATUS as u8, 2) & 0x10, 0, "capability list");
    assert_eq!(e.config_read(0x34, 1), u32::from(EDU_MSI_CAP));
    let cap = e.config_read(EDU_MSI_CAP, 4);
    assert_eq!(cap & 0xFF, 0x05, "MSI");
    assert_eq!((cap >> 16) as u16, MSI_CTRL_64BIT, "one vector, 64-bit, disabled");
}

#[test]
fn identification_and_liveness() {
    let (mut e, _t) = attached();
    assert_eq!(r32(&mut e, EDU_REG_ID), 0x0100_00ed);
    w32(&mut e, EDU_REG_ID, 0);
    assert_eq!(r32(&mut e, EDU_REG_ID), 0x0100_00ed, "read-only");
    w32(&mut e, EDU_REG_LIVENESS, 0x1234_5678);
    assert_eq!(r32(&mut e, EDU_REG_LIVENESS), 0xEDCB_A987);
    w32(&mut e, EDU_REG_LIVENESS, 0);
    assert_eq!(r32(&mut e, EDU_REG_LIVENESS), 0xFFFF_FFFF);
    // Below 0x80 only 4-byte accesses are registers.
    let mut b = [0u8; 2];
    e.bar_read(0, EDU_REG_ID, &mut b);
    assert_eq!(b, [0xFF; 2]);
    assert_eq!(r64(&mut e, EDU_REG_ID), u64::MAX);
    e.bar_write(0, EDU_REG_LIVENESS, &[1]);
    assert_eq!(r32(&mut e, EDU_REG_LIVENESS), 0xFFFF_FFFF, "byte write ignored");
    // Holes, write-only registers and other BARs read all ones.
    for off in [0x0C, 0x10, 0x28, 0x60, 0x64, 0x7C, 0xA0, 0x3_FFFC, 0x4_1000, 0xF_FFFC] {
        assert_eq!(r32(&mut e, off), u32::MAX, "{off:#x}");
    }
    let mut b = [0u8; 4];
    e.bar_read(1, 0, &mut b);
    assert_eq!(b, [0xFF; 4]);
}

#[test]
fn factorial() {
    let (mut e, t) = attached();
    for (n, f) in [(0u32, 1u32), (1, 1), (5, 120), (12, 479_001_600), (13, 1_932_053_504), (33, 2_147_483_648), (34, 0)] {
        w32(&mut e, EDU_REG_FACTORIAL, n);
        assert_eq!(r32(&mut e, EDU_REG_STATUS) & EDU_STATUS_COMPUTING, 0, "done at once");
        assert_eq!(r32(&mut e, EDU_REG_FACTORIAL), f, "{n}!");
    }
    w32(&mut e, EDU_REG_FACTORIAL, u32::MAX);
    assert_eq!(r32(&mut e, EDU_REG_FACTORIAL), 0);
    assert_eq!(factorial_u32(20), 2_192_834_560);
    assert_eq!(r32(&mut e, EDU_REG_IRQ_STATUS), 0, "no interrupt unless asked");
    assert!(!t.line.level());

    // Status: 0x80 is writable, 0x01 is not.
    w32(&mut e, EDU_REG_STATUS, 0xFF);
    assert_eq!(r32(&mut e, EDU_REG_STATUS), EDU_STATUS_IRQ_FACT);
    w32(&mut e, EDU_REG_FACTORIAL, 4);
    assert_eq!(r32(&mut e, EDU_REG_FACTORIAL), 24);
    assert_eq!(r32(&mut e, EDU_REG_IRQ_STATUS), EDU_IRQ_FACT);
    assert!(t.line.level(), "INTx by default");
    w32(&mut e, EDU_REG_IRQ_ACK, EDU_IRQ_FACT);
    assert!(!t.line.level());
}

#[test]
fn intx_is_a_level_until_acknowledged() {
    let (mut e, t) = attached();
    w32(&mut e, EDU_REG_IRQ_RAISE, 0x10);
    assert!(t.line.level());
    assert_eq!(r32(&mut e, EDU_REG_IRQ_STATUS), 0x10);
    assert_ne!(e.config_read(PCI_STATUS as u8, 2) & u32::from(PCI_STATUS_INTERRUPT), 0);
    w32(&mut e, EDU_REG_IRQ_RAISE, 0x3);
    assert_eq!(r32(&mut e, EDU_REG_IRQ_STATUS), 0x13);
    w32(&mut e, EDU_REG_IRQ_ACK, 0x11);
    assert!(t.line.level(), "0x2 still set");
    // Interrupt Disable masks the pin, not the status.
    set_command(&mut e, PCI_COMMAND_INTX_DISABLE);
    assert!(!t.line.level());
    assert_ne!(e.config_read(PCI_STATUS as u8, 2) & u32::from(PCI_STATUS_INTERRUPT), 0);
    set_command(&mut e, 0);
    assert!(t.line.level());
    w32(&mut e, EDU_REG_IRQ_ACK, 0x2);
    assert!(!t.line.level());
    assert_eq!(r32(&mut e, EDU_REG_IRQ_STATUS), 0);
    assert_eq!(e.config_read(PCI_STATUS as u8, 2) & u32::from(PCI_STATUS_INTERRUPT), 0);
    w32(&mut e, EDU_REG_IRQ_RAISE, 0);
    assert!(!t.line.level(), "raising nothing asserts nothing");
    assert!(t.msi.take().is_empty());
}

#[test]
fn msi_when_enabled() {
    let (mut e, t) = attached();
    w32(&mut e, EDU_REG_IRQ_RAISE, 0x1);
    assert!(t.line.level());
    // Enabling MSI takes the function off INTx.
    enable_msi(&mut e, 0xFEE0_0000, 0x4041);
    assert!(!t.line.level());
    w32(&mut e, EDU_REG_IRQ_RAISE, 0x4);
    assert_eq!(t.msi.take(), vec![(0xFEE0_0000, 0x4041)]);
    assert_eq!(r32(&mut e, EDU_REG_IRQ_STATUS), 0x5, "the status still needs acknowledging");
    w32(&mut e, EDU_REG_IRQ_RAISE, 0x4);
    assert_eq!(t.msi.take().len(), 1, "every raise is a message");
    w32(&mut e, EDU_REG_IRQ_ACK, 0x5);
    assert!(!t.line.level());
    // Back to INTx.
    w32(&mut e, EDU_REG_IRQ_RAISE, 0x8);
    e.config_write(EDU_MSI_CAP + 2, 2, 0);
    assert!(t.line.level());
    assert_eq!(t.msi.take().len(), 1);
}

/// Programs and starts a transfer with 8-byte register writes.
fn dma(e: &mut Edu, src: u64, dst: u64, count: u64, cmd: u64) {
    w64(e, EDU_REG_DMA_SRC, src);
    w64(e, EDU_REG_DMA_DST, dst);
    w64(e, EDU_REG_DMA_COUNT, count);
    w64(e, EDU_REG_DMA_CMD, cmd | EDU_DMA_START);
}

#[test]
fn dma_both_directions() {
    let (mut e, t) = attached();
    set_command(&mut e, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    let pattern: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(7)).collect();
    t.mem.write(0x1_0000, &pattern).unwrap();
    // RAM to edu (edu.rst's example), interrupt when done.
    dma(&mut e, 0x1_0000, EDU_DMA_BUFFER, 100, EDU_DMA_IRQ);
    assert_eq!(r64(&mut e, EDU_REG_DMA_CMD) & EDU_DMA_START, 0, "done");
    assert_eq!(&e.buffer()[..100], &pattern[..]);
    assert_eq!(r32(&mut e, EDU_REG_IRQ_STATUS), EDU_IRQ_DMA);
    assert!(t.line.level());
    w32(&mut e, EDU_REG_IRQ_ACK, EDU_IRQ_DMA);
    // The buffer through BAR0.
    let mut b = [0u8; 8];
    e.bar_read(0, EDU_DMA_BUFFER + 10, &mut b);
    assert_eq!(&b, &pattern[10..18]);
    e.bar_write(0, EDU_DMA_BUFFER + 0xFFE, &[0xAB, 0xCD]);
    let mut b = [0u8; 4];
    e.bar_read(0, EDU_DMA_BUFFER + 0xFFE, &mut b);
    assert_eq!(b, [0xFF; 4], "runs past the buffer: not the buffer");
    // Edu to RAM, part of the buffer, no interrupt; registers set with 4-byte halves.
    w32(&mut e, EDU_REG_DMA_SRC, (EDU_DMA_BUFFER + 0xFF0) as u32);
    w32(&mut e, EDU_REG_DMA_SRC + 4, 0);
    w32(&mut e, EDU_REG_DMA_DST, 0x1000);
    w32(&mut e, EDU_REG_DMA_DST + 4, 0);
    w32(&mut e, EDU_REG_DMA_COUNT, 16);
    assert_eq!(r64(&mut e, EDU_REG_DMA_DST), 0x1000);
    w32(&mut e, EDU_REG_DMA_CMD, (EDU_DMA_TO_RAM | EDU_DMA_START) as u32);
    assert_eq!(r32(&mut e, EDU_REG_DMA_CMD), EDU_DMA_TO_RAM as u32);
    let mut got = [0u8; 16];
    t.mem.read(0x1000, &mut got).unwrap();
    assert_eq!(&got[14..], &[0xAB, 0xCD]);
    assert_eq!(r32(&mut e, EDU_REG_IRQ_STATUS), 0);
    // The DMA write is seen by the dirty log like any other write.
    assert!(t.mem.take_dirty().contains(&1));
}

#[test]
fn dma_errors_leave_the_device_sane() {
    let (mut e, t) = attached();
    set_command(&mut e, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    t.mem.write(RAM - 8, &[0x11; 8]).unwrap();
    e.bar_write(0, EDU_DMA_BUFFER, &[0x22; 8]);
    let cases = [
        // (src, dst, count, cmd)
        (0xFEB0_0000, EDU_DMA_BUFFER, 8, 0),            // RAM side in the PCI hole
        (RAM - 4, EDU_DMA_BUFFER, 8, 0),                 // runs past the end of RAM
        (EDU_DMA_BUFFER, RAM - 4, 8, EDU_DMA_TO_RAM),    // likewise, toward RAM
        (EDU_DMA_BUFFER, u64::MAX - 3, 8, EDU_DMA_TO_RAM), // wraps the address space
        (0x1000, EDU_DMA_BUFFER + 0xFF8, 16, 0),         // runs past the buffer
        (0x1000, EDU_DMA_BUFFER, 4097, 0),               // larger than the buffer
        (0x1000, 0x1000, 8, 0),                          // device side not the buffer
        (0x1000, EDU_DMA_BUFFER, u64::MAX, 0),           // absurd count
    ];
    for (src, dst, count, cmd) in cases {
        dma(&mut e, src, dst, count, cmd | EDU_DMA_IRQ);
        assert_eq!(r64(&mut e, EDU_REG_DMA_CMD) & EDU_DMA_START, 0, "{src:#x}->{dst:#x}");
        assert_eq!(r32(&mut e, EDU_REG_IRQ_STATUS), EDU_IRQ_DMA, "completion still signalled");
        w32(&mut e, EDU_REG_IRQ_ACK, EDU_IRQ_DMA);
    }
    assert_eq!(&e.buffer()[..8], &[0x22; 8], "buffer untouched");
    let mut b = [0u8; 8];
    t.mem.read(RAM - 8, &mut b).unwrap();
    assert_eq!(b, [0x11; 8], "RAM untouched");
    // Without Bus Master Enable nothing moves either.
    set_command(&mut e, PCI_COMMAND_MEMORY);
    dma(&mut e, RAM - 8, EDU_DMA_BUFFER, 8, 0);
    assert_eq!(&e.buffer()[..8], &[0x22; 8]);
    // And the device still works.
    set_command(&mut e, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    dma(&mut e, RAM - 8, EDU_DMA_BUFFER, 8, 0);
    assert_eq!(&e.buffer()[..8], &[0x11; 8]);
    assert_eq!(r32(&mut e, EDU_REG_ID), EDU_ID);
}

#[test]
fn unattached_device_does_not_fail() {
    let mut e = Edu::new();
    set_command(&mut e, PCI_COMMAND_MASTER);
    dma(&mut e, 0, EDU_DMA_BUFFER, 8, EDU_DMA_IRQ);
    assert_eq!(e.irq_status(), EDU_IRQ_DMA);
    assert!(e.config().interrupt_status());
    // Attaching later drives the pending level.
    let t = TestLink::new(RAM);
    e.attach(t.link());
    assert!(t.line.level());
}

#[test]
fn on_the_bus() {
    let t = TestLink::new(RAM);
    let mut bus = PciBus::new();
    let devfn = DevFn::new(5, 0).unwrap();
    let edu = Arc::new(Mutex::new(Edu::new()));
    bus.plug(devfn, edu.clone(), t.link()).unwrap();
    assert_eq!(bus.config_read(devfn, 0, 4), 0x11e8_1234);
    bus.config_write(devfn, 0x10, 4, 0xFEA0_0000);
    bus.config_write(devfn, PCI_COMMAND as u8, 2, u32::from(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));
    let ev: Vec<_> = bus.drain_events().collect();
    let [PciEvent::Bar(change)] = ev[..] else { panic!("{ev:?}") };
    let region = change.new.unwrap();
    assert_eq!((region.index, region.address, region.size), (0, 0xFEA0_0000, EDU_BAR0_SIZE));

    // The machine's MMIO handler: lock this function only, access BAR 0 at an offset.
    let shared = bus.shared(devfn).unwrap();
    let mut b = [0u8; 4];
    lock_device(&shared).bar_read(0, EDU_REG_ID, &mut b);
    assert_eq!(u32::from_le_bytes(b), EDU_ID);
    lock_device(&shared).bar_write(0, EDU_REG_IRQ_RAISE, &1u32.to_le_bytes());
    assert!(t.line.level());
    assert_eq!(bus.with_device(devfn, |e: &mut Edu| e.irq_status()), Some(1));
    assert_eq!(edu.lock().unwrap().irq_status(), 1, "the typed handle sees the same device");

    // Platform reset: registers cleared, INTx released, BAR unmapped.
    bus.reset();
    assert!(!t.line.level());
    assert_eq!(edu.lock().unwrap().irq_status(), 0);
    let ev: Vec<_> = bus.drain_events().collect();
    assert!(matches!(ev[..], [PciEvent::Bar(c)] if c.new.is_none()));
}

#[test]
fn no_guest_access_panics() {
    let (mut e, _t) = attached();
    set_command(&mut e, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    let offsets = (0..0x100u64).chain([0x3_FFFF, 0x4_0000, 0x4_0FFC, 0x4_0FFF, 0x4_1000, 0xF_FFF8, 0xF_FFFF, u64::MAX - 3]);
    for off in offsets {
        for size in [0usize, 1, 2, 3, 4, 8] {
            for v in [0u8, 0xFF, 0x5A] {
                let mut b = vec![0u8; size];
                e.bar_read(0, off, &mut b);
                e.bar_write(0, off, &vec![v; size]);
            }
        }
    }
    for reg in 0..=255u8 {
        e.config_write(reg, 4, u32::MAX);
        e.config_read(reg, 4);
    }
}
