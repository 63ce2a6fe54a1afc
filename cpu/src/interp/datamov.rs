//! Data movement: MOV (general and segment registers), MOVZX/MOVSX/MOVSXD, XCHG, LEA,
//! PUSH/POP (incl. segment registers, PUSHA/POPA), conversions (CBW..CQO), BSWAP, XLAT,
//! LAHF/SAHF, CMOVcc, SETcc, ENTER/LEAVE, LDS..LSS, and the no-ops.

use super::atomic::split_lock;
use super::Handler;
use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::flags::size_mask;
use crate::mmu::atomic::swap;
use crate::operand::{gpr_size, is_ea64, is_immediate, seg_of, Loc};
use crate::state::{flags, reg, Seg};
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic, OpKind, Register};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Mov => {
            let r0 = insn.op0_register();
            let r1 = insn.op1_register();
            if r0.is_cr() || r1.is_cr() || r0.is_dr() || r1.is_dr() || r0.is_tr() || r1.is_tr() {
                return None; // system family
            }
            if r0.is_segment_register() {
                mov_to_sreg
            } else if insn.op_kind(1) == OpKind::Register && r1.is_segment_register() {
                mov_from_sreg
            } else {
                pick_mov(insn).unwrap_or(mov)
            }
        }
        Mnemonic::Movzx => movzx,
        Mnemonic::Movsx | Mnemonic::Movsxd => movsx,
        Mnemonic::Xchg if insn.op0_kind() == OpKind::Memory || insn.op1_kind() == OpKind::Memory => xchg_mem,
        Mnemonic::Xchg => xchg,
        Mnemonic::Lea if is_ea64(insn) && gpr_size(insn.op0_register()) == 8 => lea64,
        Mnemonic::Lea => lea,
        Mnemonic::Push if is_push_pop_r64(insn) => push_r64,
        Mnemonic::Push => push,
        Mnemonic::Pop if is_push_pop_r64(insn) => pop_r64,
        Mnemonic::Pop => pop,
        Mnemonic::Pusha | Mnemonic::Pushad => pusha,
        Mnemonic::Popa | Mnemonic::Popad => popa,
        Mnemonic::Cbw | Mnemonic::Cwde | Mnemonic::Cdqe => widen_acc,
        Mnemonic::Cwd | Mnemonic::Cdq | Mnemonic::Cqo => sign_to_dx,
        Mnemonic::Bswap => bswap,
        Mnemonic::Xlatb => xlat,
        Mnemonic::Lahf => lahf,
        Mnemonic::Sahf => sahf,
        Mnemonic::Cmova
        | Mnemonic::Cmovae
        | Mnemonic::Cmovb
        | Mnemonic::Cmovbe
        | Mnemonic::Cmove
        | Mnemonic::Cmovg
        | Mnemonic::Cmovge
        | Mnemonic::Cmovl
        | Mnemonic::Cmovle
        | Mnemonic::Cmovne
        | Mnemonic::Cmovno
        | Mnemonic::Cmovnp
        | Mnemonic::Cmovns
        | Mnemonic::Cmovo
        | Mnemonic::Cmovp
        | Mnemonic::Cmovs => cmov,
        Mnemonic::Seta
        | Mnemonic::Setae
        | Mnemonic::Setb
        | Mnemonic::Setbe
        | Mnemonic::Sete
        | Mnemonic::Setg
        | Mnemonic::Setge
        | Mnemonic::Setl
        | Mnemonic::Setle
        | Mnemonic::Setne
        | Mnemonic::Setno
        | Mnemonic::Setnp
        | Mnemonic::Setns
        | Mnemonic::Seto
        | Mnemonic::Setp
        | Mnemonic::Sets => setcc,
        Mnemonic::Enter => enter,
        Mnemonic::Leave => leave,
        Mnemonic::Lds => |c, b, i| load_far_pointer(c, b, i, Seg::Ds),
        Mnemonic::Les => |c, b, i| load_far_pointer(c, b, i, Seg::Es),
        Mnemonic::Lfs => |c, b, i| load_far_pointer(c, b, i, Seg::Fs),
        Mnemonic::Lgs => |c, b, i| load_far_pointer(c, b, i, Seg::Gs),
        Mnemonic::Lss => |c, b, i| load_far_pointer(c, b, i, Seg::Ss),
        Mnemonic::Mfence => mfence,
        // Hints, and LFENCE/SFENCE: guest loads and stores are host loads and stores, ordered
        // as x86 orders them, and none is weakly ordered (non-temporal stores are plain
        // here), so these fences have nothing left to order.
        Mnemonic::Nop
        | Mnemonic::Reservednop
        | Mnemonic::Pause
        | Mnemonic::Endbr32
        | Mnemonic::Endbr64
        | Mnemonic::Rdsspd
        | Mnemonic::Rdsspq
        | Mnemonic::Prefetchwt1
        | Mnemonic::Prefetchit0
        | Mnemonic::Prefetchit1
        | Mnemonic::Cldemote
        | Mnemonic::Lfence
        | Mnemonic::Sfence
        | Mnemonic::Prefetch
        | Mnemonic::Prefetchw
        | Mnemonic::Prefetchnta
        | Mnemonic::Prefetcht0
        | Mnemonic::Prefetcht1
        | Mnemonic::Prefetcht2 => nop,
        _ => return None,
    })
}

