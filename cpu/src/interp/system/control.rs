//! MOV to/from CR0, CR2, CR3, CR4, CR8 and DR0-DR7, LMSW, SMSW, CLTS (SDM Vol. 2 "MOV—Move
//! to/from Control/Debug Registers"; Vol. 3 2.5, 4.4.1, 4.10.4.1 and 18.2).

use super::{check_umip, require_cpl0, Handler};
use crate::bus::CpuBus;
use crate::exception::{vector, Fault, Result};
use crate::mmu::MAX_PHYS_BITS;
use crate::state::{cr0, cr4, efer};
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic, Register};

/// CR0 bits whose change invalidates cached translations or their access rights.
const CR0_TLB_BITS: u64 = cr0::PG | cr0::WP | cr0::PE;
/// CR4 bits whose change invalidates cached translations (all of them, global ones too).
const CR4_TLB_BITS: u64 = cr4::PAE | cr4::PGE | cr4::PSE | cr4::SMEP | cr4::SMAP | cr4::PCIDE | cr4::PKE;
/// MOV to CR3 with CR4.PCIDE: bit 63 set keeps the new PCID's translations (and is not
/// stored); bits 11:0 are the PCID (SDM Vol. 3, 4.10.4.1).
const CR3_NO_FLUSH: u64 = 1 << 63;
/// Changes that make the CPU load the PAE PDPTEs when PAE paging is (still) in use
/// (SDM Vol. 3, 4.4.1).
const CR0_PDPTE_BITS: u64 = cr0::CD | cr0::NW | cr0::PG;
const CR4_PDPTE_BITS: u64 = cr4::PAE | cr4::PGE | cr4::PSE | cr4::SMEP;
/// Reserved bits of a present PAE PDPTE: 2:1, 8:5 and MAXPHYADDR and up (NX included).
const PDPTE_RESERVED: u64 = 0x1e6 | (!0u64 << MAX_PHYS_BITS);
/// Reserved bits of CR8 (only the TPR class in bits 3:0 exists).
const CR8_RESERVED: u64 = !0xf;

/// DR6: B0-B3, BD, BS and BT are writable; the other low 32 bits read as 1 except bit 12
/// (RTM and bus-lock detection are not supported, so their bits stay 1).
const DR6_WRITABLE: u64 = 0xe00f;
const DR6_FIXED1: u64 = 0xffff_0ff0;
const DR6_BD: u64 = 1 << 13;
/// DR7: L0-G3, LE, GE, GD and the R/W and LEN fields are writable; bit 10 reads as 1; bits
/// 11 (RTM), 12, 14 and 15 read as 0.
const DR7_WRITABLE: u64 = 0xffff_23ff;
const DR7_FIXED1: u64 = 0x400;
const DR7_GD: u64 = 1 << 13;

/// MOV with a control or debug register operand (datamov leaves these to us).
pub(super) fn lookup_mov(insn: &Instruction) -> Option<Handler> {
    let (r0, r1) = (insn.op0_register(), insn.op1_register());
    Some(if r0.is_cr() {
        mov_to_cr
    } else if r1.is_cr() {
        mov_from_cr
    } else if r0.is_dr() {
        mov_to_dr
    } else if r1.is_dr() {
        mov_from_dr
    } else {
        return None;
    })
}

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Clts => clts,
        Mnemonic::Lmsw => lmsw,
        Mnemonic::Smsw => smsw,
        _ => return None,
    })
}

// The decoder rejects CR1, CR5-CR7, CR9-CR15, DR8-DR15 and LOCK (AMD's LOCK MOV CR0 alias
// for CR8 is not enabled), so only the architectural registers reach the handlers. Outside
// 64-bit mode the GPR operand is a 32-bit register, which gives the 32-bit operand size.
// The arithmetic flags are undefined; hardware leaves them unchanged, and so do we.

fn mov_from_cr(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    require_cpl0(cpu)?;
    let st = &cpu.state;
    let v = match insn.op1_register().number() {
        0 => st.cr0,
        2 => st.cr2,
        3 => st.cr3,
        4 => st.cr4,
        8 => st.cr8,
        _ => return Err(Fault::ud()),
    };
    cpu.set_reg(insn.op0_register(), v);
    Ok(())
}

fn mov_to_cr(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    require_cpl0(cpu)?;
    // A 32-bit source zero-extends: MOV to CR outside 64-bit mode clears bits 63:32.
    let v = cpu.reg(insn.op1_register());
    match insn.op0_register().number() {
        0 => cpu.write_cr0(bus, v)?,
        2 => cpu.state.cr2 = v,
        3 => cpu.write_cr3(bus, v)?,
        4 => cpu.write_cr4(bus, v)?,
        8 => cpu.write_cr8(bus, v)?,
        _ => return Err(Fault::ud()),
    }
    // CR0.AM and CR4.DE steer alignment checking and I/O breakpoints.
    cpu.refresh_debug();
    // Paging, mode or interrupt-priority changes take effect from the next instruction.
    cpu.end_block = true;
    Ok(())
}

