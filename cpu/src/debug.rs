//! Hooks for an external debugger (ferrite's gdbstub). None of this is architectural: the
//! guest cannot see it, and guest memory is never patched. The guest's own debug registers
//! live in `guest_debug` and work alongside these (same slow-path tags, same block cuts).
//!
//! - Breakpoints: `Cpu::breakpoints` (linear addresses). `Cpu::run` stops with
//!   `RunExit::Debug` before executing an instruction whose linear address (CS base + RIP) is
//!   in the list; blocks are cut just before a breakpoint ([`Cpu::breakpoint_limit`]), so
//!   code between breakpoints still runs a whole block at a time.
//! - Watchpoints: [`Cpu::set_watchpoints`] installs linear ranges. The TLB fill gives the
//!   pages they touch slow-path tags ([`tlb::TAG_SLOW`](crate::mmu::TAG_SLOW)) for the watched
//!   kind of access, so every such access reaches `read_lin`/`write_lin`'s slow path, which
//!   records the first hit ([`Cpu::take_watch_hit`]) and ends the block after the instruction;
//!   `run`/`step` then return `RunExit::Debug` with the instruction completed (a data
//!   breakpoint is a trap). A fault in the instruction discards the hit (the instruction did
//!   not complete). Instruction fetches and page walks are not data accesses and never hit.
//!   Any other access path that bypasses `read_lin`/`write_lin` must honour `TAG_SLOW` (the
//!   rule for MMIO already) for watchpoints to see it.
//! - [`Cpu::step_no_irq`]: one instruction with external interrupts and NMIs held back, as a
//!   debugger's single step wants (QEMU's default too).
//! - [`Cpu::debug_translate`]: a page walk without side effects (no accessed/dirty bits, no CR2,
//!   no permission checks) for reading guest virtual memory from the debugger.

use crate::bus::{CpuBus, PhysPage};
use crate::exec::Block;
use crate::mmu::{TlbEntry, MAX_PHYS_BITS, TAG_INVALID, TAG_SLOW};
use crate::state::{cr4, Seg};
use crate::{Cpu, RunExit};

/// Which data accesses a watchpoint catches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchKind {
    Read,
    Write,
    /// Reads and writes.
    Access,
}

impl WatchKind {
    fn reads(self) -> bool {
        matches!(self, WatchKind::Read | WatchKind::Access)
    }
    fn writes(self) -> bool {
        matches!(self, WatchKind::Write | WatchKind::Access)
    }
}

/// A watched linear range `[lin, lin + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watchpoint {
    pub lin: u64,
    pub len: u64,
    pub kind: WatchKind,
}

impl Watchpoint {
    fn overlaps(&self, lin: u64, len: u64) -> bool {
        let end = self.lin.saturating_add(self.len.max(1));
        lin < end && self.lin < lin.saturating_add(len.max(1))
    }
}

/// The first watched access of the last instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchHit {
    /// The watchpoint that matched.
    pub watch: Watchpoint,
    /// Linear address and size of the access.
    pub lin: u64,
    pub size: u8,
    pub write: bool,
}

const PHYS_MASK: u64 = (1u64 << MAX_PHYS_BITS) - 1;
const PTE_P: u64 = 1 << 0;
const PTE_PS: u64 = 1 << 7;

impl Cpu {
    /// Replaces the breakpoint list (linear addresses). The interpreter cuts its blocks at
    /// breakpoints as it runs them; a translator caching compiled code must drop blocks that
    /// contain a new breakpoint when this is called.
    pub fn set_breakpoints(&mut self, breakpoints: Vec<u64>) {
        self.breakpoints = breakpoints;
    }

    /// Replaces the watchpoint list. Flushes the TLB so the watched pages get slow-path tags
    /// (and unwatched ones lose them).
    pub fn set_watchpoints(&mut self, watchpoints: Vec<Watchpoint>) {
        self.watchpoints = watchpoints;
        self.watch_hit = None;
        self.flush_tlb(false);
    }

