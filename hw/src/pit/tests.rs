use super::*;
use std::cell::RefCell;
use std::rc::Rc;

/// Records every level driven on IRQ0.
#[derive(Clone, Default)]
struct Recorder(Rc<RefCell<Vec<bool>>>);

impl IrqLine for Recorder {
    fn set_level(&self, level: bool) {
        self.0.borrow_mut().push(level);
    }
}

impl Recorder {
    fn rising_edges(&self) -> usize {
        let v = self.0.borrow();
        let mut prev = false;
        let mut n = 0;
        for &l in v.iter() {
            if l && !prev {
                n += 1;
            }
            prev = l;
        }
        n
    }
    fn level(&self) -> bool {
        self.0.borrow().last().copied().unwrap_or(false)
    }
}

/// Time of `ticks` input clocks after `t0`.
fn at(t0: Nanos, ticks: u64) -> Nanos {
    t0 + ticks_to_ns(ticks)
}

fn program(pit: &mut Pit<Recorder>, ch: u16, control: u8, count: u16, now: Nanos) {
    pit.write(OFFSET_CONTROL, control, now);
    pit.write(ch, count as u8, now);
    pit.write(ch, (count >> 8) as u8, now);
}

fn read16(pit: &mut Pit<Recorder>, ch: u16, now: Nanos) -> u16 {
    let lo = pit.read(ch, now) as u16;
    let hi = pit.read(ch, now) as u16;
    lo | hi << 8
}

fn new_pit() -> (Pit<Recorder>, Recorder) {
    let line = Recorder::default();
    (Pit::new(line.clone()), line)
}

#[test]
fn time_conversion_is_1_193182_mhz() {
    assert_eq!(ns_to_ticks(1_000_000_000), PIT_HZ);
    assert_eq!(ns_to_ticks(ticks_to_ns(12345)), 12345);
    assert_eq!(ns_to_ticks(ticks_to_ns(12345) - 1), 12344);
    assert_eq!(ticks_to_ns(u64::MAX), u64::MAX);
}

#[test]
fn mode2_rate_generator_gives_hz_interrupts() {
    let (mut pit, line) = new_pit();
    let t0 = 5_000;
    // Linux at HZ=250: LATCH = 4773, mode 2, lobyte/hibyte.
    program(&mut pit, 0, 0x34, 4773, t0);
    let mut now = t0;
    let end = t0 + 1_000_000_000;
    loop {
        let next = pit.next_event(now).expect("periodic");
        assert!(next > now || now == t0);
        if next > end {
            break;
        }
        now = next;
        pit.update(now);
    }
    // OUT rises when the mode is set, then once per period: 1 s / (4773 / 1193182 Hz) =
    // 249.98 periods.
    assert_eq!(line.rising_edges(), 1 + 249);
    assert!(line.level(), "OUT is high between the one-clock low pulses");
}

#[test]
fn mode2_counter_reads_count_down_and_reload() {
    let (mut pit, _) = new_pit();
    program(&mut pit, 0, 0x34, 1000, 0);
    assert_eq!(read16(&mut pit, 0, 0), 1000);
    assert_eq!(read16(&mut pit, 0, at(0, 1)), 999);
    assert_eq!(read16(&mut pit, 0, at(0, 999)), 1);
    assert!(!pit.out(0, at(0, 999)), "OUT low while the count is 1");
    assert_eq!(read16(&mut pit, 0, at(0, 1000)), 1000);
    assert!(pit.out(0, at(0, 1000)));
    assert_eq!(read16(&mut pit, 0, at(0, 1250)), 750);
}

#[test]
fn late_update_coalesces_missed_ticks() {
    let (mut pit, line) = new_pit();
    program(&mut pit, 0, 0x34, 100, 0);
    assert_eq!(line.rising_edges(), 1, "OUT high once programmed");
    pit.update(at(0, 1050));
    assert_eq!(line.rising_edges(), 2);
    // The next event is the 11th period, after the late update.
    assert_eq!(pit.next_event(at(0, 1050)), Some(at(0, 1100)));
    pit.update(at(0, 1100));
    assert_eq!(line.rising_edges(), 3);
}

