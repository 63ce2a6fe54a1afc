//! String instructions: MOVS CMPS SCAS LODS STOS with REP/REPE/REPNE, and the machinery INS
//! and OUTS (in `io.rs`) share: the address size (SI/ESI/RSI, DI/EDI/RDI and CX/ECX/RCX wrap
//! and are written at that width; 32-bit writes zero-extend like any 32-bit register write),
//! the direction flag, the source segment (DS or an override; the destination is always ES).
//!
//! REP loops are restartable: every iteration commits rSI, rDI and rCX before the next one,
//! so a fault leaves them counting the completed iterations, with RIP at the instruction. A
//! long loop stops after a budget of iterations with RIP still at the instruction, so pending
//! interrupts are taken before it continues; with TF set it stops after every iteration, where
//! hardware takes the single-step trap. REP MOVS/STOS, in either direction, move whole runs of
//! elements that stay inside one page (and inside the segments) through host pointers when the
//! pages are plain RAM (`Cpu::copy_ram`/`fill_ram`, which go through the TLB and its checks).
//!
//! REPNE (F2) on MOVS/LODS/STOS/INS/OUTS repeats like REP, as on Intel processors.

use super::Handler;
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::flags::{size_mask, CcOp};
use crate::mmu::Access;
use crate::state::flags::{DF, RF, TF, ZF};
use crate::state::reg::{RAX, RCX, RDI, RSI};
use crate::state::Seg;
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic, OpKind, Register};

/// Iterations a REP loop runs before yielding to the execution loop for pending events.
const REP_BUDGET: u32 = 4096;
/// Budget a bulk step (up to one page of elements) uses: at most 64 pages per call.
const BULK_COST: u32 = 64;

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd | Mnemonic::Movsq if is_string(insn) => movs,
        Mnemonic::Cmpsb | Mnemonic::Cmpsw | Mnemonic::Cmpsd | Mnemonic::Cmpsq if is_string(insn) => cmps,
        Mnemonic::Scasb | Mnemonic::Scasw | Mnemonic::Scasd | Mnemonic::Scasq => scas,
        Mnemonic::Lodsb | Mnemonic::Lodsw | Mnemonic::Lodsd | Mnemonic::Lodsq => lods,
        Mnemonic::Stosb | Mnemonic::Stosw | Mnemonic::Stosd | Mnemonic::Stosq => stos,
        _ => return None,
    })
}

/// MOVSD/CMPSD are also SSE2 mnemonics (with XMM operands); the string forms use rSI/rDI.
fn is_string(insn: &Instruction) -> bool {
    (0..insn.op_count()).any(|i| str_width(insn.op_kind(i)).is_some())
}

/// Address-size mask of a string operand kind.
fn str_width(kind: OpKind) -> Option<u64> {
    match kind {
        OpKind::MemorySegSI | OpKind::MemoryESDI => Some(0xffff),
        OpKind::MemorySegESI | OpKind::MemoryESEDI => Some(0xffff_ffff),
        OpKind::MemorySegRSI | OpKind::MemoryESRDI => Some(!0),
        _ => None,
    }
}

/// How a string instruction repeats.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Rep {
    Once,
    /// REP, or any repeat prefix on an instruction that does not compare.
    Always,
    /// REPE/REPZ: also stop when ZF = 0.
    WhileEqual,
    /// REPNE/REPNZ: also stop when ZF = 1.
    WhileNotEqual,
}

impl Rep {
    pub(super) fn of(insn: &Instruction, compares: bool) -> Rep {
        match (insn.has_repe_prefix(), insn.has_repne_prefix(), compares) {
            (false, false, _) => Rep::Once,
            (_, _, false) => Rep::Always,
            (true, _, true) => Rep::WhileEqual,
            (false, true, true) => Rep::WhileNotEqual,
        }
    }
}

/// The operand geometry of a string instruction.
#[derive(Clone, Copy, Debug)]
pub(super) struct Str {
    /// Address-size mask for rSI, rDI and rCX.
    pub mask: u64,
    /// Element size in bytes.
    pub size: u8,
    /// Per-element step: +size, or -size with DF set (two's complement).
    pub step: u64,
}

