//! Multiboot version 1 (the Multiboot Specification 0.6.96): loading a multiboot kernel, the
//! boot information structure, and the entry state.
//!
//! The image is found by its header (magic 0x1BADB002, 4-byte aligned, within the first 8192
//! bytes, `magic + flags + checksum == 0`). If header flag bit 16 is set the "a.out kludge"
//! address fields say what to load where; otherwise the image must be ELF and its `PT_LOAD`
//! program headers are loaded at their physical addresses (`p_paddr`), with the entry point
//! translated from virtual to physical when it lies inside a segment's virtual range.
//! ELF32 (EM_386) is the format the specification describes; ELF64 (EM_X86_64) images are also
//! accepted when every segment and the entry point lie below 4 GiB, as GRUB does (QEMU refuses
//! them with "Cannot load x86-64 image, give a 32bit one").
//!
//! Header flag bits 0 (page-align modules: always done) and 1 (memory information: always given)
//! are honoured; bit 2 (video mode) is accepted without providing video information, as QEMU
//! does; any other bit in 0–15 is a requirement this loader does not know, so the image is
//! refused, as the specification requires.
//!
//! Memory: GDT at 0x500, stack top at 0x7C00, boot information (structure, memory map, module
//! list and strings) at 0x8000–0xFFFF, modules page-aligned after the kernel. The kernel must load
//! into RAM at 0x10000–0x9FC00 or from 1 MiB up.

use crate::boot_state::{self, BootSetup, CpuMode};
use crate::e820::{MemoryLayout, EBDA_START, HIGH_MEMORY_START};
use crate::le;
use ferrite_memory::{GuestMemory, MemoryError};
use thiserror::Error;

/// Header magic.
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// EAX value at entry.
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// The header must lie within this many bytes of the start.
pub const SEARCH_LIMIT: usize = 8192;
/// Header flag: align modules on 4 KiB.
pub const HF_PAGE_ALIGN: u32 = 1 << 0;
/// Header flag: provide mem_* and mmap_* fields.
pub const HF_MEMORY_INFO: u32 = 1 << 1;
/// Header flag: provide video mode information.
pub const HF_VIDEO_MODE: u32 = 1 << 2;
/// Header flag: the a.out kludge address fields are valid.
pub const HF_AOUT_KLUDGE: u32 = 1 << 16;

/// Info flag: mem_lower/mem_upper valid.
pub const INFO_MEMORY: u32 = 1 << 0;
/// Info flag: cmdline valid.
pub const INFO_CMDLINE: u32 = 1 << 2;
/// Info flag: mods_count/mods_addr valid.
pub const INFO_MODS: u32 = 1 << 3;
/// Info flag: mmap_length/mmap_addr valid.
pub const INFO_MEM_MAP: u32 = 1 << 6;
/// Info flag: boot_loader_name valid.
pub const INFO_BOOT_LOADER_NAME: u32 = 1 << 9;

/// Boot information structure offsets (specification §3.3).
mod info {
    pub const FLAGS: usize = 0;
    pub const MEM_LOWER: usize = 4;
    pub const MEM_UPPER: usize = 8;
    pub const CMDLINE: usize = 16;
    pub const MODS_COUNT: usize = 20;
    pub const MODS_ADDR: usize = 24;
    pub const MMAP_LENGTH: usize = 44;
    pub const MMAP_ADDR: usize = 48;
    pub const BOOT_LOADER_NAME: usize = 64;
    /// Size reserved for the structure (it is 116 bytes with the framebuffer fields).
    pub const SIZE: usize = 128;
}

/// Where the boot information area starts.
pub const INFO_ADDR: u64 = 0x8000;
/// Where the boot information area ends.
pub const INFO_END: u64 = 0x1_0000;
/// Initial ESP (the specification leaves it undefined; this gives the kernel some room).
pub const STACK_TOP: u64 = 0x7c00;
/// The boot loader name given to the kernel.
pub const BOOT_LOADER_NAME: &str = "ferrite";

const PT_LOAD: u32 = 1;
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;
const FOUR_GIB: u64 = 1 << 32;

