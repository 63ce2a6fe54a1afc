//! The PIIX3 IDE controller, PCI function 00:01.1 of the i440FX PC (Intel 82371SB datasheet,
//! "PCI Configuration Registers - IDE Interface", and the SFF-8038i bus-master IDE spec),
//! with ATA disks (ATA/ATAPI-6, T13 1410D) and ATAPI CD/DVD-ROM drives (MMC-3, SPC-3).
//!
//! # Shape
//! * [`PiixIde`] is the PCI function: configuration space (class 01:01:80, compatibility mode
//!   only, IDETIM/SIDETIM timing registers as plain storage) and BAR4, the 16-byte bus-master
//!   block (8 bytes per channel).
//! * Each channel's state lives behind its own lock; [`IdePorts`] is a cloneable handle to
//!   one channel that the machine maps at the legacy ports (0x1F0-0x1F7 + 0x3F6 and
//!   0x170-0x177 + 0x376) without locking the PCI function. Lock order: the PCI function,
//!   then a channel.
//! * Every disk read, write and flush runs on the channel's [`IoThread`]; the job takes only
//!   the channel lock to complete the command (status, data, interrupt). Commands carry the
//!   drive's generation number, so a completion that arrives after a reset or a newer
//!   command is dropped.
//! * Interrupts: channel 0 drives ISA IRQ 14, channel 1 IRQ 15, at the level "selected
//!   drive's INTRQ and not nIEN" (ATA-6 5.2.9).
//!
//! # Absent devices
//! ATA-6 9.16 ("device 0 only configurations"): the command block registers are written to
//! both devices, so with device 1 absent its sector count/LBA/device registers read back what
//! was written (Linux's 0x55/0xAA presence probe "finds" it), while its status, alternate
//! status and error registers read 0 (which makes Linux and SeaBIOS discard it after the
//! reset and IDENTIFY). Commands for an absent device are ignored. A channel with no device
//! at all reads 0 everywhere.
//!
//! # Decisions the specs leave open
//! * Legacy ports decode regardless of PCICMD I/O enable and the IDETIM decode-enable bits
//!   (as QEMU does); the bits are stored for firmware and drivers that check them.
//! * PIO data-in commands are fetched from the disk in chunks of up to 64 KiB; the guest
//!   reads one DRQ block (a sector, the multiple count, or the ATAPI byte count limit, rounded
//!   down to whole 2048-byte sectors when it is at least one) at a time. PIO writes are
//!   written one DRQ block at a time. A 32-bit data access never spans two blocks.
//! * A PRD table shorter than the transfer leaves the device busy (SFF-8038i: Active and
//!   Interrupt both clear); only a reset recovers, as on hardware.
//! * A DMA transfer starts when the drive has a DMA command and the bus master has been
//!   started (a 0-to-1 write of the start bit), in either order; one transfer per start.

mod ata;
mod atapi;
mod bmdma;
mod channel;
mod identify;
mod io;
mod state;
pub use state::*;

#[cfg(test)]
mod tests;

use crate::pci::{BarKind, BarRegion, ConfigSpace, DevFn, PciDevice, PciLink, PCI_COMMAND, PCI_STATUS};
use crate::IrqLine;
use channel::Channel;
use ferrite_block::{Disk, IoThread};
use io::Request;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Where the function sits on the i440FX board (device 1, function 1).
pub const PIIX3_IDE_DEVFN: DevFn = DevFn(1 << 3 | 1);
pub const PIIX3_IDE_VENDOR_ID: u16 = 0x8086;
pub const PIIX3_IDE_DEVICE_ID: u16 = 0x7010;
/// Class 01/01/80: IDE controller, bus-master capable, both channels in compatibility mode.
pub const PIIX3_IDE_CLASS: u32 = 0x01_01_80;
/// The bus-master interface base address (BMIBA) is BAR4: 16 bytes of I/O.
pub const IDE_BM_BAR: usize = 4;
pub const IDE_BM_BAR_SIZE: u64 = 16;
/// IDETIM, IDE timing (primary at 0x40, secondary at 0x42), 16 bits each; bit 15 enables
/// the channel's legacy decode.
pub const PIIX_IDETIM: usize = 0x40;
/// SIDETIM, slave IDE timing.
pub const PIIX_SIDETIM: usize = 0x44;
/// Compatibility-mode command block and control port of each channel.
pub const IDE_LEGACY_PORTS: [(u16, u16); 2] = [(0x1F0, 0x3F6), (0x170, 0x376)];
/// ISA IRQ of each channel in compatibility mode.
pub const IDE_LEGACY_IRQS: [u8; 2] = [14, 15];

