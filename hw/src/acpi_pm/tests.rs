use super::*;
use crate::pci::{DevFn, PciBus, PciDevice, PciEvent};
use std::cell::Cell;
use std::rc::Rc;

#[derive(Clone, Default)]
struct Line(Rc<Cell<bool>>);

impl IrqLine for Line {
    fn set_level(&self, level: bool) {
        self.0.set(level);
    }
}

fn pm() -> (AcpiPm<Line>, Line) {
    let line = Line::default();
    (AcpiPm::new(line.clone()), line)
}

/// Nanoseconds at which the PM timer reaches `ticks`.
fn at_tick(ticks: u64) -> Nanos {
    (u128::from(ticks) * 1_000_000_000).div_ceil(u128::from(PM_TIMER_HZ)) as u64
}

#[test]
fn fadt_layout_constants() {
    assert_eq!(ACPI_PM1A_EVT_BLK, 0x600);
    assert_eq!(ACPI_PM1A_CNT_BLK, 0x604);
    assert_eq!(ACPI_PM_TMR_BLK, 0x608);
    assert_eq!(ACPI_GPE0_BLK, 0xAFE0);
    assert_eq!(GPE0_BLK_LEN, 8);
    assert_eq!(
        (ACPI_SMI_CMD_PORT, ACPI_ENABLE, ACPI_DISABLE),
        (0xB2, 0xF1, 0xF0)
    );
}

#[test]
fn pm_timer_runs_at_3_58_mhz() {
    let (mut p, _) = pm();
    assert_eq!(p.pm_read(PM_TMR_OFFSET, 4, 0), 0);
    // One second is 3579545 ticks.
    assert_eq!(p.pm_read(PM_TMR_OFFSET, 4, 1_000_000_000), 3_579_545);
    // 24-bit wrap after 2^24 ticks (~4.69 s).
    let t = at_tick((1 << 24) + 5);
    assert_eq!(p.pm_read(PM_TMR_OFFSET, 4, t), 5);
    assert_eq!(
        p.pm_read(PM_TMR_OFFSET, 4, t) >> 24,
        0,
        "upper byte reads 0"
    );
    // Byte reads of the same instant agree.
    let t = 2_000_000_000;
    let v = p.pm_read(PM_TMR_OFFSET, 4, t);
    assert_eq!(p.pm_read(PM_TMR_OFFSET + 1, 1, t), (v >> 8) & 0xFF);
    p.pm_write(PM_TMR_OFFSET, 4, 0, t);
    assert_eq!(p.pm_read(PM_TMR_OFFSET, 4, t), v, "read-only");
}

#[test]
fn acpi_enable_through_smi_cmd() {
    let (mut p, _) = pm();
    assert_eq!(
        p.pm_read(PM1_CNT_OFFSET, 2, 0) & 1,
        0,
        "legacy mode at reset"
    );
    p.apm_write(0, ACPI_ENABLE);
    assert_eq!(p.pm_read(PM1_CNT_OFFSET, 2, 0) & 1, 1);
    assert_eq!(p.apm_read(0), 0xF1);
    p.apm_write(0, ACPI_DISABLE);
    assert_eq!(p.pm_read(PM1_CNT_OFFSET, 2, 0) & 1, 0);
    p.set_acpi_enabled(true);
    assert!(p.acpi_enabled());
    p.set_acpi_enabled(false);
    p.apm_write(1, 0x5A);
    assert_eq!(p.apm_read(1), 0x5A, "APMS scratch");
}

#[test]
fn timer_overflow_raises_sci_when_enabled() {
    let (mut p, line) = pm();
    p.apm_write(0, ACPI_ENABLE);
    p.pm_write(2, 2, u32::from(PM1_TMR_EN), 0);
    let t = p.next_event(0).unwrap();
    assert_eq!(t, at_tick(1 << 23));
    p.update(t - 1);
    assert!(!line.0.get());
    p.update(t);
    assert!(line.0.get(), "SCI asserted");
    assert_eq!(p.pm_read(0, 2, t) & u32::from(PM1_TMR_STS), 1);
    p.pm_write(0, 2, u32::from(PM1_TMR_STS), t);
    assert!(!line.0.get(), "cleared by writing 1");
    assert_eq!(p.pm_read(0, 2, t), 0);
    assert_eq!(p.next_event(t), Some(at_tick(2 << 23)));
}

#[test]
fn status_without_enable_or_sci_en_does_not_interrupt() {
    let (mut p, line) = pm();
    let t = at_tick(1 << 23);
    assert_eq!(p.next_event(0), None);
    assert_eq!(
        p.pm_read(0, 2, t),
        u32::from(PM1_TMR_STS),
        "status caught up on read"
    );
    assert!(!line.0.get());
    p.pm_write(2, 2, u32::from(PM1_TMR_EN), t);
    assert!(!line.0.get(), "SCI_EN clear: no SCI");
    p.apm_write(0, ACPI_ENABLE);
    assert!(line.0.get());
}

#[test]
fn power_button() {
    let (mut p, line) = pm();
    assert!(
        !p.press_power_button(),
        "legacy mode: the OS will not see it"
    );
    p.pm_write(0, 2, 0xFFFF, 0);
    p.apm_write(0, ACPI_ENABLE);
    p.pm_write(2, 2, u32::from(PM1_PWRBTN_EN), 0);
    assert!(p.press_power_button());
    assert!(line.0.get());
    assert_eq!(p.pm_read(0, 2, 0), u32::from(PM1_PWRBTN_STS));
    // Linux clears it with a byte write to the high byte.
    p.pm_write(1, 1, 0x01, 0);
    assert!(!line.0.get());
}

