//! Interrupt-controller test kernel: a level-triggered IOAPIC input that is still asserted
//! when the handler signals EOI is sent again (82093AA datasheet 3.2.4, remote IRR), and stops
//! once the source is quiet. The source is COM1's THR-empty interrupt (16550 datasheet table
//! IV: raised while IER.ETBEI is set and THR is empty, cleared by reading IIR), on IOAPIC pin
//! 4 as the MADT describes ISA IRQ 4.

use super::rt::{self, Idt, Rt, TICKS_10MS};
use super::{exit, multiboot_kernel, COM1, EXIT_OK};
use iced_x86::code_asm::*;

const IOAPIC_REGSEL: u32 = 0xfec0_0000;
const IOAPIC_WINDOW: u32 = 0xfec0_0010;
/// COM1's ISA IRQ, identity-mapped to an IOAPIC pin.
const UART_PIN: u32 = 4;
const VECTOR: u32 = 0x44;
/// Redirection entry bit 15: level-triggered; fixed delivery, physical destination APIC 0.
const RTE_LEVEL: u32 = 1 << 15;
const RTE_MASKED: u32 = 1 << 16;
const UART_IER: u16 = COM1 + 1;
const UART_IIR: u16 = COM1 + 2;
const IER_THRE: u32 = 0x02;
/// Deliveries before the handler quiets the source: the first EOI is signalled with the line
/// still asserted.
const DELIVERIES: u32 = 2;
const STORM_LIMIT: u32 = 100;

/// The line the kernel prints on success.
pub const IOAPIC_LEVEL_LINE: &str = "ioapic: level interrupt sent again after EOI while asserted, then quiet\n";

/// Programs the IOAPIC entry, enables COM1's THR-empty interrupt and counts deliveries:
/// exactly [`DELIVERIES`], then none for 10 ms.
pub fn ioapic_level() -> Vec<u8> {
    multiboot_kernel(|a, d| {
        let rt = Rt::new(a, d);
        let idt = Idt::new(d);
        let count = d.var();
        let mut handler = a.named_label("irq_handler");
        rt.bsp_entry(a);
        rt::init_pics(a, 0x20, 0xffff); // every PIC input masked: the IOAPIC alone delivers
        rt::enable_lapic(a);
        idt.load(a);
        let rte = |a: &mut CodeAssembler, index: u32, value: u32| {
            a.mov(dword_ptr(IOAPIC_REGSEL), index).unwrap();
            a.mov(dword_ptr(IOAPIC_WINDOW), value).unwrap();
        };
        rte(a, 0x11 + 2 * UART_PIN, 0); // destination APIC ID 0
        rte(a, 0x10 + 2 * UART_PIN, VECTOR | RTE_LEVEL);
        a.mov(al, IER_THRE).unwrap();
        a.mov(dx, UART_IER as u32).unwrap();
        a.out(dx, al).unwrap();
        a.sti().unwrap();
        let mut timeout = a.create_label();
        let mut counted = a.create_label();
        rt.wait_until(a, 1_000, timeout, |a, ok| {
            a.cmp(dword_ptr(count), DELIVERIES).unwrap();
            a.jae(ok).unwrap();
        });
        rt.delay(a, TICKS_10MS);
        a.cli().unwrap();
        a.mov(eax, dword_ptr(count)).unwrap();
        a.cmp(eax, DELIVERIES).unwrap();
        a.je(counted).unwrap();
        a.here(&mut timeout);
        a.cli().unwrap();
        a.mov(eax, dword_ptr(count)).unwrap();
        rt.print(a, d, "ioapic: level interrupt delivered 0x");
        rt.print_hex(a);
        rt.fail(a, d, &format!(" times, expected {DELIVERIES}\n"));
        a.here(&mut counted);
        rte(a, 0x10 + 2 * UART_PIN, RTE_MASKED);
        rt.print(a, d, IOAPIC_LEVEL_LINE);
        exit(a, EXIT_OK);

        // The handler: [ESP] = vector, after PUSHAD at [ESP + 32].
        let mut ours = a.create_label();
        let mut eoi = a.create_label();
        let mut out = a.create_label();
        a.here(&mut handler);
        a.pushad().unwrap();
        a.mov(eax, dword_ptr(esp + 32)).unwrap();
        a.cmp(eax, VECTOR).unwrap();
        a.je(ours).unwrap();
        a.cmp(eax, rt::LAPIC_SPURIOUS_VECTOR).unwrap();
        a.je(out).unwrap();
        rt.print(a, d, "\nioapic: unexpected interrupt or exception, vector 0x");
        rt.print_hex2(a);
        rt.fail(a, d, "\n");
        a.here(&mut ours);
        a.inc(dword_ptr(count)).unwrap();
        a.mov(eax, dword_ptr(count)).unwrap();
        a.cmp(eax, STORM_LIMIT).unwrap();
        a.jb(eoi).unwrap();
        a.mov(al, 0u32).unwrap();
        a.mov(dx, UART_IER as u32).unwrap();
        a.out(dx, al).unwrap();
        rt.fail(a, d, "\nioapic: interrupt storm: the level line never went quiet\n");
        a.here(&mut eoi);
        a.cmp(eax, DELIVERIES).unwrap();
        let mut asserted = a.create_label();
        a.jb(asserted).unwrap();
        // Quiet the source: reading IIR clears THR-empty; ETBEI off keeps it quiet.
        a.mov(dx, UART_IIR as u32).unwrap();
        a.in_(al, dx).unwrap();
        a.mov(al, 0u32).unwrap();
        a.mov(dx, UART_IER as u32).unwrap();
        a.out(dx, al).unwrap();
        a.here(&mut asserted);
        rt::lapic_eoi(a);
        a.here(&mut out);
        a.popad().unwrap();
        Idt::iret(a);

        idt.emit_stubs(a, "irq_handler");
        rt.emit(a, d);
    })
}
