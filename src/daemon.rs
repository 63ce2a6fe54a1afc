//! `-daemonize`, `-pidfile` and `-D`: what the process does around the machine, QEMU's way.
//! The parent waits until the child has built the machine, so its exit status says whether
//! the guest started, and setup errors still reach the terminal.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// The child's end of the start-up pipe.
pub struct Daemon {
    ready: std::fs::File,
}

/// Forks; the parent waits for the child's verdict and exits with it, the child returns.
/// Call before any thread exists (only the command line has been parsed).
pub fn start() -> Result<Daemon> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe() writes two new descriptors into the two-element array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        bail!("-daemonize: pipe: {}", std::io::Error::last_os_error());
    }
    // SAFETY: the descriptors are fresh and owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process is single-threaded here, so the child may go on running Rust code.
    match unsafe { libc::fork() } {
        -1 => bail!("-daemonize: fork: {}", std::io::Error::last_os_error()),
        0 => {
            drop(read);
            // SAFETY: setsid has no memory effects; a new session detaches from the terminal.
            unsafe { libc::setsid() };
            Ok(Daemon { ready: std::fs::File::from(write) })
        }
        _parent => {
            drop(write);
            let mut verdict = [1u8];
            let mut f = std::fs::File::from(read);
            let ok = std::io::Read::read(&mut f, &mut verdict).ok() == Some(1) && verdict[0] == 0;
            std::process::exit(if ok { 0 } else { 1 });
        }
    }
}

impl Daemon {
    /// The machine is up: detach from the terminal and let the parent exit successfully.
    pub fn ready(mut self, keep_stderr: bool) -> Result<()> {
        let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").context("-daemonize: /dev/null")?;
        let targets: &[i32] = if keep_stderr { &[0, 1] } else { &[0, 1, 2] };
        for &fd in targets {
            // SAFETY: dup2 onto the standard descriptors; `null` stays open for the call.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
        self.ready.write_all(&[0]).context("-daemonize: telling the parent")?;
        Ok(())
    }
}

/// `-pidfile FILE`: this process's ID and a newline.
pub fn write_pidfile(path: &Path) -> Result<()> {
    std::fs::write(path, format!("{}\n", std::process::id())).with_context(|| format!("-pidfile {}", path.display()))
}

/// `-D FILE`: the log (stderr, where `-d` writes) goes to FILE from now on.
pub fn redirect_log(path: &Path) -> Result<()> {
    let f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(path).with_context(|| format!("-D {}", path.display()))?;
    // SAFETY: dup2 onto stderr; `f` stays open for the call and stderr keeps its own copy.
    if unsafe { libc::dup2(f.as_raw_fd(), 2) } < 0 {
        bail!("-D {}: {}", path.display(), std::io::Error::last_os_error());
    }
    Ok(())
}
