//! Exact x87 arithmetic on `F80`: add, multiply, divide, square root, remainders, scaling,
//! rounding to integer, comparisons and integer/BCD conversions (SDM Vol. 1, 4.8-4.9 and the
//! instruction pages of Vol. 2). Each returns the value and its exception flags; when an
//! unmasked IE/DE/ZE is flagged the value is meaningless and callers leave the destination
//! alone.

use super::float::{exc, from_i64, norm128, propagate_nan, round, round_f80, Class, Env, Rc, F80};
use core::cmp::Ordering;

pub type Res = (F80, u16);

fn de_of(x: F80) -> u16 {
    if x.class() == Class::Denormal {
        exc::DE
    } else {
        0
    }
}

/// Invalid operands and NaNs decide a two-operand result before anything else; then the
/// denormal-operand flag, which aborts the operation when unmasked.
fn prelude2(a: F80, b: F80, env: &Env) -> Result<u16, Res> {
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return Err((F80::INDEFINITE, exc::IE));
    }
    if a.is_nan() || b.is_nan() {
        return Err(propagate_nan(a, b));
    }
    let de = de_of(a) | de_of(b);
    if de & !env.masks != 0 {
        return Err((a, de));
    }
    Ok(de)
}

fn shr_jam(x: u128, d: u32) -> u128 {
    match d {
        0 => x,
        1..=127 => x >> d | (x & ((1u128 << d) - 1) != 0) as u128,
        _ => (x != 0) as u128,
    }
}

/// a + b, or a - b with `negate_b`.
pub fn add(a: F80, b: F80, negate_b: bool, env: &Env) -> Res {
    let de = match prelude2(a, b, env) {
        Ok(de) => de,
        Err(r) => return r,
    };
    let b = if negate_b { b.neg() } else { b };
    let (ca, cb) = (a.class(), b.class());
    match (ca, cb) {
        (Class::Inf, Class::Inf) if a.sign() != b.sign() => return (F80::INDEFINITE, exc::IE | de),
        (Class::Inf, _) => return (a, de),
        (_, Class::Inf) => return (b, de),
        (Class::Zero, Class::Zero) => {
            let sign = if a.sign() == b.sign() { a.sign() } else { env.rc == Rc::Down };
            return (F80::zero(sign), de);
        }
        _ => {}
    }
    if ca == Class::Zero || cb == Class::Zero {
        let x = if ca == Class::Zero { b } else { a };
        let (s, e, m) = x.unpack();
        let (r, f) = round_f80(s, e, (m as u128) << 64, env);
        return (r, f | de);
    }
    let (mut sa, mut ea, mut ma) = a.unpack();
    let (mut sb, mut eb, mut mb) = b.unpack();
    if (eb, mb) > (ea, ma) {
        core::mem::swap(&mut sa, &mut sb);
        core::mem::swap(&mut ea, &mut eb);
        core::mem::swap(&mut ma, &mut mb);
    }
    // Leading bit of the larger operand at bit 126: one bit of headroom for a carry.
    let x = (ma as u128) << 63;
    let y = shr_jam((mb as u128) << 63, (ea - eb) as u32);
    let sum = if sa == sb { x + y } else { x - y };
    if sum == 0 {
        return (F80::zero(env.rc == Rc::Down), de);
    }
    let (e, sig) = norm128(ea - 126, sum);
    let (r, f) = round_f80(sa, e, sig, env);
    (r, f | de)
}

pub fn mul(a: F80, b: F80, env: &Env) -> Res {
    let de = match prelude2(a, b, env) {
        Ok(de) => de,
        Err(r) => return r,
    };
    let sign = a.sign() != b.sign();
    match (a.class(), b.class()) {
        (Class::Inf, Class::Zero) | (Class::Zero, Class::Inf) => return (F80::INDEFINITE, exc::IE | de),
        (Class::Inf, _) | (_, Class::Inf) => return (F80::inf(sign), de),
        (Class::Zero, _) | (_, Class::Zero) => return (F80::zero(sign), de),
        _ => {}
    }
    let (_, ea, ma) = a.unpack();
    let (_, eb, mb) = b.unpack();
    let (e, sig) = norm128(ea + eb - 126, ma as u128 * mb as u128);
    let (r, f) = round_f80(sign, e, sig, env);
    (r, f | de)
}

