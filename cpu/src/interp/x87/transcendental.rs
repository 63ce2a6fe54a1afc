//! Transcendentals: F2XM1, FYL2X, FYL2XP1, FPTAN, FPATAN, FSIN, FCOS, FSINCOS.
//!
//! Approximation: the core function is evaluated with the host's f64 math (about 53 correct
//! bits instead of the x87's ~64) and the f64 result is rounded into the register format, with
//! PE always set for inexact results and C1 = 0. Special operands (NaNs, infinities, zeros,
//! out-of-range arguments, invalid and divide-by-zero cases) follow the SDM exactly, and
//! FYL2X keeps the full exponent range by adding the integer exponent in extended precision.

use super::float::{exc, fmt_reg, from_i64, from_ieee, propagate_nan, to_ieee, Class, Env, Rc, F80, FMT_F64};
use super::stack::fsw;
use super::{aborts, begin, env_of, note, ops, raise, OVERFLOW, UNDERFLOW};
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<super::Handler> {
    use Mnemonic::*;
    Some(match insn.mnemonic() {
        F2xm1 | Fsin | Fcos => unary,
        Fptan | Fsincos => pushing,
        Fyl2x | Fyl2xp1 | Fpatan => binary_pop,
        _ => return None,
    })
}

/// Arguments of FSIN/FCOS/FPTAN/FSINCOS beyond ±2^63 are left alone with C2 = 1.
const TRIG_LIMIT_EXP: u16 = 0x3fff + 63;

fn de_of(x: F80) -> u16 {
    if x.class() == Class::Denormal {
        exc::DE
    } else {
        0
    }
}

/// F80 → nearest f64, saturating to ±inf/0 outside the f64 range.
fn to_f64(x: F80) -> f64 {
    let env = Env { rc: Rc::Nearest, fmt: FMT_F64, masks: exc::ALL };
    f64::from_bits(to_ieee(x, &env, 52).0)
}

/// An f64 result into the register format under `env` (64-bit precision: precision control
/// does not apply to transcendentals); PE unless `exact`.
fn from_f64(v: f64, env: &Env, exact: bool) -> (F80, u16) {
    let env = &Env { fmt: fmt_reg(64), ..*env };
    let (x, _) = from_ieee(v.to_bits(), 52, 11);
    let (r, fl) = match x.class() {
        Class::Normal | Class::Denormal => {
            let (s, e, m) = x.unpack();
            ops::round_value(s, e, m, env)
        }
        _ => (x, 0),
    };
    (r, (fl & !exc::C1) | if exact { 0 } else { exc::PE })
}

/// Common prelude of one-operand functions: invalid operands and NaNs.
fn special1(x: F80) -> Option<(F80, u16)> {
    match x.class() {
        Class::Unsupported => Some((F80::INDEFINITE, exc::IE)),
        Class::QNaN | Class::SNaN => Some(propagate_nan(x, x)),
        _ => None,
    }
}

fn trig_out_of_range(x: F80) -> bool {
    matches!(x.class(), Class::Normal | Class::Denormal) && x.exp() >= TRIG_LIMIT_EXP
}

fn unary(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let m = insn.mnemonic();
    let f = &mut cpu.state.fpu;
    let env = env_of(f);
    let mut c2 = false;
    let (r, flags) = if f.is_empty(0) {
        (F80::INDEFINITE, UNDERFLOW)
    } else {
        let x = f.st(0);
        let de = de_of(x);
        if let Some(s) = special1(x) {
            s
        } else if m != Mnemonic::F2xm1 && trig_out_of_range(x) {
            c2 = true;
            (x, 0)
        } else if de & !env.masks != 0 {
            (x, de)
        } else {
            let (r, fl) = match (m, x.class()) {
                (Mnemonic::F2xm1, Class::Inf) => (if x.sign() { F80::ONE.neg() } else { x }, 0),
                (_, Class::Inf) => (F80::INDEFINITE, exc::IE),
                (Mnemonic::F2xm1 | Mnemonic::Fsin, Class::Zero) => (x, 0),
                (Mnemonic::Fcos, Class::Zero) => (F80::ONE, 0),
                (Mnemonic::F2xm1, _) if tiny(x) => ops::mul(x, LN2, &Env { fmt: fmt_reg(64), ..env }),
                (Mnemonic::Fsin, _) if tiny(x) => tiny_identity(x),
                (Mnemonic::Fcos, _) if tiny(x) => (F80::ONE, exc::PE),
                (Mnemonic::F2xm1, _) => from_f64(f2xm1(to_f64(x)), &env, false),
                (Mnemonic::Fsin, _) => from_f64(to_f64(x).sin(), &env, false),
                _ => from_f64(to_f64(x).cos(), &env, false),
            };
            (r, fl | de)
        }
    };
    if !aborts(f, flags) {
        f.set_st(0, r);
        f.fsw = (f.fsw & !fsw::C2) | if c2 { fsw::C2 } else { 0 };
    }
    raise(f, flags);
    note(cpu, bus, insn, false);
    Ok(())
}

