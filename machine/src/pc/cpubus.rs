//! `CpuBus` for the PC board: RAM/ROM pages, port I/O decode with byte splitting for 8-bit
//! devices, MMIO for the APICs, the INTR/INTA cycle and guest time.

use super::{PcBoard, Pio};
use ferrite_cpu::bus::{CpuBus, PhysPage};
use ferrite_hw::PioDevice;

/// Guest-physical window of the IOAPIC.
const IOAPIC_BASE: u64 = ferrite_hw::ioapic::IOAPIC_BASE;
const IOAPIC_SIZE: u64 = ferrite_hw::ioapic::IOAPIC_SIZE;

/// fw_cfg DMA into guest RAM, recording what it wrote.
struct Dma<'a> {
    mem: &'a mut crate::memory::GuestMemory,
    writes: &'a mut Vec<(u64, u64)>,
}

impl ferrite_hw::fw_cfg::DmaMemory for Dma<'_> {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        self.mem.read(gpa, buf).is_ok()
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        self.writes.push((gpa, data.len() as u64));
        self.mem.write(gpa, data).is_ok()
    }
}

impl PcBoard {
    /// One access of `size` bytes to a device slot.
    fn pio_read(&mut self, slot: Pio, port: u16, offset: u16, size: u8) -> u32 {
        let now = self.clock.now();
        match slot {
            Pio::Pic => self.byte_wise_read(size, |b, i| b.pic.read_port(port.wrapping_add(i)) as u32),
            Pio::Pit => self.byte_wise_read(size, |b, i| b.pit.read(offset.wrapping_add(i) & 3, now) as u32),
            Pio::PortB => self.pit.read_port_b(now) as u32,
            Pio::Rtc => self.byte_wise_read(size, |b, i| b.rtc.read(offset.wrapping_add(i) & 1, now) as u32),
            Pio::Com1 => self.uart.read(offset, size),
            Pio::I8042Data => self.i8042.read(0, size),
            Pio::I8042Command => self.i8042.read(4, size),
            Pio::Port92 => self.port92.read(offset, size),
            Pio::Post => self.post.read(offset, size),
            Pio::DebugExit => self.debug_exit.as_mut().map_or(!0, |d| d.read(offset, size)),
            Pio::PciHost => self.pci.read(offset, size),
            Pio::AcpiPm => self.pm.pm_read(offset, size, now),
            Pio::AcpiGpe => self.pm.gpe_read(offset, size),
            Pio::Apm => self.byte_wise_read(size, |b, i| b.pm.apm_read(offset.wrapping_add(i)) as u32),
            Pio::FwCfg => self.fw_cfg.read(offset, size),
        }
    }

    fn pio_write(&mut self, slot: Pio, port: u16, offset: u16, size: u8, value: u32) {
        let now = self.clock.now();
        match slot {
            Pio::Pic => self.byte_wise_write(size, value, |b, i, v| b.pic.write_port(port.wrapping_add(i), v)),
            Pio::Pit => self.byte_wise_write(size, value, |b, i, v| b.pit.write(offset.wrapping_add(i) & 3, v, now)),
            Pio::PortB => self.pit.write_port_b(value as u8, now),
            Pio::Rtc => self.byte_wise_write(size, value, |b, i, v| b.rtc.write(offset.wrapping_add(i) & 1, v, now)),
            Pio::Com1 => self.uart.write(offset, size, value),
            Pio::I8042Data => self.i8042.write(0, size, value),
            Pio::I8042Command => self.i8042.write(4, size, value),
            Pio::Port92 => self.port92.write(offset, size, value),
            Pio::Post => self.post.write(offset, size, value),
            Pio::DebugExit => {
                if let Some(d) = self.debug_exit.as_mut() {
                    d.write(offset, size, value)
                }
            }
            Pio::PciHost => self.pci.write(offset, size, value),
            Pio::AcpiPm => self.pm.pm_write(offset, size, value, now),
            Pio::AcpiGpe => self.pm.gpe_write(offset, size, value),
            Pio::Apm => self.byte_wise_write(size, value, |b, i, v| b.pm.apm_write(offset.wrapping_add(i), v)),
            Pio::FwCfg => {
                let mut dma = Dma { mem: &mut self.mem, writes: &mut self.dma_writes };
                self.fw_cfg.write(offset, size, value, &mut dma)
            }
        }
        self.collect_requests();
    }

