//! PCI test kernel: a driver for QEMU's `edu` device (QEMU docs/specs/edu.rst) that finds it
//! through configuration mechanism #1, maps its BAR, and exercises its registers, DMA, INTx
//! (through the PIIX3 PIRQ routing and the 8259 pair) and MSI (to the local APIC).

use super::rt::{self, Idt, Rt, TICKS_10MS};
use super::{exit, multiboot_kernel, EXIT_OK};
use iced_x86::code_asm::*;

/// edu's PCI identity (edu.rst "PCI specs"), as the first configuration dword.
const EDU_VENDOR_DEVICE: u32 = 0x11e8_1234;
/// edu BAR0 registers (edu.rst "MMIO area spec").
const EDU_ID: u32 = 0x00;
const EDU_LIVENESS: u32 = 0x04;
const EDU_FACTORIAL: u32 = 0x08;
const EDU_STATUS: u32 = 0x20;
const EDU_IRQ_STATUS: u32 = 0x24;
const EDU_IRQ_RAISE: u32 = 0x60;
const EDU_IRQ_ACK: u32 = 0x64;
const EDU_DMA_SRC: u32 = 0x80;
const EDU_DMA_DST: u32 = 0x88;
const EDU_DMA_COUNT: u32 = 0x90;
const EDU_DMA_CMD: u32 = 0x98;
/// Identification: version 1.0.
const EDU_ID_VALUE: u32 = 0x0100_00ed;
/// Status bit 0: the factorial is being computed.
const EDU_STATUS_COMPUTING: u32 = 0x01;
/// DMA command bits: start (cleared when done), direction edu → RAM.
const EDU_DMA_START: u32 = 0x01;
const EDU_DMA_TO_RAM: u32 = 0x02;
/// The DMA buffer in the device's address space.
const EDU_DMA_BUFFER: u32 = 0x4_0000;

/// Liveness: a value and its inversion.
const LIVENESS_PROBE: u32 = 0x1234_5678;
const FACTORIAL_OF: u32 = 10;
const FACTORIAL: u32 = 3_628_800;

/// Configuration header registers (PCI Local Bus Specification 3.0 §6.1, §6.2, §6.7).
pub(super) const PCI_COMMAND: u32 = 0x04;
pub(super) const PCI_COMMAND_MEMORY: u32 = 1 << 1;
pub(super) const PCI_COMMAND_MASTER: u32 = 1 << 2;
/// Status (the upper half of the dword at 0x04) bit 4: a capability list is present.
const PCI_STATUS_CAP_LIST: u32 = 1 << (16 + 4);
pub(super) const PCI_BAR0: u32 = 0x10;
pub(super) const PCI_BAR_IO: u32 = 1 << 0;
pub(super) const PCI_BAR_TYPE: u32 = 0b11 << 1;
pub(super) const PCI_BAR_MEM_MASK: u32 = !0xf;
const PCI_CAP_PTR: u32 = 0x34;
const PCI_INTERRUPT_LINE: u32 = 0x3c;
/// MSI capability (PCI 3.0 §6.8.1): ID 5; message control in the upper half of its first
/// dword, bit 0 enable, bits 6:4 vectors enabled, bit 7 64-bit address; then the address, its
/// upper half if 64-bit, then the data.
const PCI_CAP_ID_MSI: u32 = 0x05;
const MSI_CTRL_ENABLE: u32 = 1 << 0;
const MSI_CTRL_MME: u32 = 0b111 << 4;
const MSI_CTRL_64BIT: u32 = 1 << 7;
/// Capabilities a list may hold before we call it a loop (configuration space holds 48).
const CAP_LIST_LIMIT: u32 = 48;

