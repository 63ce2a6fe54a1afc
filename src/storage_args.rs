//! QEMU's storage options: `-drive`, `-hda`..`-hdd`, `-cdrom`, `-device ide-hd|ide-cd`,
//! `-device virtio-blk-pci`, `-snapshot` and `-boot`, resolved into IDE positions, virtio
//! disks and the firmware's boot order.

use crate::virtio_args::{VirtioPciProps, TRANSPORT_OPTIONS};
use anyhow::{anyhow, bail, Context, Result};
use ferrite_block::{CacheMode, DriveOptions, ImageFormat};
use ferrite_machine::config::{BootConfig, BootDevice, IdeDriveConfig, Media, PciDeviceConfig, PciDeviceKind, VirtioBlkConfig};
use std::path::PathBuf;

/// IDE positions on the PIIX controller: two channels of master and slave.
const IDE_POSITIONS: u8 = 4;

/// QEMU's `-drive if=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Interface {
    Ide,
    /// Only a `-device` makes the drive visible.
    None,
    Virtio,
}

/// One `-drive` as written, before it has a position.
#[derive(Debug)]
struct DriveSpec {
    id: Option<String>,
    interface: Interface,
    index: Option<u8>,
    media: Media,
    image: Option<DriveOptions>,
    /// `serial=` (used by virtio disks).
    serial: Option<String>,
}

/// One `-device virtio-blk-pci` as written.
#[derive(Debug)]
struct VirtioDiskSpec {
    drive: String,
    props: VirtioPciProps,
    num_queues: Option<u16>,
    queue_size: Option<u16>,
    serial: Option<String>,
}

/// The storage options resolved.
pub struct Resolved {
    pub ide: Vec<IdeDriveConfig>,
    /// Virtio disks as PCI devices: `-drive if=virtio` first, then `-device virtio-blk-pci`.
    pub virtio: Vec<PciDeviceConfig>,
}

/// One `-device ide-hd|ide-cd` as written.
#[derive(Debug)]
struct DeviceSpec {
    media: Media,
    drive: Option<String>,
    bus: Option<u8>,
    unit: Option<u8>,
}

/// Collects the storage options in command-line order, then resolves them.
#[derive(Debug, Default)]
pub struct Storage {
    drives: Vec<DriveSpec>,
    devices: Vec<DeviceSpec>,
    virtio_devices: Vec<VirtioDiskSpec>,
    snapshot_all: bool,
}

/// Splits QEMU's `key=value,key=value` where a doubled comma is a literal comma (in paths).
fn split_options(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                out.last_mut().expect("never empty").push(',');
            } else {
                out.push(String::new());
            }
        } else {
            out.last_mut().expect("never empty").push(c);
        }
    }
    out
}

pub(crate) fn on_off(key: &str, v: &str) -> Result<bool> {
    match v {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => bail!("{key}={v}: expected on or off"),
    }
}

fn small_number(key: &str, v: &str, limit: u8) -> Result<u8> {
    v.parse::<u8>().ok().filter(|&n| n < limit).ok_or_else(|| anyhow!("{key}={v}: expected a number below {limit}"))
}

