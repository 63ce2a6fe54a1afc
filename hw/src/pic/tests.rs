use super::*;
use std::cell::RefCell;
use std::rc::Rc;

/// Records every level driven on the INTR line.
#[derive(Clone, Default)]
struct Recorder(Rc<RefCell<Vec<bool>>>);

impl IrqLine for Recorder {
    fn set_level(&self, level: bool) {
        self.0.borrow_mut().push(level);
    }
}

impl Recorder {
    fn level(&self) -> bool {
        self.0.borrow().last().copied().unwrap_or(false)
    }
}

/// The initialization Linux and SeaBIOS perform: master at 0x20, slave at 0x28 (Linux's
/// legacy vectors 0x30/0x38 work the same way).
fn init_pair(master_base: u8, slave_base: u8, icw4: u8) -> (PicPair<Recorder>, Recorder) {
    let line = Recorder::default();
    let mut pic = PicPair::new(line.clone());
    pic.write_port(0x20, 0x11); // ICW1: edge, cascade, ICW4 needed
    pic.write_port(0x21, master_base); // ICW2
    pic.write_port(0x21, 0x04); // ICW3: slave on IR2
    pic.write_port(0x21, icw4); // ICW4: 8086 mode
    pic.write_port(0xa0, 0x11);
    pic.write_port(0xa1, slave_base);
    pic.write_port(0xa1, 0x02); // ICW3: slave identity 2
    pic.write_port(0xa1, 0x01);
    (pic, line)
}

fn eoi_master(pic: &mut PicPair<Recorder>) {
    pic.write_port(0x20, 0x20);
}

fn read_isr(pic: &mut PicPair<Recorder>, port: u16) -> u8 {
    pic.write_port(port, 0x0b);
    let v = pic.read_port(port);
    pic.write_port(port, 0x0a);
    v
}

#[test]
fn init_sequence_clears_imr_and_sets_vectors() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x01);
    assert_eq!(pic.read_port(0x21), 0);
    assert_eq!(pic.read_port(0xa1), 0);
    pic.write_port(0x21, 0xfb);
    pic.write_port(0xa1, 0xff);
    assert_eq!(pic.read_port(0x21), 0xfb);
    assert_eq!(pic.read_port(0xa1), 0xff);
    pic.write_port(0x21, 0xfe); // unmask IRQ0 only
    pic.set_irq(0, true);
    assert!(pic.has_interrupt());
    assert_eq!(pic.acknowledge(), 0x20);
    // Re-initialization resets IMR.
    pic.write_port(0x20, 0x11);
    pic.write_port(0x21, 0x30);
    pic.write_port(0x21, 0x04);
    pic.write_port(0x21, 0x01);
    assert_eq!(pic.read_port(0x21), 0);
    assert_eq!(read_isr(&mut pic, 0x20), 0, "ICW1 clears ISR");
}

#[test]
fn edge_triggered_irq_is_delivered_once_per_edge() {
    let (mut pic, line) = init_pair(0x20, 0x28, 0x01);
    assert!(!pic.has_interrupt());
    pic.set_irq(0, true);
    assert!(pic.has_interrupt());
    assert!(line.level());
    assert_eq!(pic.read_port(0x20), 0x01, "IRR shows IRQ0");
    assert_eq!(pic.acknowledge(), 0x20);
    assert!(!line.level());
    assert_eq!(read_isr(&mut pic, 0x20), 0x01);
    assert_eq!(pic.read_port(0x20), 0x00, "edge request cleared by INTA");
    eoi_master(&mut pic);
    assert_eq!(read_isr(&mut pic, 0x20), 0x00);
    // Line still high: no new edge, no interrupt.
    pic.set_irq(0, true);
    assert!(!pic.has_interrupt());
    pic.set_irq(0, false);
    pic.set_irq(0, true);
    assert!(pic.has_interrupt());
    assert_eq!(pic.acknowledge(), 0x20);
}

#[test]
fn pulse_from_a_device_latches_an_edge() {
    let (mut pic, _) = init_pair(0x08, 0x70, 0x01);
    pic.set_irq(4, true);
    pic.set_irq(4, false);
    assert!(pic.has_interrupt());
    assert_eq!(pic.acknowledge(), 0x0c);
}

