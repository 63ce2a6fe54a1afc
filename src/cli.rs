//! The command line: QEMU's spellings (`-m 512 -kernel X -nographic`) and clap's long options
//! (`--memory 512M --kernel X`) alike. QEMU accepts every option with one dash or two; clap
//! wants two for long names, so single-dash long options are rewritten before parsing.

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use ferrite_machine::config::{Accel, DebugExit, MachineConfig, MonitorConfig, MonitorMode, PciDeviceConfig, PciDeviceKind, SerialBackend};
use crate::net_args::Network;
use crate::storage_args::{parse_boot, Storage};
use ferrite_machine::config::Media;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "ferrite", about = "A full-system x86 emulator", disable_help_flag = true, disable_version_flag = true)]
struct Args {
    /// Print help.
    #[arg(short = 'h', long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Guest RAM: a number of MiB, or with a suffix (512M, 4G); also size=512M.
    #[arg(short = 'm', long = "memory", value_name = "SIZE")]
    memory: Option<String>,
    /// Number of CPUs (N or cpus=N,...).
    #[arg(long = "smp", value_name = "N")]
    smp: Option<String>,
    /// Machine type: pc (options: accel=tcg|kvm).
    #[arg(short = 'M', long = "machine", value_name = "TYPE[,accel=..]")]
    machine: Option<String>,
    /// CPU model (see -cpu help) with +feature, -feature, feature=on|off, vendor=, model-id=,
    /// family=, model=, stepping=, level=, xlevel=, phys-bits=, check, enforce.
    #[arg(long = "cpu", value_name = "MODEL")]
    cpu: Option<String>,
    /// Accelerator: tcg (ferrite's CPU emulation) or kvm; several are tried in order.
    #[arg(long = "accel", value_name = "tcg|kvm[,OPTS]")]
    accel: Vec<String>,
    /// Print the version ("ferrite emulator version X.Y.Z", QEMU's format) and exit.
    #[arg(long = "version")]
    version: bool,
    /// Memory overcommit: mem-lock=on|off,cpu-pm=on|off.
    #[arg(long = "overcommit", value_name = "OPTS")]
    overcommit: Option<String>,
    /// The guest's name: NAME[,process=P][,debug-threads=on|off].
    #[arg(long = "name", value_name = "NAME")]
    name: Option<String>,
    /// The machine's UUID (handed to the firmware for SMBIOS).
    #[arg(long = "uuid", value_name = "UUID")]
    uuid: Option<String>,
    /// The RTC: base=utc|localtime|DATE[,clock=host|rt|vm][,driftfix=none|slew].
    #[arg(long = "rtc", value_name = "OPTS")]
    rtc: Option<String>,
    /// Stop the guest instead of exiting when it powers off (not implemented yet: noted).
    #[arg(long = "no-shutdown")]
    no_shutdown: bool,
    /// Run in the background once the machine is set up.
    #[arg(long = "daemonize")]
    daemonize: bool,
    /// Write the process ID to FILE.
    #[arg(long = "pidfile", value_name = "FILE")]
    pidfile: Option<PathBuf>,
    /// Write -d logging to FILE instead of stderr.
    #[arg(short = 'D', value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Device tree blob (refused: x86 machines describe themselves with ACPI).
    #[arg(long = "dtb", value_name = "FILE")]
    dtb: Option<PathBuf>,
    /// Same as -accel kvm.
    #[arg(long = "enable-kvm")]
    enable_kvm: bool,
    /// Linux bzImage or multiboot kernel to boot directly.
    #[arg(long = "kernel", value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// Initial ramdisk (or multiboot modules, comma separated).
    #[arg(long = "initrd", value_name = "FILE")]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long = "append", value_name = "CMDLINE")]
    append: Option<String>,
    /// Firmware ROM image, mapped below 4 GiB and at 0xE0000.
    #[arg(long = "bios", value_name = "FILE")]
    bios: Option<PathBuf>,
    /// No graphical output: the serial port goes to the terminal.
    #[arg(long = "nographic")]
    nographic: bool,
    /// Exit instead of rebooting.
    #[arg(long = "no-reboot")]
    no_reboot: bool,
    /// Serial port backend: stdio, null, none or file:PATH.
    #[arg(long = "serial", value_name = "DEV")]
    serial: Option<String>,
    /// Add a device (supported: isa-debug-exit[,iobase=N][,iosize=N]).
    #[arg(long = "device", value_name = "DRIVER[,OPTS]")]
    device: Vec<String>,
    /// Don't create default devices.
    #[arg(long = "nodefaults")]
    nodefaults: bool,
    /// Display backend (only none is available).
    #[arg(long = "display", value_name = "TYPE")]
    display: Option<String>,
    /// Wait for gdb on tcp::1234.
    #[arg(short = 's')]
    gdb_default: bool,
    /// Wait for gdb on the given address (tcp::PORT or tcp:HOST:PORT).
    #[arg(long = "gdb", value_name = "DEV")]
    gdb: Option<String>,
    /// Debug logging: int (every interrupt and exception, to stderr).
    #[arg(short = 'd', value_name = "ITEMS")]
    log: Option<String>,
    /// Don't start the CPU: wait for the debugger to continue.
    #[arg(short = 'S')]
    paused: bool,
    /// A drive: file=PATH[,if=ide|none][,index=N][,media=disk|cdrom][,format=raw|qcow2]
    /// [,readonly=on][,cache=writeback|none|writethrough|directsync|unsafe][,snapshot=on][,id=ID].
    #[arg(long = "drive", value_name = "OPTS")]
    drive: Vec<String>,
    /// Disk image as IDE primary master.
    #[arg(long = "hda", value_name = "FILE")]
    hda: Option<PathBuf>,
    /// Disk image as IDE primary slave.
    #[arg(long = "hdb", value_name = "FILE")]
    hdb: Option<PathBuf>,
    /// Disk image as IDE secondary master.
    #[arg(long = "hdc", value_name = "FILE")]
    hdc: Option<PathBuf>,
    /// Disk image as IDE secondary slave.
    #[arg(long = "hdd", value_name = "FILE")]
    hdd: Option<PathBuf>,
    /// CD-ROM image (IDE secondary master).
    #[arg(long = "cdrom", value_name = "FILE")]
    cdrom: Option<PathBuf>,
    /// Firmware boot order and menu: [order=]LETTERS (c disk, d CD-ROM, a floppy, n network)[,menu=on|off].
    #[arg(long = "boot", value_name = "OPTS")]
    boot: Option<String>,
    /// Write to temporary overlays instead of the disk images.
    #[arg(long = "snapshot")]
    snapshot: bool,
    /// A network backend: user|socket|tap,id=ID[,OPTIONS] (for -device e1000,netdev=ID).
    #[arg(long = "netdev", value_name = "TYPE,id=ID,..")]
    netdev: Vec<String>,
    /// A card and its backend at once: [user|socket|tap][,model=e1000][,mac=MAC][,OPTIONS], or none.
    #[arg(long = "nic", value_name = "TYPE,..")]
    nic: Vec<String>,
    /// Legacy networking: nic[,model=][,macaddr=] plus one backend (user|socket|tap[,OPTIONS]), or none.
    #[arg(long = "net", value_name = "nic|TYPE,..")]
    net: Vec<String>,
    /// A character device: socket,id=ID,path=P|port=N[,server=on] | file,id=ID,path=P | null,id=ID.
    #[arg(long = "chardev", value_name = "BACKEND,id=ID,..")]
    chardev: Vec<String>,
    /// The human monitor on a socket: unix:PATH,server=on,wait=off | tcp:[HOST]:PORT,server=on,wait=off | none.
    #[arg(long = "monitor", value_name = "DEV")]
    monitor: Vec<String>,
    /// QMP on a socket: unix:PATH,server=on,wait=off | tcp:[HOST]:PORT,server=on,wait=off.
    #[arg(long = "qmp", value_name = "DEV")]
    qmp: Vec<String>,
    /// Start from a saved machine state: file:PATH | exec:COMMAND (whose output is the state) |
    /// tcp:HOST:PORT | defer (wait for QMP's migrate-incoming).
    #[arg(long = "incoming", value_name = "URI")]
    incoming: Option<String>,
    /// Start from the named snapshot NAME (see savevm).
    #[arg(long = "loadvm", value_name = "NAME")]
    loadvm: Option<String>,
    /// Where named snapshots live (default: $XDG_STATE_HOME/ferrite/snapshots/NAME, NAME from -name or "default").
    #[arg(long = "snapshot-dir", value_name = "DIR")]
    snapshot_dir: Option<PathBuf>,
    /// A monitor on a -chardev: chardev=ID[,mode=readline|control].
    #[arg(long = "mon", value_name = "chardev=ID")]
    mon: Vec<String>,
}

