use super::cmos::*;
use super::*;
use std::cell::RefCell;
use std::rc::Rc;

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

/// 2024-02-29 12:34:56 UTC, a Thursday.
const LEAP_DAY: i64 = 1_709_210_096;
const SEC: Nanos = 1_000_000_000;

fn new_rtc(now: Nanos) -> (Rtc<Recorder>, Recorder) {
    let line = Recorder::default();
    (Rtc::new(line.clone(), LEAP_DAY, now), line)
}

fn get(rtc: &mut Rtc<Recorder>, reg: u8, now: Nanos) -> u8 {
    rtc.write(OFFSET_INDEX, reg, now);
    rtc.read(OFFSET_DATA, now)
}

fn set(rtc: &mut Rtc<Recorder>, reg: u8, value: u8, now: Nanos) {
    rtc.write(OFFSET_INDEX, reg, now);
    rtc.write(OFFSET_DATA, value, now);
}

fn clock(rtc: &mut Rtc<Recorder>, now: Nanos) -> [u8; 8] {
    [
        REG_CENTURY,
        REG_YEAR,
        REG_MONTH,
        REG_DAY_OF_MONTH,
        REG_DAY_OF_WEEK,
        REG_HOURS,
        REG_MINUTES,
        REG_SECONDS,
    ]
    .map(|r| get(rtc, r, now))
}

#[test]
fn reads_host_time_in_bcd_24h() {
    let (mut rtc, _) = new_rtc(7 * SEC);
    assert_eq!(
        clock(&mut rtc, 7 * SEC),
        [0x20, 0x24, 0x02, 0x29, 0x05, 0x12, 0x34, 0x56]
    );
    assert_eq!(get(&mut rtc, REG_A, 0) & 0x7f, 0x26);
    assert_eq!(get(&mut rtc, REG_B, 0), REG_B_24H);
    assert_eq!(get(&mut rtc, REG_D, 0), REG_D_VRT);
}

#[test]
fn time_advances_with_now() {
    let (mut rtc, _) = new_rtc(0);
    assert_eq!(clock(&mut rtc, 5 * SEC)[5..], [0x12, 0x35, 0x01]);
    // Into the next day: 1 March.
    let t = (11 * 3600 + 25 * 60 + 4) * SEC;
    assert_eq!(
        clock(&mut rtc, t),
        [0x20, 0x24, 0x03, 0x01, 0x06, 0x00, 0x00, 0x00]
    );
    assert_eq!(rtc.wall_clock(t), LEAP_DAY + 41_104);
}

#[test]
fn binary_and_12_hour_modes() {
    let (mut rtc, _) = new_rtc(0);
    set(&mut rtc, REG_B, REG_B_DM_BINARY, 0); // binary, 12-hour
    assert_eq!(clock(&mut rtc, 0), [20, 24, 2, 29, 5, 0x80 | 12, 34, 56]);
    // 00:00 is 12 AM.
    let midnight = (11 * 3600 + 25 * 60 + 4) * SEC;
    assert_eq!(get(&mut rtc, REG_HOURS, midnight), 12);
    // 13:00 BCD 12-hour is 0x81.
    set(&mut rtc, REG_B, 0, 0);
    assert_eq!(get(&mut rtc, REG_HOURS, 3600 * SEC), 0x81);
}

#[test]
fn set_bit_freezes_and_loads_the_time() {
    let (mut rtc, _) = new_rtc(0);
    set(&mut rtc, REG_B, REG_B_SET | REG_B_UIE | REG_B_24H, SEC);
    assert_eq!(
        get(&mut rtc, REG_B, SEC),
        REG_B_SET | REG_B_24H,
        "SET clears UIE"
    );
    // Frozen while SET.
    assert_eq!(get(&mut rtc, REG_SECONDS, 10 * SEC), 0x57);
    // Linux's mc146818_set_time: 2000-01-01 23:59:58.
    for (reg, v) in [
        (REG_YEAR, 0x00),
        (REG_CENTURY, 0x20),
        (REG_MONTH, 0x01),
        (REG_DAY_OF_MONTH, 0x01),
        (REG_HOURS, 0x23),
        (REG_MINUTES, 0x59),
        (REG_SECONDS, 0x58),
    ] {
        set(&mut rtc, reg, v, 10 * SEC);
    }
    assert_eq!(
        get(&mut rtc, REG_SECONDS, 11 * SEC),
        0x58,
        "reads back the written value"
    );
    set(&mut rtc, REG_B, REG_B_24H, 20 * SEC);
    assert_eq!(rtc.wall_clock(20 * SEC), 946_771_198);
    assert_eq!(
        clock(&mut rtc, 23 * SEC),
        [0x20, 0x00, 0x01, 0x02, 0x01, 0x00, 0x00, 0x01]
    );
}

