//! Tiering: the interpreter counts how often each decoded block runs, hands hot blocks to
//! the Cranelift translator (`ferrite-jit`) and runs their code once it exists.
//!
//! Each vCPU owns its code cache (as it owns its decoded blocks) and, in the default tiered
//! mode, one compile thread: hot blocks compile off the vCPU thread while it keeps
//! interpreting them. Compiled code hangs off a decoded block, and a block dies with its page
//! (self-modifying code, other vCPUs' and devices' writes reach every vCPU through the shared
//! code tracking, see `coherence`).
//!
//! Chaining: a compiled block's exits (branch target, next instruction, and the last target
//! of an indirect branch) have cells the CPU links to the compiled block found there, so the
//! code jumps on without returning to the run loop, while the budget lasts and its attention
//! word (`Attention`: a kick, a deliverable interrupt, a code change) is clear (what the run
//! loop would look at between blocks). A link inside the exiting
//! block's first page holds as long as both blocks live; a link to another page holds only
//! while the soft TLB translates that page as it did (or, for a global page, within one
//! global link generation: see `ferrite_jit::LinkCell`). A
//! dropped block clears its own cells and its live entry, so no link leads into it; blocks
//! dropped while compiled code runs wait in the graveyard until the chain has returned.

use crate::bus::CpuBus;
use crate::exception::Fault;
use crate::exec::Block;
use crate::flags::{CcOp, LazyFlags};
use crate::host_mxcsr;
use crate::mmu::{Ctx, TlbEntry, tlb::TLB_BITS};
use crate::state::{flags as rf, CpuState, Segment};
use crate::{Attention, Cpu};
use ferrite_jit::{
    indirect_slot, BlockSpec, CcOps, ChainCell, Entry, ExecStatus, FrameLayout, Job, Layout, LinkCell, Service, Translator,
    CELL_INDIRECT_BEFORE, CHAIN_CELLS, CHAIN_EXITS, EXIT_INDIRECT, GLOBAL_LINK, INDIRECT_TABLE_SLOTS, LOCAL_LINK,
};
use std::cell::{Cell, RefCell};
use std::mem::{offset_of, size_of};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// When blocks are compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JitMode {
    /// Interpreter only.
    Off,
    /// Blocks that ran `threshold` times compile on a background thread.
    On,
    /// Every block compiles before its first run, on the vCPU thread (for testing the
    /// translator on everything the interpreter runs).
    Always,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitConfig {
    pub mode: JitMode,
    /// Executions of a block before it is queued for compilation.
    pub threshold: u32,
    /// Host code bytes a vCPU may hold; beyond it the whole cache is dropped and refilled.
    pub cache_bytes: usize,
    /// Write `/tmp/perf-PID.map` so `perf report` names compiled blocks.
    pub perf_map: bool,
    /// Link compiled blocks' direct exits to one another (see the module's notes).
    pub chain: bool,
    /// Compile blocks in the quick tier first (see `ferrite_jit::BlockSpec::quick`), and
    /// again at full speed after `promote_runs` runs of that code.
    pub quick_first: bool,
    pub promote_runs: u32,
}

impl Default for JitConfig {
    fn default() -> Self {
        JitConfig {
            mode: JitMode::On,
            threshold: DEFAULT_THRESHOLD,
            cache_bytes: 256 << 20,
            perf_map: false,
            chain: true,
            quick_first: true,
            promote_runs: DEFAULT_PROMOTE_RUNS,
        }
    }
}

/// Runs before a block is queued for compiling. Chosen by measurement (`scripts/bench`, 2
/// cores): with one queue, 200 sped up fork+exec (code a spawn runs once) but slowed the boot's
/// init phase (its hottest blocks waited behind warm ones) and 50 slowed it more. With loops
/// compiled as one block and the CPU structure's layout fixed, 100 against 200 (eight runs
/// each) gave fork+exec 0.8-0.97x the time and no slower boot; 50 slowed init by 9% and grew
/// RSS. With waiting blocks sent again at higher priorities (below): 50 with idle cold blocks
/// dropped (`exec::CodeCache::note_decoded`, which pays for the RSS) against 100 without (five
/// interleaved runs each) gave fork+exec 0.86x the time (medians 1.43 s, 1.67 s), init 0.97x
/// and 4 MiB less RSS. With resent jobs sharing one copy of the instructions (a backlog no
/// longer grows RSS by copies) and exits into blocks that run into the next page linked, 20
/// against 30 and 50 (five interleaved runs each): fork+exec 0.89, 0.92 and 1.08 s, the other
/// phases alike, 6 MiB more RSS; 10 grew RSS by 13 MiB for no faster fork+exec.
const DEFAULT_THRESHOLD: u32 = 20;

/// Runs of a block's quick code before it is compiled at full speed. The quick tier compiles
/// in two thirds of the time, which shortens the backlog of a boot or of fork+exec (code
/// that runs hundreds of times); code that runs this often pays for a second compile. In two
/// interleaved A/Bs of `scripts/bench`'s workload (5 boots each), 10,000 beat 50,000 on the
/// kernel, init, sha256 and float phases (by 5-20%), for 3-5 MiB more RSS.
const DEFAULT_PROMOTE_RUNS: u32 = 10_000;

/// The compile thread's priority (of `ferrite_jit::PRIORITIES`) for a block's full-speed
/// compile: the top, as its quick code ran `promote_runs` times, more than a waiting block
/// reaches below the top. At threshold 20 (five interleaved runs each), the top against level
/// 3 and level 0: sha256 0.53, 0.57 and 0.69 s, float 1.76, 1.73 and 2.12 s, fork+exec 0.75,
/// 0.79 and 0.85 s.
const PROMOTE_PRIORITY: usize = ferrite_jit::PRIORITIES - 1;

/// The priority a queued block that reached `hits` runs is sent again at, if any: one level
/// up each time the count doubles from twice the threshold, so the compile thread takes the
/// blocks that run most while they wait first.
fn resend_priority(hits: u32, threshold: u32) -> Option<usize> {
    let t = threshold.max(1);
    let times = hits / t;
    let level = times.trailing_zeros() as usize;
    (hits % t == 0 && times >= 2 && times.is_power_of_two() && level < ferrite_jit::PRIORITIES).then_some(level)
}

impl JitConfig {
    /// The default, adjusted by `FERRITE_JIT=off|on|always`, `FERRITE_JIT_THRESHOLD=N`,
    /// `FERRITE_JIT_CHAIN=0`, `FERRITE_JIT_QUICK=0` (full speed at once) or `=N` (promote
    /// after N runs) and `FERRITE_PERF_MAP=1` (so test suites and benchmarks can switch
    /// tiers without options).
    pub fn from_env() -> Self {
        let mut c = JitConfig::default();
        if let Ok(v) = std::env::var("FERRITE_JIT") {
            if let Ok(m) = v.parse() {
                c.mode = m;
            }
        }
        if let Some(n) = std::env::var("FERRITE_JIT_THRESHOLD").ok().and_then(|v| v.parse().ok()) {
            c.threshold = n;
        }
        c.perf_map = std::env::var("FERRITE_PERF_MAP").is_ok_and(|v| v == "1");
        c.chain = !std::env::var("FERRITE_JIT_CHAIN").is_ok_and(|v| v == "0");
        if let Some(n) = std::env::var("FERRITE_JIT_QUICK").ok().and_then(|v| v.parse::<u32>().ok()) {
            c.quick_first = n != 0;
            c.promote_runs = n.max(1);
        }
        c
    }
}

impl std::str::FromStr for JitMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(JitMode::Off),
            "on" => Ok(JitMode::On),
            "always" => Ok(JitMode::Always),
            _ => Err(format!("'{s}' is not a JIT mode (off, on or always)")),
        }
    }
}

