//! The inflate and deflate queues (virtio 1.2, 5.5.6.1-5.5.6.2): arrays of little-endian
//! 32-bit page frame numbers of 4 KiB pages, and the set of pages currently in the balloon.

use super::BALLOON_PAGE_SIZE;
use crate::virtio::DescriptorChain;
use ferrite_memory::{Dma, GuestMemory, FOUR_GIB};

/// Most PFNs taken from one buffer (Linux sends at most 256); the rest is ignored, which only
/// means the host does not reclaim those pages.
pub const MAX_PFNS_PER_BUFFER: usize = 1024;

/// Reads the PFNs of an inflate or deflate buffer into `out` (cleared first): at most
/// [`MAX_PFNS_PER_BUFFER`], stopping at a trailing partial entry or a buffer outside RAM.
pub(super) fn read_pfns(chain: &DescriptorChain, dma: &Dma, out: &mut Vec<u32>) {
    out.clear();
    let mut reader = chain.reader(dma);
    let mut entry = [0u8; 4];
    while out.len() < MAX_PFNS_PER_BUFFER && reader.read_exact(&mut entry).is_ok() {
        out.push(u32::from_le_bytes(entry));
    }
}

/// What one buffer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct PfnOutcome {
    /// PFNs that changed the balloon (added by inflate, removed by deflate).
    pub changed: u64,
    /// PFNs that are not RAM, or (deflate) not in the balloon.
    pub ignored: u64,
}

/// The pages in the balloon: one bit per guest page up to the end of RAM.
pub(super) struct PageSet {
    words: Vec<u64>,
    count: u64,
}

impl PageSet {
    /// An empty set covering every RAM page of `mem`.
    pub(super) fn for_memory(mem: &GuestMemory) -> Self {
        let end = if mem.above_4g() > 0 { FOUR_GIB + mem.above_4g() } else { mem.below_4g() };
        let pages = end / BALLOON_PAGE_SIZE;
        PageSet { words: vec![0; pages.div_ceil(64) as usize], count: 0 }
    }

    /// Number of pages in the set.
    pub(super) fn len(&self) -> u64 {
        self.count
    }

    fn slot(&self, pfn: u64) -> Option<(usize, u64)> {
        let word = usize::try_from(pfn / 64).ok().filter(|&w| w < self.words.len())?;
        Some((word, 1 << (pfn % 64)))
    }

    /// Adds `pfn`; `false` if it was already in or is beyond the covered range.
    fn insert(&mut self, pfn: u64) -> bool {
        let Some((w, bit)) = self.slot(pfn) else { return false };
        let new = self.words[w] & bit == 0;
        self.words[w] |= bit;
        self.count += u64::from(new);
        new
    }

    /// Removes `pfn`; `false` if it was not in the set.
    fn remove(&mut self, pfn: u64) -> bool {
        let Some((w, bit)) = self.slot(pfn) else { return false };
        let was = self.words[w] & bit != 0;
        self.words[w] &= !bit;
        self.count -= u64::from(was);
        was
    }

    /// Inflate: gives the pages back to the host and adds them to the set. Runs of consecutive
    /// PFNs go to the host in one call; a run that is not all RAM is retried page by page.
    pub(super) fn inflate(&mut self, dma: &Dma, pfns: &[u32]) -> PfnOutcome {
        let mut out = PfnOutcome::default();
        for run in consecutive_runs(pfns) {
            let start = u64::from(run[0]);
            let len = run.len() as u64;
            if dma.discard(start * BALLOON_PAGE_SIZE, len * BALLOON_PAGE_SIZE).is_ok() {
                out.changed += (start..start + len).map(|pfn| u64::from(self.insert(pfn))).sum::<u64>();
                continue;
            }
            for pfn in start..start + len {
                if dma.discard(pfn * BALLOON_PAGE_SIZE, BALLOON_PAGE_SIZE).is_ok() {
                    out.changed += u64::from(self.insert(pfn));
                } else {
                    out.ignored += 1;
                }
            }
        }
        out
    }

    /// Deflate: the guest takes the pages back (they read as zeros until it writes them).
    pub(super) fn deflate(&mut self, pfns: &[u32]) -> PfnOutcome {
        let mut out = PfnOutcome::default();
        for &pfn in pfns {
            if self.remove(u64::from(pfn)) {
                out.changed += 1;
            } else {
                out.ignored += 1;
            }
        }
        out
    }
}

/// Splits `pfns` into runs of consecutive page numbers, in order.
fn consecutive_runs(pfns: &[u32]) -> impl Iterator<Item = &[u32]> {
    pfns.chunk_by(|a, b| a.checked_add(1) == Some(*b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn runs_split_at_gaps_and_wrap() {
        let pfns = [1, 2, 3, 7, 8, u32::MAX, 0, 5];
        let runs: Vec<&[u32]> = consecutive_runs(&pfns).collect();
        assert_eq!(runs, [&[1, 2, 3][..], &[7, 8], &[u32::MAX], &[0], &[5]]);
    }

    #[test]
    fn set_covers_ram_above_4g() {
        let mem = GuestMemory::new(0x10_0000, 0x2000).unwrap();
        let mut set = PageSet::for_memory(&mem);
        let dma = Dma::new(Arc::new(mem));
        let high = (FOUR_GIB / BALLOON_PAGE_SIZE) as u32;
        // RAM, the hole, the last high page, past the end, a duplicate.
        let out = set.inflate(&dma, &[5, 0x100, high, high + 1, high + 2, 5]);
        assert_eq!(out, PfnOutcome { changed: 3, ignored: 2 });
        assert_eq!(set.len(), 3);
        assert_eq!(set.deflate(&[high, high, 0x100]), PfnOutcome { changed: 1, ignored: 2 });
        assert_eq!(set.len(), 2);
    }
}
