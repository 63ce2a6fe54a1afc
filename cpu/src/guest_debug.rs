//! The guest's own debug facilities (SDM Vol. 3, chapter 18): DR0-DR3 instruction, data
//! and I/O breakpoints, the resume flag (RF), single-step traps (TF), the MOV SS/POP SS
//! shadow over debug traps, and the alignment-check mode (see `align`).
//!
//! Nothing here runs per access or per instruction while unused:
//! - `run_block` tests one condition per block (TF, RF, AC, an interrupt shadow, or
//!   `GuestDebug::state`: a DR7 enable, alignment checking on, a trap pending) and only then
//!   takes its guarded copy, which calls in here.
//! - Data breakpoints give the pages they cover slow-path TLB tags (as the gdbstub's
//!   watchpoints do, see `debug`), so only accesses to those pages reach `guest_access`.
//! - Instruction breakpoints cut blocks in front of the instruction, as gdb's do.
//! - Compiled code does not run while a breakpoint or alignment checking is in effect.
//!
//! Debug traps found during an instruction (data/I/O hits, single-step) collect in
//! `pending` and are delivered as one #DB after it completes; a fault in the instruction
//! discards them (it did not complete).

use crate::bus::CpuBus;
use crate::exception::{vector, Fault, Result};
use crate::exec::Block;
use crate::mmu::{Ctx, TlbEntry, TAG_INVALID, TAG_SLOW};
use crate::state::{cr0, cr4, flags, Seg};
use crate::Cpu;

/// DR6 bits (SDM Vol. 3, 18.2.3).
mod dr6 {
    /// B0-B3: breakpoint n's condition was met.
    pub const B_ALL: u64 = 0xf;
    /// BS: single-step trap.
    pub const BS: u64 = 1 << 14;
}

/// DR7 fields (SDM Vol. 3, 18.2.4): L/G enables in bits 2n/2n+1, R/W at 16 + 4n, LEN at
/// 18 + 4n.
mod dr7 {
    pub fn enabled(dr7: u64, n: usize) -> bool {
        dr7 >> (2 * n) & 3 != 0
    }
    pub fn rw(dr7: u64, n: usize) -> u64 {
        dr7 >> (16 + 4 * n) & 3
    }
    /// Breakpoint length in bytes. LEN = 10 is 8 bytes on every Intel 64 processor (18.2.4:
    /// undefined only on older IA-32 ones).
    pub fn len(dr7: u64, n: usize) -> u64 {
        match dr7 >> (18 + 4 * n) & 3 {
            0 => 1,
            1 => 2,
            2 => 8,
            _ => 4,
        }
    }
    pub const RW_EXEC: u64 = 0;
    pub const RW_WRITE: u64 = 1;
    /// I/O reads and writes, with CR4.DE = 1 (undefined otherwise: no breakpoint here).
    pub const RW_IO: u64 = 2;
    pub const RW_ACCESS: u64 = 3;
}

/// The debug state derived from DR0-DR7, CR4.DE and CR0.AM, plus traps in flight.
#[derive(Default)]
pub(crate) struct GuestDebug {
    /// Enabled breakpoints by kind (bit n = DRn).
    exec: u8,
    data: u8,
    io: u8,
    /// `ACTIVE`, `MOV_SS` and `TRAP` in one byte, so `run_block` tests them with one load.
    state: u8,
    /// Alignment checking in effect: CR0.AM, EFLAGS.AC and CPL 3 (see `align`).
    pub ac: bool,
    /// Slow-path data accesses must reach `guest_access`.
    pub hooks: bool,
    /// DR6 bits to set with the #DB after the current instruction.
    pending: u64,
    /// DR0-DR3, DR7, CR4.DE | CR0.AM as last seen.
    key: [u64; 6],
}

