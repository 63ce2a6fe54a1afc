//! IEEE 754 binary32/binary64 arithmetic with the x86 SSE rules: MXCSR rounding control,
//! flush-to-zero, denormals-are-zero, the six exception flags, tininess detected after
//! rounding, and SSE's NaN propagation (the first source's NaN wins, SNaNs are quietened,
//! invalid operations produce the "QNaN floating-point indefinite").
//!
//! Why our own code rather than a crate: the host's SSE unit (which Rust's f32/f64 use) runs
//! with the host's MXCSR and exposes no flags, `rustc_apfloat` carries no x86 DAZ/FTZ/denormal-
//! operand semantics, and `softfloat-wrapper` builds C code. The operations SSE needs are few
//! (add, mul, div, sqrt, conversions, round-to-integral), and each is an exact integer
//! computation followed by one rounding routine (`round_pack`), checked bit-for-bit against
//! the host CPU by cpu/tests/sse.rs.
//!
//! Values are passed as raw bits in a `u64` (binary32 in the low 32 bits); `Fmt` picks the
//! format. An `Env` carries the MXCSR controls and accumulates the exception flags.

use core::cmp::Ordering;

/// MXCSR bits (SDM Vol. 1, 10.2.3).
pub mod mx {
    pub const IE: u32 = 1 << 0;
    pub const DE: u32 = 1 << 1;
    pub const ZE: u32 = 1 << 2;
    pub const OE: u32 = 1 << 3;
    pub const UE: u32 = 1 << 4;
    pub const PE: u32 = 1 << 5;
    pub const DAZ: u32 = 1 << 6;
    /// The exception masks sit 7 bits above their flags.
    pub const MASK_SHIFT: u32 = 7;
    pub const UM: u32 = UE << MASK_SHIFT;
    pub const RC_SHIFT: u32 = 13;
    pub const FZ: u32 = 1 << 15;
    pub const FLAGS: u32 = IE | DE | ZE | OE | UE | PE;
    /// Exceptions detected before computing (SDM Vol. 1, 11.5.2): if one of them is unmasked
    /// no result is computed, so no post-computation flag is raised.
    pub const PRE: u32 = IE | DE | ZE;
    /// MXCSR_MASK as FXSAVE reports it: every defined bit, DAZ included. LDMXCSR with any
    /// other bit set raises #GP(0).
    pub const WRITABLE: u32 = 0xffff;
}

mod fused;
mod half;

/// MXCSR.RC and the ROUNDxx immediate's rounding field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    Nearest = 0,
    Down = 1,
    Up = 2,
    Zero = 3,
}

impl Round {
    pub fn from_bits(b: u32) -> Round {
        match b & 3 {
            0 => Round::Nearest,
            1 => Round::Down,
            2 => Round::Up,
            _ => Round::Zero,
        }
    }
}

/// The controls of one SIMD floating-point operation and the flags it raised.
#[derive(Clone, Copy, Debug)]
pub struct Env {
    pub rc: Round,
    /// Flush tiny results to zero (only while underflow is masked).
    pub ftz: bool,
    /// Denormal inputs read as zeros of the same sign, without the denormal flag.
    pub daz: bool,
    /// Underflow masked: then underflow is signalled only for inexact tiny results.
    pub um: bool,
    pub flags: u32,
}

impl Env {
    pub fn new(mxcsr: u32) -> Env {
        Env {
            rc: Round::from_bits(mxcsr >> mx::RC_SHIFT),
            ftz: mxcsr & mx::FZ != 0,
            daz: mxcsr & mx::DAZ != 0,
            um: mxcsr & mx::UM != 0,
            flags: 0,
        }
    }
}

