//! Finding and mapping the devices, and bringing one up through the modern interface.

use super::*;

/// Finds `dev` on bus 0 and maps it (see [`emit_map`]).
pub(super) fn find_and_map(a: &mut Asm, d: &mut Data, k: &K, dev: &Dev) {
    let missing = format!("virtio: no {} ({:04x}:{:04x}) on bus 0\n", dev.name, VENDOR, dev.vendor_device >> 16);
    k.rt.pci_find(a, d, dev.vendor_device, &missing);
    a.mov(ecx, dev.bar()).unwrap();
    a.mov(edx, dev.msix_bar()).unwrap();
    a.call(k.map).unwrap();
    k.rt.print(
        a,
        d,
        &format!("{}: BAR4 at 0x{:08x}, common/notify/ISR/device capabilities where expected\n", dev.name, dev.bar()),
    );
}

/// map: EBX = configuration address, ECX = BAR4 address, EDX = BAR1 address. Places BAR4
/// (64-bit, so BAR5 = 0) and BAR1 (MSI-X, so nothing decodes at address 0), enables memory
/// decoding and bus mastering, then walks the capability list: every virtio capability of
/// `cfg_type` 1-4 must point into BAR4 at [`REGION_OFFSETS`], and common, notify and ISR must
/// be there. Preserves every register.
pub(super) fn emit_map(a: &mut Asm, d: &mut Data, k: &K, region_offsets: u32) {
    let rt = &k.rt;
    let mut l = k.map;
    let mut walk = a.create_label();
    let mut next = a.create_label();
    let mut walked = a.create_label();
    let mut bad_bar = a.create_label();
    let mut bad_cap = a.create_label();
    let mut endless = a.create_label();
    a.here(&mut l);
    a.pushad().unwrap();
    a.mov(esi, ecx).unwrap();
    a.mov(ebp, edx).unwrap();
    let write = |a: &mut Asm, reg: u32, size: u32| {
        a.lea(eax, ptr(ebx + reg)).unwrap();
        rt.pci_write(a, size);
    };
    a.xor(edx, edx).unwrap();
    write(a, PCI_COMMAND, 2); // decoding off while the BARs move
    a.mov(edx, ebp).unwrap();
    write(a, PCI_BAR1, 4);
    a.mov(edx, esi).unwrap();
    write(a, PCI_BAR4, 4);
    a.xor(edx, edx).unwrap();
    write(a, PCI_BAR5, 4);
    a.lea(eax, ptr(ebx + PCI_BAR4)).unwrap();
    rt.pci_read(a);
    a.and(eax, !0xfu32).unwrap();
    a.cmp(eax, esi).unwrap();
    a.jne(bad_bar).unwrap();
    a.mov(edx, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER).unwrap();
    write(a, PCI_COMMAND, 2);

    // ECX = capability offset, EDI = regions found (bit per cfg_type), EBP = walk budget.
    a.lea(eax, ptr(ebx + PCI_CAP_PTR)).unwrap();
    rt.pci_read(a);
    a.and(eax, 0xfcu32).unwrap();
    a.mov(ecx, eax).unwrap();
    a.xor(edi, edi).unwrap();
    a.mov(ebp, CAP_LIST_LIMIT).unwrap();
    a.here(&mut walk);
    a.test(ecx, ecx).unwrap();
    a.jz(walked).unwrap();
    a.dec(ebp).unwrap();
    a.jz(endless).unwrap();
    a.lea(eax, ptr(ebx + ecx)).unwrap();
    rt.pci_read(a);
    a.mov(esi, eax).unwrap(); // ID, next, cap_len, cfg_type
    a.cmp(al, PCI_CAP_ID_VNDR).unwrap();
    a.jne(next).unwrap();
    a.mov(edx, eax).unwrap();
    a.shr(edx, 24).unwrap();
    a.test(edx, edx).unwrap();
    a.jz(next).unwrap();
    a.cmp(edx, CFG_DEVICE).unwrap();
    a.ja(next).unwrap(); // PCI configuration access and later types: not used here
    a.lea(eax, ptr(ebx + ecx + CAP_BAR)).unwrap();
    rt.pci_read(a);
    a.cmp(al, MODERN_BAR).unwrap();
    a.jne(bad_cap).unwrap();
    a.lea(eax, ptr(ebx + ecx + CAP_OFFSET)).unwrap();
    rt.pci_read(a);
    a.cmp(eax, dword_ptr(edx * 4 + region_offsets)).unwrap();
    a.jne(bad_cap).unwrap();
    a.bts(edi, edx).unwrap();
    a.here(&mut next);
    a.mov(ecx, esi).unwrap();
    a.shr(ecx, 8).unwrap();
    a.and(ecx, 0xfcu32).unwrap();
    a.jmp(walk).unwrap();
    a.here(&mut walked);
    a.and(edi, REQUIRED_CAPS).unwrap();
    a.cmp(edi, REQUIRED_CAPS).unwrap();
    let mut all = a.create_label();
    a.je(all).unwrap();
    rt.print(a, d, "\nvirtio: the capability list lacks common, notify or ISR configuration (found mask 0x");
    a.mov(eax, edi).unwrap();
    rt.print_hex(a);
    rt.fail(a, d, ")\n");
    a.here(&mut all);
    a.popad().unwrap();
    a.ret().unwrap();

    a.here(&mut bad_bar);
    rt.print(a, d, "\nvirtio: BAR4 reads 0x");
    rt.print_hex(a);
    rt.fail(a, d, " after placing it\n");
    a.here(&mut bad_cap);
    rt.print(a, d, "\nvirtio: capability of cfg_type ");
    a.mov(eax, edx).unwrap();
    rt.print_dec(a);
    rt.fail(a, d, " is not in BAR4 at the offset ferrite documents\n");
    a.here(&mut endless);
    rt.fail(a, d, "\nvirtio: the capability list does not end\n");
}