impl Storage {
    /// `-drive file=..,if=ide|none|virtio,index=,bus=,unit=,media=,format=,readonly=,cache=,
    /// snapshot=,discard=,serial=,id=`
    pub fn drive(&mut self, spec: &str) -> Result<()> {
        let mut file = None;
        let mut id = None;
        let mut interface = Interface::Ide;
        let mut serial = None;
        let mut discard = false;
        let (mut index, mut bus, mut unit) = (None, None, None);
        let mut media = Media::Disk;
        let mut format = None;
        let mut read_only = false;
        let mut cache = CacheMode::default();
        let mut snapshot = false;
        let mut locking = true;
        for part in split_options(spec).iter().filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| anyhow!("-drive: malformed option '{part}' (expected key=value)"))?;
            match k {
                "file" => file = Some(PathBuf::from(v)),
                "id" => id = Some(v.to_string()),
                "if" => {
                    interface = match v {
                        "ide" => Interface::Ide,
                        "none" => Interface::None,
                        "virtio" => Interface::Virtio,
                        other => bail!("-drive: interface if={other} is not supported (ide, virtio or none)"),
                    }
                }
                "serial" => serial = Some(v.to_string()),
                "discard" => {
                    discard = match v {
                        "unmap" | "on" => true,
                        "ignore" | "off" => false,
                        other => bail!("-drive: discard={other}: expected ignore or unmap"),
                    }
                }
                "index" => index = Some(small_number("index", v, IDE_POSITIONS)?),
                "bus" => bus = Some(small_number("bus", v, 2)?),
                "unit" => unit = Some(small_number("unit", v, 2)?),
                "media" => {
                    media = match v {
                        "disk" => Media::Disk,
                        "cdrom" => Media::Cdrom,
                        other => bail!("-drive: media={other}: expected disk or cdrom"),
                    }
                }
                "format" => format = Some(ImageFormat::parse(v).map_err(|e| anyhow!("-drive: {e}"))?),
                "readonly" | "read-only" => read_only = on_off(k, v)?,
                "cache" => cache = CacheMode::parse(v).map_err(|e| anyhow!("-drive: {e}"))?,
                "snapshot" => snapshot = on_off(k, v)?,
                "file.locking" | "locking" => {
                    locking = match v {
                        "auto" => true,
                        _ => on_off(k, v)?,
                    }
                }
                // Accepted for compatibility: ferrite always does its I/O on a worker thread.
                "aio" if matches!(v, "threads" | "native" | "io_uring") => {}
                _ => bail!("-drive: unsupported option '{k}'"),
            }
        }
        if interface == Interface::Virtio && (index.is_some() || bus.is_some() || unit.is_some() || media == Media::Cdrom) {
            bail!("-drive if=virtio: index=, bus=, unit= and media=cdrom apply to IDE drives only");
        }
        if let (Some(b), Some(u)) = (bus, unit) {
            if index.is_some_and(|i| i != b * 2 + u) {
                bail!("-drive: index={} contradicts bus={b},unit={u}", index.unwrap_or_default());
            }
            index = Some(b * 2 + u);
        } else if bus.is_some() || unit.is_some() {
            index = Some(bus.unwrap_or(0) * 2 + unit.unwrap_or(0));
        }
        if media == Media::Cdrom {
            // A CD is read-only media, whatever the option says.
            read_only = true;
        }
        let image = match file {
            Some(path) if !path.as_os_str().is_empty() => {
                Some(DriveOptions { path, format, read_only, cache, snapshot, locking, discard })
            }
            _ if media == Media::Disk => bail!("-drive: a disk needs file=PATH"),
            _ => None,
        };
        if interface == Interface::None && id.is_none() {
            bail!("-drive if=none needs id=NAME for a -device to refer to");
        }
        self.drives.push(DriveSpec { id, interface, index, media, image, serial });
        Ok(())
    }

    /// `-device virtio-blk-pci,drive=ID[,num-queues=N][,queue-size=N][,serial=S][,TRANSPORT]`
    fn virtio_device(&mut self, name: &str, options: &[String]) -> Result<()> {
        let mut drive = None;
        let mut props = VirtioPciProps::default();
        let (mut num_queues, mut queue_size, mut serial) = (None, None, None);
        let number = |k: &str, v: &str| v.parse::<u16>().map_err(|_| anyhow!("{name}: {k}={v}: expected a number"));
        for p in options {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k {
                "drive" => drive = Some(v.to_string()),
                "num-queues" => num_queues = Some(number(k, v)?),
                "queue-size" => queue_size = Some(number(k, v)?),
                "serial" => serial = Some(v.to_string()),
                // QEMU's defaults, which ferrite always has.
                "discard" | "write-zeroes" | "config-wce" if v == "on" => {}
                _ if props.take(k, v)? => {}
                _ => bail!("{name}: unsupported option '{p}' (drive=, num-queues=, queue-size=, serial=, {TRANSPORT_OPTIONS})"),
            }
        }
        props.check(name)?;
        let drive = drive.ok_or_else(|| anyhow!("{name} needs drive=ID (a -drive if=none,id=ID)"))?;
        self.virtio_devices.push(VirtioDiskSpec { drive, props, num_queues, queue_size, serial });
        Ok(())
    }

    /// `-hda`..`-hdd` (index 0-3) and `-cdrom` (index 2).
    pub fn shorthand(&mut self, index: u8, media: Media, file: &std::path::Path) -> Result<()> {
        let media_name = if media == Media::Cdrom { "cdrom" } else { "disk" };
        let file = file.to_str().ok_or_else(|| anyhow!("image path '{}' is not UTF-8", file.display()))?;
        self.drive(&format!("file={},index={index},media={media_name}", file.replace(',', ",,")))
    }

    /// `-device ide-hd|ide-cd,drive=ID[,bus=ide.N][,unit=U]` and `-device virtio-blk-pci`;
    /// `false` if `spec` is not a storage device.
    pub fn device(&mut self, spec: &str) -> Result<bool> {
        let parts = split_options(spec);
        let media = match parts[0].as_str() {
            "ide-hd" => Media::Disk,
            "ide-cd" => Media::Cdrom,
            name @ ("virtio-blk-pci" | "virtio-blk") => {
                self.virtio_device(name, &parts[1..])?;
                return Ok(true);
            }
            _ => return Ok(false),
        };
        let (mut drive, mut bus, mut unit) = (None, None, None);
        for p in &parts[1..] {
            match p.split_once('=') {
                Some(("drive", v)) => drive = Some(v.to_string()),
                Some(("bus", v)) => {
                    let n = v.strip_prefix("ide.").ok_or_else(|| anyhow!("{}: bus={v}: expected ide.0 or ide.1", parts[0]))?;
                    bus = Some(small_number("bus", n, 2)?);
                }
                Some(("unit", v)) => unit = Some(small_number("unit", v, 2)?),
                _ => bail!("{}: unsupported option '{p}' (drive=, bus=ide.N, unit=)", parts[0]),
            }
        }
        if media == Media::Disk && drive.is_none() {
            bail!("ide-hd needs drive=ID (a -drive if=none,id=ID)");
        }
        self.devices.push(DeviceSpec { media, drive, bus, unit });
        Ok(true)
    }

    /// `-snapshot`: every drive as `snapshot=on`.
    pub fn snapshot_all(&mut self) {
        self.snapshot_all = true;
    }

    /// The drives at their IDE positions (explicit indices first, then the rest in the first
    /// free positions, as QEMU assigns them) and the virtio disks.
    pub fn resolve(mut self) -> Result<Resolved> {
        let mut slots: [Option<IdeDriveConfig>; IDE_POSITIONS as usize] = Default::default();
        let mut named = Vec::new();
        let mut virtio = Vec::new();
        let (explicit, auto): (Vec<_>, Vec<_>) = std::mem::take(&mut self.drives).into_iter().partition(|d| d.index.is_some());
        for d in explicit.into_iter().chain(auto) {
            match d.interface {
                Interface::None => named.push(d),
                Interface::Ide => place(&mut slots, d.index, d.media, d.image, "-drive")?,
                Interface::Virtio => {
                    let mut disk = VirtioBlkConfig::new(d.image.ok_or_else(|| anyhow!("-drive if=virtio needs file=PATH"))?);
                    disk.serial = d.serial.unwrap_or_default();
                    virtio.push(PciDeviceConfig { kind: PciDeviceKind::VirtioBlk(disk), addr: None });
                }
            }
        }
        // `-drive if=virtio` without index keeps command-line order; explicit indices are
        // IDE-only, so the partition above did not reorder virtio drives.
        for spec in std::mem::take(&mut self.virtio_devices) {
            let pos = named
                .iter()
                .position(|d| d.id.as_deref() == Some(spec.drive.as_str()))
                .ok_or_else(|| anyhow!("-device virtio-blk-pci: no -drive if=none with id={} (or it is used twice)", spec.drive))?;
            let d = named.remove(pos);
            if d.media == Media::Cdrom {
                bail!("-device virtio-blk-pci,drive={}: the drive is media=cdrom", spec.drive);
            }
            let image = d.image.ok_or_else(|| anyhow!("-drive id={} has no file=", spec.drive))?;
            let mut disk = VirtioBlkConfig::new(image);
            disk.transport = spec.props.transport;
            disk.num_queues = spec.num_queues;
            disk.queue_size = spec.queue_size.unwrap_or(disk.queue_size);
            disk.serial = spec.serial.or(d.serial).unwrap_or_default();
            virtio.push(PciDeviceConfig { kind: PciDeviceKind::VirtioBlk(disk), addr: spec.props.addr });
        }
        for DeviceSpec { media, drive, bus, unit } in self.devices {
            let image = match drive {
                Some(id) => {
                    let pos = named
                        .iter()
                        .position(|d| d.id.as_deref() == Some(id.as_str()))
                        .ok_or_else(|| anyhow!("-device: no -drive if=none with id={id} (or it is used twice)"))?;
                    let d = named.remove(pos);
                    if media == Media::Disk && d.media == Media::Cdrom {
                        bail!("-device ide-hd,drive={id}: the drive is media=cdrom");
                    }
                    d.image
                }
                None => None,
            };
            let index = match (bus, unit) {
                (Some(b), u) => {
                    let u = u.or_else(|| (0..2).find(|&u| slots[(b * 2 + u) as usize].is_none())).unwrap_or(0);
                    Some(b * 2 + u)
                }
                (None, Some(u)) => Some(u),
                (None, None) => None,
            };
            let image = image.map(|mut i| {
                i.read_only |= media == Media::Cdrom;
                i
            });
            place(&mut slots, index, media, image, "-device")?;
        }
        if let Some(d) = named.first() {
            eprintln!("ferrite: warning: -drive id={} is not used by any -device", d.id.as_deref().unwrap_or(""));
        }
        let mut out: Vec<IdeDriveConfig> = slots.into_iter().flatten().collect();
        if self.snapshot_all {
            for d in &mut out {
                if let Some(i) = &mut d.image {
                    i.snapshot = true;
                }
            }
            for d in &mut virtio {
                if let PciDeviceKind::VirtioBlk(b) = &mut d.kind {
                    b.image.snapshot = true;
                }
            }
        }
        Ok(Resolved { ide: out, virtio })
    }
}

