//! The soft TLB: a direct-mapped cache from linear page to host pointer, one table per
//! privilege context for data accesses and another per context for instruction fetch (see
//! `code_table`). Laid out (`repr(C)`) so generated code can probe it inline:
//! `entry = tlb.entries[ctx][(lin >> 12) & MASK]; if entry.read == lin & !0xfff { host = entry.addend + lin }`.
//! Each table keeps the last few entries fills evicted (see `VICTIMS`): a miss that finds
//! its page there swaps it back without a page walk.

use super::paging::Access;

pub const TLB_BITS: u32 = 10;
pub const TLB_SIZE: usize = 1 << TLB_BITS;
pub const TLB_MASK: u64 = TLB_SIZE as u64 - 1;

/// Tag bit that makes every inline compare fail but says the translation is known: the slow
/// path handles the access without a page walk (MMIO, ROM writes, pages holding decoded code).
pub const TAG_SLOW: u64 = 1 << 0;
/// A tag that matches no address.
pub const TAG_INVALID: u64 = u64::MAX;

/// Privilege contexts with separate permission answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Ctx {
    /// CPL 0-2, or an implicit supervisor access (descriptor tables, IDT, TSS).
    Supervisor = 0,
    /// CPL 0-2 explicit access with RFLAGS.AC = 1: SMAP does not apply.
    SupervisorAc = 1,
    /// CPL 3 explicit access.
    User = 2,
}
pub const CTX_COUNT: usize = 3;
/// The data tables (`Ctx as usize`), then the code tables (`code_table`). Apart, a hot data
/// page never evicts the translation of a hot code page whose slot it shares (pages a
/// multiple of 4 MiB apart): the link guards of compiled code read the code table, and
/// sharing one slot made every run of such a loop fill both and relink its jump.
pub const TABLE_COUNT: usize = 2 * CTX_COUNT;

/// The table of instruction fetches in `ctx`.
pub const fn code_table(ctx: Ctx) -> usize {
    CTX_COUNT + ctx as usize
}

/// Entries a table keeps of those its fills evicted, the oldest replaced first: pages whose
/// slots coincide (a multiple of 4 MiB apart) then cost a swap per alternation instead of a
/// page walk. Seen on `scripts/bench`'s float loop in about one boot in ten (ASLR decides):
/// 12M walks instead of 4-10K, and the phase 60% slower; a fork+exec loop's walks for
/// compiled code fell from 120-200K to 74-90K. The inline probe reads the main table only,
/// so the victims cost compiled code nothing. A victim per slot caught more (17-25K walks)
/// but doubled each PCID's table (see `pcid`: 3 MiB more per vCPU), for walks worth about
/// 15 ms of that loop.
pub const VICTIMS: usize = 8;

/// The table holding the tag of `access` in `ctx`.
#[inline(always)]
pub fn table_for(ctx: Ctx, access: Access) -> usize {
    if access == Access::Exec { code_table(ctx) } else { ctx as usize }
}

/// 64 bytes: one cache line per probe, and generated code finds a slot with a shift.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub struct TlbEntry {
    /// Page-aligned linear address if reads are allowed (plus TAG_SLOW), else TAG_INVALID.
    pub read: u64,
    pub write: u64,
    pub exec: u64,
    /// Host pointer of the page minus its linear address.
    pub addend: u64,
    /// Guest-physical page address.
    pub paddr: u64,
    /// Global pages survive CR3 writes and PCID switches.
    pub global: bool,
    /// The protection key the read/write tags were checked against (`NO_KEY`: none applies),
    /// so a PKRU change can drop exactly the entries it may invalidate.
    pub pkey: u8,
}

/// `TlbEntry::pkey` of a page protection keys do not govern.
pub const NO_KEY: u8 = 0xff;

impl TlbEntry {
    pub const EMPTY: TlbEntry = TlbEntry {
        read: TAG_INVALID,
        write: TAG_INVALID,
        exec: TAG_INVALID,
        addend: 0,
        paddr: 0,
        global: false,
        pkey: NO_KEY,
    };

    /// Whether the entry's tag for `access` names the page of `lin` (slow or not): the
    /// translation is known and allows the access.
    #[inline(always)]
    pub fn holds(&self, lin: u64, access: Access) -> bool {
        let tag = match access {
            Access::Read => self.read,
            Access::Write => self.write,
            Access::Exec => self.exec,
        };
        tag & !TAG_SLOW == lin & !0xfff
    }
}