/// A block's standing with the translator.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) enum JitSlot {
    #[default]
    Cold,
    Queued,
    Compiled {
        entry: usize,
        user: bool,
    },
    /// The translator failed on it: interpret for good.
    Never,
}

impl JitSlot {
    /// Not compiled, nor on its way to be.
    pub fn is_cold(self) -> bool {
        matches!(self, JitSlot::Cold)
    }
}

/// Per-block tiering state (lives in `exec::Block`).
#[derive(Default)]
pub(crate) struct BlockTier {
    pub serial: u64,
    pub hits: Cell<u32>,
    /// `hits` as the cache's last sweep for idle blocks saw it (see `CodeCache::note_decoded`).
    pub swept_hits: Cell<u32>,
    pub slot: Cell<JitSlot>,
    /// The compiled entry while the block is compiled and in the cache, else 0: the word
    /// other blocks' linked exits jump through.
    pub live_entry: Cell<usize>,
    /// Dropped from the cache: never compiled or linked again.
    pub retired: Cell<bool>,
    /// Compiled again with a probe per access (see `ungroup`).
    pub ungrouped: Cell<bool>,
    /// Runs left for the quick tier's code (see `ferrite_jit::BlockSpec::countdown`), which
    /// decrements it in place.
    pub countdown: Cell<u32>,
    /// Sent back to be compiled at full speed (see `promote`).
    pub promoted: Cell<bool>,
    /// Made when the block is first compiled: most blocks never are.
    chain: std::cell::OnceCell<Box<Chain>>,
    /// Its latest compile job, until the result comes: sent again while it waits, cancelled
    /// if the block goes first (see `ferrite_jit::Job`).
    job: RefCell<Option<Job>>,
}

/// A compiled block's links, both ways.
#[derive(Default)]
struct Chain {
    /// The block's exits' links, held in its compiled code (`CHAIN_CELLS`: the indirect
    /// branch has two).
    cells: [LinkCell; CHAIN_CELLS],
    /// The blocks those cells lead to, kept alive while linked.
    links: RefCell<[Option<Rc<Block>>; CHAIN_CELLS]>,
    /// The cells holding this block's entry: other blocks' (`links` names this block for
    /// each) and the indirect table's. `unlink` clears them, since compiled code jumps to the
    /// entry a cell holds. A cell is listed only while its owner names this block, so every
    /// pointer here is live.
    incoming: RefCell<Vec<CellRef>>,
}

/// A cell holding a block's entry: another block's link, or a slot of the indirect table.
#[derive(Clone, Copy, PartialEq)]
enum CellRef {
    Link(*const LinkCell),
    Table(*const ChainCell),
}

impl CellRef {
    /// Unlinks the cell.
    ///
    /// # Safety
    /// The cell is alive (as every listed one is, see `Chain::incoming`).
    unsafe fn clear(self) {
        // SAFETY: the caller's.
        unsafe {
            match self {
                CellRef::Link(c) => (*c).set(0, 0, 0),
                CellRef::Table(c) => (*c).set(0, 0, 0),
            }
        }
    }
}

impl BlockTier {
    /// Makes the block unreachable through links, both ways: no link leads into it, its own
    /// exits lead nowhere. The blocks it linked to go to `graveyard` (compiled code may be
    /// running them).
    pub fn unlink(&self, graveyard: &mut Vec<Rc<Block>>) {
        self.live_entry.set(0);
        let Some(chain) = self.chain.get() else { return };
        for cell in chain.incoming.take() {
            // SAFETY: listed cells are live (see `incoming`); only this thread touches them.
            unsafe { cell.clear() };
        }
        for (i, cell) in chain.cells.iter().enumerate() {
            self.link(i, None, 0, 0, graveyard);
            // The code may go with the next flush of the cache (and is not run again).
            cell.detach();
        }
    }

    /// The block's links, made on first use.
    fn chain(&self) -> &Chain {
        self.chain.get_or_init(Box::default)
    }

    /// The block's link cells.
    pub fn cells(&self) -> &[LinkCell; CHAIN_CELLS] {
        &self.chain().cells
    }

    /// The block's code (compiled for this epoch) holds its links at `sites` from now on.
    pub fn attach_code(&self, code: &ferrite_jit::Compiled) {
        for ((cell, sites), unlinked) in self.cells().iter().zip(code.sites).zip(code.unlinked) {
            // SAFETY: the sites are in the block's code, which this vCPU's thread alone runs,
            // and which stays mapped until the cache is flushed, which unlinks (detaches)
            // every block first.
            unsafe { cell.attach(sites, unlinked) };
        }
    }

    /// Points cell `i` at `target` (whose entry is `entry`, 0 for none) under `guard`, for
    /// RIP `rip`; the block it named before goes to `graveyard`.
    fn link(&self, i: usize, target: Option<Rc<Block>>, guard: u64, rip: u64, graveyard: &mut Vec<Rc<Block>>) {
        let chain = self.chain();
        let cell = &chain.cells[i];
        let entry = target.as_ref().map_or(0, |t| t.tier.live_entry.get());
        let same = matches!((&chain.links.borrow()[i], &target), (Some(old), Some(new)) if Rc::ptr_eq(old, new));
        if same && cell.target() == entry && entry != 0 {
            // Linked again (under a new guard): it stays listed.
            cell.set(entry, guard, rip);
            return;
        }
        cell.set(entry, guard, rip);
        let cell = CellRef::Link(cell);
        if let Some(t) = target.as_ref().filter(|_| entry != 0) {
            t.tier.chain().incoming.borrow_mut().push(cell);
        }
        let old = std::mem::replace(&mut chain.links.borrow_mut()[i], target);
        if let Some(old) = old {
            old.tier.forget_incoming(cell);
            graveyard.push(old);
        }
    }

    /// Drops `cell` from the cells holding this block's entry (it names another now, or is
    /// going).
    fn forget_incoming(&self, cell: CellRef) {
        let Some(chain) = self.chain.get() else { return };
        let mut incoming = chain.incoming.borrow_mut();
        if let Some(at) = incoming.iter().rposition(|&c| c == cell) {
            incoming.swap_remove(at);
        }
    }

    /// Sends the block back to the interpreter, to be compiled again with a probe per
    /// access once hot: a probe for a group of accesses at one base found the group's span
    /// across a page boundary (see `ferrite_jit::BlockSpec::groups`), which it would on
    /// every run while the base stays there. Once only: a single access across pages does
    /// that too.
    pub fn ungroup(&self, graveyard: &mut Vec<Rc<Block>>) -> bool {
        if self.ungrouped.get() || !matches!(self.slot.get(), JitSlot::Compiled { .. }) {
            return false;
        }
        self.ungrouped.set(true);
        self.unlink(graveyard);
        self.slot.set(JitSlot::Cold);
        self.hits.set(0);
        true
    }

    /// Marks the block's quick code for a compile at full speed (its countdown ran out): the
    /// privilege it was compiled for, or `None` if it is not compiled or was marked before.
    pub fn promote(&self) -> Option<bool> {
        let JitSlot::Compiled { user, .. } = self.slot.get() else { return None };
        if self.promoted.replace(true) {
            return None;
        }
        Some(user)
    }

    /// The block left the cache.
    pub fn retire(&self, graveyard: &mut Vec<Rc<Block>>) {
        self.retired.set(true);
        self.cancel_job();
        self.unlink(graveyard);
    }

    /// Tells the compile thread to drop the block's job if it is still queued.
    fn cancel_job(&self) {
        if let Some(job) = self.job.take() {
            job.cancel();
        }
    }