impl Cpu {
    /// MOV to CR0 with its checks and side effects: long-mode activation/deactivation
    /// (EFER.LMA follows PG while EFER.LME is set) and TLB flushes.
    pub(crate) fn write_cr0(&mut self, bus: &mut dyn CpuBus, v: u64) -> Result<()> {
        if v >> 32 != 0 {
            return Err(Fault::gp0());
        }
        let new = (v & cr0::WRITABLE) | cr0::ET;
        if (new & cr0::PG != 0 && new & cr0::PE == 0) || (new & cr0::NW != 0 && new & cr0::CD == 0) {
            return Err(Fault::gp0());
        }
        let st = &self.state;
        let old = st.cr0;
        let lme = st.efer & efer::LME != 0;
        if old & cr0::PG == 0 && new & cr0::PG != 0 && lme {
            // Activating IA-32e mode needs PAE, a CS without L and a 32-bit TSS in TR
            // (the 16-bit TSS types 1 and 3 have type bit 3 clear).
            if st.cr4 & cr4::PAE == 0 || st.seg(crate::Seg::Cs).long() || st.tr.attrs & 8 == 0 {
                return Err(Fault::gp0());
            }
        }
        // Paging cannot be turned off from 64-bit mode, nor while PCIDs are enabled.
        if old & cr0::PG != 0 && new & cr0::PG == 0 && (st.in_64bit() || st.cr4 & cr4::PCIDE != 0) {
            return Err(Fault::gp0());
        }
        if new & cr0::PG != 0 && st.cr4 & cr4::PAE != 0 && !lme && (old ^ new) & CR0_PDPTE_BITS != 0 {
            self.check_pdptes(bus, self.state.cr3)?;
        }
        self.state.cr0 = new;
        if new & cr0::PG == 0 {
            self.state.efer &= !efer::LMA;
        } else if lme {
            self.state.efer |= efer::LMA;
        }
        if (old ^ new) & CR0_TLB_BITS != 0 {
            self.flush_tlb(false);
        }
        Ok(())
    }

    /// MOV to CR3: without PCIDs, flushes the non-global translations; with CR4.PCIDE,
    /// switches to the PCID in bits 11:0, flushing its non-global translations unless bit 63
    /// is set.
    pub(crate) fn write_cr3(&mut self, bus: &mut dyn CpuBus, v: u64) -> Result<()> {
        let pcide = self.state.cr4 & cr4::PCIDE != 0;
        let keep = pcide && v & CR3_NO_FLUSH != 0;
        let v = if pcide { v & !CR3_NO_FLUSH } else { v };
        // Bits 63:MAXPHYADDR are reserved (bit 63 too, without PCIDE).
        if v >> MAX_PHYS_BITS != 0 {
            return Err(Fault::gp0());
        }
        let st = &self.state;
        if st.paging() && st.cr4 & cr4::PAE != 0 && !st.long_mode_active() {
            self.check_pdptes(bus, v)?;
        }
        self.state.cr3 = v;
        if pcide {
            self.catch_up_code();
            // Jump-cache entries and links for non-global pages follow the TLB's translations.
            self.switch_pcid(self.current_pcid(), !keep);
        } else {
            self.flush_tlb(true);
        }
        Ok(())
    }

    /// MOV to CR4: bits for features the model lacks fault.
    pub(crate) fn write_cr4(&mut self, bus: &mut dyn CpuBus, v: u64) -> Result<()> {
        if v & !self.cr4_allowed() != 0 {
            return Err(Fault::gp0());
        }
        let st = &self.state;
        let old = st.cr4;
        if st.long_mode_active() && v & cr4::PAE == 0 {
            return Err(Fault::gp0());
        }
        // PCIDE can be set only in IA-32e mode with PCID 000H in CR3 (SDM Vol. 3, 4.10.1).
        if old & cr4::PCIDE == 0 && v & cr4::PCIDE != 0 && (!st.long_mode_active() || st.cr3 & 0xfff != 0) {
            return Err(Fault::gp0());
        }
        if st.paging() && v & cr4::PAE != 0 && !st.long_mode_active() && (old ^ v) & CR4_PDPTE_BITS != 0 {
            self.check_pdptes(bus, self.state.cr3)?;
        }
        self.state.cr4 = v;
        if (old ^ v) & CR4_TLB_BITS != 0 {
            self.flush_tlb(false);
        }
        Ok(())
    }

    /// CR8 is the local APIC's task-priority class (TPR[7:4]).
    pub(crate) fn write_cr8(&mut self, bus: &mut dyn CpuBus, v: u64) -> Result<()> {
        if v & CR8_RESERVED != 0 {
            return Err(Fault::gp0());
        }
        self.state.cr8 = v;
        bus.set_tpr(v as u8);
        Ok(())
    }

