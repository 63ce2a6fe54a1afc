//! Linear-address accesses: the TLB fast path, the fill on a miss, and the slow path for
//! MMIO, ROM, page-crossing accesses and writes to pages that hold decoded code.

pub(crate) mod atomic;
mod paging;
pub(crate) mod pcid;
pub mod tlb;

pub use paging::{walk, Access, Privilege, Translation, MAX_PHYS_BITS};
pub use tlb::{Ctx, Tlb, TlbEntry, TAG_INVALID, TAG_SLOW};

use crate::bus::{CpuBus, PhysPage};
use crate::exception::Result;
use crate::state::flags;
use crate::Cpu;

impl Cpu {
    /// The TLB context of an explicit data access at the current privilege level.
    #[inline(always)]
    pub(crate) fn data_ctx(&self) -> Ctx {
        if self.state.cpl() == 3 {
            Ctx::User
        } else if self.state.rflags & flags::AC != 0 {
            Ctx::SupervisorAc
        } else {
            Ctx::Supervisor
        }
    }

    #[inline(always)]
    pub(crate) fn code_ctx(&self) -> Ctx {
        if self.state.cpl() == 3 {
            Ctx::User
        } else {
            Ctx::Supervisor
        }
    }

    /// Drops cached translations (CR3 write: the current PCID's non-global ones; CR0/CR4
    /// paging changes: all, of every PCID).
    pub fn flush_tlb(&mut self, keep_global: bool) {
        // Pending `Decoded` events must meet the fast write entries they ask about.
        self.catch_up_code();
        if keep_global {
            // Jump-cache entries and links for non-global pages go with these translations.
            self.tlb.flush(true);
        } else {
            self.flush_all_tlbs();
            self.code.flush_jump_cache();
        }
    }

    /// INVLPG: the page's translations for the current PCID, and its global translation
    /// wherever it is cached (SDM Vol. 3, 4.10.4.1).
    pub fn flush_tlb_page(&mut self, lin: u64) {
        self.catch_up_code();
        self.tlb.flush_page(lin);
        for (_, t) in self.parked_tlbs.iter_mut().filter(|(p, _)| p.is_some()) {
            t.flush_global_page(lin);
        }
        self.code.flush_jump_page(lin);
    }

    /// Flushes the TLB if the bus's memory map or the A20 gate changed.
    pub(crate) fn sync_memory_map(&mut self, bus: &mut dyn CpuBus) {
        let gen = bus.memory_map_generation();
        let a20 = bus.a20_mask();
        if gen != self.memory_generation || a20 != self.a20_mask {
            self.memory_generation = gen;
            self.a20_mask = a20;
            self.flush_tlb(false);
        }
    }

    /// Translates a linear address (walking the page tables with paging on), setting
    /// accessed/dirty bits as hardware does. Used by the TLB fill and by debuggers.
    pub fn translate(&mut self, bus: &mut dyn CpuBus, lin: u64, access: Access, ctx: Ctx) -> Result<Translation> {
        if !self.state.paging() {
            return Ok(Translation {
                paddr: lin & !0xfff & self.a20_mask,
                page_size: 4096,
                global: false,
                writable: true,
                user: true,
                nx: false,
                dirty: true,
                pkey: None,
            });
        }
        let who = Privilege { user: ctx == Ctx::User, ac: ctx == Ctx::SupervisorAc };
        let mut t = walk(&mut self.state, bus, self.tracking.as_deref(), lin, access, who, self.a20_mask)?;
        t.paddr &= self.a20_mask;
        Ok(t)
    }

