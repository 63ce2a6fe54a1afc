use super::*;
use crate::testing::{FakeMsi, SharedLine};
use ferrite_persist::{load, save, Persist, RestoreError};

/// A function with a memory BAR holding an MSI-X table of 3 vectors and an INTx pin.
struct Func {
    cfg: ConfigSpace,
    msix: MsixTable,
}

fn func() -> Func {
    let mut cfg = ConfigSpace::new(0x1af4, 0x1000, 0x02_00_00, 0);
    cfg.add_bar(1, BarKind::Mem32 { prefetchable: false }, 0x1000).unwrap();
    cfg.set_interrupt_pin(1);
    let msix = cfg.add_msix_capability(0x40, 1, 0, 1, 0x800, 3).unwrap();
    cfg.freeze_reset_state();
    Func { cfg, msix }
}

fn chipset() -> PciHost {
    let mut bus = PciBus::new();
    bus.add_device(I440FX_DEVFN, I440fx::new()).unwrap();
    bus.add_device(PIIX3_DEVFN, Piix3::new()).unwrap();
    let mut h = PciHost::new(bus);
    h.bus.drain_events().for_each(drop);
    h
}

fn cfg_write(h: &mut PciHost, devfn: DevFn, reg: u8, size: u8, v: u32) {
    crate::PioDevice::write(h, 0, 4, 0x8000_0000 | u32::from(devfn.0) << 8 | u32::from(reg & !3));
    crate::PioDevice::write(h, 4 + u16::from(reg & 3), size, v);
}

#[test]
fn a_function_config_space_and_msix_table_carry_on_after_restore() {
    let (msi, line) = (FakeMsi::default(), SharedLine::default());
    let mut a = func();
    a.cfg.write(0x14, 4, 0xfebf_0000);
    a.cfg.write(PCI_COMMAND as u8, 2, u32::from(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));
    a.cfg.write(0x42, 2, 0x8000); // MSI-X enable
    a.msix.sync_control(&a.cfg, &msi);
    a.msix.table_write(16, &0xfee0_0000u32.to_le_bytes(), &msi);
    a.msix.table_write(24, &0x41u32.to_le_bytes(), &msi);
    assert!(!a.msix.notify(1, &msi), "vector 1 is still masked: pending");
    a.cfg.set_intx(true, &line);

    let mut b = func();
    let bline = SharedLine::default();
    let (cs, ms) = (a.cfg.save_state(), a.msix.save_state());
    b.cfg.check_state(&cs).unwrap();
    b.msix.check_state(&ms).unwrap();
    b.cfg.restore_state(&cs);
    b.msix.restore_state(&ms);
    b.cfg.redrive_intx(&bline);
    assert!(bline.level());
    for reg in (0..256).step_by(4) {
        assert_eq!(a.cfg.read(reg as u8, 4), b.cfg.read(reg as u8, 4), "config {reg:#x}");
    }
    assert_eq!(a.cfg.bar_region(1), b.cfg.bar_region(1));
    assert_eq!(b.msix.pending(1), true);
    for f in [&mut a, &mut b] {
        f.msix.table_write(28, &0u32.to_le_bytes(), &msi); // unmask: the pending message goes out
    }
    assert_eq!(msi.take(), vec![(0xfee0_0000, 0x41), (0xfee0_0000, 0x41)]);
}

#[test]
fn a_config_space_for_another_function_or_a_bad_msix_table_is_refused() {
    let a = func();
    let other = ConfigSpace::new(0x8086, 0x100e, 0x02_00_00, 3);
    let e = other.check_state(&a.cfg.save_state()).unwrap_err().to_string();
    assert!(e.contains("1af4:1000") && e.contains("8086:100e"), "{e}");
    let mut ms = a.msix.save_state();
    ms.entries.push(ms.entries[0]);
    assert!(a.msix.check_state(&ms).is_err());
    let mut ms = a.msix.save_state();
    ms.pending[0] = 1 << 3;
    assert!(a.msix.check_state(&ms).is_err(), "pending bit past the last vector");
}

#[test]
fn the_chipset_is_restored_and_reports_its_decoding_again() {
    let mut a = chipset();
    cfg_write(&mut a, I440FX_DEVFN, I440FX_PAM0 as u8 + 1, 1, 0x33);
    cfg_write(&mut a, I440FX_DEVFN, I440FX_SMRAM as u8, 1, 0x4a);
    cfg_write(&mut a, PIIX3_DEVFN, PIIX3_PIRQRC as u8 + 2, 1, 11);
    crate::PioDevice::write(&mut a, 0, 4, 0x8000_0860);
    a.bus.drain_events().for_each(drop);

    let mut b = chipset();
    load(&mut b, &save(&a, "pci-host")).unwrap();
    let i440 = a.bus.with_device(I440FX_DEVFN, |d: &mut I440fx| save(d, "00:00.0")).unwrap();
    let piix3 = a.bus.with_device(PIIX3_DEVFN, |d: &mut Piix3| save(d, "00:01.0")).unwrap();
    b.bus.with_device(I440FX_DEVFN, |d: &mut I440fx| load(d, &i440)).unwrap().unwrap();
    b.bus.with_device(PIIX3_DEVFN, |d: &mut Piix3| load(d, &piix3)).unwrap().unwrap();
    b.bus.sync_all();
    let ev: Vec<_> = b.bus.drain_events().collect();
    let pam = a.bus.with_device(I440FX_DEVFN, |d: &mut I440fx| d.pam()).unwrap();
    assert!(ev.contains(&PciEvent::Pam(pam)), "{ev:?}");
    assert!(ev.contains(&PciEvent::Smram(SmramState(0x4a))), "{ev:?}");
    assert!(ev.contains(&PciEvent::PirqRoute { pirq: 2, irq: Some(11) }), "{ev:?}");
    assert_eq!(b.config_address(), 0x8000_0860);
    for h in [&mut a, &mut b] {
        crate::PioDevice::write(h, 0, 4, 0x8000_0858);
    }
    for off in 0..4 {
        assert_eq!(crate::PioDevice::read(&mut a, 4 + off, 1), crate::PioDevice::read(&mut b, 4 + off, 1));
    }
    let mut s = piix3.clone();
    s.state["config"]["bytes"][0] = 0x86.into();
    s.state["config"]["bytes"][1] = 0x81.into();
    assert!(b.bus.with_device(PIIX3_DEVFN, |d: &mut Piix3| load(d, &s)).unwrap().is_err());
    assert!(matches!(
        b.restore(PciHostState { config_address: 3, reset_control: 0, reset_requested: false }),
        Err(RestoreError::Invalid { field: "config_address", .. })
    ));
}