/// How many slots each of a table's two lists names (see `Tlb::local`): a process runs
/// between two address-space switches with a few hundred pages, and the kernel's global ones
/// fill at most a context's 1024 slots or so.
const LISTED_MAX: usize = 2048;

/// A list of slots (`table * TLB_SIZE + slot`) that may hold some kind of entry, or `None`
/// once more were filled than it holds: then every slot may.
type SlotList = Option<Vec<u16>>;

#[repr(C)]
pub struct Tlb {
    /// Data entries hold read and write tags only, code entries an exec tag only.
    pub entries: [[TlbEntry; TLB_SIZE]; TABLE_COUNT],
    /// Per table, entries its fills evicted (see `VICTIMS`), and where the next one goes.
    victims: [[TlbEntry; VICTIMS]; TABLE_COUNT],
    next_victim: [usize; TABLE_COUNT],
    /// Misses answered by a victim (see `swap_in_victim`).
    pub victim_hits: u64,
    /// Linear range covered by large pages (any INVLPG there flushes everything, since one
    /// large page spans many direct-mapped slots).
    pub large_lo: u64,
    pub large_hi: u64,
    /// The slots that may hold a non-global entry: a flush that keeps global entries (every
    /// MOV CR3) visits only these, neither every slot (384 KiB) nor the kernel's global
    /// entries, which pile up between full flushes.
    local: SlotList,
    /// The slots that may hold a global entry (scans visit both lists).
    global: SlotList,
}

impl Tlb {
    pub fn new() -> Self {
        Tlb {
            entries: [[TlbEntry::EMPTY; TLB_SIZE]; TABLE_COUNT],
            victims: [[TlbEntry::EMPTY; VICTIMS]; TABLE_COUNT],
            next_victim: [0; TABLE_COUNT],
            victim_hits: 0,
            large_lo: u64::MAX,
            large_hi: 0,
            local: Some(Vec::new()),
            global: Some(Vec::new()),
        }
    }

    #[inline(always)]
    pub fn slot(lin: u64) -> usize {
        ((lin >> 12) & TLB_MASK) as usize
    }

    /// Puts `entry` in the slot of `lin` in `table` (a context's data or code table); the
    /// entry of another page there becomes one of the table's victims.
    pub fn insert(&mut self, table: usize, lin: u64, entry: TlbEntry) {
        let slot = Self::slot(lin);
        let old = self.entries[table][slot];
        let page = lin & !0xfff;
        // An older translation of the page goes: the new one replaces it.
        for v in &mut self.victims[table] {
            if page_of(v) == Some(page) {
                *v = TlbEntry::EMPTY;
            }
        }
        if page_of(&old).is_some_and(|p| p != page) {
            let next = &mut self.next_victim[table];
            self.victims[table][*next] = old;
            *next = (*next + 1) % VICTIMS;
        }
        self.place(table, slot, entry);
    }

    /// On a miss in `table` for `access` at `lin`: a victim that allows the access (its tag
    /// for it names the page, slow or not), swapped with the entry in the page's slot.
    pub fn swap_in_victim(&mut self, table: usize, lin: u64, access: Access) -> Option<TlbEntry> {
        let i = self.victims[table].iter().position(|v| v.holds(lin, access))?;
        let slot = Self::slot(lin);
        let victim = std::mem::replace(&mut self.victims[table][i], self.entries[table][slot]);
        self.place(table, slot, victim);
        self.victim_hits += 1;
        Some(victim)
    }

    /// Writes `entry` to slot `slot` of table `table`, listing the slot for flushes if it
    /// did not hold an entry of that kind (global or not) already.
    fn place(&mut self, table: usize, slot: usize, entry: TlbEntry) {
        let e = &mut self.entries[table][slot];
        let listed = !is_empty(e) && e.global == entry.global;
        *e = entry;
        if listed || is_empty(&entry) {
            return;
        }
        let list = if entry.global { &mut self.global } else { &mut self.local };
        if let Some(l) = list {
            if l.len() < LISTED_MAX {
                l.push((table * TLB_SIZE + slot) as u16);
            } else {
                *list = None;
            }
        }
    }

