//! A port as the machine sees it: [`PortConfig`] to create it, [`PortOutput`] to receive what
//! the guest writes, [`PortHandle`] for the host side (the machine's chardev thread) to send
//! bytes to the guest and report its connection state.

use super::control::{ControlMsg, VIRTIO_CONSOLE_PORT_NAME};
use super::state::ConsoleShared;
use std::sync::{Arc, Mutex, PoisonError};

/// Receives the bytes the guest writes to a port. Called on a vCPU thread with the virtio
/// transport's lock held: it must not block (the machine's chardev backend buffers or drops).
pub trait PortOutput: Send + Sync {
    fn write(&self, data: &[u8]);

    /// Whether a host program is attached when the device is created; later changes go
    /// through [`PortHandle::set_host_connected`].
    fn host_connected(&self) -> bool {
        true
    }
}

/// One port of the device.
#[derive(Clone)]
pub struct PortConfig {
    /// The name the guest sees (`/sys/class/virtio-ports/*/name`, udev's
    /// `/dev/virtio-ports/<name>`); QEMU's `name=`.
    pub name: Option<String>,
    /// A console port (QEMU's `virtconsole`, the guest's `hvc*`) rather than a plain serial
    /// port (`virtserialport`, the guest's `/dev/vport*p*`).
    pub is_console: bool,
    pub output: Arc<dyn PortOutput>,
}

/// Called when the guest may take more bytes for a port.
pub type RxWaker = Box<dyn Fn() + Send + Sync>;

/// The fixed part of a port, outside the device lock.
pub(super) struct PortInfo {
    pub id: u32,
    pub name: Option<String>,
    pub is_console: bool,
    pub output: Arc<dyn PortOutput>,
    waker: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
}

impl PortInfo {
    pub fn new(id: u32, cfg: PortConfig) -> Self {
        PortInfo { id, name: cfg.name, is_console: cfg.is_console, output: cfg.output, waker: Mutex::new(None) }
    }

    /// The `PORT_NAME` message announcing a named port (NUL-terminated, as QEMU sends it).
    pub fn name_msg(&self) -> Option<ControlMsg> {
        let mut payload = self.name.as_ref()?.as_bytes().to_vec();
        payload.push(0);
        Some(ControlMsg { payload, ..ControlMsg::new(self.id, VIRTIO_CONSOLE_PORT_NAME, 1) })
    }

    /// Calls the waker, if any, without holding any lock of the device (so it may call
    /// [`PortHandle::send`] itself).
    pub fn wake(&self) {
        let waker = self.waker.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(waker) = waker {
            waker();
        }
    }
}

/// The host side of one port. Cheap to clone, usable from any thread; stays valid across
/// device resets.
#[derive(Clone)]
pub struct PortHandle {
    pub(super) shared: Arc<ConsoleShared>,
    /// Index into the device's ports (the order of [`PortConfig`]s).
    pub(super) index: usize,
}

impl PortHandle {
    fn info(&self) -> &PortInfo {
        &self.shared.ports[self.index]
    }

    /// The port number the guest sees (5.3.6.2 `id`).
    pub fn id(&self) -> u32 {
        self.info().id
    }

    pub fn is_console(&self) -> bool {
        self.info().is_console
    }

    pub fn name(&self) -> Option<&str> {
        self.info().name.as_deref()
    }

    /// Copies as much of `data` as fits into the receive buffers the guest has posted for
    /// this port, one chain after the other; returns the bytes taken. 0 while the driver is
    /// not running, the guest has not opened the port, or no buffer is posted: keep the rest
    /// and retry when the waker runs.
    pub fn send(&self, data: &[u8]) -> usize {
        self.shared.receive(self.index, data)
    }

    /// Sets what to call when sending may take more bytes: the guest posted receive buffers
    /// for this port, opened it, or the driver started. Runs on a vCPU thread with the
    /// transport lock held (so it must only wake the host thread, or call
    /// [`Self::send`], never block).
    pub fn set_rx_waker(&self, waker: RxWaker) {
        *self.info().waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::from(waker));
    }

    /// Records whether a host program is attached; a multiport driver that set the port up
    /// is told with `PORT_OPEN`.
    pub fn set_host_connected(&self, connected: bool) {
        self.shared.set_host_connected(self.index, connected);
    }

    pub fn host_connected(&self) -> bool {
        self.shared.lock().ports[self.index].host_connected
    }

    /// Whether the guest has the port open (its `PORT_OPEN` messages; without
    /// `VIRTIO_CONSOLE_F_MULTIPORT`, port 0 is open while the driver runs).
    pub fn guest_open(&self) -> bool {
        self.shared.lock().ports[self.index].guest_open
    }
}