pub fn div(a: F80, b: F80, env: &Env) -> Res {
    // A zero divisor is decided before the denormal check (denormal / 0 raises only ZE).
    if b.class() == Class::Zero && matches!(a.class(), Class::Normal | Class::Denormal) {
        return (F80::inf(a.sign() != b.sign()), exc::ZE);
    }
    let de = match prelude2(a, b, env) {
        Ok(de) => de,
        Err(r) => return r,
    };
    let sign = a.sign() != b.sign();
    match (a.class(), b.class()) {
        (Class::Inf, Class::Inf) | (Class::Zero, Class::Zero) => return (F80::INDEFINITE, exc::IE | de),
        (Class::Inf, _) => return (F80::inf(sign), de),
        (_, Class::Inf) | (Class::Zero, _) => return (F80::zero(sign), de),
        (_, Class::Zero) => return (F80::inf(sign), exc::ZE | de),
        _ => {}
    }
    let (_, ea, ma) = a.unpack();
    let (_, eb, mb) = b.unpack();
    // 128-bit quotient in two long-division steps; the remainder becomes the sticky bit.
    let (num, e_adj) = if ma >= mb { ((ma as u128) << 63, 0) } else { ((ma as u128) << 64, -1) };
    let d = mb as u128;
    let (q1, r1) = (num / d, num % d);
    let (q2, r2) = ((r1 << 64) / d, (r1 << 64) % d);
    let q = (q1 << 64) | q2 | (r2 != 0) as u128;
    let (r, f) = round_f80(sign, ea - eb + e_adj, q, env);
    (r, f | de)
}

/// Integer square root of a 128-bit number (floor).
fn isqrt(n: u128) -> u128 {
    if n == 0 {
        return 0;
    }
    let mut x = ((n as f64).sqrt() as u128).max(1);
    for _ in 0..3 {
        x = (x + n / x) / 2;
    }
    while x.checked_mul(x).is_none_or(|sq| sq > n) {
        x -= 1;
    }
    while (x + 1).checked_mul(x + 1).is_some_and(|sq| sq <= n) {
        x += 1;
    }
    x
}

pub fn sqrt(a: F80, env: &Env) -> Res {
    match a.class() {
        Class::Unsupported => return (F80::INDEFINITE, exc::IE),
        Class::QNaN | Class::SNaN => return propagate_nan(a, a),
        Class::Zero => return (a, 0),
        _ if a.sign() => return (F80::INDEFINITE, exc::IE),
        Class::Inf => return (a, 0),
        _ => {}
    }
    let de = de_of(a);
    if de & !env.masks != 0 {
        return (a, de);
    }
    let (_, e, m) = a.unpack();
    // value = m * 2^(e-63): make the exponent of bit 0 even.
    let (big, e0) = if (e - 63) % 2 == 0 { ((m as u128) << 64, e - 127) } else { ((m as u128) << 63, e - 126) };
    let r = isqrt(big);
    let rem = big - r * r;
    // The fraction beyond r is above one half iff rem > r; it is never exactly one half.
    let sig = (r << 64) | if rem > r { 1 << 63 } else { 0 } | (rem != 0) as u128;
    let (res, f) = round_f80(false, e0 / 2 - 64 + 127, sig, env);
    (res, f | de)
}

/// Compares a with b: `None` when unordered. `quiet` (FUCOM) raises IE only for SNaNs.
pub fn compare(a: F80, b: F80, quiet: bool) -> (Option<Ordering>, u16) {
    let (ca, cb) = (a.class(), b.class());
    if ca == Class::Unsupported || cb == Class::Unsupported {
        return (None, exc::IE);
    }
    if a.is_nan() || b.is_nan() {
        let snan = ca == Class::SNaN || cb == Class::SNaN;
        return (None, if snan || !quiet { exc::IE } else { 0 });
    }
    let de = de_of(a) | de_of(b);
    let key = |x: F80| match x.class() {
        Class::Zero => (i32::MIN, 0),
        Class::Inf => (i32::MAX, 0),
        _ => {
            let (_, e, m) = x.unpack();
            (e, m)
        }
    };
    let (ka, kb) = (key(a), key(b));
    let sa = a.sign() && ca != Class::Zero;
    let sb = b.sign() && cb != Class::Zero;
    let ord = match (sa, sb) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => ka.cmp(&kb),
        (true, true) => kb.cmp(&ka),
    };
    let ord = if ca == Class::Zero && cb == Class::Zero { Ordering::Equal } else { ord };
    (Some(ord), de)
}

