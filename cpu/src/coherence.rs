//! Keeping this vCPU's decoded blocks and TLB coherent with writes by other vCPUs and by
//! devices, through the machine's shared [`PageTracking`] (see `ferrite_memory::CodeTracker`
//! for the protocol). Without tracking attached (a lone CPU, the crate's own tests) none of
//! this runs and self-modifying code is handled by the per-CPU code cache alone.
//!
//! What this vCPU does:
//! - before reading guest code to decode, it marks the page as code (`mark_code`);
//! - its TLB lets writes through at full speed only to pages that are already dirty and
//!   hold no decoded code anywhere (`ram_write_slow`); the first write to any other page
//!   takes the slow path, which marks the page dirty and logs the write if the page held code
//!   (`note_slow_ram_write` in `mmu`);
//! - at every block boundary it looks at the code flag of its `Attention`, which the tracker
//!   sets after logging any event (one load), and if set replays what it missed
//!   (`replay_code_events`).
//!
//! A vCPU holding a fast write entry for a page another vCPU then starts decoding may have
//! written there after the bytes were read; replaying the `Decoded` event it counts that as a
//! write. The window this leaves: such an entry evicted by a TLB fill before the event is
//! replayed (full flushes and INVLPG replay pending events first).

use crate::Cpu;
use ferrite_memory::{EventKind, PageTracking};
use std::sync::Arc;

impl Cpu {
    /// Shares the machine's dirty log and code tracking with this vCPU; `origin` (its index)
    /// marks the events it logs, so it skips them when replaying. Drops what this CPU decoded
    /// and cached so far, since the tracking has not seen it.
    pub fn attach_tracking(&mut self, tracking: Arc<PageTracking>, origin: u32) {
        tracking.code.watch(origin, self.attention.clone());
        self.code_seq = tracking.code.seq();
        self.tracking = Some(tracking);
        self.origin = origin;
        self.code.clear();
        self.flush_all_tlbs();
    }

    /// Applies the code-tracking events other vCPUs and devices logged since this CPU last
    /// looked. `run` does this before every block; a vCPU thread waiting in HLT may call it
    /// now and then so it does not fall behind the log (which costs all its decoded code).
    pub fn sync_code_tracking(&mut self) {
        self.catch_up_code();
    }

    /// Replays the code-tracking events logged since the last look, if any. One load when
    /// nothing happened. The flag is cleared before the log is read, so an event logged
    /// meanwhile sets it again.
    #[inline(always)]
    pub(crate) fn catch_up_code(&mut self) {
        if self.attention.take_code() {
            self.replay_code_events();
        }
    }

    #[cold]
    #[inline(never)]
    fn replay_code_events(&mut self) {
        let Some(t) = self.tracking.clone() else { return };
        let mut events = std::mem::take(&mut self.code_events);
        events.clear();
        match t.code.events_since(self.code_seq, &mut events) {
            Some(seq) => {
                self.code_seq = seq;
                let origin = self.origin;
                for ev in events.iter().filter(|e| e.origin != origin) {
                    match ev.kind {
                        EventKind::Written(page) => self.code.invalidate_page(page),
                        EventKind::Decoded(page) => {
                            if self.tlb.protect_phys_page(page) {
                                // Writes went straight to that page until now, maybe after the
                                // other vCPU read the bytes it decoded: count them as a write.
                                t.code.note_write(page, origin);
                                self.code.invalidate_page(page);
                            }
                            // Parked tables took no write since the event was logged (it was
                            // replayed before they were parked otherwise).
                            self.protect_in_parked_tlbs(page);
                        }
                        EventKind::FlushTlb => {
                            self.flush_all_tlbs();
                            self.code.flush_jump_cache();
                        }
                    }
                }
            }
            None => {
                // Fell too far behind: forget everything decoded and translated.
                self.code_seq = t.code.seq();
                self.code.clear();
                self.flush_all_tlbs();
            }
        }
        self.code_events = events;
        // The running block's code may be gone: stop it after the current instruction.
        self.end_block |= self.code.invalidated;
    }

    /// Marks the physical page holding `paddr` as holding decoded code; call before reading
    /// the bytes to decode.
    #[inline]
    pub(crate) fn mark_code(&self, paddr: u64) {
        if let Some(t) = &self.tracking {
            t.code.mark_code(paddr, self.origin);
        }
    }

    /// Whether writes to the RAM page at `paddr` must take the TLB slow path: it holds decoded
    /// code (here or, with tracking, on any vCPU) or is not yet dirty in the shared log.
    pub(crate) fn ram_write_slow(&self, paddr: u64) -> bool {
        self.code.is_code_page(paddr)
            || self.tracking.as_ref().is_some_and(|t| t.code.is_code(paddr) || !t.dirty.get(paddr >> 12))
    }

    /// The shared bookkeeping of a write by this CPU to the RAM page at `paddr` through the
    /// slow path: dirty log, and stale code on other vCPUs.
    pub(crate) fn note_shared_write(&self, paddr: u64) {
        if let Some(t) = &self.tracking {
            t.dirty.set(paddr >> 12);
            t.code.note_write(paddr, self.origin);
        }
    }
}