#[test]
fn fixed_priority_and_nesting() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x01);
    pic.set_irq(3, true);
    pic.set_irq(1, true);
    assert_eq!(pic.acknowledge(), 0x21, "IRQ1 beats IRQ3");
    // IRQ3 is lower priority than the in-service IRQ1: held off.
    assert!(!pic.has_interrupt());
    // IRQ0 is higher: nests.
    pic.set_irq(0, true);
    assert!(pic.has_interrupt());
    assert_eq!(pic.acknowledge(), 0x20);
    assert_eq!(read_isr(&mut pic, 0x20), 0x03);
    eoi_master(&mut pic); // clears IRQ0 (highest in service)
    assert_eq!(read_isr(&mut pic, 0x20), 0x02);
    assert!(!pic.has_interrupt());
    eoi_master(&mut pic);
    assert!(pic.has_interrupt());
    assert_eq!(pic.acknowledge(), 0x23);
}

#[test]
fn specific_eoi_clears_only_that_level() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x01);
    pic.set_irq(5, true);
    assert_eq!(pic.acknowledge(), 0x25);
    pic.set_irq(1, true);
    assert_eq!(pic.acknowledge(), 0x21);
    pic.write_port(0x20, 0x65); // specific EOI, level 5
    assert_eq!(read_isr(&mut pic, 0x20), 0x02);
}

#[test]
fn imr_masks_delivery_but_not_irr() {
    let (mut pic, line) = init_pair(0x20, 0x28, 0x01);
    pic.write_port(0x21, 0x02);
    pic.set_irq(1, true);
    assert!(!pic.has_interrupt());
    assert!(!line.level());
    assert_eq!(pic.read_port(0x20), 0x02);
    pic.write_port(0x21, 0x00);
    assert!(pic.has_interrupt());
    assert!(line.level());
}

#[test]
fn slave_interrupt_cascades_through_irq2() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x01);
    pic.set_irq(12, true);
    assert!(pic.has_interrupt());
    assert_eq!(
        pic.read_port(0x20) & 0x04,
        0x04,
        "master IRR shows the cascade"
    );
    assert_eq!(pic.acknowledge(), 0x2c);
    assert_eq!(read_isr(&mut pic, 0x20), 0x04);
    assert_eq!(read_isr(&mut pic, 0xa0), 0x10);
    // Linux's order: EOI the slave, then the master.
    pic.write_port(0xa0, 0x20);
    eoi_master(&mut pic);
    assert_eq!(read_isr(&mut pic, 0x20), 0);
    assert_eq!(read_isr(&mut pic, 0xa0), 0);
    assert!(!pic.has_interrupt());
}

#[test]
fn masking_irq2_masks_the_whole_slave() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x01);
    pic.write_port(0x21, 0x04);
    pic.set_irq(8, true);
    assert!(!pic.has_interrupt());
    pic.write_port(0x21, 0x00);
    assert_eq!(pic.acknowledge(), 0x28);
}

#[test]
fn second_slave_request_waits_for_master_eoi_then_arrives() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x01);
    pic.set_irq(12, true);
    assert_eq!(pic.acknowledge(), 0x2c);
    pic.set_irq(8, true); // higher priority than the in-service IRQ12
    assert!(!pic.has_interrupt(), "master IR2 is in service");
    eoi_master(&mut pic);
    assert!(pic.has_interrupt());
    assert_eq!(pic.acknowledge(), 0x28);
}

#[test]
fn special_fully_nested_mode_lets_higher_slave_requests_nest() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x11);
    pic.set_irq(12, true);
    assert_eq!(pic.acknowledge(), 0x2c);
    pic.set_irq(8, true);
    assert!(pic.has_interrupt());
    assert_eq!(pic.acknowledge(), 0x28);
    // A lower-priority slave request still waits.
    pic.set_irq(14, true);
    assert!(!pic.has_interrupt());
}

#[test]
fn elcr_makes_inputs_level_triggered() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x01);
    pic.write_port(0x4d0, 0xff);
    pic.write_port(0x4d1, 0xff);
    assert_eq!(pic.read_port(0x4d0), 0xf8, "IRQ0-2 are edge only");
    assert_eq!(pic.read_port(0x4d1), 0xde, "IRQ8 and IRQ13 are edge only");
    pic.write_port(0x4d0, 0x00);
    pic.write_port(0x4d1, 0x08); // IRQ11 level
    pic.set_irq(11, true);
    assert_eq!(pic.acknowledge(), 0x2b);
    pic.write_port(0xa0, 0x20);
    eoi_master(&mut pic);
    // Still asserted: a level input requests again after EOI.
    assert!(pic.has_interrupt());
    assert_eq!(pic.acknowledge(), 0x2b);
    // The handler quiets the device before its EOIs (the usual order): nothing follows.
    pic.set_irq(11, false);
    assert_eq!(pic.read_port(0xa0), 0, "slave IRR follows the level");
    pic.write_port(0xa0, 0x20);
    eoi_master(&mut pic);
    assert!(!pic.has_interrupt());
}

