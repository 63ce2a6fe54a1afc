//! Process-context identifiers (SDM Vol. 3, 4.10.1 and 4.10.4): translations are kept per
//! PCID. The active PCID's entries sit in `Cpu::tlb`, the table the fast path and generated
//! code probe, so tagging costs nothing there; the tables of a few recently used PCIDs are
//! parked beside it and swapped in (a pointer swap) when MOV CR3 returns to their PCID.
//! Global translations apply to every PCID: an invalidation that covers them reaches the
//! parked tables too. A page that comes to hold decoded code gets slow write tags in the
//! parked tables as well as in the active one, which costs a scan of each table per new code
//! page instead of one per address-space switch (with page-table isolation, two per system
//! call).

use super::tlb::Tlb;
use crate::state::cr4;
use crate::Cpu;

/// How many other PCIDs keep their translations (Linux cycles through six address-space
/// IDs, each with a user twin under page-table isolation).
const PARKED: usize = 7;

/// A parked table: its PCID, or `None` when free (its contents are stale, flushed on reuse).
pub(crate) type Parked = (Option<u16>, Box<Tlb>);

impl Cpu {
    /// The PCID translations are made under now: CR3[11:0] with CR4.PCIDE, else 000H.
    pub(crate) fn current_pcid(&self) -> u16 {
        if self.state.cr4 & cr4::PCIDE != 0 {
            (self.state.cr3 & 0xfff) as u16
        } else {
            0
        }
    }

    /// Every table holding live translations: the active one and the parked ones in use.
    pub(crate) fn live_tlbs(&mut self) -> impl Iterator<Item = &mut Tlb> {
        let parked = self.parked_tlbs.iter_mut().filter(|(p, _)| p.is_some()).map(|(_, t)| &mut **t);
        std::iter::once(&mut *self.tlb).chain(parked)
    }

    /// Makes writes to the physical page `paddr` take the slow path in the parked tables.
    pub(crate) fn protect_in_parked_tlbs(&mut self, paddr: u64) {
        for (_, t) in self.parked_tlbs.iter_mut().filter(|(p, _)| p.is_some()) {
            t.protect_phys_page(paddr);
        }
    }

    /// Drops every translation of every PCID, global ones included.
    pub(crate) fn flush_all_tlbs(&mut self) {
        self.tlb.flush(false);
        for (pcid, _) in self.parked_tlbs.iter_mut() {
            *pcid = None;
        }
        self.tlb_pcid = self.current_pcid();
    }

    /// Makes `pcid` the active one after MOV CR3; `flush` drops its non-global translations
    /// (bit 63 of the source clear). Callers have caught up with the code tracking.
    pub(crate) fn switch_pcid(&mut self, pcid: u16, flush: bool) {
        if pcid != self.tlb_pcid {
            let found = self.parked_tlbs.iter().position(|(p, _)| *p == Some(pcid));
            let (slot, fresh) = match found {
                Some(i) => (self.parked_tlbs.remove(i), false),
                None if self.parked_tlbs.len() < PARKED => ((None, Box::new(Tlb::new())), false),
                // Reuse a free table, else the least recently used one.
                None => {
                    let i = self.parked_tlbs.iter().position(|(p, _)| p.is_none()).unwrap_or(0);
                    (self.parked_tlbs.remove(i), true)
                }
            };
            let (_, mut table) = slot;
            if fresh {
                table.flush(false);
            }
            std::mem::swap(&mut self.tlb, &mut table);
            self.parked_tlbs.push((Some(self.tlb_pcid), table));
            self.tlb_pcid = pcid;
        }
        if flush {
            self.tlb.flush(true);
        }
    }

    /// Drops the non-global translations of `pcid` (INVPCID single-context), or only those
    /// of the page holding `lin` when given (INVPCID individual-address).
    pub(crate) fn flush_pcid(&mut self, pcid: u16, lin: Option<u64>) {
        let table = if pcid == self.tlb_pcid {
            Some(&mut *self.tlb)
        } else {
            self.parked_tlbs.iter_mut().find(|(p, _)| *p == Some(pcid)).map(|(_, t)| &mut **t)
        };
        match (table, lin) {
            (Some(t), Some(lin)) => t.flush_page(lin),
            (Some(t), None) => t.flush(true),
            (None, _) => {}
        }
    }

    /// Drops the non-global translations of every PCID (INVPCID type 3). The parked tables
    /// are freed whole: dropping their global entries too is allowed.
    pub(crate) fn flush_all_pcids_but_global(&mut self) {
        self.tlb.flush(true);
        for (pcid, _) in self.parked_tlbs.iter_mut() {
            *pcid = None;
        }
    }
}
