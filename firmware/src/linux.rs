//! Direct Linux kernel boot: the x86 boot protocol (Documentation/arch/x86/boot.rst).
//!
//! [`SetupHeader::parse`] validates a bzImage; [`load_linux`] copies its protected-mode part to
//! 1 MiB, places the initrd and the command line, builds the zero page (`struct boot_params`,
//! Documentation/arch/x86/zero-page.rst) and returns the register state for the kernel's 64-bit
//! entry point (or the 32-bit one as a fallback) as a [`BootSetup`].
//!
//! Why not rust-vmm's `linux-loader`: it is written against `vm-memory`'s `GuestMemory`
//! (mmap-backed `GuestMemoryMmap` regions and `GuestAddress`), a second memory abstraction next
//! to the machine's shared [`GuestMemory`] (ferrite-memory); and its bzImage support
//! only copies the kernel and returns the setup header, leaving initrd placement, the zero page
//! contents (e820, command line, video), page tables and the entry state to the caller — which is
//! most of this module. The protocol fields it would save are a few dozen named offsets below.
//!
//! Memory used (see [`crate::boot_state`] for the low-memory map): kernel at 1 MiB, zero page at
//! 0x7000, command line at 0x20000, GDT at 0x500, identity page tables at 0x9000–0xEFFF, initrd
//! as high as allowed below `min(initrd_addr_max, end of low RAM)`.

use crate::boot_state::{
    self, BootSetup, CpuMode, BOOT_STACK_TOP, CMDLINE_ADDR, ZERO_PAGE_ADDR,
};
use crate::e820::{MemoryLayout, EBDA_START, E820_MAX_ZEROPAGE_ENTRIES, HIGH_MEMORY_START};
use crate::le;
use ferrite_memory::{GuestMemory, MemoryError};
use thiserror::Error;

/// Setup header offsets, identical in the image file and in the zero page (boot.rst,
/// "The Real-Mode Kernel Header").
pub mod hdr {
    /// Start of the setup header.
    pub const START: usize = 0x1f1;
    /// u8: size of the setup code in 512-byte sectors (0 means 4).
    pub const SETUP_SECTS: usize = 0x1f1;
    /// u32: size of the protected-mode code in 16-byte paragraphs.
    pub const SYSSIZE: usize = 0x1f4;
    /// u16: video mode control.
    pub const VID_MODE: usize = 0x1fa;
    /// u16: 0xAA55.
    pub const BOOT_FLAG: usize = 0x1fe;
    /// u8: offset of the jump target from 0x202; the header ends at 0x202 + this byte.
    pub const JUMP_OFFSET: usize = 0x201;
    /// u32: "HdrS".
    pub const HEADER: usize = 0x202;
    /// u16: boot protocol version (major << 8 | minor).
    pub const VERSION: usize = 0x206;
    /// u8: boot loader identifier.
    pub const TYPE_OF_LOADER: usize = 0x210;
    /// u8: boot protocol option flags.
    pub const LOADFLAGS: usize = 0x211;
    /// u32: 32-bit entry point address.
    pub const CODE32_START: usize = 0x214;
    /// u32: initrd load address.
    pub const RAMDISK_IMAGE: usize = 0x218;
    /// u32: initrd size.
    pub const RAMDISK_SIZE: usize = 0x21c;
    /// u16: end of the setup heap (real-mode setup only).
    pub const HEAP_END_PTR: usize = 0x224;
    /// u32: command line address.
    pub const CMD_LINE_PTR: usize = 0x228;
    /// u32: highest address the initrd may occupy.
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    /// u32: physical alignment required for a relocatable kernel.
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    /// u8: whether the kernel is relocatable.
    pub const RELOCATABLE_KERNEL: usize = 0x234;
    /// u16: extended load flags (protocol 2.12+).
    pub const XLOADFLAGS: usize = 0x236;
    /// u32: maximum command line size without the terminating NUL (2.06+).
    pub const CMDLINE_SIZE: usize = 0x238;
    /// u32: hardware subarchitecture (0 = PC).
    pub const HARDWARE_SUBARCH: usize = 0x23c;
    /// u64: linked list of setup_data (2.09+).
    pub const SETUP_DATA: usize = 0x250;
    /// u64: preferred load address (2.10+).
    pub const PREF_ADDRESS: usize = 0x258;
    /// u32: linear memory the kernel needs from its runtime start (2.10+).
    pub const INIT_SIZE: usize = 0x260;
    /// End of the setup header area in `struct boot_params`.
    pub const MAX_END: usize = 0x290;
}