/// Errors from loading a multiboot image.
#[derive(Debug, Error)]
pub enum MultibootError {
    /// No valid header in the first 8 KiB.
    #[error("no multiboot header (magic 0x1BADB002 with a valid checksum) in the first 8192 bytes")]
    NoHeader,
    /// A header magic was found but its checksum is wrong.
    #[error("multiboot header at offset {offset:#x} has a bad checksum")]
    BadChecksum {
        /// File offset of the header.
        offset: usize,
    },
    /// The header requires features this loader does not provide.
    #[error("multiboot header flags {flags:#x} request unsupported features (bits 3-15)")]
    UnsupportedFlags {
        /// The header flags.
        flags: u32,
    },
    /// The a.out kludge fields are inconsistent.
    #[error("multiboot a.out kludge address fields are inconsistent: {0}")]
    BadAddresses(&'static str),
    /// The file is shorter than what the header or ELF tables describe.
    #[error("multiboot image is truncated: {needed} bytes needed, the file has {len}")]
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// File size.
        len: usize,
    },
    /// Flag bit 16 is clear and the file is not ELF.
    #[error("multiboot image is neither ELF nor has a.out kludge address fields (flag bit 16)")]
    NotElf,
    /// The ELF headers are malformed or of an unsupported kind.
    #[error("unsupported or malformed ELF image: {0}")]
    BadElf(&'static str),
    /// No loadable segment.
    #[error("the image has no loadable segment")]
    NoLoadableSegments,
    /// A segment falls outside usable RAM.
    #[error("kernel segment {start:#x}..{end:#x} is not in usable RAM (0x10000-0x9fc00 or 1 MiB up to {ram_end:#x})")]
    SegmentOutsideRam {
        /// Segment start.
        start: u64,
        /// Segment end.
        end: u64,
        /// End of low RAM.
        ram_end: u64,
    },
    /// The entry point is not a 32-bit address.
    #[error("entry point {entry:#x} is above 4 GiB")]
    EntryAbove4G {
        /// The entry point.
        entry: u64,
    },
    /// The modules do not fit in RAM after the kernel.
    #[error("modules need RAM up to {end:#x} but RAM below 4 GiB ends at {ram_end:#x}")]
    ModulesTooLarge {
        /// End of the last module.
        end: u64,
        /// End of low RAM.
        ram_end: u64,
    },
    /// Command lines, module list and memory map overflow the information area.
    #[error("boot information ({size} bytes) does not fit in the {max}-byte information area")]
    InfoTooLarge {
        /// Bytes needed.
        size: usize,
        /// Bytes available.
        max: usize,
    },
    /// A command line contains a NUL byte.
    #[error("multiboot command line contains a NUL byte")]
    CmdlineNul,
    /// Guest memory rejected a kernel segment.
    #[error("cannot write the kernel into guest memory")]
    WriteKernel(#[source] MemoryError),
    /// Guest memory rejected a module.
    #[error("cannot write a module into guest memory")]
    WriteModule(#[source] MemoryError),
    /// Guest memory rejected the boot information.
    #[error("cannot write the multiboot information into guest memory")]
    WriteInfo(#[source] MemoryError),
    /// Guest memory rejected the GDT.
    #[error("cannot write the boot GDT into guest memory")]
    WriteGdt(#[source] MemoryError),
}

/// A boot module (for instance an initrd) and its command line.
#[derive(Debug, Clone, Copy)]
pub struct MultibootModule<'a> {
    /// Contents.
    pub data: &'a [u8],
    /// Its string (by convention its name and arguments).
    pub cmdline: &'a str,
}

/// What to boot.
#[derive(Debug, Clone, Copy, Default)]
pub struct MultibootConfig<'a> {
    /// Kernel command line (by convention the kernel's name first).
    pub cmdline: &'a str,
    /// Modules, loaded in order.
    pub modules: &'a [MultibootModule<'a>],
}

/// Where things went, and the register state to start with.
#[derive(Debug, Clone)]
pub struct MultibootBoot {
    /// Initial CPU state (EAX = 0x2BADB002, EBX = info address, flat 32-bit, paging off).
    pub setup: BootSetup,
    /// Entry point.
    pub entry: u32,
    /// Lowest loaded address.
    pub kernel_start: u64,
    /// End of the loaded image including bss.
    pub kernel_end: u64,
    /// Address of the boot information structure.
    pub info_addr: u64,
    /// `(start, end)` of each module.
    pub modules: Vec<(u64, u64)>,
}

/// The parsed multiboot header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultibootHeader {
    /// File offset of the header.
    pub offset: usize,
    /// Header flags.
    pub flags: u32,
}

/// One piece to copy: `data` at `addr`, then zeros up to `addr + mem_size`.
struct Segment<'a> {
    addr: u64,
    data: &'a [u8],
    mem_size: u64,
}

