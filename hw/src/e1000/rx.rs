//! Receive: address filtering (SDM 3.2.1, 13.5), VLAN filtering and stripping (chapter 9),
//! receive checksum offload (3.2.9, RXCSUM), the descriptor ring with RCTL.BSIZE/BSEX buffers
//! (3.2.2-3.2.6) and the receive interrupts (RXT0, RXDMT0, RXO, SRPD).

use super::csum;
use super::regs::*;
use super::E1000;

/// Frames shorter than this (without FCS) are padded, as the wire minimum guarantees.
const MIN_FRAME: usize = 60;
/// Longest frame with FCS without RCTL.LPE (a VLAN-tagged 1518-byte frame), and with it
/// (the 82540EM's 16 KiB limit).
const MAX_NORMAL: usize = 1522;
const MAX_LONG: usize = 16384;
const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Receive buffer size from RCTL.BSIZE and BSEX (13.4.22); the reserved BSEX encoding 00b
/// is taken as 2048.
fn buffer_size(rctl: u32) -> usize {
    let bsize = (rctl >> RCTL_BSIZE_SHIFT) & 3;
    match (rctl & RCTL_BSEX != 0, bsize) {
        (false, 0) => 2048,
        (false, 1) => 1024,
        (false, 2) => 512,
        (false, _) => 256,
        (true, 1) => 16384,
        (true, 2) => 8192,
        (true, 3) => 4096,
        (true, _) => 2048,
    }
}

/// The 12 bits of the destination address the multicast table is indexed by (13.5.1; MO
/// selects bits 47:36, 46:35, 45:34 or 43:32).
fn mta_hash(dst: &[u8], mo: u32) -> u32 {
    let (lo, hi) = (u32::from(dst[4]), u32::from(dst[5]));
    let h = match mo {
        0 => lo >> 4 | hi << 4,
        1 => lo >> 3 | hi << 5,
        2 => lo >> 2 | hi << 6,
        _ => lo | hi << 8,
    };
    h & 0xFFF
}

/// IPv4 header checksum and TCP/UDP checksum results for a frame (after VLAN stripping):
/// status bits (IPCS, TCPCS, or IXSM when nothing was checked) and error bits.
fn rx_checksum(data: &[u8], rxcsum: u32, vet: u16) -> (u8, u8) {
    let ignore = (RXD_STAT_IXSM, 0);
    if rxcsum & (RXCSUM_IPOFLD | RXCSUM_TUOFLD) == 0 {
        return ignore;
    }
    let mut l3 = ETH_HLEN;
    let mut ethertype = csum::be16(data, 12);
    if ethertype == Some(vet) {
        // A tag left in place (CTRL.VME clear).
        ethertype = csum::be16(data, 16);
        l3 += 4;
    }
    if ethertype != Some(ETHERTYPE_IPV4) {
        return ignore;
    }
    let Some(&ver_ihl) = data.get(l3) else {
        return ignore;
    };
    let hlen = usize::from(ver_ihl & 0xF) * 4;
    let total = usize::from(csum::be16(data, l3 + 2).unwrap_or(0));
    if ver_ihl >> 4 != 4 || hlen < 20 || total < hlen || l3 + total > data.len() {
        return ignore;
    }
    let ip = &data[l3..l3 + total];
    let (mut status, mut errors) = (0, 0);
    if rxcsum & RXCSUM_IPOFLD != 0 {
        status |= RXD_STAT_IPCS;
        if csum::fold(csum::sum16(&ip[..hlen], 0)) != 0xFFFF {
            errors |= RXD_ERR_IPE;
        }
    }
    // Fragments carry no complete L4 checksum.
    let fragment = csum::be16(ip, 6).unwrap_or(0) & 0x3FFF != 0;
    let proto = ip[9];
    if rxcsum & RXCSUM_TUOFLD != 0 && !fragment && (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
        let l4 = &ip[hlen..];
        let min = if proto == IPPROTO_TCP { 20 } else { 8 };
        if l4.len() >= min {
            status |= RXD_STAT_TCPCS;
            // A zero UDP checksum means none was sent: nothing to fail.
            let unchecked = proto == IPPROTO_UDP && csum::be16(l4, 6) == Some(0);
            let pseudo = csum::sum16(&ip[12..20], u64::from(proto) + l4.len() as u64);
            if !unchecked && csum::fold(csum::sum16(l4, pseudo)) != 0xFFFF {
                errors |= RXD_ERR_TCPE;
            }
        }
    }
    if status == 0 {
        return ignore;
    }
    (status, errors)
}

