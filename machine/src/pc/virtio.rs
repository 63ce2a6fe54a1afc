//! The virtio PCI devices of `-device virtio-*-pci` (and `-drive if=virtio`): their host
//! backends, opened once per machine and kept across resets, and the devices of the current
//! board that run threads of their own.

use crate::chardev::{Chardev, Frontend};
use crate::config::{MachineConfig, PciDeviceKind, VirtioBalloonConfig, VirtioBlkConfig, VirtioSerialConfig, VirtioTransport};
use crate::MachineError;
use ferrite_block::Disk;
use ferrite_hw::pci::SharedPciDevice;
use ferrite_hw::virtio::blk::MAX_QUEUES;
use ferrite_hw::virtio::{
    BalloonControl, PortConfig, PortHandle, PortOutput, VirtioBalloon, VirtioBalloonOptions, VirtioBlk, VirtioBlkOptions,
    VirtioConsole, VirtioConsoleOptions, VirtioDevice, VirtioPci, VirtioPciOptions, VirtioRng,
};
use crate::snapshot::registry::Stateful;
use ferrite_persist::{LoadError, Persist, Section};
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use super::interrupts::lock;

/// What virtio devices use on the host, opened when the machine is created.
pub struct VirtioBackends {
    /// The image of each virtio disk, in `pci_devices` order.
    disks: Vec<Arc<dyn Disk>>,
    /// Their image formats.
    pub(crate) formats: Vec<ferrite_block::ImageFormat>,
    /// Every `-chardev`, for the console ports.
    chardevs: Vec<Arc<Chardev>>,
}

impl VirtioBackends {
    /// Opens every virtio disk's image (a bad image is an error before the guest starts).
    pub fn open(cfg: &MachineConfig, chardevs: Vec<Arc<Chardev>>) -> Result<Self, MachineError> {
        let (mut disks, mut formats) = (Vec::new(), Vec::new());
        for d in &cfg.pci_devices {
            if let PciDeviceKind::VirtioBlk(b) = &d.kind {
                let opened = crate::images::open_image(cfg, &b.image)?;
                disks.push(opened.disk);
                formats.push(opened.format);
            }
        }
        Ok(VirtioBackends { disks, formats, chardevs })
    }

    /// Waits (up to `limit` each) until every chardev wrote out what was queued for it.
    pub(crate) fn drain_chardevs(&self, limit: std::time::Duration) {
        for c in &self.chardevs {
            c.drain(limit);
        }
    }

    /// The virtio disks' images, in `pci_devices` order.
    pub(crate) fn disks(&self) -> &[Arc<dyn Disk>] {
        &self.disks
    }

    pub(crate) fn chardev(&self, id: &str) -> Result<Arc<Chardev>, MachineError> {
        self.chardevs.iter().find(|c| c.id() == id).cloned().ok_or_else(|| MachineError::Pci(format!("virtio serial port: no -chardev with id={id}")))
    }

    /// The virtio disks' images with their files (`cfg`: the machine they were opened for).
    pub(crate) fn images<'a>(&'a self, cfg: &'a MachineConfig) -> impl Iterator<Item = (&'a Path, &'a Arc<dyn Disk>)> {
        let paths = cfg.pci_devices.iter().filter_map(|d| match &d.kind {
            PciDeviceKind::VirtioBlk(b) => Some(b.image.path.as_path()),
            _ => None,
        });
        paths.zip(&self.disks)
    }
}

/// The current board's virtio devices that have threads (their requests must finish before
/// a reset or exit).
#[derive(Default)]
pub struct LiveVirtio {
    disks: Vec<Arc<Mutex<VirtioPci<VirtioBlk>>>>,
    /// The balloon's control handle (one balloon per machine).
    pub balloon: Option<BalloonControl>,
}

impl LiveVirtio {
    /// Waits for requests in progress and stops the devices' threads.
    pub fn quiesce(&self) {
        for d in &self.disks {
            lock(d).device_mut().quiesce();
        }
    }

    /// Starts the devices' threads again after [`LiveVirtio::quiesce`] (the machine runs on
    /// after saving its state): each active device is re-activated where its rings stand, the
    /// path a restore takes.
    pub fn resume(&self) {
        for d in &self.disks {
            let mut d = lock(d);
            // The transport resets an active device before re-activating it; what the driver
            // chose (the write cache mode) is put back afterwards.
            let own = Persist::save(d.device());
            let state = Persist::save(&*d);
            let resumed = Persist::restore(&mut *d, state).and_then(|()| Persist::restore(d.device_mut(), own));
            if let Err(e) = resumed {
                eprintln!("ferrite: virtio-blk could not resume after saving the machine: {e}");
            }
        }
    }
}

/// Builds devices for one board, taking backends in order.
pub struct VirtioFactory<'a> {
    backends: &'a VirtioBackends,
    cpus: u32,
    next_disk: usize,
    pub live: LiveVirtio,
}

pub(crate) fn transport_options(t: VirtioTransport) -> VirtioPciOptions {
    VirtioPciOptions { disable_legacy: t.disable_legacy, disable_modern: t.disable_modern, packed: t.packed, msix_vectors: None }
}

fn wrap<D: VirtioDevice + 'static>(name: &str, dev: D, t: VirtioTransport) -> Result<Arc<Mutex<VirtioPci<D>>>, MachineError> {
    let pci = VirtioPci::new(dev, transport_options(t)).map_err(|e| MachineError::Pci(format!("{name}: {e}")))?;
    Ok(Arc::new(Mutex::new(pci)))
}

