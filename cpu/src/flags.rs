//! Lazy condition codes: arithmetic instructions record their operands and result, and the
//! six status flags are computed only when something reads them (Jcc, PUSHF, ADC, ...).

use crate::state::flags::*;
use crate::Cpu;
use iced_x86::ConditionCode;

/// Which operation produced the pending flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum CcOp {
    /// `rflags` holds the flags; nothing is pending.
    #[default]
    Eflags,
    /// res = dst + src + carry_in
    Add,
    /// res = dst - src - carry_in
    Sub,
    /// AND/OR/XOR/TEST: CF = OF = AF = 0.
    Logic,
    /// INC/DEC: like Add/Sub with src = 1, CF kept in `carry_in`.
    Inc,
    Dec,
    /// SHL/SHR/SAR by a count of 1 to width - 1 (compiled code's; the interpreter writes the
    /// flags itself): `dst` the operand, `src` the count. The undefined flags follow the
    /// interpreter (see `interp::shift`): AF = 0, OF of the first one-bit step for counts > 1.
    Shl,
    Shr,
    Sar,
    /// IMUL r, r/m (and with an immediate), compiled code's: `res` the truncated product,
    /// `carry_in` whether it overflowed (CF = OF). The undefined flags follow the interpreter
    /// (`interp::muldiv`): SF and PF from the result, ZF and AF clear.
    Mul,
}

/// Pending flag computation. `repr(C)` so generated code can fill it in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct LazyFlags {
    pub op: CcOp,
    /// Operand width in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// ADC/SBB carry in; for INC/DEC the preserved CF.
    pub carry_in: u8,
    pub dst: u64,
    pub src: u64,
    pub res: u64,
}

#[inline(always)]
pub fn size_mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => !0,
    }
}

#[inline(always)]
pub fn sign_bit(size: u8) -> u64 {
    1u64 << ((size as u32 * 8).wrapping_sub(1) & 63)
}

#[inline(always)]
pub fn parity(v: u64) -> u64 {
    if (v as u8).count_ones() % 2 == 0 {
        PF
    } else {
        0
    }
}

/// PF, ZF and SF of a result of `size` bytes.
#[inline(always)]
pub fn szp(res: u64, size: u8) -> u64 {
    let m = size_mask(size);
    let mut f = parity(res);
    if res & m == 0 {
        f |= ZF;
    }
    if res & sign_bit(size) != 0 {
        f |= SF;
    }
    f
}

impl LazyFlags {
    /// CF alone, without computing the other flags (ADC/SBB/INC/DEC and Jcc read it often).
    #[inline(always)]
    pub fn cf(&self, stored: u64) -> bool {
        let m = size_mask(self.size);
        match self.op {
            CcOp::Eflags => stored & CF != 0,
            CcOp::Add => {
                let (dst, res) = (self.dst & m, self.res & m);
                if self.carry_in != 0 {
                    res <= dst
                } else {
                    res < dst
                }
            }
            CcOp::Sub => {
                let (dst, src) = (self.dst & m, self.src & m);
                if self.carry_in != 0 {
                    dst <= src
                } else {
                    dst < src
                }
            }
            CcOp::Logic => false,
            CcOp::Inc | CcOp::Dec | CcOp::Mul => self.carry_in != 0,
            CcOp::Shl | CcOp::Shr | CcOp::Sar => self.shift_cf(),
        }
    }

    /// CF of a pending shift: the last bit shifted out. For SAR with a count below the
    /// width that is a bit of the operand itself, as for SHR.
    #[inline(always)]
    fn shift_cf(&self) -> bool {
        let bits = self.size as u32 * 8;
        let count = self.src as u32 & (bits - 1);
        let at = if self.op == CcOp::Shl { bits - count } else { count.wrapping_sub(1) };
        (self.dst >> (at & 63)) & 1 != 0
    }

    /// OF of a pending shift: the first one-bit step's (the top two bits differ for SHL, the
    /// top bit for SHR, never for SAR).
    #[inline(always)]
    fn shift_of(&self) -> bool {
        let m = size_mask(self.size);
        let sb = sign_bit(self.size);
        let dst = self.dst & m;
        match self.op {
            CcOp::Shl => (dst ^ (dst << 1)) & sb != 0,
            CcOp::Shr => dst & sb != 0,
            _ => false,
        }
    }