/// A breakpoint is enabled or alignment checking is on: `run_block` calls
/// `debug_block_start` for every block (also to turn alignment checking off), and compiled
/// code does not run.
const ACTIVE: u8 = 1;
/// Set by MOV SS/POP SS: debug traps wait until after the next instruction, whose
/// instruction breakpoints are not recognised (SDM Vol. 3, 6.8.3).
const MOV_SS: u8 = 2;
/// An enabled breakpoint or TF asks for a #DB after this instruction (`pending` may also
/// name breakpoints that matched without being enabled, which the SDM lets DR6 report).
const TRAP: u8 = 4;

impl GuestDebug {
    /// Drops the traps of an instruction that did not complete.
    pub fn discard(&mut self) {
        self.pending = 0;
        self.state &= !TRAP;
    }
    /// `run_block` must call `debug_block_start` (RF and AC aside).
    #[inline(always)]
    pub fn check_blocks(&self) -> bool {
        self.state != 0
    }
    /// Compiled code must not run.
    #[inline(always)]
    pub fn no_jit(&self) -> bool {
        self.state & ACTIVE != 0
    }
    /// `run_block` must call `debug_after` (TF aside).
    #[inline(always)]
    pub fn check_after(&self) -> bool {
        self.state & (TRAP | MOV_SS) != 0
    }
    /// A debug trap waits for the end of the instruction (string instructions stop).
    #[inline(always)]
    pub fn trap(&self) -> bool {
        self.state & TRAP != 0
    }
    fn set(&mut self, bit: u8, on: bool) {
        self.state = if on { self.state | bit } else { self.state & !bit };
    }
    /// What crosses an instruction boundary (snapshots): the MOV SS/POP SS shadow over debug
    /// traps, and the DR6 bits of the traps it holds back (0: none).
    pub fn held(&self) -> (bool, u64) {
        let traps = if self.trap() { self.pending } else { 0 };
        (self.state & MOV_SS != 0, traps)
    }
    /// Takes back what `held` returned (the derived state is rebuilt by `refresh_debug`).
    pub fn set_held(&mut self, mov_ss: bool, traps: u64) {
        self.set(MOV_SS, mov_ss);
        self.set(TRAP, traps != 0);
        self.pending = traps;
    }
}

/// The DR6 bits a held debug trap can carry (B0-B3, BS).
pub(crate) const HELD_TRAP_BITS: u64 = dr6::B_ALL | dr6::BS;

impl Cpu {
    /// Recomputes the derived debug state if DR0-DR3, DR7, CR4.DE or CR0.AM changed (MOV DR,
    /// MOV CR, task switches, the embedder writing `state`). Flushes the TLB when the pages
    /// needing slow-path tags change.
    pub(crate) fn refresh_debug(&mut self) {
        let st = &self.state;
        let key = [st.dr[0], st.dr[1], st.dr[2], st.dr[3], st.dr[7], (st.cr4 & cr4::DE) | (st.cr0 & cr0::AM)];
        if key == self.dbg.key {
            return;
        }
        let old_data = self.dbg.data;
        let old_ranges = self.dbg.key;
        let dr7 = st.dr[7];
        let (mut exec, mut data, mut io) = (0u8, 0u8, 0u8);
        for n in 0..4 {
            if !dr7::enabled(dr7, n) {
                continue;
            }
            match dr7::rw(dr7, n) {
                dr7::RW_EXEC => exec |= 1 << n,
                dr7::RW_IO if st.cr4 & cr4::DE != 0 => io |= 1 << n,
                dr7::RW_IO => {}
                _ => data |= 1 << n,
            }
        }
        let d = &mut self.dbg;
        d.key = key;
        (d.exec, d.data, d.io) = (exec, data, io);
        self.update_debug_modes();
        // Watched pages (old and new) need their tags redone.
        let ranges_changed = old_ranges[..5] != key[..5];
        if (old_data != 0 || data != 0) && ranges_changed {
            self.flush_tlb(false);
        }
    }

    /// The switches derived from the enabled breakpoints and the alignment-check mode.
    pub(crate) fn update_debug_modes(&mut self) {
        let d = &mut self.dbg;
        d.hooks = d.data != 0 || d.ac;
        let active = d.exec | d.data | d.io != 0 || d.ac;
        d.set(ACTIVE, active);
    }

