use super::*;
use crate::PioDevice;

/// A device with one BAR of each kind and a ROM, as e1000/virtio/IDE will look.
struct TestDev {
    cfg: ConfigSpace,
}

impl TestDev {
    fn new() -> Self {
        let mut cfg = ConfigSpace::new(0x1234, 0x5678, 0x02_00_00, 1);
        cfg.add_bar(
            0,
            BarKind::Mem32 {
                prefetchable: false,
            },
            0x2_0000,
        )
        .unwrap();
        cfg.add_bar(1, BarKind::Io, 0x40).unwrap();
        cfg.add_bar(2, BarKind::Mem64 { prefetchable: true }, 0x4000)
            .unwrap();
        cfg.set_rom(0x1_0000).unwrap();
        cfg.set_interrupt_pin(1);
        cfg.add_capability(0x40, 0x05).unwrap();
        cfg.freeze_reset_state();
        Self { cfg }
    }
}

impl PciDevice for TestDev {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.cfg.read(offset, size)
    }
    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.cfg.write(offset, size, value)
    }
    fn bar(&self, index: usize) -> Option<BarRegion> {
        self.cfg.bar_region(index)
    }
    fn reset(&mut self) {
        self.cfg.reset()
    }
}

fn host() -> PciHost {
    let mut bus = PciBus::new();
    bus.add_device(I440FX_DEVFN, I440fx::new()).unwrap();
    bus.add_device(PIIX3_DEVFN, Piix3::new()).unwrap();
    bus.add_device(DevFn::new(3, 0).unwrap(), TestDev::new())
        .unwrap();
    let mut h = PciHost::new(bus);
    h.bus.drain_events().for_each(drop);
    h
}

fn addr(dev: u8, func: u8, reg: u8) -> u32 {
    0x8000_0000 | u32::from(dev) << 11 | u32::from(func) << 8 | u32::from(reg)
}

/// `pci_config_readl`, the way SeaBIOS and Linux do it.
fn readl(h: &mut PciHost, dev: u8, func: u8, reg: u8) -> u32 {
    h.write(0, 4, addr(dev, func, reg & 0xFC));
    h.read(4, 4)
}

fn writel(h: &mut PciHost, dev: u8, func: u8, reg: u8, v: u32) {
    h.write(0, 4, addr(dev, func, reg & 0xFC));
    h.write(4, 4, v);
}

fn readb(h: &mut PciHost, dev: u8, func: u8, reg: u8) -> u32 {
    h.write(0, 4, addr(dev, func, reg & 0xFC));
    h.read(4 + u16::from(reg & 3), 1)
}

fn writeb(h: &mut PciHost, dev: u8, func: u8, reg: u8, v: u8) {
    h.write(0, 4, addr(dev, func, reg & 0xFC));
    h.write(4 + u16::from(reg & 3), 1, u32::from(v));
}

#[test]
fn config_address_register() {
    let mut h = host();
    h.write(0, 4, 0xFFFF_FFFF);
    assert_eq!(h.read(0, 4), 0x80FF_FFFC, "reserved bits read 0");
    h.write(0, 4, 0x8000_0000);
    assert_eq!(h.config_address(), 0x8000_0000);
}

#[test]
fn enumerates_the_chipset() {
    let mut h = host();
    assert_eq!(readl(&mut h, 0, 0, 0), 0x1237_8086);
    assert_eq!(readl(&mut h, 0, 0, 8) >> 8, 0x06_00_00);
    assert_eq!(readl(&mut h, 1, 0, 0), 0x7000_8086);
    assert_eq!(readl(&mut h, 1, 0, 8) >> 8, 0x06_01_00);
    assert_eq!(readb(&mut h, 1, 0, 0x0E), 0x80, "PIIX3 is multi-function");
    assert_eq!(readb(&mut h, 0, 0, 0x0E), 0x00);
    assert_eq!(readl(&mut h, 2, 0, 0), 0xFFFF_FFFF, "empty slot");
    assert_eq!(readl(&mut h, 0, 1, 0), 0xFFFF_FFFF, "no function 1");
    assert_eq!(readb(&mut h, 2, 0, 0), 0xFF);
    // Another bus, or the enable bit clear: nothing answers.
    h.write(0, 4, 0x8001_0000);
    assert_eq!(h.read(4, 4), 0xFFFF_FFFF);
    h.write(0, 4, 0x0000_0000);
    assert_eq!(h.read(4, 2), 0xFFFF);
}