    #[inline(always)]
    pub fn zf(&self, stored: u64) -> bool {
        match self.op {
            CcOp::Eflags => stored & ZF != 0,
            CcOp::Mul => false,
            _ => self.res & size_mask(self.size) == 0,
        }
    }

    #[inline(always)]
    pub fn sf(&self, stored: u64) -> bool {
        match self.op {
            CcOp::Eflags => stored & SF != 0,
            _ => self.res & sign_bit(self.size) != 0,
        }
    }

    #[inline(always)]
    pub fn of(&self, stored: u64) -> bool {
        let sb = sign_bit(self.size.max(1));
        let m = size_mask(self.size);
        let (dst, src, res) = (self.dst & m, self.src & m, self.res & m);
        match self.op {
            CcOp::Eflags => stored & OF != 0,
            CcOp::Add => (dst ^ res) & (src ^ res) & sb != 0,
            CcOp::Sub => (dst ^ src) & (dst ^ res) & sb != 0,
            CcOp::Logic => false,
            CcOp::Inc => res == sb,
            CcOp::Dec => res == sb - 1,
            CcOp::Shl | CcOp::Shr | CcOp::Sar => self.shift_of(),
            CcOp::Mul => self.carry_in != 0,
        }
    }

    /// The six arithmetic flags this pending operation defines.
    pub fn compute(&self, stored: u64) -> u64 {
        if self.op == CcOp::Eflags {
            // Nothing pending (and `size` may be 0, as in the default state).
            return stored & ARITH;
        }
        let m = size_mask(self.size);
        let sb = sign_bit(self.size);
        let (dst, src, res) = (self.dst & m, self.src & m, self.res & m);
        match self.op {
            CcOp::Eflags => stored & ARITH,
            CcOp::Add => {
                let cf = if self.carry_in != 0 { res <= dst } else { res < dst };
                let mut f = szp(res, self.size) | ((dst ^ src ^ res) & AF);
                if cf {
                    f |= CF;
                }
                if (dst ^ res) & (src ^ res) & sb != 0 {
                    f |= OF;
                }
                f
            }
            CcOp::Sub => {
                let cf = if self.carry_in != 0 { dst <= src } else { dst < src };
                let mut f = szp(res, self.size) | ((dst ^ src ^ res) & AF);
                if cf {
                    f |= CF;
                }
                if (dst ^ src) & (dst ^ res) & sb != 0 {
                    f |= OF;
                }
                f
            }
            CcOp::Logic => szp(res, self.size),
            CcOp::Inc => {
                let mut f = szp(res, self.size) | ((dst ^ 1 ^ res) & AF) | (self.carry_in as u64 * CF);
                if res == sb {
                    f |= OF;
                }
                f
            }
            CcOp::Dec => {
                let mut f = szp(res, self.size) | ((dst ^ 1 ^ res) & AF) | (self.carry_in as u64 * CF);
                if res == sb - 1 {
                    f |= OF;
                }
                f
            }
            CcOp::Shl | CcOp::Shr | CcOp::Sar => {
                szp(res, self.size) | (self.shift_cf() as u64 * CF) | (self.shift_of() as u64 * OF)
            }
            CcOp::Mul => (szp(res, self.size) & !ZF) | (self.carry_in as u64 * (CF | OF)),
        }
    }
}

impl Cpu {
    /// Full RFLAGS with pending condition codes folded in.
    #[inline]
    pub fn rflags(&self) -> u64 {
        (self.state.rflags & !ARITH) | self.cc.compute(self.state.rflags)
    }

    /// Writes all of RFLAGS (bit 1 always reads as 1). No privilege rules: callers apply them.
    #[inline]
    pub fn set_rflags(&mut self, v: u64) {
        self.state.rflags = (v & WRITABLE) | FIXED1;
        self.cc.op = CcOp::Eflags;
    }

    /// Makes `state.rflags` exact (for code that reads the state struct directly).
    pub fn materialize_flags(&mut self) {
        let f = self.rflags();
        self.state.rflags = f;
        self.cc.op = CcOp::Eflags;
    }

    /// Replaces only the arithmetic flags in `mask` with those of `value`.
    #[inline]
    pub fn set_arith_flags(&mut self, mask: u64, value: u64) {
        // Replacing all six needs no evaluation of the pending ones.
        let cur = if mask & ARITH == ARITH { self.state.rflags } else { self.rflags() };
        self.state.rflags = (cur & !mask) | (value & mask);
        self.cc.op = CcOp::Eflags;
    }

