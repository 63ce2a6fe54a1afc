//! Locked read-modify-write instructions: CMPXCHG, CMPXCHG8B, CMPXCHG16B, XADD (XCHG lives in
//! `datamov.rs`), and what every locked instruction shares: how its memory operand is
//! updated atomically with respect to the other vCPU threads.
//!
//! iced (with `DecoderOptions::NONE`) already decodes a LOCK prefix on an instruction that
//! does not allow it, or with a register destination, as invalid, which becomes #UD. So a
//! decoded instruction with a LOCK prefix always has a memory destination, and each family's
//! lookup picks a `locked_*` handler for it at decode time: unlocked code keeps its plain
//! read-compute-write handlers and pays nothing for this.
//!
//! # Where atomicity comes from
//! Guest RAM is shared by every vCPU thread through host pointers. A locked handler gets the
//! host address of its operand with `Cpu::write_ptr` (which raises the fault a write would
//! raise and does the bookkeeping every write does), then updates it with a host atomic
//! (`mmu::atomic`): a compare-exchange loop that computes the new value from the value the
//! compare-exchange saw, or a single `lock xadd`/`xchg`. The result, the flags and the
//! registers the instruction writes all come from that observed value, so they are exactly
//! those of some serial order of the vCPUs. Host locked instructions are full barriers, as
//! the guest's are. A misaligned operand inside one page is still one host locked access;
//! if it straddles a host cache line the host processor takes a bus lock for it, which costs
//! microseconds (more where the host kernel throttles split locks), as it does the guest on
//! hardware.
//!
//! # Fallback
//! `write_ptr` gives no pointer for device memory, ROM, or an operand that crosses a page.
//! Those run the plain handler while holding `SPLIT_LOCK`, one mutex for the whole process:
//! device memory has no atomicity to offer (the device sees a read then a write, as on a
//! bus without locked cycles), ROM ignores the write, and a page-crossing locked access (a
//! "split lock", which hardware serialises by locking the bus) is rare and allowed to be
//! slow. Two locked instructions that both take this path exclude each other; a plain
//! store, or a host-atomic locked instruction on an overlapping part of the operand, from
//! another vCPU can still interleave with one, which is where the emulation is weaker than
//! hardware (QEMU stops every other vCPU for such accesses instead).
//!
//! Memory destinations are checked for writability before they are read, and the fault a
//! write raises (#PF with W=1) is raised even when CMPXCHG fails, as the locked cycle does.
//! A failed CMPXCHG writes nothing to host memory; the SDM writes the old value back, which
//! leaves the same bytes.

use super::Handler;
use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::flags::{size_mask, CcOp};
use crate::mmu::atomic::{compare_exchange, compare_exchange16, fetch_add, has_cmpxchg16b};
use crate::mmu::Access;
use crate::operand::Loc;
use crate::state::flags::ZF;
use crate::state::reg::{RAX, RBX, RCX, RDX};
use crate::state::Seg;
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic, Register};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Serialises the locked instructions that cannot use a host atomic (see the module notes).
static SPLIT_LOCK: Mutex<()> = Mutex::new(());

/// Takes `SPLIT_LOCK` for a locked instruction's fallback path. A panic while holding it
/// cannot leave guest state half-updated in a way the lock protects, so poisoning is ignored.
pub(super) fn split_lock() -> MutexGuard<'static, ()> {
    SPLIT_LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Cpu {
    /// The host address of a locked instruction's `size`-byte memory operand at seg:off,
    /// after the segment checks and the fault a write raises, with the write's bookkeeping
    /// done. `None`: run the plain handler under `split_lock` instead.
    #[inline]
    pub(super) fn locked_ptr(&mut self, bus: &mut dyn CpuBus, seg: Seg, off: u64, size: u8) -> Result<Option<*mut u8>> {
        let lin = self.linear(seg, off, size, Access::Write)?;
        let ctx = self.data_ctx();
        if !self.watchpoints.is_empty() {
            // The read half of the read-modify-write, reported first as the plain handlers do.
            self.note_watched_access(lin, size, false);
        }
        self.write_ptr(bus, lin, size, ctx)
    }

    /// `locked_ptr` for the explicit memory operand.
    #[inline]
    pub(super) fn locked_ptr_mem(&mut self, bus: &mut dyn CpuBus, insn: &Instruction, size: u8) -> Result<Option<*mut u8>> {
        let seg = self.memory_segment(insn);
        let off = self.effective_address(insn);
        self.locked_ptr(bus, seg, off, size)
    }
}

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    if insn.has_lock_prefix() {
        return Some(match insn.mnemonic() {
            Mnemonic::Cmpxchg => locked_cmpxchg,
            Mnemonic::Cmpxchg8b => locked_cmpxchg8b,
            Mnemonic::Cmpxchg16b => locked_cmpxchg16b,
            Mnemonic::Xadd => locked_xadd,
            _ => return None,
        });
    }
    Some(match insn.mnemonic() {
        Mnemonic::Cmpxchg => cmpxchg,
        Mnemonic::Cmpxchg8b => cmpxchg8b,
        Mnemonic::Cmpxchg16b => cmpxchg16b,
        Mnemonic::Xadd => xadd,
        _ => return None,
    })
}