/// A binary floating-point format.
pub trait Fmt {
    const FRAC: u32;
    const EXP: u32;
    /// Width of the format in bits (a lane of a packed register).
    const BITS: u32 = 1 + Self::FRAC + Self::EXP;
    const SIGN: u64 = 1 << (Self::FRAC + Self::EXP);
    const EXP_MAX: u64 = (1 << Self::EXP) - 1;
    const FRAC_MASK: u64 = (1 << Self::FRAC) - 1;
    const QUIET: u64 = 1 << (Self::FRAC - 1);
    const INF: u64 = Self::EXP_MAX << Self::FRAC;
    /// The QNaN floating-point indefinite: negative, quiet, zero payload.
    const INDEFINITE: u64 = Self::SIGN | Self::INF | Self::QUIET;
    const BIAS: i32 = (1 << (Self::EXP - 1)) - 1;
    /// Largest finite magnitude.
    const MAX: u64 = Self::INF - 1;
}

pub struct F32;
pub struct F64;
impl Fmt for F32 {
    const FRAC: u32 = 23;
    const EXP: u32 = 8;
}
impl Fmt for F64 {
    const FRAC: u32 = 52;
    const EXP: u32 = 11;
}

#[inline(always)]
pub fn is_nan<F: Fmt>(x: u64) -> bool {
    x & !F::SIGN > F::INF
}
#[inline(always)]
pub fn is_snan<F: Fmt>(x: u64) -> bool {
    is_nan::<F>(x) && x & F::QUIET == 0
}
#[inline(always)]
fn is_inf<F: Fmt>(x: u64) -> bool {
    x & !F::SIGN == F::INF
}
#[inline(always)]
fn is_zero<F: Fmt>(x: u64) -> bool {
    x & !F::SIGN == 0
}
#[inline(always)]
fn is_denormal<F: Fmt>(x: u64) -> bool {
    x & F::INF == 0 && x & F::FRAC_MASK != 0
}
#[inline(always)]
fn sign_of<F: Fmt>(x: u64) -> bool {
    x & F::SIGN != 0
}

impl Env {
    /// DAZ: a denormal input reads as a zero of its sign.
    #[inline(always)]
    fn input<F: Fmt>(&self, x: u64) -> u64 {
        if self.daz && is_denormal::<F>(x) {
            x & F::SIGN
        } else {
            x
        }
    }

    #[inline(always)]
    fn check_denormal<F: Fmt>(&mut self, a: u64, b: u64) {
        if is_denormal::<F>(a) || is_denormal::<F>(b) {
            self.flags |= mx::DE;
        }
    }

    /// A binary operation with a NaN operand: the first NaN (quietened) wins; an SNaN
    /// operand signals invalid (SDM Vol. 1, Table 4-7).
    #[inline]
    fn propagate<F: Fmt>(&mut self, a: u64, b: u64) -> u64 {
        if is_snan::<F>(a) || is_snan::<F>(b) {
            self.flags |= mx::IE;
        }
        if is_nan::<F>(a) {
            a | F::QUIET
        } else {
            b | F::QUIET
        }
    }

    fn invalid<F: Fmt>(&mut self) -> u64 {
        self.flags |= mx::IE;
        F::INDEFINITE
    }
}

/// Finite nonzero `x` → (exp, sig) with value = sig × 2^(exp−62) and sig in [2^62, 2^63).
#[inline]
fn unpack<F: Fmt>(x: u64) -> (i32, u64) {
    let e = ((x >> F::FRAC) & F::EXP_MAX) as i32;
    let f = x & F::FRAC_MASK;
    if e == 0 {
        let sig = f << (62 - F::FRAC);
        let lz = sig.leading_zeros() as i32 - 1;
        (1 - F::BIAS - lz, sig << lz)
    } else {
        (e - F::BIAS, (f | (1 << F::FRAC)) << (62 - F::FRAC))
    }
}

/// Shifts right, OR-ing every bit shifted out into bit 0 (the sticky bit).
#[inline(always)]
fn shift_right_jam(x: u64, n: u32) -> u64 {
    if n == 0 {
        x
    } else if n < 64 {
        (x >> n) | ((x << (64 - n)) != 0) as u64
    } else {
        (x != 0) as u64
    }
}

#[inline(always)]
fn jam128(p: u128, n: u32) -> u64 {
    ((p >> n) as u64) | ((p & ((1u128 << n) - 1)) != 0) as u64
}