/// Puts a drive at `index` (or the first free IDE position).
fn place(
    slots: &mut [Option<IdeDriveConfig>],
    index: Option<u8>,
    media: Media,
    image: Option<DriveOptions>,
    what: &str,
) -> Result<()> {
    let index = match index {
        Some(i) => i,
        None => (0..IDE_POSITIONS)
            .find(|&i| slots[i as usize].is_none())
            .ok_or_else(|| anyhow!("{what}: all {IDE_POSITIONS} IDE positions are taken"))?,
    };
    if slots[index as usize].is_some() {
        bail!("{what}: IDE position {index} (ide.{} unit {}) is already in use", index / 2, index % 2);
    }
    slots[index as usize] = Some(IdeDriveConfig { bus: index / 2, unit: index % 2, media, image });
    Ok(())
}

/// `-boot [order=]LETTERS[,once=LETTERS][,menu=on|off][,splash-time=MS][,strict=on|off]`.
pub fn parse_boot(spec: &str) -> Result<BootConfig> {
    let mut boot = BootConfig::default();
    let letters = |v: &str| -> Result<Vec<BootDevice>> {
        let mut order = Vec::new();
        for c in v.chars() {
            let dev = match c {
                'a' | 'b' => BootDevice::Floppy,
                'c' => BootDevice::HardDisk,
                'd' => BootDevice::Cdrom,
                'n' | 'o' | 'p' => BootDevice::Network,
                other => bail!("-boot: invalid boot device '{other}' (a, c, d or n)"),
            };
            if order.contains(&dev) {
                bail!("-boot: boot device '{c}' given twice");
            }
            order.push(dev);
        }
        if order.is_empty() {
            bail!("-boot: empty boot order");
        }
        Ok(order)
    };
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            None => boot.order = letters(part)?,
            Some(("order" | "once", v)) => boot.order = letters(v)?,
            Some(("menu", v)) => boot.menu = on_off("menu", v)?,
            Some(("splash-time" | "reboot-timeout", v)) => {
                v.parse::<i64>().with_context(|| format!("-boot: invalid number '{v}'"))?;
            }
            Some(("strict", v)) => {
                on_off("strict", v)?;
            }
            Some((k, _)) => bail!("-boot: unsupported option '{k}'"),
        }
    }
    Ok(boot)
}

