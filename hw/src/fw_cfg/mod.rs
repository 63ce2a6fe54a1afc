//! QEMU's firmware configuration device, as specified in QEMU's `docs/specs/fw_cfg.rst`
//! ("QEMU Firmware Configuration (fw_cfg) Device"), x86 I/O port flavour.
//!
//! Ports (from [`FW_CFG_PORT_SEL`], [`FW_CFG_IO_LEN`] bytes): selector at +0 (16-bit
//! write), data at +1 (8-bit reads; wider reads return consecutive bytes), DMA address at
//! +4 (high half, big-endian) and +8 (low half, big-endian; writing it starts the
//! transfer). The machine calls [`FwCfg::read`] and [`FwCfg::write`], the latter with the
//! device's DMA handle ([`ferrite_memory::Dma`]) for the DMA interface.
//!
//! Content: the signature and ID are built in; everything else (RAM size, CPU counts,
//! kernel/initrd/command line, `etc/e820`, ACPI tables...) is added by the firmware crate
//! with [`FwCfg::add_bytes`] and [`FwCfg::add_file`]. Files get keys from
//! [`FW_CFG_FILE_FIRST`] in name order (the directory is sorted by name), so look keys up
//! with [`FwCfg::file_key`] once all files are in.

mod dma;
mod keys;

mod state;
pub use state::{FwCfgState, FwCfgFileState};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod state_tests;

pub use keys::*;

use std::collections::BTreeMap;

/// Errors from building fw_cfg content (machine/firmware mistakes, never guest input).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FwCfgError {
    #[error("fw_cfg file name {0:?} must be 1 to 55 bytes without NUL")]
    BadFileName(String),
    #[error("fw_cfg file {0:?} already exists")]
    DuplicateFile(String),
    #[error("fw_cfg file directory is full")]
    TooManyFiles,
    #[error("fw_cfg key {0:#06x} is reserved or belongs to the file range")]
    ReservedKey(u16),
    #[error("fw_cfg item of {0} bytes exceeds the 4 GiB limit")]
    TooLarge(usize),
}

#[derive(Clone, Debug, Default)]
struct Item {
    data: Vec<u8>,
    /// Whether the guest may overwrite it through DMA writes.
    writable: bool,
}

/// The fw_cfg device.
#[derive(Clone, Debug)]
pub struct FwCfg {
    /// Items by key (generic and arch-local), except files.
    items: BTreeMap<u16, Item>,
    /// Files, sorted by name; file `i` has key `FW_CFG_FILE_FIRST + i`.
    files: Vec<(String, Item)>,
    /// Selected key, with the write-channel bit stripped.
    selector: u16,
    /// Data offset within the selected item.
    offset: u32,
    /// DMA address register, high half (set by a write at +4).
    dma_high: u32,
}

impl Default for FwCfg {
    fn default() -> Self {
        Self::new()
    }
}

fn check_len(len: usize) -> Result<(), FwCfgError> {
    if u32::try_from(len).is_err() {
        return Err(FwCfgError::TooLarge(len));
    }
    Ok(())
}

impl FwCfg {
    /// A device holding the signature ("QEMU"), the ID (traditional + DMA interface) and an
    /// empty file directory.
    pub fn new() -> Self {
        let mut f = Self {
            items: BTreeMap::new(),
            files: Vec::new(),
            selector: 0,
            offset: 0,
            dma_high: 0,
        };
        f.items.insert(
            FW_CFG_SIGNATURE,
            Item {
                data: b"QEMU".to_vec(),
                writable: false,
            },
        );
        let id = FW_CFG_VERSION_TRADITIONAL | FW_CFG_VERSION_DMA;
        f.items.insert(
            FW_CFG_ID,
            Item {
                data: id.to_le_bytes().to_vec(),
                writable: false,
            },
        );
        f.rebuild_directory();
        f
    }