#[test]
fn mode3_square_wave() {
    let (mut pit, line) = new_pit();
    // SeaBIOS/DOS default: mode 3, count 0 = 65536 (18.2 Hz).
    program(&mut pit, 0, 0x36, 0, 0);
    assert!(pit.out(0, 0));
    assert!(pit.out(0, at(0, 32767)));
    assert!(!pit.out(0, at(0, 32768)));
    assert!(!pit.out(0, at(0, 65535)));
    assert!(pit.out(0, at(0, 65536)));
    assert_eq!(pit.next_event(0), Some(at(0, 65536)));
    pit.update(at(0, 40000));
    assert!(!line.level(), "IRQ0 follows OUT low in the second half");
    pit.update(at(0, 65536));
    assert!(line.level());
    assert_eq!(
        line.rising_edges(),
        2,
        "high when programmed, then the period's edge"
    );
    // Counts down by two in each half.
    assert_eq!(read16(&mut pit, 0, at(0, 10)), 65516);
}

#[test]
fn mode0_interrupt_on_terminal_count() {
    let (mut pit, line) = new_pit();
    let t0 = 1_000_000;
    pit.write(OFFSET_CONTROL, 0x30, t0);
    assert!(!pit.out(0, t0), "mode 0 OUT starts low");
    pit.write(0, 0x10, t0);
    assert!(
        pit.next_event(t0).is_none(),
        "not counting until both bytes are in"
    );
    pit.write(0, 0x00, t0); // count 0x0010 = 16
    assert_eq!(pit.next_event(t0), Some(at(t0, 16)));
    assert_eq!(read16(&mut pit, 0, at(t0, 6)), 10);
    pit.update(at(t0, 15));
    assert!(!line.level());
    pit.update(at(t0, 16));
    assert!(line.level());
    assert_eq!(pit.next_event(at(t0, 16)), None, "one-shot");
    // The counter keeps wrapping; OUT stays high.
    assert_eq!(read16(&mut pit, 0, at(t0, 17)), 0xffff);
    assert!(pit.out(0, at(t0, 100_000)));
    // Rewriting the count restarts and drops OUT.
    pit.write(0, 0x20, at(t0, 20));
    assert!(!line.level());
    pit.write(0, 0x00, at(t0, 20));
    assert_eq!(pit.next_event(at(t0, 20)), Some(at(at(t0, 20), 32)));
}

#[test]
fn mode4_software_strobe() {
    let (mut pit, line) = new_pit();
    program(&mut pit, 0, 0x38, 50, 0);
    assert!(pit.out(0, at(0, 49)));
    assert!(!pit.out(0, at(0, 50)));
    assert!(pit.out(0, at(0, 51)));
    assert_eq!(pit.next_event(0), Some(at(0, 51)));
    pit.update(at(0, 51));
    assert_eq!(
        line.rising_edges(),
        2,
        "high at setup, then the strobe's edge"
    );
    assert_eq!(pit.next_event(at(0, 51)), None);
}

#[test]
fn latch_command_freezes_the_read_value() {
    let (mut pit, _) = new_pit();
    program(&mut pit, 0, 0x34, 30000, 0);
    pit.write(OFFSET_CONTROL, 0x00, at(0, 100)); // latch counter 0
    assert_eq!(pit.read(0, at(0, 5000)), (29900 & 0xff) as u8);
    // A second latch before the read completes is ignored.
    pit.write(OFFSET_CONTROL, 0x00, at(0, 6000));
    assert_eq!(pit.read(0, at(0, 7000)), (29900 >> 8) as u8);
    // Latch released: live value again.
    assert_eq!(read16(&mut pit, 0, at(0, 8000)), 22000);
}

#[test]
fn lsb_only_and_msb_only_access() {
    let (mut pit, _) = new_pit();
    pit.write(OFFSET_CONTROL, 0x90, 0); // channel 2, LSB only, mode 0
    pit.write_port_b(PORT_B_GATE2, 0);
    pit.write(2, 0x80, 0);
    assert_eq!(pit.read(2, at(0, 0x10)), 0x70);
    assert_eq!(
        pit.read(2, at(0, 0x11)),
        0x6f,
        "no flip-flop: always the LSB"
    );
    pit.write(OFFSET_CONTROL, 0xa0, 0); // channel 2, MSB only, mode 0
    pit.write(2, 0x12, 0); // count 0x1200
    assert_eq!(pit.read(2, at(0, 0x100)), 0x11);
    assert_eq!(pit.read(2, at(0, 0x100)), 0x11);
}