    /// The block's job, if the compile thread has not taken it yet.
    fn waiting_job(&self) -> Option<Job> {
        self.job.borrow().as_ref().filter(|j| j.is_waiting()).cloned()
    }
}

impl Drop for BlockTier {
    /// A block may go without `unlink` (a compiled block of device memory, which the cache
    /// never holds, or the whole cache at once): its cells leave the lists of the blocks they
    /// name, which its links keep alive until here.
    fn drop(&mut self) {
        self.cancel_job();
        let Some(chain) = self.chain.get_mut() else { return };
        for (cell, target) in chain.cells.iter().zip(chain.links.get_mut().iter_mut()) {
            if let Some(t) = target.take() {
                t.tier.forget_incoming(CellRef::Link(cell));
            }
        }
    }
}

/// The CPU's indirect table (see `ferrite_jit::indirect_slot`): cells compiled code reads at
/// the address it was handed, and the blocks they lead to, kept alive while named there.
pub(crate) struct IndirectTable {
    cells: Box<[ChainCell]>,
    targets: Vec<Option<Rc<Block>>>,
}

impl Default for IndirectTable {
    fn default() -> Self {
        let slots = 2 * INDIRECT_TABLE_SLOTS;
        IndirectTable { cells: (0..slots).map(|_| ChainCell::default()).collect(), targets: vec![None; slots] }
    }
}

impl IndirectTable {
    pub fn address(&self) -> usize {
        self.cells.as_ptr() as usize
    }

    /// Links `rip` (of 64-bit code at privilege `user`) to `target` under `guard`; the block
    /// it named before goes to `graveyard` (compiled code may be running it).
    fn set(&mut self, rip: u64, user: bool, target: &Rc<Block>, guard: u64, graveyard: &mut Vec<Rc<Block>>) {
        let slot = indirect_slot(rip, user);
        let cell = &self.cells[slot];
        let entry = target.tier.live_entry.get();
        if self.targets[slot].as_ref().is_some_and(|t| Rc::ptr_eq(t, target)) && cell.target.get() == entry {
            // Linked again (under a new guard): it stays listed.
            cell.set(entry, guard, rip);
            return;
        }
        self.forget(slot, graveyard);
        let cell = &self.cells[slot];
        cell.set(entry, guard, rip);
        target.tier.chain().incoming.borrow_mut().push(CellRef::Table(cell));
        self.targets[slot] = Some(target.clone());
    }

    /// Empties slot `slot`; the block it named goes to `graveyard`.
    fn forget(&mut self, slot: usize, graveyard: &mut Vec<Rc<Block>>) {
        let cell = &self.cells[slot];
        cell.set(0, 0, 0);
        if let Some(old) = self.targets[slot].take() {
            old.tier.forget_incoming(CellRef::Table(cell));
            graveyard.push(old);
        }
    }

    /// Forgets every link (the code cache is emptied).
    pub fn clear(&mut self, graveyard: &mut Vec<Rc<Block>>) {
        for slot in 0..self.cells.len() {
            self.forget(slot, graveyard);
        }
    }
}

/// Counters for the closing numbers (`FERRITE_JIT_STATS=1` prints them when the CPU goes).
#[derive(Clone, Copy, Debug, Default)]
pub struct JitStats {
    pub blocks_compiled: u64,
    pub guest_insns_compiled: u64,
    pub native_insns: u64,
    pub ir_insts: u64,
    pub compile_ns: u64,
    /// Compiled results dropped unrun (their block was invalidated or the cache flushed while
    /// they were compiled), and the compile time they cost.
    pub results_dropped: u64,
    pub dropped_ns: u64,
    /// Jobs the compile thread dropped unread, their block retired while they waited.
    pub jobs_unwanted: u64,
    /// Blocks decoded, and dropped because their code was written.
    pub blocks_decoded: u64,
    pub blocks_retired: u64,
    /// Blocks dropped because they stayed cold and idle (see `CodeCache::note_decoded`).
    pub blocks_evicted: u64,
    pub code_bytes: u64,
    pub cache_flushes: u64,
    pub failures: u64,
    /// Runs of compiled blocks, and guest instructions they retired.
    pub compiled_runs: u64,
    pub compiled_insns: u64,
    /// Of those runs, the ones entered through a linked exit rather than the run loop.
    pub chained_runs: u64,
    /// Why chains returned to the run loop: an exit without a valid link (by exit index:
    /// taken, next, the inner branches', indirect), a fault, a side exit, or the rest (see
    /// `other_returns`).
    pub unlinked_returns: [u64; CHAIN_EXITS],
    /// Links made (by exit index), first ones and replacements: an indirect exit relinks
    /// whenever its target is neither of the last two.
    pub links: [u64; CHAIN_EXITS],
    pub fault_returns: u64,
    /// Side exits: an access the inline TLB probe could not serve (the interpreter ran it).
    pub side_exits: u64,
    /// TLB fills compiled code asked for: done by a page walk, answered by one of the TLB's
    /// victims (see `mmu::tlb::VICTIMS`), and not possible (a side exit follows).
    pub fills: u64,
    pub victim_fills: u64,
    pub fills_failed: u64,
    /// Blocks sent back to be compiled with a probe per access (see `BlockTier::ungroup`).
    pub ungrouped: u64,
    /// Blocks sent back from the quick tier to be compiled at full speed.
    pub promoted: u64,
    /// The rest, by what the CPU finds afterwards: the budget spent, the attention word's
    /// kick, INTR line (with RFLAGS.IF set) or code change, else an instruction that ended
    /// its block (a mode change, a string instruction not finished, a bus without an INTR
    /// line to watch).
    pub other_returns: [u64; 5],
    /// Instructions the CPU retired in all (compiled or interpreted), as of the report.
    pub all_insns: u64,
}

impl JitStats {
    /// Counts a result that will never run: compiled, or a job dropped unread.
    fn drop_result(&mut self, done: &ferrite_jit::Done) {
        if let Err(ferrite_jit::JitError::Unwanted) = done.result {
            self.jobs_unwanted += 1;
            return;
        }
        self.results_dropped += 1;
        self.dropped_ns += done.compile_ns;
    }
}

/// With `FERRITE_JIT_STATS=1`: how often compiled code ran each instruction form through the
/// interpreter (what the translator should learn next).
#[derive(Default)]
struct HelperCounts(Option<Box<[u64]>>);

impl HelperCounts {
    fn new(on: bool) -> Self {
        HelperCounts(on.then(|| vec![0; iced_x86::Code::values().count()].into_boxed_slice()))
    }

    fn is_on(&self) -> bool {
        self.0.is_some()
    }

    fn count(&mut self, m: iced_x86::Code) {
        if let Some(c) = &mut self.0 {
            c[m as usize] += 1;
        }
    }

    fn top(&self, n: usize) -> String {
        let Some(c) = &self.0 else { return String::new() };
        let mut v: Vec<(u64, usize)> = c.iter().enumerate().filter(|(_, &k)| k > 0).map(|(i, &k)| (k, i)).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        let names = iced_x86::Code::values().collect::<Vec<_>>();
        v.iter().take(n).map(|&(k, i)| format!("{:?} {k}", names[i])).collect::<Vec<_>>().join(", ")
    }
}

pub(crate) struct Tier {
    pub config: JitConfig,
    service: Option<Service>,
    local: Option<Translator>,
    /// The trampoline into compiled code, made with the first translator.
    entry: Option<Entry>,
    /// Generation of compiled code; results of older generations are dropped unrun.
    epoch: u64,
    next_serial: u64,
    held_bytes: usize,
    broken: bool,
    reported: bool,
    pub stats: JitStats,
    helped: HelperCounts,
}

