//! Options every virtio PCI device shares (`addr=`, `disable-legacy=`, `disable-modern=`,
//! `id=`), and the virtio devices other than disks and cards: `virtio-rng-pci`,
//! `virtio-serial-pci` with its `virtconsole`/`virtserialport` ports, `virtio-balloon-pci`.

use crate::cli::parse_pci_addr;
use crate::storage_args::on_off;
use anyhow::{anyhow, bail, Result};
use ferrite_machine::config::{
    PciDeviceConfig, PciDeviceKind, SerialPortConfig, VirtioBalloonConfig, VirtioSerialConfig, VirtioTransport,
};

/// The transport part of a virtio device's options.
#[derive(Clone, Copy, Debug, Default)]
pub struct VirtioPciProps {
    pub addr: Option<(u8, u8)>,
    pub transport: VirtioTransport,
}

impl VirtioPciProps {
    /// Takes `key=value` if it is a transport option; `false` leaves it to the device.
    pub fn take(&mut self, key: &str, value: &str) -> Result<bool> {
        match key {
            "addr" => self.addr = Some(parse_pci_addr(value)?),
            "disable-legacy" => self.transport.disable_legacy = on_off(key, value)?,
            "disable-modern" => self.transport.disable_modern = on_off(key, value)?,
            "packed" => self.transport.packed = on_off(key, value)?,
            // Names only matter to a monitor, which ferrite does not have yet.
            "id" => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks the combination once every option is read.
    pub fn check(&self, device: &str) -> Result<()> {
        if self.transport.disable_legacy && self.transport.disable_modern {
            bail!("{device}: disable-legacy=on and disable-modern=on leave no interface");
        }
        Ok(())
    }
}

/// The transport options every virtio device accepts, for error messages.
pub const TRANSPORT_OPTIONS: &str = "addr=, disable-legacy=, disable-modern=, packed=, id=";

/// `-device virtio-rng-pci[,TRANSPORT OPTIONS]`
pub fn rng(options: &[&str]) -> Result<PciDeviceConfig> {
    let mut props = VirtioPciProps::default();
    for p in options {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        if !props.take(k, v)? {
            bail!("unknown virtio-rng-pci option '{p}' (supported: {TRANSPORT_OPTIONS})");
        }
    }
    props.check("virtio-rng-pci")?;
    Ok(PciDeviceConfig { kind: PciDeviceKind::VirtioRng(props.transport), addr: props.addr })
}

/// `-device virtio-serial-pci[,max_ports=N][,TRANSPORT OPTIONS]`
pub fn serial(options: &[&str]) -> Result<PciDeviceConfig> {
    let mut props = VirtioPciProps::default();
    let mut cfg = VirtioSerialConfig { max_ports: 31, ..Default::default() };
    for p in options {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        match k {
            "max_ports" => cfg.max_ports = v.parse().ok().filter(|n| (1..=511).contains(n)).ok_or_else(|| anyhow!("virtio-serial-pci: max_ports={v}: expected 1 to 511"))?,
            _ if props.take(k, v)? => {}
            _ => bail!("unknown virtio-serial-pci option '{p}' (supported: max_ports=, {TRANSPORT_OPTIONS})"),
        }
    }
    props.check("virtio-serial-pci")?;
    cfg.transport = props.transport;
    Ok(PciDeviceConfig { kind: PciDeviceKind::VirtioSerial(cfg), addr: props.addr })
}

/// `-device virtconsole|virtserialport,chardev=ID[,name=NAME][,bus=virtio-serialN.0][,id=]`:
/// a port on the N-th (default first) virtio-serial-pci given before it.
pub fn serial_port(kind: &str, options: &[&str], devices: &mut [PciDeviceConfig]) -> Result<()> {
    let mut port = SerialPortConfig { chardev: String::new(), name: None, console: kind == "virtconsole" };
    let mut bus = 0usize;
    for p in options {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        match k {
            "chardev" => port.chardev = v.to_string(),
            "name" => port.name = Some(v.to_string()),
            "bus" => {
                let n = v.strip_prefix("virtio-serial").and_then(|r| r.strip_suffix(".0")).and_then(|n| n.parse().ok());
                bus = n.ok_or_else(|| anyhow!("{kind}: bus={v}: expected virtio-serialN.0"))?;
            }
            "id" => {}
            _ => bail!("unknown {kind} option '{p}' (supported: chardev=, name=, bus=, id=)"),
        }
    }
    if port.chardev.is_empty() {
        bail!("{kind} needs chardev=ID (a -chardev)");
    }
    let serial = devices
        .iter_mut()
        .filter_map(|d| match &mut d.kind {
            PciDeviceKind::VirtioSerial(s) => Some(s),
            _ => None,
        })
        .nth(bus)
        .ok_or_else(|| anyhow!("{kind}: no virtio-serial bus virtio-serial{bus}.0 (give -device virtio-serial-pci first)"))?;
    serial.ports.push(port);
    Ok(())
}

/// `-device virtio-balloon-pci[,deflate-on-oom=][,free-page-reporting=]
/// [,guest-stats-polling-interval=SECONDS][,TRANSPORT OPTIONS]`
pub fn balloon(options: &[&str]) -> Result<PciDeviceConfig> {
    let mut props = VirtioPciProps::default();
    let mut cfg = VirtioBalloonConfig::default();
    for p in options {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        match k {
            "deflate-on-oom" => cfg.deflate_on_oom = on_off(k, v)?,
            "free-page-reporting" => cfg.free_page_reporting = on_off(k, v)?,
            "guest-stats-polling-interval" => {
                cfg.stats_interval_secs = v.parse().map_err(|_| anyhow!("virtio-balloon-pci: {k}={v}: expected seconds"))?
            }
            _ if props.take(k, v)? => {}
            _ => bail!(
                "unknown virtio-balloon-pci option '{p}' (supported: deflate-on-oom=, free-page-reporting=, guest-stats-polling-interval=, {TRANSPORT_OPTIONS})"
            ),
        }
    }
    props.check("virtio-balloon-pci")?;
    cfg.transport = props.transport;
    Ok(PciDeviceConfig { kind: PciDeviceKind::VirtioBalloon(cfg), addr: props.addr })
}