impl E1000 {
    /// A frame from the backend for the guest (Ethernet, destination first, no FCS).
    ///
    /// Returns `false` only when the receiver is enabled and the ring lacks free
    /// descriptors for the frame (RXO is raised, RNBC counted): the backend keeps it and
    /// offers it again after [`crate::net::FrameSink::rx_space`]. Every other frame is
    /// consumed: stored, filtered, or dropped (receiver disabled, link down, no bus
    /// mastering, too long, or longer than the whole ring), with the statistics the SDM
    /// names (TPR/TOR for all, GPRC/GORC/BPRC/MPRC/PRCxx for stored, ROC, MPC, RUC).
    pub fn receive(&mut self, frame: &[u8]) -> bool {
        let rctl = self.reg(RCTL);
        if rctl & RCTL_EN == 0 || !self.link_up() {
            return true;
        }
        if frame.len() < ETH_HLEN {
            self.count(ST_RUC, 1);
            return true;
        }
        // Length on the wire: padded to the minimum, with FCS.
        let wire = frame.len().max(MIN_FRAME) + 4;
        let max = if rctl & RCTL_LPE != 0 { MAX_LONG } else { MAX_NORMAL };
        let outcome = if wire > max {
            self.count(ST_ROC, 1);
            Some(false)
        } else {
            self.rx_accept(frame, rctl)
        };
        let Some(stored) = outcome else {
            // Refused: the backend offers it again, so it is not counted yet.
            return false;
        };
        self.count(ST_TPR, 1);
        self.count64(ST_TORL, wire as u64);
        if stored {
            self.count(ST_GPRC, 1);
            self.count64(ST_GORCL, wire as u64);
            self.count_size(ST_PRC64, wire);
            if frame[..6] == [0xFF; 6] {
                self.count(ST_BPRC, 1);
            } else if frame[0] & 1 != 0 {
                self.count(ST_MPRC, 1);
            }
        }
        true
    }

    /// Filters, strips, checksums and stores a frame of acceptable length: `Some(true)`
    /// stored, `Some(false)` filtered or dropped, `None` no room.
    fn rx_accept(&mut self, frame: &[u8], rctl: u32) -> Option<bool> {
        let Some(pif) = self.rx_filter(frame, rctl) else {
            return Some(false);
        };
        let mut status = if pif { RXD_STAT_PIF } else { 0 };
        let mut special = 0;
        let mut data = frame.to_vec();
        if data.len() < MIN_FRAME {
            data.resize(MIN_FRAME, 0);
        }
        let vet = self.reg(VET) as u16;
        if csum::be16(&data, 12) == Some(vet) {
            let tci = csum::be16(&data, 14).unwrap_or(0);
            if !self.vlan_pass(tci, rctl) {
                return Some(false);
            }
            if self.reg(CTRL) & CTRL_VME != 0 {
                data.drain(12..16);
                status |= RXD_STAT_VP;
                special = tci;
            }
        }
        let rxcsum = self.reg(RXCSUM);
        let (cs_status, errors) = rx_checksum(&data, rxcsum, vet);
        status |= cs_status;
        let stored_len = data.len();
        if rctl & RCTL_SECRC == 0 {
            // Linux's driver strips 4 FCS bytes from every frame it gets with SECRC clear.
            let fcs = csum::crc32(&data);
            data.extend_from_slice(&fcs.to_le_bytes());
        }
        // The packet checksum covers what is stored from PCSS on, FCS included (3.2.3).
        let pcss = ((rxcsum & RXCSUM_PCSS) as usize).min(data.len());
        let packet_csum = csum::fold(csum::sum16(&data[pcss..], 0));
        let stored = self.rx_store(&data, rctl, status, errors, special, packet_csum)?;
        let rsrpd = self.reg(RSRPD) & RSRPD_SIZE;
        if stored && rsrpd != 0 && stored_len <= rsrpd as usize {
            self.raise(ICR_SRPD);
        }
        Some(stored)
    }

