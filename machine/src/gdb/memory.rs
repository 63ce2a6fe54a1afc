//! Guest memory as gdb sees it: by linear (virtual) address through the guest's current page
//! tables, or by physical address after `monitor phys on`. Only RAM and ROM are accessible:
//! device memory (and addresses with nothing behind them) read as errors, so a debugger read
//! never has a device side effect. Writes reach RAM and ROM (patching firmware is useful);
//! decoded code on written pages is dropped.
//!
//! Addresses are linear addresses: segment bases are not applied (as with QEMU), so in real
//! mode `x/i $pc` needs the CS base added (`x/i $cs*16+$pc`).

use crate::Machine;
use ferrite_cpu::bus::{CpuBus, PhysPage};

impl Machine {
    /// The guest-physical address gdb's `addr` names, or `None` if it is not mapped.
    pub(crate) fn debug_phys_addr(&mut self, addr: u64) -> Option<u64> {
        if self.debug.phys {
            Some(addr)
        } else {
            let (cpu, bus) = self.current_cpu();
            cpu.debug_translate(bus, addr)
        }
    }

    /// Host pointer of the byte at guest-physical `paddr` if it is RAM or ROM.
    fn debug_host_byte(&mut self, paddr: u64) -> Option<*mut u8> {
        match self.vcpus[0].bus.phys_page(paddr) {
            // SAFETY: `phys_page` returns the host address of the whole 4 KiB page.
            PhysPage::Ram(p) | PhysPage::Rom(p) => Some(unsafe { p.add((paddr & 0xfff) as usize) }),
            PhysPage::Mmio => None,
        }
    }

    /// Splits `[addr, addr+len)` at page boundaries of gdb's address space: (address, offset
    /// into the buffer, length) per piece.
    fn pieces(addr: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize)> {
        let mut done = 0usize;
        std::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let a = addr.wrapping_add(done as u64);
            let n = ((0x1000 - (a & 0xfff)) as usize).min(len - done);
            let piece = (a, done, n);
            done += n;
            Some(piece)
        })
    }

    /// Reads into `buf` up to the first inaccessible byte; returns how many bytes were read.
    pub(crate) fn debug_read(&mut self, addr: u64, buf: &mut [u8]) -> usize {
        for (a, off, n) in Self::pieces(addr, buf.len()) {
            let Some(paddr) = self.debug_phys_addr(a) else { return off };
            let Some(p) = self.debug_host_byte(paddr) else { return off };
            // SAFETY: `p` points into a 4 KiB host page at `paddr & 0xfff`, and the piece ends
            // at or before the end of that page (pieces split at 4 KiB boundaries of `a`, and
            // `paddr` has the same page offset as `a`).
            let src = unsafe { std::slice::from_raw_parts(p, n) };
            buf[off..off + n].copy_from_slice(src);
        }
        buf.len()
    }

    /// Writes all of `data` or nothing; `false` if some byte is not writable memory.
    pub(crate) fn debug_write(&mut self, addr: u64, data: &[u8]) -> bool {
        let mut targets = Vec::new();
        for (a, off, n) in Self::pieces(addr, data.len()) {
            let Some(paddr) = self.debug_phys_addr(a) else { return false };
            let Some(p) = self.debug_host_byte(paddr) else { return false };
            targets.push((p, paddr, off, n));
        }
        for (p, paddr, off, n) in targets {
            // SAFETY: as in `debug_read`; RAM and ROM host mappings are both writable
            // (`GuestMemory` maps ROM images read-write and only the CPU drops guest writes).
            unsafe { std::ptr::copy_nonoverlapping(data[off..].as_ptr(), p, n) };
            // Decoded code there is stale on every vCPU.
            self.board.mem.tracking().code.note_write_range(paddr, n as u64, ferrite_memory::ORIGIN_DMA);
        }
        true
    }
}
