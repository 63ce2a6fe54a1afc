//! The execution loop and the decoded-code cache.
//!
//! Guest code is decoded once into blocks (straight-line runs ending at a control transfer
//! or page end), keyed by physical address, RIP and code size. A small per-CPU jump cache maps
//! linear RIP to block without hashing. Writes to a page holding blocks take the TLB slow path
//! and drop that page's blocks (self-modifying code); writes by other vCPUs and devices reach
//! this cache through the shared code tracking (see `coherence`), checked at block boundaries.

use crate::bus::CpuBus;
use crate::exception::{vector, Fault, Result};
use crate::interp::{handler_for, Handler};
use crate::state::flags;
use crate::mmu::tlb::Tlb;
use crate::{Cpu, RunExit};
use ferrite_jit::{translated_link, GLOBAL_LINK};
use iced_x86::{Code, Decoder, DecoderError, DecoderOptions, FlowControl, Instruction};
use rustc_hash::FxHashMap as HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;

/// Longest block, in instructions.
pub(crate) const MAX_BLOCK: usize = 64;
/// Slots of the jump cache. At 4096 slots in groups of 64, a third of the run loop's lookups
/// on the fork+exec loop of `scripts/bench` missed, mostly kernel blocks evicted by others,
/// and each miss costs a hash lookup that misses the host's caches too; 64Ki slots (2 MiB) in
/// groups of 256 missed a tenth as often on the boot.
const JUMP_CACHE_SIZE: usize = 1 << 16;
/// Blocks decoded between two passes of `CodeCache::note_decoded` at least (a boot decodes about
/// 90,000).
const SWEEP_MIN: usize = 8192;
/// The jump cache's slots come in groups of this many per page number (modulo the groups), so
/// an INVLPG looks at one group instead of every slot.
const JUMP_GROUP_BITS: u32 = 8;

pub(crate) struct DecodedInsn {
    pub insn: Instruction,
    pub handler: Handler,
}

