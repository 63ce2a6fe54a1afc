//! The 80-bit double extended-precision format and exact rounding (SDM Vol. 1, 4.2 and 4.8).
//!
//! Written by hand rather than with `rustc_apfloat`: the x87 needs precision control (24/53
//! bits with the full 15-bit exponent), the denormal-operand flag, unnormals and pseudo-NaNs
//! as invalid operands, its own NaN selection rules and the biased results of unmasked
//! overflow/underflow, none of which that crate models. Every operation computes the exact
//! result (or its exact position between two representable values, via a sticky bit) in
//! 128-bit integers and rounds once, so results are bit-exact.

/// Exception flags as in FSW bits 0-6, plus C1 (bit 9) meaning "rounded up".
pub mod exc {
    pub const IE: u16 = 1 << 0;
    pub const DE: u16 = 1 << 1;
    pub const ZE: u16 = 1 << 2;
    pub const OE: u16 = 1 << 3;
    pub const UE: u16 = 1 << 4;
    pub const PE: u16 = 1 << 5;
    pub const SF: u16 = 1 << 6;
    pub const C1: u16 = 1 << 9;
    /// All six exception flags (also the mask bits of FCW).
    pub const ALL: u16 = 0x3f;
}

pub const BIAS: i32 = 16383;
const EXP_MASK: u16 = 0x7fff;
pub const INT_BIT: u64 = 1 << 63;
pub const QUIET_BIT: u64 = 1 << 62;
/// Exponent adjustment applied to results of unmasked overflow/underflow (SDM Vol. 1, 4.9.1.4).
const WRAP_BIAS: i32 = 24576;

/// An 80-bit extended real: 64-bit significand with explicit integer bit, then sign and a
/// 15-bit biased exponent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct F80 {
    pub sig: u64,
    pub se: u16,
}

/// Operand classes as the x87 sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Zero,
    Normal,
    /// Denormals and pseudo-denormals (exponent 0, any significand but zero).
    Denormal,
    Inf,
    QNaN,
    SNaN,
    /// Unnormals, pseudo-NaNs and pseudo-infinities: invalid operands since the 387.
    Unsupported,
}

impl F80 {
    /// The "real indefinite" QNaN every masked invalid operation produces.
    pub const INDEFINITE: F80 = F80 { sig: 0xc000_0000_0000_0000, se: 0xffff };
    pub const ZERO: F80 = F80 { sig: 0, se: 0 };
    pub const ONE: F80 = F80 { sig: INT_BIT, se: BIAS as u16 };

    pub fn from_bytes(b: [u8; 10]) -> F80 {
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[..8]);
        F80 { sig: u64::from_le_bytes(s), se: u16::from_le_bytes([b[8], b[9]]) }
    }
    pub fn to_bytes(self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[..8].copy_from_slice(&self.sig.to_le_bytes());
        b[8..].copy_from_slice(&self.se.to_le_bytes());
        b
    }
    pub fn sign(self) -> bool {
        self.se & 0x8000 != 0
    }
    pub fn exp(self) -> u16 {
        self.se & EXP_MASK
    }
    pub fn inf(sign: bool) -> F80 {
        F80 { sig: INT_BIT, se: EXP_MASK | (sign as u16) << 15 }
    }
    pub fn zero(sign: bool) -> F80 {
        F80 { sig: 0, se: (sign as u16) << 15 }
    }
    pub fn with_sign(self, sign: bool) -> F80 {
        F80 { sig: self.sig, se: (self.se & EXP_MASK) | (sign as u16) << 15 }
    }
    pub fn neg(self) -> F80 {
        F80 { sig: self.sig, se: self.se ^ 0x8000 }
    }
    pub fn abs(self) -> F80 {
        F80 { sig: self.sig, se: self.se & EXP_MASK }
    }
    pub fn quieted(self) -> F80 {
        F80 { sig: self.sig | QUIET_BIT, se: self.se }
    }

    pub fn class(self) -> Class {
        let e = self.exp();
        let int = self.sig & INT_BIT != 0;
        match e {
            0 if self.sig == 0 => Class::Zero,
            0 => Class::Denormal,
            EXP_MASK if !int => Class::Unsupported,
            EXP_MASK if self.sig << 1 == 0 => Class::Inf,
            EXP_MASK if self.sig & QUIET_BIT != 0 => Class::QNaN,
            EXP_MASK => Class::SNaN,
            _ if !int => Class::Unsupported,
            _ => Class::Normal,
        }
    }
    /// A true denormal: exponent 0 and integer bit clear (not a pseudo-denormal), nonzero.
    pub fn is_true_denormal(self) -> bool {
        self.exp() == 0 && self.sig >> 63 == 0 && self.sig != 0
    }

    pub fn is_nan(self) -> bool {
        matches!(self.class(), Class::QNaN | Class::SNaN)
    }

    /// A finite nonzero value as (sign, exponent of the leading bit, significand with bit 63
    /// set). Denormals are normalized. Only for `Normal`/`Denormal` classes.
    pub fn unpack(self) -> (bool, i32, u64) {
        if self.exp() == 0 {
            let lz = self.sig.leading_zeros() as i32;
            (self.sign(), 1 - BIAS - lz, self.sig << lz)
        } else {
            (self.sign(), self.exp() as i32 - BIAS, self.sig)
        }
    }
}