/// `-smp [cpus=]N[,maxcpus=M][,sockets=S][,dies=1][,clusters=1][,cores=C][,threads=T]`, as
/// QEMU spells it; without N the count is sockets * cores * threads.
fn parse_smp(s: &str, cfg: &mut MachineConfig) -> Result<()> {
    let num = |k: &str, v: &str| -> Result<u32> {
        v.parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(|| anyhow!("-smp: invalid {k} '{v}'"))
    };
    let mut cpus = None;
    let mut maxcpus = None;
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            None => cpus = Some(num("CPU count", part)?),
            Some(("cpus", v)) => cpus = Some(num("CPU count", v)?),
            Some(("maxcpus", v)) => maxcpus = Some(num("maxcpus", v)?),
            Some(("sockets", v)) => cfg.sockets = Some(num("sockets", v)?),
            Some(("cores", v)) => cfg.cores = Some(num("cores", v)?),
            Some(("threads", v)) => cfg.threads = Some(num("threads", v)?),
            Some(("dies" | "clusters", "1")) => {}
            Some(("dies" | "clusters", v)) => bail!("-smp: only 1 die/cluster per socket is supported, not {v}"),
            Some((k, _)) => bail!("-smp: unknown property '{k}'"),
        }
    }
    let product = |c: &MachineConfig| c.sockets.unwrap_or(1) * c.cores.unwrap_or(1) * c.threads.unwrap_or(1);
    let n = cpus.or(maxcpus).unwrap_or_else(|| product(cfg));
    if n == 0 || n > ferrite_machine::MAX_CPUS {
        bail!("-smp: CPU count must be between 1 and {}", ferrite_machine::MAX_CPUS);
    }
    cfg.cpus = n;
    if let Some(max) = maxcpus.filter(|&m| m > n) {
        // QEMU sizes the topology for maxcpus (the hot-pluggable CPUs have slots too).
        if cfg.sockets.is_none() && cfg.cores.is_none() && cfg.threads.is_none() {
            cfg.cores = Some(max);
        }
    }
    let topo = cfg.topology();
    let slots = topo.sockets * topo.cores * topo.threads;
    if slots < maxcpus.unwrap_or(n).max(n) {
        bail!("-smp: sockets ({}) * cores ({}) * threads ({}) = {slots} is less than the CPU count {}", topo.sockets, topo.cores, topo.threads, maxcpus.unwrap_or(n).max(n));
    }
    Ok(())
}

