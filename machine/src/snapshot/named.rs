//! Named snapshots on the host (`savevm NAME`, `loadvm NAME`, `delvm NAME`, `info snapshots`,
//! QMP's `snapshot-*`, `-loadvm NAME`). ferrite's disk images cannot hold a machine's state
//! (no qcow2 internal snapshots), so each snapshot is a file of its own in a snapshot
//! directory: `DIR/NAME.ferrite-vm`, exactly the stream `migrate file:` writes ([`super::stream`]:
//! RAM, devices, vCPUs, guest clock, checksummed), plus `DIR/NAME.ferrite-vm.json` with what
//! `info snapshots` lists (date, guest clock, size).
//!
//! Why a sidecar rather than a field in the stream: the stream stays the one format `migrate`
//! writes and `-incoming file:` reads (a snapshot file can be started from either way), and
//! listing reads a few hundred bytes per snapshot rather than a RAM-sized file (the guest
//! clock sits at the stream's end). The sidecar names its stream's length and checksum (the
//! stream's last 8 bytes), so a sidecar that does not belong to the file beside it (a crash
//! between the two renames) is noticed and the file's own date and size are listed instead.
//!
//! Both files are written under temporary names and renamed into place: an interrupted save
//! leaves the previous snapshot of that name (or none), never a broken one.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const SUFFIX: &str = ".ferrite-vm";
const INFO_SUFFIX: &str = ".ferrite-vm.json";
/// Longest snapshot name (file names are at most 255 bytes with the suffixes).
const MAX_TAG: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum NamedError {
    #[error("invalid snapshot name '{0}': {1}")]
    InvalidName(String, &'static str),
    /// QEMU's words, so scripts that look for them find them.
    #[error("Snapshot '{tag}' does not exist (in {})", .dir.display())]
    Missing { tag: String, dir: PathBuf },
    #[error("cannot {what} '{}': {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Save(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> NamedError + 'a {
    move |source| NamedError::Io { what, path: path.to_path_buf(), source }
}

/// One snapshot as `info snapshots` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub tag: String,
    /// When it was taken, seconds since the epoch.
    pub date_secs: i64,
    /// Guest time when it was taken (ns).
    pub vm_clock_ns: u64,
    /// Bytes of machine state.
    pub vm_state_size: u64,
}

/// What the sidecar file holds.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Sidecar {
    date_secs: i64,
    vm_clock_ns: u64,
    vm_state_size: u64,
    /// The stream's checksum (its last 8 bytes), in hex: ties the sidecar to its stream.
    checksum: String,
    ferrite: String,
}

/// A directory of named snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotDir {
    path: PathBuf,
}

impl SnapshotDir {
    pub fn new(path: PathBuf) -> Self {
        SnapshotDir { path }
    }

