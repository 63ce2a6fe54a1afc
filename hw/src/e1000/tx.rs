//! Transmit: the descriptor ring (SDM 3.3-3.4), legacy descriptors with checksum insertion
//! (3.3.3), the TCP/IP context and data descriptors (3.3.5-3.3.7), checksum offload (3.5.8)
//! and TCP segmentation (3.5-3.5.9), VLAN tag insertion (3.3.3.1, CTRL.VME).

use super::csum;
use super::regs::*;
use super::E1000;
use ferrite_memory::Dma;

/// Largest packet assembled from descriptors: a 64 KiB TSO payload plus a header (the
/// 82540's header buffer is 240 bytes). Anything longer is dropped.
pub(super) const MAX_TX_BYTES: usize = 0x1_0000 + 256;
/// Largest frame handed to the sink.
const MAX_FRAME: usize = 0xFFFF;
/// Minimum frame without FCS, the length TCTL.PSP pads to.
const MIN_FRAME: usize = 60;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;

/// The TCP/IP context (3.3.6): offsets for checksum insertion and segmentation parameters.
#[derive(Clone, Copy, Debug, Default)]
pub struct TxContext {
    pub(super) ipcss: u8,
    pub(super) ipcso: u8,
    /// Inclusive end; 0 means end of packet.
    pub(super) ipcse: u16,
    pub(super) tucss: u8,
    pub(super) tucso: u8,
    pub(super) tucse: u16,
    pub(super) tucmd: u8,
    pub(super) hdr_len: u8,
    pub(super) mss: u16,
}

impl TxContext {
    fn parse(d: &[u8; 16]) -> Self {
        TxContext {
            ipcss: d[0],
            ipcso: d[1],
            ipcse: u16::from_le_bytes([d[2], d[3]]),
            tucss: d[4],
            tucso: d[5],
            tucse: u16::from_le_bytes([d[6], d[7]]),
            tucmd: d[11],
            hdr_len: d[13],
            mss: u16::from_le_bytes([d[14], d[15]]),
        }
    }
}

/// A packet being assembled from data or legacy descriptors up to EOP.
#[derive(Default)]
pub struct TxState {
    pub(super) ctx: TxContext,
    pub(super) buf: Vec<u8>,
    /// A descriptor of the current packet has been seen.
    pub(super) started: bool,
    /// From the first data descriptor: packet options and segmentation.
    pub(super) popts: u8,
    pub(super) tse: bool,
    /// With TSE the VLAN fields of the first data descriptor apply (3.3.7.1).
    pub(super) tse_vlan: Option<u16>,
    /// Too long or partly unreadable: dropped at EOP.
    pub(super) bad: bool,
}

/// The end offset (inclusive) of a checksum range: `end` 0 means the packet's last byte.
fn range_end(end: u16, len: usize) -> usize {
    if end == 0 {
        len.saturating_sub(1)
    } else {
        usize::from(end)
    }
}

impl E1000 {
    /// The VLAN tag to insert for a descriptor with `cmd` and `special`: VLE set and VLAN
    /// mode enabled in CTRL.
    fn tx_vlan(&self, cmd: u8, special: u16) -> Option<u16> {
        (cmd & TXD_CMD_VLE != 0 && self.reg(CTRL) & CTRL_VME != 0).then_some(special)
    }

    /// Runs the ring from TDH to TDT. The work is bounded by the ring size; a head or tail
    /// outside the ring stops the unit until the driver rewrites it.
    pub(super) fn process_tx(&mut self) {
        if self.reg(TCTL) & TCTL_EN == 0 || !self.cfg.bus_master() {
            return;
        }
        let Some(dma) = self.link.as_ref().map(|l| l.dma.clone()) else {
            return;
        };
        let n = u64::from(self.reg(TDLEN)) / DESC_SIZE;
        let tdt = u64::from(self.reg(TDT));
        let mut tdh = u64::from(self.reg(TDH));
        if n == 0 || tdh >= n || tdt >= n {
            return;
        }
        let base = u64::from(self.reg(TDBAH)) << 32 | u64::from(self.reg(TDBAL));
        let mut causes = 0;
        let mut done = 0;
        while tdh != tdt && done < n {
            let addr = base.wrapping_add(tdh * DESC_SIZE);
            let mut d = [0u8; 16];
            if dma.read(addr, &mut d).is_ok() {
                if self.tx_descriptor(&dma, &d) && dma.write(addr.wrapping_add(12), &[TXD_STAT_DD]).is_ok() {
                    causes |= ICR_TXDW;
                }
            } else {
                // An unreadable descriptor spoils the packet it belonged to.
                self.tx.started = true;
                self.tx.bad = true;
            }
            tdh = (tdh + 1) % n;
            done += 1;
        }
        self.set_reg(TDH, tdh as u32);
        if done > 0 && tdh == tdt {
            causes |= ICR_TXQE;
        }
        if causes != 0 {
            self.raise(causes);
        }
    }