    /// Once per block, before its lookup (an instruction breakpoint has priority over fetch
    /// faults, SDM Vol. 3, Table 6-2): updates the alignment-check mode, applies RF and
    /// raises the #DB fault of an instruction breakpoint at RIP. `Ok(true)`: run one
    /// instruction only (RF was set).
    #[cold]
    #[inline(never)]
    pub(crate) fn debug_block_start(&mut self) -> Result<bool> {
        if self.state.rflags & flags::AC != 0 || self.dbg.ac {
            self.update_alignment_mode();
        }
        let after_mov_ss = self.dbg.state & MOV_SS != 0;
        self.dbg.state &= !MOV_SS;
        if self.state.rflags & flags::RF != 0 {
            // RF suppresses this instruction's breakpoints and is cleared at its start; IRET
            // and task switches load it again (SDM Vol. 3, 18.3.1.1).
            self.state.rflags &= !flags::RF;
            return Ok(true);
        }
        if self.dbg.exec != 0 && !after_mov_ss {
            let hits = self.exec_matches(self.current_linear_rip());
            if hits & self.dbg.exec as u64 != 0 {
                // A fault: RIP stays at the instruction; B bits of every matching
                // breakpoint, enabled or not.
                self.state.dr[6] |= hits;
                return Err(Fault::exc(vector::DB));
            }
        }
        Ok(false)
    }

    /// DRn (any enable) set as instruction breakpoints at linear `lin`.
    fn exec_matches(&self, lin: u64) -> u64 {
        let mask = self.lin_mask();
        let dr7 = self.state.dr[7];
        (0..4)
            .filter(|&n| dr7::rw(dr7, n) == dr7::RW_EXEC && self.state.dr[n] & mask == lin)
            .fold(0, |m, n| m | 1 << n)
    }

    /// Whether instruction `index` of `block` (not the first) sits on an enabled guest
    /// instruction breakpoint, so the block must stop before it.
    pub(crate) fn guest_breakpoint_at(&self, block: &Block, index: usize) -> bool {
        if self.dbg.exec == 0 {
            return false;
        }
        let cs_base = self.state.seg[Seg::Cs as usize].base;
        let lin = cs_base.wrapping_add(block.insns[index].insn.ip()) & self.lin_mask();
        self.exec_matches(lin) & self.dbg.exec as u64 != 0
    }

    /// The linear range DRn covers as a data breakpoint: the address masked to the length
    /// (SDM Vol. 3, 18.2.5).
    fn data_range(&self, n: usize) -> (u64, u64) {
        let len = dr7::len(self.state.dr[7], n);
        ((self.state.dr[n] & self.lin_mask()) & !(len - 1), len)
    }