pub(crate) struct Block {
    pub insns: Box<[DecodedInsn]>,
    /// The code size it was decoded for (16, 32 or 64).
    pub bitness: u32,
    /// The physical page its last instruction runs into when that one crosses a page: the
    /// block is keyed by its first page, so each lookup checks that the next linear page
    /// still translates to this one (a block of device memory there never does). Such blocks
    /// stay out of the jump cache, and links lead to them only when both pages are global
    /// (see `next_page_links_globally`).
    pub second_page: Option<u64>,
    /// Execution count and compiled code (see `tier`).
    pub tier: crate::tier::BlockTier,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct BlockKey {
    phys: u64,
    rip: u64,
    bitness: u32,
}

#[derive(Clone)]
struct JumpEntry {
    lin: u64,
    /// Bitness and TLB context the block was looked up under.
    tag: u32,
    /// Its page's translation is global: the entry holds under any address space while
    /// `CodeCache::jump_generation` does. Otherwise it holds while the soft TLB translates its
    /// page to the same physical page (`translated_link` of it here), as links do.
    global: bool,
    guard: u64,
    block: Rc<Block>,
    /// Where the block's instructions are (their own allocation), fetched while the block's
    /// header is checked: a run loop that interprets cold code otherwise waits on the entry,
    /// the header and the instructions one after the other.
    insns: *const DecodedInsn,
}

/// Blocks are shared through `Rc` (a clone keeps the running block alive while its page is
/// invalidated under it); every clone lives in this cache (its maps, jump cache, graveyard,
/// or another block's links) or in a frame of a `&mut Cpu` method, and none is handed out of
/// the crate.
pub(crate) struct CodeCache {
    blocks: HashMap<BlockKey, Rc<Block>>,
    /// Physical page → keys of blocks with bytes on it.
    pages: HashMap<u64, Vec<BlockKey>>,
    jump: Vec<Option<JumpEntry>>,
    /// Bumped to make every global jump-cache entry stale at once (a flush of global
    /// translations, the memory map). Entries for non-global pages go with their translation
    /// in the soft TLB, which every such event flushes too.
    pub jump_generation: u64,
    /// The generation of links to a block on a global page (the kernel's code), which
    /// address-space switches leave alone (see `ferrite_jit::GLOBAL_LINK`): bumped only when
    /// global translations may change (a full flush, INVLPG of a page such a link leads to).
    pub global_link_generation: u64,
    /// Linear pages that links made under `global_link_generation` lead to.
    global_link_pages: rustc_hash::FxHashSet<u64>,
    /// Blocks dropped from the cache while compiled code may still be running them: freed
    /// at the next block start, outside compiled code (see `tier`).
    pub graveyard: Vec<Rc<Block>>,
    /// Blocks waiting for the compile thread, by serial (see `tier`).
    pub jit_queued: HashMap<u64, std::rc::Weak<Block>>,
    /// Set when the running block's code was overwritten: stop after this instruction.
    pub invalidated: bool,
    /// Indirect branches' targets, shared by compiled blocks (see `tier`).
    pub indirect: crate::tier::IndirectTable,
    /// Blocks decoded, and blocks dropped because their code was written (for the JIT's
    /// statistics).
    pub decoded: u64,
    pub retired: u64,
    /// Blocks dropped by `note_decoded`, and those decoded since its last pass.
    pub evicted: u64,
    decoded_since_sweep: usize,
}

// SAFETY: the `Rc<Block>`s (and the `Weak`s of `jit_queued`), the blocks' `Cell`s, the
// pointers to cells of this cache's blocks (`BlockTier::incoming`) and the jump cache's
// pointers to their instructions (only ever prefetched) are the only non-`Send` parts. Every clone of a block is owned by this cache, directly or through another block's
// links, or by a stack frame of a method borrowing the `Cpu` that owns it
// (see above); compiled code names blocks and cells only while such a frame runs it. Sending
// the cache means sending its `Cpu` by value, which no such frame can outlive, so every clone
// of a block moves together, and counts and cells are only touched by the thread that owns the
// `Cpu`. The compile thread receives addresses only, which it never dereferences.
unsafe impl Send for CodeCache {}

impl Default for CodeCache {
    fn default() -> Self {
        CodeCache {
            blocks: HashMap::default(),
            pages: HashMap::default(),
            jump: Vec::new(),
            jump_generation: 1,
            global_link_generation: GLOBAL_LINK | 1,
            global_link_pages: Default::default(),
            graveyard: Vec::new(),
            jit_queued: HashMap::default(),
            invalidated: false,
            indirect: Default::default(),
            decoded: 0,
            retired: 0,
            evicted: 0,
            decoded_since_sweep: 0,
        }
    }
}

impl CodeCache {
    pub fn clear(&mut self) {
        for (_, b) in self.blocks.drain() {
            b.tier.retire(&mut self.graveyard);
            self.graveyard.push(b);
        }
        self.pages.clear();
        self.jump.clear();
        self.indirect.clear(&mut self.graveyard);
        self.flush_jump_cache();
    }

    pub fn flush_jump_cache(&mut self) {
        self.jump_generation += 1;
        self.drop_global_links();
    }

    fn drop_global_links(&mut self) {
        self.global_link_generation += 1;
        self.global_link_pages.clear();
    }

    /// INVLPG of the page holding `lin`: its entries go, and so do links to it if it is
    /// global (links to a non-global page go with its translation in the soft TLB).
    pub fn flush_jump_page(&mut self, lin: u64) {
        let first = Self::jump_slot(lin & !0xfff) & !((1 << JUMP_GROUP_BITS) - 1);
        if let Some(group) = self.jump.get_mut(first..first + (1 << JUMP_GROUP_BITS)) {
            for e in group.iter_mut() {
                if e.as_ref().is_some_and(|e| e.lin >> 12 == lin >> 12) {
                    *e = None;
                }
            }
        }
        if self.global_link_pages.contains(&(lin >> 12)) {
            self.drop_global_links();
        }
    }

