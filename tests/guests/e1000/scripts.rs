//! The abuse, as scripts the kernel's interpreter runs.

use super::*;

/// Transmit rings in the wrong places and of the wrong sizes, the tail hammered.
pub(super) fn tx_ring_abuse(d: &mut Data) -> Vec<Script> {
    let mut out = Vec::new();
    // 256 ordinary 60-byte frames: whatever part of a bogus ring lies in RAM sends something.
    let sane: Vec<_> = (0..256).map(|_| frame(TX_BUF as u64, 60)).collect();
    let sane = d.bytes(&ring(&sane), 16);
    for (bal, bah, what) in [
        (0xfff0_0000, 0, "0xfff00000 (below 4 GiB, not RAM)"),
        (0x8000_0000, 0, "0x80000000 (the PCI hole, nothing there)"),
        (BAR, 0, "the card's own BAR0"),
        (0xfee0_0000, 0, "the local APIC page"),
        (0, 0x1_0000, "0x1000000000000 (TDBAH)"),
        (0xffff_ff80, 0xffff_ffff, "0xffffffffffffff80 (wraps the 64-bit space)"),
        (RAM_END - 0x40, 0, "the last 64 bytes of RAM (straddles its end)"),
    ] {
        let mut s = Script::default();
        s.step(&format!("tx ring at {what}"))
            .copy(sane, RAM_END - 0x40, 0x40)
            .tx_ring(bal, bah, 4096)
            .hammer(TDT, 64, 1, 0xff, 0)
            .hammer(TDT, 16, 0x1111, 0xffff, 0)
            .w(TDT, 0xffff_fff0)
            .w(TDT, 0)
            .delay(1)
            .print_reg("e1000:   TDH 0x", TDH)
            .print("\n")
            .alive();
        out.push(s);
    }
    for (len, what) in [
        (0, "TDLEN 0"),
        (8, "TDLEN 8 (half a descriptor)"),
        (0x50, "TDLEN 0x50 (not a multiple of 128)"),
        (0x88, "TDLEN 0x88 (not a multiple of 128)"),
    ] {
        let mut s = Script::default();
        s.step(&format!("{what}, tail 5"))
            .copy(sane, TX_RING, 4096)
            .tx_ring(TX_RING, 0, len)
            .w(TDT, 5)
            .hammer(TDT, 32, 3, 0xf, 0)
            .alive();
        out.push(s);
    }
    let mut s = Script::default();
    s.step("TDLEN 0xffffff80 (a ring of 2^28 descriptors, most outside RAM)")
        .copy(sane, TX_RING, 4096)
        .tx_ring(TX_RING, 0, 0xffff_ff80)
        .w(TDT, 16)
        .w(TDH, 0x0fff_ff00)
        .w(TDT, 0x0fff_ff10)
        .w(TDH, 0xfff0)
        .w(TDT, 0xffff)
        .delay(1)
        .print_reg("e1000:   TDH 0x", TDH)
        .print("\n")
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("tail beyond an 8-descriptor ring")
        .copy(sane, TX_RING, 4096)
        .tx_ring(TX_RING, 0, 128)
        .w(TDT, 9)
        .w(TDT, 0xffff)
        .w(TDT, 0x1234_5678)
        .w(TDT, 0xffff_ffff)
        .delay(1)
        .print_reg("e1000:   TDH 0x", TDH)
        .print("\n")
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("head beyond an 8-descriptor ring")
        .copy(sane, TX_RING, 4096)
        .tx_ring(TX_RING, 0, 128)
        .w(TDH, 100)
        .w(TDT, 3)
        .w(TDH, 0xffff)
        .w(TDT, 0)
        .w(TDH, 0x8000_0001)
        .w(TDT, 1)
        .delay(1)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("tail equal to head, then the tail hammered round an 8-descriptor ring")
        .copy(sane, TX_RING, 4096)
        .tx_ring(TX_RING, 0, 128)
        .w(TDH, 3)
        .w(TDT, 3)
        .hammer(TDT, 512, 1, 7, 0)
        .hammer(TDT, 256, 5, 7, 0)
        .delay(1)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("transmitter toggled while the tail moves")
        .copy(sane, TX_RING, 4096)
        .tx_ring(TX_RING, 0, 4096)
        .hammer(TCTL, 64, TCTL_ON, TCTL_ON, 0)
        .hammer(TDT, 64, 7, 0xff, 0)
        .w(TCTL, 0)
        .w(TDT, 200)
        .w(TDH, 5)
        .w(TCTL, TCTL_ON)
        .delay(1)
        .alive();
    out.push(s);
    out
}

