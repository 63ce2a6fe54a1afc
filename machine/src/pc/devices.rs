//! The legacy devices on the port bus, each behind its own lock: adapters that turn a bus
//! access into the device's register call (with byte splitting for 8-bit devices and the
//! current guest time), and report what the device asked for (timers to re-arm, A20, reset,
//! power-off, debug exit).

use super::interrupts::{lock, Interrupts};
use super::wiring::{MachineEvent, Wiring, A20_KBC, A20_PORT92};
use crate::bus::BusDevice;
use std::sync::{Arc, Mutex};

/// One access as a device adapter sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Access {
    /// Offset in the device's range.
    pub offset: u64,
    pub size: u8,
    /// Guest time now.
    pub now: u64,
}

impl Access {
    /// Wide accesses to 8-bit devices reach consecutive registers, low byte first.
    pub fn bytes_read(self, mut f: impl FnMut(u64) -> u8) -> u64 {
        (0..self.size.min(4) as u64).fold(0, |acc, i| acc | (f(i) as u64) << (8 * i))
    }

    pub fn bytes_write(self, value: u64, mut f: impl FnMut(u64, u8)) {
        for i in 0..self.size.min(4) as u64 {
            f(i, (value >> (8 * i)) as u8);
        }
    }
}

type ReadFn<D> = fn(&mut D, &Wiring, Access) -> u64;
type WriteFn<D> = fn(&mut D, &Wiring, Access, u64);

/// A device behind its own lock, with one function per direction.
pub(crate) struct Port<D> {
    dev: Arc<Mutex<D>>,
    wiring: Arc<Wiring>,
    read: ReadFn<D>,
    write: WriteFn<D>,
}

impl<D: Send + 'static> Port<D> {
    pub fn device(dev: &Arc<Mutex<D>>, wiring: &Arc<Wiring>, read: ReadFn<D>, write: WriteFn<D>) -> Arc<dyn BusDevice> {
        Arc::new(Port { dev: dev.clone(), wiring: wiring.clone(), read, write })
    }
}

impl<D: Send> BusDevice for Port<D> {
    fn read(&self, _addr: u64, offset: u64, size: u8) -> u64 {
        let a = Access { offset, size, now: self.wiring.clock.now() };
        (self.read)(&mut lock(&self.dev), &self.wiring, a)
    }

    fn write(&self, _addr: u64, offset: u64, size: u8, value: u64) {
        let a = Access { offset, size, now: self.wiring.clock.now() };
        (self.write)(&mut lock(&self.dev), &self.wiring, a, value)
    }
}

/// The 8259 pair and ELCR, which live with the IOAPIC in the interrupt controllers.
pub(crate) struct PicPorts(pub Arc<Interrupts>);

impl BusDevice for PicPorts {
    fn read(&self, addr: u64, _offset: u64, size: u8) -> u64 {
        let mut ic = lock(&self.0.intc);
        let a = Access { offset: 0, size, now: 0 };
        let v = a.bytes_read(|i| ic.pic.read_port((addr + i) as u16));
        self.0.controllers_changed(ic);
        v
    }

    fn write(&self, addr: u64, _offset: u64, size: u8, value: u64) {
        let mut ic = lock(&self.0.intc);
        let a = Access { offset: 0, size, now: 0 };
        a.bytes_write(value, |i, v| ic.pic.write_port((addr + i) as u16, v));
        self.0.controllers_changed(ic);
    }
}

/// The IOAPIC's MMIO window.
pub(crate) struct IoapicMmio(pub Arc<Interrupts>);

impl BusDevice for IoapicMmio {
    fn read(&self, _addr: u64, offset: u64, size: u8) -> u64 {
        let mut ic = lock(&self.0.intc);
        let v = ferrite_hw::MmioDevice::read(&mut ic.ioapic, offset, size);
        self.0.controllers_changed(ic);
        v
    }

    fn write(&self, _addr: u64, offset: u64, size: u8, value: u64) {
        let mut ic = lock(&self.0.intc);
        ferrite_hw::MmioDevice::write(&mut ic.ioapic, offset, size, value);
        self.0.ioapic_written(&ic);
        self.0.controllers_changed(ic);
    }
}

use ferrite_hw::{acpi_pm::AcpiPm, debug_exit::DebugExit, i8042::I8042, pit::Pit, port92::Port92, rtc::Rtc};
use ferrite_hw::{post::PostCode, PioDevice};
use crate::irq::LineHandle;

pub(crate) type BoardPit = Pit<LineHandle>;
pub(crate) type BoardRtc = Rtc<LineHandle>;
pub(crate) type BoardPm = AcpiPm<LineHandle>;
pub(crate) type BoardI8042 = I8042<LineHandle, LineHandle>;

pub(crate) fn pit(d: &Arc<Mutex<BoardPit>>, w: &Arc<Wiring>) -> Arc<dyn BusDevice> {
    Port::device(
        d,
        w,
        |d, _, a| a.bytes_read(|i| d.read((a.offset + i) as u16 & 3, a.now)),
        |d, w, a, v| {
            a.bytes_write(v, |i, b| d.write((a.offset + i) as u16 & 3, b, a.now));
            w.poke_timers();
        },
    )
}

