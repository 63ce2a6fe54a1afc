//! The control queue (5.1.6.5): each chain is `class: u8, command: u8`, command data, then
//! one device-writable `ack` byte (`VIRTIO_NET_OK` or `VIRTIO_NET_ERR`). Supported: the
//! receive-mode class (promiscuous, all-multicast) with `VIRTIO_NET_F_CTRL_RX`, and the MAC
//! class (filter table with `CTRL_RX`, address with `VIRTIO_NET_F_CTRL_MAC_ADDR`). Everything
//! else, and any command whose data is short or unreadable, is answered `VIRTIO_NET_ERR`.

use super::filter::{MacTable, MAC_TABLE_ENTRIES};
use super::{NetState, VirtioNet, VIRTIO_NET_F_CTRL_MAC_ADDR, VIRTIO_NET_F_CTRL_RX};
use crate::virtio::ChainReader;

pub const VIRTIO_NET_OK: u8 = 0;
pub const VIRTIO_NET_ERR: u8 = 1;

pub const VIRTIO_NET_CTRL_RX: u8 = 0;
pub const VIRTIO_NET_CTRL_RX_PROMISC: u8 = 0;
pub const VIRTIO_NET_CTRL_RX_ALLMULTI: u8 = 1;

pub const VIRTIO_NET_CTRL_MAC: u8 = 1;
pub const VIRTIO_NET_CTRL_MAC_TABLE_SET: u8 = 0;
pub const VIRTIO_NET_CTRL_MAC_ADDR_SET: u8 = 1;

impl VirtioNet {
    /// Answers every available control command, then signals the driver once. One
    /// notification handles at most a queue's worth of commands; with a full queue the
    /// driver kicks again as it adds more (it waits for each answer anyway).
    pub(super) fn process_ctrl(&mut self) {
        let (Some(queue), Some(dma)) = (self.ctrl.as_mut(), self.dma.as_ref()) else { return };
        for _ in 0..queue.size() {
            let Some(chain) = queue.pop() else { break };
            let ack = {
                let mut st = self.shared.lock();
                execute(&mut st, &mut chain.reader(dma))
            };
            let mut writer = chain.writer(dma);
            // A chain without a writable byte gets no answer; the used length says so.
            let _ = writer.write(&[ack]);
            queue.add_used(chain.head(), writer.written_u32());
        }
        queue.notify();
    }
}

/// Runs one command read from `r`; returns the ack.
fn execute(st: &mut NetState, r: &mut ChainReader) -> u8 {
    let mut class_cmd = [0u8; 2];
    if r.read_exact(&mut class_cmd).is_err() {
        return VIRTIO_NET_ERR;
    }
    let negotiated = |f: u64| st.features & f != 0;
    let done = match (class_cmd[0], class_cmd[1]) {
        (VIRTIO_NET_CTRL_RX, cmd @ (VIRTIO_NET_CTRL_RX_PROMISC | VIRTIO_NET_CTRL_RX_ALLMULTI))
            if negotiated(VIRTIO_NET_F_CTRL_RX) =>
        {
            read_array::<1>(r).map(|[on]| {
                let mode =
                    if cmd == VIRTIO_NET_CTRL_RX_PROMISC { &mut st.filter.promisc } else { &mut st.filter.allmulti };
                *mode = on != 0;
            })
        }
        (VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET) if negotiated(VIRTIO_NET_F_CTRL_RX) => {
            read_table(r).and_then(|uni| Some((uni, read_table(r)?))).map(|(uni, multi)| {
                st.filter.unicast = uni;
                st.filter.multicast = multi;
            })
        }
        (VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET) if negotiated(VIRTIO_NET_F_CTRL_MAC_ADDR) => {
            read_array::<6>(r).map(|mac| st.mac = mac)
        }
        _ => None,
    };
    if done.is_some() {
        VIRTIO_NET_OK
    } else {
        VIRTIO_NET_ERR
    }
}

fn read_array<const N: usize>(r: &mut ChainReader) -> Option<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b).ok()?;
    Some(b)
}

/// `struct virtio_net_ctrl_mac { le32 entries; u8 macs[entries][6]; }`. The count is checked
/// against what the chain holds; a list longer than the table is skipped, not read.
fn read_table(r: &mut ChainReader) -> Option<MacTable> {
    let entries = u32::from_le_bytes(read_array::<4>(r)?);
    let bytes = u64::from(entries) * 6;
    if bytes > r.remaining() {
        return None;
    }
    if entries as usize > MAC_TABLE_ENTRIES {
        r.skip(bytes);
        return Some(MacTable::overflowed());
    }
    let list = (0..entries).map(|_| read_array::<6>(r)).collect::<Option<Vec<_>>>()?;
    Some(MacTable::from_list(list))
}
