//! The PC board: RAM, the legacy ISA devices, the local APIC and IOAPIC, the i440FX/PIIX PCI
//! functions, ACPI power management and fw_cfg, decoded by port and address. `PcBoard`
//! implements the CPU's `CpuBus`.

mod cpubus;
mod interrupts;

use crate::bus::{Bus, BusError};
use crate::clock::{wall_clock_secs, Clock};
use crate::irq::{IrqLevels, LineHandle};
use crate::memory::GuestMemory;
use ferrite_hw::acpi_pm::{self, AcpiPm, Piix4Pm};
use ferrite_hw::debug_exit::DebugExit;
use ferrite_hw::fw_cfg::FwCfg;
use ferrite_hw::i8042::I8042;
use ferrite_hw::ioapic::Ioapic;
use ferrite_hw::lapic::Lapic;
use ferrite_hw::pci::{DevFn, I440fx, PciBus, PciHost, Piix3};
use ferrite_hw::pic::PicPair;
use ferrite_hw::pit::Pit;
use ferrite_hw::port92::Port92;
use ferrite_hw::post::PostCode;
use ferrite_hw::rtc::Rtc;
use ferrite_hw::uart::Uart;
use ferrite_hw::NoIrq;
use std::io::Write;
use std::sync::Arc;

/// Port-I/O decode targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pio {
    /// PIC master, slave and ELCR: the device decodes absolute port numbers.
    Pic,
    Pit,
    PortB,
    Rtc,
    Com1,
    I8042Data,
    I8042Command,
    Port92,
    Post,
    DebugExit,
    PciHost,
    AcpiPm,
    AcpiGpe,
    Apm,
    FwCfg,
}

/// Things the board asks of the machine after an access.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BoardRequests {
    /// The guest asked for a reset (keyboard controller, port 0x92, 0xCF9).
    pub reset: bool,
    /// ACPI S5 (or S4): power off.
    pub poweroff: bool,
    /// isa-debug-exit: exit the emulator with this status.
    pub exit_code: Option<i32>,
}

pub type SerialOut = Box<dyn Write + Send>;

pub struct PcBoard {
    pub mem: GuestMemory,
    pub clock: Clock,
    irqs: Arc<IrqLevels>,
    pio: Bus<Pio>,
    pic: PicPair<NoIrq>,
    pit: Pit<LineHandle>,
    pub rtc: Rtc<LineHandle>,
    pub uart: Uart<LineHandle, SerialOut>,
    i8042: I8042<LineHandle, LineHandle>,
    port92: Port92,
    post: PostCode,
    debug_exit: Option<DebugExit>,
    pci: PciHost,
    pm: AcpiPm<LineHandle>,
    pub fw_cfg: FwCfg,
    pub lapic: Lapic,
    ioapic: Ioapic,
    pub requests: BoardRequests,
    /// Guest-physical ranges written by device DMA since the machine last looked (the CPU's
    /// decoded-code cache must drop them).
    pub dma_writes: Vec<(u64, u64)>,
}

/// ISA IRQ → IOAPIC input (the MADT's interrupt source override puts IRQ0 on GSI 2).
pub fn isa_irq_to_gsi(irq: u8) -> u8 {
    if irq == 0 {
        2
    } else {
        irq
    }
}

impl PcBoard {
    pub fn new(mem: GuestMemory, serial: SerialOut, debug_exit: Option<(u16, u16)>) -> Result<Self, BusError> {
        let clock = Clock::new();
        let now = clock.now();
        let irqs = Arc::new(IrqLevels::default());
        let line = |n: u8| LineHandle::new(&irqs, n);
        let mut pci_bus = PciBus::new();
        // The fixed functions of the i440FX/PIIX3 board; the device numbers are QEMU's.
        let wiring = |r: Result<(), ferrite_hw::pci::PciError>| r.expect("fixed PCI functions do not collide");
        wiring(pci_bus.add(ferrite_hw::pci::I440FX_DEVFN, Box::new(I440fx::new())));
        wiring(pci_bus.add(ferrite_hw::pci::PIIX3_DEVFN, Box::new(Piix3::new())));
        wiring(pci_bus.add(DevFn::new(1, 3).expect("valid devfn"), Box::new(Piix4Pm::new())));
        let mut board = PcBoard {
            mem,
            clock,
            pic: PicPair::new(NoIrq),
            pit: Pit::new(line(0)),
            rtc: Rtc::new(line(8), wall_clock_secs(), now),
            uart: Uart::new(line(ferrite_hw::uart::COM1_IRQ), serial),
            i8042: I8042::new(line(1), line(12)),
            port92: Port92::new(),
            post: PostCode::new(),
            debug_exit: debug_exit.map(|(base, size)| DebugExit::new(base, size)),
            pci: PciHost::new(pci_bus),
            pm: AcpiPm::new(line(acpi_pm::ACPI_SCI_IRQ)),
            fw_cfg: FwCfg::new(),
            lapic: Lapic::new(0, true),
            ioapic: Ioapic::new(0),
            irqs,
            pio: Bus::default(),
            requests: BoardRequests::default(),
            dma_writes: Vec::new(),
        };
        board.map_ports()?;
        let (below, above) = (board.mem.below_4g(), board.mem.above_4g());
        board.rtc.set_memory(below, above);
        board.rtc.set_cpu_count(1);
        Ok(board)
    }

