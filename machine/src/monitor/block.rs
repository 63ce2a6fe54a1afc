//! The drives as `query-block` and `info block` list them.

use crate::config::{Media, PciDeviceKind};
use crate::Machine;
use ferrite_block::ImageFormat;
use serde_json::{json, Value};

/// One drive.
pub struct BlockInfo {
    /// QEMU's name: `ide0-hd0`, `ide1-cd0`, `virtio0`.
    pub device: String,
    pub removable: bool,
    /// The image, if a medium is inserted.
    pub inserted: Option<Inserted>,
}

pub struct Inserted {
    pub file: String,
    pub read_only: bool,
    pub format: &'static str,
    pub size: u64,
}

fn format_name(f: ImageFormat) -> &'static str {
    match f {
        ImageFormat::Raw => "raw",
        ImageFormat::Qcow2 => "qcow2",
    }
}

impl BlockInfo {
    /// QEMU's `BlockInfo` (qapi/block-core.json).
    pub fn to_json(&self) -> Value {
        let mut v = json!({"device": self.device, "qdev": self.device, "locked": false, "removable": self.removable, "io-status": "ok", "type": "unknown"});
        if let Some(i) = &self.inserted {
            v["inserted"] = json!({
                "file": i.file, "ro": i.read_only, "drv": i.format, "encrypted": false, "backing_file_depth": 0,
                "detect_zeroes": "off", "bps": 0, "bps_rd": 0, "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0,
                "write_threshold": 0, "cache": {"writeback": true, "direct": false, "no-flush": false},
                "image": {"filename": i.file, "format": i.format, "virtual-size": i.size, "dirty-flag": false},
            });
        }
        v
    }

    /// One `info block` entry.
    pub fn to_text(&self) -> String {
        match &self.inserted {
            Some(i) => format!("{}: {} ({}{})\n", self.device, i.file, i.format, if i.read_only { ", read-only" } else { "" }),
            None => format!("{}: [not inserted]\n    Removable device: not locked, tray closed\n", self.device),
        }
    }
}

impl Machine {
    pub(crate) fn block_devices(&self) -> Vec<BlockInfo> {
        let mut out = Vec::new();
        for d in &self.drives {
            let cd = d.cfg.media == Media::Cdrom;
            let device = format!("ide{}-{}{}", d.cfg.bus, if cd { "cd" } else { "hd" }, d.cfg.unit);
            let inserted = match (&d.cfg.image, &d.disk, d.format) {
                (Some(opts), Some(disk), Some(format)) => Some(Inserted {
                    file: opts.path.display().to_string(),
                    read_only: disk.read_only(),
                    format: format_name(format),
                    size: disk.size(),
                }),
                _ => None,
            };
            out.push(BlockInfo { device, removable: cd, inserted });
        }
        let images = self.cfg.pci_devices.iter().filter_map(|d| match &d.kind {
            PciDeviceKind::VirtioBlk(b) => Some(&b.image),
            _ => None,
        });
        for (n, ((opts, disk), format)) in images.zip(self.virtio.disks()).zip(&self.virtio.formats).enumerate() {
            let inserted = Inserted { file: opts.path.display().to_string(), read_only: disk.read_only(), format: format_name(*format), size: disk.size() };
            out.push(BlockInfo { device: format!("virtio{n}"), removable: false, inserted: Some(inserted) });
        }
        out
    }
}