#[test]
fn ltim_makes_every_input_level_triggered() {
    let line = Recorder::default();
    let mut pic = PicPair::new(line);
    pic.write_port(0x20, 0x19); // ICW1 with LTIM
    pic.write_port(0x21, 0x40);
    pic.write_port(0x21, 0x04);
    pic.write_port(0x21, 0x01);
    pic.set_irq(3, true);
    pic.set_irq(3, false);
    assert!(!pic.has_interrupt());
}

#[test]
fn withdrawn_level_request_gives_spurious_irq7() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x01);
    pic.write_port(0x4d0, 0x20); // IRQ5 level
    pic.set_irq(5, true);
    assert!(pic.has_interrupt());
    pic.set_irq(5, false); // gone before INTA
    assert_eq!(pic.acknowledge(), 0x27);
    assert_eq!(read_isr(&mut pic, 0x20), 0, "spurious IRQ7 sets no ISR bit");
}

#[test]
fn masked_before_inta_gives_spurious_irq7() {
    let (mut pic, _) = init_pair(0x08, 0x70, 0x01);
    assert_eq!(pic.acknowledge(), 0x0f, "nothing pending at all");
    pic.set_irq(1, true);
    pic.write_port(0x21, 0x02);
    assert_eq!(pic.acknowledge(), 0x0f);
}

#[test]
fn withdrawn_slave_request_gives_spurious_irq15() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x01);
    pic.write_port(0x4d1, 0x08); // IRQ11 level
    pic.set_irq(11, true);
    assert!(pic.has_interrupt());
    pic.set_irq(11, false);
    // The master latched IR2; the slave has nothing: IR7 of the slave.
    assert_eq!(pic.acknowledge(), 0x2f);
    assert_eq!(read_isr(&mut pic, 0xa0), 0);
    assert_eq!(
        read_isr(&mut pic, 0x20),
        0x04,
        "the master still needs its EOI"
    );
    eoi_master(&mut pic);
    assert!(!pic.has_interrupt());
}

#[test]
fn auto_eoi_leaves_isr_clear() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x03);
    pic.set_irq(1, true);
    assert_eq!(pic.acknowledge(), 0x21);
    assert_eq!(read_isr(&mut pic, 0x20), 0);
    pic.set_irq(3, true);
    assert!(pic.has_interrupt(), "nothing in service blocks IRQ3");
    assert_eq!(pic.acknowledge(), 0x23);
}

#[test]
fn rotate_on_aeoi_rotates_priority() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x03);
    pic.write_port(0x20, 0x80); // set rotate in AEOI mode
    pic.set_irq(0, true);
    assert_eq!(pic.acknowledge(), 0x20);
    pic.set_irq(0, false);
    pic.set_irq(0, true);
    pic.set_irq(4, true);
    assert_eq!(pic.acknowledge(), 0x24, "IRQ0 now has the lowest priority");
    pic.write_port(0x20, 0x00); // clear rotate in AEOI
    assert_eq!(pic.acknowledge(), 0x20);
}

#[test]
fn rotate_on_nonspecific_eoi() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x01);
    pic.set_irq(0, true);
    assert_eq!(pic.acknowledge(), 0x20);
    pic.write_port(0x20, 0xa0); // rotate on non-specific EOI
    assert_eq!(read_isr(&mut pic, 0x20), 0);
    pic.set_irq(0, false);
    pic.set_irq(0, true);
    pic.set_irq(1, true);
    assert_eq!(pic.acknowledge(), 0x21, "IRQ1 is now the highest priority");
}

#[test]
fn set_priority_and_rotate_on_specific_eoi() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x01);
    pic.write_port(0x20, 0xc3); // IRQ3 lowest, so IRQ4 highest
    pic.set_irq(0, true);
    pic.set_irq(5, true);
    assert_eq!(pic.acknowledge(), 0x25);
    pic.write_port(0x20, 0xe5); // rotate on specific EOI 5: IRQ5 lowest, IRQ6 highest
    assert_eq!(read_isr(&mut pic, 0x20), 0);
    pic.set_irq(6, true);
    assert_eq!(pic.acknowledge(), 0x26);
}