/// ln 2 rounded to 64 bits.
const LN2: F80 = F80 { sig: 0xb172_17f7_d1cf_79ac, se: 0x3ffe };

/// Arguments so small that sin x = tan x = x and cos x = 1 to 64 bits (and that may lie
/// outside the f64 range).
fn tiny(x: F80) -> bool {
    x.exp() < 0x3fff - 40
}

/// sin/tan of a tiny argument: the argument itself, inexact, underflowing if denormal.
fn tiny_identity(x: F80) -> (F80, u16) {
    let ue = if x.class() == Class::Denormal { exc::UE } else { 0 };
    (x, exc::PE | ue)
}

fn f2xm1(x: f64) -> f64 {
    // 2^x - 1 = expm1(x ln 2), accurate for small x.
    (x * core::f64::consts::LN_2).exp_m1()
}

/// FPTAN (ST0 = tan, push 1.0) and FSINCOS (ST0 = sin, push cos).
fn pushing(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let tan = insn.mnemonic() == Mnemonic::Fptan;
    let f = &mut cpu.state.fpu;
    let env = env_of(f);
    let x = f.st(0);
    if f.is_empty(0) || !f.is_empty(7) {
        let flags = if f.is_empty(0) { UNDERFLOW } else { OVERFLOW };
        if !aborts(f, flags) {
            f.set_st(0, F80::INDEFINITE);
            f.push(F80::INDEFINITE);
        }
        raise(f, flags);
    } else if special1(x).is_none() && trig_out_of_range(x) {
        f.fsw |= fsw::C2;
        raise(f, 0);
    } else {
        let de = de_of(x);
        let (a, b, flags) = if let Some((n, fl)) = special1(x) {
            (n, n, fl)
        } else if x.class() == Class::Inf {
            (F80::INDEFINITE, F80::INDEFINITE, exc::IE)
        } else if de & !env.masks != 0 {
            (x, x, de)
        } else if x.class() == Class::Zero {
            (x, F80::ONE, 0)
        } else if tiny(x) {
            let (a, fa) = tiny_identity(x);
            (a, F80::ONE, fa | de)
        } else {
            let v = to_f64(x);
            let (a, fa) = from_f64(if tan { v.tan() } else { v.sin() }, &env, false);
            let (b, fb) = if tan { (F80::ONE, 0) } else { from_f64(v.cos(), &env, false) };
            (a, b, fa | fb | de)
        };
        if !aborts(f, flags) {
            f.set_st(0, a);
            f.push(b);
            f.fsw &= !fsw::C2;
        }
        raise(f, flags);
    }
    note(cpu, bus, insn, false);
    Ok(())
}

/// FYL2X, FYL2XP1, FPATAN: ST1 = f(ST1, ST0), then pop.
fn binary_pop(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let m = insn.mnemonic();
    let f = &mut cpu.state.fpu;
    let env = env_of(f);
    let (r, flags) = if f.is_empty(0) || f.is_empty(1) {
        (F80::INDEFINITE, UNDERFLOW)
    } else {
        let (x, y) = (f.st(0), f.st(1));
        match m {
            Mnemonic::Fpatan => patan(y, x, &env),
            Mnemonic::Fyl2x => yl2x(y, x, &env),
            _ => yl2xp1(y, x, &env),
        }
    };
    if !aborts(f, flags) {
        f.set_st(1, r);
        f.pop();
    }
    raise(f, flags);
    note(cpu, bus, insn, false);
    Ok(())
}

fn special2(y: F80, x: F80, env: &Env) -> core::result::Result<u16, (F80, u16)> {
    if x.class() == Class::Unsupported || y.class() == Class::Unsupported {
        return Err((F80::INDEFINITE, exc::IE));
    }
    if x.is_nan() || y.is_nan() {
        return Err(propagate_nan(x, y));
    }
    let de = de_of(x) | de_of(y);
    if de & !env.masks != 0 {
        return Err((x, de));
    }
    Ok(de)
}

