//! Page-table walks for 32-bit, PAE and 4-level paging (SDM Vol. 3, chapter 4), with the
//! accessed/dirty updates and the access-rights rules of section 4.6.
//!
//! Other vCPU threads share the page tables. The processor sets accessed and dirty bits with
//! locked operations (SDM Vol. 3, 4.8), so here they are set with a host compare-exchange
//! against the entry the walk read: if the entry changed meanwhile (another CPU, or the
//! guest's own OS on it, rewrote it), nothing is stored and the walk starts over with the
//! new tables, so no concurrent update is ever lost or resurrected.

use super::atomic::compare_exchange;
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
    /// Protection key of a 4-level paging translation (entry bits 62:59), used for user-mode
    /// pages while CR4.PKE is set.
    pub pkey: Option<u8>,
}

impl Translation {
    /// Whether `access` by `who` is allowed (SDM 4.6). Checked both after a walk and when
    /// filling the tags of other access kinds.
    pub fn allows(&self, st: &CpuState, access: Access, who: Privilege) -> bool {
        self.paging_allows(st, access, who) && !self.key_denies(st, access, who)
    }

    /// The key that decides data accesses to this page, if protection keys apply to it.
    pub fn active_key(&self, st: &CpuState) -> Option<u8> {
        self.pkey.filter(|_| self.user && st.cr4 & cr4::PKE != 0)
    }

    /// Protection keys (SDM Vol. 3, 4.6.2): a data access to a user-mode page whose key has
    /// AD set in PKRU is denied; a write with WD set is denied to user-mode accesses, and to
    /// supervisor-mode ones when CR0.WP is set. Instruction fetches are not checked.
    pub fn key_denies(&self, st: &CpuState, access: Access, who: Privilege) -> bool {
        let Some(key) = self.active_key(st) else { return false };
        let rights = st.pkru >> (2 * key as u32);
        match access {
            Access::Exec => false,
            Access::Read => rights & 1 != 0,
            Access::Write => rights & 1 != 0 || (rights & 2 != 0 && (who.user || st.cr0 & cr0::WP != 0)),
        }
    }