    /// Fills the TLB slot of `lin` for `ctx`, checking that `access` is allowed.
    fn tlb_fill(&mut self, bus: &mut dyn CpuBus, lin: u64, access: Access, ctx: Ctx) -> Result<TlbEntry> {
        if let Some(e) = self.tlb.swap_in_victim(tlb::table_for(ctx, access), lin, access) {
            return Ok(e);
        }
        let t = self.translate(bus, lin, access, ctx)?;
        let who = Privilege { user: ctx == Ctx::User, ac: ctx == Ctx::SupervisorAc };
        let page = lin & !0xfff;
        let (host, read_slow, write_slow, exec_ok) = match bus.phys_page(t.paddr) {
            PhysPage::Ram(p) => (p as u64, 0, if self.ram_write_slow(t.paddr) { TAG_SLOW } else { 0 }, true),
            PhysPage::Rom(p) => (p as u64, 0, TAG_SLOW, true),
            PhysPage::Mmio => (0, TAG_SLOW, TAG_SLOW, false),
        };
        let st = &self.state;
        // A code entry holds the exec tag alone, a data entry the read and write tags.
        let fetch = access == Access::Exec;
        let tag = |ok: bool, slow: u64| if ok { page | slow } else { TAG_INVALID };
        let mut entry = TlbEntry {
            read: tag(!fetch && t.allows(st, Access::Read, who), read_slow),
            write: tag(!fetch && t.allows(st, Access::Write, who) && t.dirty, write_slow),
            exec: tag(fetch && t.allows(st, Access::Exec, who), if exec_ok { 0 } else { TAG_SLOW }),
            addend: host.wrapping_sub(page),
            paddr: t.paddr,
            global: t.global,
            // Protection keys govern data accesses only.
            pkey: if fetch { tlb::NO_KEY } else { t.active_key(st).unwrap_or(tlb::NO_KEY) },
        };
        if !self.watchpoints.is_empty() {
            self.watch_tags(&mut entry, page);
        }
        if self.dbg.hooks {
            self.guest_debug_tags(&mut entry, page, ctx);
        }
        if t.page_size > 4096 {
            self.tlb.note_large_page(lin, t.page_size);
        }
        self.tlb.insert(tlb::table_for(ctx, access), lin, entry);
        Ok(entry)
    }

    /// For compiled code whose inline probe missed: fills the TLB for a data access of `size`
    /// bytes at `lin` that reads and/or writes; true if the access may now go the fast way
    /// (the tags the probe compares match), else false: it faults (the
    /// interpreter runs it again and delivers the fault), is not canonical, crosses a page,
    /// or needs the slow path (MMIO, ROM, a page holding code, a watchpoint, the guest-debug
    /// hooks).
    pub(crate) fn fill_for_compiled(&mut self, bus: &mut dyn CpuBus, lin: u64, size: u8, read: bool, write: bool) -> bool {
        let page = lin & !0xfff;
        // A non-canonical address raises #GP before any translation, and its page can hold
        // no entry (the probe's tags are the interpreter's, which never fills one).
        if self.dbg.hooks || (lin & 0xfff) + size as u64 > 4096 || !crate::segment::is_canonical(lin) {
            return false;
        }
        let cr2 = self.state.cr2;
        let access = if write { Access::Write } else { Access::Read };
        let Ok(e) = self.tlb_fill(bus, lin, access, self.data_ctx()) else {
            // The walk reports a fault in CR2; the interpreter's walk does so again.
            self.state.cr2 = cr2;
            return false;
        };
        // The walk's accessed/dirty updates may have overwritten code this block came from.
        !self.code.invalidated && (!read || e.read == page) && (!write || e.write == page)
    }

    /// The TLB entry for `lin` allowing `access`, filling on a miss.
    #[inline]
    fn entry_for(&mut self, bus: &mut dyn CpuBus, lin: u64, access: Access, ctx: Ctx) -> Result<TlbEntry> {
        let e = self.tlb.entries[tlb::table_for(ctx, access)][Tlb::slot(lin)];
        if e.holds(lin, access) {
            return Ok(e);
        }
        self.tlb_fill(bus, lin, access, ctx)
    }