/// Zero page offsets outside the setup header (zero-page.rst).
pub mod zp {
    /// `struct screen_info` (0x40 bytes).
    pub const SCREEN_INFO: usize = 0x000;
    /// u64: physical address of the ACPI RSDP.
    pub const ACPI_RSDP_ADDR: usize = 0x070;
    /// u32: high 32 bits of the initrd address.
    pub const EXT_RAMDISK_IMAGE: usize = 0x0c0;
    /// u32: high 32 bits of the initrd size.
    pub const EXT_RAMDISK_SIZE: usize = 0x0c4;
    /// u32: high 32 bits of the command line address.
    pub const EXT_CMD_LINE_PTR: usize = 0x0c8;
    /// u32: KiB of memory above 1 MiB (fallback when e820 is absent).
    pub const ALT_MEM_K: usize = 0x1e0;
    /// u8: number of e820 entries.
    pub const E820_ENTRIES: usize = 0x1e8;
    /// The e820 table, 20 bytes per entry, up to 128 entries.
    pub const E820_TABLE: usize = 0x2d0;
    /// Size of the zero page.
    pub const SIZE: usize = 4096;
}

/// loadflags bit 0: the protected-mode code is loaded at 0x100000 (bzImage).
pub const LOADED_HIGH: u8 = 1 << 0;
/// xloadflags bit 0: the kernel has the legacy 64-bit entry point at load address + 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// xloadflags bit 1: kernel, zero page, command line and initrd may sit above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// Minimum boot protocol version this loader accepts (cmdline_size exists from 2.06).
pub const MIN_PROTOCOL: u16 = 0x0206;
/// Where the protected-mode kernel is loaded.
pub const KERNEL_LOAD_ADDR: u64 = HIGH_MEMORY_START;
/// Offset of the 64-bit entry point from the load address.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// type_of_loader for a boot loader without an assigned ID.
pub const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// `screen_info.orig_video_isVGA` for a VGA colour text console (`VIDEO_TYPE_VGAC`).
const VIDEO_TYPE_VGAC: u8 = 0x22;
/// Default initrd ceiling for kernels that do not state one (boot.rst).
const DEFAULT_INITRD_ADDR_MAX: u32 = 0x37ff_ffff;