/// A destination format for rounding: precision and normal exponent range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    pub prec: u32,
    pub emin: i32,
    pub emax: i32,
}

pub const FMT_F32: Format = Format { prec: 24, emin: -126, emax: 127 };
pub const FMT_F64: Format = Format { prec: 53, emin: -1022, emax: 1023 };

/// Register destination with the given precision control (24, 53 or 64 bits).
pub fn fmt_reg(prec: u32) -> Format {
    Format { prec, emin: 1 - BIAS, emax: BIAS }
}

/// Rounding control (FCW.RC encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rc {
    Nearest = 0,
    Down = 1,
    Up = 2,
    Zero = 3,
}

impl Rc {
    pub fn from_bits(b: u16) -> Rc {
        match b & 3 {
            0 => Rc::Nearest,
            1 => Rc::Down,
            2 => Rc::Up,
            _ => Rc::Zero,
        }
    }
}

/// The rounding environment of one operation.
#[derive(Clone, Copy, Debug)]
pub struct Env {
    pub rc: Rc,
    pub fmt: Format,
    /// FCW mask bits; unmasked overflow/underflow deliver a biased result (register
    /// destinations only: callers never store the result to memory in that case).
    pub masks: u16,
}

impl Env {
    /// The environment of register arithmetic under `fcw`.
    pub fn from_fcw(fcw: u16) -> Env {
        let prec = match (fcw >> 8) & 3 {
            0 => 24,
            2 => 53,
            _ => 64, // 3; 1 is reserved and behaves as 64 on current processors
        };
        Env { rc: Rc::from_bits(fcw >> 10), fmt: fmt_reg(prec), masks: fcw & exc::ALL }
    }
    pub fn with_fmt(self, fmt: Format) -> Env {
        Env { fmt, ..self }
    }
}

/// A rounded finite value `m * 2^q` (or infinity), before packing into a format.
#[derive(Clone, Copy, Debug)]
pub enum Rounded {
    Finite { sign: bool, m: u64, q: i32 },
    Inf { sign: bool },
}

/// Whether tininess is detected after rounding (Intel x87: yes).
const TININESS_AFTER_ROUNDING: bool = true;

fn bitlen(m: u128) -> i32 {
    128 - m.leading_zeros() as i32
}

/// Discards the low `shift` bits of `sig` with rounding. Returns (kept, inexact, incremented).
fn shift_round(sig: u128, shift: i32, sign: bool, rc: Rc) -> (u128, bool, bool) {
    let (m, rest_cmp_half, rest_nonzero) = if shift >= 129 {
        (0, core::cmp::Ordering::Less, sig != 0)
    } else if shift <= 0 {
        (sig, core::cmp::Ordering::Less, false)
    } else {
        let m = if shift == 128 { 0 } else { sig >> shift };
        let rest = if shift == 128 { sig } else { sig & ((1u128 << shift) - 1) };
        (m, rest.cmp(&(1u128 << (shift - 1))), rest != 0)
    };
    let inc = rest_nonzero
        && match rc {
            Rc::Nearest => rest_cmp_half.is_gt() || (rest_cmp_half.is_eq() && m & 1 != 0),
            Rc::Down => sign,
            Rc::Up => !sign,
            Rc::Zero => false,
        };
    (m + inc as u128, rest_nonzero, inc)
}

