//! Guest -> host: draining a port's transmitq, and reading the driver's control messages.

use super::control::{ControlMsg, CONTROL_HEADER_LEN};
use super::port::PortOutput;
use crate::virtio::Queue;

/// Most bytes taken from one transmit chain; the rest is dropped (Linux writes at most a
/// page or so per buffer).
pub const TX_MAX_CHAIN_BYTES: usize = 64 * 1024;

/// Hands every available chain's bytes to `output` (dropped when `None`), returns each chain
/// with nothing written, and signals the driver once. At most a queue's worth of chains.
pub(super) fn drain_port(queue: &mut Queue, output: Option<&dyn PortOutput>, buf: &mut Vec<u8>) {
    for _ in 0..queue.size() {
        let Some(chain) = queue.pop() else { break };
        if let Some(output) = output {
            let len = chain.readable_len().min(TX_MAX_CHAIN_BYTES as u64) as usize;
            buf.resize(len, 0);
            // A chain the device cannot read is dropped whole.
            if chain.reader(queue.dma()).read_exact(buf).is_ok() && !buf.is_empty() {
                output.write(buf);
            }
        }
        queue.add_used(chain.head(), 0);
    }
    queue.notify();
}

/// The messages of every available control chain (a chain shorter than a header carries
/// none), each chain returned; at most a queue's worth.
pub(super) fn drain_control(queue: &mut Queue) -> Vec<ControlMsg> {
    let mut msgs = Vec::new();
    for _ in 0..queue.size() {
        let Some(chain) = queue.pop() else { break };
        let mut header = [0; CONTROL_HEADER_LEN];
        if chain.reader(queue.dma()).read_exact(&mut header).is_ok() {
            msgs.push(ControlMsg::parse(&header));
        }
        queue.add_used(chain.head(), 0);
    }
    queue.notify();
    msgs
}
