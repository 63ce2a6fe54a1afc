//! The PC machine: guest memory, buses, the board's devices and the CPU, wired together and
//! run until the guest powers off, resets (with `-no-reboot`) or asks to exit.

pub mod accel;
pub mod boot;
pub mod bus;
pub mod chardev;
pub mod clock;
pub mod config;
pub mod console;
pub mod control;
pub mod gdb;
mod images;
pub mod irq;
pub mod monitor;
pub mod pc;
pub mod qmp;
pub mod snapshot;
mod vcpu;

use config::{Accel, MachineConfig, SerialBackend};
use console::{ConsoleEvent, ConsoleInput, RawTerminal};
use ferrite_cpu::cpuid::Topology;
use accel::MachineVcpu;
use accel::{Vcpu, VmExit};
use ferrite_cpu::{Cpu, CpuModel};
use ferrite_firmware::MemoryLayout;
use ferrite_memory::GuestMemory;
use pc::{MachineEvent, PcBoard, SerialOut, VcpuBus};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::Duration;

/// Smallest RAM that holds the boot structures and a kernel.
const MIN_RAM: u64 = 2 << 20;
/// Most vCPUs a machine may have (APIC IDs stay below the xAPIC broadcast ID 0xFF).
pub const MAX_CPUS: u32 = 255;

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("invalid -cpu")]
    Cpu(#[from] ferrite_cpu::cpuid::CpuModelError),
    #[error("-m: {} KiB is too little memory (at least 2 MiB is needed)", .0 >> 10)]
    TooLittleMemory(u64),
    #[error("-m: {} MiB is too much memory for this machine (at most 1 TiB)", .0 >> 20)]
    TooMuchMemory(u64),
    #[error("-smp {0}: between 1 and {MAX_CPUS} CPUs are supported")]
    Smp(u32),
    #[error("-accel kvm: {0}")]
    Kvm(#[from] accel::kvm::KvmError),
    #[error("cannot listen for gdb on {addr}: {source}")]
    GdbListen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("-incoming: {0}")]
    Incoming(String),
    #[error("-loadvm: {0}")]
    Loadvm(String),
    #[error("-S waits for a debugger or a monitor to start the CPU: give -s, -gdb tcp::PORT, -qmp or -monitor too")]
    PausedWithoutGdb,
    #[error(transparent)]
    Memory(#[from] ferrite_memory::MemoryError),
    #[error("device wiring: {0}")]
    Bus(#[from] bus::BusError),
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    #[error("-device: no free PCI slot left")]
    PciFull,
    #[error("-device: {0}")]
    Pci(String),
    #[error(transparent)]
    Drive(#[from] ferrite_block::OpenError),
    #[error(transparent)]
    Ide(#[from] pc::storage::PlugError),
    #[error(transparent)]
    Chardev(#[from] chardev::ChardevError),
    #[error("-serial chardev:{0}: no -chardev with id={0}")]
    SerialChardev(String),
    #[error("-mon/-monitor: no -chardev with id={0}")]
    MonitorChardev(String),
    #[error("-netdev {id}: {source}")]
    Netdev {
        id: String,
        #[source]
        source: ferrite_net::NetError,
    },
    #[error("cannot open serial output '{path}': {source}")]
    SerialFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `-cpu help`: the models and feature names ferrite knows.
pub fn cpu_help() -> String {
    ferrite_cpu::cpuid::help()
}

/// Checks a `-cpu` specification without building a machine (the command line's early
/// check), returning the warnings QEMU would print for it (features TCG cannot provide).
pub fn validate_cpu_model(spec: &str) -> Result<Vec<String>, MachineError> {
    Ok(CpuModel::parse_spec(spec)?.warnings)
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
    /// The accelerator could not go on (reported on stderr).
    Failed,
}

impl Outcome {
    /// The emulator's exit status (QEMU's conventions).
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::PowerOff | Outcome::Reboot | Outcome::Quit | Outcome::Killed => 0,
            Outcome::TripleFault | Outcome::Failed => 1,
            Outcome::DebugExit(c) => c,
        }
    }
}

pub struct Machine {
    cfg: MachineConfig,
    model: CpuModel,
    topology: Topology,
    pub board: Arc<PcBoard>,
    /// The vCPUs, while no thread runs them (vCPU `i` has APIC ID `topology.apic_id(i)`).
    pub vcpus: Vec<MachineVcpu>,
    events: Receiver<MachineEvent>,
    /// The gdb server (`-s`, `-gdb`).
    gdb: Option<gdb::GdbServer>,
    /// Run state, breakpoints and settings of the debugger.
    pub(crate) debug: gdb::DebugState,
    /// The drives' images, opened once and kept across resets.
    drives: Vec<OpenDrive>,
    /// The IDE controller of the current board (its I/O is drained before the images close).
    ide: Arc<std::sync::Mutex<ferrite_hw::ide::PiixIde>>,
    /// The network cards' backends, opened once and kept across resets.
    nics: Vec<Arc<pc::network::Nic>>,
    /// Host backends of the virtio devices (disk images), opened once.
    virtio: pc::virtio::VirtioBackends,
    /// The current board's virtio devices with threads of their own.
    live_virtio: pc::virtio::LiveVirtio,
    /// What the monitor acts on.
    monitor: monitor::MonitorTargets,
    /// Jobs from the monitors, run on the machine thread.
    jobs: std::sync::mpsc::Receiver<control::Job>,
    pub(crate) control: control::Control,
    /// Set by a job that ends the machine (`quit`).
    pub(crate) finish: Option<Outcome>,
    /// The last state loaded was saved from a stopped guest, which stays stopped here.
    pub(crate) loaded_paused: bool,
    /// The vCPU threads, started on the first run.
    threads: Option<vcpu::VcpuThreads<MachineVcpu>>,
    /// Host thread ids of the vCPU threads (empty until they start).
    pub(crate) vcpu_tids: Vec<i32>,
    /// gdb's loop runs the machine (`-s`, `-gdb`).
    pub(crate) debugging: bool,
    /// The vCPU the human monitor's `info registers`, `x` and `gva2gpa` look at (`cpu N`).
    pub(crate) monitor_cpu: usize,
    /// `-incoming defer`: waiting for `migrate-incoming`.
    pub(crate) deferred_incoming: snapshot::incoming::Deferred,
}

/// A drive and its opened image (`None`: a CD-ROM drive without a disc).
#[derive(Clone)]
struct OpenDrive {
    cfg: config::IdeDriveConfig,
    disk: Option<Arc<dyn ferrite_block::Disk>>,
    format: Option<ferrite_block::ImageFormat>,
}

/// Opens every drive's image before the guest starts, so a bad image is an error naming
/// its file rather than a guest I/O error later.
fn open_drives(cfg: &MachineConfig) -> Result<Vec<OpenDrive>, MachineError> {
    cfg.ide_drives
        .iter()
        .map(|d| {
            let (disk, format) = match &d.image {
                Some(opts) => {
                    let opened = images::open_image(cfg, opts)?;
                    (Some(opened.disk), Some(opened.format))
                }
                None => (None, None),
            };
            Ok(OpenDrive { cfg: d.clone(), disk, format })
        })
        .collect()
}

/// The IDE positions as the controller takes them: `[channel][master, slave]`.
fn ide_drives(drives: &[OpenDrive]) -> [[Option<ferrite_hw::ide::IdeDrive>; 2]; 2] {
    use ferrite_hw::ide::{DriveKind, IdeDrive};
    let mut out: [[Option<IdeDrive>; 2]; 2] = Default::default();
    for (n, d) in drives.iter().enumerate() {
        let (kind, model) = match d.cfg.media {
            config::Media::Disk => match &d.disk {
                Some(disk) => (DriveKind::Disk(disk.clone()), "QEMU HARDDISK"),
                None => continue,
            },
            config::Media::Cdrom => (DriveKind::Cdrom(d.disk.clone()), "QEMU DVD-ROM"),
        };
        // Serial numbers as QEMU numbers its drives, so guests see stable names.
        let serial = format!("QM{:05}", n + 1);
        out[d.cfg.bus as usize & 1][d.cfg.unit as usize & 1] = Some(IdeDrive { kind, model: model.into(), serial });
    }
    out
}

/// How much of the guest `Machine::run_slice` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slice {
    /// Up to this many instructions per vCPU (0: only deliver a pending interrupt).
    Run(u64),
    /// One instruction of vCPU `cpu`; `irqs`: deliver a pending interrupt first.
    Step { cpu: usize, irqs: bool },
}

pub(crate) enum SliceEnd {
    /// vCPU `.0` stopped for this reason; the machine goes on.
    Exit(usize, VmExit),
    /// The machine is finished.
    Done(Outcome),
}

/// The serial console on the terminal, while the machine runs.
pub(crate) struct Console {
    _raw: Option<RawTerminal>,
    input: Option<ConsoleInput>,
    pending: Vec<u8>,
    /// The human monitor on the terminal, and whether it has the keyboard now.
    monitor: Option<console::StdioMonitor>,
    in_monitor: bool,
}

/// COM1's output into a `-chardev` (`-serial chardev:ID`).
struct ChardevOut(Arc<chardev::Chardev>);

impl std::io::Write for ChardevOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// COM1's input from a `-chardev`: bytes go to the UART as its FIFO has room; the console
/// loop wakes the backend every few milliseconds to offer the rest.
struct SerialFrontend(std::sync::Weak<PcBoard>);

impl chardev::Frontend for SerialFrontend {
    fn receive(&self, data: &[u8]) -> usize {
        self.0.upgrade().map_or(data.len(), |b| b.serial_input(data))
    }
}

fn serial_out(backend: &SerialBackend, virtio: &pc::virtio::VirtioBackends) -> Result<SerialOut, MachineError> {
    Ok(match backend {
        SerialBackend::Chardev(id) => Box::new(ChardevOut(serial_chardev(virtio, id)?)),
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

/// What `build` makes: the board, its vCPUs and where its events arrive.
struct Built {
    board: Arc<PcBoard>,
    vcpus: Vec<MachineVcpu>,
    events: Receiver<MachineEvent>,
    ide: Arc<std::sync::Mutex<ferrite_hw::ide::PiixIde>>,
    live_virtio: pc::virtio::LiveVirtio,
}

/// What a board is built from that outlives it: the opened drives, card backends and
/// virtio backends.
struct Backends<'a> {
    drives: &'a [OpenDrive],
    nics: &'a [Arc<pc::network::Nic>],
    virtio: &'a pc::virtio::VirtioBackends,
}

fn serial_chardev(virtio: &pc::virtio::VirtioBackends, id: &str) -> Result<Arc<chardev::Chardev>, MachineError> {
    virtio.chardev(id).map_err(|_| MachineError::SerialChardev(id.into()))
}

/// Fresh memory, devices and vCPUs with the boot image loaded (machine creation and reset
/// alike): the BSP at the kernel entry or the reset vector, the APs waiting for a start-up IPI.
fn build(cfg: &MachineConfig, model: &CpuModel, topology: Topology, backends: Backends) -> Result<Built, MachineError> {
    let n = cfg.cpus;
    let mut cpus: Vec<Cpu> = (0..n)
        .map(|i| {
            let mut c = Cpu::new(model.clone());
            c.apic_id = topology.apic_id(i);
            c.cpus = n;
            c.topology = topology;
            c.log_interrupts = cfg.log_interrupts;
            c.set_jit(cfg.jit);
            c
        })
        .collect();
    let layout = MemoryLayout::new(cfg.memory_bytes & !0xfff);
    let mut mem = GuestMemory::new(layout.below_4g, layout.above_4g)?;
    if let Some(bios) = &cfg.bios {
        boot::map_bios(&mut mem, bios)?;
    }
    let (tx, events) = channel();
    let spec = pc::BoardSpec {
        apic_ids: cpus.iter().map(|c| c.apic_id).collect(),
        attention: cpus.iter().map(|c| c.attention()).collect(),
        serial: serial_out(&cfg.serial, backends.virtio)?,
        debug_exit: cfg.debug_exit.map(|d| (d.iobase, d.iosize)),
        events: tx,
        boot_order: cfg.boot.order.iter().map(|d| cmos_boot_device(*d)).collect(),
        rtc_start_secs: clock::rtc_start_secs(cfg.rtc_base),
    };
    let board = PcBoard::new(mem, spec)?;
    if let SerialBackend::Chardev(id) = &cfg.serial {
        serial_chardev(backends.virtio, id)?.attach(Arc::new(SerialFrontend(Arc::downgrade(&board))));
    }
    let ide = pc::storage::plug_ide(&board, ide_drives(backends.drives))?;
    let live_virtio = plug_devices(cfg, &board, &backends)?;
    let state = boot::load(cfg, &board)?;
    for (i, c) in cpus.iter_mut().enumerate() {
        c.attach_tracking(board.mem.tracking().clone(), i as u32);
        if i == 0 {
            c.set_state(state.clone());
        } else {
            c.init();
        }
    }
    let vcpus = match cfg.accel {
        Accel::Tcg => cpus.into_iter().enumerate().map(|(i, c)| MachineVcpu::tcg(c, VcpuBus::new(board.clone(), i))).collect(),
        Accel::Kvm => {
            let vm = accel::kvm::KvmVm::new(board.mem.clone(), cfg.kernel_irqchip, cfg.kvm_tcg_fallback)?;
            if cfg.kernel_irqchip.lapic_in_kernel() {
                board.irq.use_external(Arc::new(accel::kvm::KvmIrqchip::new(vm.clone())));
            }
            let host_cpuid = cfg.cpu.split(',').next() == Some("host");
            let mut v = Vec::with_capacity(cpus.len());
            for (i, mut c) in cpus.into_iter().enumerate() {
                let k = accel::kvm::KvmVcpu::new(vm.clone(), i, &mut c, host_cpuid)?;
                v.push(MachineVcpu::kvm(c, VcpuBus::new(board.clone(), i), k));
            }
            v
        }
    };
    Ok(Built { board, vcpus, events, ide, live_virtio })
}

fn cmos_boot_device(d: config::BootDevice) -> ferrite_hw::rtc::cmos::BootDevice {
    use ferrite_hw::rtc::cmos::BootDevice as Cmos;
    match d {
        config::BootDevice::Floppy => Cmos::Floppy,
        config::BootDevice::HardDisk => Cmos::HardDisk,
        config::BootDevice::Cdrom => Cmos::Cdrom,
        config::BootDevice::Network => Cmos::Network,
    }
}

/// The PCI devices of `-device` and then the network cards, at their `addr=` or in the first
/// free slots from 2 on (slots 0 and 1 hold the chipset), as QEMU places them.
fn plug_devices(cfg: &MachineConfig, board: &PcBoard, backends: &Backends) -> Result<pc::virtio::LiveVirtio, MachineError> {
    use ferrite_hw::pci::{DevFn, SharedPciDevice};
    let mut next_slot = 2;
    let mut plug = |addr: Option<(u8, u8)>, dev: SharedPciDevice, state: Vec<Arc<dyn snapshot::registry::Stateful>>| -> Result<(), MachineError> {
        let devfn = match addr {
            Some((slot, func)) => DevFn::new(slot, func),
            None => {
                while next_slot < 32 && board.pci_slot_taken(next_slot) {
                    next_slot += 1;
                }
                DevFn::new(next_slot, 0)
            }
        };
        let devfn = devfn.ok_or(MachineError::PciFull)?;
        board.plug_pci_with_state(devfn, dev, state).map_err(|e| MachineError::Pci(e.to_string()))
    };
    let mut virtio = pc::virtio::VirtioFactory::new(backends.virtio, cfg.cpus);
    for d in &cfg.pci_devices {
        let (dev, state): (SharedPciDevice, Vec<Arc<dyn snapshot::registry::Stateful>>) = match &d.kind {
            config::PciDeviceKind::Edu => {
                let edu = Arc::new(std::sync::Mutex::new(ferrite_hw::edu::Edu::new()));
                (edu.clone(), vec![edu])
            }
            kind => virtio.build(kind)?.ok_or_else(|| MachineError::Pci(format!("{kind:?} cannot be built")))?,
        };
        plug(d.addr, dev, state)?;
    }
    for nic in backends.nics {
        let (card, state) = nic.new_card().map_err(MachineError::Pci)?;
        plug(nic.config().addr, card, state)?;
    }
    Ok(virtio.live)
}

/// Opens every card's backend before the guest starts (a host port in use is an error now).
fn open_nics(cfg: &MachineConfig) -> Result<Vec<Arc<pc::network::Nic>>, MachineError> {
    cfg.nics
        .iter()
        .map(|n| {
            pc::network::Nic::open(n).map_err(|source| MachineError::Netdev {
                id: n.netdev.as_ref().map(|d| d.id.clone()).unwrap_or_default(),
                source,
            })
        })
        .collect()
}

/// The run state a machine goes to once it is built and any saved state (`-loadvm`,
/// `-incoming`) is loaded: stopped for gdb or a monitor with `-S`, running otherwise.
fn run_state_after_start(cfg: &MachineConfig) -> control::RunState {
    if cfg.start_paused {
        control::RunState::Prelaunch
    } else {
        control::RunState::Running
    }
}

impl Machine {
    pub fn new(mut cfg: MachineConfig) -> Result<Self, MachineError> {
        if cfg.kernel.is_none() && cfg.bios.is_none() {
            // As QEMU: without a kernel to load directly, the machine starts SeaBIOS.
            cfg.bios = Some(config::default_bios().ok_or(boot::BootError::NothingToBoot)?);
        }
        let model = CpuModel::parse(&cfg.cpu)?;
        if cfg.memory_bytes < MIN_RAM {
            return Err(MachineError::TooLittleMemory(cfg.memory_bytes));
        }
        if cfg.memory_bytes > 1 << 40 {
            return Err(MachineError::TooMuchMemory(cfg.memory_bytes));
        }
        if cfg.cpus == 0 || cfg.cpus > MAX_CPUS {
            return Err(MachineError::Smp(cfg.cpus));
        }
        if cfg.accel == Accel::Kvm {
            if let Err(e) = accel::kvm::usable() {
                match cfg.accel_fallback.first().copied() {
                    Some(fallback) => {
                        eprintln!("ferrite: note: {e}; falling back to {}", format!("{fallback:?}").to_lowercase());
                        cfg.accel = fallback;
                    }
                    None => return Err(MachineError::Kvm(e)),
                }
            }
        }
        if cfg.start_paused && cfg.gdb.is_none() && cfg.monitors.is_empty() {
            return Err(MachineError::PausedWithoutGdb);
        }
        if let Some(tag) = &cfg.loadvm {
            // A missing snapshot is an error before anything starts.
            snapshot::named::SnapshotDir::of_config(&cfg).open(tag).map_err(|e| MachineError::Loadvm(e.to_string()))?;
        }
        let topology = cfg.topology();
        let drives = open_drives(&cfg)?;
        let nics = open_nics(&cfg)?;
        let chardevs = cfg.chardevs.iter().map(chardev::Chardev::open).collect::<Result<Vec<_>, _>>()?;
        let virtio = pc::virtio::VirtioBackends::open(&cfg, chardevs.clone())?;
        let backends = Backends { drives: &drives, nics: &nics, virtio: &virtio };
        let Built { board, vcpus, events, ide, live_virtio } = build(&cfg, &model, topology, backends)?;
        let gdb = cfg.gdb.as_deref().map(gdb::GdbServer::bind).transpose()?;
        let debug = gdb::DebugState::new(cfg.start_paused);
        // The monitors answer from here on, so a machine that loads a state first says so
        // already (a client polling `query-status` for the end of `inmigrate` must not see
        // `running` before the load began).
        let initial = match (&cfg.incoming, &cfg.loadvm) {
            (Some(_), _) => control::RunState::Inmigrate,
            (None, Some(_)) => control::RunState::RestoreVm,
            (None, None) => run_state_after_start(&cfg),
        };
        let control::ControlPort { jobs, control } = control::Control::channel(initial);
        let monitor = monitor::MonitorTargets::new(cfg.memory_bytes & !0xfff, control.clone());
        monitor.attach(board.wiring.clone(), live_virtio.balloon.clone());
        for m in &cfg.monitors {
            let chardev = chardevs.iter().find(|c| c.id() == m.chardev).ok_or_else(|| MachineError::MonitorChardev(m.chardev.clone()))?;
            match m.mode {
                config::MonitorMode::Readline => monitor::Monitor::start(chardev.clone(), monitor.clone()),
                config::MonitorMode::Control => qmp::QmpServer::start(chardev.clone(), monitor.clone()),
            }
        }
        let poll = cfg.pci_devices.iter().find_map(|d| match &d.kind {
            config::PciDeviceKind::VirtioBalloon(b) if b.stats_interval_secs > 0 => Some(b.stats_interval_secs),
            _ => None,
        });
        if let Some(secs) = poll {
            monitor.poll_balloon_stats(std::time::Duration::from_secs(u64::from(secs)));
        }
        Ok(Machine {
            cfg,
            model,
            topology,
            board,
            vcpus,
            events,
            gdb,
            debug,
            drives,
            ide,
            nics,
            virtio,
            live_virtio,
            monitor,
            jobs,
            control,
            finish: None,
            loaded_paused: false,
            threads: None,
            vcpu_tids: Vec::new(),
            debugging: false,
            monitor_cpu: 0,
            deferred_incoming: Default::default(),
        })
    }

    /// Reboots: every vCPU back to its power-on state with fresh memory and devices (the BSP
    /// at the reset vector or the kernel entry again).
    fn reset(&mut self) -> Result<(), MachineError> {
        self.replace_board()?;
        // The old board's timer thread ended with it.
        pc::spawn_timer_thread(self.board.clone());
        Ok(())
    }

    /// A freshly built board and vCPUs (memory, devices, boot image) in place of the current
    /// ones, whose disk requests in flight finish first. The caller starts the new board's
    /// timer thread (after loading a state into it, for `loadvm`).
    pub(crate) fn replace_board(&mut self) -> Result<(), MachineError> {
        // Requests in flight finish against the old controller before the new one starts.
        pc::interrupts::lock(&self.ide).drain();
        self.live_virtio.quiesce();
        let backends = Backends { drives: &self.drives, nics: &self.nics, virtio: &self.virtio };
        let Built { board, vcpus, events, ide, live_virtio } = build(&self.cfg, &self.model, self.topology, backends)?;
        self.board.wiring.retire();
        self.board = board;
        self.vcpus = vcpus;
        self.events = events;
        self.ide = ide;
        self.live_virtio = live_virtio;
        self.monitor.attach(self.board.wiring.clone(), self.live_virtio.balloon.clone());
        Ok(())
    }

    /// Where the gdb server listens, if there is one.
    pub fn gdb_address(&self) -> Option<std::net::SocketAddr> {
        self.gdb.as_ref().map(|g| g.local_addr())
    }

    /// Runs the guest to the end, with the console on the terminal when serial is stdio.
    pub fn run(&mut self) -> Result<Outcome, MachineError> {
        let stdio = self.cfg.serial == SerialBackend::Stdio;
        let terminal = stdio || self.cfg.stdio_monitor;
        let raw = if terminal { RawTerminal::enable() } else { None };
        let input = terminal.then(|| ConsoleInput::spawn(raw.is_some()));
        let monitor = self.cfg.stdio_monitor.then(|| {
            let targets = self.monitor.clone();
            console::StdioMonitor::spawn(move |line| targets.execute(line))
        });
        // `-monitor stdio` with the serial port elsewhere: the monitor has the terminal.
        let in_monitor = monitor.is_some() && !stdio;
        if in_monitor {
            if let Some(m) = &monitor {
                m.enter();
            }
        }
        let mut console = Console { _raw: raw, input, pending: Vec::new(), monitor, in_monitor };
        self.start_from_saved_state()?;
        let timers = pc::spawn_timer_thread(self.board.clone());
        let result = if let Some(mut server) = self.gdb.take() {
            self.debugging = true;
            // gdb stops and starts the guest at will: frames reach it throughout, as they
            // reach a halted machine's card (gdb rules out snapshots and migration).
            for nic in &self.nics {
                nic.accept_frames(true);
            }
            let result = gdb::run(self, &mut server, &mut console);
            self.gdb = Some(server);
            result
        } else {
            self.run_threads(&mut console)
        };
        self.board.wiring.retire();
        timers.join().ok();
        self.flush_drives();
        // What the guest printed last and the monitors' last answers reach their hosts.
        self.virtio.drain_chardevs(Duration::from_secs(1));
        for nic in &self.nics {
            nic.detach();
        }
        result
    }

    /// Finishes the disks' queued I/O and writes out what the images cache (qcow2 metadata),
    /// so an image is consistent when ferrite exits, whatever the guest last did.
    pub fn flush_drives(&self) {
        pc::interrupts::lock(&self.ide).drain();
        self.live_virtio.quiesce();
        // An image handed over in a migration was flushed then, and is not ours to write.
        for (path, disk) in self.images() {
            if !disk.read_only() {
                if let Err(e) = disk.flush() {
                    eprintln!("ferrite: flushing '{}' failed: {e}", path.display());
                }
            }
        }
    }

    /// Passes console input to COM1; `Some` when the user quit.
    pub(crate) fn service_console(&mut self, console: &mut Console) -> Option<Outcome> {
        if let SerialBackend::Chardev(id) = &self.cfg.serial {
            // The UART may have drained its FIFO: let the backend offer what waits.
            if let Ok(c) = self.virtio.chardev(id) {
                c.wake();
            }
        }
        if let Some(input) = console.input.as_mut() {
            for ev in input.try_events() {
                match ev {
                    ConsoleEvent::Input(bytes) => match (&mut console.monitor, console.in_monitor) {
                        (Some(m), true) => m.feed(&bytes),
                        _ => console.pending.extend(bytes),
                    },
                    ConsoleEvent::Quit => return Some(Outcome::Quit),
                    // Only when the serial port shares the terminal is there anything to switch to.
                    ConsoleEvent::SwitchMonitor if self.cfg.serial == SerialBackend::Stdio => {
                        if let Some(m) = &console.monitor {
                            console.in_monitor = !console.in_monitor;
                            if console.in_monitor {
                                m.enter();
                            } else {
                                print!("\r\n");
                            }
                        }
                    }
                    ConsoleEvent::SwitchMonitor => {}
                }
            }
        }
        if !console.pending.is_empty() {
            let n = self.board.serial_input(&console.pending);
            console.pending.drain(..n);
        }
        None
    }

    /// Runs the vCPUs on the calling thread, one after the other (the debugger's loop, like
    /// QEMU's single-threaded TCG), for one slice; handles resets, power-off and exits, and
    /// sleeps while every vCPU halts.
    pub(crate) fn run_slice(&mut self, how: Slice) -> Result<SliceEnd, MachineError> {
        if let Ok(ev) = self.events.try_recv() {
            if let Some(outcome) = self.handle_event(ev)? {
                return Ok(SliceEnd::Done(outcome));
            }
            return Ok(SliceEnd::Exit(0, VmExit::Kicked));
        }
        let mut all_halted = true;
        let range = match how {
            Slice::Run(_) => 0..self.vcpus.len(),
            Slice::Step { cpu, .. } => cpu..cpu + 1,
        };
        for i in range {
            let v = &mut self.vcpus[i];
            if self.board.irq.cpus[i].attention.kick.swap(false, std::sync::atomic::Ordering::AcqRel) {
                v.take_lapic_signals();
            }
            let exit = match how {
                Slice::Run(budget) => v.run_budget(budget),
                Slice::Step { irqs, .. } => v.step(irqs),
            };
            match exit {
                VmExit::Shutdown => self.board.wiring.raise(MachineEvent::TripleFault),
                VmExit::Failed => self.board.wiring.raise(MachineEvent::AcceleratorFailed),
                VmExit::Debug => return Ok(SliceEnd::Exit(i, VmExit::Debug)),
                VmExit::Halted => {}
                VmExit::Kicked => all_halted = false,
            }
            if self.board.wiring.stopping() {
                // The event is in the channel: the next slice acts on it.
                return Ok(SliceEnd::Exit(i, VmExit::Kicked));
            }
        }
        if all_halted {
            if matches!(how, Slice::Run(_)) {
                // Sleep until an interrupt reaches a vCPU (or briefly, to poll input).
                let deadline = std::time::Instant::now() + Duration::from_millis(10);
                while std::time::Instant::now() < deadline
                    && !self.vcpus.iter().zip(&self.board.irq.cpus).any(|(v, l)| vcpu::has_work(v, l))
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            return Ok(SliceEnd::Exit(0, VmExit::Halted));
        }
        Ok(SliceEnd::Exit(0, VmExit::Kicked))
    }
}
