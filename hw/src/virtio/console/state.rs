//! What the vCPUs (through the device) and the host threads (through [`super::PortHandle`])
//! share: per-port state with each port's receiveq, the control receiveq and the outbox.
//! Lock order: transport -> `ConsoleState` -> interrupt state; wakers run with none of the
//! device's locks held.

use super::control::*;
use super::port::PortInfo;
use crate::virtio::Queue;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The state of one port that changes.
pub(super) struct PortRuntime {
    /// The driver set the port up (`PORT_READY` 1; always, for port 0 without multiport).
    pub ready: bool,
    pub guest_open: bool,
    pub host_connected: bool,
    /// The port's receiveq while the driver runs.
    pub rx: Option<Queue>,
}

/// Set while the driver runs.
pub(super) struct Running {
    pub multiport: bool,
    pub control_rx: Option<Queue>,
}

pub(super) struct ConsoleState {
    pub running: Option<Running>,
    pub ports: Vec<PortRuntime>,
    pub outbox: Outbox,
}

impl ConsoleState {
    pub fn multiport(&self) -> bool {
        self.running.as_ref().is_some_and(|r| r.multiport)
    }

    /// Queues a device message for a running multiport driver.
    pub fn post(&mut self, msg: ControlMsg) {
        if self.multiport() {
            self.outbox.push(msg);
        }
    }

    /// Delivers what the outbox holds into the control receiveq.
    pub fn flush_control(&mut self) {
        if let Some(queue) = self.running.as_mut().and_then(|r| r.control_rx.as_mut()) {
            self.outbox.flush(queue);
        }
    }
}

pub(super) struct ConsoleShared {
    state: Mutex<ConsoleState>,
    pub ports: Vec<PortInfo>,
}

impl ConsoleShared {
    pub fn new(ports: Vec<PortInfo>) -> Self {
        let runtime = ports
            .iter()
            .map(|p| PortRuntime {
                ready: false,
                guest_open: false,
                host_connected: p.output.host_connected(),
                rx: None,
            })
            .collect();
        let state = ConsoleState { running: None, ports: runtime, outbox: Outbox::default() };
        ConsoleShared { state: Mutex::new(state), ports }
    }

    pub fn lock(&self) -> MutexGuard<'_, ConsoleState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The index of the port numbered `id`.
    pub fn port_index(&self, id: u32) -> Option<usize> {
        self.ports.iter().position(|p| p.id == id)
    }

    /// Back to the power-on state; the host's connection state stays.
    pub fn reset(&self) {
        let mut st = self.lock();
        st.running = None;
        st.outbox.clear();
        for port in &mut st.ports {
            port.ready = false;
            port.guest_open = false;
            port.rx = None;
        }
    }

    /// Host -> guest bytes for port `index` (see [`super::PortHandle::send`]).
    pub fn receive(&self, index: usize, data: &[u8]) -> usize {
        let mut st = self.lock();
        let port = &mut st.ports[index];
        if !port.guest_open || data.is_empty() {
            return 0;
        }
        let Some(queue) = port.rx.as_mut() else {
            return 0;
        };
        let mut taken = 0;
        for _ in 0..queue.size() {
            if taken == data.len() {
                break;
            }
            let Some(chain) = queue.pop() else { break };
            let mut writer = chain.writer(queue.dma());
            // On a DMA error the chain carries what reached guest RAM.
            let _ = writer.write(&data[taken..]);
            taken += writer.written() as usize;
            queue.add_used(chain.head(), writer.written_u32());
        }
        queue.notify();
        taken
    }

    pub fn set_host_connected(&self, index: usize, connected: bool) {
        let mut st = self.lock();
        let port = &mut st.ports[index];
        if port.host_connected == connected {
            return;
        }
        port.host_connected = connected;
        // Before PORT_READY the driver learns the state from the messages answering it.
        if port.ready {
            st.post(ControlMsg::new(self.ports[index].id, VIRTIO_CONSOLE_PORT_OPEN, u16::from(connected)));
            st.flush_control();
        }
    }

    /// Acts on one driver message; returns the index of a port whose waker should run.
    /// Unknown ports and events are ignored.
    pub fn handle_guest_message(&self, st: &mut ConsoleState, msg: &ControlMsg) -> Option<usize> {
        if msg.event == VIRTIO_CONSOLE_DEVICE_READY {
            if msg.value == 1 {
                for info in &self.ports {
                    st.post(ControlMsg::new(info.id, VIRTIO_CONSOLE_DEVICE_ADD, 1));
                }
            }
            return None;
        }
        let index = self.port_index(msg.id)?;
        let info = &self.ports[index];
        match msg.event {
            VIRTIO_CONSOLE_PORT_READY if msg.value == 1 => {
                st.ports[index].ready = true;
                if info.is_console {
                    st.post(ControlMsg::new(info.id, VIRTIO_CONSOLE_CONSOLE_PORT, 1));
                }
                if let Some(name) = info.name_msg() {
                    st.post(name);
                }
                if st.ports[index].host_connected {
                    st.post(ControlMsg::new(info.id, VIRTIO_CONSOLE_PORT_OPEN, 1));
                }
                Some(index)
            }
            VIRTIO_CONSOLE_PORT_READY => {
                st.ports[index].ready = false;
                None
            }
            VIRTIO_CONSOLE_PORT_OPEN => {
                let open = msg.value != 0;
                let was_open = std::mem::replace(&mut st.ports[index].guest_open, open);
                (open && !was_open).then_some(index)
            }
            _ => None,
        }
    }
}
