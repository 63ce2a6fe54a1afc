//! Implicit stack accesses: PUSH/POP on SS:rSP with the stack-address size, and pushes onto
//! a stack that is not yet loaded (interrupt and call-gate stack switches).

use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::mmu::Ctx;
use crate::state::{reg::RSP, seg_attr::*, Seg, Segment};
use crate::Cpu;

/// A stack being built before it becomes the current one: its segment cache, pointer and
/// address width. Writes check the segment's limit and fault with #SS(`error`).
pub(crate) struct PendingStack {
    pub seg: Segment,
    pub sp: u64,
    /// 2, 4 or 8: the stack-address size.
    pub width: u8,
    pub error: u32,
    pub ctx: Ctx,
    pub long: bool,
}

impl PendingStack {
    fn mask(&self) -> u64 {
        match self.width {
            2 => 0xffff,
            4 => 0xffff_ffff,
            _ => !0,
        }
    }

    pub fn push(&mut self, cpu: &mut Cpu, bus: &mut dyn CpuBus, size: u8, value: u64) -> Result<()> {
        let sp = self.sp.wrapping_sub(size as u64) & self.mask();
        let lin = if self.long {
            if !crate::segment::is_canonical(sp) {
                return Err(Fault::ss(self.error));
            }
            sp
        } else {
            check_limit(&self.seg, sp, size).map_err(|_| Fault::ss(self.error))?;
            self.seg.base.wrapping_add(sp) & 0xffff_ffff
        };
        cpu.write_lin(bus, lin, size, value, self.ctx)?;
        self.sp = sp;
        Ok(())
    }
}

/// Limit check of `size` bytes at `offset` in a data segment (expand-up or expand-down).
pub(crate) fn check_limit(s: &Segment, offset: u64, size: u8) -> core::result::Result<(), ()> {
    let last = offset.wrapping_add(size as u64 - 1);
    if s.attrs & (TYPE_CODE | TYPE_EXPAND_DOWN) == TYPE_EXPAND_DOWN {
        let upper: u64 = if s.default_big() { 0xffff_ffff } else { 0xffff };
        if offset <= s.limit as u64 || last > upper {
            return Err(());
        }
    } else if last > s.limit as u64 || last < offset {
        return Err(());
    }
    Ok(())
}

impl Cpu {
    #[inline(always)]
    pub(crate) fn sp_mask(&self) -> u64 {
        match self.state.stack_width() {
            16 => 0xffff,
            32 => 0xffff_ffff,
            _ => !0,
        }
    }

    /// Pushes `size` bytes; RSP changes only if the write succeeds.
    #[inline]
    pub fn push(&mut self, bus: &mut dyn CpuBus, size: u8, value: u64) -> Result<()> {
        let mask = self.sp_mask();
        let rsp = self.state.gpr[RSP];
        let sp = rsp.wrapping_sub(size as u64) & mask;
        self.write_mem(bus, Seg::Ss, sp, size, value)?;
        self.state.gpr[RSP] = (rsp & !mask) | sp;
        Ok(())
    }

    /// Pops `size` bytes.
    #[inline]
    pub fn pop(&mut self, bus: &mut dyn CpuBus, size: u8) -> Result<u64> {
        let v = self.peek_stack(bus, 0, size)?;
        let mask = self.sp_mask();
        let rsp = self.state.gpr[RSP];
        self.state.gpr[RSP] = (rsp & !mask) | (rsp.wrapping_add(size as u64) & mask);
        Ok(v)
    }

    /// Reads `size` bytes at SS:[rSP + offset] without popping.
    #[inline]
    pub fn peek_stack(&mut self, bus: &mut dyn CpuBus, offset: u64, size: u8) -> Result<u64> {
        let mask = self.sp_mask();
        let sp = self.state.gpr[RSP].wrapping_add(offset) & mask;
        self.read_mem(bus, Seg::Ss, sp, size)
    }

    /// Adds to rSP with the stack-address size.
    #[inline]
    pub fn adjust_sp(&mut self, delta: u64) {
        let mask = self.sp_mask();
        let rsp = self.state.gpr[RSP];
        self.state.gpr[RSP] = (rsp & !mask) | (rsp.wrapping_add(delta) & mask);
    }
}