fn nop(_: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    Ok(())
}

/// MFENCE: a store followed by a load of another location may otherwise be reordered by the
/// host (x86 lets loads pass earlier stores), which another vCPU thread could observe. A
/// sequentially consistent host fence orders them, as MFENCE does for the guest.
fn mfence(_: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

/// MOV specialised at decode time for `reg, reg`, `reg, imm`, and (64-bit addressing)
/// `reg, mem` / `mem, reg`, with the width fixed; `None` for the other forms.
fn pick_mov(insn: &Instruction) -> Option<Handler> {
    let (k0, k1) = (insn.op0_kind(), insn.op1_kind());
    if k0 == OpKind::Register {
        let w = gpr_size(insn.op0_register());
        let form = if k1 == OpKind::Register && gpr_size(insn.op1_register()) == w {
            0
        } else if is_immediate(k1) {
            1
        } else if k1 == OpKind::Memory && is_ea64(insn) && insn.memory_size().size() == w as usize {
            2
        } else {
            return None;
        };
        return Some(match (form, w) {
            (0, 1) => mov_form::<0, 1>,
            (0, 2) => mov_form::<0, 2>,
            (0, 4) => mov_form::<0, 4>,
            (0, 8) => mov_form::<0, 8>,
            (1, 1) => mov_form::<1, 1>,
            (1, 2) => mov_form::<1, 2>,
            (1, 4) => mov_form::<1, 4>,
            (1, 8) => mov_form::<1, 8>,
            (2, 1) => mov_form::<2, 1>,
            (2, 2) => mov_form::<2, 2>,
            (2, 4) => mov_form::<2, 4>,
            (2, 8) => mov_form::<2, 8>,
            _ => return None,
        });
    }
    if k0 == OpKind::Memory && k1 == OpKind::Register && is_ea64(insn) {
        let w = gpr_size(insn.op1_register());
        if insn.memory_size().size() != w as usize {
            return None;
        }
        return Some(match w {
            1 => mov_mr::<1>,
            2 => mov_mr::<2>,
            4 => mov_mr::<4>,
            8 => mov_mr::<8>,
            _ => return None,
        });
    }
    None
}

/// MOV to a `W`-byte register from a register (FORM 0), an immediate (1) or memory (2).
fn mov_form<const FORM: u8, const W: u8>(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let v = match FORM {
        0 => cpu.reg_w::<W>(insn.op1_register()),
        1 => insn.immediate(1),
        _ => {
            let off = cpu.ea64(insn);
            cpu.read_mem(bus, cpu.memory_segment(insn), off, W)?
        }
    };
    cpu.set_reg_w::<W>(insn.op0_register(), v);
    Ok(())
}

/// MOV from a `W`-byte register to memory with 64-bit addressing.
fn mov_mr<const W: u8>(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let v = cpu.reg_w::<W>(insn.op1_register());
    let off = cpu.ea64(insn);
    cpu.write_mem(bus, cpu.memory_segment(insn), off, W, v)
}

fn mov(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let v = cpu.read_op(bus, insn, 1)?;
    cpu.write_op(bus, insn, 0, v)
}

fn mov_to_sreg(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let seg = seg_of(insn.op0_register());
    if seg == Seg::Cs {
        return Err(Fault::ud());
    }
    let sel = cpu.read_op(bus, insn, 1)? as u16;
    cpu.load_data_segment(bus, seg, sel)?;
    if seg == Seg::Ss {
        cpu.mov_ss_shadow();
    }
    Ok(())
}

fn mov_from_sreg(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let sel = cpu.state.seg(seg_of(insn.op1_register())).selector as u64;
    match insn.op_kind(0) {
        OpKind::Register => {
            cpu.set_reg(insn.op0_register(), sel);
            Ok(())
        }
        _ => {
            let seg = cpu.memory_segment(insn);
            let off = cpu.effective_address(insn);
            cpu.write_mem(bus, seg, off, 2, sel)
        }
    }
}

fn movzx(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let v = cpu.read_op(bus, insn, 1)?;
    cpu.write_op(bus, insn, 0, v)
}

fn movsx(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let src_size = cpu.op_size(insn, 1);
    let v = sign_extend(cpu.read_op(bus, insn, 1)?, src_size);
    let dst_size = cpu.op_size(insn, 0);
    cpu.write_op(bus, insn, 0, v & size_mask(dst_size))
}

/// Sign-extends the low `size` bytes of `v` to 64 bits.
#[inline(always)]
pub(crate) fn sign_extend(v: u64, size: u8) -> u64 {
    match size {
        1 => v as i8 as i64 as u64,
        2 => v as i16 as i64 as u64,
        4 => v as i32 as i64 as u64,
        _ => v,
    }
}

fn xchg(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let a = cpu.loc(insn, 0);
    let b = cpu.loc(insn, 1);
    cpu.check_writable(bus, a, size)?;
    cpu.check_writable(bus, b, size)?;
    let va = cpu.read_loc(bus, a, size)?;
    let vb = cpu.read_loc(bus, b, size)?;
    // The memory side (if any) first, so a fault leaves registers untouched.
    if let Loc::Mem(..) = b {
        cpu.write_loc(bus, b, size, va)?;
        cpu.write_loc(bus, a, size, vb)
    } else {
        cpu.write_loc(bus, a, size, vb)?;
        cpu.write_loc(bus, b, size, va)
    }
}

/// XCHG with a memory operand, which is locked with or without the prefix (SDM XCHG): one
/// host `xchg` (see `atomic.rs`); device memory, ROM and page-crossing operands run `xchg`
/// serialised.
fn xchg_mem(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let (mem, reg) = if insn.op0_kind() == OpKind::Memory { (0, insn.op1_register()) } else { (1, insn.op0_register()) };
    let size = cpu.op_size(insn, mem);
    let Some(p) = cpu.locked_ptr_mem(bus, insn, size)? else {
        let _serial = split_lock();
        return xchg(cpu, bus, insn);
    };
    let v = cpu.reg(reg);
    // SAFETY: `locked_ptr` returned the host address of `size` bytes of writable guest RAM
    // inside one mapped page.
    let old = unsafe { swap(p, size, v) };
    cpu.set_reg(reg, old);
    Ok(())
}

fn lea(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let ea = cpu.effective_address(insn);
    cpu.set_reg(insn.op0_register(), ea);
    Ok(())
}

fn lea64(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let ea = cpu.ea64(insn);
    cpu.set_reg_w::<8>(insn.op0_register(), ea);
    Ok(())
}

/// PUSH/POP of a 64-bit GPR with an 8-byte stack slot (the 64-bit mode default).
fn is_push_pop_r64(insn: &Instruction) -> bool {
    insn.op0_kind() == OpKind::Register
        && gpr_size(insn.op0_register()) == 8
        && insn.stack_pointer_increment().unsigned_abs() == 8
}

fn push_r64(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let v = cpu.reg_w::<8>(insn.op0_register());
    cpu.push(bus, 8, v)
}

fn pop_r64(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let v = cpu.peek_stack(bus, 0, 8)?;
    cpu.adjust_sp(8);
    cpu.set_reg_w::<8>(insn.op0_register(), v);
    Ok(())
}

/// Operand size of a stack instruction (from its encoding's stack pointer increment).
#[inline(always)]
fn stack_size(insn: &Instruction) -> u8 {
    insn.stack_pointer_increment().unsigned_abs() as u8
}

fn push(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = stack_size(insn);
    if insn.op_kind(0) == OpKind::Register && insn.op0_register().is_segment_register() {
        // Recent processors write only the selector's 16 bits into the slot (SDM PUSH).
        let sel = cpu.state.seg(seg_of(insn.op0_register())).selector as u64;
        let mask = cpu.sp_mask();
        let rsp = cpu.state.gpr[reg::RSP];
        let sp = rsp.wrapping_sub(size as u64) & mask;
        cpu.write_mem(bus, Seg::Ss, sp, 2, sel)?;
        cpu.state.gpr[reg::RSP] = (rsp & !mask) | sp;
        return Ok(());
    }
    let v = cpu.read_op(bus, insn, 0)?;
    cpu.push(bus, size, v & size_mask(size))
}

fn pop(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = stack_size(insn);
    let v = cpu.peek_stack(bus, 0, size)?;
    match insn.op_kind(0) {
        OpKind::Register if insn.op0_register().is_segment_register() => {
            let seg = seg_of(insn.op0_register());
            cpu.load_data_segment(bus, seg, v as u16)?;
            cpu.adjust_sp(size as u64);
            if seg == Seg::Ss {
                cpu.mov_ss_shadow();
            }
            Ok(())
        }
        OpKind::Register => {
            cpu.adjust_sp(size as u64);
            cpu.set_reg(insn.op0_register(), v);
            Ok(())
        }
        _ => {
            // The destination address is computed with rSP already incremented.
            let saved = cpu.state.gpr[reg::RSP];
            cpu.adjust_sp(size as u64);
            let r = cpu.write_op(bus, insn, 0, v);
            if r.is_err() {
                cpu.state.gpr[reg::RSP] = saved;
            }
            r
        }
    }
}

fn pusha(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = if insn.mnemonic() == Mnemonic::Pushad { 4 } else { 2 };
    let saved = cpu.state.gpr;
    let sp = cpu.state.gpr[reg::RSP];
    let order = [reg::RAX, reg::RCX, reg::RDX, reg::RBX, reg::RSP, reg::RBP, reg::RSI, reg::RDI];
    for r in order {
        let v = if r == reg::RSP { sp } else { saved[r] };
        if let Err(e) = cpu.push(bus, size, v & size_mask(size)) {
            cpu.state.gpr = saved;
            return Err(e);
        }
    }
    Ok(())
}

fn popa(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = if insn.mnemonic() == Mnemonic::Popad { 4 } else { 2 };
    let saved = cpu.state.gpr;
    let order = [reg::RDI, reg::RSI, reg::RBP, reg::RSP, reg::RBX, reg::RDX, reg::RCX, reg::RAX];
    let mut vals = [0u64; 8];
    for (i, _) in order.iter().enumerate() {
        match cpu.pop(bus, size) {
            Ok(v) => vals[i] = v,
            Err(e) => {
                cpu.state.gpr = saved;
                return Err(e);
            }
        }
    }
    for (i, &r) in order.iter().enumerate() {
        if r == reg::RSP {
            continue; // the stored SP is skipped
        }
        let m = size_mask(size);
        let g = &mut cpu.state.gpr[r];
        *g = if size == 4 { vals[i] & m } else { (*g & !m) | (vals[i] & m) };
    }
    Ok(())
}

fn widen_acc(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let a = cpu.state.gpr[reg::RAX];
    match insn.mnemonic() {
        Mnemonic::Cbw => cpu.set_reg(Register::AX, a as i8 as i16 as u64),
        Mnemonic::Cwde => cpu.set_reg(Register::EAX, a as i16 as i32 as u32 as u64),
        _ => cpu.set_reg(Register::RAX, a as i32 as i64 as u64),
    }
    Ok(())
}

fn sign_to_dx(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let a = cpu.state.gpr[reg::RAX];
    match insn.mnemonic() {
        Mnemonic::Cwd => cpu.set_reg(Register::DX, if a & 0x8000 != 0 { 0xffff } else { 0 }),
        Mnemonic::Cdq => cpu.set_reg(Register::EDX, if a & 0x8000_0000 != 0 { 0xffff_ffff } else { 0 }),
        _ => cpu.set_reg(Register::RDX, if (a as i64) < 0 { !0 } else { 0 }),
    }
    Ok(())
}

fn bswap(cpu: &mut Cpu, _: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let r = insn.op0_register();
    let v = cpu.reg(r);
    let res = match gpr_size(r) {
        8 => v.swap_bytes(),
        4 => (v as u32).swap_bytes() as u64,
        // BSWAP of a 16-bit register is undefined; Intel and AMD processors produce zero.
        _ => 0,
    };
    cpu.set_reg(r, res);
    Ok(())
}

fn xlat(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let v = cpu.read_op(bus, insn, 0)?;
    cpu.set_reg(Register::AL, v);
    Ok(())
}

fn lahf(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    let f = cpu.rflags() & 0xff;
    cpu.set_reg(Register::AH, f);
    Ok(())
}

fn sahf(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    let ah = cpu.reg(Register::AH);
    let mask = flags::SF | flags::ZF | flags::AF | flags::PF | flags::CF;
    cpu.set_arith_flags(mask, ah);
    Ok(())
}

fn cmov(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    // The source is read (and may fault) whatever the condition; a 32-bit destination is
    // zero-extended even when nothing moves.
    let v = cpu.read_op(bus, insn, 1)?;
    let r = insn.op0_register();
    let v = if cpu.condition(insn.condition_code()) { v } else { cpu.reg(r) };
    cpu.set_reg(r, v);
    Ok(())
}

fn setcc(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let v = cpu.condition(insn.condition_code()) as u64;
    cpu.write_op(bus, insn, 0, v)
}

fn enter(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = stack_size_of_enter(cpu, insn);
    let alloc = insn.immediate16() as u64;
    let level = insn.immediate8_2nd() as u64 & 31;
    let saved = cpu.state.gpr;
    let r = (|| {
        let bp_mask = size_mask(size);
        let rbp = cpu.state.gpr[reg::RBP];
        cpu.push(bus, size, rbp & bp_mask)?;
        let frame = cpu.state.gpr[reg::RSP] & cpu.sp_mask();
        if level > 0 {
            let sp_mask = cpu.sp_mask();
            let mut bp = rbp;
            for _ in 1..level {
                bp = bp.wrapping_sub(size as u64);
                let v = cpu.read_mem(bus, Seg::Ss, bp & sp_mask, size)?;
                cpu.push(bus, size, v)?;
            }
            cpu.push(bus, size, frame)?;
        }
        // The final rSP must be writable: probe the new top of stack.
        let new_sp = cpu.state.gpr[reg::RSP].wrapping_sub(alloc) & cpu.sp_mask();
        if alloc > 0 {
            let lin = cpu.linear(Seg::Ss, new_sp, 1, crate::mmu::Access::Write)?;
            let ctx = cpu.data_ctx();
            cpu.probe_write(bus, lin, 1, ctx)?;
        }
        let m = bp_mask;
        cpu.state.gpr[reg::RBP] = (rbp & !m) | (frame & m);
        cpu.adjust_sp(0u64.wrapping_sub(alloc));
        Ok(())
    })();
    if r.is_err() {
        cpu.state.gpr = saved;
    }
    r
}

fn stack_size_of_enter(_cpu: &Cpu, insn: &Instruction) -> u8 {
    match insn.code() {
        iced_x86::Code::Enterw_imm16_imm8 => 2,
        iced_x86::Code::Enterd_imm16_imm8 => 4,
        _ => 8,
    }
}

fn leave(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size: u8 = match insn.code() {
        iced_x86::Code::Leavew => 2,
        iced_x86::Code::Leaved => 4,
        _ => 8,
    };
    let saved = cpu.state.gpr[reg::RSP];
    let mask = cpu.sp_mask();
    let rbp = cpu.state.gpr[reg::RBP];
    cpu.state.gpr[reg::RSP] = (saved & !mask) | (rbp & mask);
    match cpu.pop(bus, size) {
        Ok(v) => {
            let m = size_mask(size);
            let g = &mut cpu.state.gpr[reg::RBP];
            *g = if size == 2 { (*g & !m) | (v & m) } else { v & m };
            Ok(())
        }
        Err(e) => {
            cpu.state.gpr[reg::RSP] = saved;
            Err(e)
        }
    }
}

fn load_far_pointer(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, seg: Seg) -> Result<()> {
    let r = insn.op0_register();
    let size = gpr_size(r);
    let mseg = cpu.memory_segment(insn);
    let off = cpu.effective_address(insn);
    let offset = cpu.read_mem(bus, mseg, off, size)?;
    let sel = cpu.read_mem(bus, mseg, off.wrapping_add(size as u64), 2)? as u16;
    cpu.load_data_segment(bus, seg, sel)?;
    cpu.set_reg(r, offset);
    if seg == Seg::Ss {
        cpu.interrupt_shadow_next();
    }
    Ok(())
}

impl Cpu {
    /// Blocks interrupts until after the next instruction (MOV SS, POP SS, STI).
    pub(crate) fn interrupt_shadow_next(&mut self) {
        self.interrupt_shadow = true;
        self.end_block = true;
    }
}