    /// Whether `size` bytes at `lin` hit the TLB fast path for `access` (for a write: for
    /// reads too), so `read_lin`/`write_lin` there can neither fault nor leave the fast path.
    /// Lets read-modify-write handlers skip the separate write probe.
    #[inline(always)]
    pub(crate) fn tlb_hit(&self, lin: u64, size: u8, ctx: Ctx, access: Access) -> bool {
        let e = &self.tlb.entries[ctx as usize][Tlb::slot(lin)];
        let page = lin & !0xfff;
        (lin & 0xfff) <= 4096 - size as u64
            && e.read == page
            && (access != Access::Write || e.write == page)
    }

    /// Reads 1, 2, 4 or 8 bytes at a linear address.
    #[inline]
    pub fn read_lin(&mut self, bus: &mut dyn CpuBus, lin: u64, size: u8, ctx: Ctx) -> Result<u64> {
        let e = &self.tlb.entries[ctx as usize][Tlb::slot(lin)];
        if e.read == lin & !0xfff && (lin & 0xfff) <= 4096 - size as u64 {
            let p = e.addend.wrapping_add(lin) as *const u8;
            // SAFETY: a TLB tag matching without TAG_SLOW means `addend + page` is the host
            // address of a 4 KiB RAM/ROM page that stays mapped while the memory-map
            // generation is unchanged; the access lies inside that page (checked above).
            return Ok(unsafe { load(p, size) });
        }
        self.read_lin_slow(bus, lin, size, ctx)
    }

    #[cold]
    fn read_lin_slow(&mut self, bus: &mut dyn CpuBus, lin: u64, size: u8, ctx: Ctx) -> Result<u64> {
        if self.dbg.hooks {
            self.guest_access(lin, size, false, ctx)?;
        }
        if (lin & 0xfff) + size as u64 > 4096 {
            let mut v = 0u64;
            for i in 0..size as u64 {
                v |= self.read_lin(bus, lin.wrapping_add(i) & self.lin_mask(), 1, ctx)? << (8 * i);
            }
            return Ok(v);
        }
        let e = self.entry_for(bus, lin, Access::Read, ctx)?;
        if e.read & TAG_SLOW != 0 {
            if !self.watchpoints.is_empty() || self.dbg.hooks {
                if let Some(v) = self.watched_read(bus, &e, lin, size) {
                    return Ok(v);
                }
            }
            return Ok(bus.mmio_read(e.paddr | (lin & 0xfff), size) & crate::flags::size_mask(size));
        }
        let p = e.addend.wrapping_add(lin) as *const u8;
        // SAFETY: as in `read_lin`: a valid tag for this page, access within the page.
        Ok(unsafe { load(p, size) })
    }

    /// Writes 1, 2, 4 or 8 bytes at a linear address.
    #[inline]
    pub fn write_lin(&mut self, bus: &mut dyn CpuBus, lin: u64, size: u8, value: u64, ctx: Ctx) -> Result<()> {
        let e = &self.tlb.entries[ctx as usize][Tlb::slot(lin)];
        if e.write == lin & !0xfff && (lin & 0xfff) <= 4096 - size as u64 {
            let p = e.addend.wrapping_add(lin) as *mut u8;
            // SAFETY: a write tag without TAG_SLOW is only installed for RAM pages holding no
            // decoded code; see `read_lin` for the pointer's validity.
            unsafe { store(p, size, value) };
            return Ok(());
        }
        self.write_lin_slow(bus, lin, size, value, ctx)
    }