#[test]
fn byte_and_word_access_within_the_data_window() {
    let mut h = host();
    h.write(0, 4, addr(0, 0, 0));
    assert_eq!(h.read(4, 2), 0x8086);
    assert_eq!(h.read(6, 2), 0x1237);
    assert_eq!(h.read(5, 1), 0x80);
    assert_eq!(h.read(7, 1), 0x12);
    assert_eq!(h.read(6, 4), 0x1237, "clipped to the dword");
    h.write(0, 4, addr(3, 0, 0x3C));
    h.write(4, 1, 11);
    assert_eq!(
        readl(&mut h, 3, 0, 0x3C) & 0xFFFF,
        0x010B,
        "line 11, pin INTA"
    );
}

#[test]
fn multi_function_bit_is_reported_for_other_functions() {
    let mut bus = PciBus::new();
    bus.add_device(DevFn::new(5, 0).unwrap(), TestDev::new())
        .unwrap();
    assert_eq!(bus.config_read(DevFn::new(5, 0).unwrap(), 0x0E, 1), 0);
    bus.add_device(DevFn::new(5, 2).unwrap(), TestDev::new())
        .unwrap();
    assert_eq!(
        bus.config_read(DevFn::new(5, 0).unwrap(), 0x0C, 4) >> 16 & 0xFF,
        0x80
    );
    assert_eq!(
        bus.add_device(DevFn::new(5, 2).unwrap(), TestDev::new()).err(),
        Some(PciError::SlotOccupied(DevFn::new(5, 2).unwrap()))
    );
}

#[test]
fn bar_sizing_protocol() {
    let mut h = host();
    let sized = |h: &mut PciHost, reg: u8| {
        let orig = readl(h, 3, 0, reg);
        writel(h, 3, 0, reg, 0xFFFF_FFFF);
        let v = readl(h, 3, 0, reg);
        writel(h, 3, 0, reg, orig);
        v
    };
    assert_eq!(sized(&mut h, 0x10), 0xFFFE_0000, "128 KiB memory BAR");
    assert_eq!(sized(&mut h, 0x14), 0xFFFF_FFC1, "64-port I/O BAR");
    assert_eq!(sized(&mut h, 0x18), 0xFFFF_C00C, "64-bit prefetchable, low");
    assert_eq!(sized(&mut h, 0x1C), 0xFFFF_FFFF, "64-bit, high");
    assert_eq!(sized(&mut h, 0x20), 0, "unimplemented BAR");
    assert_eq!(sized(&mut h, 0x30), 0xFFFF_0001, "64 KiB ROM");
    assert_eq!(readl(&mut h, 3, 0, 0x10), 0);
}