/// Where BAR0 goes: the top of the PCI hole below the IOAPIC at 0xFEC00000.
const BAR_BASE: u32 = 0xfe00_0000;
const BAR_LIMIT: u32 = 0xfec0_0000;
/// The PIIX3's PIRQ route control registers, 00:01.0 config 0x60-0x63 (82371SB §2.2.11).
const PIIX3_PIRQRC: u32 = (1 << 11) | 0x60;
/// Bit 7 of each route register disables the route.
const PIRQRC_ALL_DISABLED: u32 = 0x8080_8080;
/// The ISA IRQ edu's PIRQ is steered to, and where the 8259 pair puts IRQ 0-15.
const INTX_IRQ: u8 = 11;
const PIC_VECTOR_BASE: u8 = 0x20;
const INTX_VECTOR: u32 = PIC_VECTOR_BASE as u32 + INTX_IRQ as u32;
/// Spurious IRQ 7 and 15 of the master and the slave.
const PIC_SPURIOUS_MASTER: u32 = PIC_VECTOR_BASE as u32 + 7;
const PIC_SPURIOUS_SLAVE: u32 = PIC_VECTOR_BASE as u32 + 15;
/// MSI: to APIC ID 0 (physical destination, no redirection hint), fixed delivery, edge.
const MSI_ADDRESS: u32 = 0xfee0_0000;
const MSI_VECTOR: u32 = 0x50;
/// Interrupt status values the kernel raises through 0x60.
const INTX_RAISE: u32 = 0x0000_1234;
const MSI_RAISE: u32 = 0x0005_0000;

/// RAM buffers for DMA, above the runtime's stacks. Half the device buffer: QEMU 7.2 rejects
/// (hw_error, i.e. aborts) a transfer that ends exactly at the buffer's end.
const DMA_RAM_SRC: u32 = 0x30_0000;
const DMA_RAM_DST: u32 = 0x30_1000;
const DMA_LEN: u32 = 0x800;

/// Interrupts one handler may take before the kernel calls it a storm (a level interrupt that
/// acknowledging at the device does not clear) and gives up.
const STORM_LIMIT: u32 = 100;

/// QEMU computes factorials on a thread and runs DMA on a 100 ms timer.
const FACTORIAL_TIMEOUT_MS: u32 = 1_000;
const DMA_TIMEOUT_MS: u32 = 2_000;
const IRQ_TIMEOUT_MS: u32 = 1_000;

/// The line the kernel prints on success, for edu at `slot.func` of bus 0.
pub fn edu_result_line(slot: u8, func: u8) -> String {
    format!("pci: edu at 00:{slot:02x}.{func}, id {EDU_ID_VALUE:08x}, factorial ok, dma ok, intx ok, msi ok\n")
}

