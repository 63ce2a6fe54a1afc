//! Page-table walks for 32-bit, PAE and 4-level paging (SDM Vol. 3, chapter 4), with the
//! accessed/dirty updates and the access-rights rules of section 4.6.

use crate::bus::{CpuBus, PhysPage};
use crate::exception::{pf, vector, Fault, Result};
use crate::state::{cr0, cr4, efer, CpuState};

/// Physical address width this CPU reports in CPUID 0x80000008.
pub const MAX_PHYS_BITS: u32 = 40;
const PHYS_MASK: u64 = (1u64 << MAX_PHYS_BITS) - 1;

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const NX: u64 = 1 << 63;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Exec,
}

/// Who performs the access, for the U/S, SMAP and SMEP rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Privilege {
    /// CPL 3 and not an implicit supervisor access.
    pub user: bool,
    /// SMAP is overridden (explicit supervisor access with RFLAGS.AC = 1).
    pub ac: bool,
}

/// A completed walk: what the page allows, for filling every TLB tag at once.
#[derive(Clone, Copy, Debug)]
pub struct Translation {
    pub paddr: u64,
    pub page_size: u64,
    pub global: bool,
    /// Combined rights of all levels.
    pub writable: bool,
    pub user: bool,
    pub nx: bool,
    /// The final entry's dirty bit is set (so later writes need not walk).
    pub dirty: bool,
}

impl Translation {
    /// Whether `access` by `who` is allowed (SDM 4.6). Checked both after a walk and when
    /// filling the tags of other access kinds.
    pub fn allows(&self, st: &CpuState, access: Access, who: Privilege) -> bool {
        let smap = st.cr4 & cr4::SMAP != 0 && !who.ac;
        match access {
            Access::Exec => {
                if self.nx && st.efer & efer::NXE != 0 {
                    return false;
                }
                if who.user {
                    self.user
                } else {
                    !(self.user && st.cr4 & cr4::SMEP != 0)
                }
            }
            Access::Read => {
                if who.user {
                    self.user
                } else {
                    !(self.user && smap)
                }
            }
            Access::Write => {
                if who.user {
                    self.user && self.writable
                } else {
                    if self.user && smap {
                        return false;
                    }
                    self.writable || st.cr0 & cr0::WP == 0
                }
            }
        }
    }
}

/// Reads a page-table entry; page tables outside RAM read as all ones (not present... and
/// reserved bits set), as on a bus that floats high.
fn read_entry(bus: &mut dyn CpuBus, paddr: u64, wide: bool) -> u64 {
    match bus.phys_page(paddr) {
        PhysPage::Ram(p) | PhysPage::Rom(p) => {
            let off = (paddr & 0xfff) as usize;
            // SAFETY: `phys_page` returns the host address of a whole 4 KiB page; entries are
            // naturally aligned (4 or 8 bytes) so `off + size <= 4096`.
            unsafe {
                if wide {
                    (p.add(off) as *const u64).read_unaligned()
                } else {
                    (p.add(off) as *const u32).read_unaligned() as u64
                }
            }
        }
        PhysPage::Mmio => bus.mmio_read(paddr, if wide { 8 } else { 4 }),
    }
}

/// Sets accessed/dirty bits in an entry, as the hardware's locked read-modify-write does.
fn set_bits(bus: &mut dyn CpuBus, paddr: u64, wide: bool, old: u64, bits: u64) {
    if old & bits == bits {
        return;
    }
    if let PhysPage::Ram(p) = bus.phys_page(paddr) {
        let off = (paddr & 0xfff) as usize;
        // SAFETY: as in `read_entry`; the page is RAM and so writable. Only the low 32 bits
        // hold A and D, so a 32-bit store suffices for both entry widths.
        unsafe {
            let ptr = p.add(off) as *mut u32;
            let _ = wide;
            ptr.write_unaligned((old | bits) as u32);
        }
    }
}

fn page_fault(st: &mut CpuState, lin: u64, access: Access, who: Privilege, code: u32) -> Fault {
    let mut err = code;
    if access == Access::Write {
        err |= pf::WRITE;
    }
    if who.user {
        err |= pf::USER;
    }
    let nx_paging = st.cr4 & cr4::PAE != 0 && st.efer & efer::NXE != 0;
    if access == Access::Exec && (nx_paging || st.cr4 & cr4::SMEP != 0) {
        err |= pf::FETCH;
    }
    st.cr2 = lin;
    Fault::exc_code(vector::PF, err)
}

