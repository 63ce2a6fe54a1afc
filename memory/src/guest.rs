//! [`GuestMemory`]: RAM, ROM and the legacy window, shared through `&self`.

use crate::bitmap::PageBitmap;
use crate::code::{CodeTracker, ORIGIN_DMA};
use crate::legacy::{segment_of, LegacyAttr, LegacyWindow, LEGACY_END, LEGACY_SEGMENTS, LEGACY_START};
use crate::{FOUR_GIB, PAGE_SIZE};
use memmap2::{MmapMut, UncheckedAdvice};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("cannot reserve {size} bytes of guest memory: {source}")]
    Map {
        size: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("guest-physical range {addr:#x}+{len:#x} is not RAM")]
    NotRam { addr: u64, len: u64 },
    #[error("ROM at {base:#x}+{len:#x} overlaps RAM or another ROM")]
    RomOverlap { base: u64, len: u64 },
    #[error("cannot give guest-physical range {addr:#x}+{len:#x} back to the host: {source}")]
    Discard {
        addr: u64,
        len: u64,
        #[source]
        source: std::io::Error,
    },
}

/// The per-page state every write path keeps up to date, shared with the vCPUs.
pub struct PageTracking {
    /// Pages written since the log was last taken (by vCPUs, DMA and loaders).
    pub dirty: PageBitmap,
    pub code: CodeTracker,
}

/// Where accesses to one guest-physical 4 KiB page go. Pointers are host addresses of the
/// start of the page, valid as long as the `GuestMemory` lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageMap {
    /// RAM: reads and writes.
    Ram(*mut u8),
    /// Reads from here, writes are dropped (ROM, or RAM write-protected by PAM).
    ReadOnly(*mut u8),
    /// Reads and writes go to different places (PAM: ROM reads, RAM writes); `None` reads as
    /// all ones / drops writes.
    Split { read: Option<*mut u8>, write: Option<*mut u8> },
    /// Not memory: device MMIO or nothing.
    Unmapped,
}

/// A run of guest-physical pages backed by host memory, as a hypervisor maps it: reads come
/// from `host`, and writes too unless `read_only` (then they are the device model's, like
/// any access outside every region).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostRegion {
    pub gpa: u64,
    pub len: u64,
    pub host: *mut u8,
    pub read_only: bool,
}

struct Rom {
    base: u64,
    map: MmapMut,
    host: NonNull<u8>,
}

pub struct GuestMemory {
    ram_map: MmapMut,
    ram: NonNull<u8>,
    below_4g: u64,
    above_4g: u64,
    roms: Vec<Rom>,
    legacy: LegacyWindow,
    tracking: Arc<PageTracking>,
    /// Bumped whenever [`GuestMemory::host_regions`] may answer differently (PAM changes).
    layout_generation: AtomicU64,
}

// SAFETY: the raw pointers point into mappings this value owns and never moves; the mappings
// live as long as the value. Guest RAM is shared with the guest's own vCPUs by design: racing
// guest accesses are the guest's business (as on hardware), and every host-side access goes
// through raw pointers, never through references to the bytes.
unsafe impl Send for GuestMemory {}
// SAFETY: as above; all state changed through `&self` is atomic or behind a lock.
unsafe impl Sync for GuestMemory {}

fn anon(size: u64) -> Result<MmapMut, MemoryError> {
    // No swap reservation: pages cost memory only when the guest touches them.
    let map = memmap2::MmapOptions::new()
        .len(size.max(1) as usize)
        .no_reserve_swap()
        .map_anon()
        .map_err(|source| MemoryError::Map { size, source })?;
    // Transparent huge pages where the host allows them (as QEMU asks for its RAM): guest
    // accesses through the soft TLB then miss the host's TLB far less. A refusal (THP off)
    // only costs that speed.
    let _ = map.advise(memmap2::Advice::HugePage);
    Ok(map)
}