/// Find the multiboot header in `image`.
pub fn find_header(image: &[u8]) -> Result<MultibootHeader, MultibootError> {
    let mut bad_checksum = None;
    let limit = image.len().min(SEARCH_LIMIT);
    for offset in (0..limit).step_by(4) {
        if le::u32_at(image, offset) != Some(HEADER_MAGIC) {
            continue;
        }
        let (Some(flags), Some(sum)) = (le::u32_at(image, offset + 4), le::u32_at(image, offset + 8)) else {
            continue;
        };
        if HEADER_MAGIC.wrapping_add(flags).wrapping_add(sum) == 0 {
            return Ok(MultibootHeader { offset, flags });
        }
        bad_checksum.get_or_insert(offset);
    }
    Err(match bad_checksum {
        Some(offset) => MultibootError::BadChecksum { offset },
        None => MultibootError::NoHeader,
    })
}

fn truncated(needed: u64, len: usize) -> MultibootError {
    MultibootError::Truncated { needed, len }
}

/// Segments described by the a.out kludge fields of the header at `h`.
fn kludge_segments<'a>(image: &'a [u8], h: &MultibootHeader) -> Result<(Vec<Segment<'a>>, u64), MultibootError> {
    let len = image.len();
    let field = |i: usize| le::u32_at(image, h.offset + 12 + i * 4).ok_or(truncated((h.offset + 32) as u64, len));
    let (header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr) =
        (field(0)? as u64, field(1)? as u64, field(2)? as u64, field(3)? as u64, field(4)? as u64);
    if header_addr < load_addr {
        return Err(MultibootError::BadAddresses("header_addr is below load_addr"));
    }
    let file_off = (h.offset as u64)
        .checked_sub(header_addr - load_addr)
        .ok_or(MultibootError::BadAddresses("load_addr lies before the start of the file"))?;
    let size = if load_end_addr == 0 {
        len as u64 - file_off
    } else {
        load_end_addr
            .checked_sub(load_addr)
            .ok_or(MultibootError::BadAddresses("load_end_addr is below load_addr"))?
    };
    if file_off + size > len as u64 {
        return Err(truncated(file_off + size, len));
    }
    let load_end = load_addr + size;
    let bss_end = if bss_end_addr == 0 { load_end } else { bss_end_addr };
    if bss_end < load_end {
        return Err(MultibootError::BadAddresses("bss_end_addr is below load_end_addr"));
    }
    let data = &image[file_off as usize..(file_off + size) as usize];
    Ok((vec![Segment { addr: load_addr, data, mem_size: bss_end - load_addr }], entry_addr))
}