/// Drops the low `shift` (1..=63) bits of `sig`, rounding per `rc`; returns the rounded
/// quotient and whether any dropped bit was set.
#[inline(always)]
fn round_shift(sig: u64, shift: u32, rc: Round, negative: bool) -> (u64, bool) {
    let rem = sig & ((1u64 << shift) - 1);
    let q = sig >> shift;
    let half = 1u64 << (shift - 1);
    let up = match rc {
        Round::Nearest => rem > half || (rem == half && q & 1 != 0),
        Round::Down => negative && rem != 0,
        Round::Up => !negative && rem != 0,
        Round::Zero => false,
    };
    (q + up as u64, rem != 0)
}

/// Rounding of a nonzero magnitude below one half to an integer: 0 or 1.
#[inline(always)]
fn round_tiny(rc: Round, negative: bool) -> u64 {
    match rc {
        Round::Down => negative as u64,
        Round::Up => !negative as u64,
        _ => 0,
    }
}

impl Env {
    /// The masked response to overflow: infinity or the largest finite value, by direction.
    fn overflow<F: Fmt>(&mut self, negative: bool) -> u64 {
        self.flags |= mx::OE | mx::PE;
        let to_inf = match self.rc {
            Round::Nearest => true,
            Round::Zero => false,
            Round::Down => negative,
            Round::Up => !negative,
        };
        let s = if negative { F::SIGN } else { 0 };
        s | if to_inf { F::INF } else { F::MAX }
    }

    /// Rounds sig × 2^(exp−62) (sig's leading bit at 62, lower bits sticky) to format `F`,
    /// with overflow, underflow (tininess after rounding, as x86 detects it), FTZ and the
    /// precision flag.
    fn round_pack<F: Fmt>(&mut self, negative: bool, exp: i32, sig: u64) -> u64 {
        let s = if negative { F::SIGN } else { 0 };
        let shift = 62 - F::FRAC;
        let e = exp + F::BIAS;
        if e >= 1 {
            let (mut q, inexact) = round_shift(sig, shift, self.rc, negative);
            let mut e = e as u64;
            if q >> (F::FRAC + 1) != 0 {
                q >>= 1;
                e += 1;
            }
            if e >= F::EXP_MAX {
                return self.overflow::<F>(negative);
            }
            if inexact {
                self.flags |= mx::PE;
            }
            return s | (e << F::FRAC) | (q & F::FRAC_MASK);
        }
        // Below the normal range before rounding; still tiny after rounding to the format's
        // precision with an unbounded exponent unless it rounds up to the smallest normal.
        let tiny = e < 0 || round_shift(sig, shift, self.rc, negative).0 >> (F::FRAC + 1) == 0;
        if tiny && self.ftz && self.um {
            self.flags |= mx::UE | mx::PE;
            return s;
        }
        let (q, inexact) = round_shift(shift_right_jam(sig, (1 - e) as u32), shift, self.rc, negative);
        if inexact {
            self.flags |= mx::PE;
        }
        if tiny && (inexact || !self.um) {
            self.flags |= mx::UE;
        }
        // A carry out of the fraction lands in the exponent field: the smallest normal.
        s | q
    }

    /// Rounds a finite nonzero input through `round_pack` (for results equal to an input,
    /// which FTZ may still flush).
    fn repack<F: Fmt>(&mut self, x: u64) -> u64 {
        let (e, m) = unpack::<F>(x);
        self.round_pack::<F>(sign_of::<F>(x), e, m)
    }

    pub fn add<F: Fmt>(&mut self, a: u64, b: u64) -> u64 {
        self.add_signed::<F>(a, b, false)
    }

    pub fn sub<F: Fmt>(&mut self, a: u64, b: u64) -> u64 {
        self.add_signed::<F>(a, b, true)
    }

