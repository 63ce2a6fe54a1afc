//! Comparisons: FCOM/FCOMP/FCOMPP, FICOM(P), FUCOM/FUCOMP/FUCOMPP (condition codes),
//! FCOMI/FCOMIP/FUCOMI/FUCOMIP (EFLAGS), FTST and FXAM.

use super::float::{exc, from_i64, from_ieee, Class, F80};
use super::stack::fsw;
use super::{aborts, begin, mem, note, ops, raise, UNDERFLOW};
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::state::flags;
use crate::Cpu;
use core::cmp::Ordering;
use iced_x86::{Instruction, MemorySize, Mnemonic, OpKind};

pub(super) fn lookup(insn: &Instruction) -> Option<super::Handler> {
    use Mnemonic::*;
    Some(match insn.mnemonic() {
        Fcom | Fcomp | Fcompp | Ficom | Ficomp | Fucom | Fucomp | Fucompp | Ftst => fcom,
        Fcomi | Fcomip | Fucomi | Fucomip => fcomi,
        Fxam => fxam,
        _ => return None,
    })
}

/// Condition codes of a comparison (SDM Vol. 2, FCOM Table 3-21).
fn codes(ord: Option<Ordering>) -> u16 {
    match ord {
        Some(Ordering::Greater) => 0,
        Some(Ordering::Less) => fsw::C0,
        Some(Ordering::Equal) => fsw::C3,
        None => fsw::C3 | fsw::C2 | fsw::C0,
    }
}

fn fcom(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    use Mnemonic::*;
    begin(cpu)?;
    let m = insn.mnemonic();
    let has_mem = insn.op_count() > 0 && insn.op_kind(0) == OpKind::Memory;
    let mem_val = if has_mem {
        let raw = mem::read_int(cpu, bus, insn)?;
        Some(match insn.memory_size() {
            MemorySize::Float32 => from_ieee(raw, 23, 8),
            MemorySize::Float64 => from_ieee(raw, 52, 11),
            MemorySize::Int16 => (from_i64(raw as i16 as i64), 0),
            _ => (from_i64(raw as i32 as i64), 0),
        })
    } else {
        None
    };
    let f = &mut cpu.state.fpu;
    let quiet = matches!(m, Fucom | Fucomp | Fucompp);
    let pops = match m {
        Fcomp | Ficomp | Fucomp => 1,
        Fcompp | Fucompp => 2,
        _ => 0,
    };
    let other = match (mem_val, m) {
        (Some(v), _) => Ok(v),
        (None, Ftst) => Ok((F80::ZERO, 0)),
        (None, _) => Err(if insn.op_count() > 1 { super::sti(insn, 1) } else { 1 }),
    };
    let (ord, flags) = match other {
        _ if f.is_empty(0) => (None, UNDERFLOW),
        Err(i) if f.is_empty(i) => (None, UNDERFLOW),
        Err(i) => ops::compare(f.st(0), f.st(i), quiet),
        Ok((v, conv)) => {
            let (o, fl) = ops::compare(f.st(0), v, quiet);
            // A NaN in ST(0) hides the memory operand's denormal flag.
            let conv = if f.st(0).is_nan() || f.st(0).class() == Class::Unsupported { conv & !exc::DE } else { conv };
            (o, fl | conv)
        }
    };
    // The condition codes are written even when an exception is unmasked (unordered for an
    // invalid operand).
    f.fsw = (f.fsw & !fsw::CC) | codes(ord);
    if !aborts(f, flags) {
        for _ in 0..pops {
            f.pop();
        }
    }
    raise(f, flags & !exc::C1);
    note(cpu, bus, insn, has_mem);
    Ok(())
}

fn fcomi(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    use Mnemonic::*;
    begin(cpu)?;
    let m = insn.mnemonic();
    let i = super::sti(insn, 1);
    let f = &mut cpu.state.fpu;
    let (ord, fl) = if f.is_empty(0) || f.is_empty(i) {
        (None, UNDERFLOW)
    } else {
        ops::compare(f.st(0), f.st(i), matches!(m, Fucomi | Fucomip))
    };
    let ok = !aborts(f, fl);
    if ok && matches!(m, Fcomip | Fucomip) {
        f.pop();
    }
    raise(f, fl & !exc::C1);
    // EFLAGS are written even when an exception is unmasked (unordered for invalid operands).
    {
        let v = match ord {
            Some(Ordering::Greater) => 0,
            Some(Ordering::Less) => flags::CF,
            Some(Ordering::Equal) => flags::ZF,
            None => flags::ZF | flags::PF | flags::CF,
        };
        // ZF/PF/CF from the comparison; OF, SF and AF cleared.
        cpu.set_arith_flags(flags::ARITH, v);
    }
    note(cpu, bus, insn, false);
    Ok(())
}

fn fxam(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let f = &mut cpu.state.fpu;
    let x = f.st(0);
    let c = if f.is_empty(0) {
        fsw::C3 | fsw::C0
    } else {
        match x.class() {
            Class::Unsupported => 0,
            Class::QNaN | Class::SNaN => fsw::C0,
            Class::Normal => fsw::C2,
            Class::Inf => fsw::C2 | fsw::C0,
            Class::Zero => fsw::C3,
            Class::Denormal => fsw::C3 | fsw::C2,
        }
    };
    let c1 = if x.sign() { fsw::C1 } else { 0 };
    f.fsw = (f.fsw & !fsw::CC) | c | c1;
    note(cpu, bus, insn, false);
    Ok(())
}
