//! PVH direct boot (Xen's `docs/misc/pvh.pandoc`, the x86 HVM direct boot ABI that Linux,
//! QEMU, Firecracker and cloud-hypervisor use): an uncompressed ELF kernel (`vmlinux`) that
//! carries the `XEN_ELFNOTE_PHYS32_ENTRY` note is loaded by its program headers at their
//! physical addresses and entered at that note's address in 32-bit protected mode with paging
//! off, EBX holding the address of an `hvm_start_info` (xen/include/public/arch-x86/hvm/
//! start_info.h, version 1) that points at the command line, the initrd (as module 0), the
//! ACPI RSDP and the memory map.
//!
//! Why not linux-loader's ELF/PVH support: it writes through vm-memory's `GuestMemory`, which
//! ferrite's memory does not implement (see ferrite-memory's docs); the parts needed here are
//! two ELF tables and one structure.

use crate::boot_state::{self, BootSetup, CpuMode, CMDLINE_ADDR};
use crate::e820::{MemoryLayout, EBDA_START, HIGH_MEMORY_START};
use crate::le;
use ferrite_memory::{GuestMemory, MemoryError};
use thiserror::Error;

/// ELF note type of the 32-bit PVH entry point, in notes named "Xen".
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const START_INFO_MAGIC: u32 = 0x336e_c578;
/// Below the Linux zero page's address (unused by PVH) and above the boot GDT.
const START_INFO_ADDR: u64 = 0x6000;
const MODLIST_ADDR: u64 = 0x6100;
const MEMMAP_ADDR: u64 = 0x6200;
/// Room for the memory map up to the zero page at 0x7000 (24 bytes per entry).
const MEMMAP_MAX_ENTRIES: usize = 0xe00 / 24;

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;

#[derive(Debug, Error)]
pub enum PvhError {
    #[error("not an ELF file")]
    NotElf,
    #[error("ELF file is truncated or malformed: {0}")]
    Malformed(&'static str),
    #[error("ELF kernel has no XEN_ELFNOTE_PHYS32_ENTRY note: it cannot be booted through PVH (pass the bzImage instead)")]
    NoPvhEntry,
    #[error("ELF segment at {addr:#x}+{size:#x} lies outside RAM below 4 GiB")]
    SegmentOutsideRam { addr: u64, size: u64 },
    #[error("initrd of {size} bytes does not fit in RAM above the kernel")]
    InitrdTooLarge { size: u64 },
    #[error("command line of {len} bytes is too long (at most {max})")]
    CmdlineTooLong { len: usize, max: u64 },
    #[error("too many memory map entries ({0})")]
    MemoryMapTooLarge(usize),
    #[error("writing guest memory: {0}")]
    Write(#[from] MemoryError),
}

/// One loadable segment: file bytes at a physical address, then zeros up to `mem_size`.
struct LoadSegment<'a> {
    paddr: u64,
    data: &'a [u8],
    mem_size: u64,
}

/// What the loader needs of an ELF kernel.
pub struct ElfKernel<'a> {
    segments: Vec<LoadSegment<'a>>,
    /// The 32-bit PVH entry point, if the kernel has the note.
    pub pvh_entry: Option<u32>,
}

fn bytes<'a>(image: &'a [u8], off: u64, len: u64) -> Result<&'a [u8], PvhError> {
    let end = off.checked_add(len).ok_or(PvhError::Malformed("offset overflows"))?;
    image.get(off as usize..end as usize).ok_or(PvhError::Malformed("a table or segment runs past the end of the file"))
}

/// Whether `image` starts like an ELF file.
pub fn is_elf(image: &[u8]) -> bool {
    image.starts_with(b"\x7fELF")
}

/// Reads the program headers of a 32- or 64-bit little-endian x86 ELF file.
pub fn parse_elf(image: &[u8]) -> Result<ElfKernel<'_>, PvhError> {
    if !is_elf(image) {
        return Err(PvhError::NotElf);
    }
    let wide = match image.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(PvhError::Malformed("unknown ELF class")),
    };
    if image.get(5) != Some(&1) {
        return Err(PvhError::Malformed("not little-endian"));
    }
    let short = PvhError::Malformed("header truncated");
    let field = |off32: usize, off64: usize| -> Option<u64> {
        if wide {
            le::u64_at(image, off64)
        } else {
            le::u32_at(image, off32).map(u64::from)
        }
    };
    let phoff = field(0x1c, 0x20).ok_or(short)?;
    let (phentsize, phnum) = if wide {
        (le::u16_at(image, 0x36), le::u16_at(image, 0x38))
    } else {
        (le::u16_at(image, 0x2a), le::u16_at(image, 0x2c))
    };
    let (phentsize, phnum) = (phentsize.ok_or(PvhError::Malformed("header truncated"))?, phnum.ok_or(PvhError::Malformed("header truncated"))?);
    let mut kernel = ElfKernel { segments: Vec::new(), pvh_entry: None };
    for i in 0..phnum as u64 {
        let ph = bytes(image, phoff + i * phentsize as u64, phentsize as u64)?;
        let get = |off32: usize, off64: usize| -> Result<u64, PvhError> {
            let v = if wide { le::u64_at(ph, off64) } else { le::u32_at(ph, off32).map(u64::from) };
            v.ok_or(PvhError::Malformed("program header truncated"))
        };
        let p_type = le::u32_at(ph, 0).ok_or(PvhError::Malformed("program header truncated"))?;
        let (offset, paddr, filesz, memsz) = (get(4, 8)?, get(12, 24)?, get(16, 32)?, get(20, 40)?);
        match p_type {
            PT_LOAD => {
                if memsz < filesz {
                    return Err(PvhError::Malformed("segment smaller in memory than in the file"));
                }
                kernel.segments.push(LoadSegment { paddr, data: bytes(image, offset, filesz)?, mem_size: memsz });
            }
            PT_NOTE => {
                if let Some(entry) = find_pvh_note(bytes(image, offset, filesz)?)? {
                    kernel.pvh_entry = Some(entry);
                }
            }
            _ => {}
        }
    }
    Ok(kernel)
}

