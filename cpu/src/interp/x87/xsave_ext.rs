//! The XSAVE feature set (SDM Vol. 1, chapter 13; Vol. 2 XSAVE, XSAVEOPT, XSAVEC, XSAVES,
//! XRSTOR, XRSTORS): saves and restores of the x87, SSE, AVX and PKRU components in the
//! standard format (XSAVE, XSAVEOPT, XRSTOR with XCOMP_BV[63] = 0) and the compacted one
//! (XSAVEC, XSAVES, XRSTOR with XCOMP_BV[63] = 1, XRSTORS). Layouts come from `xstate`.
//!
//! XINUSE is derived from the register values (a component is in use when it differs from
//! its initial configuration), which the SDM allows. No modified-optimization tracking is
//! kept: XSAVEOPT and XSAVES save every requested component, which they may always do.

use super::mem;
use super::xsave::{check_alignment, load_x87, load_xmm, mxcsr_in, rex_w, save_mxcsr, save_x87, save_xmm, xmm_count};
use crate::bus::CpuBus;
use crate::exception::{vector, Fault, Result};
use crate::state::{cr0, cr4, reg, CpuState, FpuState};
use crate::xstate::{self, COMPACTED, EXTENDED, LEGACY_LEN, PKRU, SSE, X87};
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic};

/// Offset of the XSAVE header (XSTATE_BV at +0, XCOMP_BV at +8).
const HEADER: usize = LEGACY_LEN;
const AVX: u64 = xstate::AVX;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// XSAVE/XSAVEOPT and XRSTOR: user components (XCR0).
    User,
    /// XSAVES/XRSTORS: CPL 0, user and supervisor components (XCR0 | IA32_XSS).
    Supervisor,
}

pub(super) fn lookup(insn: &Instruction) -> Option<super::Handler> {
    use Mnemonic::*;
    Some(match insn.mnemonic() {
        // XSAVEOPT may skip components in their initial state or unmodified since the last
        // XRSTOR; saving them as XSAVE does is one of the behaviours it allows.
        Xsave | Xsave64 | Xsaveopt | Xsaveopt64 => xsave,
        Xsavec | Xsavec64 => |c, b, i| xsave_compacted(c, b, i, Form::User),
        Xsaves | Xsaves64 => |c, b, i| xsave_compacted(c, b, i, Form::Supervisor),
        Xrstor | Xrstor64 => |c, b, i| xrstor(c, b, i, Form::User),
        Xrstors | Xrstors64 => |c, b, i| xrstor(c, b, i, Form::Supervisor),
        _ => return None,
    })
}

/// XINUSE (SDM Vol. 1, 13.6): components XRSTOR loaded from memory since they were last
/// initialized, and those whose registers differ from their initial values. MXCSR does not
/// count for SSE. Both rules follow what the host reports in XSTATE_BV (XINUSE = 1 is always
/// allowed; 0 only in the initial configuration).
pub(crate) fn in_use(st: &CpuState) -> u64 {
    let f = &st.fpu;
    let x87_init = f.fcw == super::stack::FCW_INIT
        && f.fsw == 0
        && f.ftw == 0xffff
        && f.fop == 0
        && f.fip == 0
        && f.fdp == 0
        && f.fcs == 0
        && f.fds == 0;
    let sse_init = f.xmm.iter().all(|&x| x == 0);
    let avx_init = f.ymm_hi.iter().all(|&x| x == 0);
    let pkru_init = st.pkru == 0;
    let by_value =
        ((!x87_init as u64) * X87) | ((!sse_init as u64) * SSE) | ((!avx_init as u64) * AVX) | ((!pkru_init as u64) * PKRU);
    by_value | st.xinuse
}

