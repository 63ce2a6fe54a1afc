//! Board-level tests: interrupt routing (the PIT's IRQ0 through the PIC in virtual-wire mode
//! and through IOAPIC pin 2 to the local APIC, as Linux sets them up), IPIs between vCPUs,
//! PAM shadowing and the dirty log.

use super::{BoardSpec, PcBoard, VcpuBus};
use ferrite_cpu::bus::CpuBus;
use ferrite_memory::GuestMemory;
use std::sync::Arc;

fn board(cpus: u32) -> Arc<PcBoard> {
    let mem = GuestMemory::new(16 << 20, 0).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::mem::forget(rx);
    let spec = BoardSpec {
        apic_ids: (0..cpus).collect(),
        attention: (0..cpus).map(|_| Arc::new(ferrite_cpu::Attention::default())).collect(),
        serial: Box::new(std::io::sink()),
        debug_exit: None,
        events: tx,
        boot_order: Vec::new(),
        rtc_start_secs: crate::clock::wall_clock_secs(),
    };
    PcBoard::new(mem, spec).unwrap()
}

/// Programs PIT channel 0 as a rate generator with a 1 ms period.
fn start_pit(b: &mut VcpuBus) {
    b.io_write(0x43, 1, 0x34);
    b.io_write(0x40, 1, (1193 & 0xff) as u32);
    b.io_write(0x40, 1, (1193 >> 8) as u32);
}

fn wait_for_interrupt(b: &mut VcpuBus) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
    while std::time::Instant::now() < deadline {
        b.board.update_timers();
        if b.interrupt_pending() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    false
}

fn enable_lapic(b: &mut VcpuBus) {
    // LAPIC: software enable (SVR bit 8), LINT0 masked.
    b.mmio_write(0xfee0_00f0, 4, 0x1ff);
    b.mmio_write(0xfee0_0350, 4, 1 << 16);
}

#[test]
fn pit_through_pic() {
    let mut b = VcpuBus::new(board(1), 0);
    // ICW1-4: edge, cascade, vector base 0x20/0x28, 8086 mode; unmask IRQ0.
    for (port, v) in [(0x20, 0x11), (0x21, 0x20), (0x21, 4), (0x21, 1), (0xa0, 0x11), (0xa1, 0x28), (0xa1, 2), (0xa1, 1)] {
        b.io_write(port, 1, v);
    }
    b.io_write(0x21, 1, 0xfe);
    start_pit(&mut b);
    assert!(wait_for_interrupt(&mut b), "no IRQ0 through the PIC");
    assert_eq!(b.acknowledge_interrupt(), Some(0x20));
}

#[test]
fn pit_through_ioapic_and_lapic() {
    let mut b = VcpuBus::new(board(1), 0);
    // Mask everything on the PIC, as Linux does in symmetric I/O mode.
    b.io_write(0x21, 1, 0xff);
    b.io_write(0xa1, 1, 0xff);
    enable_lapic(&mut b);
    // IOAPIC pin 2: vector 0x30, fixed, physical destination 0, edge, unmasked.
    b.mmio_write(0xfec0_0000, 4, 0x10 + 2 * 2);
    b.mmio_write(0xfec0_0010, 4, 0x30);
    b.mmio_write(0xfec0_0000, 4, 0x10 + 2 * 2 + 1);
    b.mmio_write(0xfec0_0010, 4, 0);
    start_pit(&mut b);
    assert!(wait_for_interrupt(&mut b), "no IRQ0 through the IOAPIC");
    assert_eq!(b.acknowledge_interrupt(), Some(0x30));
}

#[test]
fn ipis_reach_other_cpus() {
    let board = board(3);
    let mut bsp = VcpuBus::new(board.clone(), 0);
    let mut ap1 = VcpuBus::new(board.clone(), 1);
    let mut ap2 = VcpuBus::new(board.clone(), 2);
    for b in [&mut bsp, &mut ap1, &mut ap2] {
        enable_lapic(b);
    }
    // Fixed IPI, vector 0x40, physical destination APIC ID 2.
    bsp.mmio_write(0xfee0_0310, 4, 2 << 24);
    bsp.mmio_write(0xfee0_0300, 4, 0x40);
    assert!(ap2.interrupt_pending() && !ap1.interrupt_pending() && !bsp.interrupt_pending());
    assert_eq!(ap2.acknowledge_interrupt(), Some(0x40));
    // Until its EOI, vector 0x40 blocks the rest of its priority class on CPU 2.
    ap2.mmio_write(0xfee0_00b0, 4, 0);
    // All-excluding-self shorthand.
    bsp.mmio_write(0xfee0_0300, 4, 0x41 | 3 << 18);
    assert!(ap1.interrupt_pending() && ap2.interrupt_pending() && !bsp.interrupt_pending());
    // INIT then SIPI to APIC ID 1: latched for its vCPU thread, which was kicked.
    bsp.mmio_write(0xfee0_0310, 4, 1 << 24);
    bsp.mmio_write(0xfee0_0300, 4, 5 << 8 | 1 << 14);
    bsp.mmio_write(0xfee0_0300, 4, 6 << 8 | 0x9a);
    assert!(ap1.exit_requested());
    let (nmi, init, sipi) = ap1.take_lapic_signals();
    assert!(!nmi && init && sipi == Some(0x9a));
}

#[test]
fn pam_shadows_the_bios_window() {
    let board = board(1);
    let mut b = VcpuBus::new(board.clone(), 0);
    let pam0 = |v: u32| board.pci_config_write(ferrite_hw::pci::I440FX_DEVFN, ferrite_hw::pci::I440FX_PAM0 as u8, 1, v);
    // DRAM read/write (what a BIOS leaves, and what direct kernel boot sets up): writes stick.
    pam0(0x30);
    b.mmio_write(0xf_0000, 1, 0x5a);
    assert_eq!(board.mem.load(0xf_0000, 1), Some(0x5a));
    // PAM0 high nibble 0: the 0xF0000 segment goes to the PCI bus (nothing there).
    pam0(0x00);
    assert_eq!(b.phys_page(0xf_0000), ferrite_cpu::PhysPage::Mmio);
    assert_eq!(b.mmio_read(0xf_0000, 1) as u8, 0xff);
    // Read-only DRAM.
    pam0(0x10);
    assert!(matches!(b.phys_page(0xf_0000), ferrite_cpu::PhysPage::Rom(_)));
    assert_eq!(board.mem.load(0xf_0000, 1), Some(0x5a));
}

#[test]
fn dirty_log_sees_dma_and_stores() {
    let board = board(1);
    board.mem.take_dirty();
    let dma = ferrite_memory::Dma::new(board.mem.clone());
    dma.write(0x7000, &[1, 2, 3]).unwrap();
    dma.write(0x9fff, &[1, 2]).unwrap();
    assert!(dma.write(0x4000_0000, &[1]).is_err(), "outside RAM: an error for the device");
    assert_eq!(board.mem.take_dirty(), vec![7, 9, 10]);
}