impl Str {
    pub(super) fn new(cpu: &Cpu, insn: &Instruction) -> Str {
        let mask = (0..insn.op_count()).find_map(|i| str_width(insn.op_kind(i))).unwrap_or(!0);
        let size = insn.memory_size().size() as u8;
        let step = if cpu.state.rflags & DF != 0 { (size as u64).wrapping_neg() } else { size as u64 };
        Str { mask, size, step }
    }

    pub(super) fn forward(&self) -> bool {
        self.step == self.size as u64
    }

    #[inline]
    pub(super) fn si(&self, cpu: &Cpu) -> u64 {
        cpu.state.gpr[RSI] & self.mask
    }

    #[inline]
    pub(super) fn di(&self, cpu: &Cpu) -> u64 {
        cpu.state.gpr[RDI] & self.mask
    }

    #[inline]
    pub(super) fn count(&self, cpu: &Cpu) -> u64 {
        cpu.state.gpr[RCX] & self.mask
    }

    /// Writes a string register at the address size (16-bit merges, 32-bit zero-extends).
    #[inline]
    fn set(&self, cpu: &mut Cpu, r: usize, v: u64) {
        let g = &mut cpu.state.gpr[r];
        *g = if self.mask == 0xffff { (*g & !0xffff) | (v & 0xffff) } else { v & self.mask };
    }

    /// Moves rSI or rDI by `n` elements in the current direction.
    #[inline]
    pub(super) fn advance(&self, cpu: &mut Cpu, r: usize, n: u64) {
        let v = cpu.state.gpr[r].wrapping_add(self.step.wrapping_mul(n));
        self.set(cpu, r, v);
    }

    #[inline]
    pub(super) fn set_count(&self, cpu: &mut Cpu, v: u64) {
        self.set(cpu, RCX, v);
    }
}

/// Iterations this handler call may run: one under single-step (TF traps after each).
fn budget(cpu: &Cpu) -> u32 {
    if cpu.state.rflags & TF != 0 {
        1
    } else {
        REP_BUDGET
    }
}

/// Ends this handler call with rIP still at the REP instruction, so the loop continues after
/// the execution loop has looked at pending events. An event taken between iterations
/// pushes RF = 1, so an instruction breakpoint on the REP does not fire again when it
/// resumes (SDM Vol. 3, 18.3.1.1); RF is cleared as the instruction restarts.
fn yield_rep(cpu: &mut Cpu) {
    cpu.next_rip = cpu.state.rip;
    cpu.end_block = true;
    cpu.state.rflags |= RF;
}

/// Runs `step` (one element, advancing its own pointers) under the repeat prefix `rep`.
pub(super) fn repeat(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    s: &Str,
    rep: Rep,
    mut step: impl FnMut(&mut Cpu, &mut dyn CpuBus) -> Result<()>,
) -> Result<()> {
    if rep == Rep::Once {
        return step(cpu, bus);
    }
    let mut budget = budget(cpu);
    loop {
        let count = s.count(cpu);
        if count == 0 {
            return Ok(());
        }
        step(cpu, bus)?;
        s.set_count(cpu, count - 1);
        let stop = match rep {
            Rep::WhileEqual => !cpu.flag(ZF),
            Rep::WhileNotEqual => cpu.flag(ZF),
            _ => false,
        };
        if count == 1 || stop {
            return Ok(());
        }
        budget -= 1;
        // A data or I/O breakpoint traps after the iteration that hit it (18.3.1.2).
        if budget == 0 || cpu.dbg.trap() {
            yield_rep(cpu);
            return Ok(());
        }
    }
}

/// The accumulator register of an element size.
fn accumulator(size: u8) -> Register {
    match size {
        1 => Register::AL,
        2 => Register::AX,
        4 => Register::EAX,
        _ => Register::RAX,
    }
}