    pub fn for_each_block(&self, mut f: impl FnMut(&Block)) {
        for b in self.blocks.values() {
            f(b);
        }
    }

    pub fn is_code_page(&self, paddr: u64) -> bool {
        self.pages.contains_key(&(paddr & !0xfff))
    }

    pub fn invalidate_page(&mut self, paddr: u64) {
        if let Some(keys) = self.pages.remove(&(paddr & !0xfff)) {
            for k in keys {
                if let Some(b) = self.blocks.remove(&k) {
                    self.retired += 1;
                    self.retire(b);
                }
            }
            // Jump-cache entries of retired blocks miss (`cached`); links to them find no
            // live entry.
            self.invalidated = true;
        }
    }

    /// Takes a block out of use: lookups and links miss it from now on, and it is freed once
    /// no frame runs it (see `graveyard`).
    fn retire(&mut self, b: Rc<Block>) {
        b.tier.retire(&mut self.graveyard);
        self.graveyard.push(b);
    }

    /// Counts a block decoded, and drops the blocks that stayed cold (never queued for the
    /// translator) and did not run since the previous pass, once a quarter as many blocks as
    /// the cache holds (`SWEEP_MIN` at least) were decoded: code a boot runs once (its
    /// initcalls, setup scripts) would otherwise hold about half of the process's heap at its
    /// end. One decoded again costs a decode; a pass, a look at every block's count, costs
    /// less than the decodes between two (12 passes, 22-26 ms in a bench boot).
    fn note_decoded(&mut self) {
        self.decoded += 1;
        self.decoded_since_sweep += 1;
        if self.decoded_since_sweep < SWEEP_MIN.max(self.blocks.len() / 4) {
            return;
        }
        self.decoded_since_sweep = 0;
        let mut idle = Vec::new();
        for (k, b) in &self.blocks {
            if b.tier.slot.get().is_cold() {
                let hits = b.tier.hits.get();
                if b.tier.swept_hits.replace(hits) == hits {
                    idle.push(*k);
                }
            }
        }
        for k in idle {
            let Some(b) = self.blocks.remove(&k) else { continue };
            for page in [Some(k.phys & !0xfff), b.second_page].into_iter().flatten() {
                if let Some(keys) = self.pages.get_mut(&page) {
                    keys.retain(|&other| other != k);
                    if keys.is_empty() {
                        self.pages.remove(&page);
                    }
                }
            }
            // Its jump-cache entry (where its RIP is its linear address) lets go of it too.
            if let Some(slot) = self.jump.get_mut(Self::jump_slot(k.rip)) {
                if slot.as_ref().is_some_and(|e| Rc::ptr_eq(&e.block, &b)) {
                    *slot = None;
                }
            }
            self.evicted += 1;
            self.retire(b);
        }
    }

    /// The block the jump cache holds for `lin` under `tag`, if current; `translation` gives
    /// the soft TLB's code translation of `lin` (see `Cpu::code_translation`), or 0.
    #[inline(always)]
    pub fn cached(&self, lin: u64, tag: u32, translation: impl FnOnce() -> u64) -> Option<&Rc<Block>> {
        let e = self.jump.get(Self::jump_slot(lin))?.as_ref()?;
        if e.lin != lin || e.tag != tag {
            return None;
        }
        prefetch(e.insns);
        let current = !e.block.tier.retired.get() && e.guard == if e.global { self.jump_generation } else { translation() };
        current.then_some(&e.block)
    }

    /// The page number picks a group of slots, the offset (folded) a slot in it.
    fn jump_slot(lin: u64) -> usize {
        let groups = JUMP_CACHE_SIZE >> JUMP_GROUP_BITS;
        let group = (lin >> 12) as usize & (groups - 1);
        let offset = (lin ^ (lin >> JUMP_GROUP_BITS)) as usize & ((1 << JUMP_GROUP_BITS) - 1);
        group << JUMP_GROUP_BITS | offset
    }
}

/// What kind of event is being delivered, for privilege checks and error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A fault or trap raised by the CPU (EXT = 1 in error codes only if nested).
    Exception,
    /// INT n, INT3, INTO: gate DPL is checked against CPL.
    Software,
    /// INT1 (ICEBP): like an exception, no DPL check.
    PrivilegedSoftware,
    /// INTR or NMI from outside.
    External,
}

