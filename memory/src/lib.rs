//! Guest-physical memory, shared by every vCPU thread and every device.
//!
//! * [`GuestMemory`]: RAM below the PCI hole and above 4 GiB, firmware ROM, and the i440FX's
//!   programmable legacy window (0xC0000-0xFFFFF, PAM), reached through `&self` from any thread.
//!   RAM is one anonymous mapping that costs host memory only for the pages the guest touches.
//! * [`PageTracking`]: the atomic per-page dirty log every write path sets, and the
//!   [`CodeTracker`] that records which pages hold decoded guest code and tells every vCPU
//!   when such a page is written (by another vCPU or by DMA) so its decoded blocks go stale.
//! * [`Dma`]: a device's handle to guest RAM; accesses outside RAM are errors it sees.
//!
//! Why not the vm-memory crate: its regions and dirty bitmap would still need the ROM and PAM
//! views, the decoded-code tracking and the host-pointer page lookups the CPU's TLB caches,
//! which are most of this crate; the rest (copy in/out of a mapping) is a few lines.

mod bitmap;
mod code;
mod dma;
mod guest;
mod legacy;

pub use bitmap::PageBitmap;
pub use code::{CodeEvent, CodeTracker, CodeWatcher, EventKind, ORIGIN_DMA};
pub use dma::{Dma, DmaError};
pub use guest::{GuestMemory, HostRegion, MemoryError, PageMap, PageTracking};
pub use legacy::{segment_range, LegacyAttr, LEGACY_END, LEGACY_SEGMENTS, LEGACY_START};

/// Guest page size: the unit of the dirty log, the code tracking and the CPU's TLB.
pub const PAGE_SIZE: u64 = 4096;
/// First guest-physical address above the PCI hole.
pub const FOUR_GIB: u64 = 1 << 32;