#[test]
fn bcd_counting() {
    let (mut pit, _) = new_pit();
    pit.write(OFFSET_CONTROL, 0x35, 0); // mode 2, BCD
    pit.write(0, 0x00, 0);
    pit.write(0, 0x10, 0); // 1000 decimal
    assert_eq!(read16(&mut pit, 0, at(0, 1)), 0x0999);
    assert_eq!(read16(&mut pit, 0, at(0, 500)), 0x0500);
    assert_eq!(pit.next_event(0), Some(at(0, 1000)));
    // Count 0 in BCD is 10000.
    program(&mut pit, 0, 0x35, 0, 0);
    assert_eq!(read16(&mut pit, 0, at(0, 1)), 0x9999);
    assert_eq!(pit.next_event(0), Some(at(0, 10000)));
    // Invalid BCD digits do not panic.
    program(&mut pit, 0, 0x35, 0xffff, 0);
    read16(&mut pit, 0, at(0, 12345));
}

#[test]
fn read_back_status_and_count() {
    let (mut pit, _) = new_pit();
    pit.write(OFFSET_CONTROL, 0x34, 0);
    pit.write(OFFSET_CONTROL, 0xe2, 0); // read-back: status only, channel 0
    assert_eq!(
        pit.read(0, 0),
        0x80 | 0x40 | 0x34,
        "OUT high, null count, lohi, mode 2"
    );
    pit.write(0, 100, 0);
    pit.write(0, 0, 0);
    pit.write(OFFSET_CONTROL, 0xc2, at(0, 10)); // count and status
    assert_eq!(
        pit.read(0, at(0, 50)),
        0x80 | 0x34,
        "status first, count loaded"
    );
    assert_eq!(read16(&mut pit, 0, at(0, 60)), 90, "then the latched count");
    // Read-back of several channels at once.
    pit.write(OFFSET_CONTROL, 0xb0, 0); // ch2 mode 0
    pit.write(OFFSET_CONTROL, 0xee, 0); // status of channels 0, 1 and 2
    assert_eq!(pit.read(2, 0), 0x40 | 0x30);
    assert_eq!(
        pit.read(1, 0) & 0x3f,
        0x36,
        "power-on channel 1: lohi mode 3"
    );
}

#[test]
fn linux_pit_calibration_through_port_b() {
    // pit_calibrate_tsc(): gate on, speaker off, channel 2 mode 0, count 0xffff... then poll
    // port B bit 5 for terminal count.
    let (mut pit, _) = new_pit();
    let t0 = 123_456_789;
    let b = pit.read_port_b(t0);
    pit.write_port_b((b & !PORT_B_SPEAKER) | PORT_B_GATE2, t0);
    pit.write(OFFSET_CONTROL, 0xb0, t0);
    let latch = (PIT_HZ / 20) as u16; // 50 ms
    pit.write(2, latch as u8, t0);
    pit.write(2, (latch >> 8) as u8, t0);
    assert_eq!(pit.read_port_b(t0) & PORT_B_OUT2, 0);
    assert_eq!(pit.read_port_b(at(t0, latch as u64 - 1)) & PORT_B_OUT2, 0);
    assert_eq!(
        pit.read_port_b(at(t0, latch as u64)) & PORT_B_OUT2,
        PORT_B_OUT2
    );
    let elapsed = at(t0, latch as u64) - t0;
    assert!((49_999_000..50_001_000).contains(&elapsed), "{elapsed}");
    assert!(!pit.speaker_enabled());
    assert_eq!(pit.read_port_b(t0) & 0x0f, PORT_B_GATE2);
}

#[test]
fn gate_low_suspends_mode0() {
    let (mut pit, _) = new_pit();
    pit.write_port_b(PORT_B_GATE2, 0);
    program(&mut pit, 2, 0xb0, 1000, 0);
    pit.write_port_b(0, at(0, 100));
    assert_eq!(read16(&mut pit, 2, at(0, 500)), 900);
    let resume = at(0, 500);
    pit.write_port_b(PORT_B_GATE2, resume);
    assert_eq!(read16(&mut pit, 2, at(resume, 100)), 800);
    assert!(!pit.out(2, at(resume, 899)));
    assert!(pit.out(2, at(resume, 900)));
}