    /// `-snapshot-dir DIR`, or `$XDG_STATE_HOME/ferrite/snapshots/NAME` (XDG_STATE_HOME
    /// defaulting to `~/.local/state`; NAME is `-name`, or `default`), so machines with
    /// different names keep their snapshots apart.
    pub fn for_machine(explicit: Option<&Path>, name: Option<&str>) -> Self {
        if let Some(p) = explicit {
            return Self::new(p.to_path_buf());
        }
        // The XDG spec: a relative XDG_STATE_HOME is invalid and ignored.
        let state = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from).filter(|p| p.is_absolute()).unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
            home.join(".local/state")
        });
        let name = name.map(|n| n.replace('/', "_")).filter(|n| !n.is_empty() && !n.starts_with('.')).unwrap_or_else(|| "default".into());
        Self::new(state.join("ferrite/snapshots").join(name))
    }

    /// The directory of the machine `cfg` describes.
    pub fn of_config(cfg: &crate::config::MachineConfig) -> Self {
        Self::for_machine(cfg.snapshot_dir.as_deref(), cfg.name.as_deref())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where snapshot `tag`'s state lives; refuses names that are not plain file names.
    pub fn stream_path(&self, tag: &str) -> Result<PathBuf, NamedError> {
        let bad = |why| Err(NamedError::InvalidName(tag.into(), why));
        if tag.is_empty() {
            return bad("it is empty");
        }
        if tag.len() > MAX_TAG {
            return bad("it is longer than 200 bytes");
        }
        if tag.contains('/') || tag.chars().any(char::is_control) {
            return bad("it may not contain '/' or control characters");
        }
        if tag.starts_with('.') {
            return bad("it may not start with '.'");
        }
        Ok(self.path.join(format!("{tag}{SUFFIX}")))
    }

    fn info_path(&self, tag: &str) -> PathBuf {
        self.path.join(format!("{tag}{INFO_SUFFIX}"))
    }

    /// Opens snapshot `tag`'s state for reading.
    pub fn open(&self, tag: &str) -> Result<File, NamedError> {
        let path = self.stream_path(tag)?;
        File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => NamedError::Missing { tag: tag.into(), dir: self.path.clone() },
            _ => NamedError::Io { what: "open", path, source: e },
        })
    }

    /// Saves snapshot `tag`: `write` writes the machine's state into a temporary file, which
    /// then replaces any snapshot of that name. `vm_clock_ns` is the state's guest time.
    pub fn save(&self, tag: &str, vm_clock_ns: u64, write: impl FnOnce(&mut File) -> Result<(), String>) -> Result<SnapshotInfo, NamedError> {
        let stream = self.stream_path(tag)?;
        std::fs::create_dir_all(&self.path).map_err(io("create the snapshot directory", &self.path))?;
        let tmp = self.path.join(format!(".{tag}{SUFFIX}.{}.tmp", std::process::id()));
        let tmp_info = self.path.join(format!(".{tag}{INFO_SUFFIX}.{}.tmp", std::process::id()));
        let saved = (|| {
            // Read as well as written: the checksum is read back from its end.
            let mut f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&tmp).map_err(io("create", &tmp))?;
            write(&mut f).map_err(NamedError::Save)?;
            f.sync_all().map_err(io("write", &tmp))?;
            let size = f.metadata().map_err(io("write", &tmp))?.len();
            let checksum = checksum_of(&f, size).map_err(io("read back", &tmp))?;
            let info = SnapshotInfo { tag: tag.into(), date_secs: crate::clock::wall_clock_secs(), vm_clock_ns, vm_state_size: size };
            let sidecar = Sidecar { date_secs: info.date_secs, vm_clock_ns, vm_state_size: size, checksum, ferrite: env!("CARGO_PKG_VERSION").into() };
            let mut side = File::create(&tmp_info).map_err(io("create", &tmp_info))?;
            let json = serde_json::to_vec_pretty(&sidecar).map_err(std::io::Error::other).map_err(io("write", &tmp_info))?;
            side.write_all(&json).and_then(|()| side.sync_all()).map_err(io("write", &tmp_info))?;
            std::fs::rename(&tmp, &stream).map_err(io("rename into place", &stream))?;
            let info_path = self.info_path(tag);
            std::fs::rename(&tmp_info, &info_path).map_err(io("rename into place", &info_path))?;
            // The renames themselves reach the disk.
            let _ = File::open(&self.path).and_then(|d| d.sync_all());
            Ok(info)
        })();
        if saved.is_err() {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&tmp_info);
        }
        saved
    }

    /// Deletes snapshot `tag`; `false` if there was none (not an error, as with QEMU).
    pub fn delete(&self, tag: &str) -> Result<bool, NamedError> {
        let stream = self.stream_path(tag)?;
        let existed = match std::fs::remove_file(&stream) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(NamedError::Io { what: "delete", path: stream, source: e }),
        };
        let _ = std::fs::remove_file(self.info_path(tag));
        Ok(existed)
    }

    /// Every snapshot in the directory, oldest first (none if it does not exist).
    pub fn list(&self) -> Vec<SnapshotInfo> {
        let Ok(entries) = std::fs::read_dir(&self.path) else { return Vec::new() };
        let mut out: Vec<SnapshotInfo> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let tag = name.strip_suffix(SUFFIX).filter(|t| !t.starts_with('.'))?;
                self.describe(tag, &e.path())
            })
            .collect();
        out.sort_by(|a, b| (a.date_secs, &a.tag).cmp(&(b.date_secs, &b.tag)));
        out
    }

    /// Snapshot `tag` from its sidecar, or from the file alone if the sidecar is missing or
    /// belongs to another version of the file.
    fn describe(&self, tag: &str, stream: &Path) -> Option<SnapshotInfo> {
        let f = File::open(stream).ok()?;
        let meta = f.metadata().ok()?;
        let sidecar = std::fs::read(self.info_path(tag)).ok().and_then(|b| serde_json::from_slice::<Sidecar>(&b).ok());
        if let Some(s) = sidecar.filter(|s| s.vm_state_size == meta.len() && checksum_of(&f, meta.len()).is_ok_and(|c| c == s.checksum)) {
            return Some(SnapshotInfo { tag: tag.into(), date_secs: s.date_secs, vm_clock_ns: s.vm_clock_ns, vm_state_size: s.vm_state_size });
        }
        let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        Some(SnapshotInfo { tag: tag.into(), date_secs: modified, vm_clock_ns: 0, vm_state_size: meta.len() })
    }
}