    #[inline]
    pub fn flag(&self, f: u64) -> bool {
        if f & ARITH == 0 {
            return self.state.rflags & f != 0;
        }
        self.cc.compute(self.state.rflags) & f != 0
    }

    #[inline]
    pub fn cf(&self) -> bool {
        self.cc.cf(self.state.rflags)
    }

    /// Records a pending arithmetic result.
    #[inline(always)]
    pub fn set_cc(&mut self, op: CcOp, size: u8, dst: u64, src: u64, res: u64, carry_in: bool) {
        self.cc = LazyFlags { op, size, carry_in: carry_in as u8, dst, src, res };
    }

    /// Evaluates a Jcc/SETcc/CMOVcc condition.
    #[inline(always)]
    pub fn condition(&self, cc: ConditionCode) -> bool {
        let (c, st) = (&self.cc, self.state.rflags);
        match cc {
            ConditionCode::None => true,
            ConditionCode::o => c.of(st),
            ConditionCode::no => !c.of(st),
            ConditionCode::b => c.cf(st),
            ConditionCode::ae => !c.cf(st),
            ConditionCode::e => c.zf(st),
            ConditionCode::ne => !c.zf(st),
            ConditionCode::be => c.cf(st) || c.zf(st),
            ConditionCode::a => !c.cf(st) && !c.zf(st),
            ConditionCode::s => c.sf(st),
            ConditionCode::ns => !c.sf(st),
            ConditionCode::p => c.compute(st) & PF != 0,
            ConditionCode::np => c.compute(st) & PF == 0,
            ConditionCode::l => c.sf(st) != c.of(st),
            ConditionCode::ge => c.sf(st) == c.of(st),
            ConditionCode::le => c.zf(st) || c.sf(st) != c.of(st),
            ConditionCode::g => !c.zf(st) && c.sf(st) == c.of(st),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_flags() {
        let lf = LazyFlags { op: CcOp::Add, size: 1, carry_in: 0, dst: 0x7f, src: 1, res: 0x80 };
        let f = lf.compute(0);
        assert_eq!(f & (OF | SF | ZF | CF | AF), OF | SF | AF);
        let lf = LazyFlags { op: CcOp::Add, size: 1, carry_in: 1, dst: 0xff, src: 0, res: 0x100 };
        assert_eq!(lf.compute(0) & (CF | ZF), CF | ZF);
    }

    /// The single-flag fast paths agree with the full computation.
    #[test]
    fn fast_paths_match_compute() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        for _ in 0..20000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let ops = [CcOp::Add, CcOp::Sub, CcOp::Logic, CcOp::Inc, CcOp::Dec];
            let op = ops[(seed % 5) as usize];
            let size = [1u8, 2, 4, 8][((seed >> 8) % 4) as usize];
            let dst = seed.rotate_left(17);
            let src = if matches!(op, CcOp::Inc | CcOp::Dec) { 1 } else { seed.rotate_left(31) };
            let carry = (seed >> 3) & 1 == 1;
            let res = match op {
                CcOp::Add | CcOp::Inc => dst.wrapping_add(src).wrapping_add(carry as u64 * (op == CcOp::Add) as u64),
                CcOp::Sub | CcOp::Dec => dst.wrapping_sub(src).wrapping_sub(carry as u64 * (op == CcOp::Sub) as u64),
                _ => dst & src,
            };
            let lf = LazyFlags { op, size, carry_in: carry as u8, dst, src, res };
            let f = lf.compute(0);
            assert_eq!(lf.cf(0), f & CF != 0, "{lf:?}");
            assert_eq!(lf.zf(0), f & ZF != 0, "{lf:?}");
            assert_eq!(lf.sf(0), f & SF != 0, "{lf:?}");
            assert_eq!(lf.of(0), f & OF != 0, "{lf:?}");
        }
    }

    #[test]
    fn sub_flags() {
        let lf = LazyFlags { op: CcOp::Sub, size: 4, carry_in: 0, dst: 0, src: 1, res: 0xffff_ffff };
        let f = lf.compute(0);
        assert_eq!(f & (CF | SF | ZF | OF), CF | SF);
        let lf = LazyFlags { op: CcOp::Sub, size: 2, carry_in: 0, dst: 0x8000, src: 1, res: 0x7fff };
        assert_eq!(lf.compute(0) & OF, OF);
    }
}
