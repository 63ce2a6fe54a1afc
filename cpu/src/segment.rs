//! Segmentation: effective → linear address with limit and type checks, descriptor table
//! reads, and segment register loads with the protected-mode checks (SDM Vol. 3, chapter 3
//! and 5; the MOV/POP Sreg pseudo-code in Vol. 2).

use crate::bus::CpuBus;
use crate::exception::{vector, Fault, Result};
use crate::mmu::{Access, Ctx};
use crate::state::{seg_attr::*, Seg, Segment};
use crate::Cpu;

/// A raw 8-byte segment descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor(pub u64);

impl Descriptor {
    pub fn base(&self) -> u64 {
        let d = self.0;
        ((d >> 16) & 0xff_ffff) | ((d >> 32) & 0xff00_0000)
    }
    /// Limit in bytes (granularity applied).
    pub fn limit(&self) -> u32 {
        let d = self.0;
        let raw = ((d & 0xffff) | ((d >> 32) & 0xf_0000)) as u32;
        if self.attrs() & G != 0 {
            (raw << 12) | 0xfff
        } else {
            raw
        }
    }
    /// Attributes in the `Segment::attrs` layout.
    pub fn attrs(&self) -> u32 {
        let d = self.0;
        (((d >> 40) & 0xff) | ((d >> 40) & 0xf000)) as u32
    }
    pub fn present(&self) -> bool {
        self.attrs() & P != 0
    }
    pub fn dpl(&self) -> u8 {
        ((self.attrs() & DPL_MASK) >> DPL_SHIFT) as u8
    }
    pub fn is_system(&self) -> bool {
        self.attrs() & S == 0
    }
    pub fn typ(&self) -> u32 {
        self.attrs() & TYPE_MASK
    }
    pub fn to_segment(&self, selector: u16) -> Segment {
        Segment { selector, attrs: self.attrs(), limit: self.limit(), base: self.base() }
    }
}

/// System descriptor types (SDM Vol. 3, Table 3-2).
pub mod sys_type {
    pub const LDT: u32 = 2;
    pub const TSS16_AVAIL: u32 = 1;
    pub const TSS16_BUSY: u32 = 3;
    pub const CALL_GATE16: u32 = 4;
    pub const TASK_GATE: u32 = 5;
    pub const INT_GATE16: u32 = 6;
    pub const TRAP_GATE16: u32 = 7;
    pub const TSS_AVAIL: u32 = 9;
    pub const TSS_BUSY: u32 = 11;
    pub const CALL_GATE: u32 = 12;
    pub const INT_GATE: u32 = 14;
    pub const TRAP_GATE: u32 = 15;
}

/// Selector error code (index, TI and RPL bits kept; the EXT bit is added by delivery).
pub fn sel_code(selector: u16) -> u32 {
    (selector & 0xfffc) as u32
}

impl Cpu {
    /// Effective address → linear address for a data access of `size` bytes, with the
    /// segment's limit and type checks (none in 64-bit mode except FS/GS base and canonical).
    #[inline]
    pub fn linear(&self, seg: Seg, offset: u64, size: u8, access: Access) -> Result<u64> {
        let s = &self.state.seg[seg as usize];
        if self.state.in_64bit() {
            let base = if matches!(seg, Seg::Fs | Seg::Gs) { s.base } else { 0 };
            let lin = base.wrapping_add(offset);
            if !is_canonical(lin) || !is_canonical(lin.wrapping_add(size as u64 - 1)) {
                return Err(if seg == Seg::Ss { Fault::ss(0) } else { Fault::gp0() });
            }
            return Ok(lin);
        }
        let fault = || if seg == Seg::Ss { Fault::ss(0) } else { Fault::gp0() };
        if self.state.protected() && !self.state.v86() {
            if s.unusable() {
                return Err(fault());
            }
            let typ = s.attrs & TYPE_MASK;
            match access {
                Access::Write if typ & TYPE_CODE != 0 || typ & TYPE_WRITABLE == 0 => return Err(fault()),
                Access::Read if typ & TYPE_CODE != 0 && typ & TYPE_WRITABLE == 0 => return Err(fault()),
                _ => {}
            }
        }
        let last = offset.wrapping_add(size as u64 - 1);
        let expand_down = s.attrs & (TYPE_CODE | TYPE_EXPAND_DOWN) == TYPE_EXPAND_DOWN && self.state.protected();
        if expand_down {
            let upper: u64 = if s.default_big() { 0xffff_ffff } else { 0xffff };
            if offset <= s.limit as u64 || last > upper || last < offset {
                return Err(fault());
            }
        } else if last > s.limit as u64 || last < offset {
            return Err(fault());
        }
        Ok(s.base.wrapping_add(offset) & 0xffff_ffff)
    }