/// Transmit descriptors in RAM that lie: buffers outside RAM, zero and oversized lengths, a
/// packet that never ends, segmentation and checksum offloads with impossible parameters.
pub(super) fn tx_descriptor_abuse(d: &mut Data) -> Vec<Script> {
    let buf = TX_BUF as u64;
    let mut out = Vec::new();
    // The descriptors, then the tail right after them (the ring has room for one more).
    let step = |d: &mut Data, name: &str, descs: Vec<[u8; 16]>, pre: &dyn Fn(&mut Script)| {
        let n = descs.len() as u32;
        let ring_len = ((n + 1) * 16).next_multiple_of(128);
        let mut s = Script::default();
        s.step(name);
        pre(&mut s);
        s.tx_descs(d, &descs, ring_len).w(TDT, n).delay(2).print_reg("e1000:   TDH 0x", TDH).print("\n").alive();
        s
    };
    let none = &|_: &mut Script| {};
    out.push(step(
        d,
        "tx buffers outside RAM",
        vec![
            frame(0xfff0_0000, 1514),
            frame(1 << 48, 60),
            frame(BAR as u64, 64),
            frame(0xfee0_0000, 64),
            frame(0xfec0_0000, 64),
            frame(0xffff_ffff_ffff_fff0, 0xffff),
            frame(u64::MAX, 1),
            frame((RAM_END - 16) as u64, 0x100),
            frame(RAM_END as u64, 60),
            data(0xffff_ffff_ffff_ff00, 0xf_ffff, CMD_EOP | CMD_IFCS | CMD_RS, 0),
        ],
        none,
    ));
    out.push(step(
        d,
        "zero-length tx descriptors",
        vec![
            frame(buf, 0),
            frame(0, 0),
            legacy(buf, 0, 0, CMD_IFCS, 0, 0),
            legacy(buf, 0, 0, CMD_IFCS, 0, 0),
            frame(buf, 0),
            data(buf, 0, CMD_EOP | CMD_RS, POPTS_IXSM | POPTS_TXSM),
        ],
        none,
    ));
    out.push(step(
        d,
        "tx lengths 0xffff and 0xfffff, one packet of 3 x 0xffff",
        vec![
            frame(buf, 0xffff),
            legacy(buf, 0xffff, 0, CMD_IFCS, 0, 0),
            legacy(buf, 0xffff, 0, CMD_IFCS, 0, 0),
            frame(buf, 0xffff),
            data(buf, 0xf_ffff, CMD_EOP | CMD_IFCS | CMD_RS, 0),
        ],
        none,
    ));
    // 256 descriptors of 64 KiB without EOP, the ring walked 32 times: 512 MiB of packet that
    // never ends (a card that keeps it all shows in ferrite's RSS).
    let chain: Vec<_> = (0..256).map(|_| legacy(buf, 0xffff, 0, CMD_IFCS, 0, 0)).collect();
    let chain = d.bytes(&ring(&chain), 16);
    let mut s = Script::default();
    s.step("a packet of 256 x 64 KiB descriptors without EOP, round the ring 32 times")
        .copy(chain, TX_RING, 4096)
        .tx_ring(TX_RING, 0, 4096)
        .hammer(TDT, 65, 128, 0xff, 0)
        .delay(2)
        .print_reg("e1000:   TDH 0x", TDH)
        .print("\n")
        .alive();
    out.push(s);
    let tse = CMD_TSE | CMD_EOP | CMD_IFCS | CMD_RS;
    let both = POPTS_IXSM | POPTS_TXSM;
    let tso = TUCMD_IP | TUCMD_TCP | CMD_TSE;
    out.push(step(
        d,
        "TSO with MSS 0",
        vec![ctx(Ctx { paylen: 1000, tucmd: tso, mss: 0, ..CTX }), data(buf, 1054, tse, both)],
        none,
    ));
    out.push(step(
        d,
        "TSO with HDRLEN 255, more than the whole packet",
        vec![
            ctx(Ctx { paylen: 10, tucmd: tso, hdrlen: 255, mss: 100, ..CTX }),
            data(buf, 60, tse, both),
            ctx(Ctx { paylen: 0, tucmd: tso, hdrlen: 200, mss: 1, ..CTX }),
            data(buf, 10, tse, both),
        ],
        none,
    ));
    out.push(step(
        d,
        "TSO with MSS 1 and PAYLEN 0xfffff (2000 bytes of data)",
        vec![ctx(Ctx { paylen: 0xf_ffff, tucmd: tso, mss: 1, ..CTX }), data(buf, 2000, tse, both)],
        none,
    ));
    out.push(step(
        d,
        "TSO with HDRLEN 0 and MSS 0xffff over 1 MiB of data",
        vec![
            ctx(Ctx { paylen: 0xf_ffff, tucmd: tso, hdrlen: 0, mss: 0xffff, ..CTX }),
            data(buf, 0xf_ffff, tse & !CMD_EOP, both),
            data(buf, 0xffff, tse, both),
        ],
        none,
    ));
    out.push(step(
        d,
        "TSO with HDRLEN 0 and MSS 1",
        vec![ctx(Ctx { paylen: 100, tucmd: tso, hdrlen: 0, mss: 1, ..CTX }), data(buf, 100, tse, both)],
        none,
    ));
    out.push(step(
        d,
        "checksum offsets beyond the frame",
        vec![
            ctx(Ctx { ipcss: 0, ipcso: 250, ipcse: 0, tucss: 200, tucso: 254, tucse: 5, ..CTX }),
            data(buf, 42, CMD_EOP | CMD_IFCS | CMD_RS, both),
            ctx(Ctx { ipcss: 255, ipcso: 41, ipcse: 1, tucss: 41, tucso: 41, tucse: 0xffff, ..CTX }),
            data(buf, 42, CMD_EOP | CMD_RS, both),
            ctx(Ctx { ipcss: 14, ipcso: 255, ipcse: 0xffff, tucss: 255, tucso: 255, tucse: 0, ..CTX }),
            data(buf, 0, CMD_EOP | CMD_RS, both),
            legacy(buf, 20, 200, CMD_EOP | CMD_IFCS | CMD_IC | CMD_RS, 190, 0),
            legacy(buf, 20, 19, CMD_EOP | CMD_IC | CMD_RS, 0, 0),
            legacy(buf, 20, 2, CMD_EOP | CMD_IC | CMD_RS, 18, 0),
            legacy(buf, 0, 0, CMD_EOP | CMD_IC | CMD_RS, 0, 0),
            legacy(buf, 1, 255, CMD_EOP | CMD_IC | CMD_RS, 255, 0),
        ],
        none,
    ));
    out.push(step(
        d,
        "TSO data descriptor with no context since reset",
        vec![data(buf, 100, tse, both), data(buf, 0xffff, tse, both), data(buf, 1, tse, 0)],
        &|s: &mut Script| {
            s.w(TCTL, 0).w(CTRL, CTRL_RST).delay(2).w(CTRL, CTRL_SLU | CTRL_ASDE).w(IMC, u32::MAX);
        },
    ));
    out.push(step(
        d,
        "reserved descriptor types (DTYP 2-15)",
        (2..16).map(|t| data_typed(buf, 64, t, CMD_EOP | CMD_RS | if t % 2 == 0 { CMD_TSE } else { 0 }, both, 0)).collect(),
        none,
    ));
    out.push(step(
        d,
        "VLAN tag insertion into runt frames",
        vec![
            legacy(buf, 5, 0, CMD_EOP | CMD_IFCS | CMD_VLE | CMD_RS, 0, 0xffff),
            legacy(buf, 0, 0, CMD_EOP | CMD_VLE | CMD_RS, 0, 0x0123),
            legacy(buf, 12, 0, CMD_EOP | CMD_VLE | CMD_RS, 0, 0x0123),
            legacy(buf, 11, 10, CMD_EOP | CMD_VLE | CMD_IC | CMD_RS, 0, 0x0123),
            data_typed(buf, 3, 1, CMD_EOP | CMD_VLE | CMD_RS, both, 0x1234),
            ctx(Ctx { paylen: 3, tucmd: tso, hdrlen: 10, mss: 1, ..CTX }),
            data_typed(buf, 13, 1, tse | CMD_VLE, both, 0x1234),
        ],
        &|s: &mut Script| {
            s.w(CTRL, CTRL_SLU | CTRL_ASDE | CTRL_VME).w(VET, 0xffff);
        },
    ));
    let mut s = Script::default();
    s.step("back to a plain transmitter").w(TCTL, 0).w(CTRL, CTRL_SLU | CTRL_ASDE).w(VET, 0x8100).alive();
    out.push(s);
    out
}