impl Cpu {
    /// Runs until `budget` instructions retired, the CPU halts, the machine shuts down, or
    /// the exit request is set (checked before every block).
    pub fn run(&mut self, bus: &mut dyn CpuBus, budget: u64) -> RunExit {
        if self.wait_for_sipi {
            return RunExit::Halted;
        }
        self.sync_memory_map(bus);
        self.refresh_debug();
        let end = self.instructions.saturating_add(budget);
        loop {
            if self.attention.kick.load(Ordering::Relaxed) {
                return RunExit::Kicked;
            }
            if let Some(exit) = self.check_events(bus) {
                return exit;
            }
            if self.halted {
                return RunExit::Halted;
            }
            if self.instructions >= end {
                return RunExit::Budget;
            }
            if !self.breakpoints.is_empty() && self.breakpoints.contains(&self.current_linear_rip()) {
                return RunExit::Debug;
            }
            match self.run_block(bus, end) {
                Ok(()) => {}
                Err(fault) => {
                    // A faulting instruction did not complete: no data breakpoint trap.
                    self.watch_hit = None;
                    if self.deliver_fault(bus, fault).is_err() {
                        return RunExit::Shutdown;
                    }
                }
            }
            if self.watch_hit.is_some() {
                return RunExit::Debug;
            }
        }
    }

    /// Executes exactly one instruction (or delivers one pending event), for single-stepping.
    pub fn step(&mut self, bus: &mut dyn CpuBus) -> RunExit {
        if self.attention.kick.load(Ordering::Relaxed) {
            return RunExit::Kicked;
        }
        if self.wait_for_sipi {
            return RunExit::Halted;
        }
        self.sync_memory_map(bus);
        self.refresh_debug();
        if let Some(exit) = self.check_events(bus) {
            return exit;
        }
        if self.halted {
            return RunExit::Halted;
        }
        let end = self.instructions + 1;
        if let Err(fault) = self.run_block(bus, end) {
            self.watch_hit = None;
            if self.deliver_fault(bus, fault).is_err() {
                return RunExit::Shutdown;
            }
        }
        if self.watch_hit.is_some() {
            return RunExit::Debug;
        }
        RunExit::Budget
    }

    pub(crate) fn current_linear_rip(&self) -> u64 {
        self.state.seg[crate::Seg::Cs as usize].base.wrapping_add(self.state.rip) & self.lin_mask()
    }

    /// Delivers a pending NMI or external interrupt at an instruction boundary.
    fn check_events(&mut self, bus: &mut dyn CpuBus) -> Option<RunExit> {
        // Its delivery had begun (the shadow and IF were checked when it was acknowledged).
        // Read before cleared: this runs at every block boundary, and is almost always `None`.
        if let Some(v) = self.injected_interrupt {
            self.injected_interrupt = None;
            self.halted = false;
            if self.deliver_event(bus, v, None, EventKind::External).is_err() {
                return Some(RunExit::Shutdown);
            }
            return None;
        }
        if self.interrupt_shadow {
            return None;
        }
        if self.nmi_pending && !self.nmi_blocked {
            self.nmi_pending = false;
            self.nmi_blocked = true;
            self.halted = false;
            if self.deliver_event(bus, vector::NMI, None, EventKind::External).is_err() {
                return Some(RunExit::Shutdown);
            }
            return None;
        }
        if self.state.rflags & flags::IF != 0 && bus.interrupt_pending() {
            if let Some(v) = bus.acknowledge_interrupt() {
                self.halted = false;
                if self.deliver_event(bus, v, None, EventKind::External).is_err() {
                    return Some(RunExit::Shutdown);
                }
            }
        }
        None
    }