    /// Handles one descriptor; returns whether it asks for status write-back (RS).
    fn tx_descriptor(&mut self, dma: &Dma, d: &[u8; 16]) -> bool {
        let addr = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        let lower = u32::from_le_bytes([d[8], d[9], d[10], d[11]]);
        let cmd = d[11];
        let special = u16::from_le_bytes([d[14], d[15]]);
        if cmd & TXD_CMD_DEXT == 0 {
            // Legacy (3.3.3): IC, CSO, CSS and VLE are valid with EOP only.
            self.tx.started = true;
            self.tx_append(dma, addr, (lower & 0xFFFF) as usize);
            if cmd & TXD_CMD_EOP != 0 {
                let vlan = self.tx_vlan(cmd, special);
                let (cso, css) = (usize::from(d[10]), usize::from(d[13]));
                self.tx_finish(|pkt| {
                    let len = pkt.len();
                    if cmd & TXD_CMD_IC != 0 && css < len && cso + 1 < len {
                        csum::insert(pkt, css, len - 1, cso, 0);
                    }
                    vlan
                });
            }
            return cmd & TXD_CMD_RS != 0;
        }
        match (lower >> 20) & 0xF {
            TXD_DTYP_CONTEXT => self.tx.ctx = TxContext::parse(d),
            TXD_DTYP_DATA => {
                if !self.tx.started {
                    self.tx.started = true;
                    self.tx.popts = d[13];
                    self.tx.tse = cmd & TXD_CMD_TSE != 0;
                    self.tx.tse_vlan = self.tx_vlan(cmd, special);
                }
                self.tx_append(dma, addr, (lower & 0xF_FFFF) as usize);
                if cmd & TXD_CMD_EOP != 0 {
                    if self.tx.tse {
                        self.tx_finish_tso();
                    } else {
                        let vlan = self.tx_vlan(cmd, special);
                        let (ctx, popts) = (self.tx.ctx, self.tx.popts);
                        self.tx_finish(|pkt| {
                            offload_checksums(pkt, &ctx, popts);
                            vlan
                        });
                    }
                }
            }
            // Reserved descriptor types carry nothing.
            _ => {}
        }
        cmd & TXD_CMD_RS != 0
    }

    /// Appends `len` bytes at `addr`. A null address or zero length transfers nothing
    /// (3.3.3.1); an overlong packet or a buffer outside RAM spoils the packet.
    fn tx_append(&mut self, dma: &Dma, addr: u64, len: usize) {
        if len == 0 || addr == 0 || self.tx.bad {
            return;
        }
        let old = self.tx.buf.len();
        if old + len > MAX_TX_BYTES {
            self.tx.bad = true;
            return;
        }
        self.tx.buf.resize(old + len, 0);
        if dma.read(addr, &mut self.tx.buf[old..]).is_err() {
            self.tx.buf.truncate(old);
            self.tx.bad = true;
        }
    }

    /// Ends the packet: drops it if spoiled or empty, else lets `edit` apply offloads (it
    /// returns the VLAN tag to insert) and sends it. The buffer is kept for the next packet.
    fn tx_finish(&mut self, edit: impl FnOnce(&mut Vec<u8>) -> Option<u16>) {
        let mut pkt = std::mem::take(&mut self.tx.buf);
        let bad = self.tx.bad;
        self.tx_end_packet();
        if !bad && !pkt.is_empty() {
            let vlan = edit(&mut pkt);
            self.transmit(&pkt, vlan);
        }
        pkt.clear();
        self.tx.buf = pkt;
    }

    fn tx_end_packet(&mut self) {
        self.tx.started = false;
        self.tx.bad = false;
        self.tx.popts = 0;
        self.tx.tse = false;
        self.tx.tse_vlan = None;
    }

    /// TCP segmentation (3.5): the first HDRLEN bytes are the header prototype, the rest is
    /// cut into MSS-sized payloads; each frame gets the prototype with IP total length, IP
    /// identification, TCP sequence number (or UDP length) updated, FIN and PSH only on the
    /// last frame (3.5.9), then the checksums the first data descriptor asked for. The
    /// driver seeds the TCP/UDP checksum with the pseudo-header sum without the length; the
    /// hardware adds each frame's L4 length. A context it cannot honour (MSS 0, header
    /// missing or longer than the packet, frames over 64 KiB) drops the packet and counts
    /// TSCTFC.
    fn tx_finish_tso(&mut self) {
        let pkt = std::mem::take(&mut self.tx.buf);
        let (bad, ctx, popts, vlan) = (self.tx.bad, self.tx.ctx, self.tx.popts, self.tx.tse_vlan);
        self.tx_end_packet();
        let hdr = usize::from(ctx.hdr_len);
        let mss = usize::from(ctx.mss);
        let room = MAX_FRAME - if vlan.is_some() { 4 } else { 0 };
        if bad || mss == 0 || hdr == 0 || hdr > pkt.len() || hdr + mss > room {
            self.count(ST_TSCTFC, 1);
        } else {
            self.tso_segments(&pkt, &ctx, popts, vlan);
            self.count(ST_TSCTC, 1);
        }
        let mut pkt = pkt;
        pkt.clear();
        self.tx.buf = pkt;
    }

