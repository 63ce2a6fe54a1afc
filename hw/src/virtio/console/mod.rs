//! The virtio console device (virtio 1.2, 5.3; QEMU's `virtio-serial-pci` with `virtconsole`
//! and `virtserialport` ports).
//!
//! Device type 3. Offers `VIRTIO_CONSOLE_F_MULTIPORT` (several ports, a control queue pair)
//! and `VIRTIO_CONSOLE_F_EMERG_WRITE` (single bytes for port 0 through the `emerg_wr`
//! configuration field); not `VIRTIO_CONSOLE_F_SIZE` (`cols`/`rows` read 0, as QEMU).
//!
//! # Ports
//! Each [`PortConfig`] becomes a port; the device hands back one [`PortHandle`] per port, in
//! the same order, for the machine's chardev thread. Port numbers follow QEMU: the first
//! console port is port 0, every other port takes the lowest free number from 1 (port 0 is
//! kept for a console, so `virtserialport`s are `/dev/vport*p1`, `p2`, ... in the guest).
//!
//! # Queues (5.3.2)
//! 0/1 port 0 receiveq/transmitq, 2/3 control receiveq/transmitq, then port n's pair at
//! `2 + 2n` / `3 + 2n`: `2 * (max_nr_ports + 1)` queues ([`QueueRole`]). `max_nr_ports`
//! defaults to QEMU's 31, so 64 queues; the PCI transport gives each its own MSI-X vector
//! (65 with the configuration vector), and Linux falls back to shared vectors when it cannot
//! get that many. Without `VIRTIO_CONSOLE_F_MULTIPORT` only queues 0/1 are used, for port 0.
//!
//! # Control protocol ([`control`])
//! The driver sends `DEVICE_READY`; the device answers `DEVICE_ADD` for every port. The
//! driver sets each up and sends `PORT_READY`; the device answers `CONSOLE_PORT` (console
//! ports), `PORT_NAME` (named ports) and `PORT_OPEN` 1 (if the host side is connected). The
//! driver's `PORT_OPEN` says whether a guest program has the port open: only then does
//! [`PortHandle::send`] deliver (Linux drops data for a closed port).
//!
//! # Threads
//! Transmit and control run synchronously in [`VirtioDevice::queue_notify`] on the vCPU
//! thread, bounded by a queue's worth of chains per notification ([`PortOutput::write`] never
//! blocks). Receive runs on whatever thread calls [`PortHandle::send`]; the receiveqs live in
//! a `Mutex` shared with the handles ([`state`]), and a notification of a port's receiveq
//! runs that port's waker.
//!
//! # Snapshots
//! The transport carries the negotiated features and the rings; [`persist`] carries the
//! ports' state and the undelivered control messages as the `virtio-console` section.

mod control;
mod persist;
mod port;
mod state;
mod tx;

#[cfg(test)]
mod test_driver;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_abuse;
#[cfg(test)]
mod tests_state;

pub use control::*;
pub use persist::{PortState, VirtioConsoleState};
pub use port::{PortConfig, PortHandle, PortOutput, RxWaker};
pub use tx::TX_MAX_CHAIN_BYTES;

use super::{ActivateContext, ActivateError, Queue, VirtioDevice, VIRTIO_ID_CONSOLE};
use port::PortInfo;
use state::{ConsoleShared, Running};
use std::sync::Arc;

/// Feature bits (5.3.3).
/// `cols` and `rows` are valid (not offered).
pub const VIRTIO_CONSOLE_F_SIZE: u64 = 1 << 0;
/// Several ports and the control queues.
pub const VIRTIO_CONSOLE_F_MULTIPORT: u64 = 1 << 1;
/// `emerg_wr` writes a byte to port 0.
pub const VIRTIO_CONSOLE_F_EMERG_WRITE: u64 = 1 << 2;

/// QEMU's queue sizes: data queues and control queues.
pub const DATA_QUEUE_SIZE: u16 = 128;
pub const CONTROL_QUEUE_SIZE: u16 = 32;
/// QEMU's default `max_ports`.
pub const DEFAULT_MAX_NR_PORTS: u32 = 31;
/// Most ports: `2 * (n + 1)` queues must stay within QEMU's (and Linux's) 1024.
pub const MAX_NR_PORTS_LIMIT: u32 = 511;
/// Longest port name.
pub const MAX_NAME_LEN: usize = 255;
/// Configuration space: `cols: u16, rows: u16, max_nr_ports: u32, emerg_wr: u32` (5.3.4).
pub const CONFIG_LEN: usize = 12;
const EMERG_WR_OFFSET: u64 = 8;

