//! The PC machine: guest memory, buses, the board's devices and the CPU, wired together and
//! run until the guest powers off, resets (with `-no-reboot`) or asks to exit.

pub mod boot;
pub mod bus;
pub mod clock;
pub mod config;
pub mod console;
pub mod gdb;
pub mod irq;
pub mod memory;
pub mod pc;

use config::{Accel, MachineConfig, SerialBackend};
use console::{ConsoleEvent, ConsoleInput, RawTerminal};
use ferrite_cpu::{Cpu, CpuModel, RunExit};
use ferrite_firmware::MemoryLayout;
use memory::GuestMemory;
use pc::{PcBoard, SerialOut};
use std::time::Duration;

/// Instructions per scheduling slice: devices and input are serviced between slices.
pub(crate) const SLICE: u64 = 200_000;
/// Smallest RAM that holds the boot structures and a kernel.
const MIN_RAM: u64 = 2 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("invalid -cpu: {0}")]
    Cpu(#[from] ferrite_cpu::cpuid::CpuModelError),
    #[error("-m: {} KiB is too little memory (at least 2 MiB is needed)", .0 >> 10)]
    TooLittleMemory(u64),
    #[error("-m: {} MiB is too much memory for this machine (at most 1 TiB)", .0 >> 20)]
    TooMuchMemory(u64),
    #[error("-smp {0}: only one CPU is supported so far")]
    Smp(u32),
    #[error("-accel kvm is not available yet; use -accel tcg")]
    KvmUnavailable,
    #[error("cannot listen for gdb on {addr}: {source}")]
    GdbListen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("-S waits for a debugger to start the CPU: give -s or -gdb tcp::PORT too")]
    PausedWithoutGdb,
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    #[error("device wiring: {0}")]
    Bus(#[from] bus::BusError),
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    #[error("cannot open serial output '{path}': {source}")]
    SerialFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Checks a `-cpu` specification without building a machine (the command line's early check).
pub fn validate_cpu_model(spec: &str) -> Result<(), MachineError> {
    CpuModel::parse(spec)?;
    Ok(())
}

/// How the machine stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// ACPI power-off.
    PowerOff,
    /// The guest rebooted and `-no-reboot` was given.
    Reboot,
    /// Triple fault with `-no-reboot`.
    TripleFault,
    /// The user typed Ctrl-A X.
    Quit,
    /// isa-debug-exit with this status.
    DebugExit(i32),
    /// gdb's `kill`.
    Killed,
}

impl Outcome {
    /// The emulator's exit status (QEMU's conventions).
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::PowerOff | Outcome::Reboot | Outcome::Quit | Outcome::Killed => 0,
            Outcome::TripleFault => 1,
            Outcome::DebugExit(c) => c,
        }
    }
}

pub struct Machine {
    cfg: MachineConfig,
    pub cpu: Cpu,
    pub board: PcBoard,
    /// The gdb server (`-s`, `-gdb`).
    gdb: Option<gdb::GdbServer>,
    /// Run state, breakpoints and settings of the debugger.
    pub(crate) debug: gdb::DebugState,
}

/// How much of the guest `Machine::run_slice` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slice {
    /// Up to this many instructions (0: only deliver a pending interrupt).
    Run(u64),
    /// One instruction; `irqs`: deliver a pending interrupt first.
    Step { irqs: bool },
}

pub(crate) enum SliceEnd {
    /// The CPU stopped for this reason; the machine goes on.
    Exit(RunExit),
    /// The machine is finished.
    Done(Outcome),
}

/// The serial console on the terminal, while the machine runs.
pub(crate) struct Console {
    _raw: Option<RawTerminal>,
    input: Option<ConsoleInput>,
    pending: Vec<u8>,
}

fn serial_out(backend: &SerialBackend) -> Result<SerialOut, MachineError> {
    Ok(match backend {
        SerialBackend::Stdio => Box::new(std::io::stdout()),
        SerialBackend::Null => Box::new(std::io::sink()),
        SerialBackend::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| MachineError::SerialFile { path: path.clone(), source })?,
        ),
    })
}

/// Fresh memory and devices with the boot image loaded, and the boot CPU's initial state
/// (machine creation and reset alike).
fn build_board(cfg: &MachineConfig) -> Result<(PcBoard, ferrite_cpu::CpuState), MachineError> {
    let layout = MemoryLayout::new(cfg.memory_bytes & !0xfff);
    let mem = GuestMemory::new(layout.below_4g, layout.above_4g)?;
    let debug_exit = cfg.debug_exit.map(|d| (d.iobase, d.iosize));
    let mut board = PcBoard::new(mem, serial_out(&cfg.serial)?, debug_exit)?;
    let state = boot::load(cfg, &mut board)?;
    Ok((board, state))
}

