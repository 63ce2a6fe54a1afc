//! The PIIX3 IDE function (00:01.1): its legacy ports on the port bus, ISA IRQ 14 and 15, and
//! the drives the machine opened. The controller exists on every PC board, with or without
//! drives, as on the real chipset and in QEMU's `pc` machine.

use super::interrupts::SyncedLine;
use super::PcBoard;
use crate::bus::{BusDevice, BusError};
use ferrite_hw::ide::{IdeDrive, IdePorts, PiixIde, IDE_LEGACY_IRQS, IDE_LEGACY_PORTS, PIIX3_IDE_DEVFN, PIIX_IDETIM};
use ferrite_hw::IrqLine;
use std::sync::{Arc, Mutex};

/// One channel's eight command-block registers.
struct CommandBlock(IdePorts);

impl BusDevice for CommandBlock {
    fn read(&self, _addr: u64, offset: u64, size: u8) -> u64 {
        self.0.command_read(offset as u16, size) as u64
    }

    fn write(&self, _addr: u64, offset: u64, size: u8, value: u64) {
        self.0.command_write(offset as u16, size, value as u32);
    }
}

/// One channel's alternate status / device control register.
struct ControlBlock(IdePorts);

impl BusDevice for ControlBlock {
    fn read(&self, _addr: u64, _offset: u64, _size: u8) -> u64 {
        self.0.control_read() as u64
    }

    fn write(&self, _addr: u64, _offset: u64, _size: u8, value: u64) {
        self.0.control_write(value as u8);
    }
}

/// Builds the controller with `drives` (`[channel][master, slave]`), plugs it at 00:01.1
/// and maps its legacy ports. Returns it so the machine can wait for its I/O at shutdown.
pub fn plug_ide(board: &PcBoard, drives: [[Option<IdeDrive>; 2]; 2]) -> Result<Arc<Mutex<PiixIde>>, PlugError> {
    let line = |n: u8| -> Arc<dyn IrqLine + Send + Sync> {
        Arc::new(SyncedLine::new(&board.irq, n))
    };
    let ide = PiixIde::new([line(IDE_LEGACY_IRQS[0]), line(IDE_LEGACY_IRQS[1])], drives).map_err(PlugError::Thread)?;
    let ports = [ide.ports(0), ide.ports(1)];
    let ide = Arc::new(Mutex::new(ide));
    board.plug_pci_with_state(PIIX3_IDE_DEVFN, ide.clone(), vec![ide.clone()]).map_err(|e| PlugError::Pci(e.to_string()))?;
    for (channel, ports) in ports.into_iter().enumerate() {
        let (command, control) = IDE_LEGACY_PORTS[channel];
        let (command, control) = (u64::from(command), u64::from(control));
        let what = ["ide0", "ide1"][channel];
        board.io.insert(what, command, 8, Arc::new(CommandBlock(ports.clone())))?;
        board.io.insert(what, control, 1, Arc::new(ControlBlock(ports)))?;
    }
    Ok(ide)
}

/// Turns on both channels' legacy decode (IDETIM bit 15), as a BIOS does before it hands over;
/// Linux's ata_piix leaves a channel whose decode is off alone. For boots without firmware.
pub fn enable_ide_decode(board: &PcBoard) {
    const DECODE_ENABLE: u32 = 0x8000;
    for channel in 0..2 {
        board.pci_config_write(PIIX3_IDE_DEVFN, (PIIX_IDETIM + 2 * channel) as u8, 2, DECODE_ENABLE);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlugError {
    #[error("cannot start the IDE I/O thread: {0}")]
    Thread(std::io::Error),
    #[error("IDE controller: {0}")]
    Pci(String),
    #[error(transparent)]
    Bus(#[from] BusError),
}