/// How many whole elements from the one at `off` on, in the direction DF gives (at most
/// `max`), lie in the same page, inside the segment and before the offset wraps at the
/// address size, and the linear address of the lowest. `None` when the first element would
/// fault: the element path raises that.
fn page_run(cpu: &Cpu, seg: Seg, off: u64, s: &Str, max: u64, access: Access) -> Option<(u64, u64)> {
    let size = s.size as u64;
    let lin = cpu.linear(seg, off, s.size, access).ok()?;
    let in_page = (4096 - (lin & 0xfff)) / size;
    let room = s.mask - off;
    let fits = room >= size - 1;
    let (in_page, before_wrap) = if s.forward() {
        (in_page, if fits { (room - (size - 1)) / size + 1 } else { 0 })
    } else {
        // The first element in the page, then those below it down to the page's start.
        (in_page.min(1) * ((lin & 0xfff) / size + 1), if fits { off / size + 1 } else { 0 })
    };
    let n = max.min(in_page).min(before_wrap);
    if n == 0 {
        return None;
    }
    // Segment limits bound an interval, so the last element passing means all do.
    let last = off.wrapping_add(s.step.wrapping_mul(n - 1));
    let last_lin = cpu.linear(seg, last, s.size, access).ok()?;
    Some((lin.min(last_lin), n))
}

fn movs(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let s = Str::new(cpu, insn);
    let seg = cpu.memory_segment(insn);
    let rep = Rep::of(insn, false);
    if rep != Rep::Once {
        return movs_rep(cpu, bus, &s, seg);
    }
    movs_one(cpu, bus, &s, seg)
}

#[inline]
fn movs_one(cpu: &mut Cpu, bus: &mut dyn CpuBus, s: &Str, seg: Seg) -> Result<()> {
    let v = cpu.read_mem(bus, seg, s.si(cpu), s.size)?;
    cpu.write_mem(bus, Seg::Es, s.di(cpu), s.size, v)?;
    s.advance(cpu, RSI, 1);
    s.advance(cpu, RDI, 1);
    Ok(())
}

/// REP MOVS: page runs in bulk where possible, single elements elsewhere.
fn movs_rep(cpu: &mut Cpu, bus: &mut dyn CpuBus, s: &Str, seg: Seg) -> Result<()> {
    rep_in_runs(
        cpu,
        bus,
        s,
        |cpu, bus, count| {
            let n = movs_bulk(cpu, bus, s, seg, count)?;
            s.advance(cpu, RSI, n);
            s.advance(cpu, RDI, n);
            Ok(n)
        },
        |cpu, bus| movs_one(cpu, bus, s, seg),
    )
}

/// The loop of a REP MOVS/STOS: `bulk` handles a page run and returns how many elements it
/// did (0: none, take one element with `one`); both advance rSI/rDI themselves. Stops at
/// rCX = 0 or when the iteration budget is spent (the instruction then resumes).
fn rep_in_runs(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    s: &Str,
    mut bulk: impl FnMut(&mut Cpu, &mut dyn CpuBus, u64) -> Result<u64>,
    mut one: impl FnMut(&mut Cpu, &mut dyn CpuBus) -> Result<()>,
) -> Result<()> {
    let mut budget = budget(cpu);
    loop {
        let count = s.count(cpu);
        if count == 0 {
            return Ok(());
        }
        if budget == 0 {
            yield_rep(cpu);
            return Ok(());
        }
        let n = if budget > 1 { bulk(cpu, bus, count)? } else { 0 };
        if n > 0 {
            s.set_count(cpu, count - n);
            budget = budget.saturating_sub(BULK_COST);
        } else {
            one(cpu, bus)?;
            s.set_count(cpu, count - 1);
            budget -= 1;
            if cpu.dbg.trap() && count > 1 {
                // A data breakpoint traps after the iteration that hit it (18.3.1.2).
                yield_rep(cpu);
                return Ok(());
            }
        }
    }
}

