//! Transmit (5.1.6.2): each chain is a [`NetHdr`] and a packet in its device-readable
//! buffers, laid out any way the driver likes. The device completes the offloads the header
//! asks for and hands finished frames to the sink; a packet it cannot finish is dropped and
//! counted. Chains are returned with length 0 (nothing is written into them).
//!
//! One notification handles at most [`TX_BUDGET_QUEUES`] queues' worth of chains. That bound
//! is only reached when other vCPUs keep adding while this one works; then the device asks
//! to be notified at the driver's very next addition ([`crate::virtio::Queue::notify_on_more`]), so the
//! rest goes out with the next kick instead of waiting for an `avail_event` the driver has
//! already passed.

use super::header::*;
use super::{bump, VirtioNet, TX_BUDGET_QUEUES};
use crate::net::csum;
use crate::net::gso::{self, GsoError, IpVersion, ETH_HLEN, MAX_SEGMENT_FRAME};
use crate::net::FrameSink;
use crate::virtio::{ChainError, DescriptorChain};
use ferrite_memory::Dma;

/// Largest packet accepted from the driver: a 64 KiB super-packet plus its headers.
pub const MAX_TX_PACKET: usize = 0x1_0000 + 256;

/// Why a packet was dropped.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    #[error("the chain is shorter than the {0}-byte header")]
    ShortHeader(usize),
    #[error("reading the packet failed")]
    Read(#[source] ChainError),
    #[error("packet of {0} bytes is too short or too long")]
    Length(u64),
    #[error("checksum at {start}+{offset} lies outside the {len}-byte packet")]
    ChecksumOffsets { start: u16, offset: u16, len: usize },
    #[error("segmentation failed")]
    Gso(#[from] GsoError),
    #[error("segmentation type {0:#x} is not supported")]
    UnsupportedGso(u8),
    #[error("the link is down")]
    LinkDown,
}

impl VirtioNet {
    /// Sends every available packet, then signals the driver once.
    pub(super) fn process_tx(&mut self) {
        let (Some(queue), Some(dma)) = (self.tx.as_mut(), self.dma.as_ref()) else { return };
        let link_up = self.shared.lock().link_up;
        let hdr_len = header_len(self.features);
        let counters = &self.shared.counters;
        let mut budget = TX_BUDGET_QUEUES * usize::from(queue.size());
        loop {
            if budget == 0 {
                queue.notify_on_more();
                break;
            }
            let Some(chain) = queue.pop() else { break };
            budget -= 1;
            let sent = if link_up {
                transmit(&chain, dma, hdr_len, &mut self.tx_buf, &*self.shared.sink)
            } else {
                Err(TxError::LinkDown)
            };
            match sent {
                Ok(frames) => bump(&counters.tx_frames, frames as u64),
                Err(_) => bump(&counters.tx_dropped, 1),
            }
            queue.add_used(chain.head(), 0);
        }
        queue.notify();
    }
}

/// Reads one packet and sends the frame(s) it becomes; returns how many.
fn transmit(
    chain: &DescriptorChain,
    dma: &Dma,
    hdr_len: usize,
    buf: &mut Vec<u8>,
    sink: &dyn FrameSink,
) -> Result<usize, TxError> {
    let mut reader = chain.reader(dma);
    let mut raw = [0u8; HDR_LEN];
    reader.read_exact(&mut raw[..hdr_len]).map_err(|_| TxError::ShortHeader(hdr_len))?;
    let hdr = NetHdr::parse(&raw);
    let len = reader.remaining();
    if len < ETH_HLEN as u64 || len > MAX_TX_PACKET as u64 {
        return Err(TxError::Length(len));
    }
    buf.resize(len as usize, 0);
    reader.read_exact(buf).map_err(TxError::Read)?;
    let ip = match hdr.gso_type & !VIRTIO_NET_HDR_GSO_ECN {
        VIRTIO_NET_HDR_GSO_NONE => {
            if buf.len() > MAX_SEGMENT_FRAME {
                return Err(TxError::Length(len));
            }
            if hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
                complete_checksum(buf, hdr.csum_start, hdr.csum_offset)?;
            }
            sink.send(buf);
            return Ok(1);
        }
        VIRTIO_NET_HDR_GSO_TCPV4 => IpVersion::V4,
        VIRTIO_NET_HDR_GSO_TCPV6 => IpVersion::V6,
        other => return Err(TxError::UnsupportedGso(other)),
    };
    // Segmentation computes every checksum from scratch, so csum_start/csum_offset (and the
    // driver's hdr_len hint, 5.1.6.2) are not needed.
    Ok(gso::segment_tcp(buf, ip, usize::from(hdr.gso_size), &mut |frame| sink.send(frame))?)
}

/// Finishes a partial checksum (5.1.6.2): the driver left the pseudo-header sum at
/// `start + offset`; the checksum of everything from `start` to the end goes there. A result
/// of 0 is sent as 0xFFFF, which means the same for TCP and is required for UDP (RFC 768).
fn complete_checksum(pkt: &mut [u8], start: u16, offset: u16) -> Result<(), TxError> {
    let bad = TxError::ChecksumOffsets { start, offset, len: pkt.len() };
    let (start, at) = (usize::from(start), usize::from(start) + usize::from(offset));
    if start >= pkt.len() || at + 2 > pkt.len() {
        return Err(bad);
    }
    let end = pkt.len() - 1;
    csum::insert(pkt, start, end, at, 0);
    if csum::be16(pkt, at) == Some(0) {
        csum::put_be16(pkt, at, 0xFFFF);
    }
    Ok(())
}