    /// Records a watchpoint hit found by whatever ran the code (KVM's debug registers), for
    /// [`Cpu::take_watch_hit`].
    pub fn note_watch_hit(&mut self, hit: WatchHit) {
        self.watch_hit = Some(hit);
    }

    pub fn watchpoints(&self) -> &[Watchpoint] {
        &self.watchpoints
    }

    /// The watchpoint hit that made `run`/`step` return `RunExit::Debug`, if any.
    pub fn take_watch_hit(&mut self) -> Option<WatchHit> {
        self.watch_hit.take()
    }

    /// Executes one instruction like [`Cpu::step`], but without delivering pending external
    /// interrupts or NMIs first (they stay pending). Exceptions the instruction raises are
    /// delivered, so the step ends at the handler. A halted CPU stays halted.
    pub fn step_no_irq(&mut self, bus: &mut dyn CpuBus) -> RunExit {
        self.sync_memory_map(bus);
        self.refresh_debug();
        if self.halted || self.wait_for_sipi {
            return RunExit::Halted;
        }
        let end = self.instructions + 1;
        if let Err(fault) = self.run_block(bus, end) {
            self.watch_hit = None;
            if self.deliver_fault(bus, fault).is_err() {
                return RunExit::Shutdown;
            }
        }
        if self.watch_hit.is_some() {
            return RunExit::Debug;
        }
        RunExit::Budget
    }

    /// The guest-physical address `lin` maps to under the current paging mode, or `None` if
    /// it is not mapped (or a page table lies outside RAM/ROM). Reads the page tables without
    /// setting accessed/dirty bits, writing CR2 or checking access rights.
    pub fn debug_translate(&self, bus: &mut dyn CpuBus, lin: u64) -> Option<u64> {
        let st = &self.state;
        let a20 = self.a20_mask;
        if !st.paging() {
            return Some(lin & self.lin_mask() & a20);
        }
        if st.cr4 & cr4::PAE == 0 {
            let lin = lin & 0xffff_ffff;
            let pde = read_table(bus, ((st.cr3 & 0xffff_f000) | ((lin >> 20) & 0xffc)) & a20, false)?;
            if pde & PTE_P == 0 {
                return None;
            }
            if pde & PTE_PS != 0 && st.cr4 & cr4::PSE != 0 {
                // 4 MiB page; PSE-36 keeps physical bits 32-39 in entry bits 13-20.
                let frame = (pde & 0xffc0_0000) | ((pde >> 13) & 0xff) << 32;
                return Some((frame | (lin & 0x3f_ffff)) & a20);
            }
            let pte = read_table(bus, ((pde & 0xffff_f000) | ((lin >> 10) & 0xffc)) & a20, false)?;
            if pte & PTE_P == 0 {
                return None;
            }
            return Some(((pte & 0xffff_f000) | (lin & 0xfff)) & a20);
        }
        let (mut table, mut level) = if st.long_mode_active() {
            if !crate::segment::is_canonical(lin) {
                return None;
            }
            (st.cr3 & PHYS_MASK & !0xfff, 4)
        } else {
            let lin32 = lin & 0xffff_ffff;
            let pdpte = read_table(bus, ((st.cr3 & 0xffff_ffe0) + ((lin32 >> 27) & 0x18)) & a20, true)?;
            if pdpte & PTE_P == 0 {
                return None;
            }
            (pdpte & PHYS_MASK & !0xfff, 2)
        };
        loop {
            let shift = 12 + 9 * (level - 1);
            let entry = read_table(bus, (table | ((lin >> shift) & 0x1ff) << 3) & a20, true)?;
            if entry & PTE_P == 0 {
                return None;
            }
            if level == 1 || (entry & PTE_PS != 0 && level <= 3) {
                let offset_mask = (1u64 << shift) - 1;
                return Some(((entry & PHYS_MASK & !offset_mask) | (lin & offset_mask)) & a20);
            }
            table = entry & PHYS_MASK & !0xfff;
            level -= 1;
        }
    }

