use super::*;
use ferrite_persist::{load, save, Persist, RestoreError};

fn reg_write(io: &mut Ioapic, index: u8, value: u32) {
    io.write(IOREGSEL, 4, u64::from(index));
    io.write(IOWIN, 4, u64::from(value));
}

/// A level-triggered pin delivered and awaiting its EOI, an edge pin, a message not yet
/// drained, IOREGSEL pointing into the table.
fn busy() -> Ioapic {
    let mut io = Ioapic::new(0);
    reg_write(&mut io, IOREDTBL + 2 * 10, 0x41 | RTE_LEVEL as u32);
    reg_write(&mut io, IOREDTBL + 2 * 4, 0x34);
    reg_write(&mut io, IOREDTBL + 2 * 4 + 1, 1 << 24);
    io.set_irq(10, true);
    io.set_irq(4, true);
    io.write(IOREGSEL, 4, u64::from(IOREDTBL + 2 * 10));
    io
}

#[test]
fn a_restored_ioapic_carries_on_like_the_original() {
    let mut a = busy();
    let mut b = Ioapic::new(0);
    load(&mut b, &save(&a, "ioapic")).unwrap();
    assert_eq!(b.io_read(), a.io_read());
    assert_eq!(b.drain_messages().collect::<Vec<_>>(), a.drain_messages().collect::<Vec<_>>());
    for io in [&mut a, &mut b] {
        io.set_irq(4, false);
        io.set_irq(4, true);
        io.eoi(0x41); // pin 10 still asserted: sent again
    }
    let sent: Vec<_> = a.drain_messages().collect();
    assert_eq!(sent.len(), 2);
    assert_eq!(b.drain_messages().collect::<Vec<_>>(), sent);
    assert_eq!(b.redirection(10), a.redirection(10));
}

impl Ioapic {
    fn io_read(&mut self) -> u64 {
        self.read(IOWIN, 4)
    }
}

#[test]
fn a_corrupt_state_is_refused_and_changes_nothing() {
    let mut b = Ioapic::new(0);
    let fresh = b.save();
    let mut s = busy().save();
    s.redirection[3] |= RTE_DELIVERY_PENDING;
    assert!(matches!(b.restore(s), Err(RestoreError::Invalid { field: "redirection", .. })));
    let mut s = busy().save();
    s.input_levels = 1 << 24;
    assert!(b.restore(s).is_err());
    assert_eq!(b.save(), fresh);
}