/// The checks every XSAVE-family instruction makes, in the SDM's order: CR4.OSXSAVE (#UD),
/// CR0.TS (#NM), CPL 0 for the supervisor forms and 64-byte alignment (#GP). Returns RFBM,
/// EDX:EAX masked by the components the form may touch.
fn start(cpu: &Cpu, insn: &Instruction, form: Form) -> Result<u64> {
    if cpu.state.cr4 & cr4::OSXSAVE == 0 {
        return Err(Fault::ud());
    }
    if cpu.state.cr0 & cr0::TS != 0 {
        return Err(Fault::exc(vector::NM));
    }
    let mut enabled = cpu.state.xcr0;
    if form == Form::Supervisor {
        if cpu.state.cpl() != 0 {
            return Err(Fault::gp0());
        }
        enabled |= cpu.state.msr.xss;
    }
    check_alignment(cpu, insn, 64)?;
    let mask = (cpu.state.gpr[reg::RDX] & 0xffff_ffff) << 32 | (cpu.state.gpr[reg::RAX] & 0xffff_ffff);
    Ok(mask & enabled)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

/// Stores extended component `bit` at `b[at..]`. Outside 64-bit mode only YMM0_H-YMM7_H are
/// written (SDM Vol. 1, 13.13).
fn save_component(st: &CpuState, bit: u32, n: usize, b: &mut [u8]) {
    match 1u64 << bit {
        AVX => {
            for i in 0..n {
                b[16 * i..16 * (i + 1)].copy_from_slice(&st.fpu.ymm_hi[i].to_le_bytes());
            }
        }
        PKRU => b[..8].copy_from_slice(&(st.pkru as u64).to_le_bytes()),
        _ => {}
    }
}

/// Loads extended component `bit` from `b` (`None`: its initial configuration).
fn load_component(cpu: &mut Cpu, bit: u32, n: usize, b: Option<&[u8]>) {
    match 1u64 << bit {
        AVX => {
            for i in 0..n {
                cpu.state.fpu.ymm_hi[i] = b.map_or(0, |b| u128::from_le_bytes(b[16 * i..16 * (i + 1)].try_into().unwrap_or([0; 16])));
            }
        }
        PKRU => cpu.set_pkru(b.map_or(0, |b| u32::from_le_bytes(b[..4].try_into().unwrap_or([0; 4])))),
        _ => {}
    }
}

/// The legacy-region part of a save: x87 state if `x87`, XMM registers if `xmm`, MXCSR and
/// MXCSR_MASK if `mxcsr`. Bytes 511:416 (and 287:160 beyond the mode's registers) are kept.
fn save_legacy(f: &FpuState, b: &mut [u8], x87: bool, xmm: bool, mxcsr: bool, wide: bool, n: usize) {
    if x87 {
        let mut x = [0u8; 160];
        save_x87(f, &mut x, wide);
        b[0..24].copy_from_slice(&x[0..24]);
        b[32..160].copy_from_slice(&x[32..160]);
    }
    if mxcsr {
        save_mxcsr(f, b);
    }
    if xmm {
        save_xmm(f, b, n);
    }
}

/// XSAVE/XSAVEOPT: standard format; components of RFBM saved whatever XINUSE says, their
/// XSTATE_BV bits set from XINUSE, the rest of the header untouched. MXCSR goes with SSE or
/// AVX (SDM Vol. 1, 13.7).
fn xsave(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let rfbm = start(cpu, insn, Form::User)?;
    let (seg, off) = mem::operand(cpu, insn);
    // Read-modify-write of the area: only requested parts change.
    let (comps, len) = xstate::layout(rfbm, false);
    let mut b = vec![0u8; len];
    mem::read_bytes(cpu, bus, seg, off, &mut b)?;
    let st = &cpu.state;
    let n = xmm_count(cpu);
    save_legacy(&st.fpu, &mut b, rfbm & X87 != 0, rfbm & SSE != 0, rfbm & (SSE | AVX) != 0, rex_w(insn), n);
    for (c, at) in comps {
        save_component(st, c.bit, n, &mut b[at..at + c.size]);
    }
    let bv = (u64_at(&b, HEADER) & !rfbm) | (in_use(st) & rfbm);
    b[HEADER..HEADER + 8].copy_from_slice(&bv.to_le_bytes());
    mem::write_bytes(cpu, bus, seg, off, &b)
}

/// XSAVEC/XSAVES: compacted format with the init optimization (SDM Vol. 1, 13.10-13.11):
/// only components in RFBM and XINUSE are written, yet every component of RFBM takes its
/// place in the layout. SSE state (XMM registers and MXCSR) is also saved, and counted in
/// XSTATE_BV, when MXCSR is not 1F80H, so the compacted XRSTOR (which initializes MXCSR with
/// SSE) gets it back. XSTATE_BV = what was saved, XCOMP_BV = RFBM | bit 63; the rest of the
/// header and bytes 511:464 stay untouched.
fn xsave_compacted(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, form: Form) -> Result<()> {
    let rfbm = start(cpu, insn, form)?;
    let (seg, off) = mem::operand(cpu, insn);
    let (comps, len) = xstate::compacted_layout(rfbm);
    let mut b = vec![0u8; len];
    mem::read_bytes(cpu, bus, seg, off, &mut b)?;
    let st = &cpu.state;
    let mut save = rfbm & in_use(st);
    if st.fpu.mxcsr != 0x1f80 {
        save |= rfbm & SSE;
    }
    let n = xmm_count(cpu);
    save_legacy(&st.fpu, &mut b, save & X87 != 0, save & SSE != 0, save & SSE != 0, rex_w(insn), n);
    for (c, at) in comps {
        if save & (1 << c.bit) != 0 {
            save_component(st, c.bit, n, &mut b[at..at + c.size]);
        }
    }
    b[HEADER..HEADER + 8].copy_from_slice(&save.to_le_bytes());
    b[HEADER + 8..HEADER + 16].copy_from_slice(&(rfbm | COMPACTED).to_le_bytes());
    mem::write_bytes(cpu, bus, seg, off, &b)
}

/// The header checks of XRSTOR/XRSTORS (Vol. 2 XRSTOR, XRSTORS "Protected Mode
/// Exceptions"): #GP(0) for a header the form cannot load. `enabled` is XCR0 (XRSTOR) or
/// XCR0 | IA32_XSS (XRSTORS).
fn check_header(cpu: &Cpu, h: &[u8], form: Form, enabled: u64) -> Result<()> {
    let bv = u64_at(h, 0);
    let comp = u64_at(h, 8);
    let bad = if comp & COMPACTED == 0 {
        // Standard form: XRSTORS has none; XRSTOR needs XSTATE_BV within XCR0 and bytes
        // 23:8 clear.
        form == Form::Supervisor || bv & !enabled != 0 || h[8..24].iter().any(|&x| x != 0)
    } else {
        (form == Form::User && !cpu.model.has("xsavec"))
            || comp & !COMPACTED & !enabled != 0
            || bv & !comp != 0
            || h[16..64].iter().any(|&x| x != 0)
    };
    if bad {
        return Err(Fault::gp0());
    }
    Ok(())
}

/// XRSTOR (both forms) and XRSTORS (SDM Vol. 1, 13.8 and 13.12): each component of RFBM is
/// loaded if XSTATE_BV says the area holds it, else initialized. The standard form loads
/// MXCSR when RFBM[1] or RFBM[2] is set; the compacted form only with SSE, and initializes it
/// with SSE.
fn xrstor(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, form: Form) -> Result<()> {
    let rfbm = start(cpu, insn, form)?;
    let enabled = cpu.state.xcr0 | if form == Form::Supervisor { cpu.state.msr.xss } else { 0 };
    let (seg, off) = mem::operand(cpu, insn);
    let mut head = vec![0u8; EXTENDED];
    mem::read_bytes(cpu, bus, seg, off, &mut head)?;
    check_header(cpu, &head[HEADER..], form, enabled)?;
    let bv = u64_at(&head, HEADER);
    let comp = u64_at(&head, HEADER + 8);
    let compacted = comp & COMPACTED != 0;
    let (comps, len) = if compacted { xstate::compacted_layout(comp) } else { xstate::layout(rfbm, false) };
    let mut b = head;
    if len > EXTENDED {
        b.resize(len, 0);
        mem::read_bytes(cpu, bus, seg, off.wrapping_add(EXTENDED as u64), &mut b[EXTENDED..])?;
    }
    let load = rfbm & bv;
    // MXCSR: from memory, the initial value, or unchanged; reserved bits fault before any
    // state changes.
    let mxcsr = if compacted {
        match (rfbm & SSE != 0, load & SSE != 0) {
            (true, true) => Some(mxcsr_in(&b)?),
            (true, false) => Some(0x1f80),
            _ => None,
        }
    } else if rfbm & (SSE | AVX) != 0 {
        Some(mxcsr_in(&b)?)
    } else {
        None
    };
    let n = xmm_count(cpu);
    let wide = rex_w(insn);
    cpu.state.xinuse = (cpu.state.xinuse & !rfbm) | load;
    let f = &mut cpu.state.fpu;
    if rfbm & X87 != 0 {
        if load & X87 != 0 {
            load_x87(f, &b, wide);
        } else {
            super::control::init(f);
            f.st = [[0; 10]; 8];
        }
    }
    if rfbm & SSE != 0 {
        if load & SSE != 0 {
            load_xmm(f, &b, n);
        } else {
            f.xmm.iter_mut().take(n).for_each(|x| *x = 0);
        }
    }
    if let Some(m) = mxcsr {
        f.mxcsr = m;
    }
    for c in xstate::COMPONENTS.iter().filter(|c| rfbm & (1 << c.bit) != 0) {
        let at = comps.iter().find(|(k, _)| k.bit == c.bit).map(|&(_, at)| at);
        let src = match at {
            Some(at) if load & (1 << c.bit) != 0 => Some(&b[at..at + c.size]),
            _ => None,
        };
        load_component(cpu, c.bit, n, src);
    }
    Ok(())
}