    /// Delivers a fault raised by an instruction, with the double/triple fault rules.
    /// `Err(())` means the machine shut down.
    pub(crate) fn deliver_fault(&mut self, bus: &mut dyn CpuBus, fault: Fault) -> core::result::Result<(), ()> {
        match fault {
            Fault::TripleFault => Err(()),
            Fault::Exception { vector, error_code } => {
                self.deliver_event(bus, vector, error_code, EventKind::Exception).map_err(|_| ())
            }
        }
    }

    /// What a jump-cache entry must match besides the linear address: the code size, the TLB
    /// context and the PCID (a switch that keeps the old PCID's translations keeps its
    /// entries).
    #[inline(always)]
    pub(crate) fn jump_tag(&self, bitness: u32) -> u32 {
        bitness | (self.code_ctx() as u32) << 8
    }

    /// `translated_link` of the physical page the soft TLB translates `lin`'s page to for
    /// instruction fetch at the current privilege, or 0 while it holds no such translation.
    #[inline(always)]
    pub(crate) fn code_translation(&self, lin: u64) -> u64 {
        let e = &self.tlb.entries[crate::mmu::tlb::code_table(self.code_ctx())][Tlb::slot(lin)];
        if e.exec == lin & !0xfff { translated_link(e.paddr) } else { 0 }
    }

    /// The guard of a new link to the block at `lin` (see `ferrite_jit::LinkCell`): the global
    /// link generation if its page's translation is global, else that translation; `None`
    /// if it has none now (the fault does not show).
    pub(crate) fn link_guard(&mut self, bus: &mut dyn CpuBus, lin: u64) -> Option<u64> {
        let cr2 = self.state.cr2;
        let Ok((Some(_), phys, global)) = self.fetch_code_page(bus, lin) else {
            self.state.cr2 = cr2;
            return None;
        };
        if global {
            self.code.global_link_pages.insert(lin >> 12);
            Some(self.code.global_link_generation)
        } else {
            Some(translated_link(phys))
        }
    }

    // Inlined: it is the hot half of `run_block` (the guarded copy gets one too).
    #[inline(always)]
    fn lookup_block(&mut self, bus: &mut dyn CpuBus, bitness: u32) -> Result<Rc<Block>> {
        Ok(self.find_block::<true>(bus, bitness)?.expect("decoded when missing"))
    }

    /// The block at the current RIP: from the jump cache, else from the blocks decoded so
    /// far (entering it in the jump cache), else decoded now if `DECODE` (else `None`).
    #[inline(always)]
    pub(crate) fn find_block<const DECODE: bool>(&mut self, bus: &mut dyn CpuBus, bitness: u32) -> Result<Option<Rc<Block>>> {
        let lin = self.current_linear_rip();
        let tag = self.jump_tag(bitness);
        let slot = CodeCache::jump_slot(lin);
        if let Some(b) = self.code.cached(lin, tag, || self.code_translation(lin)) {
            return Ok(Some(b.clone()));
        }
        let (host, phys, global) = self.fetch_code_page(bus, lin)?;
        let key = BlockKey { phys: phys | (lin & 0xfff), rip: self.state.rip, bitness };
        let found = self.code.blocks.get(&key).cloned();
        let block = match found.filter(|b| self.second_page_holds(bus, b, lin)) {
            Some(b) => b,
            None if !DECODE => return Ok(None),
            None => {
                let (block, pages) = self.decode_block(bus, lin, host, phys, bitness)?;
                let block = Rc::new(block);
                if host.is_some() {
                    self.code.note_decoded();
                    if let Some(old) = self.code.blocks.insert(key, block.clone()) {
                        // Decoded when another page followed its first.
                        self.code.retired += 1;
                        self.code.retire(old);
                    }
                    for p in pages.into_iter().flatten() {
                        if !self.code.is_code_page(p) {
                            // Writes there must take the slow path now, in every address
                            // space's table (entries filled later see `ram_write_slow`).
                            for t in self.live_tlbs() {
                                t.protect_phys_page(p);
                            }
                        }
                        self.code.pages.entry(p).or_default().push(key);
                    }
                }
                block
            }
        };
        if host.is_some() && block.second_page.is_none() {
            if self.code.jump.is_empty() {
                self.code.jump.resize(JUMP_CACHE_SIZE, None);
            }
            let guard = if global { self.code.jump_generation } else { translated_link(phys) };
            self.code.jump[slot] = Some(JumpEntry { lin, tag, global, guard, insns: block.insns.as_ptr(), block: block.clone() });
        }
        Ok(Some(block))
    }

