//! SSE4.2 string comparisons PCMPESTRI/PCMPESTRM/PCMPISTRI/PCMPISTRM (SDM Vol. 2, 4.1):
//! explicit (EAX/EDX, or RAX/RDX with REX.W) or implicit (NUL-terminated) lengths, the four
//! aggregations (equal any, ranges, equal each, equal ordered), the polarities, and index or
//! mask output with CF/ZF/SF/OF.

use super::*;
use crate::state::flags::{ARITH, CF, OF, SF, ZF};
use crate::state::reg;
use iced_x86::Code;

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    use Code as C;
    Some(match insn.code() {
        C::Pcmpestri_xmm_xmmm128_imm8 => |c, b, i| pcmpstr(c, b, i, Len::Explicit32, true),
        C::Pcmpestri64_xmm_xmmm128_imm8 => |c, b, i| pcmpstr(c, b, i, Len::Explicit64, true),
        C::Pcmpestrm_xmm_xmmm128_imm8 => |c, b, i| pcmpstr(c, b, i, Len::Explicit32, false),
        C::Pcmpestrm64_xmm_xmmm128_imm8 => |c, b, i| pcmpstr(c, b, i, Len::Explicit64, false),
        C::Pcmpistri_xmm_xmmm128_imm8 => |c, b, i| pcmpstr(c, b, i, Len::Implicit, true),
        C::Pcmpistrm_xmm_xmmm128_imm8 => |c, b, i| pcmpstr(c, b, i, Len::Implicit, false),
        _ => return None,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Len {
    Explicit32,
    Explicit64,
    Implicit,
}

/// imm8 fields.
const WORDS: u8 = 1 << 0;
const SIGNED: u8 = 1 << 1;
const AGG_SHIFT: u8 = 2;
const POL_SHIFT: u8 = 4;
/// Index output: most significant set bit. Mask output: expand to elements.
const MSB_OR_EXPAND: u8 = 1 << 6;

const EQUAL_ANY: u8 = 0;
const RANGES: u8 = 1;
const EQUAL_EACH: u8 = 2;
// 3: equal ordered (substring search), the remaining case.

/// Elements of an operand as integers of the selected format.
fn elements(v: u128, imm: u8) -> [i32; 16] {
    core::array::from_fn(|k| match imm & (WORDS | SIGNED) {
        0 => (v >> (8 * k)) as u8 as i32,
        WORDS => (v >> (16 * (k & 7))) as u16 as i32,
        SIGNED => (v >> (8 * k)) as i8 as i32,
        _ => (v >> (16 * (k & 7))) as i16 as i32,
    })
}

fn implicit_len(e: &[i32; 16], n: usize) -> usize {
    e[..n].iter().position(|&x| x == 0).unwrap_or(n)
}

/// An explicit length: the absolute value of the register, saturated to the element count.
fn explicit_len(v: u64, wide: bool, n: usize) -> usize {
    let v = if wide { v as i64 } else { v as u32 as i32 as i64 };
    v.unsigned_abs().min(n as u64) as usize
}

/// IntRes1 for the aggregation `agg` of `a` (xmm1, valid below `la`) against `b` (xmm2/m128,
/// valid below `lb`), with the invalid-element overrides of SDM Table 4-8.
fn aggregate(a: &[i32; 16], b: &[i32; 16], la: usize, lb: usize, n: usize, agg: u8) -> u32 {
    let mut res = 0u32;
    for j in 0..n {
        let bit = match agg {
            EQUAL_ANY => j < lb && (0..la).any(|i| a[i] == b[j]),
            RANGES => j < lb && (0..la / 2).any(|p| b[j] >= a[2 * p] && b[j] <= a[2 * p + 1]),
            EQUAL_EACH => match (j < la, j < lb) {
                (true, true) => a[j] == b[j],
                (false, false) => true,
                _ => false,
            },
            _ => (0..n - j).all(|i| match (i < la, j + i < lb) {
                (false, _) => true,
                (true, false) => false,
                (true, true) => a[i] == b[j + i],
            }),
        };
        res |= (bit as u32) << j;
    }
    res
}

fn pcmpstr(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, len: Len, index: bool) -> Result<()> {
    check_vector(cpu, insn)?;
    let bv = read_src(cpu, bus, insn, 1)?;
    let av = xmm(cpu, insn.op0_register());
    let imm = insn.immediate8();
    let n = if imm & WORDS != 0 { 8 } else { 16 };
    let (a, b) = (elements(av, imm), elements(bv, imm));
    let (la, lb) = match len {
        Len::Implicit => (implicit_len(&a, n), implicit_len(&b, n)),
        _ => {
            let wide = len == Len::Explicit64;
            let g = &cpu.state.gpr;
            (explicit_len(g[reg::RAX], wide, n), explicit_len(g[reg::RDX], wide, n))
        }
    };
    let all = (1u32 << n) - 1;
    let res1 = aggregate(&a, &b, la, lb, n, (imm >> AGG_SHIFT) & 3);
    let res2 = match (imm >> POL_SHIFT) & 3 {
        1 => !res1 & all,
        3 => res1 ^ ((1u32 << lb) - 1),
        _ => res1,
    };
    if index {
        let idx = match (res2, imm & MSB_OR_EXPAND != 0) {
            (0, _) => n as u64,
            (r, true) => 31 - r.leading_zeros() as u64,
            (r, false) => r.trailing_zeros() as u64,
        };
        cpu.set_reg(Register::ECX, idx);
    } else {
        let m = if imm & MSB_OR_EXPAND != 0 {
            let lane = 128 / n as u32;
            let ones = if lane == 16 { 0xffffu128 } else { 0xff };
            (0..n as u32).filter(|k| res2 >> k & 1 != 0).fold(0u128, |m, k| m | ones << (k * lane))
        } else {
            res2 as u128
        };
        set_vec(cpu, insn, Register::XMM0, m, 0);
    }
    let mut f = 0;
    if res2 != 0 {
        f |= CF;
    }
    if lb < n {
        f |= ZF;
    }
    if la < n {
        f |= SF;
    }
    if res2 & 1 != 0 {
        f |= OF;
    }
    cpu.set_arith_flags(ARITH, f);
    Ok(())
}
