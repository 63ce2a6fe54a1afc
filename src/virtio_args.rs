//! Options every virtio PCI device shares (`addr=`, `disable-legacy=`, `disable-modern=`,
//! `id=`), and the devices that need nothing else: `-device virtio-rng-pci`.

use crate::cli::parse_pci_addr;
use crate::storage_args::on_off;
use anyhow::{bail, Result};
use ferrite_machine::config::{PciDeviceConfig, PciDeviceKind, VirtioTransport};

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
pub const TRANSPORT_OPTIONS: &str = "addr=, disable-legacy=, disable-modern=, id=";

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
