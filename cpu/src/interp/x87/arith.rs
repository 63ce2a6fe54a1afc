//! Arithmetic: FADD/FSUB(R)/FMUL/FDIV(R) in all forms (memory, ST(0)/ST(i), popping,
//! integer operands), FSQRT, FABS, FCHS, FRNDINT, FSCALE, FXTRACT, FPREM, FPREM1.

use super::float::{exc, from_i64, from_ieee, Class, F80};
use super::stack::fsw;
use super::{aborts, begin, env_of, mem, note, ops, raise, OVERFLOW, UNDERFLOW};
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::Cpu;
use iced_x86::{Code, Instruction, MemorySize, Mnemonic, OpKind};

pub(super) fn lookup(insn: &Instruction) -> Option<super::Handler> {
    use Mnemonic::*;
    Some(match insn.mnemonic() {
        Fadd | Faddp | Fiadd | Fsub | Fsubp | Fisub | Fsubr | Fsubrp | Fisubr | Fmul | Fmulp | Fimul | Fdiv | Fdivp
        | Fidiv | Fdivr | Fdivrp | Fidivr => binary,
        Fsqrt | Frndint | Fabs | Fchs => unary,
        Fscale => fscale,
        Fxtract => fxtract,
        Fprem | Fprem1 => fprem,
        _ => return None,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

fn binary(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    use Mnemonic::*;
    begin(cpu)?;
    let m = insn.mnemonic();
    let (op, reverse) = match m {
        Fadd | Faddp | Fiadd => (Op::Add, false),
        Fsub | Fsubp | Fisub => (Op::Sub, false),
        Fsubr | Fsubrp | Fisubr => (Op::Sub, true),
        Fmul | Fmulp | Fimul => (Op::Mul, false),
        Fdiv | Fdivp | Fidiv => (Op::Div, false),
        _ => (Op::Div, true),
    };
    let pop = matches!(m, Faddp | Fsubp | Fsubrp | Fmulp | Fdivp | Fdivrp);
    let has_mem = insn.op_kind(0) == OpKind::Memory;
    // The memory operand is read first: its faults precede everything else.
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
    let env = env_of(f);
    // (destination, left, right) as ST indices or the memory value.
    let (dst, left, right, mut flags) = match mem_val {
        Some((v, fl)) => {
            if f.is_empty(0) {
                (0, F80::INDEFINITE, F80::INDEFINITE, UNDERFLOW)
            } else {
                // A NaN (or invalid operand) in ST(0) decides the result before the memory
                // operand's denormal check.
                let x = f.st(0);
                let fl = if x.is_nan() || x.class() == Class::Unsupported { fl & !exc::DE } else { fl };
                (0, x, v, fl)
            }
        }
        None => {
            let d = super::sti(insn, 0);
            let s = super::sti(insn, 1);
            if f.is_empty(d) || f.is_empty(s) {
                (d, F80::INDEFINITE, F80::INDEFINITE, UNDERFLOW)
            } else {
                (d, f.st(d), f.st(s), 0)
            }
        }
    };
    let (a, b) = if reverse { (right, left) } else { (left, right) };
    let result = if flags & exc::SF != 0 || (flags & exc::IE != 0 && aborts(f, flags)) {
        F80::INDEFINITE
    } else {
        let (r, fl) = match op {
            Op::Add => ops::add(a, b, false, &env),
            Op::Sub => ops::add(a, b, true, &env),
            Op::Mul => ops::mul(a, b, &env),
            Op::Div => ops::div(a, b, &env),
        };
        // `flags` holds the memory operand's conversion flags. Its denormal flag behaves like
        // a register operand's: dropped when dividing by zero, and when unmasked it stops the
        // operation before any result flag is raised.
        if fl & exc::ZE != 0 {
            flags &= !exc::DE;
        }
        if flags & exc::DE & !f.fcw == 0 {
            flags |= fl;
        }
        r
    };
    if !aborts(f, flags) {
        f.set_st(dst, result);
        if pop {
            f.pop();
        }
    }
    raise(f, flags);
    note(cpu, bus, insn, has_mem);
    Ok(())
}

fn unary(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let f = &mut cpu.state.fpu;
    let env = env_of(f);
    let (r, flags) = if f.is_empty(0) {
        (F80::INDEFINITE, UNDERFLOW)
    } else {
        let x = f.st(0);
        match insn.code() {
            Code::Fsqrt => ops::sqrt(x, &env),
            Code::Frndint => ops::round_int(x, &env),
            Code::Fabs => (x.abs(), 0),
            _ => (x.neg(), 0),
        }
    };
    if !aborts(f, flags) {
        f.set_st(0, r);
    }
    raise(f, flags);
    note(cpu, bus, insn, false);
    Ok(())
}

fn fscale(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let f = &mut cpu.state.fpu;
    let (r, flags) = if f.is_empty(0) || f.is_empty(1) {
        (F80::INDEFINITE, UNDERFLOW)
    } else {
        ops::scale(f.st(0), f.st(1), &env_of(f))
    };
    if !aborts(f, flags) {
        f.set_st(0, r);
    }
    raise(f, flags);
    note(cpu, bus, insn, false);
    Ok(())
}

fn fxtract(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let f = &mut cpu.state.fpu;
    let (e, s, flags) = if f.is_empty(0) {
        (F80::INDEFINITE, F80::INDEFINITE, UNDERFLOW)
    } else if !f.is_empty(7) {
        (F80::INDEFINITE, F80::INDEFINITE, OVERFLOW)
    } else {
        ops::extract(f.st(0), &env_of(f))
    };
    if !aborts(f, flags) {
        f.set_st(0, e);
        f.push(s);
    }
    raise(f, flags);
    note(cpu, bus, insn, false);
    Ok(())
}

fn fprem(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let f = &mut cpu.state.fpu;
    let (r, flags) = if f.is_empty(0) || f.is_empty(1) {
        (None, UNDERFLOW)
    } else {
        let r = ops::rem(f.st(0), f.st(1), insn.code() == Code::Fprem1, &env_of(f));
        let fl = r.flags;
        (Some(r), fl)
    };
    if !aborts(f, flags) {
        match r {
            Some(r) => {
                f.set_st(0, r.value);
                let q = r.quotient;
                let mut cc = 0;
                if r.incomplete {
                    cc |= fsw::C2;
                } else {
                    // C0 = Q2, C3 = Q1, C1 = Q0.
                    cc |= if q & 4 != 0 { fsw::C0 } else { 0 };
                    cc |= if q & 2 != 0 { fsw::C3 } else { 0 };
                }
                f.fsw = (f.fsw & !fsw::CC) | cc;
                raise(f, flags & !exc::C1 | if !r.incomplete && q & 1 != 0 { exc::C1 } else { 0 });
            }
            None => {
                f.set_st(0, F80::INDEFINITE);
                f.fsw &= !fsw::CC;
                raise(f, flags);
            }
        }
    } else {
        raise(f, flags);
    }
    note(cpu, bus, insn, false);
    Ok(())
}