impl Tier {
    pub fn new(config: JitConfig) -> Self {
        Tier {
            config,
            service: None,
            local: None,
            entry: None,
            epoch: 0,
            next_serial: 1,
            held_bytes: 0,
            broken: false,
            reported: false,
            stats: JitStats::default(),
            helped: HelperCounts::new(stats_wanted()),
        }
    }

    pub fn new_block_tier(&mut self) -> BlockTier {
        self.next_serial += 1;
        let mut tier = BlockTier::default();
        tier.serial = self.next_serial;
        tier
    }
}

impl Tier {
    /// Prints the counters to stderr once, if `FERRITE_JIT_STATS=1`.
    fn report(&mut self) {
        if self.reported || !stats_wanted() {
            return;
        }
        self.reported = true;
        // A CPU that ran nothing (dropped without `report_jit_stats`) has nothing to say.
        if self.stats.all_insns == 0 && self.stats.blocks_compiled == 0 {
            return;
        }
        for line in self.stats_text().lines() {
            eprintln!("ferrite: jit: {line}");
        }
    }

    /// The counters, a few lines of text (see `Cpu::jit_report`).
    fn stats_text(&self) -> String {
        use std::fmt::Write;
        let s = self.stats;
        let mut o = String::new();
        if s.all_insns > 0 {
            let _ = writeln!(o, "{} instructions in all, {:.1}% in compiled code", s.all_insns, s.compiled_insns as f64 * 100.0 / s.all_insns as f64);
        }
        if s.blocks_compiled == 0 {
            let _ = writeln!(o, "no block compiled; {} blocks decoded", s.blocks_decoded);
            return o;
        }
        let _ = writeln!(
            o,
            "{} blocks ({} guest instructions, {} native) compiled from {} IR instructions in {:.1} ms ({:.2} us per instruction), {} KiB of code, {} cache flushes, {} failures; {} compiled runs ({} chained) retired {} instructions",
            s.blocks_compiled,
            s.guest_insns_compiled,
            s.native_insns,
            s.ir_insts,
            s.compile_ns as f64 / 1e6,
            s.compile_ns as f64 / 1e3 / s.guest_insns_compiled.max(1) as f64,
            s.code_bytes / 1024,
            s.cache_flushes,
            s.failures,
            s.compiled_runs,
            s.chained_runs,
            s.compiled_insns
        );
        let _ = writeln!(o, "links made {:?} (taken, next, inner..., indirect)", s.links);
        let _ = writeln!(
            o,
            "TLB fills for compiled code: {} done, {} from a victim, {} left to the interpreter; {} blocks compiled again with a probe per access, {} at full speed after the quick tier",
            s.fills, s.victim_fills, s.fills_failed, s.ungrouped, s.promoted
        );
        let _ = writeln!(
            o,
            "{} blocks decoded, {} dropped as their code was written, {} as they stayed cold and idle; {} compiled results dropped unrun ({:.1} ms of compiling), {} queued jobs dropped uncompiled",
            s.blocks_decoded,
            s.blocks_retired,
            s.blocks_evicted,
            s.results_dropped,
            s.dropped_ns as f64 / 1e6,
            s.jobs_unwanted
        );
        let _ = writeln!(
            o,
            "chains returned {} times: unlinked exits {:?} (taken, next, inner..., indirect), {} faults, {} side exits, others {:?} (budget, kick, interrupt, code, block ended)",
            s.unlinked_returns.iter().sum::<u64>() + s.fault_returns + s.side_exits + s.other_returns.iter().sum::<u64>(),
            s.unlinked_returns,
            s.fault_returns,
            s.side_exits,
            s.other_returns
        );
        let _ = writeln!(o, "interpreted inside compiled code: {}", self.helped.top(16));
        o
    }
}

fn stats_wanted() -> bool {
    std::env::var("FERRITE_JIT_STATS").is_ok_and(|v| v == "1")
}

impl Drop for Tier {
    fn drop(&mut self) {
        self.report();
    }
}

/// What a chain of compiled blocks and their helpers share: the CPU, the bus, the running
/// block, and what the blocks read and write at their exits (see `FrameLayout`).
#[repr(C)]
pub(crate) struct Frame<'a> {
    cpu: *mut Cpu,
    bus: *mut (dyn CpuBus + 'a),
    block: *const Block,
    ip_mask: u64,
    fault: Option<Fault>,
    retired: u64,
    limit: u64,
    runs: u64,
    attention: *const Attention,
    /// The chain ended at an exit `jit_link` found no compiled block for.
    unlinked: bool,
    /// See `FrameLayout::side_exit`.
    side_exit: u64,
    /// See `FrameLayout::link_stub`.
    link_stub: usize,
    /// See `FrameLayout::fill_stub` and `fill_ok`.
    fill_stub: usize,
    fill_ok: u64,
    /// A fill failed as the access crossed a page boundary.
    fill_crossed_page: bool,
    /// See `FrameLayout::indirect_table`.
    indirect_table: usize,
}

/// Runs instruction `index` of the frame's block through the interpreter, as `run_block`
/// does, for the code the translator does not emit natively.
extern "C" fn jit_exec(frame: *mut Frame<'_>, index: u64) -> u64 {
    // SAFETY: compiled code receives `frame` from `run_compiled`, which built it from live
    // `&mut` borrows of the CPU and the bus and keeps the block alive; nothing else uses
    // them during the call, and generated code touches the CPU only between helper calls.
    let f = unsafe { &mut *frame };
    // SAFETY: as above.
    let (cpu, bus, block) = unsafe { (&mut *f.cpu, &mut *f.bus, &*f.block) };
    if cpu.tier.helped.is_on() {
        if let Some(d) = block.insns.get(index as usize) {
            cpu.tier.helped.count(d.insn.code());
        }
    }
    // The instruction may read MXCSR (STMXCSR, FXSAVE); what Rust code raises is not the
    // guest's.
    host_mxcsr::leave(&mut cpu.state.fpu.mxcsr);
    let status = match cpu.exec_one(bus, block, index as usize, f.ip_mask) {
        Ok(true) => ExecStatus::Next,
        Ok(false) if cpu.sti_goes_on(bus, block, index as usize) => ExecStatus::Next,
        Ok(false) => ExecStatus::Stop,
        Err(fault) => {
            f.fault = Some(fault);
            ExecStatus::Fault
        }
    };
    host_mxcsr::enter();
    status as u64
}

impl Cpu {
    /// After STI at `index` of `block` ended the block for its interrupt shadow: whether the
    /// block may go on instead, as nothing waits to be delivered after the next instruction,
    /// which is the block's own (the shadow is then cleared: no interrupt check falls inside
    /// it). An interrupt raised later is seen at the block's exit, as one raised while any
    /// other instruction runs.
    fn sti_goes_on(&mut self, bus: &mut dyn CpuBus, block: &Block, index: usize) -> bool {
        // STI ends a block for nothing else.
        let shadow_only = block.insns[index].insn.code() == iced_x86::Code::Sti && self.interrupt_shadow;
        if !shadow_only || index + 1 >= block.insns.len() || self.nmi_pending || bus.interrupt_pending() {
            return false;
        }
        self.interrupt_shadow = false;
        self.end_block = false;
        true
    }

    /// Runs instruction `index` of `block` through the interpreter, as `run_block` does, with
    /// RIP at it. `Ok(true)`: retired, and the block may go on with the next instruction.
    fn exec_one(&mut self, bus: &mut dyn CpuBus, block: &Block, index: usize, ip_mask: u64) -> crate::Result<bool> {
        let Some(d) = block.insns.get(index) else { return Ok(false) };
        let next = d.insn.next_ip() & ip_mask;
        self.next_rip = next;
        (d.handler)(self, bus, &d.insn)?;
        self.state.rip = self.next_rip;
        Ok(!self.end_block && self.next_rip == next)
    }
}

