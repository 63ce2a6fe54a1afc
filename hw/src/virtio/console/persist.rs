//! Saved state of the console behind its transport (snapshots and migration): per port
//! whether the driver set it up (`PORT_READY`) and whether a guest program has it open, the
//! control messages the driver has not received yet, and whether the running driver uses
//! the multiport control queues.
//!
//! The host side's connection is a live fact of the machine's chardev, so restore keeps the
//! destination's. What the guest was told is saved with each port: if the connection is not
//! what the driver of a set-up port last heard, restore queues the `PORT_OPEN` that tells it,
//! as the device would have on a change.
//!
//! The queues, and whether multiport was negotiated, are the transport's: load this section
//! before the transport's, into a freshly built device, and the transport's restore
//! re-activates the device, which hands each port its queues and keeps what was loaded here
//! (a reset would not).

use super::control::*;
use super::port::PortInfo;
use super::VirtioConsole;
use ferrite_persist::{check_max, Persist, RestoreError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortState {
    /// The port number the guest sees.
    pub id: u32,
    pub ready: bool,
    pub guest_open: bool,
    /// The host side's connection when saved: what the driver was told, or will be by a
    /// pending `PORT_OPEN`.
    pub host_connected: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtioConsoleState {
    /// A running driver negotiated `VIRTIO_CONSOLE_F_MULTIPORT`.
    pub multiport: bool,
    /// Every port, in the device's order.
    pub ports: Vec<PortState>,
    /// Device messages waiting for control receive buffers, oldest first.
    pub pending_control: Vec<ControlMsg>,
}

/// Whether the device sends `msg` about port `info` (5.3.6.2: device-to-driver events, with
/// the values and payloads the device gives them).
fn sent_by(info: &PortInfo, msg: &ControlMsg) -> bool {
    let plain = msg.payload.is_empty();
    match msg.event {
        VIRTIO_CONSOLE_DEVICE_ADD => plain && msg.value == 1,
        VIRTIO_CONSOLE_CONSOLE_PORT => plain && msg.value == 1 && info.is_console,
        VIRTIO_CONSOLE_PORT_OPEN => plain && msg.value <= 1,
        VIRTIO_CONSOLE_PORT_NAME => info.name_msg().as_ref() == Some(msg),
        _ => false,
    }
}

impl VirtioConsole {
    /// Refuses a state this device could not have produced.
    fn check_state(&self, s: &VirtioConsoleState) -> Result<(), RestoreError> {
        let infos = &self.shared.ports;
        if s.ports.len() != infos.len() {
            let why = format!("{} ports, this device has {}", s.ports.len(), infos.len());
            return Err(RestoreError::invalid("ports", why));
        }
        for (p, info) in s.ports.iter().zip(infos) {
            let max = self.opts.max_nr_ports;
            if p.id >= max {
                return Err(RestoreError::invalid("ports.id", format!("port {} is beyond max_nr_ports {max}", p.id)));
            }
            if p.id != info.id {
                let why = format!("port {} where this device has port {}", p.id, info.id);
                return Err(RestoreError::invalid("ports.id", why));
            }
            if !s.multiport && p.id != 0 && (p.ready || p.guest_open) {
                let why = format!("port {} set up without the multiport control queues", p.id);
                return Err(RestoreError::invalid("ports.ready", why));
            }
        }
        check_max("pending_control", s.pending_control.len(), MAX_PENDING_CONTROL)?;
        if !s.multiport && !s.pending_control.is_empty() {
            let why = "control messages without the multiport control queues";
            return Err(RestoreError::invalid("pending_control", why));
        }
        let mut open_pending = Vec::new();
        for msg in &s.pending_control {
            let info = self.shared.port_index(msg.id).map(|i| &infos[i]);
            let info = info.ok_or_else(|| RestoreError::invalid("pending_control.id", format!("no port {}", msg.id)))?;
            if !sent_by(info, msg) {
                let (e, v, id) = (msg.event, msg.value, msg.id);
                let why = format!("event {e} value {v} for port {id} is not a message this device sends");
                return Err(RestoreError::invalid("pending_control.event", why));
            }
            if msg.event == VIRTIO_CONSOLE_PORT_OPEN {
                if open_pending.contains(&msg.id) {
                    let why = format!("two PORT_OPEN messages for port {}", msg.id);
                    return Err(RestoreError::invalid("pending_control", why));
                }
                open_pending.push(msg.id);
            }
        }
        Ok(())
    }
}

impl Persist for VirtioConsole {
    const SECTION: &'static str = "virtio-console";
    const VERSION: u32 = 1;
    type State = VirtioConsoleState;

    fn save(&self) -> VirtioConsoleState {
        let st = self.shared.lock();
        let ports = self.shared.ports.iter().zip(&st.ports);
        VirtioConsoleState {
            multiport: st.multiport(),
            ports: ports
                .map(|(info, p)| PortState {
                    id: info.id,
                    ready: p.ready,
                    guest_open: p.guest_open,
                    host_connected: p.host_connected,
                })
                .collect(),
            pending_control: st.outbox.pending().cloned().collect(),
        }
    }

    fn restore(&mut self, s: VirtioConsoleState) -> Result<(), RestoreError> {
        self.check_state(&s)?;
        let mut guard = self.shared.lock();
        let st = &mut *guard;
        st.outbox.replace(s.pending_control);
        for ((saved, info), port) in s.ports.iter().zip(&self.shared.ports).zip(&mut st.ports) {
            port.ready = saved.ready;
            port.guest_open = saved.guest_open;
            if s.multiport && saved.ready && saved.host_connected != port.host_connected {
                st.outbox.push(ControlMsg::new(info.id, VIRTIO_CONSOLE_PORT_OPEN, u16::from(port.host_connected)));
            }
        }
        Ok(())
    }
}
