//! The PC board: guest memory, the legacy ISA devices, a local APIC per vCPU and the IOAPIC,
//! the i440FX/PIIX PCI functions, ACPI power management and fw_cfg, on port and memory buses
//! shared by every vCPU thread. [`VcpuBus`] is one vCPU's view of it (the CPU's `CpuBus`).

mod cpubus;
mod devices;
pub mod interrupts;
pub mod irq_stats;
mod pci;
pub mod storage;
pub mod network;
mod timers;
pub mod virtio;
pub mod wiring;

pub use cpubus::VcpuBus;
pub use interrupts::{isa_irq_to_gsi, CpuLink, Interrupts};
pub use timers::spawn_timer_thread;
pub use wiring::{MachineEvent, Wiring};

use crate::bus::{Bus, BusDevice, BusError};
use crate::irq::{IrqLevels, LineHandle};
use crate::snapshot::registry::{IoapicOf, LapicOf, Phase, PicOf, Registry, Stateful};
use devices::{BoardI8042, BoardPit, BoardPm, BoardRtc};
use ferrite_hw::acpi_pm::{self, AcpiPm, Piix4Pm};
use ferrite_hw::debug_exit::DebugExit;
use ferrite_hw::fw_cfg::FwCfg;
use ferrite_hw::i8042::I8042;
use ferrite_hw::lapic::Lapic;
use ferrite_hw::pci::{DevFn, I440fx, PciBus, PciHost, Piix3, SharedPciDevice};
use ferrite_hw::pit::Pit;
use ferrite_hw::port92::Port92;
use ferrite_hw::post::PostCode;
use ferrite_hw::rtc::Rtc;
use ferrite_hw::uart::Uart;
use ferrite_memory::{Dma, GuestMemory};
use interrupts::lock;
use pci::PciPorts;
use std::io::Write;
use ferrite_cpu::Attention;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

pub type SerialOut = Box<dyn Write + Send>;
pub type BoardUart = Uart<LineHandle, SerialOut>;

/// Guest-physical window of the IOAPIC.
const IOAPIC_BASE: u64 = ferrite_hw::ioapic::IOAPIC_BASE;
const IOAPIC_SIZE: u64 = ferrite_hw::ioapic::IOAPIC_SIZE;

/// What the board is built from.
pub struct BoardSpec {
    /// APIC ID of each vCPU (index 0 is the bootstrap processor).
    pub apic_ids: Vec<u32>,
    /// Each vCPU's flags (`Cpu::attention`).
    pub attention: Vec<Arc<Attention>>,
    pub serial: SerialOut,
    pub debug_exit: Option<(u16, u16)>,
    /// Machine events (reset, power-off, exit) go here.
    pub events: Sender<MachineEvent>,
    /// What the firmware tries to boot from, in order.
    pub boot_order: Vec<ferrite_hw::rtc::cmos::BootDevice>,
    /// The RTC's time at power-on, seconds since the epoch (`-rtc base=`).
    pub rtc_start_secs: i64,
}

/// A PCI function's id among the board's stateful objects.
pub fn pci_state_id(devfn: DevFn) -> String {
    format!("pci {devfn}")
}

/// Devices the timer thread drives.
pub(crate) struct Timed {
    pub pit: Arc<Mutex<BoardPit>>,
    pub rtc: Arc<Mutex<BoardRtc>>,
    pub pm: Arc<Mutex<BoardPm>>,
}

pub struct PcBoard {
    pub mem: Arc<GuestMemory>,
    pub wiring: Arc<Wiring>,
    pub irq: Arc<Interrupts>,
    /// Port I/O space.
    pub io: Arc<Bus>,
    /// Memory space outside RAM and ROM (device MMIO, PCI BARs).
    pub mmio: Arc<Bus>,
    pub uart: Arc<Mutex<BoardUart>>,
    pub fw_cfg: Arc<Mutex<FwCfg>>,
    post: Arc<Mutex<PostCode>>,
    pci: Arc<PciPorts>,
    pub(crate) timed: Timed,
    /// Drive the A20 gate (re-applied after a restore).
    i8042: Arc<Mutex<BoardI8042>>,
    port92: Arc<Mutex<Port92>>,
    /// Everything whose state snapshots carry.
    pub state: Registry,
}

