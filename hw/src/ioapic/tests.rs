use super::*;
use crate::lapic::Lapic;

fn reg_read(io: &mut Ioapic, index: u8) -> u32 {
    io.write(IOREGSEL, 4, u64::from(index));
    io.read(IOWIN, 4) as u32
}

fn reg_write(io: &mut Ioapic, index: u8, value: u32) {
    io.write(IOREGSEL, 4, u64::from(index));
    io.write(IOWIN, 4, u64::from(value));
}

/// Programs `pin` the way Linux does: vector, physical destination, trigger.
fn program(io: &mut Ioapic, pin: u8, low: u32, dest: u8) {
    reg_write(io, IOREDTBL + 2 * pin + 1, u32::from(dest) << 24);
    reg_write(io, IOREDTBL + 2 * pin, low);
}

fn msgs(io: &mut Ioapic) -> Vec<InterruptMessage> {
    io.drain_messages().collect()
}

#[test]
fn identification_registers() {
    let mut io = Ioapic::new(2);
    assert_eq!(reg_read(&mut io, IOAPICID), 2 << 24);
    assert_eq!(reg_read(&mut io, IOAPICVER), 0x0017_0011);
    assert_eq!(reg_read(&mut io, IOAPICVER) >> 16 & 0xFF, 23, "24 entries");
    assert_eq!(reg_read(&mut io, IOAPICARB), 2 << 24);
    reg_write(&mut io, IOAPICID, 0x0F00_0000);
    assert_eq!(reg_read(&mut io, IOAPICID), 0x0F00_0000);
    reg_write(&mut io, IOAPICVER, 0);
    assert_eq!(reg_read(&mut io, IOAPICVER), 0x0017_0011, "read-only");
    assert_eq!(io.read(IOREGSEL, 4), u64::from(IOAPICVER));
}

#[test]
fn entries_reset_masked() {
    let mut io = Ioapic::new(0);
    for pin in 0..24u8 {
        assert_eq!(reg_read(&mut io, IOREDTBL + 2 * pin), 1 << 16);
        assert_eq!(reg_read(&mut io, IOREDTBL + 2 * pin + 1), 0);
    }
    io.set_irq(4, true);
    assert!(msgs(&mut io).is_empty());
}

#[test]
fn edge_interrupt_on_rising_edge() {
    let mut io = Ioapic::new(0);
    program(&mut io, 4, 0x34, 1);
    assert_eq!(reg_read(&mut io, IOREDTBL + 9), 1 << 24);
    io.set_irq(4, true);
    io.set_irq(4, true);
    io.set_irq(4, false);
    let m = msgs(&mut io);
    assert_eq!(
        m,
        vec![InterruptMessage {
            vector: 0x34,
            mode: DeliveryMode::Fixed,
            logical: false,
            destination: 1,
            level_triggered: false,
        }]
    );
    let mut lapic = Lapic::new(1, false);
    lapic.mmio_write(0xF0, 4, 0x1FF, 0);
    assert!(lapic.matches_destination(m[0].destination, m[0].logical));
    lapic.deliver(&m[0]);
    assert_eq!(lapic.has_interrupt(), Some(0x34));
}

#[test]
fn masked_edges_are_lost() {
    let mut io = Ioapic::new(0);
    program(&mut io, 1, 0x10031, 0);
    io.set_irq(1, true);
    io.set_irq(1, false);
    reg_write(&mut io, IOREDTBL + 2, 0x31);
    assert!(msgs(&mut io).is_empty());
}

#[test]
fn level_interrupt_remote_irr_and_eoi() {
    let mut io = Ioapic::new(0);
    program(&mut io, 11, 0xA000 | 0x41, 0); // level, active low, vector 0x41
    io.set_irq(11, true);
    let m = msgs(&mut io);
    assert_eq!(m.len(), 1);
    assert!(m[0].level_triggered);
    let low = reg_read(&mut io, IOREDTBL + 22);
    assert_ne!(low & (1 << 14), 0, "remote IRR set");
    assert_ne!(low & (1 << 13), 0, "polarity reads back");
    io.set_irq(11, true);
    assert!(msgs(&mut io).is_empty(), "no resend before EOI");
    io.eoi(0x41);
    assert_eq!(msgs(&mut io).len(), 1, "line still high: resent after EOI");
    io.set_irq(11, false);
    io.eoi(0x41);
    assert!(msgs(&mut io).is_empty());
    assert_eq!(reg_read(&mut io, IOREDTBL + 22) & (1 << 14), 0);
    io.eoi(0x99); // unrelated vector: nothing
}