    fn map_ports(&mut self) -> Result<(), BusError> {
        use ferrite_hw::{pic, pit, uart};
        let p = &mut self.pio;
        p.insert("pic master", pic::MASTER_BASE as u64, 2, Pio::Pic)?;
        p.insert("pic slave", pic::SLAVE_BASE as u64, 2, Pio::Pic)?;
        p.insert("elcr", pic::ELCR_BASE as u64, 2, Pio::Pic)?;
        p.insert("pit", pit::PIT_BASE as u64, 4, Pio::Pit)?;
        p.insert("port b", pit::PORT_B as u64, 1, Pio::PortB)?;
        p.insert("rtc", 0x70, 2, Pio::Rtc)?;
        p.insert("com1", uart::COM1_BASE as u64, uart::UART_PORTS as u64, Pio::Com1)?;
        p.insert("i8042 data", 0x60, 1, Pio::I8042Data)?;
        p.insert("i8042 command", 0x64, 1, Pio::I8042Command)?;
        p.insert("port 92", 0x92, 1, Pio::Port92)?;
        p.insert("post", 0x80, 1, Pio::Post)?;
        p.insert("pci config", ferrite_hw::pci::PCI_CONFIG_ADDRESS_PORT as u64, 8, Pio::PciHost)?;
        p.insert("acpi pm", acpi_pm::ACPI_PM_BASE as u64, acpi_pm::ACPI_PM_IO_LEN as u64, Pio::AcpiPm)?;
        p.insert("acpi gpe0", acpi_pm::ACPI_GPE0_BLK as u64, acpi_pm::GPE0_BLK_LEN as u64, Pio::AcpiGpe)?;
        p.insert("apm", acpi_pm::ACPI_SMI_CMD_PORT as u64, 2, Pio::Apm)?;
        p.insert("fw_cfg", ferrite_hw::fw_cfg::FW_CFG_PORT_SEL as u64, ferrite_hw::fw_cfg::FW_CFG_IO_LEN as u64, Pio::FwCfg)?;
        if let Some(d) = &self.debug_exit {
            p.insert("isa-debug-exit", d.iobase() as u64, d.iosize().max(1) as u64, Pio::DebugExit)?;
        }
        Ok(())
    }

    /// Feeds console input to COM1; returns how many bytes it took.
    pub fn serial_input(&mut self, bytes: &[u8]) -> usize {
        // Offer only what the receive FIFO has room for: the rest waits in the machine's queue
        // (a real UART would overrun and drop it; a pasted line must not lose characters).
        let room = self.uart.rx_space().min(bytes.len());
        if room == 0 {
            return 0;
        }
        let n = self.uart.receive(&bytes[..room]);
        self.sync_interrupts();
        n
    }

    /// Whether COM1 can take more input now.
    pub fn serial_can_receive(&self) -> bool {
        self.uart.can_receive()
    }

    /// Runs the timers that are due; returns the next time one needs attention.
    pub fn update_timers(&mut self) -> Option<u64> {
        let now = self.clock.now();
        self.pit.update(now);
        self.rtc.update(now);
        self.pm.update(now);
        self.lapic.update(now);
        self.sync_interrupts();
        [self.pit.next_event(now), self.rtc.next_event(now), self.pm.next_event(now), self.lapic.next_event(now)]
            .into_iter()
            .flatten()
            .min()
    }

    /// A20 gate: open if either the keyboard controller or port 0x92 opens it.
    pub fn a20_enabled(&self) -> bool {
        self.i8042.a20() || self.port92.a20()
    }

    /// Collects reset, power-off and exit requests the devices raised.
    fn collect_requests(&mut self) {
        if self.i8042.take_reset_request() | self.port92.take_reset_request() | self.pci.take_reset_request() {
            self.requests.reset = true;
        }
        if let Some(s) = self.pm.take_sleep_request() {
            if matches!(s, acpi_pm::SleepState::S5 | acpi_pm::SleepState::S4) {
                self.requests.poweroff = true;
            }
        }
        if let Some(code) = self.debug_exit.as_ref().and_then(|d| d.exit_code()) {
            self.requests.exit_code = Some(code as i32);
        }
    }

    pub fn take_requests(&mut self) -> BoardRequests {
        std::mem::take(&mut self.requests)
    }

    /// Last POST code written to port 0x80 (firmware debugging).
    pub fn post_code(&self) -> Option<u8> {
        self.post.last()
    }
}

#[cfg(test)]
mod tests;