#[test]
fn gate_controls_mode2_and_mode3() {
    let (mut pit, _) = new_pit();
    program(&mut pit, 2, 0xb6, 100, 0); // ch2 mode 3, gate low
    assert!(pit.out(2, at(0, 70)), "gate low: OUT high, not counting");
    assert_eq!(read16(&mut pit, 2, at(0, 70)), 100);
    let t = at(0, 1000);
    pit.write_port_b(PORT_B_GATE2 | PORT_B_SPEAKER, t);
    assert!(pit.speaker_enabled());
    assert!(pit.out(2, at(t, 49)), "first half high");
    assert!(!pit.out(2, at(t, 60)), "second half low");
    assert_eq!(read16(&mut pit, 2, at(t, 10)), 80);
    // Gate low forces OUT high and stops; gate high reloads.
    pit.write_port_b(0, at(t, 60));
    assert!(pit.out(2, at(t, 70)));
    pit.write(OFFSET_CONTROL, 0xb4, 0); // ch2 mode 2
    pit.write(2, 10, 0);
    pit.write(2, 0, 0);
    assert_eq!(
        read16(&mut pit, 2, at(0, 5)),
        10,
        "gate low: mode 2 does not count"
    );
    pit.write_port_b(PORT_B_GATE2, at(0, 5));
    assert_eq!(read16(&mut pit, 2, at(at(0, 5), 3)), 7);
}

#[test]
fn mode1_and_mode5_wait_for_a_gate_trigger() {
    let (mut pit, _) = new_pit();
    program(&mut pit, 2, 0xb2, 10, 0); // ch2 mode 1
    assert!(pit.out(2, at(0, 100)), "no trigger yet");
    pit.write_port_b(PORT_B_GATE2, at(0, 100));
    let t = at(0, 100);
    assert!(!pit.out(2, at(t, 9)));
    assert!(pit.out(2, at(t, 10)));
    // Retrigger.
    pit.write_port_b(0, at(t, 20));
    pit.write_port_b(PORT_B_GATE2, at(t, 20));
    assert!(!pit.out(2, at(at(t, 20), 5)));

    program(&mut pit, 2, 0xba, 10, 0); // ch2 mode 5, gate currently high
    assert!(pit.out(2, at(0, 20)));
    pit.write_port_b(0, 0);
    pit.write_port_b(PORT_B_GATE2, 0);
    assert!(pit.out(2, at(0, 9)));
    assert!(!pit.out(2, at(0, 10)));
    assert!(pit.out(2, at(0, 11)));
}

#[test]
fn refresh_bit_toggles() {
    let pit = Pit::default();
    let a = pit.read_port_b(0) & PORT_B_REFRESH;
    let b = pit.read_port_b(REFRESH_NS) & PORT_B_REFRESH;
    assert_ne!(a, b);
}

#[test]
fn channel_without_count_is_idle() {
    let (mut pit, line) = new_pit();
    assert_eq!(pit.next_event(0), None);
    pit.update(1_000_000_000);
    pit.update(2_000_000_000);
    // OUT of an unprogrammed mode-3 channel is high, and stays so: no ticks.
    assert_eq!(line.rising_edges(), 1);
    assert_eq!(pit.next_event(2_000_000_000), None);
    assert_eq!(pit.read(3, 0), 0xff);
}

#[test]
fn any_guest_input_is_safe() {
    let (mut pit, _) = new_pit();
    let mut seed = 0xdead_beefu32;
    let mut now: Nanos = 0;
    for _ in 0..50_000 {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let r = seed >> 4;
        now = now.wrapping_add((r % 5000) as u64);
        match r % 6 {
            0 | 1 => pit.write((r >> 4) as u16 % 5, (r >> 8) as u8, now),
            2 => {
                pit.read((r >> 4) as u16 % 5, now);
            }
            3 => pit.write_port_b((r >> 8) as u8, now),
            4 => {
                pit.read_port_b(now);
                pit.next_event(now);
            }
            _ => pit.update(now),
        }
    }
    for v in 0..=255u8 {
        pit.write(OFFSET_CONTROL, v, u64::MAX - 1);
        pit.write(0, v, u64::MAX);
        pit.write(0, v, u64::MAX);
        pit.read(0, u64::MAX);
        pit.next_event(u64::MAX);
        pit.update(u64::MAX);
        pit.set_gate(7, true, 0);
    }
}
