//! Saved state of fw_cfg (snapshots and migration): the selector, the data offset and the
//! DMA address latch, plus the contents of the files the guest may write. The items
//! themselves are configuration the machine rebuilds from its command line. A DMA transfer
//! runs entirely within the write that starts it, so none is ever in flight.

use super::*;
use ferrite_persist::{Persist, RestoreError};
use serde::{Deserialize, Serialize};

/// A guest-writable file's current content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FwCfgFileState {
    pub name: String,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FwCfgState {
    /// Selected key (write-channel bit stripped).
    pub selector: u16,
    /// Data offset within the selected item.
    pub offset: u32,
    /// DMA address register, high half, as latched by a write at +4.
    pub dma_address_high: u32,
    /// Guest-writable files, by name.
    pub writable_files: Vec<FwCfgFileState>,
}

impl Persist for FwCfg {
    const SECTION: &'static str = "fw_cfg";
    const VERSION: u32 = 1;
    type State = FwCfgState;

    fn save(&self) -> FwCfgState {
        FwCfgState {
            selector: self.selector,
            offset: self.offset,
            dma_address_high: self.dma_high,
            writable_files: self
                .files
                .iter()
                .filter(|(_, item)| item.writable)
                .map(|(name, item)| FwCfgFileState { name: name.clone(), data: item.data.clone() })
                .collect(),
        }
    }

    fn restore(&mut self, s: FwCfgState) -> Result<(), RestoreError> {
        if s.selector & FW_CFG_WRITE_CHANNEL != 0 {
            return Err(RestoreError::invalid("selector", format!("{:#x} has the write-channel bit", s.selector)));
        }
        let mut slots = Vec::new();
        for f in &s.writable_files {
            let i = self.files.binary_search_by(|(n, _)| n.as_str().cmp(&f.name));
            match i.map(|i| (i, &self.files[i].1)) {
                Ok((i, item)) if item.writable && item.data.len() == f.data.len() => slots.push(i),
                Ok((_, item)) if item.writable => {
                    return Err(RestoreError::invalid(
                        "writable_files",
                        format!("{} saved with {} bytes, this machine has {}", f.name, f.data.len(), item.data.len()),
                    ))
                }
                _ => return Err(RestoreError::invalid("writable_files", format!("this machine has no writable file {}", f.name))),
            }
        }
        self.selector = s.selector;
        self.offset = s.offset;
        self.dma_high = s.dma_address_high;
        for (i, f) in slots.into_iter().zip(s.writable_files) {
            self.files[i].1.data = f.data;
        }
        Ok(())
    }
}