    fn add_signed<F: Fmt>(&mut self, a: u64, b: u64, subtract: bool) -> u64 {
        if is_nan::<F>(a) || is_nan::<F>(b) {
            return self.propagate::<F>(a, b);
        }
        let a = self.input::<F>(a);
        let b = self.input::<F>(b) ^ if subtract { F::SIGN } else { 0 };
        self.check_denormal::<F>(a, b);
        let (sa, sb) = (sign_of::<F>(a), sign_of::<F>(b));
        if is_inf::<F>(a) {
            if is_inf::<F>(b) && sa != sb {
                return self.invalid::<F>();
            }
            return a;
        }
        if is_inf::<F>(b) {
            return b;
        }
        match (is_zero::<F>(a), is_zero::<F>(b)) {
            (true, true) => {
                // x + (−x) is +0, except −0 when rounding down.
                return if sa == sb || self.rc == Round::Down { a | b } else { 0 };
            }
            (true, false) => return self.repack::<F>(b),
            (false, true) => return self.repack::<F>(a),
            _ => {}
        }
        let (mut ea, mut ma, mut neg) = {
            let (e, m) = unpack::<F>(a);
            (e, m, sa)
        };
        let (mut eb, mut mb) = unpack::<F>(b);
        let mut nb = sb;
        if eb > ea || (eb == ea && mb > ma) {
            core::mem::swap(&mut ea, &mut eb);
            core::mem::swap(&mut ma, &mut mb);
            core::mem::swap(&mut neg, &mut nb);
        }
        let mb = shift_right_jam(mb, (ea - eb) as u32);
        if neg == nb {
            let mut m = ma + mb;
            if m >> 63 != 0 {
                m = (m >> 1) | (m & 1);
                ea += 1;
            }
            self.round_pack::<F>(neg, ea, m)
        } else {
            let m = ma - mb;
            if m == 0 {
                return if self.rc == Round::Down { F::SIGN } else { 0 };
            }
            let lz = m.leading_zeros() as i32 - 1;
            self.round_pack::<F>(neg, ea - lz, m << lz)
        }
    }

    pub fn mul<F: Fmt>(&mut self, a: u64, b: u64) -> u64 {
        if is_nan::<F>(a) || is_nan::<F>(b) {
            return self.propagate::<F>(a, b);
        }
        let a = self.input::<F>(a);
        let b = self.input::<F>(b);
        let neg = sign_of::<F>(a ^ b);
        let s = if neg { F::SIGN } else { 0 };
        let (ia, ib, za, zb) = (is_inf::<F>(a), is_inf::<F>(b), is_zero::<F>(a), is_zero::<F>(b));
        if (ia && zb) || (za && ib) {
            return self.invalid::<F>();
        }
        self.check_denormal::<F>(a, b);
        if ia || ib {
            return s | F::INF;
        }
        if za || zb {
            return s;
        }
        let (ea, ma) = unpack::<F>(a);
        let (eb, mb) = unpack::<F>(b);
        let p = ma as u128 * mb as u128; // in [2^124, 2^126)
        if p >> 125 != 0 {
            self.round_pack::<F>(neg, ea + eb + 1, jam128(p, 63))
        } else {
            self.round_pack::<F>(neg, ea + eb, jam128(p, 62))
        }
    }

    pub fn div<F: Fmt>(&mut self, a: u64, b: u64) -> u64 {
        if is_nan::<F>(a) || is_nan::<F>(b) {
            return self.propagate::<F>(a, b);
        }
        let a = self.input::<F>(a);
        let b = self.input::<F>(b);
        let neg = sign_of::<F>(a ^ b);
        let s = if neg { F::SIGN } else { 0 };
        let (ia, ib, za, zb) = (is_inf::<F>(a), is_inf::<F>(b), is_zero::<F>(a), is_zero::<F>(b));
        if (ia && ib) || (za && zb) {
            return self.invalid::<F>();
        }
        if zb && !ia {
            self.flags |= mx::ZE;
            return s | F::INF;
        }
        self.check_denormal::<F>(a, b);
        if ia {
            return s | F::INF;
        }
        if ib || za {
            return s;
        }
        let (ea, ma) = unpack::<F>(a);
        let (eb, mb) = unpack::<F>(b);
        let n = (ma as u128) << 64;
        let q = n / mb as u128; // in (2^63, 2^65)
        let sticky = !n.is_multiple_of(mb as u128) as u64;
        if q >> 64 != 0 {
            self.round_pack::<F>(neg, ea - eb, jam128(q, 2) | sticky)
        } else {
            self.round_pack::<F>(neg, ea - eb - 1, jam128(q, 1) | sticky)
        }
    }

