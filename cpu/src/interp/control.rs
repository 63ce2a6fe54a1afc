//! Near control transfer and software interrupts: JMP, Jcc, JrCXZ, LOOPcc, CALL, RET,
//! INT n, INT3, INTO, INT1. Far transfers and IRET live in `far.rs`.

use super::Handler;
use crate::bus::CpuBus;
use crate::exception::{vector, Fault, Result};
use crate::exec::EventKind;
use crate::state::{flags, Seg};
use crate::Cpu;
use iced_x86::{Code, ConditionCode, Instruction, Mnemonic, MemorySize, OpKind};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Jmp if is_far(insn) => return None,
        Mnemonic::Call if is_far(insn) => return None,
        Mnemonic::Jmp => jmp,
        Mnemonic::Call => call,
        Mnemonic::Ret => ret,
        Mnemonic::Ja
        | Mnemonic::Jae
        | Mnemonic::Jb
        | Mnemonic::Jbe
        | Mnemonic::Je
        | Mnemonic::Jg
        | Mnemonic::Jge
        | Mnemonic::Jl
        | Mnemonic::Jle
        | Mnemonic::Jne
        | Mnemonic::Jno
        | Mnemonic::Jnp
        | Mnemonic::Jns
        | Mnemonic::Jo
        | Mnemonic::Jp
        | Mnemonic::Js => jcc_for(insn.condition_code()),
        Mnemonic::Jcxz | Mnemonic::Jecxz | Mnemonic::Jrcxz => jrcxz,
        Mnemonic::Loop | Mnemonic::Loope | Mnemonic::Loopne => loopcc,
        Mnemonic::Int => int_n,
        Mnemonic::Int3 => int3,
        Mnemonic::Into => into,
        Mnemonic::Int1 => int1,
        _ => return None,
    })
}

pub(super) fn is_far(insn: &Instruction) -> bool {
    matches!(insn.op0_kind(), OpKind::FarBranch16 | OpKind::FarBranch32)
        || (insn.op0_kind() == OpKind::Memory
            && matches!(insn.memory_size(), MemorySize::SegPtr16 | MemorySize::SegPtr32 | MemorySize::SegPtr64))
}

impl Cpu {
    /// Checks a near branch target (CS limit, or canonical in 64-bit mode) and takes it.
    #[inline]
    pub(crate) fn branch_near(&mut self, target: u64) -> Result<()> {
        if self.state.in_64bit() {
            if !crate::segment::is_canonical(target) {
                return Err(Fault::gp0());
            }
        } else if target > self.state.seg(Seg::Cs).limit as u64 {
            return Err(Fault::gp0());
        }
        self.next_rip = target;
        Ok(())
    }
}

