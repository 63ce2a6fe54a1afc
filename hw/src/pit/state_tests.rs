use super::*;
use crate::testing::SharedLine;
use ferrite_persist::{load, save, Persist, RestoreError};

fn pit() -> (Pit<SharedLine>, SharedLine) {
    let line = SharedLine::default();
    (Pit::new(line.clone()), line)
}

/// Channel 0 as Linux's periodic tick, channel 2 gated on with half a count written, a
/// latched count on channel 1.
fn busy_pit() -> (Pit<SharedLine>, SharedLine) {
    let (mut p, line) = pit();
    p.write(3, 0x34, 0); // ch0 mode 2, LSB then MSB
    p.write(0, 0x9c, 0);
    p.write(0, 0x2e, 0); // 11932: 100 Hz
    p.write(3, 0x76, 100); // ch1 mode 3
    p.write(1, 0x00, 100);
    p.write(1, 0x10, 100);
    p.write(3, 0x40, 5_000); // latch ch1
    let _ = (p.read(1, 6_000), p.read(1, 9_999)); // the latch, LSB then MSB
    p.write(3, 0x40, 7_000);
    let _ = p.read(1, 7_500); // LSB of the latch: the MSB is next
    p.write_port_b(0x03, 8_000);
    p.write(3, 0xb0, 8_000); // ch2 mode 0
    p.write(2, 0x34, 8_000); // LSB only so far
    p.update(10_000_000);
    (p, line)
}

#[test]
fn a_restored_pit_carries_on_like_the_original() {
    let (mut a, aline) = busy_pit();
    let (mut b, bline) = pit();
    load(&mut b, &save(&a, "pit")).unwrap();
    assert_eq!(bline.level(), aline.level());
    assert_eq!(b.next_event(10_000_000), a.next_event(10_000_000));
    let t = 12_000_000;
    for off in 0..3 {
        assert_eq!(a.read(off, t), b.read(off, t), "counter {off}");
        assert_eq!(a.read(off, t), b.read(off, t), "counter {off}");
    }
    assert_eq!(a.read_port_b(t), b.read_port_b(t));
    a.write(2, 0x12, t);
    b.write(2, 0x12, t);
    for t in [t + 1_000, 25_000_000, 40_000_000] {
        a.update(t);
        b.update(t);
        assert_eq!(aline.level(), bline.level());
        assert_eq!(a.next_event(t), b.next_event(t));
        assert_eq!((a.read(2, t), a.read_port_b(t)), (b.read(2, t), b.read_port_b(t)));
    }
}

#[test]
fn a_corrupt_state_is_refused_and_changes_nothing() {
    let (a, _) = busy_pit();
    let (mut b, bline) = pit();
    let fresh = b.save();
    let mut s = a.save();
    s.channels[0].initial_count = 0;
    assert!(matches!(b.restore(s), Err(RestoreError::Invalid { field: "initial_count", .. })));
    let mut s = a.save();
    s.channels[2].access = 0;
    assert!(b.restore(s).is_err());
    assert_eq!(b.save(), fresh);
    assert_eq!(bline.drives(), 0);
}