    /// Whether block `b`, found for linear `lin` by its first page, was decoded from the page
    /// the next linear page translates to now (see `Block::second_page`).
    fn second_page_holds(&mut self, bus: &mut dyn CpuBus, b: &Block, lin: u64) -> bool {
        let Some(second) = b.second_page else { return true };
        matches!(self.next_code_page(bus, lin), Some((Some(_), phys, _)) if phys & !0xfff == second)
    }

    /// Whether the linear page after `lin`'s has a global translation, which is then listed
    /// with those global links depend on (see `CodeCache::global_link_pages`).
    pub(crate) fn next_page_links_globally(&mut self, bus: &mut dyn CpuBus, lin: u64) -> bool {
        let Some((Some(_), _, true)) = self.next_code_page(bus, lin) else { return false };
        let next_lin = (lin | 0xfff).wrapping_add(1) & self.lin_mask();
        self.code.global_link_pages.insert(next_lin >> 12);
        true
    }

    /// `fetch_code_page` of the linear page after `lin`'s, `None` if that fetch faults. The
    /// fault must not show (the walk wrote CR2): decoding again raises it if an instruction
    /// needs that page.
    fn next_code_page(&mut self, bus: &mut dyn CpuBus, lin: u64) -> Option<(Option<*const u8>, u64, bool)> {
        let cr2 = self.state.cr2;
        let next_lin = (lin | 0xfff).wrapping_add(1) & self.lin_mask();
        let page = self.fetch_code_page(bus, next_lin).ok();
        if page.is_none() {
            self.state.cr2 = cr2;
        }
        page
    }

