//! The fw_cfg form of the tables, for a BIOS that loads them itself (SeaBIOS, OVMF): the blobs
//! `etc/acpi/rsdp` and `etc/acpi/tables`, and `etc/table-loader`, a list of 128-byte commands in
//! the format of QEMU's BIOS linker/loader interface (QEMU hw/acpi/bios-linker-loader.c):
//!
//! | command          | value | fields after the u32 command                                   |
//! |------------------|-------|----------------------------------------------------------------|
//! | ALLOCATE         | 1     | file[56], align u32, zone u8 (1 = high memory, 2 = F segment)  |
//! | ADD_POINTER      | 2     | dest_file[56], src_file[56], offset u32, size u8               |
//! | ADD_CHECKSUM     | 3     | file[56], offset u32, start u32, length u32                    |
//!
//! ADD_POINTER adds the address where `src_file` was allocated to the little-endian `size`-byte
//! field at `offset` in `dest_file`; ADD_CHECKSUM makes bytes `start..start+length` sum to zero
//! by adjusting the byte at `offset`. As QEMU does, the checksum bytes in the blobs are zero so
//! that loaders which store (rather than subtract) the computed checksum get the same result.

use super::{AcpiFile, AcpiTables};

/// fw_cfg file name of the RSDP blob.
pub const RSDP_FILE: &str = "etc/acpi/rsdp";
/// fw_cfg file name of the tables blob.
pub const TABLES_FILE: &str = "etc/acpi/tables";
/// fw_cfg file name of the loader script.
pub const LOADER_FILE: &str = "etc/table-loader";

/// Size of one loader command.
pub const COMMAND_SIZE: usize = 128;
/// Size of a file name field (`FW_CFG_MAX_FILE_PATH`).
pub const FILE_NAME_SIZE: usize = 56;
/// ALLOCATE command.
pub const CMD_ALLOCATE: u32 = 1;
/// ADD_POINTER command.
pub const CMD_ADD_POINTER: u32 = 2;
/// ADD_CHECKSUM command.
pub const CMD_ADD_CHECKSUM: u32 = 3;
/// ALLOCATE zone: anywhere in 32-bit memory.
pub const ZONE_HIGH: u8 = 1;
/// ALLOCATE zone: the F segment (0xF0000–0xFFFFF), where the RSDP must be found.
pub const ZONE_FSEG: u8 = 2;

/// The three fw_cfg files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwCfgAcpi {
    /// Contents of `etc/acpi/rsdp`.
    pub rsdp: Vec<u8>,
    /// Contents of `etc/acpi/tables`.
    pub tables: Vec<u8>,
    /// Contents of `etc/table-loader`.
    pub table_loader: Vec<u8>,
}

impl FwCfgAcpi {
    /// `(name, contents)` of each file, for registering with fw_cfg.
    pub fn files(&self) -> [(&'static str, &[u8]); 3] {
        [
            (RSDP_FILE, &self.rsdp),
            (TABLES_FILE, &self.tables),
            (LOADER_FILE, &self.table_loader),
        ]
    }
}

fn file_name(f: AcpiFile) -> &'static str {
    match f {
        AcpiFile::Rsdp => RSDP_FILE,
        AcpiFile::Tables => TABLES_FILE,
    }
}

struct Command([u8; COMMAND_SIZE], usize);

impl Command {
    fn new(cmd: u32) -> Self {
        let mut c = Command([0; COMMAND_SIZE], 0);
        c.bytes(&cmd.to_le_bytes());
        c
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0[self.1..self.1 + b.len()].copy_from_slice(b);
        self.1 += b.len();
        self
    }
    fn name(&mut self, name: &str) -> &mut Self {
        let mut field = [0u8; FILE_NAME_SIZE];
        field[..name.len()].copy_from_slice(name.as_bytes());
        self.bytes(&field)
    }
}

/// Build the fw_cfg files for `t`.
pub(super) fn fw_cfg(t: &AcpiTables) -> FwCfgAcpi {
    let mut rsdp = t.rsdp.clone();
    let mut tables = t.tables.clone();
    for c in &t.checksums {
        let blob = match c.file {
            AcpiFile::Rsdp => &mut rsdp,
            AcpiFile::Tables => &mut tables,
        };
        if let Some(b) = blob.get_mut(c.offset as usize) {
            *b = 0;
        }
    }

    let mut cmds: Vec<Command> = Vec::new();
    for (file, align, zone) in [(TABLES_FILE, 64u32, ZONE_HIGH), (RSDP_FILE, 16, ZONE_FSEG)] {
        let mut c = Command::new(CMD_ALLOCATE);
        c.name(file).bytes(&align.to_le_bytes()).bytes(&[zone]);
        cmds.push(c);
    }
    for p in &t.pointers {
        let mut c = Command::new(CMD_ADD_POINTER);
        c.name(file_name(p.dest))
            .name(file_name(p.src))
            .bytes(&p.offset.to_le_bytes())
            .bytes(&[p.size]);
        cmds.push(c);
    }
    for k in &t.checksums {
        let mut c = Command::new(CMD_ADD_CHECKSUM);
        c.name(file_name(k.file))
            .bytes(&k.offset.to_le_bytes())
            .bytes(&k.start.to_le_bytes())
            .bytes(&k.len.to_le_bytes());
        cmds.push(c);
    }
    let table_loader = cmds.iter().flat_map(|c| c.0).collect();
    FwCfgAcpi { rsdp, tables, table_loader }
}