#[test]
fn bar_changes_are_reported() {
    let mut h = host();
    let dev = DevFn::new(3, 0).unwrap();
    writel(&mut h, 3, 0, 0x10, 0xFEB0_0000);
    writel(&mut h, 3, 0, 0x14, 0xC041);
    writel(&mut h, 3, 0, 0x18, 0x0000_0000);
    writel(&mut h, 3, 0, 0x1C, 0x0000_0008);
    assert_eq!(h.bus.drain_events().count(), 0, "decoding still off");
    writel(&mut h, 3, 0, 0x04, 0x0003); // I/O + memory
    let ev: Vec<_> = h.bus.drain_events().collect();
    assert_eq!(ev.len(), 3, "{ev:?}");
    let mem = BarRegion {
        index: 0,
        kind: BarKind::Mem32 {
            prefetchable: false,
        },
        address: 0xFEB0_0000,
        size: 0x2_0000,
    };
    assert_eq!(
        ev[0],
        PciEvent::Bar(BarChange {
            devfn: dev,
            index: 0,
            old: None,
            new: Some(mem)
        })
    );
    let PciEvent::Bar(io) = ev[1] else { panic!() };
    assert_eq!(io.new.unwrap().address, 0xC040);
    assert!(io.new.unwrap().is_io());
    let PciEvent::Bar(m64) = ev[2] else { panic!() };
    assert_eq!(m64.new.unwrap().address, 0x8_0000_0000);
    assert_eq!(h.bus.bars(dev)[0], Some(mem));

    // Moving a BAR reports old and new.
    writel(&mut h, 3, 0, 0x10, 0xFEA0_0000);
    let ev: Vec<_> = h.bus.drain_events().collect();
    let PciEvent::Bar(c) = ev[0] else { panic!() };
    assert_eq!(c.old, Some(mem));
    assert_eq!(c.new.unwrap().address, 0xFEA0_0000);

    // Sizing with decoding on: the all-ones pattern is not a placement.
    writel(&mut h, 3, 0, 0x10, 0xFFFF_FFFF);
    let ev: Vec<_> = h.bus.drain_events().collect();
    let PciEvent::Bar(c) = ev[0] else { panic!() };
    assert_eq!(c.new, None);

    // ROM decodes only with its enable bit and memory space on.
    writel(&mut h, 3, 0, 0x30, 0xFEC4_0000);
    assert_eq!(h.bus.drain_events().count(), 0);
    writel(&mut h, 3, 0, 0x30, 0xFEC4_0001);
    let ev: Vec<_> = h.bus.drain_events().collect();
    let PciEvent::Bar(rom) = ev[0] else { panic!() };
    assert_eq!(rom.index, PCI_ROM_SLOT);
    assert_eq!(rom.new.unwrap().address, 0xFEC4_0000);

    // Disabling memory space unmaps memory BARs and the ROM, not the I/O BAR.
    writel(&mut h, 3, 0, 0x04, 0x0001);
    let ev: Vec<_> = h.bus.drain_events().collect();
    assert_eq!(ev.len(), 2, "{ev:?}");

    // Reset returns the device to its power-on header and reports the I/O BAR gone.
    h.reset();
    let ev: Vec<_> = h.bus.drain_events().collect();
    assert!(ev.contains(&PciEvent::Bar(BarChange {
        devfn: dev,
        index: 1,
        old: io.new,
        new: None
    })));
    assert_eq!(readl(&mut h, 3, 0, 0x14), 0x1);
}

#[test]
fn command_and_status_masks() {
    let mut h = host();
    writel(&mut h, 3, 0, 0x04, 0xFFFF_FFFF);
    assert_eq!(
        readl(&mut h, 3, 0, 0x04),
        0x0010_0557,
        "status: cap list; command masked"
    );
    let dev3 = DevFn::new(3, 0).unwrap();
    assert_eq!(h.bus.with_device(dev3, |d: &mut TestDev| d.cfg.bus_master()), Some(true));
    assert!(
        h.bus.with_device(dev3, |_: &mut I440fx| ()).is_none(),
        "wrong type"
    );
    // W1C status bits.
    h.bus.with_device(dev3, |d: &mut TestDev| d.cfg.set_u16(PCI_STATUS, 0x2010)).unwrap();
    writel(&mut h, 3, 0, 0x04, 0x2000_0000);
    assert_eq!(readl(&mut h, 3, 0, 0x04) >> 16, 0x0010);
    assert_eq!(readb(&mut h, 3, 0, 0x34), 0x40);
    assert_eq!(
        readl(&mut h, 3, 0, 0x40) & 0xFFFF,
        0x0005,
        "MSI cap, end of list"
    );
    assert_eq!(readl(&mut h, 3, 0, 0x00), 0x5678_1234, "IDs read-only");
    writel(&mut h, 3, 0, 0x00, 0);
    assert_eq!(readl(&mut h, 3, 0, 0x00), 0x5678_1234);
}

