//! Loads and stores: FLD/FILD/FBLD, the constants, FST(P)/FIST(P)/FISTTP/FBSTP, FXCH and
//! FCMOVcc (SDM Vol. 2, and Vol. 1, 8.3.3-8.3.6).

use super::float::{exc, from_i64, from_ieee, to_ieee, Env, F80, FMT_F32, FMT_F64};
use super::{aborts, begin, env_of, mem, note, ops, raise, sti, store_suppressed, OVERFLOW, UNDERFLOW};
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::state::FpuState;
use crate::Cpu;
use iced_x86::{Code, ConditionCode, Instruction, MemorySize, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<super::Handler> {
    use Code::*;
    Some(match insn.code() {
        Fld_m32fp | Fld_m64fp | Fld_m80fp => fld_mem,
        Fld_sti => fld_sti,
        Fild_m16int | Fild_m32int | Fild_m64int => fild,
        Fbld_m80bcd => fbld,
        Fld1 | Fldz | Fldpi | Fldl2e | Fldl2t | Fldlg2 | Fldln2 => fld_const,
        Fst_m32fp | Fst_m64fp | Fstp_m32fp | Fstp_m64fp | Fstp_m80fp => fst_mem,
        Fst_sti | Fstp_sti | Fstp_sti_DFD0 | Fstp_sti_DFD8 | Fstpnce_sti => fst_sti,
        Fist_m16int | Fist_m32int | Fistp_m16int | Fistp_m32int | Fistp_m64int | Fisttp_m16int | Fisttp_m32int
        | Fisttp_m64int => fist,
        Fbstp_m80bcd => fbstp,
        Fxch_st0_sti | Fxch_st0_sti_DDC8 | Fxch_st0_sti_DFC8 => fxch,
        Fcmovb_st0_sti | Fcmove_st0_sti | Fcmovbe_st0_sti | Fcmovu_st0_sti | Fcmovnb_st0_sti | Fcmovne_st0_sti
        | Fcmovnbe_st0_sti | Fcmovnu_st0_sti => fcmov,
        _ => return None,
    })
}

/// Pushes `v` (computed with `flags`), or the indefinite on a masked stack overflow.
/// Only an unmasked invalid operation prevents the load: a denormal source is loaded even when
/// the denormal exception is unmasked (as the host x87 does).
fn push_checked(f: &mut FpuState, v: F80, mut flags: u16) {
    let invalid_unmasked = |f: &FpuState, fl: u16| fl & exc::IE & !f.fcw != 0;
    if !f.is_empty(7) {
        flags |= OVERFLOW;
        if !invalid_unmasked(f, flags) {
            f.push(F80::INDEFINITE);
        }
    } else if !invalid_unmasked(f, flags) {
        f.push(v);
    }
    raise(f, flags);
}

fn fld_mem(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let (v, flags) = match insn.memory_size() {
        MemorySize::Float32 => from_ieee(mem::read_int(cpu, bus, insn)?, 23, 8),
        MemorySize::Float64 => from_ieee(mem::read_int(cpu, bus, insn)?, 52, 11),
        _ => (F80::from_bytes(mem::read_op::<10>(cpu, bus, insn)?), 0),
    };
    let v = if insn.memory_size() != MemorySize::Float80 && v.class() == super::float::Class::SNaN {
        v.quieted()
    } else {
        v
    };
    push_checked(&mut cpu.state.fpu, v, flags);
    note(cpu, bus, insn, true);
    Ok(())
}

fn fld_sti(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let i = sti(insn, 0);
    let f = &mut cpu.state.fpu;
    let (v, flags) = if f.is_empty(i) { (F80::INDEFINITE, UNDERFLOW) } else { (f.st(i), 0) };
    push_checked(f, v, flags);
    note(cpu, bus, insn, false);
    Ok(())
}

fn fild(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let raw = mem::read_int(cpu, bus, insn)?;
    let v = match insn.memory_size().size() {
        2 => raw as i16 as i64,
        4 => raw as i32 as i64,
        _ => raw as i64,
    };
    push_checked(&mut cpu.state.fpu, from_i64(v), 0);
    note(cpu, bus, insn, true);
    Ok(())
}

fn fbld(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let b = mem::read_op::<10>(cpu, bus, insn)?;
    push_checked(&mut cpu.state.fpu, ops::from_bcd(b), 0);
    note(cpu, bus, insn, true);
    Ok(())
}

/// The constants to 128 bits (leading-bit exponent, significand), rounded to 64 bits under RC
/// as hardware does (SDM Vol. 1, 8.3.8).
fn constant(code: Code) -> (i32, u128) {
    match code {
        Code::Fld1 => (0, 1 << 127),
        Code::Fldpi => (1, 0xc90f_daa2_2168_c234_c4c6_628b_80dc_1cd1),
        Code::Fldl2e => (0, 0xb8aa_3b29_5c17_f0bb_be87_fed0_691d_3e89),
        Code::Fldl2t => (1, 0xd49a_784b_cd1b_8afe_492b_f6ff_4daf_db4c),
        Code::Fldlg2 => (-2, 0x9a20_9a84_fbcf_f798_8f89_59ac_0b7c_9178),
        Code::Fldln2 => (-1, 0xb172_17f7_d1cf_79ab_c9e3_b398_03f2_f6af),
        _ => (0, 0),
    }
}

fn fld_const(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let f = &mut cpu.state.fpu;
    let v = match constant(insn.code()) {
        (_, 0) => F80::ZERO,
        (e, sig) => {
            // Rounded to 64 bits whatever the precision control; no flags (not even PE).
            let env = Env { fmt: super::float::fmt_reg(64), masks: exc::ALL, ..env_of(f) };
            super::float::round_f80(false, e, sig, &env).0
        }
    };
    push_checked(f, v, 0);
    note(cpu, bus, insn, false);
    Ok(())
}

fn pops(insn: &Instruction) -> bool {
    matches!(insn.mnemonic(), Mnemonic::Fstp | Mnemonic::Fistp | Mnemonic::Fisttp | Mnemonic::Fstpnce | Mnemonic::Fbstp)
}

fn fst_mem(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let f = &cpu.state.fpu;
    let env = env_of(f);
    let empty = f.is_empty(0);
    let x = f.st(0);
    let (bytes, n, flags): ([u8; 10], usize, u16) = match insn.memory_size() {
        MemorySize::Float32 => {
            let (b, fl) = if empty { (0xffc0_0000, UNDERFLOW) } else { to_ieee(x, &env.with_fmt(FMT_F32), 23) };
            (widen(b), 4, fl)
        }
        MemorySize::Float64 => {
            let (b, fl) =
                if empty { (0xfff8_0000_0000_0000, UNDERFLOW) } else { to_ieee(x, &env.with_fmt(FMT_F64), 52) };
            (widen(b), 8, fl)
        }
        _ => (if empty { F80::INDEFINITE } else { x }.to_bytes(), 10, if empty { UNDERFLOW } else { 0 }),
    };
    let store = !store_suppressed(f, flags);
    // Nothing is stored on an unmasked overflow/underflow, so nothing is inexact either.
    let flags = if store { flags } else { flags & !(exc::PE | exc::C1) };
    if store {
        mem::write_op(cpu, bus, insn, &bytes[..n])?;
    }
    let f = &mut cpu.state.fpu;
    if store && pops(insn) {
        f.pop();
    }
    raise(f, flags);
    note(cpu, bus, insn, true);
    Ok(())
}

fn widen(v: u64) -> [u8; 10] {
    let mut b = [0u8; 10];
    b[..8].copy_from_slice(&v.to_le_bytes());
    b
}

fn fst_sti(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let i = sti(insn, 0);
    let f = &mut cpu.state.fpu;
    let (v, flags) = if f.is_empty(0) { (F80::INDEFINITE, UNDERFLOW) } else { (f.st(0), 0) };
    if !aborts(f, flags) {
        f.set_st(i, v);
        if pops(insn) {
            f.pop();
        }
    }
    raise(f, flags);
    note(cpu, bus, insn, false);
    Ok(())
}

fn fist(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let f = &cpu.state.fpu;
    let size = insn.memory_size().size() as u8;
    let bits = size as u32 * 8;
    let (v, flags) = if f.is_empty(0) {
        (i64::MIN >> (64 - bits), UNDERFLOW)
    } else {
        ops::to_int(f.st(0), bits, insn.mnemonic() == Mnemonic::Fisttp, &env_of(f))
    };
    let store = !aborts(f, flags);
    if store {
        mem::write_int(cpu, bus, insn, size, v as u64)?;
    }
    let f = &mut cpu.state.fpu;
    if store && pops(insn) {
        f.pop();
    }
    raise(f, flags);
    note(cpu, bus, insn, true);
    Ok(())
}

fn fbstp(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let f = &cpu.state.fpu;
    let (b, flags) = if f.is_empty(0) {
        ([0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff], UNDERFLOW)
    } else {
        ops::to_bcd(f.st(0), &env_of(f))
    };
    let store = !aborts(f, flags);
    if store {
        mem::write_op(cpu, bus, insn, &b)?;
        cpu.state.fpu.pop();
    }
    raise(&mut cpu.state.fpu, flags);
    note(cpu, bus, insn, true);
    Ok(())
}

fn fxch(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let i = sti(insn, 1);
    let f = &mut cpu.state.fpu;
    let flags = if f.is_empty(0) || f.is_empty(i) { UNDERFLOW } else { 0 };
    if !aborts(f, flags) {
        let a = if f.is_empty(0) { F80::INDEFINITE } else { f.st(0) };
        let b = if f.is_empty(i) { F80::INDEFINITE } else { f.st(i) };
        f.set_st(0, b);
        f.set_st(i, a);
    }
    raise(f, flags);
    note(cpu, bus, insn, false);
    Ok(())
}

fn fcmov(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let i = sti(insn, 1);
    let cond = match insn.mnemonic() {
        Mnemonic::Fcmovb => cpu.condition(ConditionCode::b),
        Mnemonic::Fcmove => cpu.condition(ConditionCode::e),
        Mnemonic::Fcmovbe => cpu.condition(ConditionCode::be),
        Mnemonic::Fcmovu => cpu.condition(ConditionCode::p),
        Mnemonic::Fcmovnb => cpu.condition(ConditionCode::ae),
        Mnemonic::Fcmovne => cpu.condition(ConditionCode::ne),
        Mnemonic::Fcmovnbe => cpu.condition(ConditionCode::a),
        _ => cpu.condition(ConditionCode::np),
    };
    let f = &mut cpu.state.fpu;
    let flags = if f.is_empty(0) || f.is_empty(i) { UNDERFLOW } else { 0 };
    if flags != 0 {
        if !aborts(f, flags) {
            f.set_st(0, F80::INDEFINITE);
        }
    } else if cond {
        let v = f.st(i);
        f.set_st(0, v);
    }
    raise(f, flags);
    note(cpu, bus, insn, false);
    Ok(())
}
