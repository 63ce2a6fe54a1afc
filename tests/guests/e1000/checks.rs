//! Random register writes, then proof that the card still works.

use super::*;

/// `FUZZ_DWORDS` random values to random dword registers (every 64th to CTRL with RST set), each
/// followed by a random read; then `FUZZ_SMALL` byte, word and unaligned dword accesses. Writes
/// that could point a ring into RAM are defused: the low dword of every base address register
/// (the dword at offsets 0-3 mod 8 in 0x100-0x4FF and 0x2800-0x3FFF) gets bit 31 set, and
/// after a write to 0x0-0xFF (a reset may have zeroed them) the bases move back to 2 GiB.
pub(super) fn fuzz(a: &mut Asm, d: &mut Data, k: &K) {
    let rt = &k.rt;
    let mut s = Script::default();
    s.step(&format!("{FUZZ_DWORDS} random register writes, then {FUZZ_SMALL} random byte/word/unaligned accesses"))
        .w(RCTL, 0)
        .w(TCTL, 0)
        .w(RDBAL, OUTSIDE_RAM)
        .w(TDBAL, OUTSIDE_RAM);
    k.run(a, d, &s);
    a.mov(dword_ptr(k.seed), FUZZ_SEED).unwrap();

    // Is ECX a dangerous offset? Jumps to `safe` if not.
    let guard = |a: &mut Asm, safe: CodeLabel| {
        let mut check = a.create_label();
        a.mov(eax, ecx).unwrap();
        a.sub(eax, RCTL).unwrap();
        a.cmp(eax, 0x400u32).unwrap();
        a.jb(check).unwrap();
        a.mov(eax, ecx).unwrap();
        a.sub(eax, RDBAL).unwrap();
        a.cmp(eax, 0x1800u32).unwrap();
        a.jae(safe).unwrap();
        a.here(&mut check);
        a.test(ecx, 4u32).unwrap();
        a.jnz(safe).unwrap();
    };

    // Whole dwords.
    let mut next = a.create_label();
    let mut not_ctrl = a.create_label();
    let mut safe = a.create_label();
    let mut no_rebase = a.create_label();
    let mut no_check = a.create_label();
    a.push(ebx).unwrap();
    a.mov(ebx, FUZZ_DWORDS).unwrap();
    a.here(&mut next);
    a.call(k.rng).unwrap();
    a.mov(ecx, eax).unwrap();
    a.and(ecx, 0x1_fffcu32).unwrap();
    a.call(k.rng).unwrap();
    a.mov(edx, eax).unwrap();
    a.test(ebx, 63u32).unwrap();
    a.jnz(not_ctrl).unwrap();
    a.xor(ecx, ecx).unwrap();
    a.or(edx, CTRL_RST).unwrap();
    a.here(&mut not_ctrl);
    guard(a, safe);
    a.or(edx, OUTSIDE_RAM).unwrap();
    a.here(&mut safe);
    a.mov(dword_ptr(esi + ecx), edx).unwrap();
    a.cmp(ecx, 0x100u32).unwrap();
    a.jae(no_rebase).unwrap();
    a.call(k.rebase).unwrap();
    a.here(&mut no_rebase);
    a.call(k.rng).unwrap();
    a.and(eax, 0x1_fffcu32).unwrap();
    a.mov(eax, dword_ptr(esi + eax)).unwrap();
    a.test(ebx, 255u32).unwrap();
    a.jnz(no_check).unwrap();
    a.call(k.alive).unwrap();
    a.here(&mut no_check);
    a.dec(ebx).unwrap();
    a.jnz(next).unwrap();
    a.call(k.alive).unwrap();

    // Bytes (kind 0), words (1), unaligned dwords (2) and reads of all three (3).
    let mut next = a.create_label();
    let mut in_bar = a.create_label();
    let mut not_ctrl = a.create_label();
    let mut read = a.create_label();
    let mut word = a.create_label();
    let mut dword = a.create_label();
    let mut written = a.create_label();
    let mut no_rebase = a.create_label();
    let mut no_check = a.create_label();
    a.mov(ebx, FUZZ_SMALL).unwrap();
    a.here(&mut next);
    a.call(k.rng).unwrap();
    a.mov(ecx, eax).unwrap();
    a.and(ecx, 0x1_ffffu32).unwrap();
    a.cmp(ecx, 0x1_fffcu32).unwrap();
    a.jbe(in_bar).unwrap();
    a.sub(ecx, 4u32).unwrap();
    a.here(&mut in_bar);
    a.call(k.rng).unwrap();
    a.mov(edx, eax).unwrap();
    a.test(ebx, 63u32).unwrap();
    a.jnz(not_ctrl).unwrap();
    a.mov(ecx, CTRL + 3).unwrap(); // the byte holding RST
    a.or(edx, CTRL_RST >> 24).unwrap();
    a.mov(byte_ptr(esi + ecx), dl).unwrap();
    a.call(k.rebase).unwrap();
    a.jmp(no_rebase).unwrap();
    a.here(&mut not_ctrl);
    let mut write = a.create_label();
    guard(a, write);
    a.jmp(read).unwrap(); // could point a ring into RAM: read instead
    a.here(&mut write);
    a.call(k.rng).unwrap();
    a.and(eax, 3u32).unwrap();
    a.cmp(eax, 3u32).unwrap();
    a.je(read).unwrap();
    a.cmp(eax, 1u32).unwrap();
    a.je(word).unwrap();
    a.ja(dword).unwrap();
    a.mov(byte_ptr(esi + ecx), dl).unwrap();
    a.jmp(written).unwrap();
    a.here(&mut word);
    a.mov(word_ptr(esi + ecx), dx).unwrap();
    a.jmp(written).unwrap();
    a.here(&mut dword);
    a.mov(dword_ptr(esi + ecx), edx).unwrap();
    a.here(&mut written);
    a.cmp(ecx, 0x100u32).unwrap();
    a.jae(no_rebase).unwrap();
    a.call(k.rebase).unwrap();
    a.jmp(no_rebase).unwrap();
    a.here(&mut read);
    a.mov(al, byte_ptr(esi + ecx)).unwrap();
    a.mov(ax, word_ptr(esi + ecx)).unwrap();
    a.mov(eax, dword_ptr(esi + ecx)).unwrap();
    a.here(&mut no_rebase);
    a.test(ebx, 127u32).unwrap();
    a.jnz(no_check).unwrap();
    a.call(k.alive).unwrap();
    a.here(&mut no_check);
    a.dec(ebx).unwrap();
    a.jnz(next).unwrap();
    a.pop(ebx).unwrap();
    let mut s = Script::default();
    s.w(RCTL, 0).w(TCTL, 0).w(IMC, u32::MAX).r(ICR).alive();
    k.run(a, d, &s);
    rt.print(a, d, "e1000: random writes done\n");
}