    /// CR4 bits this model lets software set: the architectural set minus the bits of
    /// features CPUID does not report.
    pub(crate) fn cr4_allowed(&self) -> u64 {
        const GATED: [(u64, &str); 15] = [
            (cr4::VME | cr4::PVI, "vme"),
            (cr4::TSD, "tsc"),
            (cr4::DE, "de"),
            (cr4::PSE, "pse"),
            (cr4::PAE, "pae"),
            (cr4::MCE, "mce"),
            (cr4::PGE, "pge"),
            (cr4::OSFXSR | cr4::OSXMMEXCPT, "fxsr"),
            (cr4::UMIP, "umip"),
            (cr4::FSGSBASE, "fsgsbase"),
            (cr4::OSXSAVE, "xsave"),
            (cr4::SMEP, "smep"),
            (cr4::SMAP, "smap"),
            (cr4::PCIDE, "pcid"),
            (cr4::PKE, "pku"),
        ];
        GATED.iter().filter(|(_, f)| !self.model.has(f)).fold(cr4::SUPPORTED, |a, (bits, _)| a & !bits)
    }

    /// The PDPTE load of PAE paging (SDM Vol. 3, 4.4.1): a present PDPTE with reserved bits
    /// set makes the MOV to CR fault with #GP(0). The entries are not cached: the page walk
    /// reads them again.
    fn check_pdptes(&mut self, bus: &mut dyn CpuBus, cr3: u64) -> Result<()> {
        let table = cr3 & 0xffff_ffe0;
        for i in 0..4 {
            let mut b = [0u8; 8];
            self.read_phys(bus, table.wrapping_add(i * 8) & self.a20_mask, &mut b);
            let e = u64::from_le_bytes(b);
            if e & 1 != 0 && e & PDPTE_RESERVED != 0 {
                return Err(Fault::gp0());
            }
        }
        Ok(())
    }
}

/// DR4 and DR5 alias DR6 and DR7 unless CR4.DE makes them #UD.
fn dr_index(cpu: &Cpu, r: Register) -> Result<usize> {
    match r.number() {
        4 | 5 if cpu.state.cr4 & cr4::DE != 0 => Err(Fault::ud()),
        n @ (4 | 5) => Ok(n + 2),
        n => Ok(n),
    }
}

/// General detect (DR7.GD): any debug-register access raises a #DB fault with DR6.BD set;
/// GD is cleared so the handler can use the registers (SDM Vol. 3, 18.2.4). Being a fault
/// other than an instruction breakpoint, it pushes RF = 1 (18.3.1.1), which the delivery
/// clears again.
fn check_general_detect(cpu: &mut Cpu) -> Result<()> {
    if cpu.state.dr[7] & DR7_GD != 0 {
        cpu.state.dr[6] |= DR6_BD;
        cpu.state.dr[7] &= !DR7_GD;
        cpu.state.rflags |= crate::state::flags::RF;
        return Err(Fault::exc(vector::DB));
    }
    Ok(())
}

fn mov_from_dr(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    require_cpl0(cpu)?;
    let n = dr_index(cpu, insn.op1_register())?;
    check_general_detect(cpu)?;
    let v = cpu.state.dr[n];
    cpu.set_reg(insn.op0_register(), v);
    Ok(())
}

fn mov_to_dr(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    require_cpl0(cpu)?;
    let n = dr_index(cpu, insn.op0_register())?;
    check_general_detect(cpu)?;
    let v = cpu.reg(insn.op1_register());
    let dr = &mut cpu.state.dr;
    match n {
        6 | 7 if v >> 32 != 0 => return Err(Fault::gp0()),
        6 => dr[6] = (v & DR6_WRITABLE) | DR6_FIXED1,
        7 => dr[7] = (v & DR7_WRITABLE) | DR7_FIXED1,
        _ => dr[n] = v,
    }
    // New breakpoints apply from the next instruction on.
    cpu.refresh_debug();
    cpu.end_block = true;
    Ok(())
}

fn clts(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    require_cpl0(cpu)?;
    cpu.state.cr0 &= !cr0::TS;
    Ok(())
}

/// LMSW loads CR0 bits 3:0 (PE MP EM TS); it can set PE but never clear it.
fn lmsw(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    require_cpl0(cpu)?;
    let src = cpu.read_op(bus, insn, 0)? & 0xf;
    let old = cpu.state.cr0;
    let new = (old & !0xf) | src | (old & cr0::PE);
    cpu.state.cr0 = new;
    if (old ^ new) & cr0::PE != 0 {
        cpu.flush_tlb(false);
        cpu.end_block = true;
    }
    Ok(())
}

/// SMSW stores CR0[15:0] to memory. For a 32- or 64-bit register the SDM leaves the upper
/// bits undefined; Intel processors store the whole CR0 there, and so do we.
fn smsw(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    check_umip(cpu)?;
    let v = cpu.state.cr0;
    cpu.write_op(bus, insn, 0, v)
}