/// fw_cfg's ports, with DMA into guest RAM.
struct FwCfgPorts {
    dev: Arc<Mutex<FwCfg>>,
    dma: Dma,
}

impl BusDevice for FwCfgPorts {
    fn read(&self, _addr: u64, offset: u64, size: u8) -> u64 {
        lock(&self.dev).read(offset as u16, size) as u64
    }

    fn write(&self, _addr: u64, offset: u64, size: u8, value: u64) {
        lock(&self.dev).write(offset as u16, size, value as u32, &self.dma);
    }
}

impl PcBoard {
    pub fn new(mem: GuestMemory, spec: BoardSpec) -> Result<Arc<Self>, BusError> {
        let mem = Arc::new(mem);
        let wiring = Arc::new(Wiring::new(spec.attention.clone(), spec.events));
        let now = wiring.clock.now();
        let irqs = Arc::new(IrqLevels::default());
        let line = |n: u8| LineHandle::new(&irqs, n);
        let cpus = spec
            .apic_ids
            .iter()
            .zip(&spec.attention)
            .enumerate()
            .map(|(i, (&id, attention))| CpuLink::new(Lapic::new(id, i == 0), attention.clone()))
            .collect();
        let irq = Arc::new(Interrupts::new(cpus, irqs.clone()));
        wiring.attach_cpus(&irq);
        let io = Arc::new(Bus::default());
        let mmio = Arc::new(Bus::default());
        let w = &wiring;

        let pit = Arc::new(Mutex::new(Pit::new(line(0))));
        let mut rtc = Rtc::new(line(8), spec.rtc_start_secs, now);
        rtc.set_memory(mem.below_4g(), mem.above_4g());
        rtc.set_cpu_count(spec.apic_ids.len() as u32);
        // The boot order (`-boot`), which SeaBIOS reads from CMOS on QEMU-style machines.
        rtc.set_boot_order(&spec.boot_order, true);
        let rtc = Arc::new(Mutex::new(rtc));
        let pm = Arc::new(Mutex::new(AcpiPm::new(line(acpi_pm::ACPI_SCI_IRQ))));
        let uart = Arc::new(Mutex::new(Uart::new(line(ferrite_hw::uart::COM1_IRQ), spec.serial)));
        let i8042: Arc<Mutex<BoardI8042>> = Arc::new(Mutex::new(I8042::new(line(1), line(12))));
        let port92 = Arc::new(Mutex::new(Port92::new()));
        // The A20 gate starts as the keyboard controller and port 0x92 come out of reset.
        wiring.set_a20(wiring::A20_KBC, lock(&i8042).a20());
        wiring.set_a20(wiring::A20_PORT92, lock(&port92).a20());
        let post = Arc::new(Mutex::new(PostCode::new()));
        let fw_cfg = Arc::new(Mutex::new(FwCfg::new()));

        use ferrite_hw::{pic, pit as pitc, uart as uartc};
        let pic_ports: Arc<dyn BusDevice> = Arc::new(devices::PicPorts(irq.clone()));
        io.insert("pic master", pic::MASTER_BASE as u64, 2, pic_ports.clone())?;
        io.insert("pic slave", pic::SLAVE_BASE as u64, 2, pic_ports.clone())?;
        io.insert("elcr", pic::ELCR_BASE as u64, 2, pic_ports)?;
        io.insert("pit", pitc::PIT_BASE as u64, 4, devices::pit(&pit, w))?;
        io.insert("port b", pitc::PORT_B as u64, 1, devices::port_b(&pit, w))?;
        io.insert("rtc", 0x70, 2, devices::rtc(&rtc, w))?;
        io.insert("com1", uartc::COM1_BASE as u64, uartc::UART_PORTS as u64, devices::pio(&uart, w))?;
        io.insert("i8042 data", 0x60, 1, devices::i8042(&i8042, w, 0))?;
        io.insert("i8042 command", 0x64, 1, devices::i8042(&i8042, w, 4))?;
        io.insert("port 92", 0x92, 1, devices::port92(&port92, w))?;
        io.insert("post", 0x80, 1, devices::post(&post, w))?;
        io.insert("acpi gpe0", acpi_pm::ACPI_GPE0_BLK as u64, acpi_pm::GPE0_BLK_LEN as u64, devices::acpi_gpe(&pm, w))?;
        io.insert("apm", acpi_pm::ACPI_SMI_CMD_PORT as u64, 2, devices::apm(&pm, w))?;
        let fw_cfg_ports = Arc::new(FwCfgPorts { dev: fw_cfg.clone(), dma: Dma::new(mem.clone()) });
        io.insert("fw_cfg", ferrite_hw::fw_cfg::FW_CFG_PORT_SEL as u64, ferrite_hw::fw_cfg::FW_CFG_IO_LEN as u64, fw_cfg_ports)?;
        let state = Registry::default();
        let objects: [(&str, Arc<dyn Stateful>); 8] =
            [("pit", pit.clone()), ("rtc", rtc.clone()), ("acpi-pm", pm.clone()), ("com1", uart.clone()), ("i8042", i8042.clone()), ("port92", port92.clone()), ("post", post.clone()), ("fw_cfg", fw_cfg.clone())];
        for (id, o) in objects {
            state.register(Phase::Devices, id, o);
        }
        if let Some((base, size)) = spec.debug_exit {
            let d = Arc::new(Mutex::new(DebugExit::new(base, size)));
            io.insert("isa-debug-exit", base as u64, size.max(1) as u64, devices::debug_exit(&d, w))?;
            state.register(Phase::Devices, "isa-debug-exit", d);
        }
        state.register(Phase::InterruptControllers, "pic", Arc::new(PicOf(irq.clone())));
        state.register(Phase::InterruptControllers, "ioapic", Arc::new(IoapicOf(irq.clone())));
        for i in 0..irq.cpus.len() {
            state.register(Phase::InterruptControllers, format!("lapic{i}"), Arc::new(LapicOf(irq.clone(), i)));
        }
        mmio.insert("ioapic", IOAPIC_BASE, IOAPIC_SIZE, Arc::new(devices::IoapicMmio(irq.clone())))?;

        // The PM block starts where the PIIX4 PM function decodes it; PCI config moves it.
        let pm_dev = devices::acpi_pm(&pm, w);
        let pm_base = acpi_pm::ACPI_PM_BASE;
        io.insert("acpi pm", pm_base as u64, acpi_pm::ACPI_PM_IO_LEN as u64, pm_dev.clone())?;
        let pci = Arc::new(PciPorts::new(PciHost::new(PciBus::new()), &io, &mmio, &mem, &irq, w, pm_dev, Some(pm_base)));
        io.insert("pci config", ferrite_hw::pci::PCI_CONFIG_ADDRESS_PORT as u64, 8, pci.clone())?;
        // The fixed functions of the i440FX/PIIX3 board; the device numbers are QEMU's.
        state.register(Phase::Devices, "pci-host", pci.clone());
        let (i440fx, piix3, piix4_pm) = (Arc::new(Mutex::new(I440fx::new())), Arc::new(Mutex::new(Piix3::new())), Arc::new(Mutex::new(Piix4Pm::new())));
        let fixed: [(DevFn, SharedPciDevice, Arc<dyn Stateful>); 3] = [
            (ferrite_hw::pci::I440FX_DEVFN, i440fx.clone(), i440fx),
            (ferrite_hw::pci::PIIX3_DEVFN, piix3.clone(), piix3),
            (DevFn::new(1, 3).expect("valid devfn"), piix4_pm.clone(), piix4_pm),
        ];
        for (devfn, dev, stateful) in fixed {
            pci.plug(devfn, dev).expect("fixed PCI functions do not collide");
            state.register(Phase::Devices, pci_state_id(devfn), stateful);
        }
        Ok(Arc::new(PcBoard {
            mem,
            wiring,
            irq,
            io,
            mmio,
            uart,
            fw_cfg,
            post,
            pci,
            timed: Timed { pit, rtc, pm },
            i8042,
            port92,
            state,
        }))
    }