    pub fn sqrt<F: Fmt>(&mut self, a: u64) -> u64 {
        if is_nan::<F>(a) {
            return self.propagate::<F>(a, a);
        }
        let a = self.input::<F>(a);
        if is_zero::<F>(a) {
            return a;
        }
        if sign_of::<F>(a) {
            return self.invalid::<F>();
        }
        if is_inf::<F>(a) {
            return a;
        }
        self.check_denormal::<F>(a, 0);
        let (e, m) = unpack::<F>(a);
        // value = m × 2^(e−62) = n × 2^(e−62−k) with the exponent made even.
        let k = if e & 1 != 0 { 63 } else { 64 };
        let n = (m as u128) << k;
        let q = isqrt(n);
        let sticky = (q * q != n) as u64;
        let half = (e - 62 - k) / 2;
        let q = q as u64; // in [2^62.5, 2^63.5)
        if q >> 63 != 0 {
            self.round_pack::<F>(false, 63 + half, (q >> 1) | (q & 1) | sticky)
        } else {
            self.round_pack::<F>(false, 62 + half, q | sticky)
        }
    }

    /// Compares two values; `None` when unordered. NaNs signal invalid if SNaN, or any NaN
    /// when `signaling` (the LT/LE/NLT/NLE predicates and COMISS).
    pub fn compare<F: Fmt>(&mut self, a: u64, b: u64, signaling: bool) -> Option<Ordering> {
        if is_nan::<F>(a) || is_nan::<F>(b) {
            if signaling || is_snan::<F>(a) || is_snan::<F>(b) {
                self.flags |= mx::IE;
            }
            return None;
        }
        let a = self.input::<F>(a);
        let b = self.input::<F>(b);
        self.check_denormal::<F>(a, b);
        Some(order::<F>(a, b))
    }

    /// MINxx/MAXxx: the second operand unless the first is strictly smaller (larger); NaNs
    /// (either, signalling invalid) and equal values (±0) give the second operand, an SNaN
    /// unquietened.
    pub fn min_max<F: Fmt>(&mut self, a: u64, b: u64, max: bool) -> u64 {
        // DAZ applies even to the operand returned beside a NaN.
        let a = self.input::<F>(a);
        let b = self.input::<F>(b);
        if is_nan::<F>(a) || is_nan::<F>(b) {
            self.flags |= mx::IE;
            return b;
        }
        self.check_denormal::<F>(a, b);
        let want = if max { Ordering::Greater } else { Ordering::Less };
        if order::<F>(a, b) == want {
            a
        } else {
            b
        }
    }

    pub fn f32_to_f64(&mut self, a: u64) -> u64 {
        let s = if sign_of::<F32>(a) { F64::SIGN } else { 0 };
        if is_nan::<F32>(a) {
            if is_snan::<F32>(a) {
                self.flags |= mx::IE;
            }
            return s | F64::INF | F64::QUIET | ((a & F32::FRAC_MASK) << (F64::FRAC - F32::FRAC));
        }
        let a = self.input::<F32>(a);
        self.check_denormal::<F32>(a, 0);
        if is_inf::<F32>(a) {
            return s | F64::INF;
        }
        if is_zero::<F32>(a) {
            return s;
        }
        let (e, m) = unpack::<F32>(a);
        self.round_pack::<F64>(s != 0, e, m)
    }

    pub fn f64_to_f32(&mut self, a: u64) -> u64 {
        let s = if sign_of::<F64>(a) { F32::SIGN } else { 0 };
        if is_nan::<F64>(a) {
            if is_snan::<F64>(a) {
                self.flags |= mx::IE;
            }
            return s | F32::INF | F32::QUIET | ((a & F64::FRAC_MASK) >> (F64::FRAC - F32::FRAC));
        }
        let a = self.input::<F64>(a);
        self.check_denormal::<F64>(a, 0);
        if is_inf::<F64>(a) {
            return s | F32::INF;
        }
        if is_zero::<F64>(a) {
            return s;
        }
        let (e, m) = unpack::<F64>(a);
        self.round_pack::<F32>(s != 0, e, m)
    }