    /// Wide accesses to 8-bit devices reach consecutive ports, low byte first.
    fn byte_wise_read(&mut self, size: u8, mut f: impl FnMut(&mut Self, u16) -> u32) -> u32 {
        (0..size.min(4) as u16).fold(0, |acc, i| acc | (f(self, i) & 0xff) << (8 * i))
    }

    fn byte_wise_write(&mut self, size: u8, value: u32, mut f: impl FnMut(&mut Self, u16, u8)) {
        for i in 0..size.min(4) as u16 {
            f(self, i, (value >> (8 * i)) as u8);
        }
    }
}

impl CpuBus for PcBoard {
    fn phys_page(&mut self, paddr: u64) -> PhysPage {
        match self.mem.page(paddr) {
            Some((p, true)) => PhysPage::Ram(p),
            Some((p, false)) => PhysPage::Rom(p),
            None => PhysPage::Mmio,
        }
    }

    fn mmio_read(&mut self, paddr: u64, size: u8) -> u64 {
        let now = self.clock.now();
        let v = if self.lapic.mmio_base().is_some_and(|b| paddr & !0xfff == b) {
            self.lapic.mmio_read(paddr & 0xfff, size, now)
        } else if (IOAPIC_BASE..IOAPIC_BASE + IOAPIC_SIZE).contains(&paddr) {
            ferrite_hw::MmioDevice::read(&mut self.ioapic, paddr - IOAPIC_BASE, size)
        } else {
            // Nothing there: the bus floats high.
            u64::MAX
        };
        self.sync_interrupts();
        v
    }

    fn mmio_write(&mut self, paddr: u64, size: u8, value: u64) {
        let now = self.clock.now();
        if self.lapic.mmio_base().is_some_and(|b| paddr & !0xfff == b) {
            self.lapic.mmio_write(paddr & 0xfff, size, value, now);
        } else if (IOAPIC_BASE..IOAPIC_BASE + IOAPIC_SIZE).contains(&paddr) {
            ferrite_hw::MmioDevice::write(&mut self.ioapic, paddr - IOAPIC_BASE, size, value);
        }
        self.sync_interrupts();
    }

    fn io_read(&mut self, port: u16, size: u8) -> u32 {
        let v = match self.pio.lookup(port as u64) {
            Some((slot, off)) => self.pio_read(slot, port, off as u16, size),
            None => u32::MAX,
        };
        self.sync_interrupts();
        v & (u32::MAX >> (32 - 8 * size.clamp(1, 4) as u32))
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32) {
        if let Some((slot, off)) = self.pio.lookup(port as u64) {
            self.pio_write(slot, port, off as u16, size, value);
        }
        self.sync_interrupts();
    }

    fn a20_mask(&self) -> u64 {
        if self.a20_enabled() {
            !0
        } else {
            !(1 << 20)
        }
    }

    fn interrupt_pending(&mut self) -> bool {
        self.intr_pending()
    }

    fn acknowledge_interrupt(&mut self) -> Option<u8> {
        self.intr_acknowledge()
    }

    fn now_ns(&mut self) -> u64 {
        self.clock.now()
    }

    fn set_tpr(&mut self, cr8: u8) {
        self.lapic.set_tpr(cr8 << 4);
    }

    fn read_device_msr(&mut self, msr: u32) -> Option<u64> {
        let now = self.clock.now();
        match msr {
            ferrite_cpu::msr::index::TSC_DEADLINE => Some(self.lapic.tsc_deadline()),
            ferrite_cpu::msr::index::X2APIC_FIRST..=ferrite_cpu::msr::index::X2APIC_LAST => self.lapic.msr_read(msr, now),
            _ => None,
        }
    }

    fn write_device_msr(&mut self, msr: u32, value: u64) -> Option<()> {
        let now = self.clock.now();
        let r = match msr {
            ferrite_cpu::msr::index::APIC_BASE => self.lapic.write_apic_base_msr(value).then_some(()),
            ferrite_cpu::msr::index::TSC_DEADLINE => {
                // The TSC runs at 1 GHz from the same clock (see ferrite_cpu::msr::TSC_HZ), and
                // the CPU hands over deadlines in raw guest time (it removes its TSC offset).
                self.lapic.write_tsc_deadline(value, now, now);
                Some(())
            }
            ferrite_cpu::msr::index::X2APIC_FIRST..=ferrite_cpu::msr::index::X2APIC_LAST => {
                self.lapic.msr_write(msr, value, now).then_some(())
            }
            _ => None,
        };
        self.sync_interrupts();
        r
    }
}