/// AL, AX, EAX or RAX.
fn accumulator(size: u8) -> Register {
    match size {
        1 => Register::AL,
        2 => Register::AX,
        4 => Register::EAX,
        _ => Register::RAX,
    }
}

/// CMPXCHG r/m, r: if the accumulator equals the destination, the destination takes the
/// source (ZF = 1); otherwise the accumulator takes the destination (ZF = 0). A register
/// destination is only written on success, the accumulator only on failure (so the upper
/// half of a 64-bit register is cleared only by the 32-bit write that happens). Flags as
/// CMP accumulator, destination.
fn cmpxchg(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let m = size_mask(size);
    let loc = cpu.loc(insn, 0);
    cpu.check_writable(bus, loc, size)?;
    let dst = cpu.read_loc(bus, loc, size)?;
    let acc = cpu.state.gpr[RAX] & m;
    if acc == dst {
        let src = cpu.reg(insn.op1_register());
        cpu.write_loc(bus, loc, size, src)?;
    } else {
        // The SDM's pseudo-code writes DEST back with its own value on failure; for a 32-bit
        // register in 64-bit mode that zero-extends it (KVM's emulator agrees).
        cpu.write_loc(bus, loc, size, dst)?;
        cpu.set_reg(accumulator(size), dst);
    }
    cpu.set_cc(CcOp::Sub, size, acc, dst, acc.wrapping_sub(dst) & m, false);
    Ok(())
}

/// CMPXCHG8B m64: EDX:EAX against the memory; ECX:EBX stored on a match, otherwise the
/// memory value loaded into EDX:EAX (zero-extending both). Only ZF changes.
fn cmpxchg8b(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let loc = cpu.loc(insn, 0);
    cpu.check_writable(bus, loc, 8)?;
    let v = cpu.read_loc(bus, loc, 8)?;
    let g = &cpu.state.gpr;
    let expected = (g[RDX] << 32) | (g[RAX] & 0xffff_ffff);
    let new = (g[RCX] << 32) | (g[RBX] & 0xffff_ffff);
    if v == expected {
        cpu.write_loc(bus, loc, 8, new)?;
        cpu.set_arith_flags(ZF, ZF);
    } else {
        cpu.write_loc(bus, loc, 8, v)?;
        cpu.state.gpr[RAX] = v & 0xffff_ffff;
        cpu.state.gpr[RDX] = v >> 32;
        cpu.set_arith_flags(ZF, 0);
    }
    Ok(())
}

/// CMPXCHG16B m128: as CMPXCHG8B with RDX:RAX and RCX:RBX; #GP(0) unless the operand is
/// 16-byte aligned.
fn cmpxchg16b(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let seg = cpu.memory_segment(insn);
    let off = cpu.effective_address(insn);
    let lin = cpu.linear(seg, off, 16, Access::Write)?;
    if lin & 0xf != 0 {
        return Err(Fault::gp0());
    }
    let ctx = cpu.data_ctx();
    cpu.probe_write(bus, lin, 16, ctx)?;
    let lo = cpu.read_lin(bus, lin, 8, ctx)?;
    let hi = cpu.read_lin(bus, lin + 8, 8, ctx)?;
    let g = &cpu.state.gpr;
    if lo == g[RAX] && hi == g[RDX] {
        let (new_lo, new_hi) = (g[RBX], g[RCX]);
        cpu.write_lin(bus, lin, 8, new_lo, ctx)?;
        cpu.write_lin(bus, lin + 8, 8, new_hi, ctx)?;
        cpu.set_arith_flags(ZF, ZF);
    } else {
        cpu.write_lin(bus, lin, 8, lo, ctx)?;
        cpu.write_lin(bus, lin + 8, 8, hi, ctx)?;
        cpu.state.gpr[RAX] = lo;
        cpu.state.gpr[RDX] = hi;
        cpu.set_arith_flags(ZF, 0);
    }
    Ok(())
}