/// Rounds the exact nonzero value `sig * 2^(e - 127)` (`sig` with bit 127 set; its lowest bit
/// may be a sticky bit) to `env.fmt`. Returns the rounded value and the exception flags
/// (with C1 for "rounded up").
pub fn round(sign: bool, e: i32, sig: u128, env: &Env) -> (Rounded, u16) {
    let fmt = env.fmt;
    let p = fmt.prec as i32;
    let u_unmasked = env.masks & exc::UE == 0;
    let o_unmasked = env.masks & exc::OE == 0;
    let tiny_before = e < fmt.emin;
    let round_at = |q: i32| {
        let (m, inexact, inc) = shift_round(sig, q - e + 127, sign, env.rc);
        let (m, q) = if bitlen(m) > p { (m >> 1, q + 1) } else { (m, q) };
        (m, q, inexact, inc)
    };
    let q_unbounded = e - (p - 1);
    let tiny = tiny_before && {
        if TININESS_AFTER_ROUNDING {
            let (m, q, _, _) = round_at(q_unbounded);
            q + bitlen(m) - 1 < fmt.emin
        } else {
            true
        }
    };
    // An unmasked underflow delivers the result with the exponent wrapped by 24576, unless
    // even that stays tiny: then a zero (as the host x87 does; only FSCALE gets there).
    let wrap_fits = e + WRAP_BIAS >= fmt.emin;
    if tiny && u_unmasked && !wrap_fits {
        return (Rounded::Finite { sign, m: 0, q: 0 }, exc::UE | exc::PE);
    }
    let wrap_u = u_unmasked && wrap_fits;
    let q = if tiny_before && !wrap_u { fmt.emin - (p - 1) } else { q_unbounded };
    let (m, mut q, inexact, inc) = round_at(q);
    let mut flags = if inexact { exc::PE } else { 0 };
    if inc {
        flags |= exc::C1;
    }
    if m != 0 && q + bitlen(m) - 1 > fmt.emax {
        if o_unmasked {
            if q + bitlen(m) - 1 - WRAP_BIAS > fmt.emax {
                // Still too large after wrapping (only FSCALE gets there): an infinity.
                return (Rounded::Inf { sign }, exc::OE | exc::PE | exc::C1);
            }
            q -= WRAP_BIAS;
            return (Rounded::Finite { sign, m: m as u64, q }, flags | exc::OE);
        }
        let to_inf = match env.rc {
            Rc::Nearest => true,
            Rc::Down => sign,
            Rc::Up => !sign,
            Rc::Zero => false,
        };
        let flags = exc::OE | exc::PE | if to_inf { exc::C1 } else { 0 };
        if to_inf {
            return (Rounded::Inf { sign }, flags);
        }
        let max = u64::MAX >> (64 - p);
        return (Rounded::Finite { sign, m: max, q: fmt.emax - (p - 1) }, flags);
    }
    if tiny {
        if wrap_u {
            q += WRAP_BIAS;
            flags |= exc::UE;
        } else if inexact {
            flags |= exc::UE;
        }
    }
    (Rounded::Finite { sign, m: m as u64, q }, flags)
}

impl Rounded {
    pub fn to_f80(self) -> F80 {
        match self {
            Rounded::Inf { sign } => F80::inf(sign),
            Rounded::Finite { sign, m, q } => {
                if m == 0 {
                    return F80::zero(sign);
                }
                let bl = bitlen(m as u128);
                let e = q + bl - 1;
                if e > BIAS {
                    // Only reachable when a biased result is still out of range.
                    F80::inf(sign)
                } else if e >= 1 - BIAS {
                    F80 { sig: m << (64 - bl), se: (e + BIAS) as u16 | (sign as u16) << 15 }
                } else {
                    let sh = q + BIAS + 62; // position of bit 0 in the denormal significand
                    let sig = if sh >= 0 {
                        m.checked_shl(sh as u32).unwrap_or(0)
                    } else {
                        m.checked_shr((-sh) as u32).unwrap_or(0)
                    };
                    F80 { sig, se: (sign as u16) << 15 }
                }
            }
        }
    }

