use super::*;
use crate::pci::{PciDevice, PciEvent};
use crate::testing::SharedLine;
use ferrite_persist::{load, save, Persist, RestoreError};

const SEC: Nanos = 1_000_000_000;

fn pm() -> (AcpiPm<SharedLine>, SharedLine) {
    let line = SharedLine::default();
    (AcpiPm::new(line.clone()), line)
}

/// ACPI mode on, the timer and power button enabled, a power button press and a GPE
/// pending, S3 requested.
fn busy() -> (AcpiPm<SharedLine>, SharedLine) {
    let (mut p, line) = pm();
    p.apm_write(0, ACPI_ENABLE);
    p.pm_write(PM1_EVT_OFFSET + 2, 2, u32::from(PM1_TMR_EN | PM1_PWRBTN_EN), 0);
    p.gpe_write(GPE0_STS_LEN, 1, 0x02); // GPE1 enable
    p.raise_gpe(1);
    p.press_power_button();
    p.apm_write(1, 0x5a);
    p.pm_write(PM1_CNT_OFFSET, 2, u32::from(PM1_SCI_EN | u16::from(SLP_TYP_S3) << PM1_SLP_TYP_SHIFT | PM1_SLP_EN), SEC);
    assert!(line.level());
    (p, line)
}

#[test]
fn a_restored_pm_block_carries_on_like_the_original() {
    let (mut a, aline) = busy();
    let (mut b, bline) = pm();
    load(&mut b, &save(&a, "acpi-pm")).unwrap();
    assert!(bline.level(), "the SCI is re-driven");
    assert_eq!(b.take_sleep_request(), a.take_sleep_request());
    let t = 3 * SEC;
    assert_eq!(b.next_event(t), a.next_event(t));
    for p in [&mut a, &mut b] {
        p.update(t);
        p.pm_write(PM1_EVT_OFFSET, 2, u32::from(PM1_PWRBTN_STS), t);
    }
    for off in [0, 2, 4, 8] {
        assert_eq!(a.pm_read(off, 2, t), b.pm_read(off, 2, t), "PM offset {off}");
    }
    assert_eq!((a.gpe_read(0, 4), a.gpe_read(4, 4), a.apm_read(1)), (b.gpe_read(0, 4), b.gpe_read(4, 4), b.apm_read(1)));
    a.gpe_write(0, 1, 0x02);
    b.gpe_write(0, 1, 0x02);
    assert_eq!(aline.level(), bline.level());
}

#[test]
fn a_corrupt_state_is_refused_and_changes_nothing() {
    let (a, _) = busy();
    let (mut b, bline) = pm();
    let mut s = a.save();
    s.pm1_control |= PM1_SLP_EN;
    assert!(matches!(b.restore(s), Err(RestoreError::Invalid { field: "pm1_control", .. })));
    assert_eq!(b.save(), pm().0.save());
    assert_eq!(bline.drives(), 0);
}

#[test]
fn the_pm_function_reports_its_restored_base() {
    let mut a = Piix4Pm::new();
    a.config_write(PIIX4_PMBA as u8, 4, 0xb001);
    let mut b = Piix4Pm::new();
    let mut ev = Vec::new();
    b.take_events(&mut ev);
    load(&mut b, &save(&a, "00:01.3")).unwrap();
    ev.clear();
    b.take_events(&mut ev);
    assert_eq!(ev, vec![PciEvent::PmIoBase { base: Some(0xb000) }]);
    assert_eq!(b.config_read(PIIX4_PMBA as u8, 4), a.config_read(PIIX4_PMBA as u8, 4));
}