/// Device options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioConsoleOptions {
    /// Ports the driver may expect (`max_nr_ports`); QEMU's `max_ports`.
    pub max_nr_ports: u32,
    /// Offer `VIRTIO_CONSOLE_F_EMERG_WRITE` (QEMU's `emergency-write`).
    pub emergency_write: bool,
}

impl Default for VirtioConsoleOptions {
    fn default() -> Self {
        VirtioConsoleOptions { max_nr_ports: DEFAULT_MAX_NR_PORTS, emergency_write: true }
    }
}

/// Why a console could not be created.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    #[error("max_nr_ports {0} is outside 1..={MAX_NR_PORTS_LIMIT}")]
    MaxPorts(u32),
    #[error("{ports} ports do not fit in max_nr_ports {max} (port 0 is kept for a console)")]
    TooManyPorts { ports: usize, max: u32 },
    #[error("port name of {0} bytes is longer than {MAX_NAME_LEN}")]
    NameTooLong(usize),
}

/// What a queue index is for (5.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueRole {
    PortRx(u32),
    PortTx(u32),
    ControlRx,
    ControlTx,
}

impl QueueRole {
    pub fn of(index: u16) -> Self {
        match index {
            0 => QueueRole::PortRx(0),
            1 => QueueRole::PortTx(0),
            2 => QueueRole::ControlRx,
            3 => QueueRole::ControlTx,
            _ if index.is_multiple_of(2) => QueueRole::PortRx(u32::from(index / 2 - 1)),
            _ => QueueRole::PortTx(u32::from(index / 2 - 1)),
        }
    }
}

/// Port `id`'s receiveq; its transmitq is the next one.
pub fn port_rx_queue(id: u32) -> u16 {
    // Ids are below MAX_NR_PORTS_LIMIT, so this fits.
    if id == 0 {
        0
    } else {
        (2 + 2 * id) as u16
    }
}

/// QEMU's numbering: the first console is port 0, the others count from 1.
fn assign_ids(ports: &[PortConfig], max_nr_ports: u32) -> Result<Vec<u32>, ConsoleError> {
    let console = ports.iter().position(|p| p.is_console);
    let mut next = 1;
    let ids: Vec<u32> = (0..ports.len())
        .map(|i| {
            if Some(i) == console {
                0
            } else {
                next += 1;
                next - 1
            }
        })
        .collect();
    if ids.iter().any(|&id| id >= max_nr_ports) {
        return Err(ConsoleError::TooManyPorts { ports: ports.len(), max: max_nr_ports });
    }
    Ok(ids)
}

/// The console device.
pub struct VirtioConsole {
    shared: Arc<ConsoleShared>,
    opts: VirtioConsoleOptions,
    queue_sizes: Vec<u16>,
    control_tx: Option<Queue>,
    /// Transmitqs by port number, configured or not, while the driver runs.
    tx: Vec<Option<Queue>>,
    tx_buf: Vec<u8>,
}

impl VirtioConsole {
    /// A device with `ports`, and one handle per port in the same order.
    pub fn new(
        ports: Vec<PortConfig>,
        opts: VirtioConsoleOptions,
    ) -> Result<(VirtioConsole, Vec<PortHandle>), ConsoleError> {
        if !(1..=MAX_NR_PORTS_LIMIT).contains(&opts.max_nr_ports) {
            return Err(ConsoleError::MaxPorts(opts.max_nr_ports));
        }
        if let Some(len) = ports.iter().filter_map(|p| p.name.as_ref()).map(String::len).find(|&l| l > MAX_NAME_LEN) {
            return Err(ConsoleError::NameTooLong(len));
        }
        let ids = assign_ids(&ports, opts.max_nr_ports)?;
        let infos = ids.into_iter().zip(ports).map(|(id, cfg)| PortInfo::new(id, cfg)).collect::<Vec<_>>();
        let count = infos.len();
        let shared = Arc::new(ConsoleShared::new(infos));
        let handles = (0..count).map(|index| PortHandle { shared: shared.clone(), index }).collect();
        let queue_sizes = (0..2 * (opts.max_nr_ports as u16 + 1))
            .map(|q| match QueueRole::of(q) {
                QueueRole::ControlRx | QueueRole::ControlTx => CONTROL_QUEUE_SIZE,
                _ => DATA_QUEUE_SIZE,
            })
            .collect();
        let dev = VirtioConsole { shared, opts, queue_sizes, control_tx: None, tx: Vec::new(), tx_buf: Vec::new() };
        Ok((dev, handles))
    }