    /// Decodes a block at linear `lin`. Returns the block and the physical pages it covers.
    fn decode_block(
        &mut self,
        bus: &mut dyn CpuBus,
        lin: u64,
        host: Option<*const u8>,
        first_phys: u64,
        bitness: u32,
    ) -> Result<(Block, [Option<u64>; 2])> {
        let mut pages = [Some(first_phys & !0xfff), None];
        let mut second_page = None;
        let page_off = (lin & 0xfff) as usize;
        // Bytes of this page from `lin` on, plus up to 15 bytes of the next page if an
        // instruction straddles the boundary.
        let mut bytes: Vec<u8> = Vec::with_capacity(4096 - page_off + 15);
        match host {
            Some(p) => {
                self.mark_code(first_phys);
                // SAFETY: `fetch_page` returned the host address of a whole 4 KiB guest page.
                bytes.extend_from_slice(unsafe { std::slice::from_raw_parts(p.add(page_off), 4096 - page_off) })
            }
            None => {
                // Code in device memory: read it through the bus, one instruction's worth.
                for i in 0..(15.min(4096 - page_off)) as u64 {
                    bytes.push(bus.mmio_read(first_phys | ((lin + i) & 0xfff), 1) as u8);
                }
            }
        }
        let in_page = bytes.len();
        let mut insns = Vec::new();
        let rip = self.state.rip;
        let mut offset = 0usize;
        // Where the block ends (after its first conditional branch) unless the path beyond
        // turns out to be a loop that those branches leave (see `ferrite_jit::LOOP_EXITS`).
        let mut cut_at = None;
        let mut inner_targets = Vec::new();
        while insns.len() < MAX_BLOCK && offset < in_page {
            let ip = rip.wrapping_add(offset as u64);
            let mut insn = decode_one(&bytes[offset..], bitness, ip);
            if insn.is_none() && !insns.is_empty() {
                // Only a block's first instruction crosses into the next page: a later one
                // starts a block of its own, so that a block beginning early enough in a page
                // lies in it (see `ferrite_jit::local_exit`).
                break;
            }
            if insn.is_none() && bytes.len() == in_page && in_page < 15 {
                // Straddles into the next page: fetch it (may fault; with 15 bytes at hand,
                // the encoding is invalid instead).
                let next_lin = (lin | 0xfff).wrapping_add(1) & self.lin_mask();
                match self.fetch_page(bus, next_lin) {
                    Ok((Some(p2), phys2)) => {
                        self.mark_code(phys2);
                        // SAFETY: as above, a whole host page.
                        bytes.extend_from_slice(unsafe { std::slice::from_raw_parts(p2, 15) });
                        pages[1] = Some(phys2 & !0xfff);
                        second_page = pages[1];
                        insn = decode_one(&bytes[offset..], bitness, ip);
                    }
                    Ok((None, phys2)) => {
                        for i in 0..15u64 {
                            bytes.push(bus.mmio_read(phys2 | i, 1) as u8);
                        }
                        second_page = Some(phys2 & !0xfff);
                        insn = decode_one(&bytes[offset..], bitness, ip);
                    }
                    Err(f) => return Err(f),
                }
            }
            let Some(insn) = insn else {
                if insns.is_empty() {
                    // Invalid encodings and over-long instructions raise #UD (>15 bytes is
                    // #GP on hardware; iced reports both as invalid).
                    return Err(Fault::ud());
                }
                break;
            };
            offset += insn.len();
            let flow = insn.flow_control();
            let loops_back = (insn.is_jmp_short_or_near() || insn.is_jcc_short_or_near()) && insn.near_branch_target() == rip;
            let inner_branch = insn.is_jcc_short_or_near() && !loops_back && inner_targets.len() < ferrite_jit::LOOP_EXITS;
            insns.push(DecodedInsn { handler: handler_for(&insn, &self.model), insn });
            if host.is_none() {
                break;
            }
            if loops_back {
                // The path through the branches before it is a loop. The block runs it all if
                // they leave the loop (taken once per loop): a branch that skips part of it
                // may be taken on most rounds, and would then leave the block each time.
                let end = insn.next_ip();
                if inner_targets.iter().all(|&t| t < rip || t >= end) {
                    cut_at = None;
                }
                break;
            }
            if inner_branch {
                // Go on only if the path the branch falls through to loops back to the start.
                cut_at.get_or_insert(insns.len());
                inner_targets.push(insn.near_branch_target());
                continue;
            }
            if flow != FlowControl::Next {
                break;
            }
        }
        if let Some(n) = cut_at {
            insns.truncate(n);
        }
        let tier = self.tier.new_block_tier();
        if host.is_none() || (second_page.is_some() && pages[1].is_none()) {
            // Code in device memory is decoded afresh each time: never worth compiling.
            tier.slot.set(crate::tier::JitSlot::Never);
        }
        // Only the last instruction may run into the next page.
        let second_page = second_page.filter(|_| offset > in_page);
        Ok((Block { insns: insns.into_boxed_slice(), bitness, second_page, tier }, pages))
    }

    /// Runs one block from the current RIP, stopping early at `end` instructions, when a
    /// handler asks (`end_block`), or when the block's own code was overwritten.
    pub(crate) fn run_block(&mut self, bus: &mut dyn CpuBus, end: u64) -> Result<()> {
        // Drop what other vCPUs and devices made stale before looking the block up.
        self.catch_up_code();
        // No compiled code runs here: blocks dropped from the cache can go (see `tier`).
        if !self.code.graveyard.is_empty() {
            self.code.graveyard.clear();
        }
        // Single-stepping, interrupt shadows, the guest's debug registers, RF and alignment
        // checking (see `guest_debug`) cost this one test while unused.
        let fl = self.state.rflags;
        if fl & (flags::TF | flags::RF | flags::AC) != 0 || self.interrupt_shadow || self.dbg.check_blocks() {
            return self.run_block_guarded(bus, end);
        }
        self.run_block_as::<false>(bus, end)
    }

