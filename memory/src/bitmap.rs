//! One bit per guest page, set and cleared atomically from any thread.

use memmap2::MmapMut;
use std::sync::atomic::{AtomicU64, Ordering};

/// An atomic bitmap indexed by page frame number. Its storage is an anonymous mapping, so the
/// words of untouched ranges cost no host memory.
pub struct PageBitmap {
    map: MmapMut,
    pages: u64,
}

impl PageBitmap {
    /// A cleared bitmap for page frames `0..pages`.
    pub fn new(pages: u64) -> std::io::Result<Self> {
        let words = pages.div_ceil(64).max(1) as usize;
        let map = memmap2::MmapOptions::new().len(words * 8).no_reserve_swap().map_anon()?;
        Ok(PageBitmap { map, pages })
    }

    pub fn pages(&self) -> u64 {
        self.pages
    }

    #[inline(always)]
    fn word(&self, pfn: u64) -> Option<&AtomicU64> {
        if pfn >= self.pages {
            return None;
        }
        // SAFETY: the mapping holds `pages.div_ceil(64)` 8-byte words, page-aligned (so every
        // word is aligned for AtomicU64), lives as long as `self`, and is only ever accessed
        // through atomics; `pfn < pages` keeps the index in range.
        Some(unsafe { AtomicU64::from_ptr((self.map.as_ptr() as *mut u64).add((pfn / 64) as usize)) })
    }

    /// Whether page `pfn` is set (pages outside the bitmap read as clear).
    #[inline(always)]
    pub fn get(&self, pfn: u64) -> bool {
        self.word(pfn).is_some_and(|w| w.load(Ordering::Acquire) & (1 << (pfn % 64)) != 0)
    }

    /// Sets page `pfn`; returns whether it was set before. Pages outside the bitmap are ignored
    /// (and reported as already set, so callers do nothing more for them).
    #[inline]
    pub fn set(&self, pfn: u64) -> bool {
        match self.word(pfn) {
            // A plain load first: setting an already set bit must not bounce the cache line.
            Some(w) if w.load(Ordering::Relaxed) & (1 << (pfn % 64)) == 0 => {
                w.fetch_or(1 << (pfn % 64), Ordering::AcqRel) & (1 << (pfn % 64)) != 0
            }
            _ => true,
        }
    }

    /// Clears page `pfn`; returns whether it was set.
    #[inline]
    pub fn clear(&self, pfn: u64) -> bool {
        match self.word(pfn) {
            Some(w) if w.load(Ordering::Relaxed) & (1 << (pfn % 64)) != 0 => {
                w.fetch_and(!(1 << (pfn % 64)), Ordering::AcqRel) & (1 << (pfn % 64)) != 0
            }
            _ => false,
        }
    }

    /// Sets the pages covering `[addr, addr + len)`.
    pub fn set_range(&self, addr: u64, len: u64) {
        if len > 0 {
            for pfn in addr >> 12..=(addr + len - 1) >> 12 {
                self.set(pfn);
            }
        }
    }

    /// The set pages, in order, clearing them as it goes (each word atomically).
    pub fn take(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for i in 0..self.pages.div_ceil(64) {
            let Some(w) = self.word(i * 64) else { break };
            if w.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let mut bits = w.swap(0, Ordering::AcqRel);
            while bits != 0 {
                out.push(i * 64 + bits.trailing_zeros() as u64);
                bits &= bits - 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_clear_take() {
        let b = PageBitmap::new(200).unwrap();
        assert!(!b.set(3));
        assert!(b.set(3));
        assert!(!b.set(130));
        assert!(b.get(130) && !b.get(131));
        assert!(b.set(500), "outside: ignored");
        assert!(!b.get(500));
        assert!(b.clear(3) && !b.clear(3));
        b.set_range(0x1fff, 2);
        assert_eq!(b.take(), vec![1, 2, 130]);
        assert!(b.take().is_empty());
    }

    #[test]
    fn concurrent_sets_are_all_seen() {
        let b = std::sync::Arc::new(PageBitmap::new(4096).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let b = b.clone();
                std::thread::spawn(move || (0..4096).filter(|p| p % 4 == t).for_each(|p| _ = b.set(p)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(b.take().len(), 4096);
    }
}