/// Receive rings and buffers in the wrong places, of the wrong sizes, never emptied, with the
/// host flooding the card all along.
pub(super) fn rx_abuse(d: &mut Data) -> Vec<Script> {
    let mut out = Vec::new();
    let sane: Vec<_> = (0..256).map(|i| rxd((RX_BUFS + i * 2048) as u64)).collect();
    let sane = d.bytes(&ring(&sane), 16);
    for (bal, bah, what) in [
        (0xfff0_0000, 0, "0xfff00000"),
        (0x8000_0000, 0, "0x80000000 (the PCI hole)"),
        (BAR, 0, "the card's own BAR0"),
        (0, 0x1_0000, "0x1000000000000 (RDBAH)"),
        (0xffff_ff80, 0xffff_ffff, "0xffffffffffffff80 (wraps the 64-bit space)"),
        (RAM_END - 0x40, 0, "the last 64 bytes of RAM (straddles its end)"),
    ] {
        let mut s = Script::default();
        s.step(&format!("rx ring at {what}, frames arriving"))
            .copy(sane, RAM_END - 0x40, 0x40)
            .rx_ring(bal, bah, 4096, 255, RCTL_ABUSE)
            .delay(20)
            .hammer(RDT, 64, 17, 0xff, 0)
            .delay(10)
            .print_reg("e1000:   RDH 0x", RDH)
            .print("\n")
            .w(RCTL, 0)
            .alive();
        out.push(s);
    }
    for (len, what) in [(0, "RDLEN 0"), (8, "RDLEN 8"), (0x50, "RDLEN 0x50"), (0x88, "RDLEN 0x88")] {
        let mut s = Script::default();
        s.step(&format!("{what}, tail 5, frames arriving"))
            .copy(sane, RX_RING, 4096)
            .rx_ring(RX_RING, 0, len, 5, RCTL_ABUSE)
            .delay(20)
            .hammer(RDT, 32, 3, 0xf, 0)
            .delay(10)
            .w(RCTL, 0)
            .alive();
        out.push(s);
    }
    let mut s = Script::default();
    s.step("RDLEN 0xffffff80 from the last page of RAM, tail far away")
        .copy(sane, TOP_RING, 4096)
        .rx_ring(TOP_RING, 0, 0xffff_ff80, 0x0fff_fff0, RCTL_ABUSE)
        .delay(30)
        .w(RDT, 0xffff)
        .delay(20)
        .print_reg("e1000:   RDH 0x", RDH)
        .print("\n")
        .w(RCTL, 0)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("rx tail beyond an 8-descriptor ring")
        .copy(sane, RX_RING, 4096)
        .rx_ring(RX_RING, 0, 128, 9, RCTL_ABUSE)
        .delay(20)
        .w(RDT, 0xffff)
        .delay(20)
        .w(RDT, u32::MAX)
        .delay(20)
        .w(RCTL, 0)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("rx head beyond an 8-descriptor ring")
        .copy(sane, RX_RING, 4096)
        .w(RCTL, 0)
        .w(RDBAL, RX_RING)
        .w(RDBAH, 0)
        .w(RDLEN, 128)
        .w(RDH, 50)
        .w(RDT, 3)
        .w(RCTL, RCTL_ABUSE)
        .delay(20)
        .w(RDH, 0xffff_fff0)
        .delay(20)
        .w(RCTL, 0)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("rx tail equal to head (no buffers), frames arriving")
        .copy(sane, RX_RING, 4096)
        .rx_ring(RX_RING, 0, 4096, 0, RCTL_ABUSE)
        .delay(30)
        .w(RCTL, 0)
        .alive();
    out.push(s);

    // Never emptied: 15 usable 256-byte buffers, jumbo frames allowed, 500 ms of flood (a card
    // or backend that queued what it cannot deliver would grow by hundreds of MiB meanwhile). The
    // card must stop at the tail and keep to the buffer size; what does not fit is dropped.
    let canary: Vec<_> = (0..CANARY_DESCS).map(|i| rxd((CANARY_BUFS + i * 512) as u64)).collect();
    let canary = d.bytes(&ring(&canary), 16);
    let mut s = Script::default();
    s.step("a 16 x 256-byte rx ring the driver never empties, jumbo frames on")
        .copy(canary, CANARY_RING, CANARY_DESCS * 16)
        .fill(CANARY_BUFS, CANARY_DESCS * 512 / 4, CANARY)
        .rx_ring(CANARY_RING, 0, CANARY_DESCS * 16, CANARY_DESCS - 1, RCTL_ABUSE | RCTL_BSIZE_256)
        .delay(400)
        .print_reg("e1000:   RDH 0x", RDH)
        .print_reg(", MPC 0x", MPC)
        .print_reg(", RNBC 0x", RNBC)
        .print_reg(", GPRC 0x", GPRC)
        .print("\n")
        .delay(100)
        .check_set(CANARY_RING + 12, DESC_DD)
        .check_clear(CANARY_RING + (CANARY_DESCS - 1) * 16 + 12, DESC_DD)
        .check_rx_lens(CANARY_RING, CANARY_DESCS, 256);
    for i in 0..CANARY_DESCS {
        s.check_fill(CANARY_BUFS + i * 512 + 256, 64, CANARY);
    }
    s.w(RCTL, 0).alive();
    out.push(s);

    let bad: Vec<_> = [
        0xfff0_0000u64,
        1 << 48,
        BAR as u64,
        0xffff_ffff_ffff_f800,
        (RAM_END - 100) as u64,
        RAM_END as u64,
        0xfec0_0000,
        u64::MAX,
    ]
    .iter()
    .cycle()
    .take(16)
    .map(|&a| rxd(a))
    .collect();
    let mut s = Script::default();
    s.step("rx buffers outside RAM, frames arriving")
        .copy(d.bytes(&ring(&bad), 16), RX_RING, 256)
        .rx_ring(RX_RING, 0, 256, 15, RCTL_ABUSE)
        .delay(30)
        .hammer(RDT, 64, 3, 0xf, 0)
        .delay(10)
        .w(RCTL, 0)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("reserved rx buffer size (BSEX with BSIZE 0), then 16 KiB buffers")
        .copy(sane, RX_RING, 4096)
        .rx_ring(RX_RING, 0, 128, 7, RCTL_ABUSE | RCTL_BSEX)
        .delay(30)
        .w(RCTL, 0)
        .copy(sane, RX_RING, 4096)
        .rx_ring(RX_RING, 0, 128, 7, RCTL_ABUSE | RCTL_BSEX | RCTL_BSIZE_16K)
        .delay(30)
        .w(RCTL, 0)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("receiver toggled while frames arrive")
        .copy(sane, RX_RING, 4096)
        .rx_ring(RX_RING, 0, 4096, 255, RCTL_ABUSE)
        .hammer(RCTL, 256, RCTL_EN, RCTL_EN, RCTL_UPE | RCTL_BAM)
        .hammer(RDT, 256, 1, 0xff, 0)
        .w(RCTL, 0)
        .alive();
    out.push(s);
    out
}