impl GuestMemory {
    /// `below_4g` bytes of RAM at 0 and `above_4g` bytes at 4 GiB, both multiples of 4 KiB.
    /// The legacy window starts as plain RAM (what firmware leaves for a directly booted
    /// kernel); a machine with a BIOS sets it with [`GuestMemory::set_legacy`].
    pub fn new(below_4g: u64, above_4g: u64) -> Result<Self, MemoryError> {
        let size = below_4g + above_4g;
        let mut ram = anon(size)?;
        let host = NonNull::new(ram.as_mut_ptr()).expect("mmap never returns null");
        // Pages from 0 to the end of RAM (and at least to 4 GiB, so firmware and the legacy
        // window are covered).
        let pages = (if above_4g > 0 { FOUR_GIB + above_4g } else { FOUR_GIB }) >> 12;
        let io = |source| MemoryError::Map { size: pages / 8, source };
        let tracking = PageTracking { dirty: PageBitmap::new(pages).map_err(io)?, code: CodeTracker::new(pages).map_err(io)? };
        Ok(GuestMemory {
            ram_map: ram,
            ram: host,
            below_4g,
            above_4g,
            roms: Vec::new(),
            legacy: LegacyWindow::new(LegacyAttr::RAM),
            tracking: Arc::new(tracking),
            layout_generation: AtomicU64::new(0),
        })
    }

    pub fn ram_size(&self) -> u64 {
        self.below_4g + self.above_4g
    }
    pub fn below_4g(&self) -> u64 {
        self.below_4g
    }
    pub fn above_4g(&self) -> u64 {
        self.above_4g
    }

    /// The dirty log and code tracking, for the vCPUs.
    pub fn tracking(&self) -> &Arc<PageTracking> {
        &self.tracking
    }

    /// Maps a read-only copy of `image` at `base` (firmware). ROM lives outside RAM (the PCI
    /// hole) or inside the legacy window, where the PAM settings decide who answers.
    pub fn add_rom(&mut self, base: u64, image: &[u8]) -> Result<(), MemoryError> {
        let len = (image.len() as u64).div_ceil(4096) * 4096;
        let overlap_err = MemoryError::RomOverlap { base, len };
        let end = base.checked_add(len).ok_or(MemoryError::RomOverlap { base, len })?;
        let in_legacy = segment_of(base).is_some() && segment_of(end - 1).is_some();
        if !in_legacy && (self.ram_offset(base).is_some() || self.ram_offset(end - 1).is_some()) {
            return Err(overlap_err);
        }
        if self.roms.iter().any(|r| base < r.base + r.map.len() as u64 && r.base < end) {
            return Err(overlap_err);
        }
        let mut map = anon(len)?;
        map[..image.len()].copy_from_slice(image);
        let host = NonNull::new(map.as_mut_ptr()).expect("mmap never returns null");
        self.roms.push(Rom { base, map, host });
        Ok(())
    }

    /// Offset into the RAM mapping of a guest-physical address, if it is RAM.
    #[inline]
    fn ram_offset(&self, gpa: u64) -> Option<usize> {
        if gpa < self.below_4g {
            Some(gpa as usize)
        } else if gpa >= FOUR_GIB && gpa - FOUR_GIB < self.above_4g {
            Some((self.below_4g + gpa - FOUR_GIB) as usize)
        } else {
            None
        }
    }

    fn ram_page(&self, page: u64) -> Option<*mut u8> {
        // SAFETY: `ram_offset` only answers offsets inside the RAM mapping.
        self.ram_offset(page).map(|off| unsafe { self.ram.as_ptr().add(off) })
    }

    fn rom_page(&self, page: u64) -> Option<*mut u8> {
        self.roms.iter().find(|r| page >= r.base && page - r.base < r.map.len() as u64).map(|r| {
            // SAFETY: the page lies inside this ROM's mapping (checked above).
            unsafe { r.host.as_ptr().add((page - r.base) as usize) }
        })
    }

    /// Where accesses to the page holding `gpa` go.
    pub fn page(&self, gpa: u64) -> PageMap {
        let page = gpa & !0xfff;
        if let Some(seg) = segment_of(page) {
            let attr = self.legacy.get(seg);
            let ram = self.ram_page(page);
            let pci = self.rom_page(page);
            return match (attr.read_ram, attr.write_ram) {
                (true, true) => ram.map_or(PageMap::Unmapped, PageMap::Ram),
                (true, false) => ram.map_or(PageMap::Unmapped, PageMap::ReadOnly),
                (false, true) => PageMap::Split { read: pci, write: ram },
                (false, false) => pci.map_or(PageMap::Unmapped, PageMap::ReadOnly),
            };
        }
        if let Some(p) = self.rom_page(page) {
            return PageMap::ReadOnly(p);
        }
        self.ram_page(page).map_or(PageMap::Unmapped, PageMap::Ram)
    }