    /// The PCI host's ports (the monitor's `info pci`).
    pub(crate) fn pci_ports(&self) -> &PciPorts {
        &self.pci
    }

    /// Plugs a PCI device (`-device`), with its INTx, MSI and DMA wiring.
    pub fn plug_pci(&self, devfn: DevFn, dev: SharedPciDevice) -> Result<(), ferrite_hw::pci::PciError> {
        self.pci.plug(devfn, dev)
    }

    /// Plugs a PCI device whose state snapshots carry (as `pci DEVFN`, `state` in load order:
    /// a virtio device's own state before its transport's).
    pub fn plug_pci_with_state(&self, devfn: DevFn, dev: SharedPciDevice, state: Vec<Arc<dyn Stateful>>) -> Result<(), ferrite_hw::pci::PciError> {
        self.pci.plug(devfn, dev)?;
        let n = state.len();
        for (i, s) in state.into_iter().enumerate() {
            let id = if i + 1 == n { pci_state_id(devfn) } else { format!("{} part{i}", pci_state_id(devfn)) };
            self.state.register(Phase::Devices, id, s);
        }
        Ok(())
    }

    /// After a restore: BARs, PAM, PIRQ routes and the PM base as the restored configuration
    /// spaces say, the A20 gate as the 8042 and port 0x92 drive it, and the interrupt
    /// controllers' outputs as their restored state implies.
    pub fn restored(&self) {
        self.pci.resync();
        self.wiring.set_a20(wiring::A20_KBC, lock(&self.i8042).a20());
        self.wiring.set_a20(wiring::A20_PORT92, lock(&self.port92).a20());
        self.irq.restored();
    }