impl Machine {
    pub fn new(cfg: MachineConfig) -> Result<Self, MachineError> {
        let model = CpuModel::parse(&cfg.cpu)?;
        if cfg.memory_bytes < MIN_RAM {
            return Err(MachineError::TooLittleMemory(cfg.memory_bytes));
        }
        if cfg.memory_bytes > 1 << 40 {
            return Err(MachineError::TooMuchMemory(cfg.memory_bytes));
        }
        if cfg.cpus != 1 {
            return Err(MachineError::Smp(cfg.cpus));
        }
        if cfg.accel == Accel::Kvm {
            return Err(MachineError::KvmUnavailable);
        }
        if cfg.start_paused && cfg.gdb.is_none() {
            return Err(MachineError::PausedWithoutGdb);
        }
        let (board, state) = build_board(&cfg)?;
        let mut cpu = Cpu::new(model);
        cpu.set_state(state);
        cpu.log_interrupts = cfg.log_interrupts;
        let gdb = cfg.gdb.as_deref().map(gdb::GdbServer::bind).transpose()?;
        let debug = gdb::DebugState::new(cfg.start_paused);
        Ok(Machine { cfg, cpu, board, gdb, debug })
    }

    /// Reboots: CPU to the reset vector (firmware boot) or back to the kernel entry.
    fn reset(&mut self) -> Result<(), MachineError> {
        let (board, state) = build_board(&self.cfg)?;
        self.board = board;
        self.cpu.reset();
        self.cpu.set_state(state);
        Ok(())
    }

    /// Where the gdb server listens, if there is one.
    pub fn gdb_address(&self) -> Option<std::net::SocketAddr> {
        self.gdb.as_ref().map(|g| g.local_addr())
    }

    /// Runs the guest to the end, with the console on the terminal when serial is stdio.
    pub fn run(&mut self) -> Result<Outcome, MachineError> {
        let stdio = self.cfg.serial == SerialBackend::Stdio;
        let raw = if stdio { RawTerminal::enable() } else { None };
        let input = stdio.then(|| ConsoleInput::spawn(raw.is_some()));
        let mut console = Console { _raw: raw, input, pending: Vec::new() };
        if let Some(mut server) = self.gdb.take() {
            let result = gdb::run(self, &mut server, &mut console);
            self.gdb = Some(server);
            return result;
        }
        loop {
            if let Some(outcome) = self.service_console(&mut console) {
                return Ok(outcome);
            }
            if let SliceEnd::Done(outcome) = self.run_slice(Slice::Run(SLICE))? {
                return Ok(outcome);
            }
        }
    }

    /// Passes console input to COM1; `Some` when the user quit.
    pub(crate) fn service_console(&mut self, console: &mut Console) -> Option<Outcome> {
        if let Some(input) = console.input.as_mut() {
            for ev in input.try_events() {
                match ev {
                    ConsoleEvent::Input(bytes) => console.pending.extend(bytes),
                    ConsoleEvent::Quit => return Some(Outcome::Quit),
                }
            }
        }
        if !console.pending.is_empty() {
            let n = self.board.serial_input(&console.pending);
            console.pending.drain(..n);
        }
        None
    }

    /// Services the devices and runs the CPU for one slice; handles resets, power-off and
    /// exits, and sleeps while the CPU halts.
    pub(crate) fn run_slice(&mut self, how: Slice) -> Result<SliceEnd, MachineError> {
        let next_timer = self.board.update_timers();
        if self.board.take_nmi() {
            self.cpu.inject_nmi();
        }
        let exit = match how {
            Slice::Run(budget) => self.cpu.run(&mut self.board, budget),
            Slice::Step { irqs: true } => self.cpu.step(&mut self.board),
            Slice::Step { irqs: false } => self.cpu.step_no_irq(&mut self.board),
        };
        for (addr, len) in self.board.dma_writes.drain(..) {
            self.cpu.invalidate_code(addr, len);
        }
        let req = self.board.take_requests();
        if let Some(code) = req.exit_code {
            return Ok(SliceEnd::Done(Outcome::DebugExit(code)));
        }
        if req.poweroff {
            return Ok(SliceEnd::Done(Outcome::PowerOff));
        }
        if req.reset {
            if self.cfg.no_reboot {
                return Ok(SliceEnd::Done(Outcome::Reboot));
            }
            self.reset()?;
            return Ok(SliceEnd::Exit(RunExit::Budget));
        }
        match exit {
            RunExit::Shutdown => {
                if self.cfg.no_reboot {
                    return Ok(SliceEnd::Done(Outcome::TripleFault));
                }
                eprintln!("ferrite: triple fault; resetting the machine");
                self.reset()?;
                return Ok(SliceEnd::Exit(RunExit::Budget));
            }
            RunExit::Halted if matches!(how, Slice::Run(_)) => {
                // Sleep until the next timer event (or briefly, to poll input).
                let now = self.board.clock.now();
                let wait = next_timer.map_or(Duration::from_millis(10), |t| {
                    Duration::from_nanos(t.saturating_sub(now)).min(Duration::from_millis(10))
                });
                if !wait.is_zero() && !self.board.interrupt_ready() {
                    std::thread::sleep(wait);
                }
            }
            _ => {}
        }
        Ok(SliceEnd::Exit(exit))
    }
}
