//! Free page reporting (virtio 1.2, 5.5.6.5): the driver posts chains whose buffers are free
//! ranges of guest memory; the device gives the host pages behind them back and returns the
//! chains. The buffers are the free pages themselves, so the device never reads or writes
//! through them: only their addresses and lengths matter.

use super::BALLOON_PAGE_SIZE;
use crate::virtio::{Buffer, DescriptorChain};
use ferrite_memory::Dma;

/// The whole pages inside `buf`, as (address, length); `None` if there are none or the
/// buffer wraps around the address space.
fn whole_pages(buf: &Buffer) -> Option<(u64, u64)> {
    let end = buf.addr.checked_add(u64::from(buf.len))? & !(BALLOON_PAGE_SIZE - 1);
    let start = buf.addr.checked_next_multiple_of(BALLOON_PAGE_SIZE)?;
    (end > start).then(|| (start, end - start))
}

/// Gives back the pages of every buffer of `chain` (device-readable or -writable: the spec
/// lets the driver choose, Linux makes them writable); returns the bytes given back. Ranges
/// outside RAM are ignored, partial pages at either end left alone.
pub(super) fn discard_reported(chain: &DescriptorChain, dma: &Dma) -> u64 {
    chain
        .readable()
        .iter()
        .chain(chain.writable())
        .filter_map(whole_pages)
        .filter(|&(addr, len)| dma.discard(addr, len).is_ok())
        .map(|(_, len)| len)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_pages_shrinks_to_page_boundaries() {
        let b = |addr, len| Buffer { addr, len };
        assert_eq!(whole_pages(&b(0x1000, 0x2000)), Some((0x1000, 0x2000)));
        assert_eq!(whole_pages(&b(0x1001, 0x2000)), Some((0x2000, 0x1000)));
        assert_eq!(whole_pages(&b(0x1001, 0x1000)), None);
        assert_eq!(whole_pages(&b(0x1000, 0)), None);
        assert_eq!(whole_pages(&b(u64::MAX - 0xfff, 0x1000)), None, "wraps");
        assert_eq!(whole_pages(&b(u64::MAX - 0x1fff, 0x1000)), Some((u64::MAX - 0x1fff, 0x1000)));
    }
}
