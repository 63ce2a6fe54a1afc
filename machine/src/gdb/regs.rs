//! Between `CpuState` and the register file gdb sees ([`super::arch::REGS`]).

use super::arch::{Reg, X86Regs, NREGS, REGS};
use crate::Machine;
use ferrite_cpu::segment::Descriptor;
use ferrite_cpu::state::{flags, seg_attr, CpuState, Segment};
use ferrite_cpu::Cpu;

/// x87 TOP field of the status word.
fn fpu_top(fsw: u16) -> usize {
    ((fsw >> 11) & 7) as usize
}

/// A register's current value.
pub fn read(cpu: &Cpu, reg: Reg) -> u128 {
    let st = &cpu.state;
    let f = &st.fpu;
    let v: u64 = match reg {
        Reg::Gpr(i) => st.gpr[i],
        Reg::Rip => st.rip,
        Reg::Eflags => cpu.rflags() & 0xffff_ffff,
        Reg::Selector(s) => st.seg[s].selector as u64,
        Reg::St(i) => {
            let mut b = [0u8; 16];
            b[..10].copy_from_slice(&f.st[(fpu_top(f.fsw) + i) & 7]);
            return u128::from_le_bytes(b);
        }
        Reg::Fctrl => f.fcw as u64,
        Reg::Fstat => f.fsw as u64,
        Reg::Ftag => f.ftw as u64,
        Reg::Fiseg => f.fcs as u64,
        Reg::Fioff => f.fip & 0xffff_ffff,
        Reg::Foseg => f.fds as u64,
        Reg::Fooff => f.fdp & 0xffff_ffff,
        Reg::Fop => f.fop as u64,
        Reg::Xmm(i) => return f.xmm[i],
        Reg::YmmHi(i) => return f.ymm_hi[i],
        Reg::Mxcsr => f.mxcsr as u64,
        Reg::SegBase(s) => st.seg[s].base,
        Reg::SegLimit(s) => st.seg[s].limit as u64,
        Reg::SegAttr(s) => st.seg[s].attrs as u64,
        Reg::KernelGsBase => st.msr.kernel_gs_base,
        Reg::Cr0 => st.cr0,
        Reg::Cr2 => st.cr2,
        Reg::Cr3 => st.cr3,
        Reg::Cr4 => st.cr4,
        Reg::Cr8 => st.cr8,
        Reg::Efer => st.efer,
        Reg::GdtrBase => st.gdtr.base,
        Reg::GdtrLimit => st.gdtr.limit as u64,
        Reg::IdtrBase => st.idtr.base,
        Reg::IdtrLimit => st.idtr.limit as u64,
        Reg::Ldtr => st.ldtr.selector as u64,
        Reg::LdtrBase => st.ldtr.base,
        Reg::LdtrLimit => st.ldtr.limit as u64,
        Reg::Tr => st.tr.selector as u64,
        Reg::TrBase => st.tr.base,
        Reg::TrLimit => st.tr.limit as u64,
        Reg::Dr(i) => st.dr[i],
    };
    v as u128
}

/// Every register's current value.
pub fn read_all(cpu: &Cpu) -> X86Regs {
    let mut regs = X86Regs::default();
    for (n, d) in REGS.iter().enumerate() {
        regs.set(n, read(cpu, d.reg));
    }
    regs
}

/// Order in which changed registers are applied: plain registers first, then selectors
/// (which reload hidden parts), then explicitly changed hidden parts, then the x87 stack
/// (whose mapping depends on the status word's TOP).
fn phase(reg: Reg) -> u8 {
    match reg {
        Reg::Selector(_) | Reg::Ldtr | Reg::Tr => 1,
        Reg::SegBase(_) | Reg::SegLimit(_) | Reg::SegAttr(_) => 2,
        Reg::LdtrBase | Reg::LdtrLimit | Reg::TrBase | Reg::TrLimit => 2,
        Reg::St(_) => 3,
        _ => 0,
    }
}

impl Machine {
    /// Writes the registers of `regs` that differ from their current values (a `G` packet
    /// carries every register, most of them unchanged: rewriting an unchanged selector must
    /// not reload its hidden part, nor an unchanged CR3 flush anything).
    pub(crate) fn write_debug_regs(&mut self, cpu: usize, regs: &X86Regs) {
        let old = read_all(&self.vcpus[cpu].cpu);
        let mut st = self.vcpus[cpu].cpu.state.clone();
        st.rflags = self.vcpus[cpu].cpu.rflags();
        let mut cr8 = None;
        for p in 0..4 {
            for (n, d) in REGS.iter().enumerate().take(NREGS) {
                if phase(d.reg) != p || !regs.has(n) || regs.values[n] == old.values[n] {
                    continue;
                }
                let v = regs.values[n];
                if d.reg == Reg::Cr8 {
                    cr8 = Some(v as u8 & 0xf);
                }
                self.apply(&mut st, d.reg, v);
            }
        }
        self.vcpus[cpu].cpu.set_state(st);
        // Paging or segmentation may have changed in any way: drop global translations too.
        self.vcpus[cpu].cpu.flush_tlb(false);
        if let Some(v) = cr8 {
            ferrite_cpu::CpuBus::set_tpr(&mut self.vcpus[cpu].bus, v);
        }
    }