    /// Empties a table and its victims.
    pub fn clear_table(&mut self, table: usize) {
        self.entries[table].fill(TlbEntry::EMPTY);
        self.victims[table].fill(TlbEntry::EMPTY);
    }

    /// Calls `f` on every entry that may be live (and on some empty ones), victims included.
    fn for_each_filled(&mut self, mut f: impl FnMut(&mut TlbEntry)) {
        self.victims.iter_mut().flatten().for_each(&mut f);
        let (Some(local), Some(global)) = (&self.local, &self.global) else {
            self.entries.iter_mut().flatten().for_each(f);
            return;
        };
        for &i in local.iter().chain(global) {
            f(&mut self.entries[i as usize / TLB_SIZE][i as usize % TLB_SIZE]);
        }
    }

    pub fn flush(&mut self, keep_global: bool) {
        if !keep_global {
            self.for_each_filled(|e| *e = TlbEntry::EMPTY);
            for list in [&mut self.local, &mut self.global] {
                reset(list);
            }
            self.large_lo = u64::MAX;
            self.large_hi = 0;
            return;
        }
        let drop_local = |e: &mut TlbEntry| {
            if !e.global {
                *e = TlbEntry::EMPTY;
            }
        };
        self.victims.iter_mut().flatten().for_each(drop_local);
        match &self.local {
            Some(list) => {
                for &i in list {
                    drop_local(&mut self.entries[i as usize / TLB_SIZE][i as usize % TLB_SIZE]);
                }
            }
            None => self.entries.iter_mut().flatten().for_each(drop_local),
        }
        reset(&mut self.local);
    }

    /// INVLPG: drop the translations of one linear page.
    pub fn flush_page(&mut self, lin: u64) {
        self.drop_page(lin, false);
    }

    /// Drops the entries whose protection key is in the bitmap `keys` (bit i: key i).
    pub fn flush_keys(&mut self, keys: u16) {
        self.for_each_filled(|e| {
            if e.pkey != NO_KEY && keys & (1 << e.pkey) != 0 {
                *e = TlbEntry::EMPTY;
            }
        });
    }

    /// Drops a global translation of the page holding `lin` (INVLPG seen from another
    /// PCID's table).
    pub fn flush_global_page(&mut self, lin: u64) {
        self.drop_page(lin, true);
    }

    /// Drops the entries of the page holding `lin` (only global ones with `global_only`); a
    /// page inside the large-page range drops everything.
    fn drop_page(&mut self, lin: u64, global_only: bool) {
        if lin >= self.large_lo && lin <= self.large_hi {
            self.flush(false);
            return;
        }
        let page = lin & !0xfff;
        let slot = Self::slot(lin);
        let in_slots = self.entries.iter_mut().map(|table| &mut table[slot]);
        for e in in_slots.chain(self.victims.iter_mut().flatten()) {
            let hit = (e.read & !0xfff) == page || (e.write & !0xfff) == page || (e.exec & !0xfff) == page;
            if hit && (e.global || !global_only) {
                *e = TlbEntry::EMPTY;
            }
        }
    }

    /// Make writes to a guest-physical page take the slow path (the page now holds code).
    /// Returns whether some entry let writes to it through the fast path until now.
    pub fn protect_phys_page(&mut self, paddr: u64) -> bool {
        let mut fast = false;
        self.for_each_filled(|e| {
            if e.paddr == paddr && e.write != TAG_INVALID {
                fast |= e.write & TAG_SLOW == 0;
                e.write |= TAG_SLOW;
            }
        });
        fast
    }

    pub fn note_large_page(&mut self, lin: u64, size: u64) {
        let lo = lin & !(size - 1);
        self.large_lo = self.large_lo.min(lo);
        self.large_hi = self.large_hi.max(lo + size - 1);
    }
}

fn is_empty(e: &TlbEntry) -> bool {
    e.read == TAG_INVALID && e.write == TAG_INVALID && e.exec == TAG_INVALID
}

/// The linear page an entry translates, if it holds one.
fn page_of(e: &TlbEntry) -> Option<u64> {
    [e.read, e.write, e.exec].into_iter().find(|&t| t != TAG_INVALID).map(|t| t & !0xfff)
}

