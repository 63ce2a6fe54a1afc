//! fw_cfg ports, selector keys and DMA control bits (QEMU `docs/specs/fw_cfg.rst`; key
//! numbers as QEMU's `include/standard-headers/linux/qemu_fw_cfg.h` assigns them).

/// Selector register port on x86 ("Register Locations").
pub const FW_CFG_PORT_SEL: u16 = 0x510;
/// Data register port (always selector + 1).
pub const FW_CFG_PORT_DATA: u16 = 0x511;
/// DMA address register port (64-bit, big-endian, as two 32-bit halves).
pub const FW_CFG_PORT_DMA: u16 = 0x514;
/// Ports decoded from [`FW_CFG_PORT_SEL`]: 0x510-0x51B.
pub const FW_CFG_IO_LEN: u16 = 12;
/// Offsets within the port block.
pub const FW_CFG_SEL_OFFSET: u16 = 0;
pub const FW_CFG_DATA_OFFSET: u16 = 1;
pub const FW_CFG_DMA_HIGH_OFFSET: u16 = 4;
pub const FW_CFG_DMA_LOW_OFFSET: u16 = 8;

/// What reading the DMA address register returns: "QEMU CFG" in big-endian.
pub const FW_CFG_DMA_SIGNATURE: u64 = 0x5145_4d55_2043_4647;

/// FW_CFG_ID bit 0: traditional (port) interface.
pub const FW_CFG_VERSION_TRADITIONAL: u32 = 1 << 0;
/// FW_CFG_ID bit 1: DMA interface.
pub const FW_CFG_VERSION_DMA: u32 = 1 << 1;

/// FWCfgDmaAccess.control bit 0: error (set by the device).
pub const FW_CFG_DMA_CTL_ERROR: u32 = 1 << 0;
/// Bit 1: read item data into guest memory.
pub const FW_CFG_DMA_CTL_READ: u32 = 1 << 1;
/// Bit 2: skip `length` bytes of the item.
pub const FW_CFG_DMA_CTL_SKIP: u32 = 1 << 2;
/// Bit 3: select the item in bits 31:16 first.
pub const FW_CFG_DMA_CTL_SELECT: u32 = 1 << 3;
/// Bit 4: write guest memory into the item.
pub const FW_CFG_DMA_CTL_WRITE: u32 = 1 << 4;
/// Size of FWCfgDmaAccess: control (BE32), length (BE32), address (BE64).
pub const FW_CFG_DMA_ACCESS_LEN: usize = 16;

/// Selector bit 14: write channel (ignored since QEMU 2.4; stripped here).
pub const FW_CFG_WRITE_CHANNEL: u16 = 0x4000;
/// Selector bit 15: architecture-specific item.
pub const FW_CFG_ARCH_LOCAL: u16 = 0x8000;