/// A stream's checksum: its last 8 bytes, in hex.
fn checksum_of(f: &File, len: u64) -> std::io::Result<String> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, len.checked_sub(8).ok_or(std::io::ErrorKind::UnexpectedEof)?)?;
    Ok(format!("{:016x}", u64::from_le_bytes(b)))
}

/// The name `savevm` without a name gives, as QEMU: `vm-YYYYMMDDHHMMSS` in local time.
pub fn default_tag(now_secs: i64) -> String {
    let (y, mo, d, h, mi, s) = crate::clock::local_date_time(now_secs);
    format!("vm-{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
}

/// `info snapshots` as QEMU 7.2 prints it for snapshots present on every disk (IDs `--`).
pub fn info_table(list: &[SnapshotInfo]) -> String {
    if list.is_empty() {
        return "There is no snapshot available.\n".into();
    }
    let mut out = String::from("List of snapshots present on all disks:\n");
    out += &format!("{:<10}{:<17}{:>8}{:>20}{:>13}{:>11}\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
    for s in list {
        let (y, mo, d, h, mi, sec) = crate::clock::local_date_time(s.date_secs);
        let date = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{sec:02}");
        let secs = s.vm_clock_ns / 1_000_000_000;
        let clock = format!("{:02}:{:02}:{:02}.{:03}", secs / 3600, (secs / 60) % 60, secs % 60, (s.vm_clock_ns / 1_000_000) % 1000);
        out += &format!("{:<9} {:<16} {:>8}{:>20}{:>13}{:>11}\n", "--", s.tag, size_to_str(s.vm_state_size), date, clock, "");
    }
    out
}

/// QEMU's `size_to_str`: 3 significant digits and a binary prefix, switching up at 1000.
fn size_to_str(val: u64) -> String {
    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let scaled = val as f64 / (1000.0 / 1024.0);
    // frexp's exponent: the power of two just above `scaled`.
    let exp = if scaled < 1.0 { 0 } else { scaled.log2().floor() as i32 + 1 };
    let i = ((exp - 1) / 10).clamp(0, 6) as usize;
    format!("{} {}B", significant3(val as f64 / (1u64 << (i * 10)) as f64), SUFFIXES[i])
}

/// C's `%0.3g`.
fn significant3(v: f64) -> String {
    let strip = |s: String| if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    let sci = format!("{v:.2e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..3).contains(&exp) {
        strip(format!("{v:.*}", (2 - exp) as usize))
    } else {
        format!("{}e{}{:02}", strip(mantissa.to_string()), if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> SnapshotDir {
        let p = std::env::temp_dir().join(format!("ferrite-named-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        SnapshotDir::new(p)
    }

    /// A stand-in stream: `body` and an 8-byte "checksum".
    fn fake_stream(body: &[u8], sum: u64) -> impl FnOnce(&mut File) -> Result<(), String> + '_ {
        move |f| f.write_all(body).and_then(|()| f.write_all(&sum.to_le_bytes())).map_err(|e| e.to_string())
    }

    #[test]
    fn sizes_and_numbers_print_as_qemu_prints_them() {
        assert_eq!(size_to_str(450 << 10), "450 KiB");
        assert_eq!(size_to_str(0), "0 B");
        assert_eq!(size_to_str(999), "999 B");
        assert_eq!(size_to_str(1000), "0.977 KiB");
        assert_eq!(size_to_str(19_800_000), "18.9 MiB");
        assert_eq!(size_to_str(256 << 20), "256 MiB");
        assert_eq!(size_to_str(3 << 30), "3 GiB");
        assert_eq!(significant3(1.5), "1.5");
        assert_eq!(significant3(999.7), "1e+03");
        assert_eq!(significant3(0.000_012_34), "1.23e-05");
    }

    #[test]
    fn snapshots_are_saved_listed_replaced_and_deleted() {
        let dir = scratch("cycle");
        assert_eq!(info_table(&dir.list()), "There is no snapshot available.\n");
        let info = dir.save("first", 61_234_000_000, fake_stream(b"state one", 1)).unwrap();
        assert_eq!(info.vm_state_size, 17);
        dir.save("second", 5, fake_stream(b"two", 2)).unwrap();
        let list = dir.list();
        assert_eq!(list.iter().map(|s| s.tag.as_str()).collect::<Vec<_>>(), ["first", "second"]);
        assert_eq!(list[0].vm_clock_ns, 61_234_000_000);
        let table = info_table(&list);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "List of snapshots present on all disks:");
        assert_eq!(lines[1], "ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT");
        assert!(lines[2].starts_with("--        first                17 B 2"), "{table}");
        assert!(lines[2].ends_with(" 00:01:01.234           "), "{table}");
        // Replacing keeps one snapshot of the name; a failed save leaves the old one.
        dir.save("first", 7, fake_stream(b"state three", 3)).unwrap();
        assert!(dir.save("first", 8, |_| Err("disk full".into())).is_err());
        let list = dir.list();
        assert_eq!((list.len(), list.iter().find(|s| s.tag == "first").unwrap().vm_clock_ns), (2, 7));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4, "no temporary files are left");
        assert!(dir.delete("first").unwrap());
        assert!(!dir.delete("first").unwrap());
        assert!(matches!(dir.open("first"), Err(NamedError::Missing { .. })));
        assert_eq!(dir.list().len(), 1);
        let _ = std::fs::remove_dir_all(dir.path());
    }

    #[test]
    fn a_sidecar_of_another_file_is_not_believed() {
        let dir = scratch("stale");
        dir.save("s", 42, fake_stream(b"abc", 9)).unwrap();
        // As if a crash came between the two renames of a later save.
        std::fs::write(dir.stream_path("s").unwrap(), b"abcdefgh12345678").unwrap();
        let list = dir.list();
        assert_eq!((list[0].vm_clock_ns, list[0].vm_state_size), (0, 16));
        let _ = std::fs::remove_dir_all(dir.path());
    }

    #[test]
    fn names_are_plain_file_names_and_directories_follow_xdg() {
        let dir = SnapshotDir::new("/x".into());
        for bad in ["", "a/b", ".hidden", "tab\there", &"n".repeat(201)] {
            assert!(matches!(dir.stream_path(bad), Err(NamedError::InvalidName(..))), "{bad:?}");
        }
        assert_eq!(dir.stream_path("vm-1 ok").unwrap(), Path::new("/x/vm-1 ok.ferrite-vm"));
        assert_eq!(SnapshotDir::for_machine(Some(Path::new("/d")), Some("n")).path(), Path::new("/d"));
        let home = std::env::var("HOME").unwrap_or_default();
        let xdg = std::env::var_os("XDG_STATE_HOME").filter(|p| Path::new(p).is_absolute()).map_or(Path::new(&home).join(".local/state"), PathBuf::from);
        assert_eq!(SnapshotDir::for_machine(None, None).path(), xdg.join("ferrite/snapshots/default"));
        assert_eq!(SnapshotDir::for_machine(None, Some("a/b")).path(), xdg.join("ferrite/snapshots/a_b"));
        assert!(default_tag(0).starts_with("vm-19"));
        assert_eq!(default_tag(0).len(), "vm-YYYYMMDDHHMMSS".len());
    }
}