    /// Sets where the legacy window's segments send their accesses (the PAM registers).
    /// Changed segments lose their decoded code and every vCPU drops its translations.
    pub fn set_legacy(&self, attrs: &[LegacyAttr; LEGACY_SEGMENTS]) {
        let changed = self.legacy.set(attrs);
        if changed.is_empty() {
            return;
        }
        self.layout_generation.fetch_add(1, Ordering::AcqRel);
        for (base, len) in changed {
            self.tracking.code.note_write_range(base, len, ORIGIN_DMA);
        }
        self.tracking.code.flush_tlbs();
    }

    /// The ROMs' ranges (base, length), in the order they were added.
    pub fn roms(&self) -> Vec<(u64, u64)> {
        self.roms.iter().map(|r| (r.base, r.map.len() as u64)).collect()
    }

    /// Where legacy segment `index`'s accesses go now (see [`crate::segment_range`]).
    pub fn legacy_attr(&self, index: usize) -> LegacyAttr {
        self.legacy.get(index)
    }

    /// Changes whenever [`GuestMemory::host_regions`] may have changed.
    pub fn layout_generation(&self) -> u64 {
        self.layout_generation.load(Ordering::Acquire)
    }

    /// Every guest-physical range that host memory backs directly, in address order, with
    /// neighbours that continue each other merged: RAM, ROM, and the legacy window as PAM
    /// shows it to reads (a segment that reads ROM and writes RAM is the ROM, read-only).
    pub fn host_regions(&self) -> Vec<HostRegion> {
        let mut out: Vec<HostRegion> = Vec::new();
        let mut push = |gpa: u64, len: u64, host: *mut u8, read_only: bool| {
            if let Some(last) = out.last_mut() {
                // SAFETY: only compared, never dereferenced: the address just past `last`.
                let next = unsafe { last.host.add(last.len as usize) };
                if last.gpa + last.len == gpa && next == host && last.read_only == read_only {
                    last.len += len;
                    return;
                }
            }
            out.push(HostRegion { gpa, len, host, read_only });
        };
        let mut ranges = vec![(0, LEGACY_START.min(self.below_4g))];
        let mut page_by_page = vec![(LEGACY_START, LEGACY_END)];
        if self.below_4g > LEGACY_END {
            ranges.push((LEGACY_END, self.below_4g));
        }
        for r in &self.roms {
            if segment_of(r.base).is_none() {
                page_by_page.push((r.base, r.base + r.map.len() as u64));
            }
        }
        if self.above_4g > 0 {
            ranges.push((FOUR_GIB, FOUR_GIB + self.above_4g));
        }
        let mut spans: Vec<(u64, u64, bool)> = ranges.into_iter().map(|(a, b)| (a, b, false)).collect();
        spans.extend(page_by_page.into_iter().map(|(a, b)| (a, b, true)));
        spans.sort_by_key(|s| s.0);
        for (start, end, per_page) in spans {
            if !per_page {
                if let Some(p) = self.ram_page(start) {
                    push(start, end - start, p, false);
                }
                continue;
            }
            for page in (start..end).step_by(PAGE_SIZE as usize) {
                match self.page(page) {
                    PageMap::Ram(p) => push(page, PAGE_SIZE, p, false),
                    PageMap::ReadOnly(p) | PageMap::Split { read: Some(p), .. } => push(page, PAGE_SIZE, p, true),
                    PageMap::Split { read: None, .. } | PageMap::Unmapped => {}
                }
            }
        }
        out
    }

    /// A read of 1-8 bytes within one page as the CPU sees it (PAM views included); device
    /// memory and holes read as all ones. For pages the CPU cannot cache in its TLB.
    pub fn load(&self, gpa: u64, size: u8) -> Option<u64> {
        let ptr = match self.page(gpa) {
            PageMap::Ram(p) | PageMap::ReadOnly(p) => Some(p),
            PageMap::Split { read, .. } => read,
            PageMap::Unmapped => return None,
        };
        let mut v = [0xffu8; 8];
        if let Some(p) = ptr {
            let off = (gpa & 0xfff) as usize;
            let n = (size as usize).min(4096 - off);
            // SAFETY: `p` is a whole host page and `off + n <= 4096`.
            unsafe { std::ptr::copy_nonoverlapping(p.add(off), v.as_mut_ptr(), n) };
        }
        Some(u64::from_le_bytes(v) & (u64::MAX >> (64 - 8 * size.clamp(1, 8) as u32)))
    }