    #[cold]
    #[inline(never)]
    fn run_block_guarded(&mut self, bus: &mut dyn CpuBus, end: u64) -> Result<()> {
        self.run_block_as::<true>(bus, end)
    }

    /// `run_block`, with TF, the interrupt shadow and the guest's debug facilities looked
    /// at (`GUARDED`) or known idle.
    #[inline(always)]
    fn run_block_as<const GUARDED: bool>(&mut self, bus: &mut dyn CpuBus, end: u64) -> Result<()> {
        let (mut tf, mut single) = (false, false);
        // While breakpoints or alignment checking are in effect, compiled code stays out.
        let mut no_jit = false;
        if GUARDED {
            tf = self.state.rflags & flags::TF != 0;
            single = self.interrupt_shadow || tf;
            single |= self.debug_block_start()?;
            no_jit = self.dbg.no_jit();
        }
        let bitness = self.state.code_bitness();
        let block = self.lookup_block(bus, bitness)?;
        let mut max = if single { 1 } else { (end - self.instructions).min(block.insns.len() as u64) as usize };
        if no_jit || !self.breakpoints.is_empty() {
            // Stop in front of a debugger or guest instruction breakpoint.
            max = max.min(self.breakpoint_limit(&block));
        }
        let ip_mask: u64 = match bitness {
            16 => 0xffff,
            32 => 0xffff_ffff,
            _ => !0,
        };
        if let Some(entry) = self.compiled_entry(&block, single || max < block.insns.len() || no_jit, end - self.instructions) {
            return self.run_compiled(bus, &block, entry, ip_mask, end - self.instructions);
        }
        // An interrupt shadow covers only the first instruction (which then runs alone).
        self.interrupt_shadow = false;
        self.end_block = false;
        self.code.invalidated = false;
        let mut retired = 0;
        for d in &block.insns[..max.max(1)] {
            self.next_rip = d.insn.next_ip() & ip_mask;
            if let Err(f) = (d.handler)(self, bus, &d.insn) {
                self.instructions += retired;
                if GUARDED {
                    // It did not complete: no debug trap for it.
                    self.dbg.discard();
                }
                return Err(f);
            }
            self.state.rip = self.next_rip;
            retired += 1;
            // Also set when the block's own code was overwritten (`code.invalidated`).
            if self.end_block {
                break;
            }
        }
        self.instructions += retired;
        // Single-step (SDM Vol. 3, 18.3.1.4) and data/I-O breakpoint traps after the
        // instruction; RIP already points past it, the trap's return address. Unguarded,
        // nothing can ask (TF and breakpoints are off; MOV SS makes the next block guarded).
        if GUARDED && (tf || self.dbg.check_after()) {
            self.debug_after(bus, tf)?;
        }
        Ok(())
    }
}

/// Asks the host CPU to bring the line at `p` into its caches (a hint: any address will do).
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 reads nothing architecturally and faults on no address; SSE, which
    // it belongs to, is part of x86-64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
}

fn decode_one(bytes: &[u8], bitness: u32, ip: u64) -> Option<Instruction> {
    let mut dec = Decoder::with_ip(bitness, bytes, ip, DecoderOptions::NONE);
    let insn = dec.decode();
    if insn.code() == Code::INVALID {
        if dec.last_error() == DecoderError::NoMoreBytes && bytes.len() < 15 {
            return None;
        }
        // Encodings iced rejects are real #UD; signal with a special marker instruction.
        let mut ud = Instruction::default();
        ud.set_code(Code::INVALID);
        ud.set_len(1);
        ud.set_ip(ip);
        ud.set_next_ip(ip + 1);
        return Some(ud);
    }
    Some(insn)
}
