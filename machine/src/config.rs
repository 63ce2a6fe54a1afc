//! `MachineConfig`: what to build, as plain data (the command line produces it; tests and
//! tools can write it directly).

pub use ferrite_cpu::{JitConfig, JitMode};
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
    /// A `-chardev` by id (`-serial chardev:ID`).
    Chardev(String),
}

/// Where the RTC's time starts (`-rtc base=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RtcBase {
    /// The host's time in UTC (QEMU's default).
    #[default]
    Utc,
    /// The host's local time (what Windows guests expect).
    LocalTime,
    /// A fixed start date, seconds since the epoch.
    Date(i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Accel {
    /// ferrite's own CPU emulation (the name QEMU uses).
    #[default]
    Tcg,
    Kvm,
}

/// Whose interrupt controllers a KVM guest uses (QEMU's `kernel-irqchip=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelIrqchip {
    /// Ferrite's own PIC, IOAPIC and local APICs, the ones TCG uses.
    Off,
    /// KVM's local APICs; ferrite's PIC and IOAPIC.
    Split,
    /// KVM's PIC, IOAPIC and local APICs.
    On,
}

impl KernelIrqchip {
    /// KVM's local APICs serve the vCPUs (INIT, SIPI and HLT stay in the kernel).
    pub fn lapic_in_kernel(self) -> bool {
        self != KernelIrqchip::Off
    }

    /// KVM's PIC and IOAPIC take the device lines.
    pub fn pic_in_kernel(self) -> bool {
        self == KernelIrqchip::On
    }
}

/// QEMU's isa-debug-exit device: a guest write of V exits with status (V << 1) | 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugExit {
    pub iobase: u16,
    pub iosize: u16,
}

/// PCI devices `-device` adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PciDeviceKind {
    /// QEMU's educational device (docs/specs/edu.rst): BAR MMIO, INTx, MSI and DMA.
    Edu,
    /// virtio-rng-pci: host entropy for the guest's /dev/hwrng.
    VirtioRng(VirtioTransport),
    /// virtio-blk-pci (`-device virtio-blk-pci,drive=`, `-drive if=virtio`).
    VirtioBlk(VirtioBlkConfig),
    /// virtio-serial-pci with its `virtconsole` / `virtserialport` ports.
    VirtioSerial(VirtioSerialConfig),
    /// virtio-balloon-pci.
    VirtioBalloon(VirtioBalloonConfig),
}

/// A `-device virtio-serial-pci` and the ports on its bus.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VirtioSerialConfig {
    pub transport: VirtioTransport,
    /// `max_ports=` (QEMU's default 31).
    pub max_ports: u32,
    pub ports: Vec<SerialPortConfig>,
}

/// A `-device virtconsole` or `-device virtserialport`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialPortConfig {
    /// The `-chardev` id it is connected to.
    pub chardev: String,
    /// `name=`: what the guest sees in /sys/class/virtio-ports/*/name.
    pub name: Option<String>,
    /// `virtconsole` (the guest's hvc) rather than `virtserialport`.
    pub console: bool,
}

/// A `-device virtio-balloon-pci`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioBalloonConfig {
    pub transport: VirtioTransport,
    /// `deflate-on-oom=on`: the guest may deflate by itself under memory pressure.
    pub deflate_on_oom: bool,
    /// `free-page-reporting=on`: pages the guest frees go back to the host by themselves.
    pub free_page_reporting: bool,
    /// `guest-stats-polling-interval=` in seconds (0: statistics only when asked).
    pub stats_interval_secs: u32,
}

/// A `-chardev`: where a character device's bytes go on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChardevConfig {
    pub id: String,
    pub backend: ChardevBackend,
}

/// Which protocol a monitor speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorMode {
    /// The human monitor (HMP): `-monitor`, `-mon mode=readline`.
    Readline,
    /// QMP: `-qmp`, `-mon mode=control`.
    Control,
}