impl<'a> VirtioFactory<'a> {
    pub fn new(backends: &'a VirtioBackends, cpus: u32) -> Self {
        VirtioFactory { backends, cpus, next_disk: 0, live: LiveVirtio::default() }
    }

    /// The device for `kind` with what snapshots save of it (the device's own state, then
    /// its transport's), or `None` if it is not a virtio device.
    pub fn build(&mut self, kind: &PciDeviceKind) -> Result<Option<(SharedPciDevice, Vec<Arc<dyn Stateful>>)>, MachineError> {
        Ok(Some(match kind {
            PciDeviceKind::VirtioRng(t) => {
                let rng = VirtioRng::new().map_err(|e| MachineError::Pci(format!("virtio-rng-pci: host entropy: {e}")))?;
                let dev = wrap("virtio-rng-pci", rng, *t)?;
                (dev.clone(), vec![dev])
            }
            PciDeviceKind::VirtioBlk(cfg) => {
                let dev = self.disk(cfg)?;
                self.live.disks.push(dev.clone());
                (dev.clone(), vec![Arc::new(Inner(dev.clone())), dev])
            }
            PciDeviceKind::VirtioSerial(cfg) => {
                let dev = self.serial(cfg)?;
                (dev.clone(), vec![Arc::new(Inner(dev.clone())), dev])
            }
            PciDeviceKind::VirtioBalloon(cfg) => {
                let dev = self.balloon(cfg)?;
                (dev.clone(), vec![Arc::new(Inner(dev.clone())), dev])
            }
            _ => return Ok(None),
        }))
    }

    fn disk(&mut self, cfg: &VirtioBlkConfig) -> Result<Arc<Mutex<VirtioPci<VirtioBlk>>>, MachineError> {
        let disk = self.backends.disks.get(self.next_disk).cloned().ok_or_else(|| MachineError::Pci("virtio-blk-pci: image not opened".into()))?;
        self.next_disk += 1;
        let default_queues = self.cpus.clamp(1, u32::from(MAX_QUEUES)) as u16;
        let opts = VirtioBlkOptions {
            num_queues: cfg.num_queues.unwrap_or(default_queues),
            queue_size: cfg.queue_size,
            serial: cfg.serial.clone(),
            writeback: !cfg.image.cache.sync_every_write(),
            discard_unmap: cfg.image.discard,
        };
        let blk = VirtioBlk::new(disk, &opts).map_err(|e| MachineError::Pci(format!("virtio-blk-pci ({}): {e}", cfg.image.path.display())))?;
        wrap("virtio-blk-pci", blk, cfg.transport)
    }

    fn serial(&mut self, cfg: &VirtioSerialConfig) -> Result<Arc<Mutex<VirtioPci<VirtioConsole>>>, MachineError> {
        let mut ports = Vec::new();
        let mut chardevs = Vec::new();
        for p in &cfg.ports {
            let chardev = self.backends.chardev(&p.chardev)?;
            ports.push(PortConfig { name: p.name.clone(), is_console: p.console, output: Arc::new(ChardevOutput(chardev.clone())) });
            chardevs.push(chardev);
        }
        let opts = VirtioConsoleOptions { max_nr_ports: cfg.max_ports, ..Default::default() };
        let (console, handles) = VirtioConsole::new(ports, opts).map_err(|e| MachineError::Pci(format!("virtio-serial-pci: {e}")))?;
        for (handle, chardev) in handles.into_iter().zip(chardevs) {
            let weak = Arc::downgrade(&chardev);
            handle.set_rx_waker(Box::new(move || wake(&weak)));
            chardev.attach(Arc::new(PortFrontend(handle)));
        }
        wrap("virtio-serial-pci", console, cfg.transport)
    }

    fn balloon(&mut self, cfg: &VirtioBalloonConfig) -> Result<Arc<Mutex<VirtioPci<VirtioBalloon>>>, MachineError> {
        if self.live.balloon.is_some() {
            return Err(MachineError::Pci("virtio-balloon-pci: only one balloon per machine".into()));
        }
        let opts = VirtioBalloonOptions { deflate_on_oom: cfg.deflate_on_oom, free_page_reporting: cfg.free_page_reporting };
        let (balloon, control) = VirtioBalloon::new(opts);
        self.live.balloon = Some(control);
        wrap("virtio-balloon-pci", balloon, cfg.transport)
    }
}

/// A virtio device's own state (behind its transport) in snapshots. Register it before the
/// transport: it loads first, into the fresh device the transport's restore then activates.
pub(crate) struct Inner<D: VirtioDevice>(pub(crate) Arc<Mutex<VirtioPci<D>>>);

impl<D: VirtioDevice + Persist + 'static> Stateful for Inner<D> {
    fn save(&self, id: &str) -> Section {
        ferrite_persist::save(lock(&self.0).device(), id)
    }

    fn load(&self, section: &Section) -> Result<(), LoadError> {
        ferrite_persist::load(lock(&self.0).device_mut(), section)
    }
}

fn wake(chardev: &Weak<Chardev>) {
    if let Some(c) = chardev.upgrade() {
        c.wake();
    }
}

/// What the guest writes to a port goes to its chardev.
struct ChardevOutput(Arc<Chardev>);

impl PortOutput for ChardevOutput {
    fn write(&self, data: &[u8]) {
        self.0.write(data);
    }

    fn host_connected(&self) -> bool {
        self.0.is_connected()
    }
}

/// A port as its chardev's frontend: host bytes go to the guest.
struct PortFrontend(PortHandle);

impl Frontend for PortFrontend {
    fn receive(&self, data: &[u8]) -> usize {
        self.0.send(data)
    }

    fn connected(&self, up: bool) {
        self.0.set_host_connected(up);
    }
}
