//! The register stack on `FpuState`: TOP, tags, ST(i) access, push/pop (SDM Vol. 1, 8.1),
//! and the MMX view of the registers (SDM Vol. 1, 9.5).

use super::float::{Class, F80};
use crate::state::FpuState;

/// FSW bits (SDM Vol. 1, Figure 8-4).
pub mod fsw {
    /// Exception summary: an unmasked exception is pending.
    pub const ES: u16 = 1 << 7;
    pub const C0: u16 = 1 << 8;
    pub const C1: u16 = 1 << 9;
    pub const C2: u16 = 1 << 10;
    pub const TOP_SHIFT: u32 = 11;
    pub const TOP: u16 = 7 << 11;
    pub const C3: u16 = 1 << 14;
    /// Busy: mirrors ES.
    pub const B: u16 = 1 << 15;
    pub const CC: u16 = C0 | C1 | C2 | C3;
}

/// Tag values (2 bits per physical register).
pub mod tag {
    pub const VALID: u16 = 0;
    pub const ZERO: u16 = 1;
    pub const SPECIAL: u16 = 2;
    pub const EMPTY: u16 = 3;
}

/// FCW after FINIT: all exceptions masked, 64-bit precision, round to nearest.
pub const FCW_INIT: u16 = 0x037f;

/// The tag the FPU computes for a register's contents.
pub fn tag_of(v: F80) -> u16 {
    match v.class() {
        Class::Normal => tag::VALID,
        Class::Zero => tag::ZERO,
        _ => tag::SPECIAL,
    }
}

impl FpuState {
    pub fn top(&self) -> usize {
        ((self.fsw & fsw::TOP) >> fsw::TOP_SHIFT) as usize
    }
    pub fn set_top(&mut self, top: usize) {
        self.fsw = (self.fsw & !fsw::TOP) | ((top as u16 & 7) << fsw::TOP_SHIFT);
    }
    /// Physical register number of ST(i).
    pub fn phys(&self, i: usize) -> usize {
        (self.top() + i) & 7
    }
    pub fn phys_tag(&self, r: usize) -> u16 {
        (self.ftw >> (2 * (r & 7))) & 3
    }
    pub fn set_phys_tag(&mut self, r: usize, t: u16) {
        let sh = 2 * (r & 7);
        self.ftw = (self.ftw & !(3 << sh)) | ((t & 3) << sh);
    }
    pub fn is_empty(&self, i: usize) -> bool {
        self.phys_tag(self.phys(i)) == tag::EMPTY
    }
    /// ST(i) as stored (whatever the tag says).
    pub fn st(&self, i: usize) -> F80 {
        F80::from_bytes(self.st[self.phys(i)])
    }
    /// Writes ST(i) and tags it by its contents.
    pub fn set_st(&mut self, i: usize, v: F80) {
        let r = self.phys(i);
        self.st[r] = v.to_bytes();
        self.set_phys_tag(r, tag_of(v));
    }
    pub fn push(&mut self, v: F80) {
        let top = (self.top() + 7) & 7;
        self.set_top(top);
        self.set_st(0, v);
    }
    /// Marks ST(0) empty and increments TOP.
    pub fn pop(&mut self) {
        let r = self.phys(0);
        self.set_phys_tag(r, tag::EMPTY);
        self.set_top(self.top() + 1);
    }
    /// The full tag word as FSTENV/FSAVE report it: empty registers stay empty, others are
    /// classified from their contents.
    pub fn full_tag_word(&self) -> u16 {
        (0..8).fold(0, |acc, r| {
            let t = if self.phys_tag(r) == tag::EMPTY { tag::EMPTY } else { tag_of(F80::from_bytes(self.st[r])) };
            acc | t << (2 * r)
        })
    }
    /// The FXSAVE abridged tag byte: bit r set when physical register r is not empty.
    pub fn abridged_tag(&self) -> u8 {
        (0..8).fold(0, |acc, r| acc | ((self.phys_tag(r) != tag::EMPTY) as u8) << r)
    }
    /// Loads tags from an abridged tag byte, classifying the non-empty registers.
    pub fn set_abridged_tag(&mut self, t: u8) {
        for r in 0..8 {
            let tg = if t >> r & 1 == 0 { tag::EMPTY } else { tag_of(F80::from_bytes(self.st[r])) };
            self.set_phys_tag(r, tg);
        }
    }

    /// What every MMX instruction does to the x87 state: TOP = 0, all registers valid.
    pub fn mmx_enter(&mut self) {
        self.set_top(0);
        self.ftw = 0;
    }
    /// MMX register `i` (the significand of physical register R`i`).
    pub fn mmx_read(&mut self, i: usize) -> u64 {
        self.mmx_enter();
        F80::from_bytes(self.st[i & 7]).sig
    }
    /// Writes MMX register `i`: the significand, with sign and exponent set to all ones.
    pub fn mmx_write(&mut self, i: usize, v: u64) {
        self.mmx_enter();
        self.st[i & 7] = F80 { sig: v, se: 0xffff }.to_bytes();
    }
    /// EMMS: every register empty.
    pub fn emms(&mut self) {
        self.ftw = 0xffff;
    }
}