    /// The rights of the paging-structure entries alone (SDM 4.6.1).
    fn paging_allows(&self, st: &CpuState, access: Access, who: Privilege) -> bool {
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

/// Sets accessed/dirty `bits` in the entry at `paddr`, which the walk read as `old`, as the
/// hardware's locked read-modify-write does. `false`: the entry no longer holds `old`
/// (another CPU changed it); nothing was written and the walk must start over. Entries
/// outside RAM are not written (ROM ignores writes; device memory gets no A/D updates).
fn set_bits(bus: &mut dyn CpuBus, tracking: Tracking, paddr: u64, wide: bool, old: u64, bits: u64) -> bool {
    if old & bits == bits {
        return true;
    }
    if let PhysPage::Ram(p) = bus.phys_page(paddr) {
        let off = (paddr & 0xfff) as usize;
        // Compare the whole entry: a change to any bit (the frame, NX, present) invalidates
        // what the walk derived from it.
        let size = if wide { 8 } else { 4 };
        // SAFETY: as in `read_entry`: `phys_page` returned the host address of a whole 4 KiB
        // RAM page (so writable), and the naturally aligned entry lies inside it.
        let done = unsafe { compare_exchange(p.add(off), size, old, old | bits) }.is_ok();
        if done {
            // A write to RAM like any other: dirty log, stale decoded code.
            super::note_phys_write(tracking, paddr);
        }
        return done;
    }
    true
}

/// The machine's page tracking, if any (see `Cpu::attach_tracking`).
type Tracking<'a> = Option<&'a ferrite_memory::PageTracking>;

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
/// walk touches; the accessed/dirty updates are reported to `tracking`. On failure CR2 is
/// written and a #PF fault returned.
pub fn walk(
    st: &mut CpuState,
    bus: &mut dyn CpuBus,
    tracking: Tracking,
    lin: u64,
    access: Access,
    who: Privilege,
    a20: u64,
) -> Result<Translation> {
    loop {
        if let Some(t) = walk_once(st, bus, tracking, lin, access, who, a20)? {
            return Ok(t);
        }
    }
}

/// One walk; `Ok(None)` when an entry changed before its accessed/dirty bits could be set,
/// so the walk has to be redone.
fn walk_once(
    st: &mut CpuState,
    bus: &mut dyn CpuBus,
    tracking: Tracking,
    lin: u64,
    access: Access,
    who: Privilege,
    a20: u64,
) -> Result<Option<Translation>> {
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
        // Bits 62:59 hold the key only in 4-level paging.
        pkey: long.then_some(((final_entry >> 59) & 0xf) as u8),
    };
    if !t.allows(st, access, who) {
        let pk = if t.key_denies(st, access, who) { pf::PK } else { 0 };
        return Err(page_fault(st, lin, access, who, pf::PRESENT | pk));
    }
    // Top level first, as the walk went; an accessed bit already set on an upper level
    // before a restart stays set, which hardware allows (the entry was used).
    for &(addr, e, w) in &visited[..nvisited] {
        if !set_bits(bus, tracking, addr, w, e, A) {
            return Ok(None);
        }
    }
    let bits = if access == Access::Write { A | D } else { A };
    if !set_bits(bus, tracking, final_addr, wide, final_entry, bits) {
        return Ok(None);
    }
    Ok(Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FlatBus;

    const PML4: u64 = 0x1000;
    const PDPT: u64 = 0x2000;
    const PD: u64 = 0x3000;
    const PT: u64 = 0x4000;
    const LIN: u64 = 0x5000;
    const PTE: u64 = PT + 8 * (LIN >> 12);

    /// A flat bus that, like another CPU, rewrites one page-table entry the `when`th time the
    /// walker looks up the page holding it.
    struct RacingBus {
        flat: FlatBus,
        entry: u64,
        value: u64,
        when: usize,
        lookups: usize,
    }

    impl CpuBus for RacingBus {
        fn phys_page(&mut self, paddr: u64) -> PhysPage {
            if paddr & !0xfff == self.entry & !0xfff {
                self.lookups += 1;
                if self.lookups == self.when {
                    self.flat.load(self.entry, &self.value.to_le_bytes());
                }
            }
            self.flat.phys_page(paddr)
        }
        fn mmio_read(&mut self, _: u64, _: u8) -> u64 {
            !0
        }
        fn mmio_write(&mut self, _: u64, _: u8, _: u64) {}
        fn io_read(&mut self, _: u16, _: u8) -> u32 {
            !0
        }
        fn io_write(&mut self, _: u16, _: u8, _: u32) {}
    }

    fn long_mode(bus: &mut FlatBus) -> CpuState {
        bus.load(PML4, &(PDPT | P | RW).to_le_bytes());
        bus.load(PDPT, &(PD | P | RW).to_le_bytes());
        bus.load(PD, &(PT | P | RW).to_le_bytes());
        bus.load(PTE, &(0x7000 | P | RW).to_le_bytes());
        let mut st = CpuState::reset();
        st.cr0 = cr0::PE | cr0::PG;
        st.cr3 = PML4;
        st.cr4 = cr4::PAE;
        st.efer = efer::LME | efer::LMA | efer::NXE;
        st
    }

    fn entry(bus: &FlatBus, paddr: u64) -> u64 {
        bus.read_u64(paddr)
    }

    #[test]
    fn accessed_and_dirty_bits_are_set_on_every_level() {
        let mut bus = FlatBus::new(0x10000);
        let mut st = long_mode(&mut bus);
        let who = Privilege { user: false, ac: false };
        let t = walk(&mut st, &mut bus, None, LIN, Access::Read, who, !0).unwrap();
        assert_eq!(t.paddr, 0x7000);
        assert!(!t.dirty);
        for e in [PML4, PDPT, PD, PTE] {
            assert_eq!(entry(&bus, e) & (A | D), A, "entry at {e:#x}");
        }
        let t = walk(&mut st, &mut bus, None, LIN, Access::Write, who, !0).unwrap();
        assert!(t.dirty);
        assert_eq!(entry(&bus, PTE), 0x7000 | P | RW | A | D);
    }

    /// Another CPU remaps the page between the walker's read of the PTE and its A/D update:
    /// the update must not write the stale entry back, and the walk must use the new one.
    #[test]
    fn a_concurrent_entry_change_restarts_the_walk() {
        let mut flat = FlatBus::new(0x10000);
        let mut st = long_mode(&mut flat);
        let remapped = 0x8000 | P | RW | (1 << 9) | NX;
        // Lookups of the page table's page: 1 reads the PTE, 2 sets its bits.
        let mut bus = RacingBus { flat, entry: PTE, value: remapped, when: 2, lookups: 0 };
        let who = Privilege { user: false, ac: false };
        let t = walk(&mut st, &mut bus, None, LIN, Access::Write, who, !0).unwrap();
        assert_eq!((t.paddr, t.nx), (0x8000, true));
        assert_eq!(entry(&bus.flat, PTE), remapped | A | D);
        // Read, failed update, read again, update.
        assert_eq!(bus.lookups, 4);

        // The same race on an upper level (the PD's page: lookups 1 read, 2 update).
        let mut flat = FlatBus::new(0x10000);
        let mut st = long_mode(&mut flat);
        let mut bus = RacingBus { flat, entry: PD, value: PT | P, when: 2, lookups: 0 };
        let t = walk(&mut st, &mut bus, None, LIN, Access::Read, who, !0).unwrap();
        assert!(!t.writable);
        assert_eq!(entry(&bus.flat, PD), PT | P | A);
        // A write through the now read-only PDE faults (CR0.WP set), with no dirty bit set.
        st.cr0 |= cr0::WP;
        let e = walk(&mut st, &mut bus, None, LIN, Access::Write, who, !0).unwrap_err();
        assert_eq!(e, Fault::exc_code(vector::PF, pf::PRESENT | pf::WRITE));
        assert_eq!(entry(&bus.flat, PTE) & D, 0);
    }
}