/// Finds edu on bus 0 and prints [`edu_result_line`] step by step, then exits with [`EXIT_OK`];
/// a failing step prints a line saying what went wrong and exits with `EXIT_FAIL`.
pub fn edu() -> Vec<u8> {
    multiboot_kernel(|a, d| {
        let rt = Rt::new(a, d);
        let idt = Idt::new(d);
        // edu's configuration address (device << 11 | function << 8) and BAR0's address.
        let cfg = d.var();
        let bar = d.var();
        let intx_count = d.var();
        let msi_count = d.var();
        // The interrupt status the last handler found (and acknowledged).
        let irq_seen = d.var();
        let mut handler = a.named_label("irq_handler");

        rt.bsp_entry(a);

        // 1. Scan bus 0, every device and function.
        rt.pci_find(a, d, EDU_VENDOR_DEVICE, "pci: no edu (1234:11e8) on bus 0\n");
        a.mov(dword_ptr(cfg), ebx).unwrap();
        rt.print(a, d, "pci: edu at 00:");
        a.mov(eax, ebx).unwrap();
        a.shr(eax, 11).unwrap();
        rt.print_hex2(a);
        rt.print(a, d, ".");
        a.mov(eax, ebx).unwrap();
        a.shr(eax, 8).unwrap();
        a.and(eax, 7u32).unwrap();
        rt.print_dec(a);

        // 2. BAR0: decoding off while sizing, then at BAR_BASE aligned to its size.
        let cfg_reg = |a: &mut CodeAssembler, reg: u32| {
            a.mov(eax, dword_ptr(cfg)).unwrap();
            a.or(eax, reg).unwrap();
        };
        cfg_reg(a, PCI_COMMAND);
        a.xor(edx, edx).unwrap();
        rt.pci_write(a, 2);
        cfg_reg(a, PCI_BAR0);
        a.mov(edx, u32::MAX).unwrap();
        rt.pci_write(a, 4);
        rt.pci_read(a);
        let mut is_mem = a.create_label();
        let mut is_32 = a.create_label();
        let mut bad_size = a.create_label();
        let mut fits = a.create_label();
        let mut placed = a.create_label();
        a.mov(esi, eax).unwrap();
        a.test(esi, PCI_BAR_IO).unwrap();
        a.jz(is_mem).unwrap();
        bar_failure(&rt, a, d, "is an I/O BAR");
        a.here(&mut is_mem);
        a.test(esi, PCI_BAR_TYPE).unwrap();
        a.jz(is_32).unwrap();
        bar_failure(&rt, a, d, "is not a 32-bit memory BAR");
        a.here(&mut is_32);
        // Size: the two's complement of the writable address bits, a power of two.
        a.mov(ecx, esi).unwrap();
        a.and(ecx, PCI_BAR_MEM_MASK).unwrap();
        a.neg(ecx).unwrap();
        a.jz(bad_size).unwrap();
        a.lea(eax, ptr(ecx - 1)).unwrap();
        a.test(eax, ecx).unwrap();
        a.jz(fits).unwrap();
        a.here(&mut bad_size);
        bar_failure(&rt, a, d, "has no power-of-two size");
        a.here(&mut fits);
        // Address: BAR_BASE rounded up to the size; it must end below BAR_LIMIT.
        a.lea(edi, ptr(ecx + (BAR_BASE - 1))).unwrap();
        a.mov(eax, ecx).unwrap();
        a.neg(eax).unwrap();
        a.and(edi, eax).unwrap();
        let mut no_fit = a.create_label();
        a.cmp(edi, BAR_BASE).unwrap();
        a.jb(no_fit).unwrap(); // the rounding wrapped around 4 GiB
        a.mov(eax, edi).unwrap();
        a.add(eax, ecx).unwrap();
        a.jc(no_fit).unwrap();
        a.cmp(eax, BAR_LIMIT).unwrap();
        a.jbe(placed).unwrap();
        a.here(&mut no_fit);
        bar_failure(&rt, a, d, "does not fit in 0xfe000000-0xfebfffff");
        a.here(&mut placed);
        cfg_reg(a, PCI_BAR0);
        a.mov(edx, edi).unwrap();
        rt.pci_write(a, 4);
        rt.pci_read(a);
        a.and(eax, PCI_BAR_MEM_MASK).unwrap();
        let mut assigned = a.create_label();
        a.cmp(eax, edi).unwrap();
        a.je(assigned).unwrap();
        a.mov(esi, eax).unwrap();
        bar_failure(&rt, a, d, "did not take its address");
        a.here(&mut assigned);
        a.mov(dword_ptr(bar), edi).unwrap();
        cfg_reg(a, PCI_COMMAND);
        a.mov(edx, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER).unwrap();
        rt.pci_write(a, 2);

        // 3. Identification and liveness.
        let mut id_ok = a.create_label();
        let mut alive = a.create_label();
        a.mov(esi, edi).unwrap();
        a.mov(eax, dword_ptr(esi + EDU_ID)).unwrap();
        a.cmp(eax, EDU_ID_VALUE).unwrap();
        a.je(id_ok).unwrap();
        value_failure(&rt, a, d, "pci: identification register reads 0x", &expected(EDU_ID_VALUE));
        a.here(&mut id_ok);
        rt.print(a, d, ", id ");
        rt.print_hex(a);
        a.mov(dword_ptr(esi + EDU_LIVENESS), LIVENESS_PROBE).unwrap();
        a.mov(eax, dword_ptr(esi + EDU_LIVENESS)).unwrap();
        a.cmp(eax, !LIVENESS_PROBE).unwrap();
        a.je(alive).unwrap();
        value_failure(
            &rt,
            a,
            d,
            "pci: liveness register reads 0x",
            &format!(" after writing 0x{LIVENESS_PROBE:08x}, expected 0x{:08x}\n", !LIVENESS_PROBE),
        );
        a.here(&mut alive);

        // 4. Factorial.
        let mut slow = a.create_label();
        let mut fact_ok = a.create_label();
        a.mov(dword_ptr(esi + EDU_FACTORIAL), FACTORIAL_OF).unwrap();
        rt.wait_until(a, FACTORIAL_TIMEOUT_MS, slow, |a, done| {
            a.test(dword_ptr(esi + EDU_STATUS), EDU_STATUS_COMPUTING).unwrap();
            a.jz(done).unwrap();
        });
        a.mov(eax, dword_ptr(esi + EDU_FACTORIAL)).unwrap();
        a.cmp(eax, FACTORIAL).unwrap();
        a.je(fact_ok).unwrap();
        value_failure(&rt, a, d, &format!("pci: factorial of {FACTORIAL_OF} reads 0x"), &expected(FACTORIAL));
        a.here(&mut slow);
        rt.fail(a, d, "\npci: the factorial status bit stays set\n");
        a.here(&mut fact_ok);
        rt.print(a, d, ", factorial ok");

        // 5. DMA: a pattern from RAM into the device and back into other RAM.
        let mut fill = a.create_label();
        a.xor(ecx, ecx).unwrap();
        a.here(&mut fill);
        a.imul_3(eax, ecx, 0x9e37_79b9u32 as i32).unwrap();
        a.add(eax, 0x0102_0304u32).unwrap();
        a.mov(dword_ptr(ecx * 4 + DMA_RAM_SRC), eax).unwrap();
        a.not(eax).unwrap();
        a.mov(dword_ptr(ecx * 4 + DMA_RAM_DST), eax).unwrap(); // differs everywhere
        a.inc(ecx).unwrap();
        a.cmp(ecx, DMA_LEN / 4).unwrap();
        a.jb(fill).unwrap();
        for (src, dst, cmd, what) in [
            (DMA_RAM_SRC, EDU_DMA_BUFFER, EDU_DMA_START, "to the device"),
            (EDU_DMA_BUFFER, DMA_RAM_DST, EDU_DMA_START | EDU_DMA_TO_RAM, "from the device"),
        ] {
            let mut late = a.create_label();
            let mut done = a.create_label();
            // 4-byte writes set the 64-bit registers, zero-extended.
            a.mov(dword_ptr(esi + EDU_DMA_SRC), src).unwrap();
            a.mov(dword_ptr(esi + EDU_DMA_DST), dst).unwrap();
            a.mov(dword_ptr(esi + EDU_DMA_COUNT), DMA_LEN).unwrap();
            a.mov(dword_ptr(esi + EDU_DMA_CMD), cmd).unwrap();
            rt.wait_until(a, DMA_TIMEOUT_MS, late, |a, ok| {
                a.test(dword_ptr(esi + EDU_DMA_CMD), EDU_DMA_START).unwrap();
                a.jz(ok).unwrap();
            });
            a.jmp(done).unwrap();
            a.here(&mut late);
            rt.fail(a, d, &format!("\npci: DMA {what} never finished\n"));
            a.here(&mut done);
        }
        let mut same = a.create_label();
        a.push(esi).unwrap();
        a.mov(esi, DMA_RAM_SRC).unwrap();
        a.mov(edi, DMA_RAM_DST).unwrap();
        a.mov(ecx, DMA_LEN / 4).unwrap();
        a.repe().cmpsd().unwrap();
        a.mov(eax, esi).unwrap();
        a.pop(esi).unwrap();
        a.je(same).unwrap();
        a.sub(eax, DMA_RAM_SRC + 4).unwrap();
        value_failure(&rt, a, d, "pci: DMA round trip differs at byte 0x", "\n");
        a.here(&mut same);
        rt.print(a, d, ", dma ok");

        // 6a. INTx: PIRQ = (slot + pin - 2) mod 4 (the PIIX3 swizzle) routed to INTX_IRQ, level.
        let mut has_pin = a.create_label();
        cfg_reg(a, PCI_INTERRUPT_LINE);
        rt.pci_read(a);
        a.movzx(ecx, ah).unwrap(); // interrupt pin, 1-4 for INTA-INTD
        a.lea(eax, ptr(ecx - 1)).unwrap();
        a.cmp(eax, 4u32).unwrap();
        a.jb(has_pin).unwrap();
        a.mov(eax, ecx).unwrap();
        value_failure(&rt, a, d, "pci: interrupt pin register reads 0x", "\n");
        a.here(&mut has_pin);
        // Only edu's PIRQ is routed anywhere, whatever firmware left.
        a.mov(eax, PIIX3_PIRQRC).unwrap();
        a.mov(edx, PIRQRC_ALL_DISABLED).unwrap();
        rt.pci_write(a, 4);
        a.mov(eax, dword_ptr(cfg)).unwrap();
        a.shr(eax, 11).unwrap();
        a.lea(eax, ptr(eax + ecx - 2)).unwrap();
        a.and(eax, 3u32).unwrap();
        a.add(eax, PIIX3_PIRQRC).unwrap();
        a.mov(edx, INTX_IRQ as u32).unwrap();
        rt.pci_write(a, 1);
        cfg_reg(a, PCI_INTERRUPT_LINE);
        rt.pci_write(a, 1); // for the record, as firmware does
        rt::set_level_triggered(a, INTX_IRQ);
        let unmasked = (1u16 << 2) | (1u16 << INTX_IRQ);
        rt::init_pics(a, PIC_VECTOR_BASE, !unmasked);
        idt.load(a);
        a.mov(dword_ptr(esi + EDU_IRQ_RAISE), INTX_RAISE).unwrap();
        a.sti().unwrap();
        let mut no_intx = a.create_label();
        let mut intx_once = a.create_label();
        let mut intx_ok = a.create_label();
        rt.wait_until(a, IRQ_TIMEOUT_MS, no_intx, |a, ok| {
            a.cmp(dword_ptr(intx_count), 0).unwrap();
            a.jne(ok).unwrap();
        });
        // A level interrupt acknowledged at the device must not come back after the EOI.
        rt.delay(a, TICKS_10MS);
        a.mov(eax, dword_ptr(intx_count)).unwrap();
        a.cmp(eax, 1u32).unwrap();
        a.je(intx_once).unwrap();
        value_failure(&rt, a, d, "pci: INTx taken 0x", " times for one raise\n");
        a.here(&mut no_intx);
        rt.fail(a, d, &format!("\npci: no INTx on IRQ {INTX_IRQ} (vector {INTX_VECTOR:#x})\n"));
        a.here(&mut intx_once);
        a.mov(eax, dword_ptr(irq_seen)).unwrap();
        a.cmp(eax, INTX_RAISE).unwrap();
        a.je(intx_ok).unwrap();
        value_failure(&rt, a, d, "pci: INTx handler saw interrupt status 0x", &expected(INTX_RAISE));
        a.here(&mut intx_ok);
        rt.print(a, d, ", intx ok");

        // 6b. MSI: find the capability, send vector MSI_VECTOR to APIC ID 0.
        rt::enable_lapic(a);
        let mut has_caps = a.create_label();
        let mut walk = a.create_label();
        let mut no_msi = a.create_label();
        let mut msi_found = a.create_label();
        cfg_reg(a, PCI_COMMAND);
        rt.pci_read(a);
        a.test(eax, PCI_STATUS_CAP_LIST).unwrap();
        a.jnz(has_caps).unwrap();
        rt.fail(a, d, "\npci: edu's status register shows no capability list\n");
        a.here(&mut has_caps);
        cfg_reg(a, PCI_CAP_PTR);
        rt.pci_read(a);
        a.movzx(ebx, al).unwrap();
        a.mov(ecx, CAP_LIST_LIMIT).unwrap();
        a.here(&mut walk);
        a.and(ebx, 0xfcu32).unwrap();
        a.jz(no_msi).unwrap();
        a.mov(eax, dword_ptr(cfg)).unwrap();
        a.or(eax, ebx).unwrap();
        rt.pci_read(a);
        a.cmp(al, PCI_CAP_ID_MSI).unwrap();
        a.je(msi_found).unwrap();
        a.movzx(ebx, ah).unwrap();
        a.dec(ecx).unwrap();
        a.jnz(walk).unwrap();
        a.here(&mut no_msi);
        rt.fail(a, d, "\npci: no MSI capability in edu's list\n");
        // EBX = capability offset, EBP = its message control.
        a.here(&mut msi_found);
        a.mov(ebp, eax).unwrap();
        a.shr(ebp, 16).unwrap();
        a.mov(eax, dword_ptr(cfg)).unwrap();
        a.or(eax, ebx).unwrap();
        a.mov(ebx, eax).unwrap(); // now the capability's configuration address
        a.lea(eax, ptr(ebx + 4)).unwrap();
        a.mov(edx, MSI_ADDRESS).unwrap();
        rt.pci_write(a, 4);
        let mut data32 = a.create_label();
        let mut data_set = a.create_label();
        a.test(ebp, MSI_CTRL_64BIT).unwrap();
        a.jz(data32).unwrap();
        a.lea(eax, ptr(ebx + 8)).unwrap();
        a.xor(edx, edx).unwrap();
        rt.pci_write(a, 4);
        a.lea(eax, ptr(ebx + 12)).unwrap();
        a.jmp(data_set).unwrap();
        a.here(&mut data32);
        a.lea(eax, ptr(ebx + 8)).unwrap();
        a.here(&mut data_set);
        a.mov(edx, MSI_VECTOR).unwrap(); // fixed delivery, edge
        rt.pci_write(a, 2);
        a.lea(eax, ptr(ebx + 2)).unwrap();
        a.mov(edx, ebp).unwrap();
        a.and(edx, !MSI_CTRL_MME).unwrap(); // one vector
        a.or(edx, MSI_CTRL_ENABLE).unwrap();
        rt.pci_write(a, 2);
        a.mov(dword_ptr(esi + EDU_IRQ_RAISE), MSI_RAISE).unwrap();
        let mut no_msi_irq = a.create_label();
        let mut msi_once = a.create_label();
        let mut quiet = a.create_label();
        let mut msi_ok = a.create_label();
        rt.wait_until(a, IRQ_TIMEOUT_MS, no_msi_irq, |a, ok| {
            a.cmp(dword_ptr(msi_count), 0).unwrap();
            a.jne(ok).unwrap();
        });
        rt.delay(a, TICKS_10MS);
        a.mov(eax, dword_ptr(msi_count)).unwrap();
        a.cmp(eax, 1u32).unwrap();
        a.je(msi_once).unwrap();
        value_failure(&rt, a, d, "pci: MSI taken 0x", " times for one raise\n");
        a.here(&mut no_msi_irq);
        rt.fail(a, d, &format!("\npci: no MSI (vector {MSI_VECTOR:#x})\n"));
        a.here(&mut msi_once);
        a.mov(eax, dword_ptr(intx_count)).unwrap();
        a.cmp(eax, 1u32).unwrap();
        a.je(quiet).unwrap();
        value_failure(&rt, a, d, "pci: INTx fired with MSI enabled; INTx count 0x", "\n");
        a.here(&mut quiet);
        a.mov(eax, dword_ptr(irq_seen)).unwrap();
        a.cmp(eax, MSI_RAISE).unwrap();
        a.je(msi_ok).unwrap();
        value_failure(&rt, a, d, "pci: MSI handler saw interrupt status 0x", &expected(MSI_RAISE));
        a.here(&mut msi_ok);
        a.cli().unwrap();
        rt.print(a, d, ", msi ok\n");
        exit(a, EXIT_OK);

        // The interrupt handler: [ESP] = vector, then (after PUSHAD) at [ESP + 32].
        let mut is_intx = a.create_label();
        let mut is_msi = a.create_label();
        let mut slave_spurious = a.create_label();
        let mut out = a.create_label();
        let mut ack = a.create_label();
        let mut storm = a.create_label();
        a.here(&mut handler);
        a.pushad().unwrap();
        a.mov(eax, dword_ptr(esp + 32)).unwrap();
        a.cmp(eax, INTX_VECTOR).unwrap();
        a.je(is_intx).unwrap();
        a.cmp(eax, MSI_VECTOR).unwrap();
        a.je(is_msi).unwrap();
        a.cmp(eax, rt::LAPIC_SPURIOUS_VECTOR).unwrap();
        a.je(out).unwrap(); // no EOI for spurious interrupts
        a.cmp(eax, PIC_SPURIOUS_MASTER).unwrap();
        a.je(out).unwrap();
        a.cmp(eax, PIC_SPURIOUS_SLAVE).unwrap();
        a.je(slave_spurious).unwrap();
        rt.print(a, d, "\npci: unexpected interrupt or exception, vector 0x");
        rt.print_hex2(a);
        rt.print(a, d, ", next on the stack 0x");
        a.mov(eax, dword_ptr(esp + 36)).unwrap();
        rt.print_hex(a);
        rt.print(a, d, " 0x");
        a.mov(eax, dword_ptr(esp + 40)).unwrap();
        rt.print_hex(a);
        rt.fail(a, d, "\n");
        a.here(&mut is_intx);
        a.inc(dword_ptr(intx_count)).unwrap();
        a.cmp(dword_ptr(intx_count), STORM_LIMIT).unwrap();
        a.jae(storm).unwrap();
        a.call(ack).unwrap();
        rt::pic_eoi(a, INTX_IRQ);
        a.jmp(out).unwrap();
        a.here(&mut is_msi);
        a.inc(dword_ptr(msi_count)).unwrap();
        a.cmp(dword_ptr(msi_count), STORM_LIMIT).unwrap();
        a.jae(storm).unwrap();
        a.call(ack).unwrap();
        rt::lapic_eoi(a);
        a.jmp(out).unwrap();
        a.here(&mut slave_spurious);
        rt::pic_eoi(a, 0); // the master saw IRQ 2
        a.here(&mut out);
        a.popad().unwrap();
        Idt::iret(a);
        a.here(&mut storm);
        rt.print(a, d, "\npci: interrupt storm on vector 0x");
        a.mov(eax, dword_ptr(esp + 32)).unwrap();
        rt.print_hex2(a);
        rt.fail(a, d, &format!(", {STORM_LIMIT} interrupts without getting back to the kernel\n"));
        // ack: acknowledges (and records) whatever edu's interrupt status holds.
        a.here(&mut ack);
        a.mov(ebx, dword_ptr(bar)).unwrap();
        a.mov(eax, dword_ptr(ebx + EDU_IRQ_STATUS)).unwrap();
        a.mov(dword_ptr(irq_seen), eax).unwrap();
        a.mov(dword_ptr(ebx + EDU_IRQ_ACK), eax).unwrap();
        a.ret().unwrap();

        idt.emit_stubs(a, "irq_handler");
        rt.emit(a, d);
    })
}

/// Prints "pci: BAR0 (reads 0x<ESI>) <what>" on a line of its own and fails.
fn bar_failure(rt: &Rt, a: &mut super::Asm, d: &mut super::Data, what: &str) {
    rt.print(a, d, "\npci: BAR0 (reads 0x");
    a.mov(eax, esi).unwrap();
    rt.print_hex(a);
    rt.fail(a, d, &format!(") {what}\n"));
}

/// Prints `before`, EAX in hex and `after` on a line of its own, and fails.
fn value_failure(rt: &Rt, a: &mut super::Asm, d: &mut super::Data, before: &str, after: &str) {
    rt.print(a, d, &format!("\n{before}"));
    rt.print_hex(a);
    rt.fail(a, d, after);
}

/// The end of a [`value_failure`] line naming the value expected.
fn expected(v: u32) -> String {
    format!(", expected 0x{v:08x}\n")
}