/// Long option names QEMU users write with one dash.
const LONG: &[&str] = &[
    "help",
    "memory",
    "smp",
    "machine",
    "cpu",
    "accel",
    "enable-kvm",
    "kernel",
    "initrd",
    "append",
    "bios",
    "nographic",
    "no-reboot",
    "serial",
    "device",
    "nodefaults",
    "display",
    "gdb",
    "version",
    "drive",
    "hda",
    "hdb",
    "hdc",
    "hdd",
    "cdrom",
    "boot",
    "snapshot",
    "netdev",
    "nic",
    "net",
    "chardev",
    "monitor",
    "qmp",
    "incoming",
    "loadvm",
    "snapshot-dir",
    "mon",
    "overcommit",
    "name",
    "uuid",
    "rtc",
    "no-shutdown",
    "daemonize",
    "pidfile",
    "dtb",
];

/// Rewrites `-name` to `--name` for long options, leaving short options and values alone.
/// QEMU has no clustered short options, so any other `-name` is an unknown option.
fn normalize(args: impl IntoIterator<Item = String>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut value_next = false;
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 || value_next {
            value_next = false;
            out.push(a);
            continue;
        }
        if let Some(name) = a.strip_prefix('-').filter(|n| !n.starts_with('-') && n.len() > 1) {
            let key = name.split('=').next().unwrap_or(name);
            if LONG.contains(&key) {
                out.push(format!("--{name}"));
                value_next = !name.contains('=') && takes_value(key);
                continue;
            }
            bail!("unknown option '-{name}' (see ferrite --help)");
        } else if let Some(name) = a.strip_prefix("--") {
            value_next = !name.contains('=') && takes_value(name);
        } else if matches!(a.as_str(), "-m" | "-M" | "-d" | "-D") {
            value_next = true;
        }
        out.push(a);
    }
    Ok(out)
}

