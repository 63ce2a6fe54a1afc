use super::*;
use crate::testing::SharedLine;
use ferrite_persist::{load, save, Persist, RestoreError};

const SEC: Nanos = 1_000_000_000;

fn rtc(wall: i64) -> (Rtc<SharedLine>, SharedLine) {
    let line = SharedLine::default();
    (Rtc::new(line.clone(), wall, 0), line)
}

fn get(rtc: &mut Rtc<SharedLine>, reg: u8, now: Nanos) -> u8 {
    rtc.write(OFFSET_INDEX, reg, now);
    rtc.read(OFFSET_DATA, now)
}

fn set(rtc: &mut Rtc<SharedLine>, reg: u8, value: u8, now: Nanos) {
    rtc.write(OFFSET_INDEX, reg, now);
    rtc.write(OFFSET_DATA, value, now);
}

/// Periodic interrupts at 1024 Hz, an alarm at every :30 seconds, some NVRAM written, and a
/// periodic flag pending.
fn busy_rtc() -> (Rtc<SharedLine>, SharedLine) {
    let (mut r, line) = rtc(1_709_210_096);
    set(&mut r, REG_A, 0x26, 0);
    set(&mut r, REG_SECONDS_ALARM, 0x30, 0);
    set(&mut r, REG_MINUTES_ALARM, 0xc0, 0);
    set(&mut r, REG_HOURS_ALARM, 0xc0, 0);
    set(&mut r, REG_B, REG_B_24H | REG_B_PIE | REG_B_AIE, 0);
    set(&mut r, 0x40, 0x5a, 0);
    r.update(SEC / 100);
    assert!(line.level());
    r.write(OFFSET_INDEX, 0x80 | 0x0c, SEC / 100); // NMI masked, index on register C
    (r, line)
}

#[test]
fn a_restored_rtc_carries_on_like_the_original() {
    let (mut a, aline) = busy_rtc();
    let (mut b, bline) = rtc(0);
    load(&mut b, &save(&a, "rtc")).unwrap();
    assert!(bline.level(), "IRQ8 is re-driven from register C");
    assert!(b.nmi_masked());
    let t = SEC / 50;
    assert_eq!(a.read(OFFSET_DATA, t), b.read(OFFSET_DATA, t), "register C, still selected");
    assert_eq!(aline.level(), bline.level());
    for t in [t, 3 * SEC / 2, 5 * SEC, 40 * SEC] {
        assert_eq!(a.next_event(t), b.next_event(t));
        a.update(t);
        b.update(t);
        assert_eq!(aline.level(), bline.level());
        for reg in [REG_SECONDS, REG_MINUTES, REG_HOURS, REG_DAY_OF_MONTH, REG_A, REG_B, REG_C, 0x40] {
            assert_eq!(get(&mut a, reg, t), get(&mut b, reg, t), "register {reg:#x} at {t}");
        }
    }
}

#[test]
fn a_corrupt_state_is_refused_and_changes_nothing() {
    let (a, _) = busy_rtc();
    let (mut b, bline) = rtc(0);
    let fresh = b.save();
    let mut s = a.save();
    s.cmos.push(0);
    assert!(matches!(b.restore(s), Err(RestoreError::Invalid { field: "cmos", .. })));
    let mut s = a.save();
    s.flags = 0xff;
    assert!(b.restore(s).is_err());
    let mut s = a.save();
    s.wall_clock_at_base.nanos = 1_000_000_000;
    assert!(b.restore(s).is_err());
    assert_eq!(b.save(), fresh);
    assert_eq!(bline.drives(), 0);
}
