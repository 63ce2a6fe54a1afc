//! Finding and mapping the card, the MAC check and the first frame.

use super::*;

/// Finds 8086:100e on bus 0, places its 128 KiB memory BAR0 at [`BAR`], enables memory decoding
/// and bus mastering.
pub(super) fn find_and_map(a: &mut Asm, d: &mut Data, k: &K) {
    let rt = &k.rt;
    rt.pci_find(a, d, E1000_VENDOR_DEVICE, "e1000: no 8086:100e on bus 0\n");
    a.mov(dword_ptr(k.cfg), ebx).unwrap();
    rt.print(a, d, "e1000: 82540EM at 00:");
    a.mov(eax, ebx).unwrap();
    a.shr(eax, 11).unwrap();
    rt.print_hex2(a);
    rt.print(a, d, ".");
    a.mov(eax, ebx).unwrap();
    a.shr(eax, 8).unwrap();
    a.and(eax, 7u32).unwrap();
    rt.print_dec(a);

    // Decoding off while sizing BAR0.
    a.lea(eax, ptr(ebx + PCI_COMMAND)).unwrap();
    a.xor(edx, edx).unwrap();
    rt.pci_write(a, 2);
    a.lea(eax, ptr(ebx + PCI_BAR0)).unwrap();
    a.mov(edx, u32::MAX).unwrap();
    rt.pci_write(a, 4);
    rt.pci_read(a);
    let mut bad = a.create_label();
    let mut sized = a.create_label();
    a.test(eax, PCI_BAR_IO | PCI_BAR_TYPE).unwrap();
    a.jnz(bad).unwrap(); // an I/O BAR, or a 64-bit one
    a.and(eax, PCI_BAR_MEM_MASK).unwrap();
    a.cmp(eax, 0u32.wrapping_sub(E1000_BAR0_SIZE)).unwrap();
    a.je(sized).unwrap();
    a.here(&mut bad);
    rt.print(a, d, "\ne1000: BAR0 reads 0x");
    rt.print_hex(a);
    rt.fail(a, d, " after writing all ones, expected a 32-bit 128 KiB memory BAR (0xfffe0000)\n");
    a.here(&mut sized);
    a.lea(eax, ptr(ebx + PCI_BAR0)).unwrap();
    a.mov(edx, BAR).unwrap();
    rt.pci_write(a, 4);
    rt.pci_read(a);
    a.and(eax, PCI_BAR_MEM_MASK).unwrap();
    let mut placed = a.create_label();
    a.cmp(eax, BAR).unwrap();
    a.je(placed).unwrap();
    rt.print(a, d, "\ne1000: BAR0 reads 0x");
    rt.print_hex(a);
    rt.fail(a, d, &format!(" after writing 0x{BAR:08x}\n"));
    a.here(&mut placed);
    a.lea(eax, ptr(ebx + PCI_COMMAND)).unwrap();
    a.mov(edx, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER).unwrap();
    rt.pci_write(a, 2);
    rt.print(a, d, &format!(", BAR0 at 0x{BAR:08x}\n"));
}

/// STATUS, then the MAC address from EEPROM words 0-2 through EERD (§5.3.1, §13.4.4).
pub(super) fn check_mac(a: &mut Asm, d: &mut Data, k: &K) {
    let rt = &k.rt;
    rt.print(a, d, "e1000: status 0x");
    a.mov(eax, dword_ptr(esi + STATUS)).unwrap();
    rt.print_hex(a);
    let mut dead = a.create_label();
    let mut answers = a.create_label();
    a.cmp(eax, u32::MAX).unwrap();
    a.jne(answers).unwrap();
    a.here(&mut dead);
    rt.fail(a, d, "\ne1000: STATUS reads all ones before anything was done to the card\n");
    a.here(&mut answers);
    rt.print(a, d, ", mac ");
    let mut late = a.create_label();
    let mut wrong = a.create_label();
    let mut good = a.create_label();
    for w in 0..3u32 {
        a.mov(dword_ptr(esi + EERD), (w << EERD_ADDR_SHIFT) | EERD_START).unwrap();
        rt.wait_until(a, EERD_TIMEOUT_MS, late, |a, ok| {
            a.test(dword_ptr(esi + EERD), EERD_DONE).unwrap();
            a.jnz(ok).unwrap();
        });
        a.mov(eax, dword_ptr(esi + EERD)).unwrap();
        a.shr(eax, EERD_DATA_SHIFT).unwrap();
        rt.print_hex2(a);
        rt.print(a, d, ":");
        a.push(eax).unwrap();
        a.mov(al, ah).unwrap();
        rt.print_hex2(a);
        if w < 2 {
            rt.print(a, d, ":");
        }
        a.pop(eax).unwrap();
        let expect = u16::from_le_bytes([MAC[2 * w as usize], MAC[2 * w as usize + 1]]) as u32;
        a.cmp(eax, expect).unwrap();
        a.jne(wrong).unwrap();
    }
    a.jmp(good).unwrap();
    a.here(&mut late);
    rt.fail(a, d, "\ne1000: EERD never reports done\n");
    a.here(&mut wrong);
    rt.fail(a, d, &format!("\ne1000: the EEPROM's MAC address differs from -device e1000,mac={MAC_ARG}\n"));
    a.here(&mut good);
    rt.print(a, d, "\n");
}

/// A sane receive ring of 8 and a wait for the host's first frame: the host is connected and
/// its flood reaches the card before the abuse starts.
pub(super) fn first_frame(a: &mut Asm, d: &mut Data, k: &K) {
    let rt = &k.rt;
    let mut s = Script::default();
    let rx: Vec<_> = (0..256).map(|i| rxd((RX_BUFS + i * 2048) as u64)).collect();
    let rx = d.bytes(&ring(&rx), 16);
    let hdr = d.bytes(&tcp_header(), 4);
    s.step("waiting for the host's first frame")
        .w(IMC, u32::MAX)
        .r(ICR)
        .w(CTRL, CTRL_SLU | CTRL_ASDE)
        .w(RAL0, u32::from_le_bytes([MAC[0], MAC[1], MAC[2], MAC[3]]))
        .w(RAH0, u16::from_le_bytes([MAC[4], MAC[5]]) as u32 | RAH_AV)
        .copy(hdr, TX_BUF, 54)
        .copy(rx, RX_RING, 4096)
        .rx_ring(RX_RING, 0, 128, 7, RCTL_NORMAL);
    k.run(a, d, &s);
    let mut late = a.create_label();
    let mut got = a.create_label();
    rt.wait_until(a, FIRST_FRAME_TIMEOUT_MS, late, |a, ok| {
        a.test(byte_ptr(RX_RING + 12), DESC_DD).unwrap();
        a.jnz(ok).unwrap();
    });
    a.jmp(got).unwrap();
    a.here(&mut late);
    rt.fail(a, d, &format!("e1000: no frame from the host in {} s\n", FIRST_FRAME_TIMEOUT_MS / 1000));
    a.here(&mut got);
    rt.print(a, d, "e1000: first frame received, length ");
    a.movzx(eax, word_ptr(RX_RING + 8)).unwrap();
    rt.print_dec(a);
    rt.print(a, d, "\n");
    let mut s = Script::default();
    s.w(RCTL, 0).alive();
    k.run(a, d, &s);
}
