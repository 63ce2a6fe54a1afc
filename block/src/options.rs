//! What a `-drive` option list says about one image: plain data, parsed by the front end.

use std::path::PathBuf;

/// How host caches are used, with QEMU's meanings.
///
/// | mode           | host page cache | each write durable before it completes | guest flush |
/// |----------------|-----------------|----------------------------------------|-------------|
/// | `writeback`    | yes             | no                                     | fdatasync   |
/// | `none`         | no (O_DIRECT)   | no                                     | fdatasync   |
/// | `writethrough` | yes             | yes (fdatasync after every write)      | fdatasync   |
/// | `directsync`   | no (O_DIRECT)   | yes                                    | fdatasync   |
/// | `unsafe`       | yes             | no                                     | ignored     |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheMode {
    #[default]
    Writeback,
    None,
    Writethrough,
    Directsync,
    Unsafe,
}

impl CacheMode {
    /// Parses QEMU's `cache=` value.
    pub fn parse(s: &str) -> Result<Self, OptionError> {
        const ALL: [CacheMode; 5] =
            [CacheMode::Writeback, CacheMode::None, CacheMode::Writethrough, CacheMode::Directsync, CacheMode::Unsafe];
        ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| OptionError::UnknownCacheMode(s.into()))
    }

    /// QEMU's name for the mode.
    pub fn name(self) -> &'static str {
        match self {
            CacheMode::Writeback => "writeback",
            CacheMode::None => "none",
            CacheMode::Writethrough => "writethrough",
            CacheMode::Directsync => "directsync",
            CacheMode::Unsafe => "unsafe",
        }
    }

    /// Whether the host page cache is bypassed (O_DIRECT).
    pub fn direct(self) -> bool {
        matches!(self, CacheMode::None | CacheMode::Directsync)
    }

    /// Whether every write is made durable before it completes.
    pub fn sync_every_write(self) -> bool {
        matches!(self, CacheMode::Writethrough | CacheMode::Directsync)
    }

    /// Whether a guest flush reaches stable storage (`unsafe` drops flushes).
    pub fn flush_enabled(self) -> bool {
        self != CacheMode::Unsafe
    }
}

/// The image formats ferrite reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Raw,
    Qcow2,
}

impl ImageFormat {
    /// Parses QEMU's `format=` value.
    pub fn parse(s: &str) -> Result<Self, OptionError> {
        match s {
            "raw" => Ok(ImageFormat::Raw),
            "qcow2" => Ok(ImageFormat::Qcow2),
            _ => Err(OptionError::UnknownFormat(s.into())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
        }
    }
}

impl std::fmt::Display for CacheMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A `cache=` or `format=` value ferrite does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("unknown cache mode '{0}' (expected one of: writeback, none, writethrough, directsync, unsafe)")]
    UnknownCacheMode(String),
    #[error("unsupported image format '{0}' (ferrite supports: raw, qcow2)")]
    UnknownFormat(String),
}

/// One drive's image options (QEMU's `-drive file=…,format=…,readonly=…,cache=…,snapshot=…,file.locking=…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriveOptions {
    pub path: PathBuf,
    /// `None` probes: qcow2 if the file starts with the qcow2 magic, raw otherwise.
    pub format: Option<ImageFormat>,
    pub read_only: bool,
    pub cache: CacheMode,
    /// Guest writes go to a throw-away overlay; the image itself is opened read-only.
    pub snapshot: bool,
    /// QEMU-compatible OFD byte-range locks on the image and its backing files.
    pub locking: bool,
    /// `discard=unmap`: the guest's discard requests deallocate image space (punched holes,
    /// freed qcow2 clusters); `discard=ignore` (QEMU's default) drops them.
    pub discard: bool,
}

impl DriveOptions {
    /// Options with QEMU's defaults: probed format, read-write, writeback, locking on.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DriveOptions {
            path: path.into(),
            format: None,
            read_only: false,
            cache: CacheMode::default(),
            snapshot: false,
            locking: true,
            discard: false,
        }
    }
}