    /// A write of 1-8 bytes within one page as the CPU sees it (PAM views included); `false`
    /// if the page is not memory (the caller sends it to devices).
    pub fn store(&self, gpa: u64, size: u8, value: u64, origin: u32) -> bool {
        let ptr = match self.page(gpa) {
            PageMap::Ram(p) => Some(p),
            PageMap::Split { write, .. } => write,
            PageMap::ReadOnly(_) => None,
            PageMap::Unmapped => return false,
        };
        if let Some(p) = ptr {
            let off = (gpa & 0xfff) as usize;
            let n = (size as usize).min(4096 - off);
            // SAFETY: `p` is a whole host RAM page and `off + n <= 4096`.
            unsafe { std::ptr::copy_nonoverlapping(value.to_le_bytes().as_ptr(), p.add(off), n) };
            self.note_written(gpa, n as u64, origin);
        }
        true
    }

    /// The RAM offset of `[gpa, gpa + len)`, which must lie inside one RAM window.
    fn ram_range(&self, gpa: u64, len: usize) -> Result<usize, MemoryError> {
        let err = || MemoryError::NotRam { addr: gpa, len: len as u64 };
        let start = self.ram_offset(gpa).ok_or_else(err)?;
        if len > 0 {
            let end = gpa.checked_add(len as u64 - 1).ok_or_else(err)?;
            if self.ram_offset(end).map(|o| o - start) != Some(len - 1) {
                return Err(err());
            }
        }
        Ok(start)
    }