/// Copies the elements that stay in the current source and destination pages in one go,
/// where the order of the elements cannot show (see `Cpu::copy_ram`).
/// Returns how many it moved (0: take one element the slow way).
fn movs_bulk(cpu: &mut Cpu, bus: &mut dyn CpuBus, s: &Str, seg: Seg, count: u64) -> Result<u64> {
    let (si, di) = (s.si(cpu), s.di(cpu));
    let Some((src, n_src)) = page_run(cpu, seg, si, s, count, Access::Read) else { return Ok(0) };
    let Some((dst, n_dst)) = page_run(cpu, Seg::Es, di, s, count, Access::Write) else { return Ok(0) };
    let n = n_src.min(n_dst);
    if n < 2 {
        return Ok(0);
    }
    // Each run is as long as the shorter: the longer one starts (or, with DF = 1, ends) where
    // its page run did.
    let len = n * s.size as u64;
    let (src, dst) = if s.forward() { (src, dst) } else { (src + (n_src - n) * s.size as u64, dst + (n_dst - n) * s.size as u64) };
    let ctx = cpu.data_ctx();
    let done = cpu.copy_ram(bus, src, dst, len as usize, s.size, s.forward(), ctx)?;
    Ok(if done { n } else { 0 })
}

fn stos(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let s = Str::new(cpu, insn);
    let rep = Rep::of(insn, false);
    let v = cpu.state.gpr[RAX] & size_mask(s.size);
    if rep != Rep::Once {
        return stos_rep(cpu, bus, &s, v);
    }
    stos_one(cpu, bus, &s, v)
}

#[inline]
fn stos_one(cpu: &mut Cpu, bus: &mut dyn CpuBus, s: &Str, v: u64) -> Result<()> {
    cpu.write_mem(bus, Seg::Es, s.di(cpu), s.size, v)?;
    s.advance(cpu, RDI, 1);
    Ok(())
}

/// REP STOS: page runs filled in bulk where possible.
fn stos_rep(cpu: &mut Cpu, bus: &mut dyn CpuBus, s: &Str, v: u64) -> Result<()> {
    rep_in_runs(
        cpu,
        bus,
        s,
        |cpu, bus, count| {
            let Some((dst, run)) = page_run(cpu, Seg::Es, s.di(cpu), s, count, Access::Write) else { return Ok(0) };
            let ctx = cpu.data_ctx();
            if run > 1 && cpu.fill_ram(bus, dst, (run * s.size as u64) as usize, v, s.size, s.forward(), ctx)? {
                s.advance(cpu, RDI, run);
                return Ok(run);
            }
            Ok(0)
        },
        |cpu, bus| stos_one(cpu, bus, s, v),
    )
}

fn lods(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let s = Str::new(cpu, insn);
    let seg = cpu.memory_segment(insn);
    let acc = accumulator(s.size);
    repeat(cpu, bus, &s, Rep::of(insn, false), |cpu, bus| {
        let v = cpu.read_mem(bus, seg, s.si(cpu), s.size)?;
        cpu.set_reg(acc, v);
        s.advance(cpu, RSI, 1);
        Ok(())
    })
}

/// CMPS: flags of [seg:rSI] - ES:[rDI].
fn cmps(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let s = Str::new(cpu, insn);
    let seg = cpu.memory_segment(insn);
    let m = size_mask(s.size);
    repeat(cpu, bus, &s, Rep::of(insn, true), |cpu, bus| {
        let a = cpu.read_mem(bus, seg, s.si(cpu), s.size)?;
        let b = cpu.read_mem(bus, Seg::Es, s.di(cpu), s.size)?;
        s.advance(cpu, RSI, 1);
        s.advance(cpu, RDI, 1);
        cpu.set_cc(CcOp::Sub, s.size, a, b, a.wrapping_sub(b) & m, false);
        Ok(())
    })
}

/// SCAS: flags of the accumulator - ES:[rDI].
fn scas(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let s = Str::new(cpu, insn);
    let m = size_mask(s.size);
    repeat(cpu, bus, &s, Rep::of(insn, true), |cpu, bus| {
        let a = cpu.state.gpr[RAX] & m;
        let b = cpu.read_mem(bus, Seg::Es, s.di(cpu), s.size)?;
        s.advance(cpu, RDI, 1);
        cpu.set_cc(CcOp::Sub, s.size, a, b, a.wrapping_sub(b) & m, false);
        Ok(())
    })
}