/// Walks an ELF note segment for the "Xen" PHYS32_ENTRY note.
fn find_pvh_note(mut notes: &[u8]) -> Result<Option<u32>, PvhError> {
    let pad4 = |n: u32| (n as usize).div_ceil(4) * 4;
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (le::u32_at(notes, 0).unwrap(), le::u32_at(notes, 4).unwrap(), le::u32_at(notes, 8).unwrap());
        let name_end = 12 + pad4(namesz);
        let desc_end = name_end.checked_add(pad4(descsz)).ok_or(PvhError::Malformed("note size overflows"))?;
        if desc_end > notes.len() {
            return Err(PvhError::Malformed("note runs past its segment"));
        }
        let name = &notes[12..12 + namesz as usize];
        if name.strip_suffix(b"\0").unwrap_or(name) == b"Xen" && kind == XEN_ELFNOTE_PHYS32_ENTRY && descsz >= 4 {
            // The note holds a 32-bit address, stored in a pointer-sized field by 64-bit kernels.
            return Ok(le::u32_at(notes, name_end));
        }
        notes = &notes[desc_end..];
    }
    Ok(None)
}

/// What to hand the kernel.
pub struct PvhConfig<'a> {
    pub cmdline: &'a str,
    pub initrd: Option<&'a [u8]>,
    pub acpi_rsdp_addr: Option<u64>,
}

/// Loads the PVH-capable ELF `image` and returns the entry state (see the module docs).
pub fn load_pvh(mem: &GuestMemory, image: &[u8], config: &PvhConfig<'_>) -> Result<BootSetup, PvhError> {
    let kernel = parse_elf(image)?;
    let entry = kernel.pvh_entry.ok_or(PvhError::NoPvhEntry)?;
    let layout = MemoryLayout::of(mem);
    let mut kernel_end = HIGH_MEMORY_START;
    for s in &kernel.segments {
        let end = s.paddr.checked_add(s.mem_size).filter(|&e| s.paddr >= HIGH_MEMORY_START && e <= layout.below_4g);
        let end = end.ok_or(PvhError::SegmentOutsideRam { addr: s.paddr, size: s.mem_size })?;
        kernel_end = kernel_end.max(end);
    }
    for s in &kernel.segments {
        mem.write(s.paddr, s.data)?;
        mem.zero(s.paddr + s.data.len() as u64, s.mem_size - s.data.len() as u64)?;
    }

    let cmdline = config.cmdline.as_bytes();
    let max = EBDA_START - CMDLINE_ADDR - 1;
    if cmdline.len() as u64 > max {
        return Err(PvhError::CmdlineTooLong { len: cmdline.len(), max });
    }
    mem.write(CMDLINE_ADDR, &[cmdline, &[0]].concat())?;

    let mut modules = Vec::new();
    if let Some(data) = config.initrd.filter(|d| !d.is_empty()) {
        // As high as possible below 4 GiB RAM's end, page-aligned, above the kernel.
        let size = data.len() as u64;
        let addr = layout.below_4g.checked_sub(size).map(|a| a & !0xfff).filter(|&a| a >= kernel_end.next_multiple_of(4096));
        let addr = addr.ok_or(PvhError::InitrdTooLarge { size })?;
        mem.write(addr, data)?;
        // hvm_modlist_entry: paddr, size, cmdline_paddr, reserved.
        modules.extend_from_slice(&[addr.to_le_bytes(), size.to_le_bytes(), [0; 8], [0; 8]].concat());
    }
    mem.write(MODLIST_ADDR, &modules)?;

    let e820 = layout.e820();
    if e820.len() > MEMMAP_MAX_ENTRIES {
        return Err(PvhError::MemoryMapTooLarge(e820.len()));
    }
    // hvm_memmap_table_entry: the e820 entry and a reserved u32.
    let memmap: Vec<u8> = e820.iter().flat_map(|e| [&e.to_bytes()[..], &[0; 4]].concat()).collect();
    mem.write(MEMMAP_ADDR, &memmap)?;

    let mut info = [0u8; 56];
    le::put_u32(&mut info, 0, START_INFO_MAGIC);
    le::put_u32(&mut info, 4, 1); // version
    le::put_u32(&mut info, 12, (modules.len() / 32) as u32);
    le::put_u64(&mut info, 16, if modules.is_empty() { 0 } else { MODLIST_ADDR });
    le::put_u64(&mut info, 24, CMDLINE_ADDR);
    le::put_u64(&mut info, 32, config.acpi_rsdp_addr.unwrap_or(0));
    le::put_u64(&mut info, 40, MEMMAP_ADDR);
    le::put_u32(&mut info, 48, e820.len() as u32);
    mem.write(START_INFO_ADDR, &info)?;

    boot_state::write_gdt(mem, CpuMode::Protected32)?;
    let mut setup = BootSetup::flat(CpuMode::Protected32, entry as u64);
    setup.rbx = START_INFO_ADDR;
    Ok(setup)
}

#[cfg(test)]
#[path = "pvh_tests.rs"]
mod tests;