/// Empties a list (one that overflowed lists again).
fn reset(list: &mut SlotList) {
    match list {
        Some(l) => l.clear(),
        None => *list = Some(Vec::new()),
    }
}

impl Default for Tlb {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data entry, or a code entry in a code table.
    fn entry(table: usize, lin: u64, global: bool) -> TlbEntry {
        let page = lin & !0xfff;
        let (data, code) = if table >= CTX_COUNT { (TAG_INVALID, page) } else { (page, TAG_INVALID) };
        TlbEntry { read: data, write: data, exec: code, addend: 0, paddr: page, global, pkey: NO_KEY }
    }

    /// The pages held per table, victims included.
    fn live(t: &Tlb) -> Vec<(usize, u64)> {
        let all = t.entries.iter().zip(&t.victims).enumerate().flat_map(|(c, (table, v))| table.iter().chain(v).map(move |e| (c, e)));
        let mut pages: Vec<_> = all.filter(|(_, e)| !is_empty(e)).map(|(c, e)| (c, e.read.min(e.exec))).collect();
        pages.sort();
        pages
    }

    /// Two pages of one slot trade places through the victims; a victim allows only what
    /// its tags do; every flush reaches victims, also after a swap moved a global entry into
    /// a slot listed for non-global ones.
    #[test]
    fn victims_hold_the_evicted_page_until_a_flush() {
        let (p, q) = (0x40_1000u64, 0x80_1000u64);
        let mut t = Tlb::new();
        let mut read_only = entry(0, p, true);
        read_only.write = TAG_INVALID;
        t.insert(0, p, read_only);
        t.insert(0, q, entry(0, q, false));
        assert_eq!(t.entries[0][Tlb::slot(q)].read, q);
        assert!(t.swap_in_victim(0, p, Access::Write).is_none(), "the victim allows no write");
        assert!(t.swap_in_victim(0, 0xc0_1000, Access::Read).is_none(), "another page");
        assert!(t.swap_in_victim(1, p, Access::Read).is_none(), "another table");
        assert_eq!(t.swap_in_victim(0, p + 8, Access::Read).map(|e| e.read), Some(p));
        assert_eq!(t.entries[0][Tlb::slot(p)].read, p);
        assert_eq!(t.victims[0].iter().filter(|v| v.read == q).count(), 1);
        assert_eq!(t.victim_hits, 1);
        // The non-global entry sits where the global one was listed: a flush keeping global
        // entries still drops it.
        t.flush(true);
        assert_eq!(live(&t), vec![(0, p)]);
        t.insert(0, q, entry(0, q, false));
        t.flush_page(p);
        assert_eq!(live(&t), vec![(0, q)], "INVLPG reaches the victim");
        // A fill of the page in the slot replaces it without making a victim of it.
        t.insert(0, q, entry(0, q, true));
        assert_eq!(live(&t), vec![(0, q)]);
        t.flush(false);
        assert!(live(&t).is_empty());
    }

    /// Flushes through the list of filled slots do what a scan of every slot does, with few
    /// entries and with more than the list holds, in data and code tables.
    #[test]
    fn flushes_reach_every_filled_slot() {
        for pages in [40u64, LISTED_MAX as u64 * 2] {
            let mut t = Tlb::new();
            for p in 0..pages {
                let table = [Ctx::Supervisor as usize, Ctx::User as usize, code_table(Ctx::User)][p as usize % 3];
                t.insert(table, (p << 12) | 0x123, entry(table, p << 12, p % 4 == 0));
            }
            t.insert(0, 0, entry(0, 0, true)); // refilled: listed once
            let globals: Vec<_> = live(&t).into_iter().filter(|&(_, a)| (a >> 12) % 4 == 0).collect();
            for p in 0..pages {
                t.protect_phys_page(p << 12);
            }
            let mut all = t.entries.iter().flatten().chain(t.victims.iter().flatten());
            assert!(all.all(|e| e.write == TAG_INVALID || e.write & TAG_SLOW != 0));
            t.flush(true);
            assert_eq!(live(&t), globals, "{pages} pages: the global entries stay");
            let unused = code_table(Ctx::Supervisor);
            t.insert(unused, 0x7000_0000, entry(unused, 0x7000_0000, false));
            t.flush(true);
            assert_eq!(live(&t), globals);
            t.flush(false);
            assert!(live(&t).is_empty());
        }
    }
}