#[test]
fn pam_registers_for_bios_shadowing() {
    let mut h = host();
    let pam = h.bus.with_device(I440FX_DEVFN, |d: &mut I440fx| d.pam()).unwrap();
    assert!(pam.segments.iter().all(|a| !a.read_dram && !a.write_dram));
    // SeaBIOS make_bios_writable: PAM0 = 0x30, PAM1-6 = 0x33.
    writeb(&mut h, 0, 0, 0x59, 0x30);
    let ev: Vec<_> = h.bus.drain_events().collect();
    let [PciEvent::Pam(p)] = ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(
        p.segments[0],
        PamAttr {
            read_dram: true,
            write_dram: true
        }
    );
    writel(&mut h, 0, 0, 0x5C, 0x3333_3333); // PAM3-PAM6
    writeb(&mut h, 0, 0, 0x5A, 0x13); // PAM1: C0000 RW, C4000 read-only
    let pam = h.bus.with_device(I440FX_DEVFN, |d: &mut I440fx| d.pam()).unwrap();
    assert_eq!(
        pam.segments[1],
        PamAttr {
            read_dram: true,
            write_dram: true
        }
    );
    assert_eq!(
        pam.segments[2],
        PamAttr {
            read_dram: true,
            write_dram: false
        }
    );
    assert_eq!(PamState::segment_range(2), (0xC4000, 0x4000));
    assert_eq!(PamState::segment_range(12), (0xEC000, 0x4000));
    assert_eq!(pam.segments().count(), 13);
    assert_eq!(readb(&mut h, 0, 0, 0x59), 0x30);
    writeb(&mut h, 0, 0, 0x59, 0xFF);
    assert_eq!(readb(&mut h, 0, 0, 0x59), 0x30, "reserved bits read 0");
    h.bus.drain_events().for_each(drop);
    writeb(&mut h, 0, 0, 0x59, 0x30);
    assert_eq!(h.bus.drain_events().count(), 0, "no change, no event");
}

#[test]
fn smram_register_and_lock() {
    let mut h = host();
    assert_eq!(readb(&mut h, 0, 0, 0x72), 0x02);
    writeb(&mut h, 0, 0, 0x72, 0x4A); // G_SMRAME | D_OPEN
    let ev: Vec<_> = h.bus.drain_events().collect();
    let [PciEvent::Smram(s)] = ev[..] else {
        panic!("{ev:?}")
    };
    assert!(s.enabled() && s.open() && s.ram_visible(false));
    writeb(&mut h, 0, 0, 0x72, 0x1A); // lock
    let s = h.bus.with_device(I440FX_DEVFN, |d: &mut I440fx| d.smram()).unwrap();
    assert!(s.locked() && !s.open() && !s.ram_visible(false) && s.ram_visible(true));
    writeb(&mut h, 0, 0, 0x72, 0x40); // try to reopen and unlock
    assert_eq!(readb(&mut h, 0, 0, 0x72), 0x1A, "locked until reset");
    h.reset();
    assert_eq!(readb(&mut h, 0, 0, 0x72), 0x02);
}

