//! Which guest pages hold decoded code, and the events that keep every vCPU's decoded-code
//! cache and TLB coherent with writes from anywhere.
//!
//! Each vCPU keeps its own decoded blocks. Before decoding on a page it marks the page here
//! ([`CodeTracker::mark_code`]); a write to a marked page, by any vCPU or by DMA, clears the
//! mark and logs a [`EventKind::Written`] event ([`CodeTracker::note_write`]). Every vCPU checks
//! [`CodeTracker::seq`] (one relaxed load) at each block boundary and, when it moved, replays the
//! new events: `Written` drops its blocks on that page, `Decoded` makes its TLB send writes to
//! that page through the slow path (and, if it could have written there already through a fast
//! TLB entry, counts that as a write), `FlushTlb` drops every translation (memory map changes).
//! Cross-modifying code is thus seen by other vCPUs at their next block boundary, which is
//! within what the SDM allows (it asks the executing processor to serialise before running
//! code another processor wrote).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::bitmap::PageBitmap;

/// Events kept for vCPUs that have not caught up yet; one that falls further behind drops
/// all of its decoded code and translations instead.
const LOG_CAPACITY: usize = 8192;

/// The origin of events raised by device DMA and loaders (vCPUs use their index).
pub const ORIGIN_DMA: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Some vCPU decoded code on this page (its physical address): writes must take the slow path.
    Decoded(u64),
    /// This page was written while it held decoded code: decoded blocks on it are stale.
    Written(u64),
    /// The guest-physical memory map changed: drop every cached translation.
    FlushTlb,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeEvent {
    /// The vCPU index that raised it, or [`ORIGIN_DMA`].
    pub origin: u32,
    pub kind: EventKind,
}

struct Log {
    events: VecDeque<CodeEvent>,
    /// Sequence number of `events[0]`.
    first: u64,
}

/// A vCPU's side of the notice: told after every event is logged.
pub trait CodeWatcher: Send + Sync {
    fn code_changed(&self);
}

pub struct CodeTracker {
    pages: PageBitmap,
    /// Number of events ever logged.
    seq: AtomicU64,
    log: Mutex<Log>,
    /// Each vCPU's watcher, by its origin index.
    watchers: Mutex<Vec<Option<Arc<dyn CodeWatcher>>>>,
}

impl CodeTracker {
    pub fn new(pages: u64) -> std::io::Result<Self> {
        Ok(CodeTracker {
            pages: PageBitmap::new(pages)?,
            seq: AtomicU64::new(0),
            log: Mutex::new(Log { events: VecDeque::new(), first: 0 }),
            watchers: Mutex::new(Vec::new()),
        })
    }

    /// Tells `watcher` of every event from now on, in place of the one vCPU `origin` had.
    pub fn watch(&self, origin: u32, watcher: Arc<dyn CodeWatcher>) {
        let mut w = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        let i = origin as usize;
        if w.len() <= i {
            w.resize_with(i + 1, || None);
        }
        w[i] = Some(watcher);
    }

