//! Intel 82371SB PIIX3 function 0, the PCI-to-ISA bridge, at 01.0 (82371FB/82371SB
//! datasheet 290550, section 2.2 "PCI to ISA Bridge Configuration Registers").
//!
//! Only the configuration registers live here; the ELCR (ports 0x4D0/0x4D1) belongs to the
//! PIC model, the reset control register at 0xCF9 to [`super::PciHost`].

use super::{ConfigSpace, DevFn, PciDevice, PciEvent, PCI_HEADER_MULTI_FUNCTION};

/// Where the ISA bridge sits (device 1, function 0; IDE is 01.1, USB 01.2, PM 01.3).
pub const PIIX3_DEVFN: DevFn = DevFn(1 << 3);
pub const PIIX3_VENDOR_ID: u16 = 0x8086;
pub const PIIX3_DEVICE_ID: u16 = 0x7000;
/// Class 06/01/00: ISA bridge.
pub const PIIX3_CLASS: u32 = 0x06_01_00;

/// IORT, ISA I/O recovery timer (datasheet 2.2.9), reset 0x4D.
pub const PIIX3_IORT: usize = 0x4C;
/// XBCS, X-bus chip select (datasheet 2.2.10), 16 bits, reset 0x0003.
pub const PIIX3_XBCS: usize = 0x4E;
/// PIRQRC[A:D], PIRQ route control (datasheet 2.2.11), one byte per PIRQ at 0x60-0x63.
pub const PIIX3_PIRQRC: usize = 0x60;
/// PIRQRC bit 7: IRQROUTEN, 1 = routing disabled.
pub const PIRQRC_DISABLE: u8 = 1 << 7;
/// PIRQRC bits 3:0: ISA IRQ number.
pub const PIRQRC_IRQ_MASK: u8 = 0x0F;
/// TOM, top of memory (datasheet 2.2.12), reset 0x02.
pub const PIIX3_TOM: usize = 0x69;
/// MBIRQ0, motherboard device IRQ route (datasheet 2.2.14), reset 0x80.
pub const PIIX3_MBIRQ0: usize = 0x70;
/// APICBASE, APIC base address relocation (datasheet 2.2.17).
pub const PIIX3_APICBASE: usize = 0x80;
/// SMICNTL, SMI control (datasheet 2.2.19), reset 0x08.
pub const PIIX3_SMICNTL: usize = 0xA0;

/// ISA IRQs a PIRQ may be steered to (datasheet 2.2.11: 3-7, 9-12, 14, 15).
pub fn pirq_irq_valid(irq: u8) -> bool {
    matches!(irq, 3..=7 | 9..=12 | 14 | 15)
}

/// The PIIX3 ISA bridge function.
#[derive(Clone, Debug)]
pub struct Piix3 {
    pub(super) cfg: ConfigSpace,
    pub(super) routes: [Option<u8>; 4],
    pub(super) pending: Vec<PciEvent>,
}

impl Default for Piix3 {
    fn default() -> Self {
        Self::new()
    }
}

impl Piix3 {
    pub fn new() -> Self {
        let mut cfg = ConfigSpace::new(PIIX3_VENDOR_ID, PIIX3_DEVICE_ID, PIIX3_CLASS, 0);
        cfg.set_header_type(PCI_HEADER_MULTI_FUNCTION);
        cfg.set_u16(super::PCI_COMMAND, 0x0007);
        cfg.set_u16(super::PCI_STATUS, 0x0200);
        cfg.set_writable(super::PCI_INTERRUPT_LINE, &[0]);
        // Every chipset register from 0x4C up is plain read/write storage here except the
        // PIRQ routes (reserved bits 6:4) and the reset values below.
        cfg.set_writable(PIIX3_IORT, &[0xFF; 0x100 - PIIX3_IORT]);
        cfg.set_writable(PIIX3_PIRQRC, &[PIRQRC_DISABLE | PIRQRC_IRQ_MASK; 4]);
        cfg.set_u8(PIIX3_IORT, 0x4D);
        cfg.set_u16(PIIX3_XBCS, 0x0003);
        cfg.set_u32(PIIX3_PIRQRC, 0x8080_8080);
        cfg.set_u8(PIIX3_TOM, 0x02);
        cfg.set_u16(PIIX3_MBIRQ0, 0x8080);
        cfg.set_u16(0x76, 0x0C0C); // MBDMA0/1
        cfg.set_u16(0x78, 0x0002); // PCSC
        cfg.set_u8(PIIX3_SMICNTL, 0x08);
        cfg.set_u8(0xA8, 0x0F); // FTMR
        cfg.freeze_reset_state();
        Self {
            cfg,
            routes: [None; 4],
            pending: Vec::new(),
        }
    }

    /// The ISA IRQ that PIRQ `pirq` (0 = PIRQA .. 3 = PIRQD) is steered to, or `None` when
    /// routing is disabled (bit 7) or the IRQ number is reserved.
    pub fn pirq_route(&self, pirq: usize) -> Option<u8> {
        if pirq >= 4 {
            return None;
        }
        let v = self.cfg.u8(PIIX3_PIRQRC + pirq);
        let irq = v & PIRQRC_IRQ_MASK;
        (v & PIRQRC_DISABLE == 0 && pirq_irq_valid(irq)).then_some(irq)
    }

    /// The ISA IRQ for interrupt pin `pin` (1 = INTA#) of the device in `slot`, through
    /// [`super::pirq_for_slot`] and the route registers.
    pub fn irq_for_slot(&self, slot: u8, pin: u8) -> Option<u8> {
        self.pirq_route(usize::from(super::pirq_for_slot(slot, pin)?))
    }

    fn refresh_routes(&mut self) {
        for pirq in 0..4 {
            let irq = self.pirq_route(pirq);
            if irq != self.routes[pirq] {
                self.routes[pirq] = irq;
                self.pending.push(PciEvent::PirqRoute {
                    pirq: pirq as u8,
                    irq,
                });
            }
        }
    }
}

impl PciDevice for Piix3 {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.cfg.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.cfg.write(offset, size, value);
        self.refresh_routes();
    }

    fn take_events(&mut self, out: &mut Vec<PciEvent>) {
        out.append(&mut self.pending);
    }

    fn reset(&mut self) {
        self.cfg.reset();
        self.refresh_routes();
    }
}