#[test]
fn writing_time_without_set_keeps_counting() {
    let (mut rtc, _) = new_rtc(0);
    set(&mut rtc, REG_MINUTES, 0x00, SEC / 2);
    assert_eq!(get(&mut rtc, REG_MINUTES, SEC), 0x00);
    assert_eq!(get(&mut rtc, REG_SECONDS, 2 * SEC), 0x58);
    assert_eq!(get(&mut rtc, REG_HOURS, 2 * SEC), 0x12);
}

#[test]
fn update_in_progress_precedes_the_second_boundary() {
    let (mut rtc, _) = new_rtc(0);
    assert_eq!(get(&mut rtc, REG_A, 0) & REG_A_UIP, 0);
    assert_eq!(get(&mut rtc, REG_A, SEC - 3_000_000) & REG_A_UIP, 0);
    assert_eq!(get(&mut rtc, REG_A, SEC - 2_000_000) & REG_A_UIP, REG_A_UIP);
    assert_eq!(get(&mut rtc, REG_A, SEC) & REG_A_UIP, 0);
}

#[test]
fn periodic_interrupt_at_1024_hz() {
    let (mut rtc, line) = new_rtc(0);
    assert_eq!(rtc.next_event(0), None, "nothing enabled");
    set(&mut rtc, REG_B, REG_B_PIE | REG_B_24H, 0);
    assert_eq!(rtc.next_event(0), Some(976_563));
    let mut now = 0;
    let mut interrupts = 0;
    while let Some(next) = rtc.next_event(now) {
        if next > SEC {
            break;
        }
        now = next;
        rtc.update(now);
        assert!(line.level());
        assert_eq!(
            rtc.next_event(now),
            None,
            "IRQF holds the line until C is read"
        );
        assert_eq!(get(&mut rtc, REG_C, now) & !REG_C_UF, REG_C_IRQF | REG_C_PF);
        assert!(!line.level());
        interrupts += 1;
    }
    assert_eq!(interrupts, 1024);
}

#[test]
fn periodic_rates_follow_register_a() {
    let (mut rtc, _) = new_rtc(0);
    set(&mut rtc, REG_B, REG_B_PIE | REG_B_24H, 0);
    set(&mut rtc, REG_A, 0x2f, 0); // 2 Hz
    assert_eq!(rtc.next_event(0), Some(SEC / 2));
    set(&mut rtc, REG_A, 0x23, 0); // 8192 Hz
    assert_eq!(rtc.next_event(0), Some(122_071));
    set(&mut rtc, REG_A, 0x21, 0); // RS=1: 256 Hz
    assert_eq!(rtc.next_event(0), Some(3_906_250));
    set(&mut rtc, REG_A, 0x20, 0); // RS=0: off
    assert_eq!(rtc.next_event(0), None);
}

#[test]
fn flags_are_set_without_enables_for_polling() {
    let (mut rtc, line) = new_rtc(0);
    assert_eq!(get(&mut rtc, REG_C, 2 * SEC), REG_C_PF | REG_C_UF);
    assert!(!line.level());
    assert_eq!(
        get(&mut rtc, REG_C, 2 * SEC),
        0,
        "reading C cleared the flags"
    );
    // Enabling PIE with PF already pending asserts IRQ8 at once.
    rtc.update(2 * SEC + 5_000_000);
    set(&mut rtc, REG_B, REG_B_PIE | REG_B_24H, 2 * SEC + 5_000_000);
    assert!(line.level());
}

#[test]
fn update_ended_interrupt_once_a_second() {
    let (mut rtc, line) = new_rtc(SEC / 4);
    set(&mut rtc, REG_B, REG_B_UIE | REG_B_24H, SEC / 4);
    let next = rtc.next_event(SEC / 4).unwrap();
    assert_eq!(next, SEC + SEC / 4);
    rtc.update(next - 1);
    assert!(!line.level());
    rtc.update(next);
    assert!(line.level());
    assert_eq!(get(&mut rtc, REG_SECONDS, next), 0x57);
    assert_eq!(
        get(&mut rtc, REG_C, next) & !REG_C_PF,
        REG_C_IRQF | REG_C_UF
    );
    assert_eq!(rtc.next_event(next), Some(next + SEC));
}