    #[cold]
    fn write_lin_slow(&mut self, bus: &mut dyn CpuBus, lin: u64, size: u8, value: u64, ctx: Ctx) -> Result<()> {
        if self.dbg.hooks {
            self.guest_access(lin, size, true, ctx)?;
        }
        if (lin & 0xfff) + size as u64 > 4096 {
            // Check both pages before writing any byte, so a fault leaves memory untouched.
            let second = (lin | 0xfff).wrapping_add(1) & self.lin_mask();
            self.entry_for(bus, lin, Access::Write, ctx)?;
            self.entry_for(bus, second, Access::Write, ctx)?;
            for i in 0..size as u64 {
                self.write_lin(bus, lin.wrapping_add(i) & self.lin_mask(), 1, value >> (8 * i), ctx)?;
            }
            return Ok(());
        }
        let e = self.entry_for(bus, lin, Access::Write, ctx)?;
        if e.write & TAG_SLOW != 0 {
            if !self.watchpoints.is_empty() {
                self.note_watched_access(lin, size, true);
            }
            let paddr = e.paddr | (lin & 0xfff);
            match bus.phys_page(e.paddr) {
                PhysPage::Mmio => {
                    bus.mmio_write(paddr, size, value);
                    return Ok(());
                }
                PhysPage::Rom(_) => return Ok(()),
                PhysPage::Ram(_) => self.note_slow_ram_write(&e, lin, ctx),
            }
        }
        let p = e.addend.wrapping_add(lin) as *mut u8;
        // SAFETY: RAM page from a valid tag, access within the page.
        unsafe { store(p, size, value) };
        Ok(())
    }

    /// The bookkeeping of a write that reached a RAM page through a slow TLB tag (the page
    /// holds decoded code, is watched, or is not yet dirty in the shared log): mark it dirty,
    /// drop the stale decodings here and on other vCPUs, then let writes through at full
    /// speed until code is decoded there again. With tracking, the tag turns fast even if
    /// another vCPU marks the page as code meanwhile: the `Decoded` event it logs then finds
    /// this fast entry and counts it as a write, which covers a store landing after the
    /// other vCPU read the bytes (keeping the tag slow would lose that store).
    fn note_slow_ram_write(&mut self, e: &TlbEntry, lin: u64, ctx: Ctx) {
        self.note_shared_write(e.paddr);
        self.code.invalidate_page(e.paddr);
        // The running block may be stale now: stop it after this instruction.
        self.end_block |= self.code.invalidated;
        if !self.write_watched_page(lin) && !self.guest_write_slow(lin, ctx) {
            let slot = &mut self.tlb.entries[ctx as usize][Tlb::slot(lin)];
            slot.write &= !TAG_SLOW;
        }
    }

    /// Host address for a write of `size` bytes at `lin` that lies inside one plain RAM page,
    /// after the checks and the fault a write raises, with the bookkeeping every write does
    /// (decoded code, watchpoints). `None`: the bytes are in device memory or ROM, or cross a
    /// page; use `write_lin`. Read-modify-write instructions use it to update memory with
    /// host atomics.
    pub(crate) fn write_ptr(&mut self, bus: &mut dyn CpuBus, lin: u64, size: u8, ctx: Ctx) -> Result<Option<*mut u8>> {
        if (lin & 0xfff) + size as u64 > 4096 {
            self.probe_write(bus, lin, size, ctx)?;
            return Ok(None);
        }
        let e = self.entry_for(bus, lin, Access::Write, ctx)?;
        let p = e.addend.wrapping_add(lin) as *mut u8;
        if e.write & TAG_SLOW == 0 {
            return Ok(Some(p));
        }
        match bus.phys_page(e.paddr) {
            PhysPage::Ram(_) => {
                if self.dbg.hooks {
                    self.guest_access(lin, size, true, ctx)?;
                }
                if !self.watchpoints.is_empty() {
                    self.note_watched_access(lin, size, true);
                }
                self.note_slow_ram_write(&e, lin, ctx);
                Ok(Some(p))
            }
            PhysPage::Rom(_) | PhysPage::Mmio => Ok(None),
        }
    }

