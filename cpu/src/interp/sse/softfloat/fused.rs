//! Fused multiply-add, `±(a × b) ± c` with a single rounding (IEEE 754-2008
//! fusedMultiplyAdd, the FMA3 instructions of SDM Vol. 2), under the same MXCSR rules as
//! the other operations: DAZ on every input, the denormal flag, invalid for ∞ × 0 and for
//! ∞ − ∞, tininess after rounding, FTZ.
//!
//! The product of two 53-bit significands is exact in 106 bits and the addend has 53, so the
//! sum is formed exactly in 128 bits (the smaller operand shifted right with a sticky bit
//! only when the exponents are far enough apart that no cancellation can reach the bits it
//! loses) and rounded once by `round_pack`.

use super::*;

/// Shifts a 128-bit significand right, OR-ing the bits shifted out into bit 0.
fn shift_right_jam128(x: u128, n: u32) -> u128 {
    if n == 0 {
        x
    } else if n < 128 {
        (x >> n) | ((x << (128 - n)) != 0) as u128
    } else {
        (x != 0) as u128
    }
}

impl Env {
    /// The NaN result of an FMA whose operands (multiplicand, multiplier, addend) include a
    /// NaN: the first NaN, quietened; invalid if any is signalling.
    pub fn fused_nan<F: Fmt>(&mut self, ops: [u64; 3]) -> Option<u64> {
        let first = ops.iter().copied().find(|&x| is_nan::<F>(x))?;
        if ops.iter().any(|&x| is_snan::<F>(x)) {
            self.flags |= mx::IE;
        }
        Some(first | F::QUIET)
    }

    /// `±(a × b) ± c` for non-NaN operands (see `fused_nan`), rounded once.
    pub fn fused<F: Fmt>(&mut self, a: u64, b: u64, c: u64, negate_product: bool, negate_addend: bool) -> u64 {
        let (a, b, c) = (self.input::<F>(a), self.input::<F>(b), self.input::<F>(c));
        let sp = sign_of::<F>(a) ^ sign_of::<F>(b) ^ negate_product;
        let sc = sign_of::<F>(c) ^ negate_addend;
        let sign = |neg: bool| if neg { F::SIGN } else { 0 };
        let (ia, ib, ic) = (is_inf::<F>(a), is_inf::<F>(b), is_inf::<F>(c));
        let (za, zb, zc) = (is_zero::<F>(a), is_zero::<F>(b), is_zero::<F>(c));
        if (ia && zb) || (za && ib) {
            return self.invalid::<F>();
        }
        if (ia || ib) && ic && sp != sc {
            return self.invalid::<F>();
        }
        if is_denormal::<F>(a) || is_denormal::<F>(b) || is_denormal::<F>(c) {
            self.flags |= mx::DE;
        }
        if ia || ib {
            return sign(sp) | F::INF;
        }
        if ic {
            return sign(sc) | F::INF;
        }
        if za || zb {
            if zc {
                // An exact zero sum: +0 unless both are −0, or −0 when rounding down.
                let neg = if sp == sc { sp } else { self.rc == Round::Down };
                return sign(neg);
            }
            return self.repack::<F>((c & !F::SIGN) | sign(sc));
        }
        let (ea, ma) = unpack::<F>(a);
        let (eb, mb) = unpack::<F>(b);
        let p = ma as u128 * mb as u128; // in [2^124, 2^126)
        // Both terms as (exponent, significand with its leading bit at 126).
        let product = if p >> 125 != 0 { (ea + eb + 1, p << 1) } else { (ea + eb, p << 2) };
        if zc {
            let (e, m) = product;
            return self.round_pack::<F>(sp, e, jam128(m, 64));
        }
        let (ec, mc) = unpack::<F>(c);
        let addend = (ec, (mc as u128) << 64);
        let ((ex, mut x, nx), (ey, y, ny)) = if (product.0, product.1) >= (addend.0, addend.1) {
            ((product.0, product.1, sp), (addend.0, addend.1, sc))
        } else {
            ((addend.0, addend.1, sc), (product.0, product.1, sp))
        };
        let y = shift_right_jam128(y, (ex - ey) as u32);
        let mut e = ex;
        if nx == ny {
            x += y;
            if x >> 127 != 0 {
                x = shift_right_jam128(x, 1);
                e += 1;
            }
        } else {
            x -= y;
            if x == 0 {
                return sign(self.rc == Round::Down);
            }
        }
        // Leading bit at `top`; round_pack wants it at 62 with the rest sticky.
        let top = 127 - x.leading_zeros() as i32;
        let sig = if top >= 62 { jam128(x, (top - 62) as u32) } else { (x << (62 - top)) as u64 };
        self.round_pack::<F>(nx, e + top - 126, sig)
    }
}