    /// Packs into an IEEE binary format with `frac_bits` fraction bits and exponent bias `bias`.
    fn to_ieee(self, frac_bits: u32, bias: i32) -> u64 {
        let sign_bit = 1u64 << (frac_bits + (if frac_bits == 52 { 11 } else { 8 }));
        let exp_all = if frac_bits == 52 { 0x7ffu64 } else { 0xff };
        match self {
            Rounded::Inf { sign } => ((sign as u64) * sign_bit) | (exp_all << frac_bits),
            Rounded::Finite { sign, m, q } => {
                let s = (sign as u64) * sign_bit;
                if m == 0 {
                    return s;
                }
                let bl = bitlen(m as u128);
                let e = q + bl - 1;
                if e >= 1 - bias {
                    let frac = (m << (64 - bl) << 1) >> (64 - frac_bits);
                    // Out-of-range exponents only occur for results that are never stored
                    // (unmasked overflow/underflow on a memory destination).
                    let biased = ((e + bias) as u64) & ((1 << (63 - frac_bits)) - 1);
                    s | biased << frac_bits | frac
                } else {
                    let sh = q + bias - 1 + frac_bits as i32;
                    s | if sh >= 0 {
                        m.checked_shl(sh as u32).unwrap_or(0)
                    } else {
                        m.checked_shr(sh.unsigned_abs()).unwrap_or(0)
                    }
                }
            }
        }
    }
    pub fn to_f64_bits(self) -> u64 {
        self.to_ieee(52, 1023)
    }
    pub fn to_f32_bits(self) -> u32 {
        self.to_ieee(23, 127) as u32
    }
}

/// Rounds to a register value (`env.fmt` must be a register format).
pub fn round_f80(sign: bool, e: i32, sig: u128, env: &Env) -> (F80, u16) {
    let (r, f) = round(sign, e, sig, env);
    (r.to_f80(), f)
}

/// Normalizes the exact nonzero value `sig * 2^e0` (`e0`: exponent of bit 0) to the form
/// `round` takes: (exponent of the leading bit, `sig` shifted so that bit 127 is set).
pub fn norm128(e0: i32, sig: u128) -> (i32, u128) {
    let lz = sig.leading_zeros() as i32;
    (e0 + 127 - lz, sig << lz)
}

/// x87 NaN selection for two operands at least one of which is a NaN (SDM Vol. 1, Table 4-7):
/// a QNaN over an SNaN, else the NaN with the larger significand, quieted; IE if either is
/// signaling.
pub fn propagate_nan(a: F80, b: F80) -> (F80, u16) {
    let (ca, cb) = (a.class(), b.class());
    let ie = if ca == Class::SNaN || cb == Class::SNaN { exc::IE } else { 0 };
    let a_nan = matches!(ca, Class::QNaN | Class::SNaN);
    let b_nan = matches!(cb, Class::QNaN | Class::SNaN);
    let pick = match (a_nan, b_nan) {
        (true, false) => a,
        (false, true) => b,
        // A QNaN beats an SNaN; otherwise the larger significand wins.
        _ if ca == Class::QNaN && cb == Class::SNaN => a,
        _ if ca == Class::SNaN && cb == Class::QNaN => b,
        _ => {
            let (sa, sb) = (a.sig | QUIET_BIT, b.sig | QUIET_BIT);
            if sa > sb || (sa == sb && !a.sign()) {
                a
            } else {
                b
            }
        }
    };
    (pick.quieted(), ie)
}

/// A 64-bit integer as an exact extended real.
pub fn from_i64(v: i64) -> F80 {
    if v == 0 {
        return F80::ZERO;
    }
    let mag = v.unsigned_abs();
    let lz = mag.leading_zeros();
    F80 { sig: mag << lz, se: (BIAS + 63 - lz as i32) as u16 | ((v < 0) as u16) << 15 }
}