    /// Destination address filters (13.5): the 16 exact receive addresses, broadcast with
    /// BAM, multicast promiscuous or the multicast table (an inexact match, PIF), unicast
    /// promiscuous. `Some(pif)` when the frame passes.
    fn rx_filter(&self, data: &[u8], rctl: u32) -> Option<bool> {
        let dst = &data[..6];
        for i in 0..16 {
            let lo = self.reg(RA + 8 * i);
            let hi = self.reg(RA + 8 * i + 4);
            // Address select 00b: match the destination.
            if hi & RAH_AV != 0 && hi & RAH_AS == 0 {
                let addr = [lo.to_le_bytes(), hi.to_le_bytes()].concat();
                if addr[..6] == *dst {
                    return Some(false);
                }
            }
        }
        if dst[0] & 1 == 0 {
            return (rctl & RCTL_UPE != 0).then_some(false);
        }
        if rctl & RCTL_MPE != 0 || (dst == [0xFF; 6] && rctl & RCTL_BAM != 0) {
            return Some(false);
        }
        let h = mta_hash(dst, (rctl >> RCTL_MO_SHIFT) & 3);
        let hit = self.reg(MTA + 4 * (h >> 5)) >> (h & 31) & 1 != 0;
        hit.then_some(true)
    }

    /// VLAN filter (RCTL.VFE with the VFTA, and the CFI check of RCTL.CFIEN).
    fn vlan_pass(&self, tci: u16, rctl: u32) -> bool {
        if rctl & RCTL_VFE == 0 {
            return true;
        }
        let cfi = tci & 0x1000 != 0;
        if rctl & RCTL_CFIEN != 0 && cfi != (rctl & RCTL_CFI != 0) {
            return false;
        }
        let vid = u32::from(tci & 0xFFF);
        self.reg(VFTA + 4 * (vid >> 5)) >> (vid & 31) & 1 != 0
    }

    /// Writes `data` (FCS included if any) into as many buffers as it needs from RDH on and
    /// completes their descriptors: DD on each, EOP and the packet status, errors and VLAN
    /// on the last, the packet checksum on the first. False when the ring has too few free
    /// descriptors (RXO); a frame larger than the whole ring is dropped (MPC).
    fn rx_store(
        &mut self,
        data: &[u8],
        rctl: u32,
        status: u8,
        errors: u8,
        special: u16,
        packet_csum: u16,
    ) -> Option<bool> {
        let dma = match &self.link {
            Some(link) if self.cfg.bus_master() => link.dma.clone(),
            _ => {
                // No way to memory: the FIFO overflows.
                self.count(ST_MPC, 1);
                return Some(false);
            }
        };
        let bufsize = buffer_size(rctl);
        let needed = data.len().div_ceil(bufsize) as u64;
        let n = u64::from(self.reg(RDLEN)) / DESC_SIZE;
        let rdt = u64::from(self.reg(RDT));
        let mut rdh = u64::from(self.reg(RDH));
        let valid = n > 0 && rdh < n && rdt < n;
        if valid && needed >= n {
            // Can never fit, even in an empty ring.
            self.count(ST_MPC, 1);
            return Some(false);
        }
        let free = if valid { (rdt + n - rdh) % n } else { 0 };
        if needed > free {
            self.count(ST_RNBC, 1);
            self.raise(ICR_RXO);
            return None;
        }
        let base = u64::from(self.reg(RDBAH)) << 32 | u64::from(self.reg(RDBAL));
        let mut dma_failed = false;
        let chunks = data.chunks(bufsize).count();
        for (k, chunk) in data.chunks(bufsize).enumerate() {
            let desc = base.wrapping_add(rdh * DESC_SIZE);
            let stored = dma.read_u64(desc).and_then(|buf| dma.write(buf, chunk));
            dma_failed |= stored.is_err();
            let first = k == 0;
            let last = k + 1 == chunks;
            let mut wb = [0u8; 8];
            wb[0..2].copy_from_slice(&(chunk.len() as u16).to_le_bytes());
            if first {
                wb[2..4].copy_from_slice(&packet_csum.to_le_bytes());
            }
            wb[4] = RXD_STAT_DD;
            if last {
                wb[4] |= RXD_STAT_EOP | status;
                wb[5] = errors | if dma_failed { RXD_ERR_RXE } else { 0 };
                wb[6..8].copy_from_slice(&special.to_le_bytes());
            }
            // Nothing more to do if the descriptor itself is outside RAM.
            let _ = dma.write(desc.wrapping_add(8), &wb);
            rdh = (rdh + 1) % n;
        }
        self.set_reg(RDH, rdh as u32);
        let mut causes = ICR_RXT0;
        // Minimum threshold: free descriptors fell to RDMTS (1/2, 1/4, 1/8) of the ring.
        let rdmts = ((rctl >> RCTL_RDMTS_SHIFT) & 3).min(2);
        let threshold = n >> (rdmts + 1);
        let left = free - needed;
        if free > threshold && left <= threshold {
            causes |= ICR_RXDMT0;
        }
        self.raise(causes);
        Some(true)
    }
}