/// XADD r/m, r: the destination takes the sum and the source register the old destination.
/// The destination is written last, so XADD r, r with one register leaves the sum.
fn xadd(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let m = size_mask(size);
    let loc = cpu.loc(insn, 0);
    cpu.check_writable(bus, loc, size)?;
    let dst = cpu.read_loc(bus, loc, size)?;
    let src_reg = insn.op1_register();
    let src = cpu.reg(src_reg) & m;
    let sum = dst.wrapping_add(src) & m;
    match loc {
        Loc::Mem(..) => {
            cpu.write_loc(bus, loc, size, sum)?;
            cpu.set_reg(src_reg, dst);
        }
        Loc::Reg(r) => {
            cpu.set_reg(src_reg, dst);
            cpu.set_reg(r, sum);
        }
    }
    cpu.set_cc(CcOp::Add, size, dst, src, sum, false);
    Ok(())
}

/// LOCK CMPXCHG m, r: one host compare-exchange; on failure nothing is stored and the
/// accumulator takes the value the compare-exchange saw.
fn locked_cmpxchg(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let m = size_mask(size);
    let Some(p) = cpu.locked_ptr_mem(bus, insn, size)? else {
        let _serial = split_lock();
        return cmpxchg(cpu, bus, insn);
    };
    let acc = cpu.state.gpr[RAX] & m;
    let src = cpu.reg(insn.op1_register());
    // SAFETY: `locked_ptr` returned the host address of `size` bytes of writable guest RAM
    // inside one mapped page.
    let dst = match unsafe { compare_exchange(p, size, acc, src) } {
        Ok(dst) => dst,
        Err(dst) => {
            cpu.set_reg(accumulator(size), dst);
            dst
        }
    };
    cpu.set_cc(CcOp::Sub, size, acc, dst, acc.wrapping_sub(dst) & m, false);
    Ok(())
}

/// LOCK CMPXCHG8B m64: one 8-byte host compare-exchange.
fn locked_cmpxchg8b(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let Some(p) = cpu.locked_ptr_mem(bus, insn, 8)? else {
        let _serial = split_lock();
        return cmpxchg8b(cpu, bus, insn);
    };
    let g = &cpu.state.gpr;
    let expected = (g[RDX] << 32) | (g[RAX] & 0xffff_ffff);
    let new = (g[RCX] << 32) | (g[RBX] & 0xffff_ffff);
    // SAFETY: as in `locked_cmpxchg`, with 8 bytes.
    match unsafe { compare_exchange(p, 8, expected, new) } {
        Ok(_) => cpu.set_arith_flags(ZF, ZF),
        Err(v) => {
            cpu.state.gpr[RAX] = v & 0xffff_ffff;
            cpu.state.gpr[RDX] = v >> 32;
            cpu.set_arith_flags(ZF, 0);
        }
    }
    Ok(())
}

/// LOCK CMPXCHG16B m128: one host CMPXCHG16B. The guest operand is 16-byte aligned (#GP
/// otherwise); the host address is too whenever the host page is, which `phys_page` pages
/// are in practice; a misaligned host address (or a host without CMPXCHG16B) takes the
/// serialised path.
fn locked_cmpxchg16b(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let seg = cpu.memory_segment(insn);
    let off = cpu.effective_address(insn);
    let lin = cpu.linear(seg, off, 16, Access::Write)?;
    if lin & 0xf != 0 {
        return Err(Fault::gp0());
    }
    let p = match cpu.locked_ptr(bus, seg, off, 16)? {
        Some(p) if p as usize & 0xf == 0 && has_cmpxchg16b() => p,
        _ => {
            let _serial = split_lock();
            return cmpxchg16b(cpu, bus, insn);
        }
    };
    let g = &cpu.state.gpr;
    let expected = (g[RDX] as u128) << 64 | g[RAX] as u128;
    let new = (g[RCX] as u128) << 64 | g[RBX] as u128;
    // SAFETY: `locked_ptr` returned the host address of 16 writable bytes of guest RAM inside
    // one page (an aligned operand never crosses one); alignment and the instruction's
    // presence were checked above.
    match unsafe { compare_exchange16(p, expected, new) } {
        Ok(_) => cpu.set_arith_flags(ZF, ZF),
        Err(v) => {
            cpu.state.gpr[RAX] = v as u64;
            cpu.state.gpr[RDX] = (v >> 64) as u64;
            cpu.set_arith_flags(ZF, 0);
        }
    }
    Ok(())
}

/// LOCK XADD m, r: one host `lock xadd`.
fn locked_xadd(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let m = size_mask(size);
    let Some(p) = cpu.locked_ptr_mem(bus, insn, size)? else {
        let _serial = split_lock();
        return xadd(cpu, bus, insn);
    };
    let src_reg = insn.op1_register();
    let src = cpu.reg(src_reg) & m;
    // SAFETY: as in `locked_cmpxchg`.
    let dst = unsafe { fetch_add(p, size, src) };
    cpu.set_reg(src_reg, dst);
    cpu.set_cc(CcOp::Add, size, dst, src, dst.wrapping_add(src) & m, false);
    Ok(())
}
