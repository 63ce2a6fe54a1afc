//! `CpuBus` for one vCPU of the PC board: RAM/ROM pages (with the PAM views), its own local
//! APIC, MMIO and port I/O through the buses, its INTR line and INTA cycle, guest time and
//! the LAPIC's MSRs.

use super::interrupts::lock;
use super::PcBoard;
use ferrite_cpu::bus::{CpuBus, PhysPage};
use ferrite_memory::PageMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The board as vCPU `index` sees it. Each vCPU thread owns one.
pub struct VcpuBus {
    pub board: Arc<PcBoard>,
    pub index: usize,
}

impl VcpuBus {
    pub fn new(board: Arc<PcBoard>, index: usize) -> Self {
        VcpuBus { board, index }
    }

    fn own_lapic(&self, paddr: u64) -> bool {
        self.board.irq.cpus[self.index].lapic_base() == paddr & !0xfff
    }

    /// After a LAPIC register access: IPIs and EOIs out, INTR refreshed, timers re-armed.
    fn lapic_written(&self) {
        self.board.irq.lapic_changed(self.index);
        self.board.wiring.poke_timers();
    }
}

impl CpuBus for VcpuBus {
    fn phys_page(&mut self, paddr: u64) -> PhysPage {
        match self.board.mem.page(paddr) {
            PageMap::Ram(p) => PhysPage::Ram(p),
            PageMap::ReadOnly(p) => PhysPage::Rom(p),
            // Split PAM views and devices: every access through mmio_read/mmio_write.
            PageMap::Split { .. } | PageMap::Unmapped => PhysPage::Mmio,
        }
    }

    fn mmio_read(&mut self, paddr: u64, size: u8) -> u64 {
        let b = &*self.board;
        if self.own_lapic(paddr) {
            let now = b.wiring.clock.now();
            let v = lock(&b.irq.cpus[self.index].lapic).mmio_read(paddr & 0xfff, size, now);
            b.irq.update_intr(self.index);
            return v;
        }
        if let Some(v) = b.mem.load(paddr, size) {
            return v;
        }
        // Nothing there: the bus floats high.
        let v = b.mmio.read(paddr, size).unwrap_or(u64::MAX);
        b.irq.sync();
        v
    }

    fn mmio_write(&mut self, paddr: u64, size: u8, value: u64) {
        let b = &*self.board;
        if self.own_lapic(paddr) {
            let now = b.wiring.clock.now();
            lock(&b.irq.cpus[self.index].lapic).mmio_write(paddr & 0xfff, size, value, now);
            self.lapic_written();
            return;
        }
        if b.mem.store(paddr, size, value, self.index as u32) {
            return;
        }
        b.mmio.write(paddr, size, value);
        b.irq.sync();
    }

    fn io_read(&mut self, port: u16, size: u8) -> u32 {
        let v = self.board.io.read(port as u64, size).unwrap_or(u64::MAX);
        self.board.irq.sync();
        (v as u32) & (u32::MAX >> (32 - 8 * size.clamp(1, 4) as u32))
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32) {
        self.board.io.write(port as u64, size, value as u64);
        self.board.irq.sync();
    }

    fn a20_mask(&self) -> u64 {
        if self.board.wiring.a20_open() {
            !0
        } else {
            !(1 << 20)
        }
    }

    #[inline]
    fn interrupt_pending(&mut self) -> bool {
        self.board.irq.cpus[self.index].intr()
    }

    fn intr_in_attention(&self) -> bool {
        true
    }

    fn acknowledge_interrupt(&mut self) -> Option<u8> {
        self.board.irq.acknowledge(self.index)
    }

    fn now_ns(&mut self) -> u64 {
        self.board.wiring.clock.now()
    }

    fn set_tpr(&mut self, cr8: u8) {
        lock(&self.board.irq.cpus[self.index].lapic).set_tpr(cr8 << 4);
        self.board.irq.update_intr(self.index);
    }

    fn read_device_msr(&mut self, msr: u32) -> Option<u64> {
        use ferrite_cpu::msr::index;
        let now = self.board.wiring.clock.now();
        let mut l = lock(&self.board.irq.cpus[self.index].lapic);
        match msr {
            index::TSC_DEADLINE => Some(l.tsc_deadline()),
            index::X2APIC_FIRST..=index::X2APIC_LAST => l.msr_read(msr, now),
            _ => None,
        }
    }

    fn write_device_msr(&mut self, msr: u32, value: u64) -> Option<()> {
        use ferrite_cpu::msr::index;
        let now = self.board.wiring.clock.now();
        let mut l = lock(&self.board.irq.cpus[self.index].lapic);
        let r = match msr {
            index::APIC_BASE => l.write_apic_base_msr(value).then_some(()),
            index::TSC_DEADLINE => {
                // The CPU hands over deadlines in raw guest nanoseconds (it removes its TSC
                // offset and rate), so the local APIC sees a 1 GHz TSC.
                l.write_tsc_deadline(value, now, now);
                Some(())
            }
            index::X2APIC_FIRST..=index::X2APIC_LAST => l.msr_write(msr, value, now).then_some(()),
            _ => None,
        };
        drop(l);
        if r.is_some() {
            self.lapic_written();
        }
        r
    }
}

impl VcpuBus {
    /// Takes the NMI, INIT and start-up IPIs the LAPIC latched for this vCPU.
    pub fn take_lapic_signals(&self) -> (bool, bool, Option<u8>) {
        let mut l = lock(&self.board.irq.cpus[self.index].lapic);
        let r = (l.take_nmi(), l.take_init(), l.take_sipi());
        drop(l);
        if r.1 {
            // INIT reset the LAPIC's registers.
            self.board.irq.update_intr(self.index);
        }
        r
    }

    pub fn exit_requested(&self) -> bool {
        self.board.irq.cpus[self.index].attention.kick.load(Ordering::Acquire)
    }
}
