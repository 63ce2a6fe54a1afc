//! `MachineConfig`: what to build, as plain data (the command line produces it; tests and
//! tools can write it directly).

use std::path::PathBuf;

/// Where the first serial port's bytes go.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum SerialBackend {
    /// The terminal (raw mode when stdin is a tty; Ctrl-A X quits).
    #[default]
    Stdio,
    /// Discarded.
    Null,
    /// Appended to a file.
    File(PathBuf),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Accel {
    /// ferrite's own CPU emulation (the name QEMU uses).
    #[default]
    Tcg,
    Kvm,
}

/// QEMU's isa-debug-exit device: a guest write of V exits with status (V << 1) | 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugExit {
    pub iobase: u16,
    pub iosize: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineConfig {
    pub memory_bytes: u64,
    pub cpus: u32,
    /// `-cpu` specification, parsed by `ferrite_cpu::CpuModel::parse`.
    pub cpu: String,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: String,
    pub bios: Option<PathBuf>,
    pub serial: SerialBackend,
    /// Exit instead of resetting on a guest reboot or triple fault.
    pub no_reboot: bool,
    pub debug_exit: Option<DebugExit>,
    pub accel: Accel,
    /// gdbstub listen address (`-s` is 127.0.0.1:1234).
    pub gdb: Option<String>,
    /// Start with the CPU stopped (`-S`).
    pub start_paused: bool,
    /// Log every interrupt and exception to stderr (`-d int`).
    pub log_interrupts: bool,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            // QEMU's default for the pc machine.
            memory_bytes: 128 << 20,
            cpus: 1,
            cpu: "max".into(),
            kernel: None,
            initrd: None,
            append: String::new(),
            bios: None,
            serial: SerialBackend::Stdio,
            no_reboot: false,
            debug_exit: None,
            accel: Accel::Tcg,
            gdb: None,
            start_paused: false,
            log_interrupts: false,
        }
    }
}