    /// Signed integer → float, rounded per MXCSR.
    pub fn int_to_float<F: Fmt>(&mut self, v: i64) -> u64 {
        if v == 0 {
            return 0;
        }
        let neg = v < 0;
        let mag = v.unsigned_abs();
        let lz = mag.leading_zeros();
        if lz == 0 {
            // Only i64::MIN: exactly −2^63.
            return self.round_pack::<F>(neg, 63, mag >> 1);
        }
        self.round_pack::<F>(neg, 63 - lz as i32, mag << (lz - 1))
    }

    /// Float → signed integer of `bits` (32 or 64) bits, rounded per `rc`. NaN, infinity and
    /// out-of-range values signal invalid and give the integer indefinite (only the sign bit).
    pub fn float_to_int<F: Fmt>(&mut self, a: u64, bits: u32, rc: Round) -> u64 {
        let indefinite = 1u64 << (bits - 1);
        if is_nan::<F>(a) || is_inf::<F>(a) {
            self.flags |= mx::IE;
            return indefinite;
        }
        let a = self.input::<F>(a);
        if is_zero::<F>(a) {
            return 0;
        }
        let neg = sign_of::<F>(a);
        let (e, m) = unpack::<F>(a);
        let (q, inexact) = match e {
            64.. => {
                self.flags |= mx::IE;
                return indefinite;
            }
            63 => (m << 1, false),
            62 => (m, false),
            -1..=61 => round_shift(m, (62 - e) as u32, rc, neg),
            _ => (round_tiny(rc, neg), true),
        };
        let limit = if neg { indefinite } else { indefinite - 1 };
        if q > limit {
            self.flags |= mx::IE;
            return indefinite;
        }
        if inexact {
            self.flags |= mx::PE;
        }
        let mask = if bits == 64 { !0 } else { (1u64 << bits) - 1 };
        (if neg { q.wrapping_neg() } else { q }) & mask
    }

    /// ROUNDxx: to an integral value in the same format. `quiet` suppresses the precision
    /// flag (imm8 bit 3). Denormal operands do not signal.
    pub fn round_int<F: Fmt>(&mut self, a: u64, rc: Round, quiet: bool) -> u64 {
        if is_nan::<F>(a) {
            return self.propagate::<F>(a, a);
        }
        let a = self.input::<F>(a);
        if is_inf::<F>(a) || is_zero::<F>(a) {
            return a;
        }
        let (e, m) = unpack::<F>(a);
        if e >= F::FRAC as i32 {
            return a;
        }
        let neg = sign_of::<F>(a);
        let (q, inexact) = if e >= -1 { round_shift(m, (62 - e) as u32, rc, neg) } else { (round_tiny(rc, neg), true) };
        if inexact && !quiet {
            self.flags |= mx::PE;
        }
        let s = if neg { F::SIGN } else { 0 };
        if q == 0 {
            return s;
        }
        // q ≤ 2^FRAC: exact in the format.
        let lz = q.leading_zeros();
        let e = (63 - lz) as u64;
        s | ((e + F::BIAS as u64) << F::FRAC) | ((q << (F::FRAC - e as u32)) & F::FRAC_MASK)
    }
}

/// Numeric order of two non-NaN values (±0 equal).
#[inline]
fn order<F: Fmt>(a: u64, b: u64) -> Ordering {
    let key = |x: u64| {
        let mag = (x & !F::SIGN) as i64;
        if sign_of::<F>(x) {
            -mag
        } else {
            mag
        }
    };
    key(a).cmp(&key(b))
}