/// "QEMU" signature.
pub const FW_CFG_SIGNATURE: u16 = 0x00;
/// Feature bitmap (LE32).
pub const FW_CFG_ID: u16 = 0x01;
/// VM UUID (16 bytes).
pub const FW_CFG_UUID: u16 = 0x02;
/// RAM size in bytes (LE64).
pub const FW_CFG_RAM_SIZE: u16 = 0x03;
/// No graphics (LE16).
pub const FW_CFG_NOGRAPHIC: u16 = 0x04;
/// Number of boot CPUs (LE16).
pub const FW_CFG_NB_CPUS: u16 = 0x05;
/// Machine ID (LE32).
pub const FW_CFG_MACHINE_ID: u16 = 0x06;
/// Load address of the kernel's protected-mode part (LE32).
pub const FW_CFG_KERNEL_ADDR: u16 = 0x07;
/// Size of the kernel's protected-mode part (LE32).
pub const FW_CFG_KERNEL_SIZE: u16 = 0x08;
/// Legacy command line key (address; see CMDLINE_*).
pub const FW_CFG_KERNEL_CMDLINE: u16 = 0x09;
/// Initrd load address (LE32).
pub const FW_CFG_INITRD_ADDR: u16 = 0x0a;
/// Initrd size (LE32).
pub const FW_CFG_INITRD_SIZE: u16 = 0x0b;
/// Boot device (LE16).
pub const FW_CFG_BOOT_DEVICE: u16 = 0x0c;
/// NUMA information.
pub const FW_CFG_NUMA: u16 = 0x0d;
/// Boot menu enable (LE16).
pub const FW_CFG_BOOT_MENU: u16 = 0x0e;
/// Maximum CPUs (LE16).
pub const FW_CFG_MAX_CPUS: u16 = 0x0f;
/// Kernel entry point (LE32).
pub const FW_CFG_KERNEL_ENTRY: u16 = 0x10;
/// Kernel protected-mode image bytes.
pub const FW_CFG_KERNEL_DATA: u16 = 0x11;
/// Initrd bytes.
pub const FW_CFG_INITRD_DATA: u16 = 0x12;
/// Command line load address (LE32).
pub const FW_CFG_CMDLINE_ADDR: u16 = 0x13;
/// Command line size including NUL (LE32).
pub const FW_CFG_CMDLINE_SIZE: u16 = 0x14;
/// Command line bytes (NUL-terminated).
pub const FW_CFG_CMDLINE_DATA: u16 = 0x15;
/// Real-mode setup load address (LE32).
pub const FW_CFG_SETUP_ADDR: u16 = 0x16;
/// Real-mode setup size (LE32).
pub const FW_CFG_SETUP_SIZE: u16 = 0x17;
/// Real-mode setup bytes (boot sector + setup, with the patched header).
pub const FW_CFG_SETUP_DATA: u16 = 0x18;
/// File directory.
pub const FW_CFG_FILE_DIR: u16 = 0x19;
/// First file key.
pub const FW_CFG_FILE_FIRST: u16 = 0x20;
/// Files fit in keys 0x20-0x3FFF.
pub const FW_CFG_MAX_FILES: usize = 0x4000 - FW_CFG_FILE_FIRST as usize;
/// File name field size, NUL included.
pub const FW_CFG_FILE_NAME_LEN: usize = 56;

/// x86 arch-local: legacy ACPI tables.
pub const FW_CFG_ACPI_TABLES: u16 = FW_CFG_ARCH_LOCAL;
/// x86 arch-local: legacy SMBIOS entries.
pub const FW_CFG_SMBIOS_ENTRIES: u16 = FW_CFG_ARCH_LOCAL + 1;
/// x86 arch-local: IRQ0 override flag.
pub const FW_CFG_IRQ0_OVERRIDE: u16 = FW_CFG_ARCH_LOCAL + 2;
/// x86 arch-local: legacy e820 reservation table (superseded by the `etc/e820` file).
pub const FW_CFG_E820_TABLE: u16 = FW_CFG_ARCH_LOCAL + 3;
/// x86 arch-local: HPET description.
pub const FW_CFG_HPET: u16 = FW_CFG_ARCH_LOCAL + 4;

/// File holding the e820 map: packed `{ u64 address; u64 length; u32 type; }` entries,
/// little-endian (see [`e820_file`]).
pub const FW_CFG_FILE_E820: &str = "etc/e820";

/// One e820 entry as stored in `etc/e820`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub address: u64,
    pub length: u64,
    /// 1 RAM, 2 reserved, 3 ACPI, 4 NVS, 5 unusable.
    pub kind: u32,
}

/// Serialises `entries` into the `etc/e820` file format (20 bytes per entry).
pub fn e820_file(entries: &[E820Entry]) -> Vec<u8> {
    let mut v = Vec::with_capacity(entries.len() * 20);
    for e in entries {
        v.extend_from_slice(&e.address.to_le_bytes());
        v.extend_from_slice(&e.length.to_le_bytes());
        v.extend_from_slice(&e.kind.to_le_bytes());
    }
    v
}