/// A monitor on the `-chardev` with id `chardev`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorConfig {
    pub chardev: String,
    pub mode: MonitorMode,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChardevBackend {
    /// Output dropped, no input.
    Null,
    /// Output appended to a file, no input.
    File(PathBuf),
    /// A stream socket: `unix` path or `tcp` host:port; `server`: listen (one client at a
    /// time) instead of connecting.
    Socket { address: SocketAddress, server: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketAddress {
    Unix(PathBuf),
    Tcp(String),
}

/// One virtio disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioBlkConfig {
    pub image: ferrite_block::DriveOptions,
    pub transport: VirtioTransport,
    /// `num-queues=`; `None`: one per vCPU (QEMU's default since 5.2), at most 16.
    pub num_queues: Option<u16>,
    /// `queue-size=` (QEMU's default 256).
    pub queue_size: u16,
    /// `serial=`: what the guest reads as the disk's ID (/sys/block/vdX/serial).
    pub serial: String,
}

impl VirtioBlkConfig {
    pub fn new(image: ferrite_block::DriveOptions) -> Self {
        VirtioBlkConfig { image, transport: VirtioTransport::default(), num_queues: None, queue_size: 256, serial: String::new() }
    }
}

/// QEMU's `disable-legacy=` / `disable-modern=` of a virtio-pci device; the default is a
/// transitional device offering both interfaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioTransport {
    pub disable_legacy: bool,
    pub disable_modern: bool,
    /// `packed=on`: offer packed virtqueues (QEMU's default is off).
    pub packed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciDeviceConfig {
    pub kind: PciDeviceKind,
    /// `addr=SLOT.FN`; the first free slot otherwise.
    pub addr: Option<(u8, u8)>,
}

/// A network card model (`-device MODEL`, `-nic ...,model=MODEL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicModel {
    /// Intel 82540EM, QEMU's `e1000` (the pc machine's default card).
    E1000,
    /// `virtio-net-pci`.
    VirtioNet(VirtioTransport),
}

/// A `-netdev` a card is connected to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetdevConfig {
    pub id: String,
    pub options: ferrite_net::NetdevOptions,
}

/// One network card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicConfig {
    pub model: NicModel,
    pub mac: [u8; 6],
    /// `addr=SLOT.FN`; the first free slot otherwise.
    pub addr: Option<(u8, u8)>,
    /// The backend; `None`: frames go nowhere (QEMU's card without a peer).
    pub netdev: Option<NetdevConfig>,
}

/// QEMU's first automatic MAC address, 52:54:00:12:34:56; the n-th card without `mac=` gets
/// the last byte plus n.
pub fn default_mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0x12, 0x34, 0x56u8.wrapping_add(n)]
}

/// What an IDE position holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    Disk,
    Cdrom,
}

/// One drive on the PIIX IDE controller (`-drive if=ide`, `-hda`, `-cdrom`, `-device ide-hd`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdeDriveConfig {
    /// Channel: 0 primary (`ide.0`), 1 secondary (`ide.1`).
    pub bus: u8,
    /// 0 master, 1 slave.
    pub unit: u8,
    pub media: Media,
    /// The image; `None` for a CD-ROM drive without a disc.
    pub image: Option<ferrite_block::DriveOptions>,
}

impl IdeDriveConfig {
    /// QEMU's `index=`: bus * 2 + unit.
    pub fn index(&self) -> u8 {
        self.bus * 2 + self.unit
    }
}

/// A device firmware may boot from, in QEMU's `-boot order=` letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootDevice {
    /// `a`
    Floppy,
    /// `c`
    HardDisk,
    /// `d`
    Cdrom,
    /// `n`
    Network,
}

/// `-boot`: what the firmware tries, in order, and whether it offers its boot menu.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootConfig {
    pub order: Vec<BootDevice>,
    pub menu: bool,
}