/// Links exit `exit` of the frame's block, at which compiled code found no link that holds
/// (and nothing that needs the run loop), to the compiled block for the new RIP; returns its
/// entry, or 0 to end the chain.
extern "C" fn jit_link(frame: *mut Frame<'_>, exit: u64) -> u64 {
    // SAFETY: as in `jit_exec`: the frame and the CPU are live and unborrowed during the
    // call; the frame's block is the one running (kept alive by its chain or the graveyard).
    let f = unsafe { &mut *frame };
    // SAFETY: as above.
    let (cpu, bus, owner) = unsafe { (&mut *f.cpu, &mut *f.bus, &*f.block) };
    match cpu.link_exit(bus, owner, exit as usize) {
        Some(entry) => entry as u64,
        None => {
            f.unlinked = true;
            cpu.tier.stats.unlinked_returns[(exit as usize).min(CHAIN_EXITS - 1)] += 1;
            0
        }
    }
}

/// Fills the TLB for an access whose inline probe missed (see `Layout::tlb_fill`).
extern "C" fn jit_tlb_fill(frame: *mut Frame<'_>, lin: u64, request: u64) {
    // SAFETY: as in `jit_exec`: the frame and the CPU are live and unborrowed during the
    // call; the fill reads no guest register compiled code may hold.
    let f = unsafe { &mut *frame };
    // SAFETY: as above.
    let (cpu, bus) = unsafe { (&mut *f.cpu, &mut *f.bus) };
    // Unlike `jit_exec`, the host MXCSR (the guest's while compiled code runs) is left as it
    // is: no floating point runs here.
    let (size, read, write) = ferrite_jit::parse_fill_request(request);
    let victim_hits = cpu.tlb.victim_hits;
    let ok = cpu.fill_for_compiled(bus, lin, size, read, write);
    f.fill_crossed_page |= !ok && (lin & 0xfff) + size as u64 > 4096;
    let from_victim = cpu.tlb.victim_hits != victim_hits;
    let s = &mut cpu.tier.stats;
    match (ok, from_victim) {
        (true, false) => s.fills += 1,
        (true, true) => s.victim_fills += 1,
        (false, _) => s.fills_failed += 1,
    }
    f.fill_ok = ok as u64;
}

/// Folds the pending flags into RFLAGS, for compiled code that reads or keeps some of them.
extern "C" fn jit_flags(cpu: *mut Cpu, _: u64) -> u64 {
    // SAFETY: called by compiled code with the CPU pointer it received, between accesses.
    let cpu = unsafe { &mut *cpu };
    cpu.materialize_flags();
    cpu.state.rflags
}

// `BlockSpec::opaque` has a bit per instruction of a block.
const _: () = assert!(crate::exec::MAX_BLOCK <= 64);

// The translator picks the AC context as supervisor + RFLAGS.AC.
const _: () = assert!(Ctx::SupervisorAc as u32 == Ctx::Supervisor as u32 + 1);