/// Rounds a finite magnitude `m * 2^(e-63)` to an integer under `rc`. Returns the integer
/// (`None` if it does not fit in 64 bits), inexact and rounded-up.
fn round_to_int(sign: bool, e: i32, m: u64, rc: Rc) -> (Option<u64>, bool, bool) {
    if e >= 63 {
        let sh = (e - 63) as u32;
        return (if sh == 0 { Some(m) } else { None }, false, false);
    }
    let shift = (63 - e).min(200);
    let (n, inexact, inc) = shift_round_pub(m as u128, shift, sign, rc);
    (u64::try_from(n).ok(), inexact, inc)
}

/// `shift_round` on a plain integer (discarding `shift` low bits).
fn shift_round_pub(x: u128, shift: i32, sign: bool, rc: Rc) -> (u128, bool, bool) {
    let (kept, rest, half) = if shift >= 128 {
        (0, x, if shift == 128 { 1u128 << 127 } else { u128::MAX })
    } else {
        (x >> shift, x & ((1u128 << shift) - 1), 1u128 << (shift - 1))
    };
    let above = if shift > 128 { false } else { rest > half };
    let tie = shift <= 128 && rest == half;
    let inc = rest != 0
        && match rc {
            Rc::Nearest => above || (tie && kept & 1 != 0),
            Rc::Down => sign,
            Rc::Up => !sign,
            Rc::Zero => false,
        };
    (kept + inc as u128, rest != 0, inc)
}

/// FRNDINT.
pub fn round_int(a: F80, env: &Env) -> Res {
    match a.class() {
        Class::Unsupported => return (F80::INDEFINITE, exc::IE),
        Class::QNaN | Class::SNaN => return propagate_nan(a, a),
        Class::Zero | Class::Inf => return (a, 0),
        _ => {}
    }
    let de = de_of(a);
    if de & !env.masks != 0 {
        return (a, de);
    }
    let (s, e, m) = a.unpack();
    if e >= 63 {
        return (a, de);
    }
    let (n, inexact, inc) = round_to_int(s, e, m, env.rc);
    let n = n.unwrap_or(0);
    let mut f = de | if inexact { exc::PE } else { 0 } | if inc { exc::C1 } else { 0 };
    if n == 0 {
        return (F80::zero(s), f);
    }
    let r = from_i64(n as i64).with_sign(s);
    f &= !0;
    (r, f)
}

/// Conversion to a signed integer of `bits` bits (FIST/FISTP/FISTTP with `truncate`).
/// Out of range and non-finite values give IE and the integer indefinite.
pub fn to_int(a: F80, bits: u32, truncate: bool, env: &Env) -> (i64, u16) {
    let indefinite = i64::MIN >> (64 - bits);
    match a.class() {
        Class::Zero => return (0, 0),
        Class::Normal | Class::Denormal => {}
        _ => return (indefinite, exc::IE),
    }
    let rc = if truncate { Rc::Zero } else { env.rc };
    let (s, e, m) = a.unpack();
    let (n, inexact, inc) = round_to_int(s, e, m, rc);
    let limit = 1u64 << (bits - 1);
    match n {
        Some(n) if n < limit || (s && n == limit) => {
            let v = if s { (n as i64).wrapping_neg() } else { n as i64 };
            // Integer stores raise no denormal-operand exception.
            let f = if inexact { exc::PE } else { 0 } | if inc { exc::C1 } else { 0 };
            (v, f)
        }
        _ => (indefinite, exc::IE),
    }
}

/// FSCALE: a * 2^trunc(b).
pub fn scale(a: F80, b: F80, env: &Env) -> Res {
    let de = match prelude2(a, b, env) {
        Ok(de) => de,
        Err(r) => return r,
    };
    match (a.class(), b.class()) {
        (Class::Zero, Class::Inf) if !b.sign() => return (F80::INDEFINITE, exc::IE | de),
        (Class::Inf, Class::Inf) if b.sign() => return (F80::INDEFINITE, exc::IE | de),
        (Class::Zero | Class::Inf, _) => return (a, de),
        (_, Class::Inf) => return (if b.sign() { F80::zero(a.sign()) } else { F80::inf(a.sign()) }, de),
        _ => {}
    }
    let n: i32 = match b.class() {
        Class::Zero => 0,
        _ => {
            let (s, e, m) = b.unpack();
            let mag = if e < 0 {
                0
            } else if e >= 20 {
                1 << 20
            } else {
                (m >> (63 - e)) as i32
            };
            if s {
                -mag
            } else {
                mag
            }
        }
    };
    // Scaling a denormal by a zero hands it back as it is, without the underflow exception
    // an unmasked UM would otherwise wrap it with; a nonzero scale that truncates to 0 does
    // wrap it (the host CPUs).
    if b.class() == Class::Zero && a.is_true_denormal() {
        return (a, de);
    }
    // The scaled value is exact except for range: precision control does not apply.
    let env64 = Env { fmt: super::float::fmt_reg(64), ..*env };
    let (s, e, m) = a.unpack();
    let (r, f) = round_f80(s, e + n, (m as u128) << 64, &env64);
    (r, f | de)
}