/// Errors from parsing or loading a Linux kernel.
#[derive(Debug, Error)]
pub enum LinuxError {
    /// The file cannot even hold the setup header.
    #[error("kernel image is {len} bytes, too small to hold a Linux setup header")]
    TooSmall {
        /// File size.
        len: usize,
    },
    /// No "HdrS" magic: not a Linux kernel, or older than protocol 2.00.
    #[error("not a Linux bzImage: no \"HdrS\" boot protocol magic at offset 0x202")]
    MissingMagic,
    /// The boot protocol predates 2.06.
    #[error("Linux boot protocol {}.{:02} is too old: 2.06 or newer is required", .version >> 8, .version & 0xff)]
    ProtocolTooOld {
        /// Version from the header.
        version: u16,
    },
    /// LOADED_HIGH is clear: a zImage.
    #[error("not a bzImage: LOADED_HIGH is clear (zImage kernels are not supported)")]
    NotBzImage,
    /// The file ends before the setup code or the kernel it announces.
    #[error("kernel image is truncated: its header announces {needed} bytes, the file has {len}")]
    Truncated {
        /// Bytes the header says the file holds.
        needed: u64,
        /// Actual file size.
        len: usize,
    },
    /// kernel_alignment is not a power of two.
    #[error("invalid kernel_alignment {align:#x} in the setup header (not a power of two)")]
    BadAlignment {
        /// The value found.
        align: u32,
    },
    /// The 64-bit entry was requested but the kernel has none.
    #[error("the kernel has no 64-bit entry point (XLF_KERNEL_64 clear or protocol < 2.12)")]
    No64BitEntry,
    /// The command line is longer than the kernel accepts.
    #[error("kernel command line is {len} bytes, this kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Length given.
        len: usize,
        /// cmdline_size (or the room below the EBDA).
        max: u64,
    },
    /// The command line contains a NUL byte, which would end it early.
    #[error("kernel command line contains a NUL byte at offset {offset}")]
    CmdlineNul {
        /// Position of the NUL.
        offset: usize,
    },
    /// The kernel (with the memory it needs to decompress) does not fit in low RAM.
    #[error("kernel needs RAM up to {end:#x} but RAM below 4 GiB ends at {ram_end:#x}: give the guest more memory")]
    KernelTooLarge {
        /// End of the memory the kernel needs.
        end: u64,
        /// End of low RAM.
        ram_end: u64,
    },
    /// The initrd does not fit between the kernel and its ceiling.
    #[error("initrd of {size} bytes does not fit: only {available} bytes are free between the kernel and {limit:#x}")]
    InitrdTooLarge {
        /// Initrd size.
        size: u64,
        /// Room available.
        available: u64,
        /// min(initrd_addr_max + 1, end of low RAM).
        limit: u64,
    },
    /// Guest memory rejected the kernel.
    #[error("cannot write the kernel into guest memory")]
    WriteKernel(#[source] MemoryError),
    /// Guest memory rejected the initrd.
    #[error("cannot write the initrd into guest memory")]
    WriteInitrd(#[source] MemoryError),
    /// Guest memory rejected the command line.
    #[error("cannot write the kernel command line into guest memory")]
    WriteCmdline(#[source] MemoryError),
    /// Guest memory rejected the zero page.
    #[error("cannot write the zero page (boot_params) into guest memory")]
    WriteZeroPage(#[source] MemoryError),
    /// Guest memory rejected the GDT.
    #[error("cannot write the boot GDT into guest memory")]
    WriteGdt(#[source] MemoryError),
    /// Guest memory rejected the page tables.
    #[error("cannot write the identity page tables into guest memory")]
    WritePageTables(#[source] MemoryError),
}

/// The validated setup header of a bzImage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupHeader {
    /// Boot protocol version, e.g. 0x020f for 2.15.
    pub version: u16,
    /// Setup sectors (0 already replaced by 4).
    pub setup_sects: u8,
    /// Protected-mode code size in 16-byte units.
    pub syssize: u32,
    /// loadflags.
    pub loadflags: u8,
    /// xloadflags (0 before protocol 2.12).
    pub xloadflags: u16,
    /// Preferred load address (0x100000 before protocol 2.10).
    pub pref_address: u64,
    /// Memory needed from the runtime start (0 before protocol 2.10: unknown).
    pub init_size: u32,
    /// Alignment of a relocatable kernel's runtime address.
    pub kernel_alignment: u32,
    /// Highest address the initrd may use.
    pub initrd_addr_max: u32,
    /// Maximum command line length without the NUL.
    pub cmdline_size: u32,
    /// relocatable_kernel != 0.
    pub relocatable: bool,
    /// The raw header bytes from 0x1F1 to its end (0x202 + byte at 0x201), copied into the zero
    /// page.
    pub raw: Vec<u8>,
}

impl SetupHeader {
    /// Parse and validate the setup header of `image` (a bzImage file).
    pub fn parse(image: &[u8]) -> Result<Self, LinuxError> {
        let len = image.len();
        let too_small = LinuxError::TooSmall { len };
        let magic = image.get(hdr::HEADER..hdr::HEADER + 4).ok_or(too_small)?;
        if magic != b"HdrS" {
            return Err(LinuxError::MissingMagic);
        }
        let version = le::u16_at(image, hdr::VERSION).ok_or(LinuxError::TooSmall { len })?;
        if version < MIN_PROTOCOL {
            return Err(LinuxError::ProtocolTooOld { version });
        }
        let end = (0x202 + le::u8_at(image, hdr::JUMP_OFFSET).unwrap_or(0) as usize).min(hdr::MAX_END);
        // Protocol 2.06 fields reach 0x23c.
        let end = end.max(hdr::HARDWARE_SUBARCH);
        if end > len {
            return Err(LinuxError::Truncated { needed: end as u64, len });
        }
        let raw = image[hdr::START..end].to_vec();
        // Fields past the header's end read as zero.
        let field32 = |off: usize| if off + 4 <= end { le::u32_at(image, off).unwrap_or(0) } else { 0 };
        let field64 = |off: usize| if off + 8 <= end { le::u64_at(image, off).unwrap_or(0) } else { 0 };

        let loadflags = image[hdr::LOADFLAGS];
        if loadflags & LOADED_HIGH == 0 {
            return Err(LinuxError::NotBzImage);
        }
        let setup_sects = match image[hdr::SETUP_SECTS] {
            0 => 4,
            n => n,
        };
        let syssize = field32(hdr::SYSSIZE);
        let setup_bytes = (setup_sects as u64 + 1) * 512;
        // As QEMU's loader: `syssize` is not checked (the protected-mode part is whatever follows
        // the setup sectors, and files shorter than syssize paragraphs boot), but the setup
        // sectors must be there.
        if setup_bytes > len as u64 {
            return Err(LinuxError::Truncated { needed: setup_bytes, len });
        }
        let kernel_alignment = field32(hdr::KERNEL_ALIGNMENT);
        let relocatable = image[hdr::RELOCATABLE_KERNEL] != 0;
        if relocatable && !kernel_alignment.is_power_of_two() {
            return Err(LinuxError::BadAlignment { align: kernel_alignment });
        }
        let xloadflags = if version >= 0x020c { le::u16_at(image, hdr::XLOADFLAGS).unwrap_or(0) } else { 0 };
        let (pref_address, init_size) = if version >= 0x020a {
            (field64(hdr::PREF_ADDRESS), field32(hdr::INIT_SIZE))
        } else {
            (KERNEL_LOAD_ADDR, 0)
        };
        let initrd_addr_max = match field32(hdr::INITRD_ADDR_MAX) {
            0 => DEFAULT_INITRD_ADDR_MAX,
            n => n,
        };
        Ok(SetupHeader {
            version,
            setup_sects,
            syssize,
            loadflags,
            xloadflags,
            pref_address,
            init_size,
            kernel_alignment,
            initrd_addr_max,
            cmdline_size: field32(hdr::CMDLINE_SIZE),
            relocatable,
            raw,
        })
    }

    /// File offset of the protected-mode kernel.
    pub fn kernel_offset(&self) -> usize {
        (self.setup_sects as usize + 1) * 512
    }

    /// Whether the kernel has the 64-bit entry point.
    pub fn has_64bit_entry(&self) -> bool {
        self.xloadflags & XLF_KERNEL_64 != 0
    }

    /// Where the kernel decompresses itself when loaded at `load_addr`: a relocatable kernel
    /// rounds its load address up to `kernel_alignment` but never goes below `pref_address`
    /// (LOAD_PHYSICAL_ADDR); a fixed one always runs at `pref_address`.
    pub fn runtime_start(&self, load_addr: u64) -> u64 {
        if self.relocatable {
            let mask = self.kernel_alignment.max(1) as u64 - 1;
            let aligned = load_addr.saturating_add(mask) & !mask;
            aligned.max(self.pref_address)
        } else {
            self.pref_address
        }
    }
}

/// Which kernel entry point to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EntryMode {
    /// The 64-bit entry when the kernel has one, else the 32-bit entry.
    #[default]
    Auto,
    /// Always the 32-bit entry (paging off).
    Protected32,
    /// The 64-bit entry; an error if the kernel has none.
    Long64,
}

/// What `screen_info` tells the kernel about the display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoMode {
    /// No video adapter described (all zero): the kernel registers no VGA console, so
    /// `console=ttyS0` is the only output.
    #[default]
    Serial,
    /// An 80×25 VGA colour text console at 0xB8000.
    VgaText,
}

/// What to boot and how.
#[derive(Debug, Clone, Default)]
pub struct LinuxBootConfig<'a> {
    /// Kernel command line (ASCII, no NUL).
    pub cmdline: &'a str,
    /// Initial ramdisk contents, if any.
    pub initrd: Option<&'a [u8]>,
    /// Entry point choice.
    pub entry: EntryMode,
    /// Console description in the zero page.
    pub video: VideoMode,
    /// RSDP address to hand the kernel in `boot_params.acpi_rsdp_addr` (it scans 0xE0000–0xFFFFF
    /// anyway).
    pub acpi_rsdp_addr: Option<u64>,
}

/// Where everything went, and the register state to start with.
#[derive(Debug, Clone)]
pub struct LinuxBoot {
    /// Initial CPU state for the boot processor.
    pub setup: BootSetup,
    /// The parsed header.
    pub header: SetupHeader,
    /// Load address of the protected-mode kernel.
    pub kernel_addr: u64,
    /// Bytes loaded there.
    pub kernel_size: u64,
    /// End of the memory the kernel may use before reading the memory map.
    pub kernel_end: u64,
    /// Initrd address and size, if one was loaded.
    pub initrd: Option<(u64, u64)>,
    /// Address of the zero page.
    pub zero_page_addr: u64,
    /// Address of the NUL-terminated command line.
    pub cmdline_addr: u64,
}

fn align_up(v: u64, align: u64) -> Option<u64> {
    v.checked_add(align - 1).map(|x| x & !(align - 1))
}

/// Load the bzImage `image` into `mem` and prepare the zero page; see the module docs.
pub fn load_linux(
    mem: &GuestMemory,
    image: &[u8],
    config: &LinuxBootConfig<'_>,
) -> Result<LinuxBoot, LinuxError> {
    let header = SetupHeader::parse(image)?;
    let layout = MemoryLayout::of(mem);
    let ram_end = layout.below_4g;

    let mode = match config.entry {
        EntryMode::Protected32 => CpuMode::Protected32,
        EntryMode::Auto if header.has_64bit_entry() => CpuMode::Long64,
        EntryMode::Auto => CpuMode::Protected32,
        EntryMode::Long64 if header.has_64bit_entry() => CpuMode::Long64,
        EntryMode::Long64 => return Err(LinuxError::No64BitEntry),
    };

    // Command line: at most cmdline_size bytes, and it must stay below the EBDA.
    let cmdline = config.cmdline.as_bytes();
    if let Some(offset) = cmdline.iter().position(|&b| b == 0) {
        return Err(LinuxError::CmdlineNul { offset });
    }
    let max_cmdline = (header.cmdline_size as u64).min(EBDA_START - CMDLINE_ADDR - 1);
    if cmdline.len() as u64 > max_cmdline {
        return Err(LinuxError::CmdlineTooLong { len: cmdline.len(), max: max_cmdline });
    }

    // The kernel: copied to 1 MiB, then it needs init_size bytes from its runtime start.
    let kernel = &image[header.kernel_offset()..];
    let kernel_addr = KERNEL_LOAD_ADDR;
    let loaded_end = kernel_addr + kernel.len() as u64;
    let runtime_end = header
        .runtime_start(kernel_addr)
        .checked_add(header.init_size as u64)
        .unwrap_or(u64::MAX);
    let kernel_end = loaded_end.max(runtime_end);
    if kernel_end > ram_end {
        return Err(LinuxError::KernelTooLarge { end: kernel_end, ram_end });
    }

    // The initrd: as high as possible, page-aligned, above everything the kernel needs.
    let initrd = match config.initrd {
        Some(data) if !data.is_empty() => {
            let size = data.len() as u64;
            let limit = (header.initrd_addr_max as u64 + 1).min(ram_end);
            let floor = align_up(kernel_end, 4096).unwrap_or(u64::MAX);
            let available = limit.saturating_sub(floor);
            let addr = limit.checked_sub(size).map(|a| a & !0xfff).filter(|&a| a >= floor);
            let Some(addr) = addr else {
                return Err(LinuxError::InitrdTooLarge { size, available, limit });
            };
            Some((addr, size, data))
        }
        _ => None,
    };

    mem.write(kernel_addr, kernel).map_err(LinuxError::WriteKernel)?;
    if let Some((addr, _, data)) = initrd {
        mem.write(addr, data).map_err(LinuxError::WriteInitrd)?;
    }
    let mut cmd = Vec::with_capacity(cmdline.len() + 1);
    cmd.extend_from_slice(cmdline);
    cmd.push(0);
    mem.write(CMDLINE_ADDR, &cmd).map_err(LinuxError::WriteCmdline)?;

    let zero_page = build_zero_page(&header, &layout, config, initrd.map(|(a, s, _)| (a, s)));
    mem.write(ZERO_PAGE_ADDR, &zero_page).map_err(LinuxError::WriteZeroPage)?;

    boot_state::write_gdt(mem, mode).map_err(LinuxError::WriteGdt)?;
    let rip = match mode {
        CpuMode::Long64 => {
            boot_state::write_identity_page_tables(mem).map_err(LinuxError::WritePageTables)?;
            kernel_addr + ENTRY_64_OFFSET
        }
        CpuMode::Protected32 => kernel_addr,
    };
    let mut setup = BootSetup::flat(mode, rip);
    setup.rsi = ZERO_PAGE_ADDR;
    setup.rsp = BOOT_STACK_TOP;

    Ok(LinuxBoot {
        setup,
        kernel_addr,
        kernel_size: kernel.len() as u64,
        kernel_end,
        initrd: initrd.map(|(a, s, _)| (a, s)),
        zero_page_addr: ZERO_PAGE_ADDR,
        cmdline_addr: CMDLINE_ADDR,
        header,
    })
}

/// The zero page: the image's setup header plus what the boot loader fills in.
fn build_zero_page(
    header: &SetupHeader,
    layout: &MemoryLayout,
    config: &LinuxBootConfig<'_>,
    initrd: Option<(u64, u64)>,
) -> Vec<u8> {
    let mut zp = vec![0u8; zp::SIZE];
    le::put(&mut zp, hdr::START, &header.raw);

    le::put_u8(&mut zp, hdr::TYPE_OF_LOADER, LOADER_TYPE_UNDEFINED);
    le::put_u16(&mut zp, hdr::VID_MODE, 0xffff); // "normal" (80x25); the real-mode code is skipped
    le::put_u32(&mut zp, hdr::CODE32_START, KERNEL_LOAD_ADDR as u32);
    le::put_u16(&mut zp, hdr::HEAP_END_PTR, 0);
    le::put_u32(&mut zp, hdr::HARDWARE_SUBARCH, 0);
    if header.version >= 0x0209 {
        le::put_u64(&mut zp, hdr::SETUP_DATA, 0);
    }

    le::put_u32(&mut zp, hdr::CMD_LINE_PTR, CMDLINE_ADDR as u32);
    le::put_u32(&mut zp, zp::EXT_CMD_LINE_PTR, (CMDLINE_ADDR >> 32) as u32);

    let (rd_addr, rd_size) = initrd.unwrap_or((0, 0));
    le::put_u32(&mut zp, hdr::RAMDISK_IMAGE, rd_addr as u32);
    le::put_u32(&mut zp, hdr::RAMDISK_SIZE, rd_size as u32);
    le::put_u32(&mut zp, zp::EXT_RAMDISK_IMAGE, (rd_addr >> 32) as u32);
    le::put_u32(&mut zp, zp::EXT_RAMDISK_SIZE, (rd_size >> 32) as u32);

    if let Some(rsdp) = config.acpi_rsdp_addr {
        le::put_u64(&mut zp, zp::ACPI_RSDP_ADDR, rsdp);
    }

    let si = zp::SCREEN_INFO;
    match config.video {
        VideoMode::Serial => {}
        VideoMode::VgaText => {
            le::put_u8(&mut zp, si + 0x06, 3); // orig_video_mode: 80x25 colour text
            le::put_u8(&mut zp, si + 0x07, 80); // orig_video_cols
            le::put_u8(&mut zp, si + 0x0e, 25); // orig_video_lines
            le::put_u8(&mut zp, si + 0x0f, VIDEO_TYPE_VGAC); // orig_video_isVGA
            le::put_u16(&mut zp, si + 0x10, 16); // orig_video_points: font height
        }
    }

    le::put_u32(&mut zp, zp::ALT_MEM_K, layout.mem_upper_kib());
    let e820 = layout.e820();
    let n = e820.len().min(E820_MAX_ZEROPAGE_ENTRIES);
    le::put_u8(&mut zp, zp::E820_ENTRIES, n as u8);
    for (i, e) in e820.iter().take(n).enumerate() {
        le::put(&mut zp, zp::E820_TABLE + i * 20, &e.to_bytes());
    }
    zp
}

#[cfg(test)]
#[path = "linux_tests.rs"]
mod tests;
