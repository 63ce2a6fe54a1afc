//! Opening the host files behind an image, with errors that say what is wrong in the user's
//! terms rather than as a bare errno.

use crate::aligned::{AlignedBuf, DIRECT_ALIGN};
use crate::OpenError;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Opens `path` read-only or read-write (never O_RDWR when `writable` is false), bypassing
/// the host page cache if `direct`.
pub(crate) fn open_host_file(path: &Path, writable: bool, direct: bool) -> Result<File, OpenError> {
    // `open` happily opens a directory read-only; say what is wrong instead of failing later.
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(OpenError::IsDirectory { path: path.into() }),
        Ok(_) => {}
        Err(e) => return Err(OpenError::from_open(path, e, false)),
    }
    let open = |write: bool, direct: bool| {
        let mut o = OpenOptions::new();
        o.read(true).write(write);
        if direct {
            o.custom_flags(libc::O_DIRECT);
        }
        o.open(path)
    };
    match open(writable, direct) {
        Ok(f) => Ok(f),
        Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
            Err(OpenError::DirectIoUnsupported { path: path.into() })
        }
        // Refused for writing: "read-only on the host" only if reading would have worked.
        Err(e) if writable && open(false, direct).is_ok() => Err(OpenError::from_open(path, e, true)),
        Err(e) => Err(OpenError::from_open(path, e, false)),
    }
}

/// Reads up to `DIRECT_ALIGN` bytes from the start of `file` (fewer if the file is shorter),
/// through an aligned buffer so it works on O_DIRECT descriptors too.
pub(crate) fn read_prefix(file: &File) -> io::Result<Vec<u8>> {
    let mut buf = AlignedBuf::new(DIRECT_ALIGN);
    // One aligned request (O_DIRECT refuses anything else); on a regular file a short count
    // only happens at end of file.
    let n = loop {
        match file.read_at(&mut buf, 0) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => break r?,
        }
    };
    Ok(buf[..n].to_vec())
}

/// Turns O_DIRECT off on an open descriptor (keeping its locks, which a reopen would lose).
pub(crate) fn clear_direct(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL on a descriptor we own; no pointers involved.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL with an integer flag word on a descriptor we own.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The identity of a file (device, inode): the same file under any path or link.
pub(crate) fn file_id(file: &File) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata()?;
    Ok((m.dev(), m.ino()))
}