    /// Sets item `key` (a generic key below [`FW_CFG_FILE_FIRST`] or an arch-local key
    /// from 0x8000) to `data`, replacing any previous content. The signature, ID and file
    /// directory are reserved.
    pub fn add_bytes(&mut self, key: u16, data: impl Into<Vec<u8>>) -> Result<(), FwCfgError> {
        let data = data.into();
        let generic = key & FW_CFG_ARCH_LOCAL == 0;
        if key & FW_CFG_WRITE_CHANNEL != 0
            || matches!(key, FW_CFG_SIGNATURE | FW_CFG_ID | FW_CFG_FILE_DIR)
            || (generic && key >= FW_CFG_FILE_FIRST)
        {
            return Err(FwCfgError::ReservedKey(key));
        }
        check_len(data.len())?;
        self.items.insert(
            key,
            Item {
                data,
                writable: false,
            },
        );
        Ok(())
    }

    /// [`Self::add_bytes`] of a little-endian u16.
    pub fn add_u16(&mut self, key: u16, v: u16) -> Result<(), FwCfgError> {
        self.add_bytes(key, v.to_le_bytes())
    }

    /// [`Self::add_bytes`] of a little-endian u32.
    pub fn add_u32(&mut self, key: u16, v: u32) -> Result<(), FwCfgError> {
        self.add_bytes(key, v.to_le_bytes())
    }

    /// [`Self::add_bytes`] of a little-endian u64.
    pub fn add_u64(&mut self, key: u16, v: u64) -> Result<(), FwCfgError> {
        self.add_bytes(key, v.to_le_bytes())
    }

    /// Adds the read-only file `name` (e.g. "etc/e820"; 1-55 bytes) to the directory.
    pub fn add_file(&mut self, name: &str, data: impl Into<Vec<u8>>) -> Result<(), FwCfgError> {
        self.insert_file(name, data.into(), false)
    }

    /// Adds a file the guest may overwrite in place through DMA writes (its size is
    /// fixed); read the result back with [`Self::file_data`].
    pub fn add_file_writable(
        &mut self,
        name: &str,
        data: impl Into<Vec<u8>>,
    ) -> Result<(), FwCfgError> {
        self.insert_file(name, data.into(), true)
    }