fn takes_value(name: &str) -> bool {
    !matches!(
        name,
        "help" | "enable-kvm" | "nographic" | "no-reboot" | "nodefaults" | "version" | "snapshot" | "no-shutdown" | "daemonize"
    )
}

/// Parses a size: plain numbers are MiB (QEMU's -m), suffixes K/M/G/T (with optional B/iB).
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let s = s.strip_prefix("size=").unwrap_or(s);
    let s = s.split(',').next().unwrap_or(s);
    let digits_end = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, suffix) = s.split_at(digits_end);
    let n: f64 = num.parse().map_err(|_| anyhow!("invalid size '{s}'"))?;
    let unit: u64 = match suffix.trim_end_matches("iB").trim_end_matches('B').to_ascii_uppercase().as_str() {
        "" | "M" => 1 << 20,
        "K" => 1 << 10,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => bail!("invalid size suffix in '{s}'"),
    };
    let bytes = n * unit as f64;
    if !(bytes.is_finite() && bytes >= 0.0 && bytes < (1u64 << 50) as f64) {
        bail!("size '{s}' out of range");
    }
    Ok(bytes as u64)
}

fn parse_number(s: &str) -> Result<u64> {
    let r = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        s.parse()
    };
    r.map_err(|_| anyhow!("invalid number '{s}'"))
}

/// QEMU's PCI `addr=` property: `SLOT` or `SLOT.FN`, in hex.
pub(crate) fn parse_pci_addr(v: &str) -> Result<(u8, u8)> {
    let (slot, func) = v.split_once('.').unwrap_or((v, "0"));
    let hex = |s: &str| u8::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    match (hex(slot), hex(func)) {
        (Some(s), Some(f)) if s < 32 && f < 8 => Ok((s, f)),
        _ => bail!("invalid PCI address '{v}' (expected SLOT[.FN] in hex, slot < 0x20, function < 8)"),
    }
}

fn parse_device(spec: &str, cfg: &mut MachineConfig) -> Result<()> {
    let mut parts = spec.split(',');
    match parts.next().unwrap_or("") {
        "isa-debug-exit" => {
            let mut dev = DebugExit { iobase: 0x501, iosize: 2 };
            for p in parts {
                let (k, v) = p.split_once('=').ok_or_else(|| anyhow!("malformed device option '{p}'"))?;
                let n = parse_number(v)?;
                let n = u16::try_from(n).map_err(|_| anyhow!("{k}={v} out of range"))?;
                match k {
                    "iobase" => dev.iobase = n,
                    "iosize" => dev.iosize = n,
                    _ => bail!("unknown isa-debug-exit option '{k}'"),
                }
            }
            cfg.debug_exit = Some(dev);
            Ok(())
        }
        "edu" => {
            let mut addr = None;
            for p in parts {
                match p.split_once('=') {
                    Some(("addr", v)) => addr = Some(parse_pci_addr(v)?),
                    _ => bail!("unknown edu option '{p}' (supported: addr=SLOT[.FN])"),
                }
            }
            cfg.pci_devices.push(PciDeviceConfig { kind: PciDeviceKind::Edu, addr });
            Ok(())
        }
        "virtio-rng-pci" | "virtio-rng" => {
            cfg.pci_devices.push(crate::virtio_args::rng(&parts.collect::<Vec<_>>())?);
            Ok(())
        }
        "virtio-serial-pci" | "virtio-serial" => {
            cfg.pci_devices.push(crate::virtio_args::serial(&parts.collect::<Vec<_>>())?);
            Ok(())
        }
        kind @ ("virtconsole" | "virtserialport") => crate::virtio_args::serial_port(kind, &parts.collect::<Vec<_>>(), &mut cfg.pci_devices),
        "virtio-balloon-pci" | "virtio-balloon" => {
            if cfg.pci_devices.iter().any(|d| matches!(d.kind, PciDeviceKind::VirtioBalloon(_))) {
                bail!("virtio-balloon-pci: only one balloon per machine");
            }
            cfg.pci_devices.push(crate::virtio_args::balloon(&parts.collect::<Vec<_>>())?);
            Ok(())
        }
        other => bail!("unsupported device '{other}' (supported: isa-debug-exit, edu, ide-hd, ide-cd, e1000, virtio-net-pci, virtio-blk-pci, virtio-rng-pci, virtio-serial-pci, virtconsole, virtserialport, virtio-balloon-pci)"),
    }
}