    /// Raises the fault a write of `size` bytes at `lin` would raise, without writing.
    pub fn probe_write(&mut self, bus: &mut dyn CpuBus, lin: u64, size: u8, ctx: Ctx) -> Result<()> {
        self.entry_for(bus, lin, Access::Write, ctx)?;
        let last = lin.wrapping_add(size as u64 - 1) & self.lin_mask();
        if last & !0xfff != lin & !0xfff {
            self.entry_for(bus, last, Access::Write, ctx)?;
        }
        Ok(())
    }

    /// Host address of the byte at `lin` when its page is plain RAM for `access` (not device
    /// memory, ROM for writes, or a page holding decoded code for writes), after the checks
    /// and the fault an access of that kind would raise. `None`: use `read_lin`/`write_lin`.
    fn ram_ptr(&mut self, bus: &mut dyn CpuBus, lin: u64, access: Access, ctx: Ctx) -> Result<Option<*mut u8>> {
        let e = self.entry_for(bus, lin, access, ctx)?;
        let tag = if access == Access::Write { e.write } else { e.read };
        Ok((tag & TAG_SLOW == 0).then(|| e.addend.wrapping_add(lin) as *mut u8))
    }

    /// `ram_ptr` of a run inside one page starting at `lin`, asked (and faulting) for its
    /// element `first` bytes in.
    fn run_ptr(&mut self, bus: &mut dyn CpuBus, lin: u64, first: usize, access: Access, ctx: Ctx) -> Result<Option<*mut u8>> {
        Ok(self.ram_ptr(bus, lin + first as u64, access, ctx)?.map(|p| p.wrapping_sub(first)))
    }

    /// Bulk copy for string instructions: `len` bytes (elements of `size`) from linear `src`
    /// to linear `dst`, each range inside one page, element by element upwards if `forward`,
    /// else downwards; straight between host pages when both are plain RAM. Raises the faults
    /// the first read and then the first write would (the first element is the last when
    /// going down). `Ok(false)`: nothing copied, go element by element.
    pub(crate) fn copy_ram(&mut self, bus: &mut dyn CpuBus, src: u64, dst: u64, len: usize, size: u8, forward: bool, ctx: Ctx) -> Result<bool> {
        debug_assert!((src & 0xfff) as usize + len <= 4096 && (dst & 0xfff) as usize + len <= 4096 && len >= size as usize);
        let first = if forward { 0 } else { len - size as usize };
        let Some(from) = self.run_ptr(bus, src, first, Access::Read, ctx)? else { return Ok(false) };
        let Some(to) = self.run_ptr(bus, dst, first, Access::Write, ctx)? else { return Ok(false) };
        // Elements read ahead of the writes (upwards to a lower destination, downwards to a
        // higher one) never meet bytes the copy wrote, as with `memmove`; the other way, an
        // overlap repeats the first elements, which the element path does.
        if (from as usize).abs_diff(to as usize) < len && forward == (to > from) {
            return Ok(false);
        }
        // SAFETY: both pointers come from valid TLB tags for RAM pages (see `read_lin`), and
        // each range lies inside its page (callers split runs at page ends).
        unsafe { std::ptr::copy(from as *const u8, to, len) };
        Ok(true)
    }

    /// Bulk fill for REP STOS: `len` bytes at linear `dst` (inside one page, a multiple of
    /// `size`) with the low `size` bytes of `value` repeated, when the page is plain RAM; the
    /// first element is the last when not `forward` (as for `copy_ram`).
    /// `Ok(false)`: nothing written, go element by element.
    pub(crate) fn fill_ram(&mut self, bus: &mut dyn CpuBus, dst: u64, len: usize, value: u64, size: u8, forward: bool, ctx: Ctx) -> Result<bool> {
        debug_assert!((dst & 0xfff) as usize + len <= 4096 && len.is_multiple_of(size as usize) && len >= size as usize);
        let first = if forward { 0 } else { len - size as usize };
        let Some(to) = self.run_ptr(bus, dst, first, Access::Write, ctx)? else { return Ok(false) };
        if size == 1 {
            // SAFETY: a writable RAM page from a valid TLB tag; the range lies inside it.
            unsafe { std::ptr::write_bytes(to, value as u8, len) };
        } else {
            for off in (0..len).step_by(size as usize) {
                // SAFETY: as above; `off + size <= len` because `len` is a multiple of `size`.
                unsafe { store(to.add(off), size, value) };
            }
        }
        Ok(true)
    }