#[test]
fn alarm_interrupt_matches_time_of_day() {
    let (mut rtc, line) = new_rtc(0);
    set(&mut rtc, REG_SECONDS_ALARM, 0x00, 0);
    set(&mut rtc, REG_MINUTES_ALARM, 0x35, 0);
    set(&mut rtc, REG_HOURS_ALARM, 0x12, 0);
    set(&mut rtc, REG_B, REG_B_AIE | REG_B_24H, 0);
    rtc.update(3 * SEC);
    assert!(!line.level(), "12:34:59 does not match");
    rtc.update(4 * SEC);
    assert!(line.level(), "12:35:00 matches");
    assert_eq!(
        get(&mut rtc, REG_C, 4 * SEC) & (REG_C_IRQF | REG_C_AF),
        REG_C_IRQF | REG_C_AF
    );
    assert!(!line.level());
    // Don't-care hours and minutes: every minute at :30.
    set(&mut rtc, REG_SECONDS_ALARM, 0x30, 4 * SEC);
    set(&mut rtc, REG_MINUTES_ALARM, 0xc0, 4 * SEC);
    set(&mut rtc, REG_HOURS_ALARM, 0xff, 4 * SEC);
    rtc.update(33 * SEC);
    assert!(!line.level());
    rtc.update(34 * SEC);
    assert!(line.level());
    get(&mut rtc, REG_C, 34 * SEC);
    // A late update that skipped past the match still reports it.
    rtc.update(100 * SEC);
    assert!(line.level());
}

#[test]
fn divider_reset_holds_the_clock() {
    let (mut rtc, _) = new_rtc(0);
    get(&mut rtc, REG_C, SEC / 2);
    set(&mut rtc, REG_A, 0x70, SEC / 2); // divider held in reset
    assert_eq!(get(&mut rtc, REG_SECONDS, 10 * SEC), 0x56);
    assert_eq!(get(&mut rtc, REG_C, 10 * SEC), 0, "no updates while held");
    set(&mut rtc, REG_A, 0x26, 10 * SEC);
    assert_eq!(get(&mut rtc, REG_SECONDS, 10 * SEC + SEC / 2 - 1), 0x56);
    assert_eq!(
        get(&mut rtc, REG_SECONDS, 10 * SEC + SEC / 2),
        0x57,
        "first update 500 ms on"
    );
}

#[test]
fn index_port_and_nmi_mask() {
    let (mut rtc, _) = new_rtc(0);
    assert!(!rtc.nmi_masked());
    rtc.write(OFFSET_INDEX, 0x80 | 0x40, 0);
    assert!(rtc.nmi_masked());
    rtc.write(OFFSET_DATA, 0xa5, 0);
    assert_eq!(rtc.read(OFFSET_DATA, 0), 0xa5);
    assert_eq!(rtc.cmos_read(0x40), 0xa5);
    assert_eq!(rtc.read(OFFSET_INDEX, 0), 0xff);
    rtc.write(OFFSET_INDEX, 0x0f, 0);
    assert!(!rtc.nmi_masked());
    // Registers C and D are read-only.
    set(&mut rtc, REG_D, 0x00, 0);
    assert_eq!(get(&mut rtc, REG_D, 0), REG_D_VRT);
}