    /// Copies `data` into RAM at `gpa` (loaders, DMA): marks the pages dirty and drops decoded
    /// code there on every vCPU.
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        let start = self.ram_range(gpa, data.len())?;
        // SAFETY: `ram_range` checked that the range lies inside the RAM mapping.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ram.as_ptr().add(start), data.len()) };
        self.note_written(gpa, data.len() as u64, ORIGIN_DMA);
        Ok(())
    }

    /// The bookkeeping after bytes were written: dirty pages, and stale decoded code. It comes
    /// after the copy so a vCPU that marks a page as code (then reads it) either sees the new
    /// bytes or gets the event.
    fn note_written(&self, gpa: u64, len: u64, origin: u32) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.tracking.dirty.set_range(gpa, len);
        self.tracking.code.note_write_range(gpa, len, origin);
    }

    /// Copies RAM at `gpa` into `buf`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let start = self.ram_range(gpa, buf.len())?;
        // SAFETY: `ram_range` checked that the range lies inside the RAM mapping.
        unsafe { std::ptr::copy_nonoverlapping(self.ram.as_ptr().add(start), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Fills `len` bytes at `gpa` with zeros.
    pub fn zero(&self, gpa: u64, len: u64) -> Result<(), MemoryError> {
        const CHUNK: [u8; 4096] = [0; 4096];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(4096);
            self.write(gpa + done, &CHUNK[..n as usize]).map_err(|_| MemoryError::NotRam { addr: gpa, len })?;
            done += n;
        }
        Ok(())
    }

    /// Gives the host pages behind `[gpa, gpa + len)` back to the host kernel (a balloon
    /// inflating, free page reporting): afterwards the range reads as zeros and costs no host
    /// memory until it is touched again. The range must be whole 4 KiB pages inside one RAM
    /// window. Like [`Self::write`], it reaches the RAM under the legacy window whatever PAM
    /// says and never ROM; the pages are marked dirty and lose their decoded code.
    pub fn discard(&self, gpa: u64, len: u64) -> Result<(), MemoryError> {
        let err = || MemoryError::NotRam { addr: gpa, len };
        if !(gpa | len).is_multiple_of(PAGE_SIZE) {
            return Err(err());
        }
        let n = usize::try_from(len).map_err(|_| err())?;
        let start = self.ram_range(gpa, n)?;
        if n == 0 {
            return Ok(());
        }
        // SAFETY: MADV_DONTNEED on a private anonymous mapping swaps the range for fresh zero
        // pages: the mapping (and every host pointer into it, such as the vCPUs' TLBs) stays
        // valid. No Rust reference to guest RAM bytes ever exists (all host-side accesses
        // are raw-pointer copies, see the `Send`/`Sync` impls), so no reference observes its
        // contents changing; racing guest accesses are the guest's own business. `ram_range`
        // checked that the page-aligned range lies inside the mapping.
        unsafe { self.ram_map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, n) }
            .map_err(|source| MemoryError::Discard { addr: gpa, len, source })?;
        self.note_written(gpa, len, ORIGIN_DMA);
        Ok(())
    }

    /// Reads a little-endian `u32`/`u64` from RAM.
    pub fn read_u32(&self, gpa: u64) -> Result<u32, MemoryError> {
        let mut b = [0; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    pub fn read_u64(&self, gpa: u64) -> Result<u64, MemoryError> {
        let mut b = [0; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// The pages written since the last call (vCPUs, DMA, loaders), clearing the log. The
    /// vCPUs' TLBs must be synchronised (see `CodeTracker::flush_tlbs`) before relying on the
    /// log again, since they write pages they already saw dirty without looking.
    pub fn take_dirty(&self) -> Vec<u64> {
        let pages = self.tracking.dirty.take();
        self.tracking.code.flush_tlbs();
        pages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::segment_range;

    /// What a hypervisor maps: RAM around the legacy window, PAM views of it, ROM read-only,
    /// RAM above 4 GiB; the generation moves when PAM does.
    #[test]
    fn host_regions_follow_the_layout() {
        let mut m = GuestMemory::new(0x20_0000, 0x1000).unwrap();
        m.add_rom(0xfffe_0000, &[0x90; 0x2_0000]).unwrap();
        m.add_rom(0xf_0000, &[0xf4; 0x1_0000]).unwrap();
        let regions = |m: &GuestMemory| m.host_regions().iter().map(|r| (r.gpa, r.len, r.read_only)).collect::<Vec<_>>();
        // Power-on: the whole window is RAM, merged with the RAM around it.
        assert_eq!(regions(&m), [(0, 0x20_0000, false), (0xfffe_0000, 0x2_0000, true), (FOUR_GIB, 0x1000, false)]);
        let before = m.layout_generation();
        let mut attrs = [LegacyAttr::RAM; LEGACY_SEGMENTS];
        attrs[0] = LegacyAttr::PCI; // 0xF0000: the BIOS ROM answers
        attrs[1] = LegacyAttr { read_ram: true, write_ram: false }; // 0xC0000: write-protected RAM
        attrs[2] = LegacyAttr { read_ram: false, write_ram: true }; // 0xC4000: no ROM there: a hole for reads
        m.set_legacy(&attrs);
        assert_ne!(m.layout_generation(), before);
        assert_eq!(
            regions(&m),
            [
                (0, 0xc_0000, false),
                (0xc_0000, 0x4000, true),
                (0xc_8000, 0x2_8000, false),
                (0xf_0000, 0x1_0000, true),
                (0x10_0000, 0x10_0000, false),
                (0xfffe_0000, 0x2_0000, true),
                (FOUR_GIB, 0x1000, false),
            ]
        );
    }

    #[test]
    fn ram_windows_and_rom() {
        let mut m = GuestMemory::new(0x10_0000, 0x2000).unwrap();
        m.write(0x1000, b"hello").unwrap();
        let mut b = [0u8; 5];
        m.read(0x1000, &mut b).unwrap();
        assert_eq!(&b, b"hello");
        assert_eq!(m.page(0x10_0000), PageMap::Unmapped);
        assert!(matches!(m.page(FOUR_GIB + 0x1000), PageMap::Ram(_)));
        assert!(m.write(0x0f_fffc, b"abcd").is_ok());
        assert!(m.write(0x0f_fffe, b"abcde").is_err(), "runs past the end of low RAM");
        m.add_rom(0xfffe_0000, &[0xea; 0x20000]).unwrap();
        assert!(m.add_rom(0x1000, &[0; 16]).is_err(), "ROM over RAM outside the legacy window");
        let PageMap::ReadOnly(p) = m.page(0xffff_fff0) else { panic!("ROM") };
        // SAFETY: p points at a ROM page of 4096 bytes.
        assert_eq!(unsafe { *p.add(0xff0) }, 0xea);
        assert_eq!(m.load(0xffff_fff0, 2), Some(0xeaea));
    }

    #[test]
    fn large_memory_is_lazy() {
        // 64 GiB reserved without touching it must succeed on a 24 GiB machine.
        let m = GuestMemory::new(3 << 30, 61 << 30).unwrap();
        assert_eq!(m.ram_size(), 64 << 30);
    }

    #[test]
    fn legacy_window_follows_pam() {
        let mut m = GuestMemory::new(0x20_0000, 0).unwrap();
        m.add_rom(0xE_0000, &[0x55; 0x20000]).unwrap();
        m.write(0xF_0000, &[0x11]).unwrap();
        assert_eq!(m.load(0xF_0000, 1), Some(0x11), "starts as RAM");
        m.set_legacy(&[LegacyAttr::PCI; LEGACY_SEGMENTS]);
        assert_eq!(m.load(0xF_0000, 1), Some(0x55), "ROM answers");
        assert_eq!(m.load(0xC_0000, 1), None, "nothing at 0xC0000 on the PCI side: devices decide");
        let mut attrs = [LegacyAttr::PCI; LEGACY_SEGMENTS];
        attrs[0] = LegacyAttr { read_ram: false, write_ram: true };
        m.set_legacy(&attrs);
        assert!(m.store(0xF_0000, 1, 0x77, 0));
        assert_eq!(m.load(0xF_0000, 1), Some(0x55), "reads still from ROM");
        attrs[0] = LegacyAttr { read_ram: true, write_ram: false };
        m.set_legacy(&attrs);
        assert_eq!(m.load(0xF_0000, 1), Some(0x77), "the write reached shadow RAM");
        m.store(0xF_0000, 1, 0x99, 0);
        assert_eq!(m.load(0xF_0000, 1), Some(0x77), "write-protected");
        assert_eq!(segment_range(0), (0xF_0000, 0x1_0000));
    }

    #[test]
    fn dirty_log_sees_loader_and_store_writes() {
        let m = GuestMemory::new(0x40_0000, 0).unwrap();
        m.take_dirty();
        m.write(0x3000, &[1; 0x1001]).unwrap();
        m.store(0x10_0000, 4, 5, 0);
        assert_eq!(m.take_dirty(), vec![3, 4, 0x100]);
        assert!(m.take_dirty().is_empty());
    }

    #[test]
    fn discard_zeroes_pages_below_and_above_4g() {
        let m = GuestMemory::new(0x40_0000, 0x4000).unwrap();
        m.write(0x3000, &[0xaa; 0x2000]).unwrap();
        m.write(FOUR_GIB + 0x1000, &[0xbb; 8]).unwrap();
        m.discard(0x3000, 0x1000).unwrap();
        let mut b = [0u8; 0x2000];
        m.read(0x3000, &mut b).unwrap();
        assert!(b[..0x1000].iter().all(|&x| x == 0), "discarded page reads zero");
        assert!(b[0x1000..].iter().all(|&x| x == 0xaa), "the next page is untouched");
        m.discard(FOUR_GIB, 0x4000).unwrap();
        assert_eq!(m.read_u64(FOUR_GIB + 0x1000).unwrap(), 0);
        m.write(0x3000, &[1]).unwrap();
        assert_eq!(m.load(0x3000, 1), Some(1), "usable again after the discard");
    }

    #[test]
    fn discard_rejects_what_is_not_whole_ram_pages() {
        let m = GuestMemory::new(0x40_0000, 0x4000).unwrap();
        let not_ram = |r: Result<(), MemoryError>| matches!(r, Err(MemoryError::NotRam { .. }));
        assert!(not_ram(m.discard(0x3001, 0x1000)), "unaligned start");
        assert!(not_ram(m.discard(0x3000, 0x800)), "partial page");
        assert!(not_ram(m.discard(0x3f_f000, 0x2000)), "runs past the end of low RAM");
        assert!(not_ram(m.discard(0x40_0000, 0x1000)), "the PCI hole");
        assert!(not_ram(m.discard(FOUR_GIB + 0x3000, 0x2000)), "past the end of high RAM");
        assert!(not_ram(m.discard(!0xfff, 0x1000)), "top of the address space");
        assert!(not_ram(m.discard(0x1000, !0xfff)), "wrapping length");
        assert!(m.discard(0x1000, 0).is_ok(), "empty range inside RAM");
    }

    #[test]
    fn discard_marks_dirty_and_invalidates_code() {
        let m = GuestMemory::new(0x40_0000, 0).unwrap();
        m.tracking().code.mark_code(0x5000, 0);
        m.take_dirty();
        m.discard(0x5000, 0x2000).unwrap();
        assert_eq!(m.take_dirty(), vec![5, 6]);
        assert!(!m.tracking().code.is_code(0x5000));
    }

    #[test]
    fn writes_invalidate_code() {
        let m = GuestMemory::new(0x40_0000, 0).unwrap();
        let code = &m.tracking().code;
        code.mark_code(0x5000, 0);
        m.write(0x5ff0, &[0x90]).unwrap();
        assert!(!code.is_code(0x5000));
    }
}