/// FXTRACT: (exponent, significand).
pub fn extract(a: F80, env: &Env) -> (F80, F80, u16) {
    match a.class() {
        Class::Unsupported => (F80::INDEFINITE, F80::INDEFINITE, exc::IE),
        Class::QNaN | Class::SNaN => {
            let (q, f) = propagate_nan(a, a);
            (q, q, f)
        }
        Class::Zero => (F80::inf(true), a, exc::ZE),
        Class::Inf => (F80::inf(false), a, 0),
        _ => {
            let de = de_of(a);
            if de & !env.masks != 0 {
                return (a, a, de);
            }
            let (s, e, m) = a.unpack();
            (from_i64(e as i64), F80 { sig: m, se: super::float::BIAS as u16 | (s as u16) << 15 }, de)
        }
    }
}

/// Result of FPREM/FPREM1: remainder, flags, low three quotient bits, incomplete (C2).
pub struct Rem {
    pub value: F80,
    pub flags: u16,
    pub quotient: u64,
    pub incomplete: bool,
}

/// FPREM (`ieee` false: truncating quotient) and FPREM1 (round-to-nearest quotient).
pub fn rem(a: F80, b: F80, ieee: bool, env: &Env) -> Rem {
    let done = |value: F80, flags: u16| Rem { value, flags, quotient: 0, incomplete: false };
    // Invalid combinations are decided before the denormal check.
    let finite = |x: F80| matches!(x.class(), Class::Normal | Class::Denormal | Class::Zero);
    if (a.class() == Class::Inf && (finite(b) || b.class() == Class::Inf)) || (b.class() == Class::Zero && finite(a)) {
        return done(F80::INDEFINITE, exc::IE);
    }
    let de = match prelude2(a, b, env) {
        Ok(de) => de,
        Err((v, f)) => return done(v, f),
    };
    match (a.class(), b.class()) {
        (Class::Inf, _) | (_, Class::Zero) => return done(F80::INDEFINITE, exc::IE | de),
        (Class::Zero, _) => return done(a, de),
        _ => {}
    }
    let (sa, ea, ma) = a.unpack();
    let (_, eb, mb) = b.unpack();
    let d = if b.class() == Class::Inf { i32::MIN } else { ea - eb };
    let env64 = Env { rc: env.rc, fmt: super::float::fmt_reg(64), masks: env.masks };
    let finish = |sign: bool, r: u128, e0: i32, q: u64, incomplete: bool| {
        let (value, f) = if r == 0 {
            (F80::zero(sign), 0)
        } else {
            let (e, sig) = norm128(e0, r);
            round_f80(sign, e, sig, &env64)
        };
        Rem { value, flags: (f & !exc::C1) | de, quotient: q, incomplete }
    };
    if d >= 64 {
        // Partial remainder: reduce the exponent difference by D - N (AMD/Intel: N = 32 +
        // (D mod 32)) and report C2 = 1.
        let n = 32 + (d % 32);
        let x = (ma as u128) << n;
        let (q, r) = (x / mb as u128, x % mb as u128);
        return finish(sa, r, ea - 63 - n, q as u64, true);
    }
    if d < 0 {
        if ieee && d == -1 && ma > mb {
            // |a| > |b|/2: the nearest quotient is 1.
            let r = (2 * mb as u128) - ma as u128;
            return finish(!sa, r, eb - 64, 1, false);
        }
        // The dividend comes back unchanged in value (re-encoded: pseudo-denormals normalize);
        // a true denormal divided by an infinity comes back as it is, without the underflow
        // exception an unmasked UM would otherwise wrap it with (the host CPUs).
        if b.class() == Class::Inf && a.is_true_denormal() {
            return done(a, de);
        }
        return finish(sa, ma as u128, ea - 63, 0, false);
    }
    let x = (ma as u128) << d;
    let (mut q, mut r) = (x / mb as u128, x % mb as u128);
    let mut sign = sa;
    if ieee && (2 * r > mb as u128 || (2 * r == mb as u128 && q & 1 != 0)) {
        q += 1;
        r = mb as u128 - r;
        sign = !sign;
    }
    finish(sign, r, eb - 63, q as u64, false)
}

