//! The PCI host bridge's configuration ports, and what configuration writes change in the
//! machine: BARs mapped and unmapped on the port and memory buses, the PAM registers'
//! shadowing of the BIOS window, PIRQ routing, and the PM I/O block's base. Also the MMIO
//! side of a PCI device (its BARs) and its plugging (INTx line, MSI, DMA).

use super::interrupts::{lock, Interrupts, PIRQ_LINE_BASE};
use super::wiring::{MachineEvent, Wiring};
use crate::bus::{Bus, BusDevice};
use ferrite_hw::pci::{pirq_for_slot, BarRegion, DevFn, PciEvent, PciHost, PciLink, PamState, SharedPciDevice};
use ferrite_memory::{Dma, GuestMemory, LegacyAttr, LEGACY_SEGMENTS};
use std::sync::{Arc, Mutex, Weak};

/// A BAR's window on a bus.
struct PciBar {
    dev: SharedPciDevice,
    index: usize,
}

impl BusDevice for PciBar {
    fn read(&self, _addr: u64, offset: u64, size: u8) -> u64 {
        let mut b = [0u8; 8];
        lock(&self.dev).bar_read(self.index, offset, &mut b[..size.clamp(1, 8) as usize]);
        u64::from_le_bytes(b)
    }

    fn write(&self, _addr: u64, offset: u64, size: u8, value: u64) {
        let b = value.to_le_bytes();
        lock(&self.dev).bar_write(self.index, offset, &b[..size.clamp(1, 8) as usize]);
    }
}

pub(crate) struct PciPorts {
    pub host: Mutex<PciHost>,
    io: Weak<Bus>,
    mmio: Weak<Bus>,
    mem: Arc<GuestMemory>,
    irq: Arc<Interrupts>,
    wiring: Arc<Wiring>,
    /// The PM I/O block's device and where it is mapped now.
    pm: Arc<dyn BusDevice>,
    pm_base: Mutex<Option<u16>>,
}

impl PciPorts {
    pub fn new(
        host: PciHost,
        io: &Arc<Bus>,
        mmio: &Arc<Bus>,
        mem: &Arc<GuestMemory>,
        irq: &Arc<Interrupts>,
        wiring: &Arc<Wiring>,
        pm: Arc<dyn BusDevice>,
        pm_base: Option<u16>,
    ) -> Self {
        PciPorts {
            host: Mutex::new(host),
            io: Arc::downgrade(io),
            mmio: Arc::downgrade(mmio),
            mem: mem.clone(),
            irq: irq.clone(),
            wiring: wiring.clone(),
            pm,
            pm_base: Mutex::new(pm_base),
        }
    }

    /// Plugs a device in: it gets its INTx wire (through the slot's PIRQ), MSI delivery and a
    /// DMA handle, and its BARs are mapped as it decodes them.
    pub fn plug(&self, devfn: DevFn, dev: SharedPciDevice) -> Result<(), ferrite_hw::pci::PciError> {
        let pin = lock(&dev).config_read(ferrite_hw::pci::PCI_INTERRUPT_PIN as u8, 1) as u8;
        let pirq = pirq_for_slot(devfn.device(), pin).unwrap_or(0);
        let link = PciLink {
            // Synced: cards raise interrupts from their own threads too (received frames).
            intx: Arc::new(super::interrupts::SyncedLine::new(&self.irq, PIRQ_LINE_BASE + pirq)),
            msi: self.irq.clone(),
            dma: Dma::new(self.mem.clone()),
        };
        lock(&dev).attach(link);
        let mut host = lock(&self.host);
        host.bus.add(devfn, dev)?;
        self.apply(host);
        Ok(())
    }

    /// Reports every function's BARs and chipset state again (after a restore).
    pub fn resync(&self) {
        let mut host = lock(&self.host);
        host.bus.sync_all();
        self.apply(host);
    }