    /// Enabled data breakpoints with bytes on the 4 KiB page at `page`.
    fn data_breakpoints_on(&self, page: u64) -> impl Iterator<Item = usize> + '_ {
        (0..4).filter(move |&n| {
            let (lo, len) = self.data_range(n);
            // Inclusive ends: neither sum can overflow (both ranges are aligned to their size).
            self.dbg.data & (1 << n) != 0 && lo <= page + 4095 && page <= lo + (len - 1)
        })
    }

    /// TLB fill hook: slow-path tags for pages holding enabled data breakpoints, and for
    /// every user page while alignment checking is on.
    pub(crate) fn guest_debug_tags(&self, entry: &mut TlbEntry, page: u64, ctx: Ctx) {
        let dr7 = self.state.dr[7];
        for n in self.data_breakpoints_on(page) {
            if dr7::rw(dr7, n) == dr7::RW_ACCESS && entry.read != TAG_INVALID {
                entry.read |= TAG_SLOW;
            }
            if entry.write != TAG_INVALID {
                entry.write |= TAG_SLOW;
            }
        }
        if self.dbg.ac && ctx == Ctx::User {
            if entry.read != TAG_INVALID {
                entry.read |= TAG_SLOW;
            }
            if entry.write != TAG_INVALID {
                entry.write |= TAG_SLOW;
            }
        }
    }

    /// Whether writes to the page of `lin` in `ctx` must keep their slow tag (after the
    /// code-page bookkeeping would make them fast).
    pub(crate) fn guest_write_slow(&self, lin: u64, ctx: Ctx) -> bool {
        if !self.dbg.hooks {
            return false;
        }
        if self.dbg.ac && ctx == Ctx::User {
            return true;
        }
        self.data_breakpoints_on(lin & !0xfff).next().is_some()
    }

    /// Slow-path hook of a data access of `size` bytes at `lin`, before it is made: #AC,
    /// then data breakpoint matches (a trap after the instruction).
    #[cold]
    pub(crate) fn guest_access(&mut self, lin: u64, size: u8, write: bool, ctx: Ctx) -> Result<()> {
        if self.dbg.ac && ctx == Ctx::User {
            self.check_alignment(lin, size as u64)?;
        }
        if self.dbg.data == 0 {
            return Ok(());
        }
        let dr7 = self.state.dr[7];
        let last = lin.saturating_add(size as u64 - 1);
        for n in 0..4 {
            let rw = dr7::rw(dr7, n);
            if !(rw == dr7::RW_ACCESS || (rw == dr7::RW_WRITE && write)) {
                continue;
            }
            let (lo, len) = self.data_range(n);
            if lin <= lo + (len - 1) && lo <= last {
                self.note_debug_hit(n);
            }
        }
        Ok(())
    }

    /// I/O breakpoints (CR4.DE = 1, R/W = 10): an access of `size` bytes at `port` matches
    /// DRn's port range (SDM Vol. 3, 18.2.4, 18.3.1.3).
    pub(crate) fn guest_io_access(&mut self, port: u16, size: u8) {
        if self.dbg.io == 0 {
            return;
        }
        let dr7 = self.state.dr[7];
        let (lo, hi) = (port as u64, port as u64 + size as u64);
        for n in 0..4 {
            if dr7::rw(dr7, n) != dr7::RW_IO {
                continue;
            }
            let len = dr7::len(dr7, n);
            let start = self.state.dr[n] & 0xffff & !(len - 1);
            if lo < start + len && start < hi {
                self.note_debug_hit(n);
            }
        }
    }

    fn note_debug_hit(&mut self, n: usize) {
        self.dbg.pending |= 1 << n;
        if self.dbg.data & (1 << n) != 0 || self.dbg.io & (1 << n) != 0 {
            self.dbg.state |= TRAP;
            // Deliver right after this instruction (string instructions: this iteration).
            self.end_block = true;
        }
    }

    /// MOV SS/POP SS: interrupts and debug traps wait for the next instruction boundary
    /// but one (SDM Vol. 3, 6.8.3; LSS does not do this).
    pub(crate) fn mov_ss_shadow(&mut self) {
        self.interrupt_shadow_next();
        self.dbg.state |= MOV_SS;
    }

    /// After an instruction completed in `run_block`: delivers the pending debug traps
    /// (single-step if `tf` was set at its start, data and I/O breakpoints) as one #DB whose
    /// return address is the next instruction, unless a MOV SS shadow holds them.
    #[cold]
    #[inline(never)]
    pub(crate) fn debug_after(&mut self, bus: &mut dyn CpuBus, tf: bool) -> Result<()> {
        if tf {
            self.dbg.pending |= dr6::BS;
            self.dbg.state |= TRAP;
        }
        if self.dbg.state & (TRAP | MOV_SS) != TRAP {
            if !self.dbg.trap() {
                self.dbg.pending = 0;
            }
            return Ok(());
        }
        self.state.dr[6] |= self.dbg.pending & (dr6::B_ALL | dr6::BS);
        self.dbg.discard();
        // Delivered here, not returned as a fault: the instruction completed (a gdb
        // watchpoint hit it made must survive).
        self.deliver_fault(bus, Fault::exc(vector::DB)).map_err(|()| Fault::TripleFault)
    }
}