/// Reset, then wait for device_status to read 0 (4.1.4.3.2: the driver waits for that).
pub(super) fn reset(s: &mut Script, dev: &Dev) {
    s.w8(dev.status(), 0).wait_eq(
        dev.status(),
        0xff,
        0,
        &format!("{}: device_status never reads 0 after a reset", dev.name),
    );
}

/// Reset, ACKNOWLEDGE|DRIVER, the kernel's features, FEATURES_OK (3.1.1).
pub(super) fn negotiate(s: &mut Script, dev: &Dev) {
    reset(s, dev);
    s.w8(dev.status(), ACKNOWLEDGE)
        .w8(dev.status(), ACKNOWLEDGE | DRIVER)
        .w32(dev.reg(GFSELECT), 0)
        .w32(dev.reg(GF), FEATURES_LO)
        .w32(dev.reg(GFSELECT), 1)
        .w32(dev.reg(GF), FEATURES_HI)
        .w8(dev.status(), ACKNOWLEDGE | DRIVER | FEATURES_OK)
        .wait_eq(dev.status(), FEATURES_OK, FEATURES_OK, &format!("{}: FEATURES_OK refused", dev.name));
}

/// Queue `q` of QUEUE_SIZE with its rings at `rings` (descriptors, driver area, device area),
/// enabled (4.1.5.1.3).
pub(super) fn setup_queue(s: &mut Script, dev: &Dev, q: u16, rings: [u64; 3]) {
    s.w16(dev.reg(Q_SELECT), q as u32).w16(dev.reg(Q_SIZE), QUEUE_SIZE as u32);
    for (field, addr) in [Q_DESC, Q_AVAIL, Q_USED].into_iter().zip(rings) {
        s.w32(dev.reg(field), addr as u32).w32(dev.reg(field + 4), (addr >> 32) as u32);
    }
    s.w16(dev.reg(Q_ENABLE), 1);
}

/// The whole bring-up with every queue in RAM; the device must then run.
pub(super) fn bring_up(d: &mut Data, dev: &Dev) -> Script {
    bring_up_with(d, dev, None)
}

/// The bring-up, with the abused queue's rings at `abused_rings` if given (then the device may
/// break at once, so only DRIVER_OK is checked).
pub(super) fn bring_up_with(d: &mut Data, dev: &Dev, abused_rings: Option<[u64; 3]>) -> Script {
    let mut s = Script::default();
    negotiate(&mut s, dev);
    for &q in dev.queues {
        let vq = dev.queue(q);
        s.fill(vq.desc, RING_BYTES / 4, 0);
        let rings = match abused_rings {
            Some(r) if q == dev.abused => r,
            _ => [vq.desc as u64, vq.avail as u64, vq.used as u64],
        };
        setup_queue(&mut s, dev, q, rings);
    }
    for (addr, bytes) in buffers(dev) {
        s.put(d, addr, &bytes);
    }
    s.w8(dev.status(), ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    let running = ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK;
    let (mask, why) = match abused_rings {
        None => (running | NEEDS_RESET, "not running (or needing a reset) after DRIVER_OK"),
        Some(_) => (running, "DRIVER_OK did not stick"),
    };
    s.wait_eq(dev.status(), mask, running, &format!("{}: {why}", dev.name));
    s
}
