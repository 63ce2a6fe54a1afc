//! The few qcow2 header fields ferrite checks itself before handing the image to imago, so
//! the user gets a precise message (truncated file, dirty or corrupt image, a feature imago
//! lacks, internal snapshots) instead of a generic "invalid data".

use crate::{OpenError, QCOW2_MAGIC};
use std::path::Path;

/// Header length of qcow2 version 2 (fixed) and the minimum of version 3.
const V2_HEADER_LEN: u64 = 72;
const V3_HEADER_LEN: u64 = 104;

pub(crate) struct Qcow2Header {
    pub nb_snapshots: u32,
}

impl Qcow2Header {
    /// Checks the header at the start of the file (`prefix`: its first bytes, `file_len`: its
    /// length).
    pub(crate) fn parse(path: &Path, prefix: &[u8], file_len: u64) -> Result<Self, OpenError> {
        let path_buf = || path.to_path_buf();
        if !prefix.starts_with(&QCOW2_MAGIC) {
            return Err(OpenError::NotQcow2 { path: path_buf() });
        }
        let be32 = |at: usize| prefix.get(at..at + 4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")));
        let be64 = |at: usize| prefix.get(at..at + 8).map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
        let truncated = |version, needed| OpenError::Truncated { path: path_buf(), len: file_len, version, needed };
        let Some(version) = be32(4) else {
            return Err(truncated(2, V2_HEADER_LEN));
        };
        let needed = match version {
            2 => V2_HEADER_LEN,
            3 => V3_HEADER_LEN,
            v => {
                return Err(OpenError::Unsupported { path: path_buf(), what: format!("qcow2 version {v} (ferrite reads versions 2 and 3)") })
            }
        };
        // `prefix` holds the first 4096 bytes, so this also guarantees the fields below are there.
        if file_len < needed || (prefix.len() as u64) < needed {
            return Err(truncated(version, needed));
        }
        let nb_snapshots = be32(60).unwrap_or(0);
        let incompatible = if version == 3 { be64(72).unwrap_or(0) } else { 0 };
        check_incompatible(path, incompatible)?;
        Ok(Qcow2Header { nb_snapshots })
    }
}

/// Refuses incompatible feature bits imago cannot handle, by name.
fn check_incompatible(path: &Path, bits: u64) -> Result<(), OpenError> {
    let Some(bit) = (0..64).find(|b| bits & (1 << b) != 0) else {
        return Ok(());
    };
    let what = match bit {
        0 => "the image is marked dirty (it was not closed cleanly while using lazy_refcounts=on); repair it with 'qemu-img check -r all'".to_string(),
        1 => {
            return Err(OpenError::Corrupt {
                path: path.into(),
                reason: "the image is marked corrupt; 'qemu-img check -r all' may repair it".into(),
            })
        }
        2 => "external data file (data_file=...)".into(),
        3 => "a compression type other than zlib (compression_type=zstd)".into(),
        4 => "extended L2 entries (extended_l2=on)".into(),
        b => format!("unknown incompatible feature bit {b}"),
    };
    Err(OpenError::Unsupported { path: path.into(), what })
}