/// Segments of an ELF32/ELF64 image and its physical entry point.
fn elf_segments(image: &[u8]) -> Result<(Vec<Segment<'_>>, u64), MultibootError> {
    let len = image.len();
    if image.get(0..4) != Some(b"\x7fELF") {
        return Err(MultibootError::NotElf);
    }
    let class64 = match image.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(MultibootError::BadElf("unknown ELF class")),
    };
    if image.get(5) != Some(&1) {
        return Err(MultibootError::BadElf("not little-endian"));
    }
    let short = || MultibootError::BadElf("file too short for the ELF header");
    let machine = le::u16_at(image, 18).ok_or_else(short)?;
    let (entry, phoff, phentsize, phnum, min_phent) = if class64 {
        if machine != EM_X86_64 {
            return Err(MultibootError::BadElf("ELF64 image is not for x86-64"));
        }
        (
            le::u64_at(image, 24).ok_or_else(short)?,
            le::u64_at(image, 32).ok_or_else(short)?,
            le::u16_at(image, 54).ok_or_else(short)? as u64,
            le::u16_at(image, 56).ok_or_else(short)? as u64,
            56,
        )
    } else {
        if machine != EM_386 {
            return Err(MultibootError::BadElf("ELF32 image is not for i386"));
        }
        (
            le::u32_at(image, 24).ok_or_else(short)? as u64,
            le::u32_at(image, 28).ok_or_else(short)? as u64,
            le::u16_at(image, 42).ok_or_else(short)? as u64,
            le::u16_at(image, 44).ok_or_else(short)? as u64,
            32,
        )
    };
    if phentsize < min_phent {
        return Err(MultibootError::BadElf("program header entries are too small"));
    }
    let table_end = phoff.checked_add(phentsize * phnum).ok_or(truncated(u64::MAX, len))?;
    if table_end > len as u64 {
        return Err(truncated(table_end, len));
    }

    let mut segments = Vec::new();
    let mut phys_entry = None;
    for i in 0..phnum {
        let ph = (phoff + i * phentsize) as usize;
        let f32 = |o: usize| le::u32_at(image, ph + o).unwrap_or(0) as u64;
        let f64 = |o: usize| le::u64_at(image, ph + o).unwrap_or(0);
        let (p_type, offset, vaddr, paddr, filesz, memsz) = if class64 {
            (f32(0), f64(8), f64(16), f64(24), f64(32), f64(40))
        } else {
            (f32(0), f32(4), f32(8), f32(12), f32(16), f32(20))
        };
        if p_type != PT_LOAD as u64 || memsz == 0 {
            continue;
        }
        if filesz > memsz {
            return Err(MultibootError::BadElf("segment file size exceeds its memory size"));
        }
        let file_end = offset.checked_add(filesz).ok_or(truncated(u64::MAX, len))?;
        if file_end > len as u64 {
            return Err(truncated(file_end, len));
        }
        if entry >= vaddr && entry - vaddr < memsz {
            phys_entry.get_or_insert(paddr.wrapping_add(entry - vaddr));
        }
        segments.push(Segment {
            addr: paddr,
            data: &image[offset as usize..file_end as usize],
            mem_size: memsz,
        });
    }
    if segments.is_empty() {
        return Err(MultibootError::NoLoadableSegments);
    }
    Ok((segments, phys_entry.unwrap_or(entry)))
}

/// Whether `[start, end)` is usable RAM for the kernel (not the low firmware area or ROMs).
fn in_ram(start: u64, end: u64, ram_end: u64) -> bool {
    (start >= INFO_END && end <= EBDA_START.min(ram_end)) || (start >= HIGH_MEMORY_START && end <= ram_end)
}

fn align_page(v: u64) -> u64 {
    (v + 0xfff) & !0xfff
}

/// Load the multiboot kernel `image` and its modules into `mem`; see the module docs.
pub fn load_multiboot(
    mem: &GuestMemory,
    image: &[u8],
    config: &MultibootConfig<'_>,
) -> Result<MultibootBoot, MultibootError> {
    let h = find_header(image)?;
    if h.flags & 0xfff8 != 0 {
        return Err(MultibootError::UnsupportedFlags { flags: h.flags });
    }
    let (segments, entry) = if h.flags & HF_AOUT_KLUDGE != 0 {
        kludge_segments(image, &h)?
    } else {
        elf_segments(image)?
    };
    let layout = MemoryLayout::of(mem);
    let ram_end = layout.below_4g;
    let mut kernel_start = u64::MAX;
    let mut kernel_end = 0;
    for s in &segments {
        let end = s.addr.checked_add(s.mem_size).filter(|&e| e <= FOUR_GIB).unwrap_or(u64::MAX);
        if !in_ram(s.addr, end, ram_end) {
            return Err(MultibootError::SegmentOutsideRam { start: s.addr, end, ram_end });
        }
        kernel_start = kernel_start.min(s.addr);
        kernel_end = kernel_end.max(end);
    }
    let entry = u32::try_from(entry).map_err(|_| MultibootError::EntryAbove4G { entry })?;

    // Modules, page-aligned after the kernel.
    let mut modules = Vec::with_capacity(config.modules.len());
    let mut next = align_page(kernel_end.max(HIGH_MEMORY_START));
    for m in config.modules {
        let end = next + m.data.len() as u64;
        if end > ram_end {
            return Err(MultibootError::ModulesTooLarge { end, ram_end });
        }
        modules.push((next, end));
        next = align_page(end);
    }

    let info = build_info(&layout, config, &modules)?;

    for s in &segments {
        mem.write(s.addr, s.data).map_err(MultibootError::WriteKernel)?;
        let bss = s.mem_size - s.data.len() as u64;
        mem.zero(s.addr + s.data.len() as u64, bss).map_err(MultibootError::WriteKernel)?;
    }
    for (m, &(start, _)) in config.modules.iter().zip(&modules) {
        mem.write(start, m.data).map_err(MultibootError::WriteModule)?;
    }
    mem.write(INFO_ADDR, &info).map_err(MultibootError::WriteInfo)?;
    boot_state::write_gdt(mem, CpuMode::Protected32).map_err(MultibootError::WriteGdt)?;

    let mut setup = BootSetup::flat(CpuMode::Protected32, entry as u64);
    setup.rax = BOOTLOADER_MAGIC as u64;
    setup.rbx = INFO_ADDR;
    setup.rsp = STACK_TOP;
    Ok(MultibootBoot { setup, entry, kernel_start, kernel_end, info_addr: INFO_ADDR, modules })
}