/// Translates a linear address with paging enabled. `a20` masks each physical address the
/// walk touches. On failure CR2 is written and a #PF fault returned.
pub fn walk(st: &mut CpuState, bus: &mut dyn CpuBus, lin: u64, access: Access, who: Privilege, a20: u64) -> Result<Translation> {
    let nxe = st.efer & efer::NXE != 0;
    let pae = st.cr4 & cr4::PAE != 0;
    let long = st.efer & efer::LMA != 0;
    // Reserved-bit masks (SDM 4.4.2/4.5.4): physical bits above MAXPHYADDR, and NX without NXE.
    let rsvd_hi = 0x000f_ffff_ffff_ffff & !PHYS_MASK;
    let nx_rsvd = if nxe { 0 } else { NX };

    let mut writable = true;
    let mut user = true;
    let mut nx = false;
    // Entries visited, to set accessed bits once the walk succeeds.
    let mut visited: [(u64, u64, bool); 5] = [(0, 0, false); 5];
    let mut nvisited = 0;

    let (final_entry, final_addr, wide, page_size, leaf_level);
    if !pae {
        let pde_addr = ((st.cr3 & 0xffff_f000) | ((lin >> 20) & 0xffc)) & a20;
        let pde = read_entry(bus, pde_addr, false);
        if pde & P == 0 {
            return Err(page_fault(st, lin, access, who, 0));
        }
        writable &= pde & RW != 0;
        user &= pde & US != 0;
        if pde & PS != 0 && st.cr4 & cr4::PSE != 0 {
            // 4 MiB page; PSE-36 puts physical bits 32-39 in entry bits 13-20.
            if pde & (1 << 21) != 0 {
                return Err(page_fault(st, lin, access, who, pf::PRESENT | pf::RSVD));
            }
            final_entry = pde;
            final_addr = pde_addr;
            wide = false;
            page_size = 4 << 20;
            leaf_level = 0;
        } else {
            visited[nvisited] = (pde_addr, pde, false);
            nvisited += 1;
            let pte_addr = ((pde & 0xffff_f000) | ((lin >> 10) & 0xffc)) & a20;
            let pte = read_entry(bus, pte_addr, false);
            if pte & P == 0 {
                return Err(page_fault(st, lin, access, who, 0));
            }
            writable &= pte & RW != 0;
            user &= pte & US != 0;
            final_entry = pte;
            final_addr = pte_addr;
            wide = false;
            page_size = 4096;
            leaf_level = 1;
        }
    } else {
        // PAE and 4-level share the 8-byte entry format.
        let mut table;
        let mut level;
        if long {
            table = st.cr3 & PHYS_MASK & !0xfff;
            level = 4;
        } else {
            let pdpte_addr = ((st.cr3 & 0xffff_ffe0) + ((lin >> 27) & 0x18)) & a20;
            let pdpte = read_entry(bus, pdpte_addr, true);
            if pdpte & P == 0 {
                return Err(page_fault(st, lin, access, who, 0));
            }
            // PAE PDPTEs have RW/US/NX reserved (SDM 4.4.1); a load with them set would #GP at
            // MOV CR3 on hardware. Reported here as a reserved-bit fault.
            if pdpte & (rsvd_hi | 0x1e6 | NX) != 0 {
                return Err(page_fault(st, lin, access, who, pf::PRESENT | pf::RSVD));
            }
            table = pdpte & PHYS_MASK & !0xfff;
            level = 2;
        }
        loop {
            let shift = 12 + 9 * (level - 1);
            let entry_addr = (table | ((lin >> shift) & 0x1ff) << 3) & a20;
            let entry = read_entry(bus, entry_addr, true);
            if entry & P == 0 {
                return Err(page_fault(st, lin, access, who, 0));
            }
            let large = entry & PS != 0;
            let mut rsvd = entry & (rsvd_hi | nx_rsvd);
            if large && level == 4 || (large && level == 3 && !long) {
                rsvd |= PS;
            }
            if large && (level == 2 || level == 3) {
                // Bits 12..(shift-1) of a large page's address are reserved (bit 12 is PAT).
                rsvd |= entry & (((1u64 << shift) - 1) & !0x1fff);
            }
            if rsvd != 0 {
                return Err(page_fault(st, lin, access, who, pf::PRESENT | pf::RSVD));
            }
            writable &= entry & RW != 0;
            user &= entry & US != 0;
            nx |= entry & NX != 0;
            if level == 1 || large {
                final_entry = entry;
                final_addr = entry_addr;
                wide = true;
                page_size = 1u64 << shift;
                leaf_level = level;
                break;
            }
            visited[nvisited] = (entry_addr, entry, true);
            nvisited += 1;
            table = entry & PHYS_MASK & !0xfff;
            level -= 1;
        }
    }
    let _ = leaf_level;

    let offset_mask = page_size - 1;
    let frame = if !pae && page_size == 4 << 20 {
        (final_entry & 0xffc0_0000) | ((final_entry >> 13) & 0xff) << 32
    } else {
        final_entry & PHYS_MASK & !offset_mask & !0xfff
    };
    let t = Translation {
        paddr: (frame | (lin & offset_mask)) & !0xfff,
        page_size,
        global: final_entry & G != 0 && st.cr4 & cr4::PGE != 0,
        writable,
        user,
        nx,
        dirty: final_entry & D != 0 || access == Access::Write,
    };
    if !t.allows(st, access, who) {
        return Err(page_fault(st, lin, access, who, pf::PRESENT));
    }
    for &(addr, e, w) in &visited[..nvisited] {
        set_bits(bus, addr, w, e, A);
    }
    let bits = if access == Access::Write { A | D } else { A };
    set_bits(bus, final_addr, wide, final_entry, bits);
    Ok(t)
}