/// Widens an IEEE single or double to extended (exact). Returns the value and IE for
/// signaling NaNs or DE for denormal sources.
pub fn from_ieee(bits: u64, frac_bits: u32, exp_bits: u32) -> (F80, u16) {
    let bias = (1i32 << (exp_bits - 1)) - 1;
    let sign = bits >> (frac_bits + exp_bits) & 1 != 0;
    let exp = ((bits >> frac_bits) & ((1 << exp_bits) - 1)) as i32;
    let frac = bits & ((1u64 << frac_bits) - 1);
    let s = (sign as u16) << 15;
    if exp == (1 << exp_bits) - 1 {
        let sig = INT_BIT | frac << (63 - frac_bits);
        if frac == 0 {
            return (F80::inf(sign), 0);
        }
        // Signaling NaNs stay signaling: arithmetic must see them as such (a QNaN operand
        // beats an SNaN); FLD quiets them.
        let snan = sig & QUIET_BIT == 0;
        return (F80 { sig, se: 0x7fff | s }, if snan { exc::IE } else { 0 });
    }
    if exp == 0 {
        if frac == 0 {
            return (F80::zero(sign), 0);
        }
        let lz = frac.leading_zeros() as i32;
        // frac * 2^(1 - bias - frac_bits); leading bit at 63 - lz.
        let e = (63 - lz) + 1 - bias - frac_bits as i32;
        return (F80 { sig: frac << lz, se: (e + BIAS) as u16 | s }, exc::DE);
    }
    (F80 { sig: INT_BIT | frac << (63 - frac_bits), se: (exp - bias + BIAS) as u16 | s }, 0)
}

/// Narrows to an IEEE single (`frac_bits` 23) or double (52) under `env` (its format must be
/// the matching one). Returns the bits and flags; the caller suppresses the store when an
/// unmasked exception occurred.
pub fn to_ieee(x: F80, env: &Env, frac_bits: u32) -> (u64, u16) {
    let (exp_bits, is64) = if frac_bits == 52 { (11, true) } else { (8, false) };
    let sign_bit = 1u64 << (frac_bits + exp_bits);
    let exp_all = ((1u64 << exp_bits) - 1) << frac_bits;
    let s = if x.sign() { sign_bit } else { 0 };
    match x.class() {
        Class::Zero => (s, 0),
        Class::Inf => (s | exp_all, 0),
        Class::QNaN | Class::SNaN => {
            let ie = if x.class() == Class::SNaN { exc::IE } else { 0 };
            let frac = ((x.sig | QUIET_BIT) << 1) >> (64 - frac_bits);
            (s | exp_all | frac, ie)
        }
        Class::Unsupported => {
            // The default NaN of the destination format, negative.
            (sign_bit | exp_all | 1u64 << (frac_bits - 1), exc::IE)
        }
        Class::Normal | Class::Denormal => {
            // Stores raise no denormal-operand exception.
            let (sign, e, sig) = x.unpack();
            let (r, f) = round(sign, e, (sig as u128) << 64, env);
            let bits = if is64 { r.to_f64_bits() } else { r.to_f32_bits() as u64 };
            (bits, f)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(F80::INDEFINITE.class(), Class::QNaN);
        assert_eq!(F80 { sig: 0x8000_0000_0000_0001, se: 0x7fff }.class(), Class::SNaN);
        assert_eq!(F80 { sig: 0x4000_0000_0000_0000, se: 0x3fff }.class(), Class::Unsupported);
        assert_eq!(F80 { sig: 0x8000_0000_0000_0000, se: 0 }.class(), Class::Denormal);
        assert_eq!(F80::ONE.class(), Class::Normal);
    }

    #[test]
    fn int_and_ieee_conversions() {
        assert_eq!(from_i64(1), F80::ONE);
        assert_eq!(from_i64(-2), F80 { sig: INT_BIT, se: 0xc000 });
        let (x, f) = from_ieee(1.5f64.to_bits(), 52, 11);
        assert_eq!((x, f), (F80 { sig: 0xc000_0000_0000_0000, se: 0x3fff }, 0));
        let env = Env::from_fcw(0x37f).with_fmt(FMT_F64);
        assert_eq!(to_ieee(x, &env, 52), (1.5f64.to_bits(), 0));
        let (d, f) = from_ieee(1, 23, 8);
        assert_eq!(f, exc::DE);
        let env32 = Env::from_fcw(0x37f).with_fmt(FMT_F32);
        assert_eq!(to_ieee(d, &env32, 23), (1, 0));
    }
}