    /// Transmits what the driver queued on port `id`: to the port's output once the driver
    /// set the port up, else dropped.
    fn process_tx(&mut self, id: u32) {
        let Some(queue) = self.tx.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        let output = self.shared.port_index(id).filter(|&i| self.shared.lock().ports[i].ready);
        let output = output.map(|i| &*self.shared.ports[i].output);
        tx::drain_port(queue, output, &mut self.tx_buf);
    }

    /// Acts on the driver's control messages and answers what can be answered now.
    fn process_control(&mut self) {
        let Some(queue) = self.control_tx.as_mut() else {
            return;
        };
        let msgs = tx::drain_control(queue);
        let mut woken = Vec::new();
        {
            let mut st = self.shared.lock();
            for msg in &msgs {
                woken.extend(self.shared.handle_guest_message(&mut st, msg));
            }
            st.flush_control();
        }
        for index in woken {
            self.shared.ports[index].wake();
        }
    }

    fn wake_port(&self, id: u32) {
        if let Some(index) = self.shared.port_index(id) {
            self.shared.ports[index].wake();
        }
    }
}

impl VirtioDevice for VirtioConsole {
    fn device_type(&self) -> u16 {
        VIRTIO_ID_CONSOLE
    }

    fn device_features(&self) -> u64 {
        let emerg = if self.opts.emergency_write { VIRTIO_CONSOLE_F_EMERG_WRITE } else { 0 };
        VIRTIO_CONSOLE_F_MULTIPORT | emerg
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn config_len(&self) -> usize {
        CONFIG_LEN
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut bytes = [0u8; CONFIG_LEN];
        bytes[4..8].copy_from_slice(&self.opts.max_nr_ports.to_le_bytes());
        let start = (offset as usize).min(CONFIG_LEN);
        let end = (start + data.len()).min(CONFIG_LEN);
        data.fill(0);
        data[..end - start].copy_from_slice(&bytes[start..end]);
    }

    /// `emerg_wr`: usable before feature negotiation, even before the driver acknowledges the
    /// feature (5.3.4), so only the offer is checked.
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        if !self.opts.emergency_write || offset != EMERG_WR_OFFSET || data.is_empty() {
            return;
        }
        if let Some(index) = self.shared.port_index(0) {
            self.shared.ports[index].output.write(&data[..1]);
        }
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let multiport = ctx.features & VIRTIO_CONSOLE_F_MULTIPORT != 0;
        let mut queues: Vec<Option<Queue>> = ctx.queues.into_iter().map(Some).collect();
        let mut take = |q: u16| queues.get_mut(usize::from(q)).and_then(Option::take);
        let port_count = if multiport { self.opts.max_nr_ports } else { 1 };
        {
            let mut st = self.shared.lock();
            for (info, port) in self.shared.ports.iter().zip(st.ports.iter_mut()) {
                if info.id < port_count {
                    port.rx = take(port_rx_queue(info.id));
                }
                // Without multiport, port 0 needs no setup and is open.
                if !multiport && info.id == 0 {
                    port.ready = true;
                    port.guest_open = true;
                }
            }
            let control_rx = if multiport { take(2) } else { None };
            st.running = Some(Running { multiport, control_rx });
        }
        self.control_tx = if multiport { take(3) } else { None };
        self.tx = (0..port_count).map(|id| take(port_rx_queue(id) + 1)).collect();
        // Legacy drivers may have posted and notified before DRIVER_OK.
        self.process_control();
        for id in 0..port_count {
            self.process_tx(id);
        }
        for info in &self.shared.ports {
            info.wake();
        }
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        match QueueRole::of(index) {
            QueueRole::PortRx(id) => self.wake_port(id),
            QueueRole::PortTx(id) => self.process_tx(id),
            QueueRole::ControlRx => self.shared.lock().flush_control(),
            QueueRole::ControlTx => self.process_control(),
        }
    }

    fn reset(&mut self) {
        self.control_tx = None;
        self.tx = Vec::new();
        self.tx_buf = Vec::new();
        self.shared.reset();
    }
}