pub(crate) fn layout() -> Layout {
    let st = offset_of!(Cpu, state);
    let cc = offset_of!(Cpu, cc);
    let at = |o: usize| o as i32;
    Layout {
        gpr: at(st + offset_of!(CpuState, gpr)),
        rip: at(st + offset_of!(CpuState, rip)),
        rflags: at(st + offset_of!(CpuState, rflags)),
        cr0: at(st + offset_of!(CpuState, cr0)),
        cr4: at(st + offset_of!(CpuState, cr4)),
        xmm: at(st + offset_of!(CpuState, fpu) + offset_of!(crate::state::FpuState, xmm)),
        mxcsr: at(st + offset_of!(CpuState, fpu) + offset_of!(crate::state::FpuState, mxcsr)),
        cc_op: at(cc + offset_of!(LazyFlags, op)),
        cc_size: at(cc + offset_of!(LazyFlags, size)),
        cc_carry_in: at(cc + offset_of!(LazyFlags, carry_in)),
        cc_dst: at(cc + offset_of!(LazyFlags, dst)),
        cc_src: at(cc + offset_of!(LazyFlags, src)),
        cc_res: at(cc + offset_of!(LazyFlags, res)),
        cc_ops: CcOps {
            eflags: CcOp::Eflags as u8,
            add: CcOp::Add as u8,
            sub: CcOp::Sub as u8,
            logic: CcOp::Logic as u8,
            inc: CcOp::Inc as u8,
            dec: CcOp::Dec as u8,
            shl: CcOp::Shl as u8,
            shr: CcOp::Shr as u8,
            sar: CcOp::Sar as u8,
            mul: CcOp::Mul as u8,
        },
        seg_base: std::array::from_fn(|i| {
            at(st + offset_of!(CpuState, seg) + i * size_of::<Segment>() + offset_of!(Segment, base))
        }),
        seg_selector: std::array::from_fn(|i| {
            at(st + offset_of!(CpuState, seg) + i * size_of::<Segment>() + offset_of!(Segment, selector))
        }),
        ss_attrs: at(st + offset_of!(CpuState, seg) + crate::Seg::Ss as usize * size_of::<Segment>() + offset_of!(Segment, attrs)),
        dpl_shift: crate::state::seg_attr::DPL_SHIFT,
        kernel_gs_base: at(st + offset_of!(CpuState, msr) + offset_of!(crate::state::Msrs, kernel_gs_base)),
        tlb: at(offset_of!(Cpu, tlb)),
        tlb_bits: TLB_BITS,
        tlb_entry_size: size_of::<TlbEntry>() as i32,
        tlb_read: at(offset_of!(TlbEntry, read)),
        tlb_write: at(offset_of!(TlbEntry, write)),
        tlb_addend: at(offset_of!(TlbEntry, addend)),
        tlb_exec: at(offset_of!(TlbEntry, exec)),
        tlb_paddr: at(offset_of!(TlbEntry, paddr)),
        code_tables: crate::mmu::tlb::code_table(Ctx::Supervisor) as u32,
        ctx_supervisor: Ctx::Supervisor as u32,
        ctx_user: Ctx::User as u32,
        exec: jit_exec as *const () as usize,
        link: jit_link as *const () as usize,
        tlb_fill: jit_tlb_fill as *const () as usize,
        flags: jit_flags as *const () as usize,
        global_link_generation: at(offset_of!(Cpu, code) + offset_of!(crate::exec::CodeCache, global_link_generation)),
        attention_intr: Attention::intr_bits(),
        frame: FrameLayout {
            block: at(offset_of!(Frame<'static>, block)),
            retired: at(offset_of!(Frame<'static>, retired)),
            limit: at(offset_of!(Frame<'static>, limit)),
            runs: at(offset_of!(Frame<'static>, runs)),
            attention: at(offset_of!(Frame<'static>, attention)),
            side_exit: at(offset_of!(Frame<'static>, side_exit)),
            link_stub: at(offset_of!(Frame<'static>, link_stub)),
            fill_stub: at(offset_of!(Frame<'static>, fill_stub)),
            fill_ok: at(offset_of!(Frame<'static>, fill_ok)),
            indirect_table: at(offset_of!(Frame<'static>, indirect_table)),
        },
    }
}

impl Cpu {
    /// Chooses when blocks are compiled (drops the code compiled so far).
    pub fn set_jit(&mut self, config: JitConfig) {
        self.code.clear();
        self.tier = Tier::new(config);
    }

    pub fn jit_stats(&self) -> JitStats {
        let mut s = self.tier.stats;
        self.counters_into(&mut s);
        s
    }

    /// Prints the translator's counters to stderr if `FERRITE_JIT_STATS=1` (once).
    pub fn report_jit_stats(&mut self) {
        self.sync_jit_stats();
        self.tier.report();
    }

    /// The translator's counters so far, as `FERRITE_JIT_STATS=1` prints them at the end
    /// (the monitor's `info jit`).
    pub fn jit_report(&mut self) -> String {
        self.sync_jit_stats();
        let c = self.tier.config;
        let mode = match c.mode {
            JitMode::Off => "off (jit=off): the interpreter runs every block".to_string(),
            JitMode::On => format!("on: blocks compile after {} runs", c.threshold),
            JitMode::Always => "always: every block compiles before its first run".to_string(),
        };
        format!("translator {mode}\n{}", self.tier.stats_text())
    }

    /// Copies the counts the CPU and the code cache keep into the translator's counters.
    fn sync_jit_stats(&mut self) {
        let mut s = self.tier.stats;
        self.counters_into(&mut s);
        self.tier.stats = s;
    }

    /// The counters kept outside the translator's statistics, copied into `s`.
    fn counters_into(&self, s: &mut JitStats) {
        s.all_insns = self.instructions;
        s.blocks_decoded = self.code.decoded;
        s.blocks_retired = self.code.retired;
        s.blocks_evicted = self.code.evicted;
    }

    /// The compiled entry of `block` if it may run now: compiled for this privilege level,
    /// no single-stepping, debugger breakpoints or watchpoints, and budget for all of it.
    /// Counts the run otherwise and compiles the block once it is hot.
    pub(crate) fn compiled_entry(&mut self, block: &Rc<Block>, single: bool, budget: u64) -> Option<usize> {
        if self.tier.config.mode == JitMode::Off || self.tier.broken {
            // Runs count all the same: the cache's sweep keeps the blocks that run (see
            // `CodeCache::note_decoded`).
            block.tier.hits.set(block.tier.hits.get().wrapping_add(1));
            return None;
        }
        let user = self.state.cpl() == 3;
        self.install_done();
        let t = &block.tier;
        match t.slot.get() {
            JitSlot::Compiled { entry, user: u } if u == user => {
                let ok = !single
                    && self.breakpoints.is_empty()
                    && self.watchpoints.is_empty()
                    && budget >= block.insns.len() as u64;
                return ok.then_some(entry);
            }
            JitSlot::Cold => {
                let hits = t.hits.get() + 1;
                t.hits.set(hits);
                if self.tier.config.mode == JitMode::Always {
                    self.compile_now(block, user);
                    return self.compiled_entry(block, single, budget);
                }
                if hits >= self.tier.config.threshold {
                    self.queue(block, user);
                }
            }
            JitSlot::Queued => {
                // Still waiting and still hot: ask again, ahead of the warm backlog.
                let hits = t.hits.get() + 1;
                t.hits.set(hits);
                if let Some(priority) = resend_priority(hits, self.tier.config.threshold) {
                    if let (Some(job), Some(s)) = (block.tier.waiting_job(), &self.tier.service) {
                        s.submit(job, priority);
                    }
                }
            }
            _ => {}
        }
        None
    }

    /// A compile job for `block`, which the block keeps (see `BlockTier::job`).
    fn job(&self, block: &Rc<Block>, user: bool) -> Job {
        let job = Job::new(block.tier.serial, self.tier.epoch, Self::guest_insns(block), self.block_spec(block, user));
        block.tier.job.replace(Some(job.clone()));
        job
    }

    fn guest_insns(block: &Block) -> Vec<iced_x86::Instruction> {
        block.insns.iter().map(|d| d.insn).collect()
    }

    /// How `block` is to be compiled now, but for its instructions (see `Job::new`).
    fn block_spec(&self, block: &Rc<Block>, user: bool) -> BlockSpec<'static> {
        let quick = self.tier.config.quick_first && !block.tier.promoted.get();
        // Code at full speed never counts: its count stays where no run of it meets zero.
        block.tier.countdown.set(if quick { self.tier.config.promote_runs } else { u32::MAX });
        BlockSpec {
            insns: &[],
            bitness: block.bitness,
            user,
            block: Rc::as_ptr(block) as usize,
            chain: self.tier.config.chain,
            // What the model does not implement keeps the interpreter's handler (#UD, or the
            // instruction a CPU without the feature runs instead).
            opaque: block.insns.iter().enumerate().filter(|(_, d)| !self.model.allows(&d.insn)).fold(0, |m, (i, _)| m | 1 << i),
            groups: !block.tier.ungrouped.get(),
            quick,
            countdown: if quick { block.tier.countdown.as_ptr() as usize } else { 0 },
        }
    }

    /// Makes the trampoline into compiled code, once; false if that failed.
    fn ensure_entry(&mut self) -> bool {
        if self.tier.entry.is_none() {
            let l = layout();
            match Entry::new(l.link, l.tlb_fill) {
                Ok(e) => self.tier.entry = Some(e),
                Err(_) => self.tier.broken = true,
            }
        }
        !self.tier.broken
    }

    fn compile_now(&mut self, block: &Rc<Block>, user: bool) {
        if !self.ensure_entry() {
            return;
        }
        if self.tier.local.is_none() {
            match Translator::new(layout(), self.tier.config.cache_bytes, self.tier.config.perf_map) {
                Ok(t) => self.tier.local = Some(t),
                Err(_) => {
                    self.tier.broken = true;
                    return;
                }
            }
        }
        let insns = Self::guest_insns(block);
        let spec = self.block_spec(block, user);
        let start = ferrite_jit::thread_cpu_ns();
        let t = self.tier.local.as_mut().expect("created above");
        let result = t.compile(&BlockSpec { insns: &insns, ..spec });
        let total = t.code_bytes();
        let ns = ferrite_jit::thread_cpu_ns().saturating_sub(start);
        let done = ferrite_jit::Done { serial: block.tier.serial, epoch: self.tier.epoch, result, compile_ns: ns, total_code_bytes: total, user };
        self.record_done(block, done, insns.len());
    }

    fn queue(&mut self, block: &Rc<Block>, user: bool) {
        if !self.ensure_entry() {
            return;
        }
        if self.tier.service.is_none() {
            match Service::start(layout(), self.tier.config.cache_bytes, self.tier.config.perf_map) {
                Ok(s) => self.tier.service = Some(s),
                Err(_) => {
                    self.tier.broken = true;
                    return;
                }
            }
        }
        let job = self.job(block, user);
        block.tier.slot.set(JitSlot::Queued);
        self.code.jit_queued.insert(block.tier.serial, Rc::downgrade(block));
        self.tier.service.as_ref().expect("started above").submit(job, 0);
    }

    /// Has `block`'s full-speed code compiled (see `BlockTier::promote`) while its quick
    /// code goes on running: by the compile thread ahead of the queue (`record_done` swaps
    /// the code), or now in `Always` mode.
    fn promote(&mut self, block: &Rc<Block>, user: bool) {
        if self.tier.config.mode == JitMode::Always {
            self.compile_now(block, user);
            return;
        }
        let job = self.job(block, user);
        if let Some(service) = &self.tier.service {
            self.code.jit_queued.insert(block.tier.serial, Rc::downgrade(block));
            service.submit(job, PROMOTE_PRIORITY);
        }
    }

    /// Takes finished blocks from the compile thread.
    fn install_done(&mut self) {
        if self.code.jit_queued.is_empty() {
            return;
        }
        while let Some(done) = self.tier.service.as_ref().and_then(|s| s.poll()) {
            let block = self.code.jit_queued.remove(&done.serial).filter(|_| done.epoch == self.tier.epoch).and_then(|b| b.upgrade());
            let Some(block) = block else {
                self.tier.stats.drop_result(&done);
                continue;
            };
            let len = block.insns.len();
            self.record_done(&block, done, len);
        }
    }

    fn record_done(&mut self, block: &Rc<Block>, done: ferrite_jit::Done, len: usize) {
        block.tier.job.take();
        let s = &mut self.tier.stats;
        s.compile_ns += done.compile_ns;
        match done.result {
            Ok(c) => {
                s.blocks_compiled += 1;
                s.guest_insns_compiled += len as u64;
                s.native_insns += c.native as u64;
                s.ir_insts += c.ir_insts as u64;
                s.code_bytes += c.code_bytes as u64;
                if block.tier.retired.get() {
                    s.drop_result(&done);
                } else {
                    if let JitSlot::Compiled { .. } = block.tier.slot.get() {
                        // Full-speed code for quick code: what leads into the old goes.
                        block.tier.unlink(&mut self.code.graveyard);
                    }
                    block.tier.slot.set(JitSlot::Compiled { entry: c.entry, user: done.user });
                    block.tier.live_entry.set(c.entry);
                    block.tier.attach_code(&c);
                }
            }
            Err(ferrite_jit::JitError::Unwanted) => s.drop_result(&done),
            Err(_) => {
                s.failures += 1;
                block.tier.slot.set(JitSlot::Never);
            }
        }
        self.tier.held_bytes = done.total_code_bytes;
        if self.tier.held_bytes > self.tier.config.cache_bytes {
            self.flush_compiled();
        }
    }

    /// Drops every compiled block (the code cache is full): blocks start cold again.
    fn flush_compiled(&mut self) {
        let mut unlinked = Vec::new();
        self.code.for_each_block(|b| {
            b.tier.slot.set(JitSlot::Cold);
            b.tier.hits.set(0);
            b.tier.unlink(&mut unlinked);
        });
        self.code.graveyard.extend(unlinked);
        // Its blocks may be compiled again for the other privilege.
        self.code.indirect.clear(&mut self.code.graveyard);
        self.code.jit_queued.clear();
        self.tier.epoch += 1;
        self.tier.stats.cache_flushes += 1;
        self.tier.held_bytes = 0;
        if let Some(s) = &self.tier.service {
            // SAFETY: no block refers to compiled code any more (all slots are Cold), and
            // results of the old epoch are dropped by `install_done`.
            unsafe { s.reset() };
        }
        if let Some(t) = &mut self.tier.local {
            // SAFETY: as above; the local translator compiles synchronously, so no result
            // of it is in flight.
            if unsafe { t.reset() }.is_err() {
                self.tier.broken = true;
            }
        }
    }

    /// Runs `block`'s compiled code from its first instruction, and the compiled blocks it
    /// chains to within `budget` instructions.
    pub(crate) fn run_compiled(&mut self, bus: &mut dyn CpuBus, block: &Rc<Block>, entry: usize, ip_mask: u64, budget: u64) -> crate::Result<()> {
        self.interrupt_shadow = false;
        self.end_block = false;
        self.code.invalidated = false;
        // Compiled code watches the INTR line only in the attention word: with the line
        // elsewhere, every block returns (its first exit finds the limit passed).
        let limit = if bus.intr_in_attention() { budget.saturating_sub(crate::exec::MAX_BLOCK as u64) } else { 0 };
        let entry_code = self.tier.entry.as_ref().expect("made before any block compiled");
        let (run, link_stub, fill_stub) = (entry_code.function(), entry_code.link_stub(), entry_code.fill_stub());
        let cpu: *mut Cpu = self;
        let mut frame = Frame {
            cpu,
            bus,
            block: Rc::as_ptr(block),
            ip_mask,
            fault: None,
            retired: 0,
            limit,
            runs: 0,
            attention: Arc::as_ptr(&self.attention),
            unlinked: false,
            side_exit: 0,
            link_stub,
            fill_stub,
            fill_ok: 0,
            fill_crossed_page: false,
            indirect_table: self.code.indirect.address(),
        };
        host_mxcsr::enter();
        // SAFETY: `entry` came from the translator for this block and layout, and its
        // module is alive (entries are dropped before their module is freed), as is the code
        // of every linked block (links are cleared before a flush frees code). The code reads
        // and writes the CPU only through `cpu` and calls helpers with `frame`, both valid for
        // the call; `block` stays alive through the `Rc` the caller holds, and every block a
        // link leads to through the `Rc` its linking block (or the indirect table, which the
        // code cache owns and never moves) holds, moved to the graveyard, not dropped, if
        // unlinked meanwhile. The attention word is alive through `self.attention`.
        unsafe { run(entry, cpu as *mut u8, &mut frame as *mut Frame<'_> as *mut u8) };
        host_mxcsr::leave(&mut self.state.fpu.mxcsr);
        self.instructions += frame.retired;
        self.tier.stats.compiled_runs += frame.runs;
        self.tier.stats.chained_runs += frame.runs.saturating_sub(1);
        self.tier.stats.compiled_insns += frame.retired;
        if frame.fault.is_some() {
            self.tier.stats.fault_returns += 1;
        } else if frame.side_exit != 0 {
            // SAFETY: the block that left ran in this chain, so it was alive then, and
            // blocks dropped since wait in the graveyard until the next `run_block`.
            let left = unsafe { &*frame.block };
            // The quick code's countdown ran out (code at full speed keeps its count at
            // u32::MAX, so only then is it zero after a side exit).
            if left.tier.countdown.get() == 0 {
                match left.tier.promote() {
                    Some(user) => {
                        self.tier.stats.promoted += 1;
                        // SAFETY: `frame.block` is `Rc::as_ptr` of the block that left (see
                        // `job`), alive as said above; the count taken here is the new `Rc`'s.
                        let block = unsafe {
                            Rc::increment_strong_count(frame.block);
                            Rc::from_raw(frame.block)
                        };
                        self.promote(&block, user);
                    }
                    None => left.tier.countdown.set(self.tier.config.promote_runs),
                }
            } else {
                self.tier.stats.side_exits += 1;
            }
            if frame.fill_crossed_page && left.tier.ungroup(&mut self.code.graveyard) {
                self.tier.stats.ungrouped += 1;
            }
            self.exec_one(bus, left, frame.side_exit as usize - 1, ip_mask)?;
            self.instructions += 1;
            return Ok(());
        } else if !frame.unlinked {
            let why = if frame.retired > frame.limit {
                0
            } else if self.attention.kick.load(Ordering::Relaxed) {
                1
            } else if self.attention.intr.load(Ordering::Relaxed) && self.state.rflags & rf::IF != 0 {
                2
            } else if self.attention.code.load(Ordering::Relaxed) {
                3
            } else {
                4
            };
            self.tier.stats.other_returns[why] += 1;
        }
        match frame.fault {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Links exit `exit` of `owner`, which compiled code is leaving, to the compiled block
    /// the jump cache holds for the current RIP, if it may run in the owner's place (as the
    /// run loop would run it next); returns its entry.
    fn link_exit(&mut self, bus: &mut dyn CpuBus, owner: &Block, exit: usize) -> Option<usize> {
        let JitSlot::Compiled { user, .. } = owner.tier.slot.get() else { return None };
        if owner.tier.live_entry.get() == 0 || exit >= CHAIN_EXITS {
            return None;
        }
        // What sends the run loop to its guarded path, or keeps compiled code out. RFLAGS.AC
        // alone does not (supervisor code sets it around every user copy under SMAP): only
        // a change of the alignment-check mode, which the run loop takes up.
        if self.state.rflags & (rf::TF | rf::RF) != 0
            || self.alignment_checking() != self.dbg.ac
            || self.interrupt_shadow
            || self.dbg.check_blocks()
            || !self.breakpoints.is_empty()
            || !self.watchpoints.is_empty()
        {
            return None;
        }
        // A block decoded before but not in the jump cache (a CR3 write or INVLPG dropped its
        // entry, or another took its slot) is found again here; an undecoded one, or a fault
        // fetching it, is the run loop's business.
        // A fetch fault must not show: the walk wrote CR2, which the run loop's own fetch
        // writes again before the #PF is delivered, but an interrupt may come first.
        let cr2 = self.state.cr2;
        let target = match self.find_block::<false>(bus, owner.bitness) {
            Ok(found) => found?,
            Err(_) => {
                self.state.cr2 = cr2;
                return None;
            }
        };
        let lin = self.current_linear_rip();
        // A link does not check the page a block's last instruction runs into: it may lead
        // to such a block only if that page is global too, under the global generation, which
        // INVLPG of that page then moves (see `Block::second_page`).
        let straddles = target.second_page.is_some();
        if straddles && !self.next_page_links_globally(bus, lin) {
            return None;
        }
        let entry = match target.tier.slot.get() {
            JitSlot::Compiled { user: u, .. } if u == user => target.tier.live_entry.get(),
            _ => 0,
        };
        if entry == 0 {
            return None;
        }
        let cs_base = self.state.seg[crate::Seg::Cs as usize].base;
        let start = cs_base.wrapping_add(owner.insns[0].insn.ip()) & self.lin_mask();
        // 64-bit code follows a direct exit it found local without checking guards, and does
        // not test for `LOCAL_LINK` at the others: there the code decides the guard.
        let local = if owner.bitness == 64 && exit != EXIT_INDIRECT {
            let unchecked = ferrite_jit::local_exit(64, owner.insns[0].insn.ip(), self.state.rip);
            if unchecked && straddles {
                // Not decoded so (see `decode_block`): its second page would go unchecked.
                return None;
            }
            unchecked
        } else {
            start >> 12 == lin >> 12 && !straddles
        };
        let guard = if local { LOCAL_LINK } else { self.link_guard(bus, lin)? };
        if straddles && guard & GLOBAL_LINK == 0 {
            return None;
        }
        let tier = &owner.tier;
        if exit == EXIT_INDIRECT {
            // The last target becomes the second entry (unless it went since); the one
            // before it goes.
            let last = &tier.cells()[EXIT_INDIRECT];
            let moved = tier.chain().links.borrow()[EXIT_INDIRECT].clone().filter(|_| last.target() != 0);
            tier.link(CELL_INDIRECT_BEFORE, moved, last.guard(), last.rip(), &mut self.code.graveyard);
        }
        if exit == EXIT_INDIRECT && owner.bitness == 64 {
            // Shared by blocks of other pages: never the guard of a link within one.
            let table_guard = if guard == LOCAL_LINK { self.link_guard(bus, lin) } else { Some(guard) };
            if let Some(g) = table_guard {
                self.code.indirect.set(self.state.rip, user, &target, g, &mut self.code.graveyard);
            }
        }
        tier.link(exit, Some(target), guard, self.state.rip, &mut self.code.graveyard);
        self.tier.stats.links[exit] += 1;
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_jit::EXIT_TAKEN;

    fn block() -> Rc<Block> {
        Rc::new(Block { insns: Box::new([]), bitness: 64, second_page: None, tier: BlockTier::default() })
    }

    #[test]
    fn a_cell_names_its_target_until_either_block_goes() {
        let (owner, target) = (block(), block());
        // Never run: only compared and stored.
        target.tier.live_entry.set(0x1000);
        let mut graveyard = Vec::new();
        owner.tier.link(EXIT_TAKEN, Some(target.clone()), 7, 0x40, &mut graveyard);
        assert_eq!(owner.tier.cells()[EXIT_TAKEN].target(), 0x1000);
        assert_eq!(target.tier.chain().incoming.borrow().len(), 1);
        // The target stops being compiled: the owner's cell forgets it.
        target.tier.unlink(&mut graveyard);
        assert_eq!(owner.tier.cells()[EXIT_TAKEN].target(), 0);
        assert!(target.tier.chain().incoming.borrow().is_empty());
        // An owner dropped without `unlink` (code in device memory, never cached) leaves no
        // cell of its own in its target's list.
        let other = block();
        other.tier.live_entry.set(0x2000);
        owner.tier.link(EXIT_TAKEN, Some(other.clone()), 7, 0x40, &mut graveyard);
        assert_eq!(other.tier.chain().incoming.borrow().len(), 1);
        drop(graveyard);
        drop(owner);
        assert!(other.tier.chain().incoming.borrow().is_empty());
        other.tier.unlink(&mut Vec::new());
    }

    #[test]
    fn a_waiting_block_goes_up_a_priority_each_time_its_count_doubles() {
        let sent: Vec<(u32, usize)> = (1..=100 * 200).filter_map(|hits| resend_priority(hits, 100).map(|p| (hits, p))).collect();
        let expected: Vec<(u32, usize)> = (1..ferrite_jit::PRIORITIES).map(|p| (100 << p, p)).collect();
        assert_eq!(sent, expected);
        assert_eq!(resend_priority(4, 1), Some(2));
        assert_eq!(resend_priority(0, 0), None);
    }

    /// The results the compile thread sends up to and including `last`'s, in order.
    fn results_through(service: &Service, last: u64) -> Vec<ferrite_jit::Done> {
        let mut got = Vec::new();
        while got.last().is_none_or(|d: &ferrite_jit::Done| d.serial != last) {
            match service.poll() {
                Some(d) => got.push(d),
                None => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
        got
    }

    fn nop_job(b: &Block, serial: u64) -> Job {
        let insns = vec![iced_x86::Decoder::with_ip(64, &[0x90], 0x1000, 0).decode()];
        let spec = BlockSpec { insns: &[], bitness: 64, user: false, block: 0, chain: false, opaque: 0, groups: true, quick: true, countdown: 0 };
        let job = Job::new(serial, 0, insns, spec);
        b.tier.job.replace(Some(job.clone()));
        job
    }

    #[test]
    fn the_compile_thread_compiles_a_job_sent_twice_once_and_drops_one_whose_block_was_retired() {
        let Ok(service) = ferrite_jit::Service::start(layout(), 1 << 20, false) else { return };
        // Sent twice (as a waiting block is sent again): one compile, one answer.
        let hot = block();
        let job = nop_job(&hot, 1);
        service.submit(job.clone(), 0);
        service.submit(job, 0);
        // Retired with its job queued (twice): one answer, nothing compiled.
        let gone = block();
        let job = nop_job(&gone, 2);
        gone.tier.retire(&mut Vec::new());
        assert!(!job.is_waiting());
        service.submit(job.clone(), 0);
        service.submit(job, 0);
        let marker = block();
        service.submit(nop_job(&marker, 3), 0);
        let got: Vec<(u64, bool)> = results_through(&service, 3).iter().map(|d| (d.serial, d.result.is_ok())).collect();
        assert_eq!(got, [(1, true), (2, false), (3, true)], "(serial, compiled) of every answer");
        assert!(hot.tier.waiting_job().is_none(), "taken by the thread");
        // A block dropped with its job queued cancels it too.
        let dropped = block();
        let job = nop_job(&dropped, 4);
        drop(dropped);
        assert!(!job.is_waiting());
    }
}