/// floor(sqrt(n)) for n < 2^127.
fn isqrt(n: u128) -> u128 {
    if n == 0 {
        return 0;
    }
    // A float estimate (relative error ~2^-52, so within a few thousand of the root at
    // 2^63) pushed above the root, then Newton's iteration, which descends monotonically.
    let mut x = (n as f64).sqrt() as u128 + (1 << 14);
    loop {
        let y = (x + n / x) >> 1;
        if y >= x {
            break;
        }
        x = y;
    }
    while x * x > n {
        x -= 1;
    }
    while (x + 1) * (x + 1) <= n {
        x += 1;
    }
    x
}

/// RCPSS/RCPPS: 1/x within the documented relative error of 1.5 × 2^-12. The hardware's
/// table is implementation-specific; this returns the correctly rounded reciprocal, which
/// is inside that bound. No flags; denormal inputs act as zeros, tiny results flush to zero.
pub fn rcp_f32(a: u32) -> u32 {
    let x = a as u64;
    if is_nan::<F32>(x) {
        return a | F32::QUIET as u32;
    }
    let s = a & F32::SIGN as u32;
    if x & F32::INF == 0 {
        return s | F32::INF as u32;
    }
    if is_inf::<F32>(x) {
        return s;
    }
    let r = (1.0f64 / f32::from_bits(a) as f64) as f32;
    if r.to_bits() & F32::INF as u32 == 0 {
        return s;
    }
    r.to_bits()
}

/// RSQRTSS/RSQRTPS: 1/sqrt(x), same accuracy notes as `rcp_f32`.
pub fn rsqrt_f32(a: u32) -> u32 {
    let x = a as u64;
    if is_nan::<F32>(x) {
        return a | F32::QUIET as u32;
    }
    let s = a & F32::SIGN as u32;
    if x & F32::INF == 0 {
        return s | F32::INF as u32;
    }
    if s != 0 {
        return F32::INDEFINITE as u32;
    }
    if is_inf::<F32>(x) {
        return 0;
    }
    ((1.0f64 / (f32::from_bits(a) as f64).sqrt()) as f32).to_bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::new(0x1f80)
    }

    #[test]
    fn basic_arithmetic_matches_host_round_to_nearest() {
        let vals = [1.0f64, 3.0, 0.1, -2.5, 1e300, 1e-300, 7.0e-310, 123456.789];
        for &a in &vals {
            for &b in &vals {
                let mut e = env();
                assert_eq!(e.add::<F64>(a.to_bits(), b.to_bits()), (a + b).to_bits(), "{a} + {b}");
                assert_eq!(e.sub::<F64>(a.to_bits(), b.to_bits()), (a - b).to_bits(), "{a} - {b}");
                assert_eq!(e.mul::<F64>(a.to_bits(), b.to_bits()), (a * b).to_bits(), "{a} * {b}");
                assert_eq!(e.div::<F64>(a.to_bits(), b.to_bits()), (a / b).to_bits(), "{a} / {b}");
            }
            if a > 0.0 {
                assert_eq!(env().sqrt::<F64>(a.to_bits()), a.sqrt().to_bits());
            }
        }
    }

    #[test]
    fn integer_conversions() {
        let mut e = env();
        assert_eq!(e.float_to_int::<F32>(2.5f32.to_bits() as u64, 32, Round::Nearest), 2);
        assert_eq!(e.float_to_int::<F32>((-2.5f32).to_bits() as u64, 32, Round::Zero), 0xffff_fffe);
        assert_eq!(e.float_to_int::<F64>(3e10f64.to_bits(), 32, Round::Nearest), 0x8000_0000);
        assert_eq!(e.flags & mx::IE, mx::IE);
        assert_eq!(e.float_to_int::<F64>((-9.223_372_036_854_776e18f64).to_bits(), 64, Round::Zero), 1 << 63);
        assert_eq!(e.int_to_float::<F32>(16_777_217), 16_777_216f32.to_bits() as u64);
    }

    #[test]
    fn isqrt_is_exact() {
        for n in [0u128, 1, 2, 3, 4, 15, 16, 17, (1 << 126) + 12345, u128::MAX >> 1] {
            let r = isqrt(n);
            assert!(r * r <= n && (r + 1) * (r + 1) > n, "{n}");
        }
    }
}