#[test]
fn special_mask_mode_enables_lower_levels() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x01);
    pic.set_irq(3, true);
    assert_eq!(pic.acknowledge(), 0x23);
    pic.set_irq(5, true);
    assert!(!pic.has_interrupt(), "fully nested: IRQ5 waits");
    pic.write_port(0x21, 0x08); // mask IRQ3
    pic.write_port(0x20, 0x68); // OCW3: set special mask mode
    assert!(pic.has_interrupt());
    assert_eq!(pic.acknowledge(), 0x25);
    pic.write_port(0x20, 0x48); // reset special mask mode
    pic.set_irq(6, true);
    assert!(!pic.has_interrupt());
}

#[test]
fn poll_command_reads_and_acknowledges() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x01);
    pic.write_port(0x20, 0x0c);
    assert_eq!(pic.read_port(0x20), 0x00, "nothing pending");
    pic.set_irq(6, true);
    pic.write_port(0x20, 0x0c);
    assert_eq!(pic.read_port(0x20), 0x86);
    assert_eq!(read_isr(&mut pic, 0x20), 0x40, "poll acts as INTA");
    // The poll lasts for one read only.
    assert_eq!(pic.read_port(0x20), 0x00);
}

#[test]
fn icw1_needs_a_fresh_edge() {
    let (mut pic, _) = init_pair(0x20, 0x28, 0x01);
    pic.write_port(0x21, 0xff);
    pic.set_irq(4, true);
    let (_, _) = (pic.read_port(0x20), 0);
    pic.write_port(0x20, 0x11);
    pic.write_port(0x21, 0x20);
    pic.write_port(0x21, 0x04);
    pic.write_port(0x21, 0x01);
    assert!(!pic.has_interrupt(), "the edge latch was reset");
    pic.set_irq(4, false);
    pic.set_irq(4, true);
    assert_eq!(pic.acknowledge(), 0x24);
}

#[test]
fn single_mode_without_icw4() {
    let mut pic = PicPair::default();
    pic.write(PicPort::Master, 0, 0x12); // ICW1: single, no ICW4
    pic.write(PicPort::Master, 1, 0x40);
    pic.write(PicPort::Master, 1, 0xfe); // OCW1, not ICW3
    assert_eq!(pic.read(PicPort::Master, 1), 0xfe);
    pic.set_irq(0, true);
    assert_eq!(pic.acknowledge(), 0x40);
}

#[test]
fn intr_line_follows_pending_state() {
    let (mut pic, line) = init_pair(0x20, 0x28, 0x01);
    pic.set_irq(9, true);
    assert!(line.level());
    pic.acknowledge();
    assert!(!line.level());
    assert_eq!(*line.0.borrow(), vec![true, false]);
}

#[test]
fn decode_maps_absolute_ports() {
    assert_eq!(
        PicPair::<crate::NoIrq>::decode(0x21),
        Some((PicPort::Master, 1))
    );
    assert_eq!(
        PicPair::<crate::NoIrq>::decode(0xa0),
        Some((PicPort::Slave, 0))
    );
    assert_eq!(
        PicPair::<crate::NoIrq>::decode(0x4d1),
        Some((PicPort::Elcr, 1))
    );
    assert_eq!(PicPair::<crate::NoIrq>::decode(0x22), None);
    let mut pic = PicPair::default();
    assert_eq!(pic.read_port(0x1234), 0xff);
    pic.write_port(0x1234, 0x55);
}

#[test]
fn any_guest_input_is_safe() {
    let mut pic = PicPair::default();
    let mut seed = 0x1234_5678u32;
    for _ in 0..20_000 {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let r = seed >> 8;
        let port = [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1][(r % 6) as usize];
        match (r >> 3) % 5 {
            0 => pic.write_port(port, (r >> 8) as u8),
            1 => {
                pic.read_port(port);
            }
            2 => pic.set_irq((r >> 8) as u8 % 20, r & 0x10000 != 0),
            3 => {
                pic.acknowledge();
            }
            _ => {
                pic.has_interrupt();
            }
        }
    }
    for port in 0..0x500u16 {
        for value in [0u8, 0xff, 0x0c, 0x11, 0xe7] {
            pic.write_port(port, value);
            pic.read_port(port);
        }
    }
}