#[test]
fn s5_requests_power_off() {
    let (mut p, _) = pm();
    p.pm_write(PM1_CNT_OFFSET, 2, u32::from(SLP_TYP_S5) << 10, 0);
    assert!(!p.poweroff_requested(), "SLP_TYP alone does nothing");
    p.pm_write(
        PM1_CNT_OFFSET,
        2,
        (u32::from(SLP_TYP_S5) << 10) | 1 << 13,
        0,
    );
    assert!(p.poweroff_requested());
    assert_eq!(
        p.pm_read(PM1_CNT_OFFSET, 2, 0) & (1 << 13),
        0,
        "SLP_EN reads 0"
    );
    assert_eq!(p.take_sleep_request(), Some(SleepState::S5));
    assert!(!p.poweroff_requested());
}

#[test]
fn s3_and_wake() {
    let (mut p, line) = pm();
    p.apm_write(0, ACPI_ENABLE);
    p.pm_write(
        PM1_CNT_OFFSET + 1,
        1,
        (u32::from(SLP_TYP_S3) << 2) | 1 << 5,
        0,
    );
    assert_eq!(p.sleep_requested(), Some(SleepState::S3));
    assert!(!p.poweroff_requested());
    p.wake();
    assert_eq!(p.sleep_requested(), None);
    assert_ne!(p.pm_read(0, 2, 0) & u32::from(PM1_WAK_STS), 0);
    assert!(!line.0.get(), "WAK_STS has no enable bit");
    p.pm_write(
        PM1_CNT_OFFSET,
        2,
        (u32::from(SLP_TYP_S4) << 10) | 1 << 13,
        0,
    );
    assert_eq!(p.sleep_requested(), Some(SleepState::S4));
    assert!(p.poweroff_requested());
    p.reset(0);
    assert_eq!(p.sleep_requested(), None);
}

#[test]
fn gpe0_block() {
    let (mut p, line) = pm();
    p.apm_write(0, ACPI_ENABLE);
    p.raise_gpe(1);
    assert_eq!(p.gpe_read(0, 4), 0x2);
    assert!(!line.0.get());
    p.gpe_write(4, 1, 0x02);
    assert!(line.0.get());
    assert_eq!(p.gpe_read(4, 4), 0x2);
    p.gpe_write(0, 4, 0x2);
    assert!(!line.0.get());
    p.raise_gpe(31);
    assert_eq!(p.gpe_read(0, 4), 0x8000_0000);
    p.raise_gpe(32); // no such GPE
    assert_eq!(p.gpe_read(8, 4), 0);
}

#[test]
fn pci_function_reports_the_pm_base() {
    let mut bus = PciBus::new();
    let devfn = DevFn::new(1, 3).unwrap();
    bus.add_device(devfn, Piix4Pm::new()).unwrap();
    let ev: Vec<_> = bus.drain_events().collect();
    assert_eq!(
        ev,
        vec![PciEvent::PmIoBase {
            base: Some(ACPI_PM_BASE)
        }]
    );
    assert_eq!(bus.config_read(devfn, 0, 4), 0x7113_8086);
    assert_eq!(bus.config_read(devfn, 0x08, 4) >> 8, 0x06_80_00);
    assert_eq!(bus.config_read(devfn, 0x40, 4), 0x601);
    // SeaBIOS: PMBA = 0xB000 | 1, then PMREGMISC = 1.
    bus.config_write(devfn, 0x80, 1, 0);
    assert_eq!(
        bus.drain_events().collect::<Vec<_>>(),
        vec![PciEvent::PmIoBase { base: None }]
    );
    bus.config_write(devfn, 0x40, 4, 0xB001);
    assert_eq!(bus.drain_events().count(), 0);
    bus.config_write(devfn, 0x80, 1, 1);
    assert_eq!(
        bus.drain_events().collect::<Vec<_>>(),
        vec![PciEvent::PmIoBase { base: Some(0xB000) }]
    );
    bus.config_write(devfn, 0x40, 4, 0xFFFF_FFFF);
    assert_eq!(
        bus.config_read(devfn, 0x40, 4),
        0xFFC1,
        "64-byte aligned, I/O bit fixed"
    );
    let pm_base = |bus: &PciBus| bus.with_device(devfn, |pm: &mut Piix4Pm| pm.pm_base()).unwrap();
    assert_eq!(pm_base(&bus), Some(0xFFC0));
    bus.reset();
    assert_eq!(pm_base(&bus), Some(ACPI_PM_BASE));
}

#[test]
fn no_guest_access_panics() {
    let (mut p, _) = pm();
    let mut now = 0u64;
    for offset in 0..0x50u16 {
        for size in [0u8, 1, 2, 3, 4, 8] {
            for v in [0u32, u32::MAX, 0x2000, 0x3C01] {
                now += 1000;
                p.pm_write(offset, size, v, now);
                p.pm_read(offset, size, now);
                p.gpe_write(offset, size, v);
                p.gpe_read(offset, size);
                p.apm_write(offset, v as u8);
                p.apm_read(offset);
            }
        }
    }
    p.pm_read(u16::MAX, 4, u64::MAX);
    p.next_event(u64::MAX);
    p.update(u64::MAX);
    let mut f = Piix4Pm::new();
    for off in 0..=255u8 {
        f.config_write(off, 1, 0xFF);
        f.config_read(off, 1);
    }
}