#[test]
fn machine_fills_memory_cpu_and_boot_fields() {
    let (mut rtc, _) = new_rtc(0);
    rtc.set_memory(3 << 30, 3 << 30);
    assert_eq!(get(&mut rtc, CMOS_BASE_MEM_LO, 0), 0x80);
    assert_eq!(get(&mut rtc, CMOS_BASE_MEM_HI, 0), 0x02, "640 KiB");
    assert_eq!(
        get(&mut rtc, CMOS_EXT_MEM_LO, 0),
        0xff,
        "capped at 0xffff KiB"
    );
    assert_eq!(get(&mut rtc, CMOS_EXT_MEM_HI, 0), 0xff);
    assert_eq!(get(&mut rtc, CMOS_EXT_MEM2_LO, 0), 0xff);
    // (3 GiB - 16 MiB) / 64 KiB = 0xbf00.
    assert_eq!(get(&mut rtc, CMOS_MEM_ABOVE_16M_LO, 0), 0x00);
    assert_eq!(get(&mut rtc, CMOS_MEM_ABOVE_16M_HI, 0), 0xbf);
    // 3 GiB / 64 KiB = 0xc000.
    assert_eq!(get(&mut rtc, CMOS_MEM_ABOVE_4G_0, 0), 0x00);
    assert_eq!(get(&mut rtc, CMOS_MEM_ABOVE_4G_1, 0), 0xc0);
    assert_eq!(get(&mut rtc, CMOS_MEM_ABOVE_4G_2, 0), 0x00);

    rtc.set_memory(32 << 20, 0);
    // (32 MiB - 1 MiB) in KiB = 31744 = 0x7c00.
    assert_eq!(rtc.cmos_read(CMOS_EXT_MEM_LO), 0x00);
    assert_eq!(rtc.cmos_read(CMOS_EXT_MEM_HI), 0x7c);
    assert_eq!(
        rtc.cmos_read(CMOS_MEM_ABOVE_16M_HI),
        0x01,
        "16 MiB = 0x100 units"
    );
    let sum: u16 = (0x10..=0x2d).map(|i| rtc.cmos_read(i) as u16).sum();
    assert_eq!(rtc.cmos_read(CMOS_CHECKSUM_HI), (sum >> 8) as u8);
    assert_eq!(rtc.cmos_read(CMOS_CHECKSUM_LO), sum as u8);

    rtc.set_cpu_count(4);
    assert_eq!(rtc.cmos_read(CMOS_CPU_COUNT_MINUS_ONE), 3);
    rtc.set_cpu_count(0);
    assert_eq!(rtc.cmos_read(CMOS_CPU_COUNT_MINUS_ONE), 0);

    rtc.set_boot_order(
        &[BootDevice::Cdrom, BootDevice::HardDisk, BootDevice::Floppy],
        false,
    );
    assert_eq!(rtc.cmos_read(CMOS_BOOT_FLAG2), 0x23);
    assert_eq!(rtc.cmos_read(CMOS_BOOT_FLAG1), 0x11);
    rtc.set_boot_order(&[BootDevice::HardDisk], true);
    assert_eq!(rtc.cmos_read(CMOS_BOOT_FLAG2), 0x02);
    assert_eq!(rtc.cmos_read(CMOS_BOOT_FLAG1), 0x00);
}

#[test]
fn garbage_time_values_are_clamped() {
    let (mut rtc, _) = new_rtc(0);
    set(&mut rtc, REG_B, REG_B_SET, 0);
    for reg in TIME_REGISTERS {
        set(&mut rtc, reg, 0xff, 0);
    }
    set(&mut rtc, REG_B, 0, 0);
    // 12-hour BCD 0xff: PM, 0x7f -> 85 % 12 = 1 -> 13:00; year 99*100+65.
    let secs = rtc.wall_clock(0);
    let f = clock::fields_from_secs(secs);
    assert_eq!(
        (f.year, f.month, f.hour, f.min, f.sec),
        (9965, 12, 13, 59, 59)
    );
}

#[test]
fn any_guest_input_is_safe() {
    for wall in [i64::MIN, -1, 0, i64::MAX] {
        let mut rtc = Rtc::new(crate::NoIrq, wall, 0);
        let mut seed = 0x2545_f491u32;
        let mut now: Nanos = 0;
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let r = seed >> 4;
            now = now.wrapping_add((r % 300_000) as u64 * 1000);
            match r % 5 {
                0 | 1 => rtc.write(OFFSET_INDEX, (r >> 8) as u8, now),
                2 => rtc.write(OFFSET_DATA, (r >> 16) as u8, now),
                3 => {
                    rtc.read(OFFSET_DATA, now);
                }
                _ => {
                    rtc.next_event(now);
                    rtc.update(now);
                }
            }
        }
        for index in 0..=255u8 {
            for value in [0u8, 0x7f, 0x80, 0xff] {
                rtc.write(OFFSET_INDEX, index, u64::MAX);
                rtc.write(OFFSET_DATA, value, u64::MAX);
                rtc.read(OFFSET_DATA, u64::MAX);
                rtc.update(u64::MAX);
                rtc.next_event(u64::MAX);
            }
        }
        rtc.set_memory(u64::MAX, u64::MAX);
        rtc.set_cpu_count(u32::MAX);
    }
}