/// Interrupt registers, EEPROM, PHY and sub-dword accesses.
pub(super) fn misc_abuse() -> Vec<Script> {
    let mut out = Vec::new();
    let mut s = Script::default();
    s.step("interrupt registers hammered (interrupts off in the CPU, INTx live)")
        .w(IMS, u32::MAX)
        .w(ICS, u32::MAX)
        .r(ICR)
        .r(ICR)
        .w(ICR, u32::MAX)
        .hammer(ICS, 300, 0x9e37_79b9, u32::MAX, 0)
        .hammer(IMS, 300, 0x7f4a_7c15, u32::MAX, 0)
        .r(ICR)
        .hammer(IMC, 300, 0x6a09_e667, u32::MAX, 0)
        .hammer(ICR, 300, 0xbb67_ae85, u32::MAX, 0)
        .w(ITR, 0)
        .w(ITR, 1)
        .w(ITR, 0xffff)
        .w(ITR, u32::MAX)
        .w(IMS, u32::MAX)
        .w(ICS, u32::MAX)
        .delay(20)
        .r(ICR)
        .w(ITR, 1)
        .w(ICS, u32::MAX)
        .delay(5)
        .w(ITR, 0)
        .w(IMC, u32::MAX)
        .r(ICR)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("EERD over all 256 word addresses, EECD bit-banged, MDIC over every PHY address")
        .hammer(EERD, 256, 1 << EERD_ADDR_SHIFT, 0xff << EERD_ADDR_SHIFT, EERD_START)
        .hammer(EERD, 16, 0x1111_1111, u32::MAX, 0)
        .hammer(EECD, 512, 0x4d, 0xff, 0)
        .w(EECD, 0)
        .hammer(MDIC, 1024, 1 << 16, 0x03ff_0000, 0x0800_0000) // read, every PHY and register
        .hammer(MDIC, 16, 0x0002_0000, 0x001e_0000, 0x0421_0000 | 0x1234) // write, PHY 1, odd registers
        .hammer(MDIC, 16, 0x1357_9bdf, 0xf3ff_ffff, 0)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("byte, word and unaligned accesses")
        .w8(CTRL + 3, (CTRL_RST >> 24) | 0x40) // the RST bit through its byte
        .delay(2)
        .w(CTRL, CTRL_SLU | CTRL_ASDE)
        .w(RDBAL, OUTSIDE_RAM)
        .w(TDBAL, OUTSIDE_RAM)
        .r8(STATUS + 1)
        .r16(STATUS + 2)
        .r(STATUS + 1)
        .r(STATUS + 3)
        .w16(TDT, 0xffff)
        .w16(TDT + 2, 0xffff)
        .w16(TDLEN + 1, 0xffff)
        .w8(TCTL, TCTL_ON)
        .w(TDT + 2, 0x1234_5678)
        .w(TDH + 1, u32::MAX)
        .w8(RCTL + 1, RCTL_BAM >> 8)
        .w8(RCTL, RCTL_EN)
        .w16(RDT + 1, 0xffff)
        .w(RDLEN + 3, u32::MAX)
        .w8(ICS + 3, 0xff)
        .r8(ICR + 3)
        .r16(ICR + 1)
        .w(IMS + 2, u32::MAX)
        .w8(RAL0 + 5, 0xff)
        .w16(MTA + 0x7f, 0xffff)
        .r16(EERD + 1)
        .r8(0x1_fffc)
        .w(TCTL, 0)
        .w(RCTL, 0)
        .alive();
    out.push(s);
    let mut s = Script::default();
    s.step("accesses straddling the end of BAR0")
        .w16(0x1_ffff, 0xffff)
        .w(0x1_fffe, u32::MAX)
        .w(0x1_fffd, u32::MAX)
        .r(0x1_fffe)
        .r16(0x1_ffff)
        .r(0x1_fffd)
        .alive();
    out.push(s);
    out
}