#[test]
fn pirq_routing() {
    let mut h = host();
    assert_eq!(readl(&mut h, 1, 0, 0x60), 0x8080_8080);
    assert_eq!(h.bus.with_device(PIIX3_DEVFN, |p: &mut Piix3| p.pirq_route(0)), Some(None));
    // SeaBIOS: PIRQA-D -> 10, 10, 11, 11.
    writel(&mut h, 1, 0, 0x60, 0x0B0B_0A0A);
    let ev: Vec<_> = h.bus.drain_events().collect();
    assert_eq!(ev.len(), 4);
    assert_eq!(
        ev[2],
        PciEvent::PirqRoute {
            pirq: 2,
            irq: Some(11)
        }
    );
    h.bus
        .with_device(PIIX3_DEVFN, |piix: &mut Piix3| {
            assert_eq!(piix.pirq_route(1), Some(10));
            assert_eq!(piix.irq_for_slot(3, 1), Some(11), "slot 3 INTA -> PIRQC");
        })
        .unwrap();
    writeb(&mut h, 1, 0, 0x61, 0x8A);
    assert_eq!(
        h.bus.with_device(PIIX3_DEVFN, |d: &mut Piix3| d.pirq_route(1)).unwrap(),
        None
    );
    writeb(&mut h, 1, 0, 0x62, 0x02); // IRQ 2 is not routable
    assert_eq!(
        h.bus.with_device(PIIX3_DEVFN, |d: &mut Piix3| d.pirq_route(2)).unwrap(),
        None
    );
    assert_eq!(readb(&mut h, 1, 0, 0x62), 0x02);
    writeb(&mut h, 1, 0, 0x63, 0x7F);
    assert_eq!(readb(&mut h, 1, 0, 0x63), 0x0F, "reserved bits 6:4");
    assert_eq!(
        h.bus.with_device(PIIX3_DEVFN, |d: &mut Piix3| d.pirq_route(9)).unwrap(),
        None
    );
}

#[test]
fn intx_swizzle() {
    assert_eq!(pirq_for_slot(1, 1), Some(0));
    assert_eq!(pirq_for_slot(1, 4), Some(3));
    assert_eq!(pirq_for_slot(0, 1), Some(3));
    assert_eq!(pirq_for_slot(2, 1), Some(1));
    assert_eq!(pirq_for_slot(3, 2), Some(3));
    assert_eq!(pirq_for_slot(4, 1), Some(3));
    assert_eq!(pirq_for_slot(31, 4), Some(1));
    assert_eq!(pirq_for_slot(3, 0), None);
    assert_eq!(pirq_for_slot(3, 5), None);
}

#[test]
fn reset_control_port() {
    let mut h = host();
    h.write(1, 1, 0x02);
    assert!(!h.take_reset_request());
    h.write(1, 1, 0x06);
    assert!(h.take_reset_request());
    assert!(!h.take_reset_request());
    assert_eq!(h.read(1, 1), 0x02);
    h.write(1, 1, 0x06);
    assert!(h.take_reset_request(), "every RCPU write resets");
}

#[test]
fn bad_bar_declarations_are_errors() {
    let mut c = ConfigSpace::new(1, 2, 0, 0);
    assert!(c.add_bar(6, BarKind::Io, 16).is_err());
    assert!(c
        .add_bar(
            5,
            BarKind::Mem64 {
                prefetchable: false
            },
            16
        )
        .is_err());
    assert!(c.add_bar(0, BarKind::Io, 24).is_err());
    assert!(c
        .add_bar(
            0,
            BarKind::Mem32 {
                prefetchable: false
            },
            8
        )
        .is_err());
    assert!(c.set_rom(0x100).is_err());
    assert!(c.add_capability(0x41, 9).is_err());
}

#[test]
fn no_guest_access_panics() {
    let mut h = host();
    for dev in [0u8, 1, 3, 31] {
        for reg in 0..=255u8 {
            for v in [0u32, u32::MAX, 0x5555_AAAA] {
                h.write(0, 4, addr(dev, 0, reg) | 3);
                for off in 0..8u16 {
                    for size in [0u8, 1, 2, 3, 4, 8] {
                        h.write(off, size, v);
                        h.read(off, size);
                    }
                }
                h.write(0, 4, addr(dev, 0, reg));
            }
        }
    }
    h.read(100, 4);
    h.write(100, 4, 0);
    h.bus.drain_events().for_each(drop);
}