pub(crate) fn port_b(d: &Arc<Mutex<BoardPit>>, w: &Arc<Wiring>) -> Arc<dyn BusDevice> {
    Port::device(d, w, |d, _, a| d.read_port_b(a.now) as u64, |d, _, a, v| d.write_port_b(v as u8, a.now))
}

pub(crate) fn rtc(d: &Arc<Mutex<BoardRtc>>, w: &Arc<Wiring>) -> Arc<dyn BusDevice> {
    Port::device(
        d,
        w,
        |d, _, a| a.bytes_read(|i| d.read((a.offset + i) as u16 & 1, a.now)),
        |d, w, a, v| {
            a.bytes_write(v, |i, b| d.write((a.offset + i) as u16 & 1, b, a.now));
            w.poke_timers();
        },
    )
}

/// A plain `PioDevice` without side effects on the machine.
pub(crate) fn pio<D: PioDevice + Send + 'static>(d: &Arc<Mutex<D>>, w: &Arc<Wiring>) -> Arc<dyn BusDevice> {
    Port::device(d, w, |d, _, a| d.read(a.offset as u16, a.size) as u64, |d, _, a, v| d.write(a.offset as u16, a.size, v as u32))
}

/// The i8042's data (0x60) or command/status (0x64) port; it drives A20 and can reset.
pub(crate) fn i8042(d: &Arc<Mutex<BoardI8042>>, w: &Arc<Wiring>, reg: u16) -> Arc<dyn BusDevice> {
    let (r, wr): (ReadFn<BoardI8042>, WriteFn<BoardI8042>) = if reg == 0 {
        (|d, _, a| d.read(0, a.size) as u64, |d, w, a, v| {
            d.write(0, a.size, v as u32);
            i8042_effects(d, w);
        })
    } else {
        (|d, _, a| d.read(4, a.size) as u64, |d, w, a, v| {
            d.write(4, a.size, v as u32);
            i8042_effects(d, w);
        })
    };
    Port::device(d, w, r, wr)
}

fn i8042_effects(d: &mut BoardI8042, w: &Wiring) {
    w.set_a20(A20_KBC, d.a20());
    if d.take_reset_request() {
        w.raise(MachineEvent::Reset);
    }
}

pub(crate) fn port92(d: &Arc<Mutex<Port92>>, w: &Arc<Wiring>) -> Arc<dyn BusDevice> {
    Port::device(d, w, |d, _, a| d.read(a.offset as u16, a.size) as u64, |d, w, a, v| {
        d.write(a.offset as u16, a.size, v as u32);
        w.set_a20(A20_PORT92, d.a20());
        if d.take_reset_request() {
            w.raise(MachineEvent::Reset);
        }
    })
}

pub(crate) fn post(d: &Arc<Mutex<PostCode>>, w: &Arc<Wiring>) -> Arc<dyn BusDevice> {
    pio(d, w)
}

pub(crate) fn debug_exit(d: &Arc<Mutex<DebugExit>>, w: &Arc<Wiring>) -> Arc<dyn BusDevice> {
    Port::device(d, w, |d, _, a| d.read(a.offset as u16, a.size) as u64, |d, w, a, v| {
        d.write(a.offset as u16, a.size, v as u32);
        if let Some(code) = d.exit_code() {
            w.raise(MachineEvent::DebugExit(code as i32));
        }
    })
}

fn pm_sleep(d: &mut BoardPm, w: &Wiring) {
    if let Some(s) = d.take_sleep_request() {
        if matches!(s, ferrite_hw::acpi_pm::SleepState::S5 | ferrite_hw::acpi_pm::SleepState::S4) {
            w.raise(MachineEvent::PowerOff);
        }
    }
}

/// The PIIX4 PM I/O block (PM1 event/control, PM timer); movable through PCI config.
pub(crate) fn acpi_pm(d: &Arc<Mutex<BoardPm>>, w: &Arc<Wiring>) -> Arc<dyn BusDevice> {
    Port::device(d, w, |d, _, a| d.pm_read(a.offset as u16, a.size, a.now) as u64, |d, w, a, v| {
        d.pm_write(a.offset as u16, a.size, v as u32, a.now);
        pm_sleep(d, w);
        w.poke_timers();
    })
}

pub(crate) fn acpi_gpe(d: &Arc<Mutex<BoardPm>>, w: &Arc<Wiring>) -> Arc<dyn BusDevice> {
    Port::device(d, w, |d, _, a| d.gpe_read(a.offset as u16, a.size) as u64, |d, _, a, v| {
        d.gpe_write(a.offset as u16, a.size, v as u32)
    })
}

pub(crate) fn apm(d: &Arc<Mutex<BoardPm>>, w: &Arc<Wiring>) -> Arc<dyn BusDevice> {
    Port::device(
        d,
        w,
        |d, _, a| a.bytes_read(|i| d.apm_read((a.offset + i) as u16)),
        |d, w, a, v| {
            a.bytes_write(v, |i, b| d.apm_write((a.offset + i) as u16, b));
            pm_sleep(d, w);
        },
    )
}