/// What QEMU answers without starting a machine: `-cpu help` (or `?`), `-machine help`.
fn help_request(argv: &[String]) -> Option<String> {
    argv.windows(2).find_map(|w| {
        let opt = w[0].trim_start_matches('-');
        match (opt, w[1].as_str()) {
            ("cpu", "help" | "?") => Some(ferrite_cpu_help()),
            ("machine" | "M", "help" | "?") => Some("Supported machines are:\npc                   Standard PC (i440FX + PIIX, 1996) (default)\npc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996)\n".into()),
            _ => None,
        }
    })
}

fn ferrite_cpu_help() -> String {
    ferrite_machine::cpu_help()
}

/// What the process does around the machine: `-daemonize`, `-pidfile`, `-D`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Process {
    pub daemonize: bool,
    pub pidfile: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
}

#[cfg(test)]
pub fn parse(argv: impl IntoIterator<Item = String>) -> Result<MachineConfig> {
    parse_all(argv).map(|(cfg, _)| cfg)
}

/// Parses the command line into the machine and the process settings, printing QEMU-style
/// warnings and notes on stderr.
pub fn parse_all(argv: impl IntoIterator<Item = String>) -> Result<(MachineConfig, Process)> {
    let argv: Vec<String> = argv.into_iter().collect();
    if let Some(text) = help_request(&argv) {
        print!("{text}");
        std::process::exit(0);
    }
    let args = Args::try_parse_from(normalize(argv)?).map_err(|e| {
        // Let clap print help/version itself; everything else is a user error.
        if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) {
            e.exit();
        }
        anyhow!("{}", e.render().to_string().trim_end())
    })?;
    if args.version {
        print!("{}", crate::machine_args::version_text());
        std::process::exit(0);
    }
    let mut cfg = MachineConfig::default();
    let mut notes = Vec::new();
    if let Some(m) = &args.memory {
        cfg.memory_bytes = crate::machine_args::parse_memory(m).context("-m")?;
    }
    if let Some(s) = &args.smp {
        parse_smp(s, &mut cfg)?;
    }
    if let Some(m) = &args.machine {
        crate::machine_args::parse_machine(m, &mut cfg, &mut notes)?;
    }
    if !args.accel.is_empty() {
        crate::machine_args::parse_accels(&args.accel, &mut cfg)?;
    }
    if let Some(o) = &args.overcommit {
        crate::machine_args::parse_overcommit(o, &mut notes)?;
    }
    if let Some(n) = &args.name {
        cfg.name = Some(crate::machine_args::parse_name(n)?);
    }
    if let Some(u) = &args.uuid {
        cfg.uuid = Some(crate::machine_args::parse_uuid(u)?);
    }
    if let Some(r) = &args.rtc {
        crate::machine_args::parse_rtc(r, &mut cfg, &mut notes)?;
    }
    cfg.no_shutdown = args.no_shutdown;
    if args.dtb.is_some() {
        bail!("-dtb: device trees are not used on x86: the pc machine describes itself to the guest with ACPI tables");
    }
    if args.enable_kvm {
        cfg.accel = Accel::Kvm;
        cfg.accel_fallback.clear();
    }
    if let Some(c) = &args.cpu {
        for w in ferrite_machine::validate_cpu_model(c)? {
            eprintln!("ferrite: warning: {w}");
        }
        cfg.cpu = c.clone();
    }
    cfg.kernel = args.kernel;
    cfg.initrd = args.initrd;
    cfg.append = args.append.unwrap_or_default();
    cfg.bios = args.bios;
    cfg.no_reboot = args.no_reboot;
    for c in &args.chardev {
        let c = crate::chardev_args::parse_chardev(c)?;
        if cfg.chardevs.iter().any(|d| d.id == c.id) {
            bail!("-chardev: duplicate id '{}'", c.id);
        }
        cfg.chardevs.push(c);
    }
    if let Some(s) = &args.serial {
        cfg.serial = match s.as_str() {
            "stdio" => SerialBackend::Stdio,
            "mon:stdio" => {
                cfg.stdio_monitor = true;
                SerialBackend::Stdio
            }
            "null" | "none" => SerialBackend::Null,
            other => match (other.strip_prefix("file:"), other.strip_prefix("chardev:")) {
                (Some(p), _) => SerialBackend::File(p.into()),
                (_, Some(id)) if cfg.chardevs.iter().any(|c| c.id == id) => SerialBackend::Chardev(id.into()),
                (_, Some(id)) => bail!("-serial chardev:{id}: no -chardev with id={id}"),
                _ => bail!("unsupported -serial backend '{other}' (stdio, mon:stdio, null, none, file:PATH, chardev:ID)"),
            },
        };
    }
    // Monitors on their own sockets get chardevs named as QEMU names them (compat_monitorN).
    // QEMU's -nographic puts the monitor on the terminal with the serial port, unless
    // -serial or -monitor says otherwise; -monitor stdio puts it there alone.
    if args.nographic && args.serial.is_none() && args.monitor.is_empty() {
        cfg.stdio_monitor = true;
    }
    if args.monitor.iter().any(|m| m == "stdio") {
        match args.serial.as_deref() {
            Some("stdio" | "mon:stdio") => bail!("-monitor stdio: the serial port already uses stdio (-serial mon:stdio shares the terminal)"),
            Some(_) => {}
            // The terminal is the monitor's: the serial port goes nowhere, as QEMU's default vc.
            None => cfg.serial = SerialBackend::Null,
        }
        cfg.stdio_monitor = true;
    }
    let own = args.monitor.iter().filter(|m| m.as_str() != "stdio").map(|m| (m, MonitorMode::Readline)).chain(args.qmp.iter().map(|m| (m, MonitorMode::Control)));
    for (n, (spec, mode)) in own.enumerate() {
        let flag = if mode == MonitorMode::Control { "-qmp" } else { "-monitor" };
        if let Some(c) = crate::chardev_args::parse_monitor(flag, spec, &format!("compat_monitor{n}"))? {
            cfg.monitors.push(MonitorConfig { chardev: c.id.clone(), mode });
            cfg.chardevs.push(c);
        }
    }
    cfg.incoming = args.incoming.clone();
    if args.loadvm.is_some() && args.incoming.is_some() {
        bail!("-loadvm and -incoming both say where the machine starts from: give one");
    }
    cfg.loadvm = args.loadvm.clone();
    cfg.snapshot_dir = args.snapshot_dir.clone();
    for m in &args.mon {
        let monitor = crate::chardev_args::parse_mon(m)?;
        if !cfg.chardevs.iter().any(|c| c.id == monitor.chardev) {
            bail!("-mon: no -chardev with id={}", monitor.chardev);
        }
        cfg.monitors.push(monitor);
    }
    let mut storage = Storage::default();
    for d in &args.drive {
        storage.drive(d)?;
    }
    let shorthands = [(&args.hda, 0, Media::Disk), (&args.hdb, 1, Media::Disk), (&args.hdc, 2, Media::Disk), (&args.hdd, 3, Media::Disk), (&args.cdrom, 2, Media::Cdrom)];
    for (file, index, media) in shorthands {
        if let Some(f) = file {
            storage.shorthand(index, media, f)?;
        }
    }
    let mut network = Network::default();
    for n in &args.netdev {
        network.netdev(n)?;
    }
    for n in &args.nic {
        network.nic(n)?;
    }
    for n in &args.net {
        network.net(n)?;
    }
    for d in &args.device {
        if !storage.device(d)? && !network.device(d)? {
            parse_device(d, &mut cfg)?;
        }
    }
    cfg.nics = network.resolve(!args.nodefaults)?;
    for d in &cfg.pci_devices {
        if let PciDeviceKind::VirtioSerial(s) = &d.kind {
            if let Some(p) = s.ports.iter().find(|p| !cfg.chardevs.iter().any(|c| c.id == p.chardev)) {
                bail!("-device virtconsole/virtserialport: no -chardev with id={}", p.chardev);
            }
        }
    }
    if args.snapshot {
        storage.snapshot_all();
    }
    let resolved = storage.resolve()?;
    cfg.ide_drives = resolved.ide;
    // Virtio disks take the first PCI slots, in command-line order (-drive if=virtio first).
    cfg.pci_devices.splice(0..0, resolved.virtio);
    if let Some(b) = &args.boot {
        cfg.boot = parse_boot(b)?;
    }
    if let Some(d) = &args.display {
        if d != "none" {
            bail!("unsupported display '{d}' (only none is available)");
        }
    }
    let _ = args.nographic;
    if args.gdb_default {
        cfg.gdb = Some("127.0.0.1:1234".into());
    }
    if let Some(g) = &args.gdb {
        let addr = g.strip_prefix("tcp:").ok_or_else(|| anyhow!("-gdb: expected tcp::PORT or tcp:HOST:PORT"))?;
        let addr = if let Some(port) = addr.strip_prefix(':') { format!("127.0.0.1:{port}") } else { addr.to_string() };
        cfg.gdb = Some(addr);
    }
    cfg.start_paused = args.paused;
    if let Some(items) = &args.log {
        for item in items.split(',') {
            match item {
                "int" => cfg.log_interrupts = true,
                other => bail!("unsupported -d item '{other}' (supported: int)"),
            }
        }
    }
    if args.daemonize && cfg.serial == SerialBackend::Stdio && args.serial.is_some() {
        bail!("-daemonize cannot be used with -serial stdio (the terminal goes away)");
    }
    if args.daemonize && args.nographic && args.serial.is_none() {
        bail!("-nographic cannot be used with -daemonize");
    }
    if args.daemonize && cfg.serial == SerialBackend::Stdio {
        // No terminal after daemonizing: COM1 goes nowhere, as QEMU's default vc would.
        cfg.serial = SerialBackend::Null;
    }
    for n in notes {
        eprintln!("ferrite: note: {n}");
    }
    let process = Process { daemonize: args.daemonize, pidfile: args.pidfile, log_file: args.log_file };
    Ok((cfg, process))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<MachineConfig> {
        parse(std::iter::once("ferrite").chain(args.iter().copied()).map(String::from))
    }

    #[test]
    fn qemu_spelling() {
        let c = p(&[
            "-m", "512", "-smp", "1", "-kernel", "bz", "-initrd", "i.gz", "-append", "console=ttyS0 quiet", "-nographic",
            "-no-reboot", "-serial", "stdio", "-accel", "tcg", "-M", "pc", "-nodefaults", "-display", "none",
        ])
        .unwrap();
        assert_eq!(c.memory_bytes, 512 << 20);
        assert_eq!(c.kernel.as_deref(), Some(std::path::Path::new("bz")));
        assert_eq!(c.append, "console=ttyS0 quiet");
        assert!(c.no_reboot);
    }

    #[test]
    fn clap_spelling_and_double_dash_qemu() {
        let c = p(&["--memory", "1G", "--kernel", "bz", "--no-reboot", "-machine", "pc,accel=tcg"]).unwrap();
        assert_eq!(c.memory_bytes, 1 << 30);
        assert!(c.no_reboot);
        let c = p(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]).unwrap();
        assert_eq!(c.debug_exit, Some(DebugExit { iobase: 0xf4, iosize: 4 }));
    }

    #[test]
    fn errors_name_the_option() {
        let e = p(&["-frobnicate"]).unwrap_err().to_string();
        assert!(e.contains("frobnicate"), "{e}");
        assert!(p(&["-m", "lots"]).is_err());
        assert!(p(&["-accel", "hvf"]).unwrap_err().to_string().contains("hvf"));
        assert!(p(&["-device", "e1001"]).is_err());
    }

    #[test]
    fn cpu_models_and_properties() {
        assert_eq!(p(&["-cpu", "Haswell,+popcnt,check"]).unwrap().cpu, "Haswell,+popcnt,check");
        assert!(p(&["-cpu", "EPYC-Rome,-svm,vendor=GenuineIntel,model-id=x,,y,phys-bits=40,host-phys-bits=on"]).is_ok());
        // Haswell's TSX (HLE, RTM) is what ferrite's TCG lacks.
        let e = format!("{:#}", p(&["-cpu", "Haswell,enforce"]).unwrap_err());
        assert!(e.contains("hle") && e.contains("rtm") && !e.contains("pcid"), "{e}");
        assert!(format!("{:#}", p(&["-cpu", "Frobnitz"]).unwrap_err()).contains("Frobnitz"));
        assert!(help_request(&["ferrite".into(), "-cpu".into(), "help".into()]).unwrap().contains("Cascadelake-Server"));
    }

    #[test]
    fn snapshot_options() {
        let c = p(&["-loadvm", "first", "-snapshot-dir", "/tmp/snaps", "-snapshot"]).unwrap();
        assert_eq!((c.loadvm.as_deref(), c.snapshot_dir.as_deref()), (Some("first"), Some(std::path::Path::new("/tmp/snaps"))));
        assert_eq!(p(&["-incoming", "defer"]).unwrap().incoming.as_deref(), Some("defer"));
        assert!(p(&["-loadvm", "a", "-incoming", "defer"]).is_err());
    }

    #[test]
    fn gdb_addresses() {
        assert_eq!(p(&["-s"]).unwrap().gdb.as_deref(), Some("127.0.0.1:1234"));
        assert_eq!(p(&["-gdb", "tcp::4321"]).unwrap().gdb.as_deref(), Some("127.0.0.1:4321"));
        assert_eq!(p(&["-gdb", "tcp:0.0.0.0:9"]).unwrap().gdb.as_deref(), Some("0.0.0.0:9"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512").unwrap(), 512 << 20);
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("size=256M").unwrap(), 256 << 20);
        assert!(parse_size("12X").is_err());
    }

    #[test]
    fn smp_topology_as_qemu_spells_it() {
        let topo = |a: &str| {
            let c = p(&["-smp", a]).unwrap();
            let t = c.topology();
            (c.cpus, t.sockets, t.cores, t.threads)
        };
        // QEMU 7.2: without a topology, one socket of N cores.
        assert_eq!(topo("4"), (4, 1, 4, 1));
        assert_eq!(topo("cpus=4"), (4, 1, 4, 1));
        assert_eq!(topo("8,sockets=2"), (8, 2, 4, 1));
        assert_eq!(topo("8,cores=2,threads=2"), (8, 2, 2, 2));
        assert_eq!(topo("sockets=2,cores=2,threads=2"), (8, 2, 2, 2));
        assert_eq!(topo("2,maxcpus=4,sockets=1,cores=4"), (2, 1, 4, 1));
        assert_eq!(topo("64"), (64, 1, 64, 1));
        for bad in ["0", "256", "x", "4,sockets=1,cores=2", "4,dies=2", "4,foo=1", "cores=0"] {
            assert!(p(&["-smp", bad]).is_err(), "-smp {bad} must be refused");
        }
        let c = p(&["-device", "edu,addr=5", "-device", "edu"]).unwrap();
        assert_eq!(c.pci_devices.len(), 2);
        assert_eq!(c.pci_devices[0].addr, Some((5, 0)));
        assert!(p(&["-device", "edu,addr=0x20"]).is_err());
    }
}