/// Target of a near branch: the relative target iced computed, or the register/memory
/// operand, truncated to the operand size.
fn near_target(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<u64> {
    match insn.op0_kind() {
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => Ok(insn.near_branch_target()),
        _ => cpu.read_op(bus, insn, 0),
    }
}

fn jmp(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let t = near_target(cpu, bus, insn)?;
    cpu.branch_near(t)
}

/// Jcc with its condition fixed at decode time (one handler per condition code, so the
/// flag evaluation is specialised).
fn jcc<const CC: u8>(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    if cpu.condition(cc_of(CC)) {
        cpu.branch_near(insn.near_branch_target())?;
        // A loop's block goes on past its inner branches when they are not taken.
        cpu.end_block = true;
    }
    Ok(())
}

#[inline(always)]
const fn cc_of(n: u8) -> ConditionCode {
    match n {
        0 => ConditionCode::o,
        1 => ConditionCode::no,
        2 => ConditionCode::b,
        3 => ConditionCode::ae,
        4 => ConditionCode::e,
        5 => ConditionCode::ne,
        6 => ConditionCode::be,
        7 => ConditionCode::a,
        8 => ConditionCode::s,
        9 => ConditionCode::ns,
        10 => ConditionCode::p,
        11 => ConditionCode::np,
        12 => ConditionCode::l,
        13 => ConditionCode::ge,
        14 => ConditionCode::le,
        _ => ConditionCode::g,
    }
}

fn jcc_for(cc: ConditionCode) -> Handler {
    match cc {
        ConditionCode::o => jcc::<0>,
        ConditionCode::no => jcc::<1>,
        ConditionCode::b => jcc::<2>,
        ConditionCode::ae => jcc::<3>,
        ConditionCode::e => jcc::<4>,
        ConditionCode::ne => jcc::<5>,
        ConditionCode::be => jcc::<6>,
        ConditionCode::a => jcc::<7>,
        ConditionCode::s => jcc::<8>,
        ConditionCode::ns => jcc::<9>,
        ConditionCode::p => jcc::<10>,
        ConditionCode::np => jcc::<11>,
        ConditionCode::l => jcc::<12>,
        ConditionCode::ge => jcc::<13>,
        ConditionCode::le => jcc::<14>,
        ConditionCode::g => jcc::<15>,
        ConditionCode::None => jmp,
    }
}

/// The count register of LOOPcc/JrCXZ follows the address size.
fn counter_mask(code: Code) -> u64 {
    match code {
        Code::Loopne_rel8_16_CX
        | Code::Loopne_rel8_32_CX
        | Code::Loope_rel8_16_CX
        | Code::Loope_rel8_32_CX
        | Code::Loop_rel8_16_CX
        | Code::Loop_rel8_32_CX
        | Code::Jcxz_rel8_16
        | Code::Jcxz_rel8_32 => 0xffff,
        Code::Loopne_rel8_16_ECX
        | Code::Loopne_rel8_32_ECX
        | Code::Loopne_rel8_64_ECX
        | Code::Loope_rel8_16_ECX
        | Code::Loope_rel8_32_ECX
        | Code::Loope_rel8_64_ECX
        | Code::Loop_rel8_16_ECX
        | Code::Loop_rel8_32_ECX
        | Code::Loop_rel8_64_ECX
        | Code::Jecxz_rel8_16
        | Code::Jecxz_rel8_32
        | Code::Jecxz_rel8_64 => 0xffff_ffff,
        _ => !0,
    }
}

fn jrcxz(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let m = counter_mask(insn.code());
    if cpu.state.gpr[1] & m == 0 {
        cpu.branch_near(insn.near_branch_target())?;
    }
    Ok(())
}

fn loopcc(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let m = counter_mask(insn.code());
    let old = cpu.state.gpr[1];
    let count = old.wrapping_sub(1) & m;
    let take = count != 0
        && match insn.mnemonic() {
            Mnemonic::Loope => cpu.flag(flags::ZF),
            Mnemonic::Loopne => !cpu.flag(flags::ZF),
            _ => true,
        };
    if take {
        cpu.branch_near(insn.near_branch_target())?;
    }
    // A 32-bit counter write zero-extends like any 32-bit register write; CX merges.
    cpu.state.gpr[1] = if m == 0xffff { (old & !m) | count } else { count };
    Ok(())
}

fn call(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = insn.stack_pointer_increment().unsigned_abs() as u8;
    let t = near_target(cpu, bus, insn)?;
    let ret = cpu.next_rip;
    cpu.branch_near(t)?;
    cpu.push(bus, size, ret).inspect_err(|_| cpu.next_rip = ret)
}

fn ret(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let (size, imm): (u8, u64) = match insn.code() {
        Code::Retnw => (2, 0),
        Code::Retnd => (4, 0),
        Code::Retnq => (8, 0),
        Code::Retnw_imm16 => (2, insn.immediate16() as u64),
        Code::Retnd_imm16 => (4, insn.immediate16() as u64),
        _ => (8, insn.immediate16() as u64),
    };
    let t = cpu.peek_stack(bus, 0, size)?;
    cpu.branch_near(t)?;
    cpu.adjust_sp(size as u64 + imm);
    Ok(())
}

/// Raises a software interrupt returning past the instruction.
fn software_interrupt(cpu: &mut Cpu, bus: &mut dyn CpuBus, vec: u8, kind: EventKind) -> Result<()> {
    let ret = cpu.next_rip;
    cpu.deliver_event_at(bus, vec, None, kind, ret)?;
    cpu.next_rip = cpu.state.rip;
    cpu.end_block = true;
    Ok(())
}

fn int_n(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    // In virtual-8086 mode INT n is IOPL-sensitive (without VME redirection).
    if cpu.state.v86() && (cpu.state.rflags & flags::IOPL) >> flags::IOPL_SHIFT != 3 {
        return Err(Fault::gp0());
    }
    software_interrupt(cpu, bus, insn.immediate8(), EventKind::Software)
}

fn int3(cpu: &mut Cpu, bus: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    software_interrupt(cpu, bus, vector::BP, EventKind::Software)
}

fn into(cpu: &mut Cpu, bus: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    if cpu.flag(flags::OF) {
        software_interrupt(cpu, bus, vector::OF, EventKind::Software)?;
    }
    Ok(())
}

fn int1(cpu: &mut Cpu, bus: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    software_interrupt(cpu, bus, vector::DB, EventKind::PrivilegedSoftware)
}