    /// How many of `block`'s instructions may run before one that sits on a breakpoint (the
    /// debugger's or an enabled guest instruction breakpoint, see `guest_debug`). The
    /// first instruction always may: `run` checked it already (or the caller deliberately
    /// steps over it).
    pub(crate) fn breakpoint_limit(&self, block: &Block) -> usize {
        let cs_base = self.state.seg[Seg::Cs as usize].base;
        let mask = self.lin_mask();
        block
            .insns
            .iter()
            .skip(1)
            .enumerate()
            .position(|(i, d)| {
                self.breakpoints.contains(&(cs_base.wrapping_add(d.insn.ip()) & mask))
                    || self.guest_breakpoint_at(block, i + 1)
            })
            .map_or(block.insns.len(), |i| i + 1)
    }

    /// TLB fill hook: slow-path tags for pages with watched bytes.
    pub(crate) fn watch_tags(&self, entry: &mut TlbEntry, page: u64) {
        for w in &self.watchpoints {
            if w.overlaps(page, 4096) {
                if w.kind.reads() && entry.read != TAG_INVALID {
                    entry.read |= TAG_SLOW;
                }
                if w.kind.writes() && entry.write != TAG_INVALID {
                    entry.write |= TAG_SLOW;
                }
            }
        }
    }

    /// Whether writes to the page of `lin` must keep taking the slow path.
    pub(crate) fn write_watched_page(&self, lin: u64) -> bool {
        self.watchpoints.iter().any(|w| w.kind.writes() && w.overlaps(lin & !0xfff, 4096))
    }

    /// Slow-path hook: records the first watched access of the current instruction and ends
    /// the block after it.
    pub(crate) fn note_watched_access(&mut self, lin: u64, size: u8, write: bool) {
        if self.watch_hit.is_some() {
            return;
        }
        let hit = self.watchpoints.iter().find(|w| {
            (if write { w.kind.writes() } else { w.kind.reads() }) && w.overlaps(lin, size as u64)
        });
        if let Some(&watch) = hit {
            self.watch_hit = Some(WatchHit { watch, lin, size, write });
            self.end_block = true;
        }
    }

    /// Slow-path read of a RAM/ROM page whose read tag is slow because it is watched:
    /// `None` for device memory (the caller reads the device).
    pub(crate) fn watched_read(&mut self, bus: &mut dyn CpuBus, e: &TlbEntry, lin: u64, size: u8) -> Option<u64> {
        self.note_watched_access(lin, size, false);
        match bus.phys_page(e.paddr) {
            PhysPage::Mmio => None,
            // SAFETY: the tag of `e` matched this page, and for RAM/ROM pages the TLB fill set
            // `addend + page` to the host address of the 4 KiB page (valid while the memory-map
            // generation is unchanged); the caller checked that the access stays in the page.
            PhysPage::Ram(_) | PhysPage::Rom(_) => Some(unsafe { crate::mmu::load(e.addend.wrapping_add(lin) as *const u8, size) }),
        }
    }
}

