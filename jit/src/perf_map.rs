//! Linux perf's map of JIT code (`/tmp/perf-PID.map`), so `perf report` names guest blocks.

use std::fs::File;
use std::io::Write;

pub(crate) struct PerfMap {
    file: File,
}

impl PerfMap {
    pub fn open() -> std::io::Result<Self> {
        let path = format!("/tmp/perf-{}.map", std::process::id());
        Ok(PerfMap { file: std::fs::OpenOptions::new().create(true).append(true).open(path)? })
    }

    /// One line per block: start, size (hex) and a name carrying the guest address.
    pub fn record(&mut self, entry: usize, size: usize, guest_rip: u64) {
        // A failed write only loses a name in a profile.
        let _ = writeln!(self.file, "{entry:x} {size:x} guest_{guest_rip:x}");
    }
}
