use super::*;
use crate::testing::SharedLine;
use ferrite_persist::{load, save, Persist, RestoreError};

fn pair() -> (PicPair<SharedLine>, SharedLine) {
    let line = SharedLine::default();
    (PicPair::new(line.clone()), line)
}

/// Half-way through a slave re-initialization, with requests pending on both chips.
fn busy_pair() -> (PicPair<SharedLine>, SharedLine) {
    let (mut pic, line) = pair();
    for (port, v) in [(0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0xa0, 0x11), (0xa1, 0x28), (0xa1, 0x02), (0xa1, 0x01)] {
        pic.write_port(port, v);
    }
    pic.write_port(0x4d1, 0x0c); // IRQ10/11 level
    pic.set_irq(4, true);
    assert_eq!(pic.acknowledge(), 0x24);
    pic.set_irq(1, true);
    pic.set_irq(10, true);
    pic.write_port(0x20, 0x0b); // OCW3: read ISR
    pic.write_port(0xa1, 0xf3); // IMR
    assert!(line.level());
    (pic, line)
}

#[test]
fn a_restored_pair_carries_on_like_the_original() {
    let (mut a, _) = busy_pair();
    let saved = save(&a, "pic");
    let (mut b, bline) = pair();
    load(&mut b, &saved).unwrap();
    assert!(bline.level(), "INTR is re-driven from the restored state");
    assert_eq!(b.save(), a.save());
    for port in [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1] {
        assert_eq!(a.read_port(port), b.read_port(port), "port {port:#x}");
    }
    for _ in 0..3 {
        assert_eq!(a.acknowledge(), b.acknowledge());
        a.write_port(0x20, 0x20);
        b.write_port(0x20, 0x20);
        assert_eq!(a.has_interrupt(), b.has_interrupt());
    }
    a.set_irq(10, false);
    b.set_irq(10, false);
    assert_eq!(a.read_port(0xa0), b.read_port(0xa0));
}

#[test]
fn a_corrupt_state_is_refused_and_changes_nothing() {
    let (a, _) = busy_pair();
    let (mut b, bline) = pair();
    let mut s = a.save();
    s.slave.lowest_priority_irq = 8;
    let e = b.restore(s).unwrap_err();
    assert!(matches!(e, RestoreError::Invalid { field: "lowest_priority_irq", .. }), "{e}");
    let mut s = a.save();
    s.master.elcr = 0x01;
    assert!(b.restore(s).is_err());
    assert_eq!(b.save(), pair().0.save());
    assert_eq!(bline.drives(), 0);
}