    fn push(&self, event: CodeEvent) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.events.len() == LOG_CAPACITY {
            log.events.pop_front();
            log.first += 1;
        }
        log.events.push_back(event);
        self.seq.store(log.first + log.events.len() as u64, Ordering::Release);
        drop(log);
        // After the event is in the log: a watcher that clears its flag and then reads the
        // log finds the event there, or finds its flag set again.
        for w in self.watchers.lock().unwrap_or_else(|e| e.into_inner()).iter().flatten() {
            w.code_changed();
        }
    }

    /// Events logged so far; compare with the last value seen to know whether to catch up.
    #[inline(always)]
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Marks the page holding `paddr` as holding decoded code; call before reading the bytes
    /// to decode, so a write racing with the decode is seen.
    pub fn mark_code(&self, paddr: u64, origin: u32) {
        if !self.pages.set(paddr >> 12) {
            self.push(CodeEvent { origin, kind: EventKind::Decoded(paddr & !0xfff) });
        }
    }

    /// Whether the page holding `paddr` holds decoded code (its writes need the slow path).
    #[inline]
    pub fn is_code(&self, paddr: u64) -> bool {
        self.pages.get(paddr >> 12)
    }

    /// A write reached the page holding `paddr`: if it held decoded code, the mark goes and
    /// every vCPU learns that its blocks there are stale. Returns whether it held code.
    pub fn note_write(&self, paddr: u64, origin: u32) -> bool {
        let held = self.pages.clear(paddr >> 12);
        if held {
            self.push(CodeEvent { origin, kind: EventKind::Written(paddr & !0xfff) });
        }
        held
    }

    /// Every page of `[paddr, paddr + len)` was written.
    pub fn note_write_range(&self, paddr: u64, len: u64, origin: u32) {
        if len > 0 {
            for page in paddr >> 12..=(paddr + len - 1) >> 12 {
                self.note_write(page << 12, origin);
            }
        }
    }

    /// Every vCPU must drop its cached translations (the memory map changed).
    pub fn flush_tlbs(&self) {
        self.push(CodeEvent { origin: ORIGIN_DMA, kind: EventKind::FlushTlb });
    }

    /// Appends the events logged since sequence number `since` to `out` and returns the new
    /// sequence number, or `None` if some were already dropped (the caller then drops all of
    /// its decoded code and translations, and continues from [`CodeTracker::seq`]).
    pub fn events_since(&self, since: u64, out: &mut Vec<CodeEvent>) -> Option<u64> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if since < log.first {
            return None;
        }
        let skip = (since - log.first) as usize;
        out.extend(log.events.iter().skip(skip).copied());
        Some(log.first + log.events.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_writes_and_events() {
        let t = CodeTracker::new(16).unwrap();
        t.mark_code(0x1234, 0);
        t.mark_code(0x1fff, 1);
        assert!(t.is_code(0x1000) && !t.is_code(0x2000));
        assert!(!t.note_write(0x2000, 1), "not code: nothing logged");
        assert!(t.note_write(0x1800, ORIGIN_DMA));
        assert!(!t.is_code(0x1000));
        let mut ev = Vec::new();
        assert_eq!(t.events_since(0, &mut ev), Some(2));
        assert_eq!(
            ev,
            vec![
                CodeEvent { origin: 0, kind: EventKind::Decoded(0x1000) },
                CodeEvent { origin: ORIGIN_DMA, kind: EventKind::Written(0x1000) }
            ]
        );
        assert_eq!(t.seq(), 2);
    }

    #[test]
    fn every_event_reaches_every_watcher() {
        struct Count(std::sync::atomic::AtomicU32);
        impl CodeWatcher for Count {
            fn code_changed(&self) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let t = CodeTracker::new(16).unwrap();
        let (a, b, old) = (Arc::new(Count(0.into())), Arc::new(Count(0.into())), Arc::new(Count(0.into())));
        t.watch(0, old.clone());
        t.watch(0, a.clone());
        t.watch(2, b.clone());
        t.mark_code(0x1000, 0);
        t.mark_code(0x1000, 2); // already marked: no event
        t.note_write(0x1000, ORIGIN_DMA);
        t.flush_tlbs();
        let n = |c: &Count| c.0.load(Ordering::Relaxed);
        assert_eq!((n(&a), n(&b), n(&old)), (3, 3, 0), "the replaced watcher hears nothing");
    }

    #[test]
    fn overflow_is_reported() {
        let t = CodeTracker::new(1).unwrap();
        for _ in 0..LOG_CAPACITY + 1 {
            t.flush_tlbs();
        }
        let mut ev = Vec::new();
        assert_eq!(t.events_since(0, &mut ev), None);
        assert_eq!(t.events_since(1, &mut ev), Some(LOG_CAPACITY as u64 + 1));
        assert_eq!(ev.len(), LOG_CAPACITY);
    }
}