/// A drive on a channel.
pub struct IdeDrive {
    pub kind: DriveKind,
    /// Model number (IDENTIFY words 27-46, INQUIRY product), e.g. "QEMU HARDDISK".
    pub model: String,
    /// Serial number (IDENTIFY words 10-19).
    pub serial: String,
}

pub enum DriveKind {
    /// An ATA hard disk.
    Disk(Arc<dyn Disk>),
    /// An ATAPI CD/DVD-ROM drive, possibly empty.
    Cdrom(Option<Arc<dyn Disk>>),
}

/// The legacy ports of one channel: a cloneable, `Send + Sync` handle.
#[derive(Clone)]
pub struct IdePorts {
    chan: Arc<Mutex<Channel>>,
    io: Arc<IoThread>,
}

fn lock(chan: &Mutex<Channel>) -> MutexGuard<'_, Channel> {
    chan.lock().unwrap_or_else(PoisonError::into_inner)
}

impl IdePorts {
    fn new(index: usize, irq: Arc<dyn IrqLine + Send + Sync>, drives: [Option<IdeDrive>; 2]) -> std::io::Result<Self> {
        Ok(IdePorts {
            chan: Arc::new(Mutex::new(Channel::new(irq, drives))),
            io: Arc::new(IoThread::spawn(&format!("ide{index}-io"))?),
        })
    }

    /// Read of command block register `reg` (0 data .. 7 status) with `size` bytes; only the
    /// data register is wider than a byte (2: one word, 4: two words).
    pub fn command_read(&self, reg: u16, size: u8) -> u32 {
        self.with(|ch| ch.command_read(reg & 7, size))
    }

    /// Write of command block register `reg` (0 data .. 7 command).
    pub fn command_write(&self, reg: u16, size: u8, value: u32) {
        self.with(|ch| ch.command_write(reg & 7, size, value));
    }

    /// Alternate status (reading it does not acknowledge the interrupt).
    pub fn control_read(&self) -> u8 {
        self.with(|ch| ch.alt_status())
    }

    /// Device control: nIEN (bit 1), SRST (bit 2), HOB (bit 7).
    pub fn control_write(&self, value: u8) {
        self.with(|ch| ch.control_write(value));
    }

    /// Inserts (`Some`) or removes (`None`) the medium of the CD-ROM drive `unit` (0 master,
    /// 1 slave), as a user changing discs: the guest sees a unit attention and a media
    /// event. Returns false if there is no CD-ROM drive there.
    pub fn change_media(&self, unit: usize, media: Option<Arc<dyn Disk>>) -> bool {
        self.with(|ch| ch.change_media(unit & 1, media))
    }

    /// Whether the guest has locked the medium of CD-ROM drive `unit` in (PREVENT ALLOW
    /// MEDIUM REMOVAL); false for other drives.
    pub fn media_locked(&self, unit: usize) -> bool {
        self.with(|ch| ch.media_locked(unit & 1))
    }

    /// Waits until every disk job queued so far on this channel has completed.
    pub fn drain(&self) {
        self.io.drain();
    }

    /// Runs `f` on the locked channel, then hands the disk jobs it queued to the I/O thread
    /// (under the lock, so jobs reach the thread in the order the device created them).
    fn with<R>(&self, f: impl FnOnce(&mut Channel) -> R) -> R {
        let mut ch = lock(&self.chan);
        let r = f(&mut ch);
        for req in ch.take_requests() {
            self.submit(req);
        }
        r
    }

    fn submit(&self, req: Request) {
        let chan = self.chan.clone();
        self.io.submit(move || {
            let Request { unit, gen, op } = req;
            let outcome = op.run();
            let mut ch = lock(&chan);
            ch.complete(unit, gen, outcome);
            // Completions only move the state machine on; new disk work always starts from
            // a guest access, so nothing can be waiting for submission here.
            debug_assert!(ch.take_requests().is_empty());
        });
    }
}

/// The PIIX3 IDE function.
pub struct PiixIde {
    cfg: ConfigSpace,
    channels: [IdePorts; 2],
}

