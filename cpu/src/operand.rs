//! Operand access for instruction handlers: registers by iced `Register`, effective
//! addresses, and generic read/write of an instruction's operand `i`.

use crate::bus::CpuBus;
use crate::exception::Result;
use crate::mmu::Access;
use crate::state::Seg;
use crate::Cpu;
use iced_x86::{Instruction, OpKind, Register};

// Shared with the translator, which cannot depend on this crate.
pub use ferrite_jit::operand::{address_mask, gpr_size};

/// The `Seg` of an iced segment register.
#[inline(always)]
pub fn seg_of(r: Register) -> Seg {
    match r {
        Register::ES => Seg::Es,
        Register::CS => Seg::Cs,
        Register::SS => Seg::Ss,
        Register::FS => Seg::Fs,
        Register::GS => Seg::Gs,
        _ => Seg::Ds,
    }
}

/// A resolved operand location, for read-modify-write instructions.
#[derive(Clone, Copy, Debug)]
pub enum Loc {
    Reg(Register),
    /// Segment and offset of a memory operand.
    Mem(Seg, u64),
}

/// Whether an operand kind is an immediate.
#[inline(always)]
pub fn is_immediate(k: OpKind) -> bool {
    matches!(
        k,
        OpKind::Immediate8
            | OpKind::Immediate8_2nd
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

/// Whether the explicit memory operand uses 64-bit addressing with only 64-bit GPRs (or
/// RIP) as base and index, so `ea64` computes its offset. Decided at decode time.
pub fn is_ea64(insn: &Instruction) -> bool {
    let base = insn.memory_base();
    let index = insn.memory_index();
    address_mask(insn) == u64::MAX
        && (gpr_size(base) == 8 || matches!(base, Register::None | Register::RIP))
        && (gpr_size(index) == 8 || index == Register::None)
}

/// `gpr` index of a general-purpose register of `W` bytes (2, 4 or 8); masked so it never
/// indexes out of bounds. Handlers specialised by width at decode time use it instead of
/// `reg`/`set_reg`'s range dispatch (iced numbers AX..R15W 21.., EAX.. 37.., RAX.. 53..).
#[inline(always)]
fn gpr_index<const W: u8>(r: Register) -> usize {
    let first = match W {
        2 => Register::AX,
        4 => Register::EAX,
        _ => Register::RAX,
    };
    (r as usize).wrapping_sub(first as usize) & 15
}

impl Cpu {
    /// `reg` for a GPR known (at decode time) to be `W` bytes wide.
    #[inline(always)]
    pub(crate) fn reg_w<const W: u8>(&self, r: Register) -> u64 {
        if W == 1 {
            return self.reg(r);
        }
        self.state.gpr[gpr_index::<W>(r)] & crate::flags::size_mask(W)
    }

    /// `set_reg` for a GPR known (at decode time) to be `W` bytes wide.
    #[inline(always)]
    pub(crate) fn set_reg_w<const W: u8>(&mut self, r: Register, v: u64) {
        match W {
            1 => self.set_reg(r, v),
            2 => {
                let x = &mut self.state.gpr[gpr_index::<2>(r)];
                *x = (*x & !0xffff) | (v & 0xffff);
            }
            4 => self.state.gpr[gpr_index::<4>(r)] = v & 0xffff_ffff,
            _ => self.state.gpr[gpr_index::<8>(r)] = v,
        }
    }

    /// `effective_address` for an operand accepted by `is_ea64`: no address-size masking,
    /// and base/index are looked up without dispatch (None and RIP fall outside 53..=68;
    /// iced folds RIP into the displacement).
    #[inline(always)]
    pub(crate) fn ea64(&self, insn: &Instruction) -> u64 {
        let g = &self.state.gpr;
        let mut off = insn.memory_displacement64();
        let b = (insn.memory_base() as usize).wrapping_sub(Register::RAX as usize);
        if b < 16 {
            off = off.wrapping_add(g[b]);
        }
        let x = (insn.memory_index() as usize).wrapping_sub(Register::RAX as usize);
        if x < 16 {
            off = off.wrapping_add(g[x] << insn.memory_index_scale().trailing_zeros());
        }
        off
    }

    #[inline(always)]
    pub fn reg(&self, r: Register) -> u64 {
        let n = r as u32;
        let g = &self.state.gpr;
        match n {
            1..=4 => g[(n - 1) as usize] & 0xff,
            5..=8 => (g[(n - 5) as usize] >> 8) & 0xff,
            9..=20 => g[(n - 5) as usize] & 0xff,
            21..=36 => g[(n - 21) as usize] & 0xffff,
            37..=52 => g[(n - 37) as usize] & 0xffff_ffff,
            53..=68 => g[(n - 53) as usize],
            69 => self.state.rip & 0xffff_ffff,
            70 => self.state.rip,
            71..=76 => self.state.seg[(n - 71) as usize].selector as u64,
            _ => 0,
        }
    }

    /// Writes a general-purpose register with x86 merge rules: 8/16-bit writes keep the
    /// other bits, 32-bit writes zero the upper half.
    #[inline(always)]
    pub fn set_reg(&mut self, r: Register, v: u64) {
        let n = r as u32;
        let g = &mut self.state.gpr;
        match n {
            1..=4 => {
                let x = &mut g[(n - 1) as usize];
                *x = (*x & !0xff) | (v & 0xff);
            }
            5..=8 => {
                let x = &mut g[(n - 5) as usize];
                *x = (*x & !0xff00) | ((v & 0xff) << 8);
            }
            9..=20 => {
                let x = &mut g[(n - 5) as usize];
                *x = (*x & !0xff) | (v & 0xff);
            }
            21..=36 => {
                let x = &mut g[(n - 21) as usize];
                *x = (*x & !0xffff) | (v & 0xffff);
            }
            37..=52 => g[(n - 37) as usize] = v & 0xffff_ffff,
            53..=68 => g[(n - 53) as usize] = v,
            _ => {}
        }
    }

    /// Offset (effective address) of the instruction's explicit memory operand.
    #[inline]
    pub fn effective_address(&self, insn: &Instruction) -> u64 {
        let base = insn.memory_base();
        let index = insn.memory_index();
        let mut off = insn.memory_displacement64();
        if !matches!(base, Register::None | Register::RIP | Register::EIP) {
            off = off.wrapping_add(self.reg(base));
        }
        if index != Register::None {
            off = off.wrapping_add(self.reg(index) << insn.memory_index_scale().trailing_zeros());
        }
        off & address_mask(insn)
    }

    /// Segment of the explicit memory operand (default or override).
    #[inline(always)]
    pub fn memory_segment(&self, insn: &Instruction) -> Seg {
        seg_of(insn.memory_segment())
    }

    /// Size in bytes of operand `i`.
    #[inline]
    pub fn op_size(&self, insn: &Instruction, i: u32) -> u8 {
        match insn.op_kind(i) {
            OpKind::Register => gpr_size(insn.op_register(i)),
            OpKind::Immediate8 | OpKind::Immediate8_2nd => 1,
            OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
            OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
            OpKind::Immediate64 | OpKind::Immediate8to64 | OpKind::Immediate32to64 => 8,
            _ => insn.memory_size().size() as u8,
        }
    }

    /// Resolves operand `i` to a register or a memory location.
    #[inline]
    pub fn loc(&self, insn: &Instruction, i: u32) -> Loc {
        match insn.op_kind(i) {
            OpKind::Register => Loc::Reg(insn.op_register(i)),
            _ => Loc::Mem(self.memory_segment(insn), self.effective_address(insn)),
        }
    }

    #[inline]
    pub fn read_loc(&mut self, bus: &mut dyn CpuBus, loc: Loc, size: u8) -> Result<u64> {
        match loc {
            Loc::Reg(r) => Ok(self.reg(r)),
            Loc::Mem(seg, off) => self.read_mem(bus, seg, off, size),
        }
    }

    #[inline]
    pub fn write_loc(&mut self, bus: &mut dyn CpuBus, loc: Loc, size: u8, v: u64) -> Result<()> {
        match loc {
            Loc::Reg(r) => {
                self.set_reg(r, v);
                Ok(())
            }
            Loc::Mem(seg, off) => self.write_mem(bus, seg, off, size, v),
        }
    }

    /// Checks that a memory location is writable before a read-modify-write reads it, so the
    /// fault a write would raise is raised first (as on hardware, where RMW operands are
    /// checked for write access up front).
    #[inline]
    pub fn check_writable(&mut self, bus: &mut dyn CpuBus, loc: Loc, size: u8) -> Result<()> {
        if let Loc::Mem(seg, off) = loc {
            let lin = self.linear(seg, off, size, Access::Write)?;
            let ctx = self.data_ctx();
            self.probe_write(bus, lin, size, ctx)?;
        }
        Ok(())
    }

    /// Reads operand `i` (register, immediate or memory), zero-extended.
    #[inline]
    pub fn read_op(&mut self, bus: &mut dyn CpuBus, insn: &Instruction, i: u32) -> Result<u64> {
        match insn.op_kind(i) {
            OpKind::Register => Ok(self.reg(insn.op_register(i))),
            OpKind::Immediate8
            | OpKind::Immediate8_2nd
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => Ok(insn.immediate(i)),
            _ => {
                let size = insn.memory_size().size() as u8;
                let seg = self.memory_segment(insn);
                let off = self.effective_address(insn);
                self.read_mem(bus, seg, off, size)
            }
        }
    }

    /// Writes operand `i` (register or memory).
    #[inline]
    pub fn write_op(&mut self, bus: &mut dyn CpuBus, insn: &Instruction, i: u32, v: u64) -> Result<()> {
        match insn.op_kind(i) {
            OpKind::Register => {
                self.set_reg(insn.op_register(i), v);
                Ok(())
            }
            _ => {
                let size = insn.memory_size().size() as u8;
                let seg = self.memory_segment(insn);
                let off = self.effective_address(insn);
                self.write_mem(bus, seg, off, size, v)
            }
        }
    }
}