#[test]
fn remote_irr_is_read_only() {
    let mut io = Ioapic::new(0);
    reg_write(&mut io, IOREDTBL, 0x8000 | 0x4000 | 0x1000 | 0x30);
    assert_eq!(reg_read(&mut io, IOREDTBL), 0x8030);
}

#[test]
fn unmasking_an_asserted_level_line_delivers() {
    let mut io = Ioapic::new(0);
    program(&mut io, 10, 0x18000 | 0x50, 0);
    io.set_irq(10, true);
    assert!(msgs(&mut io).is_empty());
    reg_write(&mut io, IOREDTBL + 20, 0x8000 | 0x50);
    assert_eq!(msgs(&mut io).len(), 1);
}

#[test]
fn eoi_through_the_lapic() {
    let mut io = Ioapic::new(0);
    let mut lapic = Lapic::new(0, true);
    lapic.mmio_write(0xF0, 4, 0x1FF, 0);
    program(&mut io, 9, 0x8000 | 0x59, 0);
    io.set_irq(9, true);
    for m in io.drain_messages() {
        lapic.deliver(&m);
    }
    assert_eq!(lapic.acknowledge(), 0x59);
    io.set_irq(9, false);
    lapic.mmio_write(0xB0, 4, 0, 0);
    for out in lapic.drain_output() {
        if let crate::lapic::LapicOutput::Eoi(v) = out {
            io.eoi(v);
        }
    }
    assert_eq!(reg_read(&mut io, IOREDTBL + 18) & (1 << 14), 0);
}

#[test]
fn delivery_modes_and_logical_destination() {
    let mut io = Ioapic::new(0);
    program(&mut io, 2, 0x0800 | 0x0100 | 0x30, 0x03); // lowest priority, logical
    io.set_irq(2, true);
    let m = msgs(&mut io);
    assert_eq!(m[0].mode, DeliveryMode::LowestPriority);
    assert!(m[0].logical);
    assert_eq!(m[0].destination, 3);
    // NMI with the level bit set still behaves as an edge.
    program(&mut io, 3, 0x8000 | 0x0400, 0);
    io.set_irq(3, true);
    io.set_irq(3, true);
    let m = msgs(&mut io);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].mode, DeliveryMode::Nmi);
    assert!(!m[0].level_triggered);
    assert_eq!(reg_read(&mut io, IOREDTBL + 6) & (1 << 14), 0);
    // ExtINT (pin 0 in virtual-wire-through-IOAPIC setups).
    program(&mut io, 0, 0x0700, 0);
    io.set_irq(0, true);
    assert_eq!(msgs(&mut io)[0].mode, DeliveryMode::ExtInt);
    // Reserved delivery mode 0b011: dropped.
    program(&mut io, 5, 0x0300 | 0x40, 0);
    io.set_irq(5, true);
    assert!(msgs(&mut io).is_empty());
}

#[test]
fn narrow_accesses() {
    let mut io = Ioapic::new(0);
    io.write(IOREGSEL, 1, 0x10);
    io.write(IOWIN, 1, 0x42);
    io.write(IOWIN + 2, 1, 0x00); // unmask: byte 2 holds bit 16
    assert_eq!(reg_read(&mut io, 0x10), 0x42);
    io.write(IOREGSEL, 1, 0x11);
    io.write(IOWIN + 3, 1, 0x07);
    assert_eq!(io.read(IOWIN + 3, 1), 0x07);
    assert_eq!(io.read(IOWIN, 4), 0x0700_0000);
    assert_eq!(io.read(0x20, 4), 0, "nothing else decoded");
}

#[test]
fn no_guest_access_panics() {
    let mut io = Ioapic::new(0);
    for index in 0..=255u32 {
        for v in [0u64, u64::MAX, 0x8000, 0x1_8F00] {
            for size in [0u8, 1, 2, 3, 4, 8] {
                for offset in [0u64, 1, 3, 0x10, 0x11, 0x13, 0x14, 0x40, 0xFFF] {
                    io.write(IOREGSEL, 4, u64::from(index));
                    io.write(offset, size, v);
                    io.read(offset, size);
                }
            }
        }
    }
    for pin in 0..64 {
        io.set_irq(pin, true);
        io.eoi(pin as u8);
        io.set_irq(pin, false);
    }
    assert!(io.drain_messages().count() <= MESSAGE_QUEUE_LIMIT);
}