    fn apply(&mut self, st: &mut CpuState, reg: Reg, v: u128) {
        let q = v as u64;
        let f = &mut st.fpu;
        match reg {
            Reg::Gpr(i) => st.gpr[i] = q,
            Reg::Rip => st.rip = q,
            Reg::Eflags => st.rflags = (q & flags::WRITABLE) | flags::FIXED1,
            Reg::Selector(s) => st.seg[s] = self.load_selector(st, st.seg[s], q as u16),
            Reg::St(i) => {
                let slot = (fpu_top(f.fsw) + i) & 7;
                f.st[slot].copy_from_slice(&v.to_le_bytes()[..10]);
            }
            Reg::Fctrl => f.fcw = q as u16,
            Reg::Fstat => f.fsw = q as u16,
            Reg::Ftag => f.ftw = q as u16,
            Reg::Fiseg => f.fcs = q as u16,
            Reg::Fioff => f.fip = q & 0xffff_ffff,
            Reg::Foseg => f.fds = q as u16,
            Reg::Fooff => f.fdp = q & 0xffff_ffff,
            Reg::Fop => f.fop = q as u16,
            Reg::Xmm(i) => f.xmm[i] = v,
            Reg::YmmHi(i) => f.ymm_hi[i] = v,
            Reg::Mxcsr => f.mxcsr = q as u32,
            Reg::SegBase(s) => st.seg[s].base = q,
            Reg::SegLimit(s) => st.seg[s].limit = q as u32,
            Reg::SegAttr(s) => st.seg[s].attrs = q as u32,
            Reg::KernelGsBase => st.msr.kernel_gs_base = q,
            Reg::Cr0 => st.cr0 = q,
            Reg::Cr2 => st.cr2 = q,
            Reg::Cr3 => st.cr3 = q,
            Reg::Cr4 => st.cr4 = q,
            Reg::Cr8 => st.cr8 = q & 0xf,
            Reg::Efer => st.efer = q,
            Reg::GdtrBase => st.gdtr.base = q,
            Reg::GdtrLimit => st.gdtr.limit = q as u16,
            Reg::IdtrBase => st.idtr.base = q,
            Reg::IdtrLimit => st.idtr.limit = q as u16,
            // LDTR and TR: the selector only; their hidden parts are separate registers.
            Reg::Ldtr => st.ldtr.selector = q as u16,
            Reg::LdtrBase => st.ldtr.base = q,
            Reg::LdtrLimit => st.ldtr.limit = q as u32,
            Reg::Tr => st.tr.selector = q as u16,
            Reg::TrBase => st.tr.base = q,
            Reg::TrLimit => st.tr.limit = q as u32,
            Reg::Dr(i) => st.dr[i] = q,
        }
    }

    /// A segment register after gdb wrote its selector: in real and virtual-8086 mode the base
    /// follows the selector; in protected mode the hidden part is loaded from the descriptor
    /// table without any checks (gdb is trusted). A selector whose descriptor cannot be read
    /// changes only the visible selector.
    fn load_selector(&mut self, st: &CpuState, old: Segment, selector: u16) -> Segment {
        if !st.protected() || st.v86() {
            return Segment { selector, base: (selector as u64) << 4, ..old };
        }
        if selector & !3 == 0 {
            return Segment { selector, attrs: old.attrs | seg_attr::UNUSABLE, ..old };
        }
        let (table_base, table_limit) =
            if selector & 4 != 0 { (st.ldtr.base, st.ldtr.limit as u64) } else { (st.gdtr.base, st.gdtr.limit as u64) };
        let index = (selector & !7) as u64;
        if index + 7 > table_limit {
            return Segment { selector, ..old };
        }
        let mut raw = [0u8; 8];
        // Descriptor tables live at linear addresses, read through the current page tables.
        let phys = std::mem::replace(&mut self.debug.phys, false);
        let n = self.debug_read(table_base.wrapping_add(index), &mut raw);
        self.debug.phys = phys;
        if n != raw.len() {
            return Segment { selector, ..old };
        }
        Descriptor(u64::from_le_bytes(raw)).to_segment(selector)
    }
}