    /// Whether any function of PCI slot `slot` is present.
    pub fn pci_slot_taken(&self, slot: u8) -> bool {
        let host = lock(&self.pci.host);
        (0..8).any(|f| DevFn::new(slot, f).is_some_and(|d| host.bus.contains(d)))
    }

    /// A configuration-space write as the guest would do it through 0xCF8/0xCFC (firmware
    /// set-up on direct kernel boot, tests).
    pub fn pci_config_write(&self, devfn: DevFn, offset: u8, size: u8, value: u32) {
        let addr = ferrite_hw::pci::CONFIG_ADDRESS_ENABLE | (devfn.0 as u32) << 8 | (offset as u32 & 0xfc);
        self.io.write(ferrite_hw::pci::PCI_CONFIG_ADDRESS_PORT as u64, 4, addr as u64);
        self.io.write(ferrite_hw::pci::PCI_CONFIG_DATA_PORT as u64 + (offset as u64 & 3), size, value as u64);
    }

    /// Presses the ACPI power button (PM1 PWRBTN_STS, an SCI if the OS enabled it); returns
    /// whether the OS listens for it.
    pub fn press_power_button(&self) -> bool {
        let heard = lock(&self.timed.pm).press_power_button();
        self.irq.sync();
        heard
    }

    /// A key of the PS/2 keyboard goes down or up (the monitor's `sendkey`); returns whether
    /// the keyboard took it.
    pub fn key_event(&self, key: ferrite_hw::i8042::keys::Key, down: bool) -> bool {
        let taken = lock(&self.i8042).key_event(key, down);
        self.irq.sync();
        taken
    }

    /// Feeds console input to COM1; returns how many bytes it took.
    pub fn serial_input(&self, bytes: &[u8]) -> usize {
        let mut uart = lock(&self.uart);
        // Offer only what the receive FIFO has room for: the rest waits in the machine's queue
        // (a real UART would overrun and drop it; a pasted line must not lose characters).
        let room = uart.rx_space().min(bytes.len());
        let n = if room == 0 { 0 } else { uart.receive(&bytes[..room]) };
        drop(uart);
        self.irq.sync();
        n
    }

    /// Last POST code written to port 0x80 (firmware debugging).
    pub fn post_code(&self) -> Option<u8> {
        lock(&self.post).last()
    }

    /// Runs the timers that are due; returns the next time one needs attention.
    pub fn update_timers(&self) -> Option<u64> {
        let now = self.wiring.clock.now();
        let mut next: Option<u64> = None;
        let mut due = |t: Option<u64>| next = match (next, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        {
            let mut pit = lock(&self.timed.pit);
            pit.update(now);
            due(pit.next_event(now));
        }
        {
            let mut rtc = lock(&self.timed.rtc);
            rtc.update(now);
            due(rtc.next_event(now));
        }
        {
            let mut pm = lock(&self.timed.pm);
            pm.update(now);
            due(pm.next_event(now));
        }
        for i in 0..self.irq.cpus.len() {
            let mut l = lock(&self.irq.cpus[i].lapic);
            l.update(now);
            due(l.next_event(now));
            drop(l);
            self.irq.update_intr(i);
        }
        self.irq.sync();
        next
    }
}

#[cfg(test)]
mod tests;