/// Reads a page-table entry from RAM or ROM; `None` for device memory.
fn read_table(bus: &mut dyn CpuBus, paddr: u64, wide: bool) -> Option<u64> {
    match bus.phys_page(paddr) {
        PhysPage::Ram(p) | PhysPage::Rom(p) => {
            let off = (paddr & 0xfff) as usize;
            // SAFETY: `phys_page` returns the host address of a whole 4 KiB page; entries are
            // naturally aligned (the addresses above are multiples of 4 or 8), so the read
            // stays inside it.
            Some(unsafe {
                if wide {
                    (p.add(off) as *const u64).read_unaligned()
                } else {
                    (p.add(off) as *const u32).read_unaligned() as u64
                }
            })
        }
        PhysPage::Mmio => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{cr0, efer, reg, CpuState};
    use crate::testing::FlatBus;
    use iced_x86::code_asm::*;

    /// A 32-bit flat protected-mode CPU running `code` at 0x1000.
    fn setup(code: impl FnOnce(&mut CodeAssembler)) -> (Cpu, FlatBus) {
        let mut a = CodeAssembler::new(32).unwrap();
        code(&mut a);
        let bytes = a.assemble(0x1000).unwrap();
        let mut bus = FlatBus::new(0x10_0000);
        bus.load(0x1000, &bytes);
        let mut cpu = Cpu::default();
        let mut st = cpu.state.clone();
        st.cr0 |= cr0::PE;
        let code_attrs = 0xc09b; // present, DPL 0, code, readable, accessed, 32-bit, 4K granular
        let data_attrs = 0xc093;
        for s in Seg::ALL {
            st.seg[s as usize] = crate::Segment { selector: 0x10, attrs: data_attrs, limit: 0xffff_ffff, base: 0 };
        }
        st.seg[Seg::Cs as usize] = crate::Segment { selector: 0x08, attrs: code_attrs, limit: 0xffff_ffff, base: 0 };
        st.rip = 0x1000;
        st.gpr[reg::RSP] = 0x8000;
        cpu.set_state(st);
        (cpu, bus)
    }

    #[test]
    fn breakpoint_stops_before_the_instruction_inside_a_block() {
        let (mut cpu, mut bus) = setup(|a| {
            a.inc(eax).unwrap();
            a.inc(eax).unwrap();
            a.inc(eax).unwrap();
            a.hlt().unwrap();
        });
        cpu.breakpoints.push(0x1002);
        assert_eq!(cpu.run(&mut bus, 1000), RunExit::Debug);
        assert_eq!(cpu.state.rip, 0x1002);
        assert_eq!(cpu.state.gpr[reg::RAX], 2);
        // Stepping over the breakpoint, then running on.
        assert_eq!(cpu.step_no_irq(&mut bus), RunExit::Budget);
        assert_eq!(cpu.run(&mut bus, 1000), RunExit::Halted);
        assert_eq!(cpu.state.gpr[reg::RAX], 3);
    }

    #[test]
    fn write_watchpoint_reports_after_the_instruction() {
        let (mut cpu, mut bus) = setup(|a| {
            a.mov(dword_ptr(0x3000), 7u32).unwrap();
            a.mov(eax, dword_ptr(0x2000)).unwrap();
            a.mov(dword_ptr(0x2004), 5u32).unwrap();
            a.inc(ebx).unwrap();
            a.hlt().unwrap();
        });
        cpu.set_watchpoints(vec![Watchpoint { lin: 0x2004, len: 4, kind: WatchKind::Write }]);
        assert_eq!(cpu.run(&mut bus, 1000), RunExit::Debug);
        let hit = cpu.take_watch_hit().unwrap();
        assert_eq!((hit.lin, hit.size, hit.write), (0x2004, 4, true));
        assert_eq!(bus.read_u64(0x2004) as u32, 5, "the write completed");
        assert_eq!(cpu.state.rip, 0x1000 + 10 + 5 + 10, "stopped after the writing instruction");
        assert_eq!(cpu.run(&mut bus, 1000), RunExit::Halted);
        assert_eq!(cpu.state.gpr[reg::RBX], 1);
    }

    #[test]
    fn read_watchpoint_sees_reads_and_returns_ram_contents() {
        let (mut cpu, mut bus) = setup(|a| {
            a.mov(dword_ptr(0x2000), 9u32).unwrap();
            a.mov(eax, dword_ptr(0x2000)).unwrap();
            a.hlt().unwrap();
        });
        cpu.set_watchpoints(vec![Watchpoint { lin: 0x2000, len: 1, kind: WatchKind::Read }]);
        assert_eq!(cpu.run(&mut bus, 1000), RunExit::Debug);
        let hit = cpu.take_watch_hit().unwrap();
        assert!(!hit.write);
        assert_eq!(cpu.state.gpr[reg::RAX], 9);
        cpu.set_watchpoints(Vec::new());
        assert_eq!(cpu.run(&mut bus, 1000), RunExit::Halted);
    }

    /// A flat bus with an interrupt controller that always has vector 0x20 pending.
    struct IrqBus(FlatBus);

    impl CpuBus for IrqBus {
        fn phys_page(&mut self, paddr: u64) -> PhysPage {
            self.0.phys_page(paddr)
        }
        fn mmio_read(&mut self, paddr: u64, size: u8) -> u64 {
            self.0.mmio_read(paddr, size)
        }
        fn mmio_write(&mut self, paddr: u64, size: u8, value: u64) {
            self.0.mmio_write(paddr, size, value)
        }
        fn io_read(&mut self, port: u16, size: u8) -> u32 {
            self.0.io_read(port, size)
        }
        fn io_write(&mut self, port: u16, size: u8, value: u32) {
            self.0.io_write(port, size, value)
        }
        fn interrupt_pending(&mut self) -> bool {
            true
        }
        fn acknowledge_interrupt(&mut self) -> Option<u8> {
            Some(0x20)
        }
    }

    #[test]
    fn step_no_irq_leaves_interrupts_pending() {
        let (mut cpu, bus) = setup(|a| {
            a.inc(eax).unwrap();
            a.inc(eax).unwrap();
        });
        let mut bus = IrqBus(bus);
        // Real mode (the 32-bit `inc eax` bytes are `inc ax` there), IF set, vector 0x20 -> 0000:2000 (an INC ECX there).
        let mut st = CpuState::reset();
        st.seg[Seg::Cs as usize] = crate::Segment::real_mode(0, st.seg[Seg::Cs as usize].attrs);
        st.rip = 0x1000;
        st.gpr[reg::RSP] = 0x8000;
        st.rflags |= crate::state::flags::IF;
        cpu.set_state(st);
        bus.0.load(0x20 * 4, &[0x00, 0x20, 0x00, 0x00]);
        bus.0.load(0x2000, &[0x66, 0x41]); // inc ecx
        assert_eq!(cpu.step_no_irq(&mut bus), RunExit::Budget);
        assert_eq!((cpu.state.rip, cpu.state.gpr[reg::RAX] & 0xffff), (0x1001, 1), "the instruction at RIP ran");
        // The ordinary step takes the interrupt first and runs the handler's first instruction.
        assert_eq!(cpu.step(&mut bus), RunExit::Budget);
        assert_eq!((cpu.state.rip, cpu.state.gpr[reg::RCX]), (0x2002, 1));
    }

    #[test]
    fn debug_translate_walks_4_level_tables_without_setting_accessed_bits() {
        let mut bus = FlatBus::new(0x20_0000);
        let mut cpu = Cpu::default();
        // PML4 at 0x10000 -> PDPT 0x11000 -> PD 0x12000 -> PT 0x13000; lin 0x40_1000 -> 0x5000.
        let put = |bus: &mut FlatBus, a: u64, v: u64| bus.load(a, &v.to_le_bytes());
        put(&mut bus, 0x10000, 0x11003);
        put(&mut bus, 0x11000, 0x12003);
        put(&mut bus, 0x12000 + 2 * 8, 0x13003);
        put(&mut bus, 0x13000 + 8, 0x5003);
        // A 2 MiB page: lin 0x60_0000 -> 0x80_0000.
        put(&mut bus, 0x12000 + 3 * 8, 0x80_0083);
        let mut st = cpu.state.clone();
        st.cr0 |= cr0::PE | cr0::PG;
        st.cr4 |= cr4::PAE;
        st.efer |= efer::LME | efer::LMA;
        st.cr3 = 0x10000;
        cpu.set_state(st);
        assert_eq!(cpu.debug_translate(&mut bus, 0x40_1234), Some(0x5234));
        assert_eq!(cpu.debug_translate(&mut bus, 0x60_0042), Some(0x80_0042));
        assert_eq!(cpu.debug_translate(&mut bus, 0x40_3000), None);
        assert_eq!(cpu.debug_translate(&mut bus, 0x8000_0000_0000), None, "non-canonical");
        assert_eq!(bus.read_u64(0x10000), 0x11003, "no accessed bit set");
        assert_eq!(cpu.state.cr2, 0);
    }
}