/// y * log2(x).
fn yl2x(y: F80, x: F80, env: &Env) -> (F80, u16) {
    let de = match special2(y, x, env) {
        Ok(de) => de,
        Err(r) => return r,
    };
    if x.sign() && x.class() != Class::Zero {
        return (F80::INDEFINITE, exc::IE | de);
    }
    let (log, exact, ze) = match x.class() {
        Class::Zero => {
            if y.class() == Class::Zero {
                return (F80::INDEFINITE, exc::IE | de);
            }
            (F80::inf(true), true, if y.class() == Class::Inf { 0 } else { exc::ZE })
        }
        Class::Inf => (F80::inf(false), true, 0),
        _ => {
            let (_, e, m) = x.unpack();
            let frac = F80 { sig: m, se: 0x3fff };
            if m == 1 << 63 {
                // Exact, but the host x87 still reports it as inexact.
                (from_i64(e as i64), false, 0)
            } else if e == -1 || e == 0 {
                // Near 1: log2(1 + (x - 1)) with x - 1 exact, avoiding cancellation.
                let wide = Env { fmt: fmt_reg(64), masks: exc::ALL, ..*env };
                let d = ops::add(x, F80::ONE, true, &wide).0;
                let l = to_f64(d).ln_1p() / core::f64::consts::LN_2;
                (from_ieee(l.to_bits(), 52, 11).0, false, 0)
            } else {
                // log2(x) = e + log2(1.f): the integer part exactly, the fraction in f64.
                let l = to_f64(frac).log2();
                let (lf, _) = from_ieee(l.to_bits(), 52, 11);
                let wide = Env { fmt: fmt_reg(64), masks: exc::ALL, ..*env };
                (ops::add(from_i64(e as i64), lf, false, &wide).0, false, 0)
            }
        }
    };
    if x.class() == Class::Zero && y.class() == Class::Inf {
        return (F80::inf(!y.sign()), de);
    }
    let (r, fl) = ops::mul(y, log, env);
    let pe = if exact || fl & exc::IE != 0 || matches!(r.class(), Class::Zero | Class::Inf) { 0 } else { exc::PE };
    (r, ((fl | pe) & !exc::C1) | ze | de)
}

/// y * log2(x + 1), for |x| < 1 - sqrt(2)/2.
fn yl2xp1(y: F80, x: F80, env: &Env) -> (F80, u16) {
    let de = match special2(y, x, env) {
        Ok(de) => de,
        Err(r) => return r,
    };
    match (x.class(), y.class()) {
        (Class::Inf, _) if !x.sign() => {
            let (r, fl) = ops::mul(y, x, env);
            return (r, fl | de);
        }
        (Class::Inf, _) => return (F80::INDEFINITE, exc::IE | de),
        (Class::Zero, Class::Inf) => return (F80::INDEFINITE, exc::IE | de),
        (Class::Zero, _) => return (F80::zero(x.sign() != y.sign()), de),
        _ => {}
    }
    let l = to_f64(x).ln_1p() / core::f64::consts::LN_2;
    let (lf, _) = from_ieee(l.to_bits(), 52, 11);
    let (r, fl) = ops::mul(y, lf, env);
    let pe = if fl & exc::IE != 0 || matches!(r.class(), Class::Inf | Class::Zero) { 0 } else { exc::PE };
    (r, ((fl | pe) & !exc::C1) | de)
}

/// atan2(y, x) (ST1 = y, ST0 = x).
fn patan(y: F80, x: F80, env: &Env) -> (F80, u16) {
    let de = match special2(y, x, env) {
        Ok(de) => de,
        Err(r) => return r,
    };
    if y.class() == Class::Zero && x.class() != Class::Zero && !x.sign() {
        return (y, de);
    }
    // atan2 depends only on the ratio: bring both operands into f64 range by one common
    // power of two.
    let shift = |v: F80, by: i32| -> f64 {
        match v.class() {
            Class::Normal | Class::Denormal => {
                let (s, e, m) = v.unpack();
                let t = F80 { sig: m, se: ((e - by).clamp(-16000, 16000) + 0x3fff) as u16 | (s as u16) << 15 };
                to_f64(t)
            }
            _ => to_f64(v),
        }
    };
    let top = |v: F80| match v.class() {
        Class::Normal | Class::Denormal => v.unpack().1,
        _ => i32::MIN,
    };
    let by = top(x).max(top(y));
    let by = if by == i32::MIN { 0 } else { by };
    let r = shift(y, by).atan2(shift(x, by));
    let exact = r == 0.0;
    let (v, fl) = from_f64(r, env, exact);
    (v, fl | de)
}