    /// Reads `size` bytes at seg:offset (an explicit access at the current privilege).
    #[inline]
    pub fn read_mem(&mut self, bus: &mut dyn CpuBus, seg: Seg, offset: u64, size: u8) -> Result<u64> {
        let lin = self.linear(seg, offset, size, Access::Read)?;
        let ctx = self.data_ctx();
        self.read_lin(bus, lin, size, ctx)
    }

    #[inline]
    pub fn write_mem(&mut self, bus: &mut dyn CpuBus, seg: Seg, offset: u64, size: u8, value: u64) -> Result<()> {
        let lin = self.linear(seg, offset, size, Access::Write)?;
        let ctx = self.data_ctx();
        self.write_lin(bus, lin, size, value, ctx)
    }

    /// Reads the descriptor a selector names from the GDT or LDT. `None` for a null selector.
    /// Out-of-limit selectors fault with `vector` (#GP or #TS) and the selector's error code.
    pub fn read_descriptor(&mut self, bus: &mut dyn CpuBus, selector: u16, fault_vector: u8) -> Result<Descriptor> {
        let (base, limit) = if selector & 4 != 0 {
            // The LDTR cache decides, not its selector: after reset it is usable (base 0, limit
            // FFFFH) with selector 0; LLDT of a null selector marks it unusable.
            if self.state.ldtr.unusable() {
                return Err(Fault::exc_code(fault_vector, sel_code(selector)));
            }
            (self.state.ldtr.base, self.state.ldtr.limit as u64)
        } else {
            (self.state.gdtr.base, self.state.gdtr.limit as u64)
        };
        let off = (selector & 0xfff8) as u64;
        if off + 7 > limit {
            return Err(Fault::exc_code(fault_vector, sel_code(selector)));
        }
        let lin = base.wrapping_add(off) & self.lin_mask();
        Ok(Descriptor(self.read_lin(bus, lin, 8, Ctx::Supervisor)?))
    }

    /// Reads the upper half of a 16-byte long-mode system descriptor.
    pub fn read_descriptor_high(&mut self, bus: &mut dyn CpuBus, selector: u16, fault_vector: u8) -> Result<u64> {
        let (base, limit) = if selector & 4 != 0 {
            (self.state.ldtr.base, self.state.ldtr.limit as u64)
        } else {
            (self.state.gdtr.base, self.state.gdtr.limit as u64)
        };
        let off = (selector & 0xfff8) as u64 + 8;
        if off + 7 > limit {
            return Err(Fault::exc_code(fault_vector, sel_code(selector)));
        }
        self.read_lin(bus, base.wrapping_add(off), 8, Ctx::Supervisor)
    }

    /// Sets the accessed bit of a code/data descriptor in its table.
    pub fn set_descriptor_accessed(&mut self, bus: &mut dyn CpuBus, selector: u16, desc: Descriptor) -> Result<()> {
        if desc.0 & (1 << 40) != 0 {
            return Ok(());
        }
        let base = if selector & 4 != 0 { self.state.ldtr.base } else { self.state.gdtr.base };
        let lin = base.wrapping_add((selector & 0xfff8) as u64 + 5) & self.lin_mask();
        let b = self.read_lin(bus, lin, 1, Ctx::Supervisor)?;
        self.write_lin(bus, lin, 1, b | 1, Ctx::Supervisor)
    }