/// The information area: structure, memory map, module list, then the strings.
fn build_info(
    layout: &MemoryLayout,
    config: &MultibootConfig<'_>,
    modules: &[(u64, u64)],
) -> Result<Vec<u8>, MultibootError> {
    let max = (INFO_END - INFO_ADDR) as usize;
    let mut area = vec![0u8; info::SIZE];
    let addr_of = |area: &Vec<u8>| INFO_ADDR as u32 + area.len() as u32;

    let mmap_addr = addr_of(&area);
    for e in layout.e820() {
        area.extend_from_slice(&20u32.to_le_bytes());
        area.extend_from_slice(&e.to_bytes());
    }
    let mmap_length = addr_of(&area) - mmap_addr;

    let mods_addr = addr_of(&area);
    let mods_table = area.len();
    area.resize(area.len() + 16 * modules.len(), 0);

    let push_str = |area: &mut Vec<u8>, s: &str| -> Result<u32, MultibootError> {
        if s.as_bytes().contains(&0) {
            return Err(MultibootError::CmdlineNul);
        }
        let at = addr_of(area);
        area.extend_from_slice(s.as_bytes());
        area.push(0);
        Ok(at)
    };
    let cmdline = push_str(&mut area, config.cmdline)?;
    let name = push_str(&mut area, BOOT_LOADER_NAME)?;
    for (i, (m, &(start, end))) in config.modules.iter().zip(modules).enumerate() {
        let s = push_str(&mut area, m.cmdline)?;
        let e = mods_table + i * 16;
        le::put_u32(&mut area, e, start as u32);
        le::put_u32(&mut area, e + 4, end as u32);
        le::put_u32(&mut area, e + 8, s);
    }
    if area.len() > max {
        return Err(MultibootError::InfoTooLarge { size: area.len(), max });
    }

    let mut flags = INFO_MEMORY | INFO_CMDLINE | INFO_MEM_MAP | INFO_BOOT_LOADER_NAME;
    if !modules.is_empty() {
        flags |= INFO_MODS;
    }
    le::put_u32(&mut area, info::FLAGS, flags);
    le::put_u32(&mut area, info::MEM_LOWER, layout.mem_lower_kib());
    le::put_u32(&mut area, info::MEM_UPPER, layout.mem_upper_kib());
    le::put_u32(&mut area, info::CMDLINE, cmdline);
    le::put_u32(&mut area, info::MODS_COUNT, modules.len() as u32);
    le::put_u32(&mut area, info::MODS_ADDR, if modules.is_empty() { 0 } else { mods_addr });
    le::put_u32(&mut area, info::MMAP_LENGTH, mmap_length);
    le::put_u32(&mut area, info::MMAP_ADDR, mmap_addr);
    le::put_u32(&mut area, info::BOOT_LOADER_NAME, name);
    Ok(area)
}

#[cfg(test)]
#[path = "multiboot_tests.rs"]
mod tests;