impl Default for BootConfig {
    fn default() -> Self {
        // QEMU's default for the pc machine: "cad" (hard disk, floppy, CD-ROM), no menu.
        BootConfig { order: vec![BootDevice::HardDisk, BootDevice::Floppy, BootDevice::Cdrom], menu: false }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineConfig {
    pub memory_bytes: u64,
    /// Number of vCPUs.
    pub cpus: u32,
    /// `-smp sockets=,cores=,threads=` (cores per socket, threads per core); missing values
    /// are derived from `cpus` as QEMU does.
    pub sockets: Option<u32>,
    pub cores: Option<u32>,
    pub threads: Option<u32>,
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
    pub pci_devices: Vec<PciDeviceConfig>,
    /// Drives on the IDE controller, at distinct positions.
    pub ide_drives: Vec<IdeDriveConfig>,
    /// Network cards, in PCI slot order after `pci_devices`.
    pub nics: Vec<NicConfig>,
    /// `-chardev` backends, by id.
    pub chardevs: Vec<ChardevConfig>,
    /// Monitors (`-monitor`, `-qmp`, `-mon`), each on a `-chardev`.
    pub monitors: Vec<MonitorConfig>,
    /// The human monitor on the terminal (`-serial mon:stdio`, `-nographic` without `-serial`
    /// or `-monitor`, `-monitor stdio`): Ctrl-A C switches to it when the serial port shares
    /// the terminal.
    pub stdio_monitor: bool,
    /// `-incoming URI`: start from a saved machine state (`file:PATH`, `exec:COMMAND`,
    /// `tcp:HOST:PORT`), or `defer`: wait in `inmigrate` for QMP's `migrate-incoming`.
    pub incoming: Option<String>,
    /// `-loadvm NAME`: start from a named snapshot.
    pub loadvm: Option<String>,
    /// `-snapshot-dir DIR`: where named snapshots live (default: under $XDG_STATE_HOME).
    pub snapshot_dir: Option<PathBuf>,
    pub boot: BootConfig,
    pub accel: Accel,
    /// Accelerators to try, in order, when `accel` cannot run here (QEMU's `accel=kvm:tcg`).
    pub accel_fallback: Vec<Accel>,
    /// KVM: whose interrupt controllers serve the guest (`kernel-irqchip=`).
    pub kernel_irqchip: KernelIrqchip,
    /// KVM: ferrite's own CPU runs the instructions the host's KVM cannot emulate
    /// (`-accel kvm,tcg-fallback=on`, the default); off, such a failure stops the machine
    /// with a report.
    pub kvm_tcg_fallback: bool,
    /// TCG's translator: mode (`-accel tcg,jit=`), code cache size (`tb-size=`).
    pub jit: ferrite_cpu::JitConfig,
    /// gdbstub listen address (`-s` is 127.0.0.1:1234).
    pub gdb: Option<String>,
    /// Start with the CPU stopped (`-S`).
    pub start_paused: bool,
    /// A guest power-off stops the machine instead of ending ferrite (`-no-shutdown`): the
    /// monitor's `system_reset` starts it again, `quit` ends it.
    pub no_shutdown: bool,
    /// Log every interrupt and exception to stderr (`-d int`).
    pub log_interrupts: bool,
    /// The guest's name (`-name`).
    pub name: Option<String>,
    /// The machine's UUID (`-uuid`), for the firmware (fw_cfg) and the monitor.
    pub uuid: Option<[u8; 16]>,
    /// The RTC's time base (`-rtc base=`).
    pub rtc_base: RtcBase,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            // QEMU's default for the pc machine.
            memory_bytes: 128 << 20,
            cpus: 1,
            sockets: None,
            cores: None,
            threads: None,
            cpu: "max".into(),
            kernel: None,
            initrd: None,
            append: String::new(),
            bios: None,
            serial: SerialBackend::Stdio,
            no_reboot: false,
            debug_exit: None,
            pci_devices: Vec::new(),
            ide_drives: Vec::new(),
            nics: Vec::new(),
            chardevs: Vec::new(),
            monitors: Vec::new(),
            incoming: None,
            loadvm: None,
            snapshot_dir: None,
            stdio_monitor: false,
            boot: BootConfig::default(),
            accel: Accel::Tcg,
            accel_fallback: Vec::new(),
            kernel_irqchip: KernelIrqchip::Off,
            kvm_tcg_fallback: true,
            jit: ferrite_cpu::JitConfig::from_env(),
            gdb: None,
            start_paused: false,
            no_shutdown: false,
            log_interrupts: false,
            name: None,
            uuid: None,
            rtc_base: RtcBase::Utc,
        }
    }
}

impl MachineConfig {
    /// The CPU topology: QEMU's rules (since 6.2) for what `-smp` leaves out: threads default
    /// to 1, then cores are preferred over sockets, so that sockets * cores * threads covers
    /// every CPU.
    pub fn topology(&self) -> ferrite_cpu::cpuid::Topology {
        let n = self.cpus.max(1);
        let threads = self.threads.unwrap_or(1).max(1);
        let (sockets, cores) = match (self.sockets, self.cores) {
            (Some(s), Some(c)) => (s, c),
            (Some(s), None) => (s, n.div_ceil(s * threads)),
            (None, Some(c)) => (n.div_ceil(c * threads), c),
            (None, None) => (1, n.div_ceil(threads)),
        };
        ferrite_cpu::cpuid::Topology { sockets: sockets.max(1), cores: cores.max(1), threads }
    }
}

/// The firmware used when neither `-kernel` nor `-bios` is given: SeaBIOS, from the guest
/// cache `scripts/fetch-guests` fills (`$FERRITE_GUEST_DIR` or `~/.cache/ferrite/guests`),
/// or from Debian's `seabios` package.
pub fn default_bios() -> Option<PathBuf> {
    let cache = std::env::var_os("FERRITE_GUEST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ferrite/guests")));
    cache
        .map(|d| d.join("bios.bin"))
        .into_iter()
        .chain([PathBuf::from("/usr/share/seabios/bios.bin")])
        .find(|p| p.is_file())
}