// ---------------------------------------------------------------------------------------------
// The card still works.

/// Resets the card, sets up fresh rings, sends the done frame and waits for the host's ack
/// (resending the frame every [`ACK_WAIT_MS`], up to [`ACK_TRIES`] times).
pub(super) fn final_frame(a: &mut Asm, d: &mut Data, k: &K) {
    let rt = &k.rt;
    let tx_idx = d.var();
    let rx_idx = d.var();
    let rx_frames = d.var();
    let tries = d.var();
    let frame_addr = d.bytes(&done_frame(), 16);

    rt.print(a, d, "e1000: reset, then a frame to the host and its answer back\n");
    a.mov(dword_ptr(esi + CTRL), CTRL_RST).unwrap();
    let mut stuck = a.create_label();
    let mut reset = a.create_label();
    rt.wait_until(a, RESET_TIMEOUT_MS, stuck, |a, ok| {
        a.test(dword_ptr(esi + CTRL), CTRL_RST).unwrap();
        a.jz(ok).unwrap();
    });
    a.jmp(reset).unwrap();
    a.here(&mut stuck);
    rt.fail(a, d, "e1000: CTRL.RST never clears\n");
    a.here(&mut reset);

    let rx: Vec<_> = (0..FINAL_RX_DESCS).map(|i| rxd((FINAL_RX_BUFS + i * 2048) as u64)).collect();
    let rx = d.bytes(&ring(&rx), 16);
    let tx = d.zeroed(FINAL_TX_DESCS * 16, 16);
    let mut s = Script::default();
    // The random phase wrote PHY registers too: reset the PHY as a driver would.
    s.w(CTRL, CTRL_PHY_RST | CTRL_SLU | CTRL_ASDE)
        .delay(10)
        .w(CTRL, CTRL_SLU | CTRL_ASDE)
        .w(IMC, u32::MAX)
        .r(ICR)
        .w(RAL0, u32::from_le_bytes([MAC[0], MAC[1], MAC[2], MAC[3]]))
        .w(RAH0, u16::from_le_bytes([MAC[4], MAC[5]]) as u32 | RAH_AV)
        .copy(rx, FINAL_RX_RING, FINAL_RX_DESCS * 16)
        .rx_ring(FINAL_RX_RING, 0, FINAL_RX_DESCS * 16, FINAL_RX_DESCS - 1, RCTL_NORMAL)
        .copy(tx, FINAL_TX_RING, FINAL_TX_DESCS * 16)
        .w(TIPG, TIPG_VALUE)
        .tx_ring(FINAL_TX_RING, 0, FINAL_TX_DESCS * 16);
    k.run(a, d, &s);
    let mut link = a.create_label();
    let mut no_link = a.create_label();
    rt.wait_until(a, LINK_TIMEOUT_MS, no_link, |a, ok| {
        a.test(dword_ptr(esi + STATUS), STATUS_LU).unwrap();
        a.jnz(ok).unwrap();
    });
    a.jmp(link).unwrap();
    a.here(&mut no_link);
    rt.print(a, d, "e1000: warning: STATUS.LU still clear after the reset; sending anyway\n");
    a.here(&mut link);

    a.mov(dword_ptr(tries), ACK_TRIES).unwrap();
    let mut send = a.create_label();
    let mut no_dd = a.create_label();
    let mut sent = a.create_label();
    let mut no_ack = a.create_label();
    let mut acked = a.create_label();
    a.here(&mut send);
    a.mov(eax, dword_ptr(tx_idx)).unwrap();
    a.mov(ecx, eax).unwrap();
    a.shl(ecx, 4).unwrap();
    a.add(ecx, FINAL_TX_RING).unwrap();
    let cmd = (CMD_EOP | CMD_IFCS | CMD_RS) as u32;
    a.mov(dword_ptr(ecx), frame_addr).unwrap();
    a.mov(dword_ptr(ecx + 4), 0).unwrap();
    a.mov(dword_ptr(ecx + 8), (cmd << 24) | DONE_FRAME_LEN).unwrap();
    a.mov(dword_ptr(ecx + 12), 0).unwrap();
    a.inc(eax).unwrap();
    a.and(eax, FINAL_TX_DESCS - 1).unwrap();
    a.mov(dword_ptr(tx_idx), eax).unwrap();
    a.mov(dword_ptr(esi + TDT), eax).unwrap();
    rt.wait_until(a, TX_TIMEOUT_MS, no_dd, |a, ok| {
        a.test(byte_ptr(ecx + 12), DESC_DD).unwrap();
        a.jnz(ok).unwrap();
    });
    a.jmp(sent).unwrap();
    a.here(&mut no_dd);
    rt.print(a, d, "e1000: the done frame was never transmitted (no DD); TDH 0x");
    a.mov(eax, dword_ptr(esi + TDH)).unwrap();
    rt.print_hex(a);
    rt.print(a, d, ", TDT 0x");
    a.mov(eax, dword_ptr(esi + TDT)).unwrap();
    rt.print_hex(a);
    rt.fail(a, d, "\n");
    a.here(&mut sent);
    // Take frames off the receive ring, giving each descriptor back, until the ack.
    rt.wait_until(a, ACK_WAIT_MS, no_ack, |a, ok| {
        let mut not_yet = a.create_label();
        a.mov(eax, dword_ptr(rx_idx)).unwrap();
        a.mov(ecx, eax).unwrap();
        a.shl(ecx, 4).unwrap();
        a.add(ecx, FINAL_RX_RING).unwrap();
        a.test(byte_ptr(ecx + 12), DESC_DD).unwrap();
        a.jz(not_yet).unwrap();
        a.inc(dword_ptr(rx_frames)).unwrap();
        a.mov(edx, dword_ptr(ecx)).unwrap();
        a.mov(dword_ptr(ecx + 8), 0).unwrap();
        a.mov(dword_ptr(ecx + 12), 0).unwrap();
        a.mov(dword_ptr(esi + RDT), eax).unwrap();
        a.inc(eax).unwrap();
        a.and(eax, FINAL_RX_DESCS - 1).unwrap();
        a.mov(dword_ptr(rx_idx), eax).unwrap();
        for (i, w) in ACK_MARKER.chunks(4).enumerate() {
            a.cmp(dword_ptr(edx + 14 + 4 * i as i32), u32::from_le_bytes(w.try_into().unwrap())).unwrap();
            a.jne(not_yet).unwrap();
        }
        a.jmp(ok).unwrap();
        a.here(&mut not_yet);
    });
    a.jmp(acked).unwrap();
    a.here(&mut no_ack);
    a.dec(dword_ptr(tries)).unwrap();
    a.jnz(send).unwrap();
    rt.print(a, d, "e1000: no ack from the host; frames received meanwhile: ");
    a.mov(eax, dword_ptr(rx_frames)).unwrap();
    rt.print_dec(a);
    rt.fail(a, d, "\n");
    a.here(&mut acked);
    rt.print(a, d, "e1000: done frame sent ");
    a.mov(eax, ACK_TRIES + 1).unwrap();
    a.sub(eax, dword_ptr(tries)).unwrap();
    rt.print_dec(a);
    rt.print(a, d, " time(s), host ack received after ");
    a.mov(eax, dword_ptr(rx_frames)).unwrap();
    rt.print_dec(a);
    rt.print(a, d, " frames; GPTC 0x");
    a.mov(eax, dword_ptr(esi + GPTC)).unwrap();
    rt.print_hex(a);
    rt.print(a, d, ", GPRC 0x");
    a.mov(eax, dword_ptr(esi + GPRC)).unwrap();
    rt.print_hex(a);
    rt.print(a, d, "\n");
    let mut s = Script::default();
    s.w(RCTL, 0).w(TCTL, 0).alive();
    k.run(a, d, &s);
}