    /// Writes a whole descriptor back (busy bits of TSS descriptors).
    pub fn write_descriptor(&mut self, bus: &mut dyn CpuBus, selector: u16, desc: Descriptor) -> Result<()> {
        let base = if selector & 4 != 0 { self.state.ldtr.base } else { self.state.gdtr.base };
        let lin = base.wrapping_add((selector & 0xfff8) as u64) & self.lin_mask();
        self.write_lin(bus, lin, 8, desc.0, Ctx::Supervisor)
    }

    /// MOV/POP/LxS to a data or stack segment register (not CS), in any mode.
    pub fn load_data_segment(&mut self, bus: &mut dyn CpuBus, seg: Seg, selector: u16) -> Result<()> {
        if !self.state.protected() || self.state.v86() {
            let v86 = self.state.v86();
            let s = &mut self.state.seg[seg as usize];
            s.selector = selector;
            s.base = (selector as u64) << 4;
            if v86 {
                // In virtual-8086 mode every segment is a 64 KiB read/write data segment at DPL 3.
                s.limit = 0xffff;
                s.attrs = P | S | TYPE_WRITABLE | TYPE_ACCESSED | (3 << DPL_SHIFT);
            } else if seg == Seg::Ss || s.unusable() {
                // Real mode keeps the cached limit (unreal mode); a stale null attr is revived.
                s.attrs = (s.attrs & !(UNUSABLE | DPL_MASK)) | P | S | TYPE_WRITABLE;
            }
            return Ok(());
        }
        let cpl = self.state.cpl();
        let rpl = (selector & 3) as u8;
        if selector & 0xfffc == 0 {
            if seg == Seg::Ss && (!self.state.in_64bit() || rpl != cpl) {
                return Err(Fault::gp0());
            }
            let s = &mut self.state.seg[seg as usize];
            s.selector = selector;
            s.attrs = UNUSABLE | if seg == Seg::Ss { (cpl as u32) << DPL_SHIFT } else { 0 };
            s.base = 0;
            s.limit = 0;
            return Ok(());
        }
        let desc = self.read_descriptor(bus, selector, vector::GP)?;
        let a = desc.attrs();
        let dpl = desc.dpl();
        if seg == Seg::Ss {
            let writable_data = a & S != 0 && a & TYPE_CODE == 0 && a & TYPE_WRITABLE != 0;
            if rpl != cpl || dpl != cpl || !writable_data {
                return Err(Fault::gp(sel_code(selector)));
            }
            if !desc.present() {
                return Err(Fault::ss(sel_code(selector)));
            }
        } else {
            let readable = a & S != 0 && (a & TYPE_CODE == 0 || a & TYPE_WRITABLE != 0);
            if !readable {
                return Err(Fault::gp(sel_code(selector)));
            }
            let conforming_code = a & TYPE_CODE != 0 && a & TYPE_EXPAND_DOWN != 0;
            if !conforming_code && (rpl > dpl || cpl > dpl) {
                return Err(Fault::gp(sel_code(selector)));
            }
            if !desc.present() {
                return Err(Fault::np(sel_code(selector)));
            }
        }
        self.set_descriptor_accessed(bus, selector, desc)?;
        let mut s = desc.to_segment(selector);
        s.attrs |= TYPE_ACCESSED;
        self.state.seg[seg as usize] = s;
        Ok(())
    }

    /// After a privilege change to an outer level (RET/IRET), data segments the new CPL may
    /// not use are nulled (SDM Vol. 2, RET "RETURN-TO-OUTER-PRIVILEGE-LEVEL").
    pub(crate) fn null_inaccessible_segments(&mut self) {
        let cpl = self.state.cpl();
        for seg in [Seg::Es, Seg::Ds, Seg::Fs, Seg::Gs] {
            let s = &mut self.state.seg[seg as usize];
            let conforming_code = s.attrs & (TYPE_CODE | TYPE_EXPAND_DOWN) == (TYPE_CODE | TYPE_EXPAND_DOWN);
            if (s.is_code() || s.attrs & S != 0) && !conforming_code && s.dpl() < cpl && !s.unusable() {
                s.selector = 0;
                s.attrs = UNUSABLE;
                // FS/GS bases survive in long mode; harmless elsewhere.
            }
        }
    }
}

pub fn is_canonical(addr: u64) -> bool {
    ((addr as i64) << 16 >> 16) as u64 == addr
}