    /// Acts on the events the last configuration access raised; consumes the host's lock.
    fn apply(&self, mut host: std::sync::MutexGuard<'_, PciHost>) {
        let events: Vec<PciEvent> = host.bus.drain_events().collect();
        let devices: Vec<Option<SharedPciDevice>> = events
            .iter()
            .map(|e| match e {
                PciEvent::Bar(c) => host.bus.shared(c.devfn),
                _ => None,
            })
            .collect();
        let reset = host.take_reset_request();
        drop(host);
        for (ev, dev) in events.into_iter().zip(devices) {
            match ev {
                PciEvent::Bar(c) => {
                    if let Some(old) = c.old {
                        self.bus_of(&old).map(|b| b.remove(old.address));
                    }
                    if let (Some(new), Some(dev)) = (c.new, dev) {
                        self.map_bar(c.devfn, &new, dev);
                    }
                }
                PciEvent::Pam(state) => self.mem.set_legacy(&legacy_attrs(&state)),
                // No SMM: the 0xA0000-0xBFFFF window stays as it is.
                PciEvent::Smram(_) => {}
                PciEvent::PirqRoute { pirq, irq } => {
                    if let Some(r) = lock(&self.irq.intc).pirq_routes.get_mut(pirq as usize) {
                        *r = irq;
                    }
                }
                PciEvent::PmIoBase { base } => self.move_pm(base),
            }
        }
        if reset {
            self.wiring.raise(MachineEvent::Reset);
        }
    }

    fn bus_of(&self, bar: &BarRegion) -> Option<Arc<Bus>> {
        if bar.is_io() {
            self.io.upgrade()
        } else {
            self.mmio.upgrade()
        }
    }

    fn map_bar(&self, devfn: DevFn, bar: &BarRegion, dev: SharedPciDevice) {
        let Some(bus) = self.bus_of(bar) else { return };
        let what = format!("PCI {devfn} BAR{}", bar.index);
        // A guest may program overlapping BARs (sizing, or by mistake): the first mapping keeps
        // the range, as on a real bus where the result is undefined.
        if let Err(e) = bus.insert(&what, bar.address, bar.size, Arc::new(PciBar { dev, index: bar.index })) {
            eprintln!("ferrite: {e}");
        }
    }

    fn move_pm(&self, base: Option<u16>) {
        let Some(io) = self.io.upgrade() else { return };
        let mut cur = lock(&self.pm_base);
        if *cur == base {
            return;
        }
        if let Some(old) = *cur {
            io.remove(old as u64);
        }
        if let Some(new) = base {
            let len = ferrite_hw::acpi_pm::ACPI_PM_IO_LEN as u64;
            if let Err(e) = io.insert("acpi pm", new as u64, len, self.pm.clone()) {
                eprintln!("ferrite: {e}");
            }
        }
        *cur = base;
    }
}

fn legacy_attrs(state: &PamState) -> [LegacyAttr; LEGACY_SEGMENTS] {
    std::array::from_fn(|i| LegacyAttr { read_ram: state.segments[i].read_dram, write_ram: state.segments[i].write_dram })
}

impl BusDevice for PciPorts {
    fn read(&self, _addr: u64, offset: u64, size: u8) -> u64 {
        ferrite_hw::PioDevice::read(&mut *lock(&self.host), offset as u16, size) as u64
    }

    fn write(&self, _addr: u64, offset: u64, size: u8, value: u64) {
        let mut host = lock(&self.host);
        ferrite_hw::PioDevice::write(&mut *host, offset as u16, size, value as u32);
        self.apply(host);
    }
}

/// The host bridge's own registers (CONFIG_ADDRESS, 0xCF9) in snapshots.
impl crate::snapshot::registry::Stateful for PciPorts {
    fn save(&self, id: &str) -> ferrite_persist::Section {
        ferrite_persist::save(&*lock(&self.host), id)
    }

    fn load(&self, section: &ferrite_persist::Section) -> Result<(), ferrite_persist::LoadError> {
        ferrite_persist::load(&mut *lock(&self.host), section)
    }
}