    /// Linear addresses wrap at 4 GiB outside long mode.
    #[inline(always)]
    pub(crate) fn lin_mask(&self) -> u64 {
        if self.state.long_mode_active() {
            !0
        } else {
            0xffff_ffff
        }
    }

    /// Host pointer and physical address of the code page holding `lin`, or `None` as the
    /// pointer if the code lies in device memory.
    pub(crate) fn fetch_page(&mut self, bus: &mut dyn CpuBus, lin: u64) -> Result<(Option<*const u8>, u64)> {
        self.fetch_code_page(bus, lin).map(|(host, phys, _)| (host, phys))
    }

    /// `fetch_page`, and whether the translation is global.
    pub(crate) fn fetch_code_page(&mut self, bus: &mut dyn CpuBus, lin: u64) -> Result<(Option<*const u8>, u64, bool)> {
        let ctx = self.code_ctx();
        let e = self.entry_for(bus, lin, Access::Exec, ctx)?;
        let host = if e.exec & TAG_SLOW != 0 { None } else { Some(e.addend.wrapping_add(lin & !0xfff) as *const u8) };
        Ok((host, e.paddr, e.global))
    }

    /// Reads guest-physical memory (page walks, DMA-free debugger reads). Device memory reads
    /// through the bus.
    pub fn read_phys(&mut self, bus: &mut dyn CpuBus, paddr: u64, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = paddr + i as u64;
            *b = match bus.phys_page(a) {
                // SAFETY: `phys_page` returns a whole host page; the offset is below 4096.
                PhysPage::Ram(p) | PhysPage::Rom(p) => unsafe { *p.add((a & 0xfff) as usize) },
                PhysPage::Mmio => bus.mmio_read(a, 1) as u8,
            };
        }
    }
}

/// The bookkeeping of a CPU write to guest RAM at `paddr` that bypassed the TLB (the
/// accessed/dirty bits a page walk sets): marks the page dirty and, if it held decoded code,
/// makes every vCPU drop its blocks there at its next block boundary, the writer included
/// (logged under the device origin for that, as the writer's code cache is not at hand).
/// Takes the tracking, not the `Cpu`, so a caller holding `&mut cpu.state` can call it as
/// `note_phys_write(cpu.tracking.as_deref(), paddr)`. Without tracking it does nothing.
pub(crate) fn note_phys_write(tracking: Option<&ferrite_memory::PageTracking>, paddr: u64) {
    if let Some(t) = tracking {
        t.dirty.set(paddr >> 12);
        t.code.note_write(paddr, ferrite_memory::ORIGIN_DMA);
    }
}

/// # Safety
/// `p..p+size` must be readable host memory.
#[inline(always)]
pub(crate) unsafe fn load(p: *const u8, size: u8) -> u64 {
    // SAFETY: guaranteed by the caller; unaligned reads are fine on x86-64 hosts.
    unsafe {
        match size {
            1 => *p as u64,
            2 => (p as *const u16).read_unaligned() as u64,
            4 => (p as *const u32).read_unaligned() as u64,
            _ => (p as *const u64).read_unaligned(),
        }
    }
}

/// # Safety
/// `p..p+size` must be writable host memory.
#[inline(always)]
unsafe fn store(p: *mut u8, size: u8, v: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        match size {
            1 => *p = v as u8,
            2 => (p as *mut u16).write_unaligned(v as u16),
            4 => (p as *mut u32).write_unaligned(v as u32),
            _ => (p as *mut u64).write_unaligned(v),
        }
    }
}
