//! binary16 conversions for F16C (VCVTPH2PS, VCVTPS2PH): half to single is exact; single to
//! half rounds once by the given mode. NaNs keep their sign and the top of their payload and
//! are quietened (invalid for an SNaN).

use super::*;

pub struct F16;
impl Fmt for F16 {
    const FRAC: u32 = 10;
    const EXP: u32 = 5;
}

/// Significand bits between binary32 and binary16.
const FRAC_DIFF: u32 = F32::FRAC - F16::FRAC;

impl Env {
    pub fn half_to_single(&mut self, h: u16) -> u32 {
        let h = h as u64;
        let sign = if sign_of::<F16>(h) { F32::SIGN } else { 0 };
        if is_nan::<F16>(h) {
            if is_snan::<F16>(h) {
                self.flags |= mx::IE;
            }
            return (sign | F32::INF | F32::QUIET | (h & F16::FRAC_MASK) << FRAC_DIFF) as u32;
        }
        if is_inf::<F16>(h) {
            return (sign | F32::INF) as u32;
        }
        if is_zero::<F16>(h) {
            return sign as u32;
        }
        // Every half, denormals included, is a normal single: the rounding is exact.
        let (e, m) = unpack::<F16>(h);
        self.round_pack::<F32>(sign != 0, e, m) as u32
    }

    pub fn single_to_half(&mut self, s: u32, rc: Round) -> u16 {
        let s = self.input::<F32>(s as u64);
        let sign = if sign_of::<F32>(s) { F16::SIGN } else { 0 };
        if is_nan::<F32>(s) {
            if is_snan::<F32>(s) {
                self.flags |= mx::IE;
            }
            return (sign | F16::INF | F16::QUIET | (s & F32::FRAC_MASK) >> FRAC_DIFF) as u16;
        }
        if is_inf::<F32>(s) {
            return (sign | F16::INF) as u16;
        }
        if is_zero::<F32>(s) {
            return sign as u16;
        }
        if is_denormal::<F32>(s) {
            self.flags |= mx::DE;
        }
        let (e, m) = unpack::<F32>(s);
        let saved = (self.rc, self.ftz);
        // The instruction's own rounding; a half result is never flushed to zero.
        (self.rc, self.ftz) = (rc, false);
        let h = self.round_pack::<F16>(sign != 0, e, m);
        (self.rc, self.ftz) = saved;
        h as u16
    }
}