/// Converts a packed BCD integer (FBLD): 18 digits and a sign byte.
pub fn from_bcd(b: [u8; 10]) -> F80 {
    let mut v: i64 = 0;
    for i in (0..9).rev() {
        v = v * 100 + (b[i] >> 4) as i64 * 10 + (b[i] & 0xf) as i64;
    }
    let sign = b[9] & 0x80 != 0;
    from_i64(v).with_sign(sign)
}

/// FBSTP: rounds to an integer and packs 18 BCD digits; IE and the BCD indefinite otherwise.
pub fn to_bcd(a: F80, env: &Env) -> ([u8; 10], u16) {
    const INDEFINITE: [u8; 10] = [0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff];
    let (mag, sign, f) = match a.class() {
        Class::Zero => (0u64, a.sign(), 0),
        Class::Normal | Class::Denormal => {
            let (s, e, m) = a.unpack();
            let (n, inexact, inc) = round_to_int(s, e, m, env.rc);
            match n {
                Some(n) if n <= 999_999_999_999_999_999 => {
                    (n, s, if inexact { exc::PE } else { 0 } | if inc { exc::C1 } else { 0 })
                }
                _ => return (INDEFINITE, exc::IE),
            }
        }
        _ => return (INDEFINITE, exc::IE),
    };
    let mut out = [0u8; 10];
    let mut n = mag;
    for byte in out.iter_mut().take(9) {
        let lo = (n % 10) as u8;
        n /= 10;
        let hi = (n % 10) as u8;
        n /= 10;
        *byte = hi << 4 | lo;
    }
    out[9] = if sign { 0x80 } else { 0 };
    (out, f)
}

/// Rounds an exact `m * 2^(e-63)` (m normalized) to the register format: the entry point for
/// values computed outside this module (constants, transcendental results).
pub fn round_value(sign: bool, e: i32, m: u64, env: &Env) -> Res {
    let (r, f) = round(sign, e, (m as u128) << 64, env);
    (r.to_f80(), f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::from_fcw(0x037f)
    }
    fn f(v: f64) -> F80 {
        super::super::float::from_ieee(v.to_bits(), 52, 11).0
    }

    #[test]
    fn basic_arithmetic() {
        assert_eq!(add(f(1.0), f(2.0), false, &env()).0, f(3.0));
        assert_eq!(add(f(1.0), f(1.0), true, &env()).0, F80::ZERO);
        assert_eq!(mul(f(1.5), f(-4.0), &env()).0, f(-6.0));
        assert_eq!(div(f(1.0), f(4.0), &env()).0, f(0.25));
        assert_eq!(sqrt(f(9.0), &env()).0, f(3.0));
        let (x, fl) = div(f(1.0), f(3.0), &env());
        assert_eq!(x, F80 { sig: 0xaaaa_aaaa_aaaa_aaab, se: 0x3ffd });
        assert_eq!(fl, exc::PE | exc::C1);
        assert_eq!(div(f(1.0), F80::ZERO, &env()), (F80::inf(false), exc::ZE));
    }

    #[test]
    fn remainders_and_ints() {
        let r = rem(f(7.0), f(2.0), false, &env());
        assert_eq!((r.value, r.quotient), (f(1.0), 3));
        let r = rem(f(7.0), f(2.0), true, &env());
        assert_eq!((r.value, r.quotient), (f(-1.0), 4));
        assert_eq!(to_int(f(2.5), 32, false, &env()).0, 2);
        assert_eq!(to_int(f(-2.5), 32, true, &env()).0, -2);
        assert_eq!(to_int(f(40000.0), 16, false, &env()), (-32768, exc::IE));
        let (b, _) = to_bcd(f(-1234.0), &env());
        assert_eq!(from_bcd(b), f(-1234.0));
    }
}