impl PiixIde {
    /// `irqs`: ISA IRQ 14 and 15. `drives`: `[channel][master, slave]`. Starts one I/O thread
    /// per channel.
    pub fn new(
        irqs: [Arc<dyn IrqLine + Send + Sync>; 2],
        drives: [[Option<IdeDrive>; 2]; 2],
    ) -> std::io::Result<Self> {
        let mut cfg = ConfigSpace::new(PIIX3_IDE_VENDOR_ID, PIIX3_IDE_DEVICE_ID, PIIX3_IDE_CLASS, 0);
        // 82371SB: PCICMD implements only I/O space and bus master enable; PCISTS reads
        // 0x0280 (medium DEVSEL timing, fast back-to-back capable); MLT bits 7:4; no cache
        // line size or interrupt line/pin (compatibility mode uses ISA IRQs).
        cfg.set_writable(PCI_COMMAND, &[0x05, 0x00]);
        cfg.set_u16(PCI_STATUS, 0x0280);
        cfg.set_writable(crate::pci::PCI_CACHE_LINE_SIZE, &[0x00, 0xF0]);
        cfg.set_writable(crate::pci::PCI_INTERRUPT_LINE, &[0x00]);
        cfg.add_bar(IDE_BM_BAR, BarKind::Io, IDE_BM_BAR_SIZE)
            .expect("a 16-byte I/O BAR is valid");
        cfg.set_writable(PIIX_IDETIM, &[0xFF; 4]);
        cfg.set_writable(PIIX_SIDETIM, &[0xFF]);
        cfg.freeze_reset_state();
        let ([irq0, irq1], [drives0, drives1]) = (irqs, drives);
        let channels = [IdePorts::new(0, irq0, drives0)?, IdePorts::new(1, irq1, drives1)?];
        Ok(PiixIde { cfg, channels })
    }

    /// The legacy ports of `channel` (0 primary, 1 secondary).
    ///
    /// # Panics
    /// If `channel` is not 0 or 1.
    pub fn ports(&self, channel: usize) -> IdePorts {
        self.channels[channel].clone()
    }

    /// See [`IdePorts::change_media`].
    pub fn change_media(&self, channel: usize, unit: usize, media: Option<Arc<dyn Disk>>) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|p| p.change_media(unit, media))
    }

    /// Waits until every queued disk job of both channels has completed (tests, reset,
    /// shutdown).
    pub fn drain(&self) {
        for p in &self.channels {
            p.drain();
        }
    }

    /// The configuration header (tests, inspection).
    pub fn config(&self) -> &ConfigSpace {
        &self.cfg
    }

    /// Tells the channels whether they may master the bus (PCICMD bit 2).
    fn sync_bus_master(&self) {
        let on = self.cfg.bus_master();
        for p in &self.channels {
            p.with(|ch| ch.set_bus_master(on));
        }
    }
}

impl PciDevice for PiixIde {
    fn config_read(&mut self, offset: u8, size: u8) -> u32 {
        self.cfg.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.cfg.write(offset, size, value);
        self.sync_bus_master();
    }

    fn bar(&self, index: usize) -> Option<BarRegion> {
        self.cfg.bar_region(index)
    }

    fn bar_read(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        if index != IDE_BM_BAR {
            data.fill(0xFF);
            return;
        }
        for (i, byte) in data.iter_mut().enumerate() {
            let off = offset + i as u64;
            *byte = match self.channels.get((off >> 3) as usize) {
                Some(p) => p.with(|ch| ch.bm_read((off & 7) as u8)),
                None => 0xFF,
            };
        }
    }

    fn bar_write(&mut self, index: usize, offset: u64, data: &[u8]) {
        if index != IDE_BM_BAR {
            return;
        }
        for (i, &byte) in data.iter().enumerate() {
            let off = offset + i as u64;
            if let Some(p) = self.channels.get((off >> 3) as usize) {
                p.with(|ch| ch.bm_write((off & 7) as u8, byte));
            }
        }
    }

    fn attach(&mut self, link: PciLink) {
        // Compatibility mode interrupts through ISA IRQ 14/15, not INTx; only DMA is used.
        for p in &self.channels {
            p.with(|ch| ch.set_dma(link.dma.clone()));
        }
    }

    fn reset(&mut self) {
        // Let running jobs finish first, so none completes into the fresh state or touches
        // guest RAM after the reset.
        self.drain();
        self.cfg.reset();
        for p in &self.channels {
            p.with(|ch| ch.hard_reset());
        }
        self.sync_bus_master();
    }
}