#[cfg(test)]
mod tests {
    use crate::cli::parse;
    use ferrite_block::{CacheMode, ImageFormat};
    use ferrite_machine::config::{BootDevice, IdeDriveConfig, Media};

    fn drives(args: &[&str]) -> anyhow::Result<Vec<IdeDriveConfig>> {
        parse(std::iter::once("ferrite").chain(args.iter().copied()).map(String::from)).map(|c| c.ide_drives)
    }

    /// (bus, unit, media, file) of each drive, as QEMU would place it.
    fn placed(args: &[&str]) -> Vec<(u8, u8, Media, Option<String>)> {
        drives(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .into_iter()
            .map(|d| (d.bus, d.unit, d.media, d.image.map(|i| i.path.display().to_string())))
            .collect()
    }

    #[test]
    fn positions_as_qemu_assigns_them() {
        use Media::{Cdrom, Disk};
        let s = |x: &str| Some(x.to_string());
        assert_eq!(placed(&["-hda", "a", "-cdrom", "c"]), [(0, 0, Disk, s("a")), (1, 0, Cdrom, s("c"))]);
        assert_eq!(placed(&["-hdd", "d", "-hdb", "b"]), [(0, 1, Disk, s("b")), (1, 1, Disk, s("d"))]);
        // Drives without an index take the first free positions after the explicit ones.
        assert_eq!(
            placed(&["-drive", "file=x", "-drive", "file=y,index=0", "-drive", "file=z,bus=1,unit=1"]),
            [(0, 0, Disk, s("y")), (0, 1, Disk, s("x")), (1, 1, Disk, s("z"))]
        );
        assert_eq!(
            placed(&["-drive", "if=none,id=d0,file=a.qcow2", "-device", "ide-hd,drive=d0,bus=ide.1,unit=1"]),
            [(1, 1, Disk, s("a.qcow2"))]
        );
        // An empty CD-ROM drive.
        assert_eq!(placed(&["-device", "ide-cd,bus=ide.1"]), [(1, 0, Cdrom, None)]);
        assert_eq!(placed(&["-drive", "media=cdrom,index=3"]), [(1, 1, Cdrom, None)]);
        // Paths with commas are written with doubled commas.
        assert_eq!(placed(&["-drive", "file=a,,b.img"]), [(0, 0, Disk, s("a,b.img"))]);
        assert_eq!(placed(&["-hda", "a,b.img"]), [(0, 0, Disk, s("a,b.img"))]);
    }

    #[test]
    fn drive_options() {
        let d = &drives(&["-drive", "file=a,format=qcow2,cache=none,readonly=on,snapshot=on,file.locking=off,aio=threads"]).unwrap()[0];
        let i = d.image.as_ref().unwrap();
        assert_eq!(i.format, Some(ImageFormat::Qcow2));
        assert_eq!(i.cache, CacheMode::None);
        assert!(i.read_only && i.snapshot && !i.locking);
        // A CD is read-only whatever the options say; -snapshot applies to every drive.
        let all = drives(&["-cdrom", "c.iso", "-hda", "a", "-snapshot"]).unwrap();
        assert!(all.iter().all(|d| d.image.as_ref().unwrap().snapshot));
        assert!(all[1].image.as_ref().unwrap().read_only);
        assert!(!all[0].image.as_ref().unwrap().read_only);
    }

    #[test]
    fn bad_storage_options_are_refused_with_the_reason() {
        for (args, says) in [
            (&["-drive", "file=a,if=scsi"][..], "if=scsi"),
            (&["-drive", "file=a,format=vmdk"], "vmdk"),
            (&["-drive", "file=a,cache=fast"], "fast"),
            (&["-drive", "file=a,index=4"], "index=4"),
            (&["-drive", "file=a,index=1,bus=0,unit=0"], "contradicts"),
            (&["-drive", "file=a,frob=1"], "frob"),
            (&["-drive", "format=raw"], "file="),
            (&["-drive", "if=none,file=a"], "id="),
            (&["-hda", "a", "-drive", "file=b,index=0"], "already in use"),
            (&["-hda", "a", "-hdb", "b", "-hdc", "c", "-hdd", "d", "-drive", "file=e"], "taken"),
            (&["-device", "ide-hd,drive=nope"], "id=nope"),
            (&["-device", "ide-hd"], "drive="),
            (&["-device", "ide-hd,drive=x,bus=scsi.0"], "ide.0"),
            (&["-drive", "if=none,id=c,media=cdrom,file=c.iso", "-device", "ide-hd,drive=c"], "cdrom"),
            (&["-boot", "order=cz"], "'z'"),
            (&["-boot", "cc"], "twice"),
        ] {
            let err = drives(args);
            let msg = format!("{:#}", err.expect_err(&format!("{args:?} must be refused")));
            assert!(msg.contains(says), "{args:?}: '{msg}' does not mention '{says}'");
        }
    }

    #[test]
    fn boot_order_and_menu() {
        let boot = |a: &str| parse(["ferrite", "-boot", a].map(String::from)).unwrap().boot;
        use BootDevice::{Cdrom, Floppy, HardDisk, Network};
        assert_eq!(boot("d").order, [Cdrom]);
        assert_eq!(boot("order=dc,menu=on").order, [Cdrom, HardDisk]);
        assert!(boot("order=dc,menu=on").menu);
        assert_eq!(boot("nac").order, [Network, Floppy, HardDisk]);
        let default = parse(["ferrite"].map(String::from)).unwrap().boot;
        assert_eq!(default.order, [HardDisk, Floppy, Cdrom]);
        assert!(!default.menu);
    }

    fn virtio_disks(args: &[&str]) -> Vec<(ferrite_machine::config::VirtioBlkConfig, Option<(u8, u8)>)> {
        let c = parse(std::iter::once("ferrite").chain(args.iter().copied()).map(String::from)).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        c.pci_devices
            .into_iter()
            .filter_map(|d| match d.kind {
                ferrite_machine::config::PciDeviceKind::VirtioBlk(b) => Some((b, d.addr)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn virtio_disks_from_drive_and_device() {
        let v = virtio_disks(&[
            "-device",
            "virtio-blk-pci,drive=d1,num-queues=2,queue-size=128,serial=S1,addr=6,disable-legacy=on",
            "-drive",
            "if=none,id=d1,file=one.qcow2,cache=none,discard=unmap",
            "-drive",
            "if=virtio,file=two.raw,format=raw,serial=S2,readonly=on",
            "-hda",
            "ide.raw",
            "-snapshot",
        ]);
        assert_eq!(v.len(), 2);
        let (two, one) = (&v[0].0, &v[1].0);
        assert_eq!(two.image.path.to_str(), Some("two.raw"));
        assert!(two.image.read_only && two.image.snapshot);
        assert_eq!((two.serial.as_str(), two.num_queues, two.queue_size), ("S2", None, 256));
        assert_eq!(one.image.path.to_str(), Some("one.qcow2"));
        assert!(one.image.discard && one.image.snapshot);
        assert_eq!(one.image.cache, CacheMode::None);
        assert_eq!((one.serial.as_str(), one.num_queues, one.queue_size), ("S1", Some(2), 128));
        assert!(one.transport.disable_legacy && !one.transport.disable_modern);
        assert_eq!((v[0].1, v[1].1), (None, Some((6, 0))));
        assert_eq!(drives(&["-drive", "if=virtio,file=x", "-hda", "y"]).unwrap().len(), 1, "IDE keeps only IDE drives");
    }

    #[test]
    fn virtio_disk_errors() {
        for (args, says) in [
            (&["-device", "virtio-blk-pci"][..], "drive="),
            (&["-device", "virtio-blk-pci,drive=x"], "id=x"),
            (&["-drive", "if=virtio,file=a,index=1"], "IDE drives only"),
            (&["-drive", "if=virtio"], "file="),
            (&["-drive", "if=scsi,file=a"], "if=scsi"),
            (&["-drive", "file=a,discard=maybe"], "discard=maybe"),
            (&["-drive", "if=none,id=a,file=a", "-device", "virtio-blk-pci,drive=a,bogus=1"], "bogus"),
            (&["-drive", "if=none,id=a,file=a", "-device", "virtio-blk-pci,drive=a,disable-legacy=on,disable-modern=on"], "no interface"),
            (&["-drive", "if=none,id=a,file=a", "-device", "virtio-blk-pci,drive=a", "-device", "virtio-blk-pci,drive=a"], "used twice"),
        ] {
            let err = parse(std::iter::once("ferrite").chain(args.iter().copied()).map(String::from));
            let msg = format!("{:#}", err.expect_err(&format!("{args:?} must be refused")));
            assert!(msg.contains(says), "{args:?}: '{msg}' does not mention '{says}'");
        }
    }
}
