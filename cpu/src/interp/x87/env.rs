//! FSTENV/FNSTENV, FLDENV, FSAVE/FNSAVE, FRSTOR: the 14/28-byte environment in its real-mode
//! and protected-mode layouts (SDM Vol. 1, Figures 8-9 to 8-12), followed by the registers in
//! ST order for FSAVE/FRSTOR.

use super::control::{init, sanitize_fcw};
use super::{begin, begin_nowait, mem, update_summary};
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::state::FpuState;
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<super::Handler> {
    use Mnemonic::*;
    Some(match insn.mnemonic() {
        Fstenv | Fnstenv => fstenv,
        Fldenv => fldenv,
        Fsave | Fnsave => fsave,
        Frstor => frstor,
        _ => return None,
    })
}

/// Layout of the environment: 32-bit operand size (28 bytes) or 16-bit (14), and whether the
/// real-mode form (linear instruction/data pointers) applies (real and virtual-8086 mode).
#[derive(Clone, Copy)]
struct Layout {
    wide: bool,
    real: bool,
}

impl Layout {
    fn of(cpu: &Cpu, insn: &Instruction) -> Layout {
        let wide = insn.memory_size().size() == 28 || insn.memory_size().size() == 108;
        Layout { wide, real: !cpu.state.protected() || cpu.state.v86() }
    }
    fn len(self) -> usize {
        if self.wide {
            28
        } else {
            14
        }
    }
}

/// Serializes the environment. Reserved halves of the 32-bit layout read as ones.
fn store_env(f: &FpuState, l: Layout) -> Vec<u8> {
    let mut w: Vec<u32> = Vec::with_capacity(7);
    let fop = (f.fop & 0x7ff) as u32;
    let tw = f.full_tag_word() as u32;
    if l.real {
        let ip = ((f.fcs as u32) << 4).wrapping_add(f.fip as u32);
        let dp = ((f.fds as u32) << 4).wrapping_add(f.fdp as u32);
        w.extend([f.fcw as u32, f.fsw as u32, tw, ip & 0xffff, (ip >> 16) << 12 | fop, dp & 0xffff, (dp >> 16) << 12]);
    } else {
        w.extend([f.fcw as u32, f.fsw as u32, tw, f.fip as u32, f.fcs as u32 | fop << 16, f.fdp as u32, f.fds as u32]);
    }
    let mut out = Vec::with_capacity(l.len());
    for (i, v) in w.into_iter().enumerate() {
        if l.wide {
            let reserved_high = match (l.real, i) {
                (_, 0..=2) | (false, 6) => 0xffff_0000,
                (true, 3) | (true, 5) => 0xffff_0000,
                _ => 0,
            };
            out.extend_from_slice(&(v | reserved_high).to_le_bytes());
        } else {
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
    }
    out
}

/// Loads an environment image into `f` (recomputing ES/B from the loaded flags and masks).
fn load_env(f: &mut FpuState, b: &[u8], l: Layout) {
    let word = |i: usize| -> u32 {
        if l.wide {
            u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
        } else {
            u16::from_le_bytes([b[2 * i], b[2 * i + 1]]) as u32
        }
    };
    f.fcw = sanitize_fcw(word(0) as u16);
    f.fsw = word(1) as u16;
    f.ftw = word(2) as u16;
    if l.real {
        // The 16-bit real-mode layout carries 20-bit pointers, the 32-bit one 32-bit pointers.
        let hi_mask = if l.wide { 0xffff } else { 0xf };
        f.fip = ((word(3) & 0xffff) | ((word(4) >> 12) & hi_mask) << 16) as u64;
        f.fop = (word(4) & 0x7ff) as u16;
        f.fdp = ((word(5) & 0xffff) | ((word(6) >> 12) & hi_mask) << 16) as u64;
        f.fcs = 0;
        f.fds = 0;
    } else {
        f.fip = word(3) as u64;
        f.fcs = word(4) as u16;
        f.fop = if l.wide { ((word(4) >> 16) & 0x7ff) as u16 } else { 0 };
        f.fdp = word(5) as u64;
        f.fds = word(6) as u16;
    }
    update_summary(f);
}

fn fstenv(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    if insn.mnemonic() == Mnemonic::Fnstenv {
        begin_nowait(cpu)?;
    } else {
        begin(cpu)?;
    }
    let l = Layout::of(cpu, insn);
    let img = store_env(&cpu.state.fpu, l);
    mem::write_op(cpu, bus, insn, &img)?;
    // FSTENV then masks every exception.
    cpu.state.fpu.fcw |= 0x3f;
    Ok(())
}

fn fldenv(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let l = Layout::of(cpu, insn);
    let mut b = [0u8; 28];
    let (seg, off) = mem::operand(cpu, insn);
    mem::read_bytes(cpu, bus, seg, off, &mut b[..l.len()])?;
    load_env(&mut cpu.state.fpu, &b, l);
    Ok(())
}

fn fsave(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    if insn.mnemonic() == Mnemonic::Fnsave {
        begin_nowait(cpu)?;
    } else {
        begin(cpu)?;
    }
    let l = Layout::of(cpu, insn);
    let f = &cpu.state.fpu;
    let mut img = store_env(f, l);
    for i in 0..8 {
        img.extend_from_slice(&f.st(i).to_bytes());
    }
    mem::write_op(cpu, bus, insn, &img)?;
    init(&mut cpu.state.fpu);
    Ok(())
}

fn frstor(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    begin(cpu)?;
    let l = Layout::of(cpu, insn);
    let mut b = [0u8; 108];
    let n = l.len() + 80;
    let (seg, off) = mem::operand(cpu, insn);
    mem::read_bytes(cpu, bus, seg, off, &mut b[..n])?;
    let f = &mut cpu.state.fpu;
    load_env(f, &b, l);
    for i in 0..8 {
        let at = l.len() + 10 * i;
        let r = f.phys(i);
        f.st[r].copy_from_slice(&b[at..at + 10]);
    }
    Ok(())
}