    fn tso_segments(&mut self, pkt: &[u8], ctx: &TxContext, popts: u8, vlan: Option<u16>) {
        let (head, payload) = pkt.split_at(usize::from(ctx.hdr_len));
        let mss = usize::from(ctx.mss);
        let ipcss = usize::from(ctx.ipcss);
        let tucss = usize::from(ctx.tucss);
        let ipv4 = ctx.tucmd & TXD_CMD_IP != 0;
        let tcp = ctx.tucmd & TXD_CMD_TCP != 0;
        let ip_id = csum::be16(head, ipcss + 4);
        let seq = csum::be32(head, tucss + 4);
        let count = payload.len().div_ceil(mss).max(1);
        let mut frame = Vec::with_capacity(head.len() + mss);
        for i in 0..count {
            let start = (i * mss).min(payload.len());
            let end = (start + mss).min(payload.len());
            let last = i + 1 == count;
            frame.clear();
            frame.extend_from_slice(head);
            frame.extend_from_slice(&payload[start..end]);
            let len = frame.len();
            if ipv4 {
                csum::put_be16(&mut frame, ipcss + 2, len.saturating_sub(ipcss) as u16);
                if let Some(id) = ip_id {
                    csum::put_be16(&mut frame, ipcss + 4, id.wrapping_add(i as u16));
                }
            } else {
                // IPv6 payload length: what follows the 40-byte fixed header.
                csum::put_be16(&mut frame, ipcss + 4, len.saturating_sub(ipcss + 40) as u16);
            }
            if tcp {
                if let Some(seq) = seq {
                    csum::put_be32(&mut frame, tucss + 4, seq.wrapping_add(start as u32));
                }
                if !last {
                    if let Some(flags) = frame.get_mut(tucss + 13) {
                        *flags &= !(TCP_FIN | TCP_PSH);
                    }
                }
            } else {
                csum::put_be16(&mut frame, tucss + 4, len.saturating_sub(tucss) as u16);
            }
            if popts & TXD_POPTS_TXSM != 0 {
                let l4_len = len.saturating_sub(tucss) as u64;
                csum::insert(&mut frame, tucss, len - 1, usize::from(ctx.tucso), l4_len);
            }
            if popts & TXD_POPTS_IXSM != 0 {
                let end = range_end(ctx.ipcse, len);
                csum::insert(&mut frame, ipcss, end, usize::from(ctx.ipcso), 0);
            }
            self.transmit(&frame, vlan);
        }
    }

    /// Puts a finished frame on the wire: VLAN tag inserted after the addresses, short
    /// frames padded with TCTL.PSP, then the sink and the statistics. With the link down
    /// the frame is lost, as on a real wire.
    fn transmit(&mut self, frame: &[u8], vlan: Option<u16>) {
        let psp = self.reg(TCTL) & TCTL_PSP != 0;
        let tagged;
        let mut out = frame;
        if let Some(tci) = vlan.filter(|_| frame.len() >= 12) {
            let vet = self.reg(VET) as u16;
            let mut v = Vec::with_capacity(frame.len() + 4);
            v.extend_from_slice(&frame[..12]);
            v.extend_from_slice(&vet.to_be_bytes());
            v.extend_from_slice(&tci.to_be_bytes());
            v.extend_from_slice(&frame[12..]);
            tagged = v;
            out = &tagged;
        }
        let padded;
        if psp && out.len() < MIN_FRAME {
            let mut v = out.to_vec();
            v.resize(MIN_FRAME, 0);
            padded = v;
            out = &padded;
        }
        if out.len() > MAX_FRAME || !self.link_up() {
            return;
        }
        self.sink.send(out);
        let wire = out.len() + 4;
        self.count(ST_GPTC, 1);
        self.count(ST_TPT, 1);
        self.count64(ST_GOTCL, wire as u64);
        self.count64(ST_TOTL, wire as u64);
        self.count_size(ST_PTC64, wire);
        if out.get(..6) == Some(&[0xFF; 6]) {
            self.count(ST_BPTC, 1);
        } else if out.first().is_some_and(|b| b & 1 != 0) {
            self.count(ST_MPTC, 1);
        }
    }
}

/// Checksum offload for a normal (not segmented) packet from the context offsets (3.5.8):
/// TCP/UDP first, since an IP range ending at the packet's end covers it.
fn offload_checksums(pkt: &mut [u8], ctx: &TxContext, popts: u8) {
    let len = pkt.len();
    if popts & TXD_POPTS_TXSM != 0 {
        let end = range_end(ctx.tucse, len);
        csum::insert(pkt, usize::from(ctx.tucss), end, usize::from(ctx.tucso), 0);
    }
    if popts & TXD_POPTS_IXSM != 0 {
        let end = range_end(ctx.ipcse, len);
        csum::insert(pkt, usize::from(ctx.ipcss), end, usize::from(ctx.ipcso), 0);
    }
}