    /// Replaces the content of file `name`, adding it (read-only) if it does not exist.
    pub fn modify_file(&mut self, name: &str, data: impl Into<Vec<u8>>) -> Result<(), FwCfgError> {
        let data = data.into();
        check_len(data.len())?;
        match self.files.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => {
                self.files[i].1.data = data;
                self.rebuild_directory();
                Ok(())
            }
            Err(_) => self.insert_file(name, data, false),
        }
    }

    fn insert_file(&mut self, name: &str, data: Vec<u8>, writable: bool) -> Result<(), FwCfgError> {
        if name.is_empty() || name.len() >= FW_CFG_FILE_NAME_LEN || name.contains('\0') {
            return Err(FwCfgError::BadFileName(name.to_string()));
        }
        check_len(data.len())?;
        if self.files.len() >= FW_CFG_MAX_FILES {
            return Err(FwCfgError::TooManyFiles);
        }
        let i = match self.files.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(_) => return Err(FwCfgError::DuplicateFile(name.to_string())),
            Err(i) => i,
        };
        self.files
            .insert(i, (name.to_string(), Item { data, writable }));
        self.rebuild_directory();
        Ok(())
    }

    /// Key of file `name`.
    pub fn file_key(&self, name: &str) -> Option<u16> {
        let i = self
            .files
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()?;
        Some(FW_CFG_FILE_FIRST + i as u16)
    }

    /// Current content of file `name` (including guest DMA writes).
    pub fn file_data(&self, name: &str) -> Option<&[u8]> {
        let i = self
            .files
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()?;
        Some(&self.files[i].1.data)
    }

    /// Content of item `key` (write-channel bit ignored), files included.
    pub fn item(&self, key: u16) -> Option<&[u8]> {
        self.lookup(key).map(|i| i.data.as_slice())
    }

    /// Rebuilds item 0x19: big-endian count, then 64-byte entries (size BE32, select BE16,
    /// reserved, name[56]) in name order (fw_cfg.rst, "File Directory").
    fn rebuild_directory(&mut self) {
        let mut dir = Vec::with_capacity(4 + 64 * self.files.len());
        dir.extend_from_slice(&(self.files.len() as u32).to_be_bytes());
        for (i, (name, item)) in self.files.iter().enumerate() {
            dir.extend_from_slice(&(item.data.len() as u32).to_be_bytes());
            dir.extend_from_slice(&(FW_CFG_FILE_FIRST + i as u16).to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut n = [0u8; FW_CFG_FILE_NAME_LEN];
            n[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&n);
        }
        self.items.insert(
            FW_CFG_FILE_DIR,
            Item {
                data: dir,
                writable: false,
            },
        );
    }

    fn lookup(&self, key: u16) -> Option<&Item> {
        let key = key & !FW_CFG_WRITE_CHANNEL;
        if key & FW_CFG_ARCH_LOCAL == 0 && key >= FW_CFG_FILE_FIRST {
            return self
                .files
                .get(usize::from(key - FW_CFG_FILE_FIRST))
                .map(|(_, i)| i);
        }
        self.items.get(&key)
    }

    fn lookup_mut(&mut self, key: u16) -> Option<&mut Item> {
        let key = key & !FW_CFG_WRITE_CHANNEL;
        if key & FW_CFG_ARCH_LOCAL == 0 && key >= FW_CFG_FILE_FIRST {
            return self
                .files
                .get_mut(usize::from(key - FW_CFG_FILE_FIRST))
                .map(|(_, i)| i);
        }
        self.items.get_mut(&key)
    }

    /// Selects item `key` and rewinds the data offset (fw_cfg.rst, "Selector Register").
    pub fn select(&mut self, key: u16) {
        self.selector = key & !FW_CFG_WRITE_CHANNEL;
        self.offset = 0;
    }

    /// The selected key.
    pub fn selected(&self) -> u16 {
        self.selector
    }

    /// Next data byte of the selected item; 0 past its end or for a missing item.
    fn next_byte(&mut self) -> u8 {
        let offset = self.offset as usize;
        match self
            .lookup(self.selector)
            .and_then(|i| i.data.get(offset).copied())
        {
            Some(b) => {
                self.offset += 1;
                b
            }
            None => 0,
        }
    }

    /// Port read at `offset` from 0x510. The data port returns `size` consecutive item
    /// bytes (first byte lowest); the DMA address port returns the "QEMU CFG" signature
    /// bytes in address order; the selector reads 0.
    pub fn read(&mut self, offset: u16, size: u8) -> u32 {
        let size = u32::from(size.min(4));
        let mut v = 0u32;
        match offset {
            FW_CFG_DATA_OFFSET => {
                for i in 0..size {
                    v |= u32::from(self.next_byte()) << (8 * i);
                }
            }
            4..=11 => {
                let sig = FW_CFG_DMA_SIGNATURE.to_be_bytes();
                for i in 0..size {
                    let b = sig
                        .get(usize::from(offset - 4) + i as usize)
                        .copied()
                        .unwrap_or(0);
                    v |= u32::from(b) << (8 * i);
                }
            }
            _ => {}
        }
        v
    }

    /// Port write at `offset` from 0x510: the selector (16-bit; an 8-bit write selects its
    /// value), the DMA address halves (32-bit, big-endian), data writes ignored (QEMU 2.4+).
    /// Writing the low DMA half runs the transfer through `dma`.
    pub fn write(&mut self, offset: u16, size: u8, value: u32, dma: &ferrite_memory::Dma) {
        match (offset, size) {
            (FW_CFG_SEL_OFFSET, 1) => self.select(value as u8 as u16),
            (FW_CFG_SEL_OFFSET, 2 | 4) => self.select(value as u16),
            (FW_CFG_DMA_HIGH_OFFSET, 4) => self.dma_high = value.swap_bytes(),
            (FW_CFG_DMA_LOW_OFFSET, 4) => {
                let addr = u64::from(self.dma_high) << 32 | u64::from(value.swap_bytes());
                self.dma_high = 0;
                self.dma_transfer(addr, dma);
            }
            _ => {}
        }
    }
}
