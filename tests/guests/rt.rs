//! A tiny runtime for the test kernels: COM1 output, PIT-timed delays and timeouts, the flat GDT,
//! finding the CPUs in the ACPI MADT and starting the APs with INIT-SIPI-SIPI, PCI configuration
//! access, and for kernels that take interrupts an IDT and the 8259 pair's set-up.
//!
//! Conventions: subroutines preserve every register they do not return in; the direction flag is
//! clear; interrupts stay disabled (all waiting is polling) unless a kernel loads an [`Idt`].

use super::{exit, Asm, Data, COM1, EXIT_FAIL};
use iced_x86::code_asm::*;

/// Local APIC registers in xAPIC mode (Intel SDM Vol. 3A §10.4.1 "The Local APIC Block Diagram",
/// table 10-1). Section numbers are those of SDM editions with the APIC in chapter 10 and MP
/// initialization in chapter 8; the titles find them in later editions.
pub const LAPIC_BASE: u32 = 0xfee0_0000;
/// Local APIC ID register; the ID is in bits 31:24 (§10.4.6 "Local APIC ID").
pub const LAPIC_ID: u32 = LAPIC_BASE + 0x20;
/// Task priority register (§10.8.3.1 "Task and Processor Priorities"): 0 accepts every vector.
pub const LAPIC_TPR: u32 = LAPIC_BASE + 0x80;
/// End-of-interrupt register: any write ends the in-service interrupt (§10.8.5 "Signaling
/// Interrupt Servicing Completion").
pub const LAPIC_EOI: u32 = LAPIC_BASE + 0xb0;
/// Spurious-interrupt vector register; bit 8 software-enables the APIC (§10.9 "Spurious Interrupt").
pub const LAPIC_SVR: u32 = LAPIC_BASE + 0xf0;
const SVR_ENABLE_VECTOR_FF: u32 = 0x1ff;
/// The spurious vector [`enable_lapic`] programs.
pub const LAPIC_SPURIOUS_VECTOR: u32 = 0xff;
/// Interrupt command register, low and high halves (§10.6.1 "Interrupt Command Register (ICR)").
const LAPIC_ICR_LOW: u32 = LAPIC_BASE + 0x300;
const LAPIC_ICR_HIGH: u32 = LAPIC_BASE + 0x310;
/// ICR delivery status: set while the IPI is still being sent.
const ICR_SEND_PENDING: u32 = 1 << 12;
/// ICR low: delivery mode INIT (101b) with level assert, physical destination, no shorthand.
const ICR_INIT: u32 = 0x0000_4500;
/// ICR low: delivery mode start-up (110b) with level assert; the vector goes in bits 7:0.
const ICR_STARTUP: u32 = 0x0000_4600;
/// Polls of the ICR before giving up on the delivery status.
const ICR_POLL_LIMIT: u32 = 1_000_000;

/// 8254 PIT channel 2, whose gate and output sit in port 0x61 (the PC's "port B").
const PIT_CH2_DATA: u16 = 0x42;
const PIT_COMMAND: u16 = 0x43;
/// Control word: channel 2, low byte then high byte, mode 0 (interrupt on terminal count), binary.
const PIT_CH2_ONE_SHOT: u32 = 0xb0;
const PORT_B: u16 = 0x61;
const PORT_B_GATE2: u32 = 1 << 0;
const PORT_B_SPEAKER: u32 = 1 << 1;
const PORT_B_OUT2: u32 = 1 << 5;
/// PIT input clock ticks (1.193182 MHz) in 10 ms and in 200 µs.
pub const TICKS_10MS: u32 = 11_932;
pub const TICKS_200US: u32 = 239;

/// Flat 4 GiB code (0x08) and data (0x10) segments (SDM Vol. 3A §3.4.5 "Segment Descriptors").
const GDT: [u64; 3] = [0, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
const CODE_SELECTOR: u32 = 0x08;
const DATA_SELECTOR: u32 = 0x10;

/// Where the AP start-up code is copied: a page below 1 MiB, named by the SIPI vector.
pub const TRAMPOLINE: u32 = 0x8000;
const SIPI_VECTOR: u32 = TRAMPOLINE >> 12;
/// Layout of the trampoline page: 16-bit code at 0, 32-bit code, then GDTR and GDT.
const TRAMPOLINE_PM32: u32 = 0x40;
const TRAMPOLINE_GDTR: u32 = 0x70;
const TRAMPOLINE_GDT: u32 = 0x80;
const TRAMPOLINE_SIZE: u32 = TRAMPOLINE_GDT + 8 * GDT.len() as u32;

/// Per-CPU stacks: slot 0 for the BSP, slot `id + 1` for the CPU with APIC ID `id`.
pub const STACKS: u32 = 0x20_0000;
const STACK_SIZE: u32 = 0x1000;
const BSP_STACK_TOP: u32 = STACKS + STACK_SIZE;
/// CPUs the runtime handles (APIC IDs 0..MAX_CPUS); APs with a larger ID park.
pub const MAX_CPUS: u32 = 16;

/// ACPI structures (ACPI 6.5 §5.2.5.3 RSDP, §5.2.7 RSDT, §5.2.12 MADT).
const BIOS_AREA: u32 = 0xe_0000;
const BIOS_AREA_END: u32 = 0x10_0000;
const RSDP_CHECKSUMMED_LEN: u32 = 20;
const RSDP_RSDT_ADDRESS: u32 = 16;
const SDT_LENGTH: u32 = 4;
const SDT_HEADER_LEN: u32 = 36;
const MADT_ENTRIES: u32 = 44;
const MADT_LOCAL_APIC: u32 = 0;
const MADT_LAPIC_ID: u32 = 3;
const MADT_LAPIC_FLAGS: u32 = 4;
const MADT_LAPIC_ENABLED: u32 = 1;

/// PCI configuration mechanism #1 (PCI Local Bus Specification 3.0 §3.2.2.3.2): the address
/// (bit 31 enable, bus 23:16, device 15:11, function 10:8, dword-aligned register 7:2) goes to
/// 0xCF8, the data moves through 0xCFC-0xCFF. The routines below take the address without the
/// enable bit; its low two bits pick the byte lane.
const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
const PCI_CONFIG_DATA: u16 = 0xcfc;
const PCI_CONFIG_ENABLE: u32 = 1 << 31;

/// The 8259A pair (8259A datasheet, "Programming the 8259A"): command and data ports.
const PIC_MASTER_CMD: u16 = 0x20;
const PIC_MASTER_DATA: u16 = 0x21;
const PIC_SLAVE_CMD: u16 = 0xa0;
const PIC_SLAVE_DATA: u16 = 0xa1;
/// ICW1: ICW4 needed, cascade mode, edge-triggered (the ELCR decides per input on a PIIX).
const PIC_ICW1: u32 = 0x11;
/// ICW3: the slave hangs off master input 2, and has cascade identity 2.
const PIC_ICW3_MASTER: u32 = 1 << 2;
const PIC_ICW3_SLAVE: u32 = 2;
/// ICW4: 8086 mode, normal EOI.
const PIC_ICW4: u32 = 0x01;
/// OCW2: non-specific EOI.
const PIC_EOI: u32 = 0x20;
/// Edge/level control registers of the PIIX (82371SB datasheet §4.1.2 "ELCR1/ELCR2"): bit n of
/// 0x4D0 makes IRQ n level-triggered, 0x4D1 covers IRQ 8-15.
const ELCR: u16 = 0x4d0;

/// An IDT stub: `push imm32` (5 bytes) and `jmp rel32` (5 bytes).
const IDT_STUB_SIZE: u32 = 10;
/// 32-bit interrupt gate, present, DPL 0 (SDM Vol. 3A §6.11 "IDT Descriptors").
const IDT_INTERRUPT_GATE: u32 = 0x8e00;
const IDT_VECTORS: u32 = 256;

/// How long the BSP waits for a started AP to report in.
const AP_START_TIMEOUT_MS: u32 = 2_000;

fn sig(s: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*s)
}

/// Routine labels and the variables the runtime keeps.
pub struct Rt {
    print_label: CodeLabel,
    print_hex_label: CodeLabel,
    print_hex2_label: CodeLabel,
    print_dec_label: CodeLabel,
    pci_read_label: CodeLabel,
    pci_write_label: CodeLabel,
    timer_start: CodeLabel,
    timer_wait: CodeLabel,
    find_cpus: CodeLabel,
    send_ipi: CodeLabel,
    start_ap: CodeLabel,
    /// Number of enabled processors in the MADT (BSP included).
    pub cpu_count: u32,
    /// Their APIC IDs, one byte each, in MADT order.
    pub cpu_ids: u32,
    /// The BSP's APIC ID.
    pub bsp_id: u32,
    /// APs that reached 32-bit code.
    pub started: u32,
    /// Bit `id` set by the CPU with APIC ID `id` once running (the BSP included).
    pub seen: u32,
    gdtr: u32,
    trampoline: u32,
}

impl Rt {
    pub fn new(a: &mut Asm, d: &mut Data) -> Rt {
        let gdt: Vec<u8> = GDT.iter().flat_map(|e| e.to_le_bytes()).collect();
        let gdt_addr = d.bytes(&gdt, 8);
        let mut gdtr = ((gdt.len() - 1) as u16).to_le_bytes().to_vec();
        gdtr.extend_from_slice(&gdt_addr.to_le_bytes());
        Rt {
            print_label: a.create_label(),
            print_hex_label: a.create_label(),
            print_hex2_label: a.create_label(),
            print_dec_label: a.create_label(),
            pci_read_label: a.create_label(),
            pci_write_label: a.create_label(),
            timer_start: a.create_label(),
            timer_wait: a.create_label(),
            find_cpus: a.create_label(),
            send_ipi: a.create_label(),
            start_ap: a.create_label(),
            cpu_count: d.var(),
            cpu_ids: d.zeroed(MAX_CPUS, 4),
            bsp_id: d.var(),
            started: d.var(),
            seen: d.var(),
            gdtr: d.bytes(&gdtr, 8),
            // Filled by `emit`, once the AP entry point is known.
            trampoline: d.zeroed(TRAMPOLINE_SIZE, 16),
        }
    }

    /// Prints `s` on COM1.
    pub fn print(&self, a: &mut Asm, d: &mut Data, s: &str) {
        a.push(esi).unwrap();
        a.mov(esi, d.cstr(s)).unwrap();
        a.call(self.print_label).unwrap();
        a.pop(esi).unwrap();
    }

    /// Prints EAX as 8 hex digits.
    pub fn print_hex(&self, a: &mut Asm) {
        a.call(self.print_hex_label).unwrap();
    }

    /// Prints AL as 2 hex digits.
    pub fn print_hex2(&self, a: &mut Asm) {
        a.call(self.print_hex2_label).unwrap();
    }

    /// Prints EAX in decimal.
    pub fn print_dec(&self, a: &mut Asm) {
        a.call(self.print_dec_label).unwrap();
    }

    /// Reads the configuration dword holding the register EAX addresses (mechanism #1 address
    /// without the enable bit: bus << 16 | device << 11 | function << 8 | register) into EAX.
    pub fn pci_read(&self, a: &mut Asm) {
        a.call(self.pci_read_label).unwrap();
    }

    /// Scans every device and function of bus 0 for the first configuration dword
    /// `vendor_device` (device ID << 16 | vendor ID); leaves its configuration address in EBX,
    /// or fails with `missing`.
    pub fn pci_find(&self, a: &mut Asm, d: &mut Data, vendor_device: u32, missing: &str) {
        let mut scan = a.create_label();
        let mut found = a.create_label();
        a.xor(ebx, ebx).unwrap();
        a.here(&mut scan);
        a.mov(eax, ebx).unwrap();
        self.pci_read(a);
        a.cmp(eax, vendor_device).unwrap();
        a.je(found).unwrap();
        a.add(ebx, 0x100u32).unwrap();
        a.cmp(ebx, 0x1_0000u32).unwrap();
        a.jb(scan).unwrap();
        self.fail(a, d, missing);
        a.here(&mut found);
    }

    /// Writes EDX to the configuration register EAX addresses, `size` (1, 2 or 4) bytes wide
    /// from the byte EAX's low bits select (which must not cross the dword).
    pub fn pci_write(&self, a: &mut Asm, size: u32) {
        assert!(matches!(size, 1 | 2 | 4));
        a.push(ecx).unwrap();
        a.mov(ecx, size).unwrap();
        a.call(self.pci_write_label).unwrap();
        a.pop(ecx).unwrap();
    }

    /// Busy-waits `ticks` of the PIT's 1.193182 MHz clock (at most 0xFFFF).
    pub fn delay(&self, a: &mut Asm, ticks: u32) {
        assert!(ticks <= 0xffff);
        a.push(ecx).unwrap();
        a.mov(ecx, ticks).unwrap();
        a.call(self.timer_start).unwrap();
        a.call(self.timer_wait).unwrap();
        a.pop(ecx).unwrap();
    }

    /// Prints `msg` and exits with [`EXIT_FAIL`].
    pub fn fail(&self, a: &mut Asm, d: &mut Data, msg: &str) {
        self.print(a, d, msg);
        exit(a, EXIT_FAIL);
    }

    /// BSP entry: flat segments from our own GDT (multiboot leaves GDTR undefined), the BSP
    /// stack, DF clear. Sets the label `start`.
    pub fn bsp_entry(&self, a: &mut Asm) {
        let mut start = a.named_label("start");
        let mut flat = a.named_label("bsp_flat_cs");
        a.here(&mut start);
        super::check_multiboot_magic(a);
        a.lgdt(ptr(self.gdtr)).unwrap();
        let target = a.addr("bsp_flat_cs");
        a.jmp_far(CODE_SELECTOR as u16, target).unwrap();
        a.here(&mut flat);
        load_data_segments(a);
        a.mov(esp, BSP_STACK_TOP).unwrap();
        a.cld().unwrap();
    }

    /// AP entry (the trampoline jumps here): per-CPU stack from the APIC ID, which it leaves in
    /// EBX, then marks itself seen and started. Sets the label `ap_entry`.
    pub fn ap_entry(&self, a: &mut Asm) {
        let mut entry = a.named_label("ap_entry");
        let mut park = a.create_label();
        let mut run = a.create_label();
        a.here(&mut entry);
        a.mov(eax, dword_ptr(LAPIC_ID)).unwrap();
        a.shr(eax, 24).unwrap();
        a.cmp(eax, MAX_CPUS).unwrap();
        a.jb(run).unwrap();
        a.here(&mut park);
        a.cli().unwrap();
        a.hlt().unwrap();
        a.jmp(park).unwrap();
        a.here(&mut run);
        a.mov(ebx, eax).unwrap();
        a.mov(esp, eax).unwrap();
        a.shl(esp, STACK_SIZE.trailing_zeros()).unwrap();
        a.add(esp, STACKS + 2 * STACK_SIZE).unwrap(); // top of slot id + 1
        a.cld().unwrap();
        a.lock().bts(dword_ptr(self.seen), ebx).unwrap();
        a.lock().inc(dword_ptr(self.started)).unwrap();
    }

    /// BSP: enables its local APIC, installs the trampoline, reads the CPUs from the MADT and
    /// starts every other one in turn, waiting for each to report in (fails otherwise).
    pub fn start_aps(&self, a: &mut Asm, d: &mut Data) {
        let mut next = a.create_label();
        let mut skip = a.create_label();
        let mut all = a.create_label();
        let mut late = a.create_label();
        a.mov(dword_ptr(LAPIC_SVR), SVR_ENABLE_VECTOR_FF).unwrap();
        a.mov(esi, self.trampoline).unwrap();
        a.mov(edi, TRAMPOLINE).unwrap();
        a.mov(ecx, TRAMPOLINE_SIZE).unwrap();
        a.rep().movsb().unwrap();
        a.call(self.find_cpus).unwrap();
        a.mov(eax, dword_ptr(LAPIC_ID)).unwrap();
        a.shr(eax, 24).unwrap();
        a.mov(dword_ptr(self.bsp_id), eax).unwrap();
        a.lock().bts(dword_ptr(self.seen), eax).unwrap();
        a.xor(ebx, ebx).unwrap(); // index into cpu_ids
        a.here(&mut next);
        a.cmp(ebx, dword_ptr(self.cpu_count)).unwrap();
        a.jae(all).unwrap();
        a.movzx(eax, byte_ptr(ebx + self.cpu_ids)).unwrap();
        a.cmp(eax, dword_ptr(self.bsp_id)).unwrap();
        a.je(skip).unwrap();
        a.mov(ebp, dword_ptr(self.started)).unwrap();
        a.inc(ebp).unwrap();
        a.call(self.start_ap).unwrap();
        self.wait_until(a, AP_START_TIMEOUT_MS, late, |a, done| {
            a.cmp(dword_ptr(self.started), ebp).unwrap();
            a.jae(done).unwrap();
        });
        a.here(&mut skip);
        a.inc(ebx).unwrap();
        a.jmp(next).unwrap();
        a.here(&mut late);
        self.print(a, d, "smp: cpu with APIC ID ");
        a.movzx(eax, byte_ptr(ebx + self.cpu_ids)).unwrap();
        self.print_dec(a);
        self.fail(a, d, " did not start\n");
        a.here(&mut all);
    }

    /// Emits `body` once per AP in the MADT, with its APIC ID in ESI. `body` must preserve EBX.
    pub fn for_each_ap(&self, a: &mut Asm, body: impl FnOnce(&mut Asm)) {
        let mut next = a.create_label();
        let mut skip = a.create_label();
        let mut all = a.create_label();
        a.xor(ebx, ebx).unwrap();
        a.here(&mut next);
        a.cmp(ebx, dword_ptr(self.cpu_count)).unwrap();
        a.jae(all).unwrap();
        a.movzx(esi, byte_ptr(ebx + self.cpu_ids)).unwrap();
        a.cmp(esi, dword_ptr(self.bsp_id)).unwrap();
        a.je(skip).unwrap();
        body(a);
        a.here(&mut skip);
        a.inc(ebx).unwrap();
        a.jmp(next).unwrap();
        a.here(&mut all);
    }

    /// Fails unless exactly the MADT's APs started, each once, and every CPU saw its own APIC
    /// ID (a second SIPI restarting an AP, or a LAPIC page shared between CPUs, shows up here).
    pub fn check_started(&self, a: &mut Asm, d: &mut Data) {
        let mut ids = a.create_label();
        let mut ids_done = a.create_label();
        let mut count_ok = a.create_label();
        let mut seen_ok = a.create_label();
        a.mov(eax, dword_ptr(self.cpu_count)).unwrap();
        a.dec(eax).unwrap();
        a.cmp(dword_ptr(self.started), eax).unwrap();
        a.je(count_ok).unwrap();
        self.print(a, d, "smp: ");
        a.mov(eax, dword_ptr(self.started)).unwrap();
        self.print_dec(a);
        self.print(a, d, " AP starts for ");
        a.mov(eax, dword_ptr(self.cpu_count)).unwrap();
        self.print_dec(a);
        self.fail(a, d, " cpus\n");
        a.here(&mut count_ok);
        // The bitmap the MADT predicts.
        a.xor(edx, edx).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.here(&mut ids);
        a.cmp(ecx, dword_ptr(self.cpu_count)).unwrap();
        a.jae(ids_done).unwrap();
        a.movzx(eax, byte_ptr(ecx + self.cpu_ids)).unwrap();
        a.bts(edx, eax).unwrap();
        a.inc(ecx).unwrap();
        a.jmp(ids).unwrap();
        a.here(&mut ids_done);
        a.cmp(dword_ptr(self.seen), edx).unwrap();
        a.je(seen_ok).unwrap();
        self.print(a, d, "smp: APIC IDs seen 0x");
        a.mov(eax, dword_ptr(self.seen)).unwrap();
        self.print_hex(a);
        self.print(a, d, ", MADT lists 0x");
        a.mov(eax, edx).unwrap();
        self.print_hex(a);
        self.fail(a, d, "\n");
        a.here(&mut seen_ok);
    }

    /// Polls `check` (which jumps to the label it is given once satisfied, and may clobber EAX,
    /// ECX and EDX) for up to `timeout_ms` of PIT time, then jumps to `timeout`. Clobbers EDI.
    pub fn wait_until(&self, a: &mut Asm, timeout_ms: u32, timeout: CodeLabel, check: impl FnOnce(&mut Asm, CodeLabel)) {
        let mut again = a.create_label();
        let mut done = a.create_label();
        a.mov(edi, timeout_ms.div_ceil(10)).unwrap();
        a.push(ecx).unwrap();
        a.mov(ecx, TICKS_10MS).unwrap();
        a.call(self.timer_start).unwrap();
        a.pop(ecx).unwrap();
        a.here(&mut again);
        check(a, done);
        a.pause().unwrap();
        a.in_(al, PORT_B as u32).unwrap();
        a.test(al, PORT_B_OUT2).unwrap();
        a.jz(again).unwrap();
        a.push(ecx).unwrap();
        a.mov(ecx, TICKS_10MS).unwrap();
        a.call(self.timer_start).unwrap();
        a.pop(ecx).unwrap();
        a.dec(edi).unwrap();
        a.jnz(again).unwrap();
        a.jmp(timeout).unwrap();
        a.here(&mut done);
    }

    /// Emits the subroutines and the trampoline (call once, after the code that uses them).
    pub fn emit(&self, a: &mut Asm, d: &mut Data) {
        d.patch(self.trampoline, &trampoline(a.addr("ap_entry")));
        self.emit_print(a);
        self.emit_timer(a);
        self.emit_find_cpus(a, d);
        self.emit_ipi(a, d);
        self.emit_pci(a);
    }

    fn emit_pci(&self, a: &mut Asm) {
        // pci_read: EAX = address → EAX = the dword.
        let mut l = self.pci_read_label;
        a.here(&mut l);
        a.push(edx).unwrap();
        a.and(eax, !3u32).unwrap();
        a.or(eax, PCI_CONFIG_ENABLE).unwrap();
        a.mov(dx, PCI_CONFIG_ADDRESS as u32).unwrap();
        a.out(dx, eax).unwrap();
        a.mov(dx, PCI_CONFIG_DATA as u32).unwrap();
        a.in_(eax, dx).unwrap();
        a.pop(edx).unwrap();
        a.ret().unwrap();

        // pci_write: EAX = address, EDX = value, ECX = size; the byte lane is 0xCFC + (EAX & 3).
        let mut l = self.pci_write_label;
        let mut word = a.create_label();
        let mut dword = a.create_label();
        let mut done = a.create_label();
        a.here(&mut l);
        a.pushad().unwrap();
        a.mov(ebx, eax).unwrap();
        a.mov(esi, edx).unwrap();
        a.and(eax, !3u32).unwrap();
        a.or(eax, PCI_CONFIG_ENABLE).unwrap();
        a.mov(dx, PCI_CONFIG_ADDRESS as u32).unwrap();
        a.out(dx, eax).unwrap();
        a.and(ebx, 3u32).unwrap();
        a.lea(edx, ptr(ebx + PCI_CONFIG_DATA as u32)).unwrap();
        a.mov(eax, esi).unwrap();
        a.cmp(ecx, 2u32).unwrap();
        a.je(word).unwrap();
        a.ja(dword).unwrap();
        a.out(dx, al).unwrap();
        a.jmp(done).unwrap();
        a.here(&mut word);
        a.out(dx, ax).unwrap();
        a.jmp(done).unwrap();
        a.here(&mut dword);
        a.out(dx, eax).unwrap();
        a.here(&mut done);
        a.popad().unwrap();
        a.ret().unwrap();
    }

    fn emit_print(&self, a: &mut Asm) {
        // print: ESI = NUL-terminated string.
        let mut l = self.print_label;
        let mut next = a.create_label();
        let mut end = a.create_label();
        a.here(&mut l);
        a.pushad().unwrap();
        a.mov(dx, COM1 as u32).unwrap();
        a.here(&mut next);
        a.lodsb().unwrap();
        a.test(al, al).unwrap();
        a.jz(end).unwrap();
        a.out(dx, al).unwrap();
        a.jmp(next).unwrap();
        a.here(&mut end);
        a.popad().unwrap();
        a.ret().unwrap();

        // print_hex: EAX, most significant digit first.
        let mut l = self.print_hex_label;
        let mut digits = a.create_label();
        let mut digit = a.create_label();
        let mut decimal = a.create_label();
        a.here(&mut l);
        a.pushad().unwrap();
        a.mov(ebx, eax).unwrap();
        a.mov(ecx, 8u32).unwrap();
        a.jmp(digits).unwrap();
        // print_hex2: AL, the same loop over the top two digits of EBX.
        let mut l = self.print_hex2_label;
        a.here(&mut l);
        a.pushad().unwrap();
        a.mov(ebx, eax).unwrap();
        a.shl(ebx, 24).unwrap();
        a.mov(ecx, 2u32).unwrap();
        a.here(&mut digits);
        a.mov(dx, COM1 as u32).unwrap();
        a.here(&mut digit);
        a.rol(ebx, 4).unwrap();
        a.mov(al, bl).unwrap();
        a.and(al, 0xfu32).unwrap();
        a.add(al, b'0' as u32).unwrap();
        a.cmp(al, b'9' as u32).unwrap();
        a.jbe(decimal).unwrap();
        a.add(al, (b'a' - b'9' - 1) as u32).unwrap();
        a.here(&mut decimal);
        a.out(dx, al).unwrap();
        a.dec(ecx).unwrap();
        a.jnz(digit).unwrap();
        a.popad().unwrap();
        a.ret().unwrap();

        // print_dec: EAX, unsigned; digits are pushed least significant first.
        let mut l = self.print_dec_label;
        let mut split = a.create_label();
        let mut out = a.create_label();
        a.here(&mut l);
        a.pushad().unwrap();
        a.mov(ebx, 10u32).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.here(&mut split);
        a.xor(edx, edx).unwrap();
        a.div(ebx).unwrap();
        a.push(edx).unwrap();
        a.inc(ecx).unwrap();
        a.test(eax, eax).unwrap();
        a.jnz(split).unwrap();
        a.mov(dx, COM1 as u32).unwrap();
        a.here(&mut out);
        a.pop(eax).unwrap();
        a.add(al, b'0' as u32).unwrap();
        a.out(dx, al).unwrap();
        a.dec(ecx).unwrap();
        a.jnz(out).unwrap();
        a.popad().unwrap();
        a.ret().unwrap();
    }

    fn emit_timer(&self, a: &mut Asm) {
        // timer_start: ECX = ticks (at most 0xFFFF); PIT channel 2 one-shot, OUT2 rises at the end.
        let mut l = self.timer_start;
        a.here(&mut l);
        a.push(eax).unwrap();
        a.in_(al, PORT_B as u32).unwrap();
        a.and(al, !(PORT_B_GATE2 | PORT_B_SPEAKER) & 0xff).unwrap();
        a.or(al, PORT_B_GATE2).unwrap(); // count, but keep the speaker off
        a.out(PORT_B as u32, al).unwrap();
        a.mov(al, PIT_CH2_ONE_SHOT).unwrap();
        a.out(PIT_COMMAND as u32, al).unwrap();
        a.mov(al, cl).unwrap();
        a.out(PIT_CH2_DATA as u32, al).unwrap();
        a.mov(al, ch).unwrap();
        a.out(PIT_CH2_DATA as u32, al).unwrap();
        a.pop(eax).unwrap();
        a.ret().unwrap();

        // timer_wait: until the one-shot started by timer_start ends.
        let mut l = self.timer_wait;
        let mut poll = a.create_label();
        a.here(&mut l);
        a.push(eax).unwrap();
        a.here(&mut poll);
        a.in_(al, PORT_B as u32).unwrap();
        a.test(al, PORT_B_OUT2).unwrap();
        a.jz(poll).unwrap();
        a.pop(eax).unwrap();
        a.ret().unwrap();
    }

    /// find_cpus: the RSDP in the BIOS area (16-byte aligned, checksummed), its RSDT, the
    /// MADT, and every enabled Processor Local APIC entry into cpu_ids/cpu_count.
    fn emit_find_cpus(&self, a: &mut Asm, d: &mut Data) {
        let mut l = self.find_cpus;
        let mut scan = a.create_label();
        let mut next = a.create_label();
        let mut sum = a.create_label();
        let mut no_rsdp = a.create_label();
        let mut tables = a.create_label();
        let mut no_madt = a.create_label();
        let mut madt = a.create_label();
        let mut entry = a.create_label();
        let mut skip = a.create_label();
        let mut end = a.create_label();
        a.here(&mut l);
        a.pushad().unwrap();
        a.mov(esi, BIOS_AREA).unwrap();
        a.here(&mut scan);
        a.cmp(dword_ptr(esi), sig(b"RSD ")).unwrap();
        a.jne(next).unwrap();
        a.cmp(dword_ptr(esi + 4), sig(b"PTR ")).unwrap();
        a.jne(next).unwrap();
        a.xor(eax, eax).unwrap();
        a.xor(ecx, ecx).unwrap();
        a.here(&mut sum);
        a.add(al, byte_ptr(esi + ecx)).unwrap();
        a.inc(ecx).unwrap();
        a.cmp(ecx, RSDP_CHECKSUMMED_LEN).unwrap();
        a.jb(sum).unwrap();
        a.test(al, al).unwrap();
        a.jz(tables).unwrap();
        a.here(&mut next);
        a.add(esi, 16u32).unwrap();
        a.cmp(esi, BIOS_AREA_END).unwrap();
        a.jb(scan).unwrap();
        a.jmp(no_rsdp).unwrap();

        // The RSDT: 32-bit pointers after its header.
        a.here(&mut tables);
        a.mov(esi, dword_ptr(esi + RSDP_RSDT_ADDRESS)).unwrap();
        a.mov(ecx, dword_ptr(esi + SDT_LENGTH)).unwrap();
        a.sub(ecx, SDT_HEADER_LEN).unwrap();
        a.shr(ecx, 2).unwrap();
        a.jz(no_madt).unwrap();
        a.add(esi, SDT_HEADER_LEN).unwrap();
        let mut find = a.create_label();
        a.here(&mut find);
        a.lodsd().unwrap();
        a.cmp(dword_ptr(eax), sig(b"APIC")).unwrap();
        a.je(madt).unwrap();
        a.dec(ecx).unwrap();
        a.jnz(find).unwrap();
        a.jmp(no_madt).unwrap();

        // MADT entries: type, length, ...; EDX = end of table.
        a.here(&mut madt);
        a.mov(edx, eax).unwrap();
        a.add(edx, dword_ptr(eax + SDT_LENGTH)).unwrap();
        a.lea(esi, ptr(eax + MADT_ENTRIES)).unwrap();
        a.xor(edi, edi).unwrap(); // CPUs found
        a.here(&mut entry);
        a.cmp(esi, edx).unwrap();
        a.jae(end).unwrap();
        a.movzx(ecx, byte_ptr(esi + 1)).unwrap();
        a.test(ecx, ecx).unwrap();
        a.jz(end).unwrap(); // malformed: stop rather than loop forever
        a.cmp(byte_ptr(esi), MADT_LOCAL_APIC).unwrap();
        a.jne(skip).unwrap();
        a.test(byte_ptr(esi + MADT_LAPIC_FLAGS), MADT_LAPIC_ENABLED).unwrap();
        a.jz(skip).unwrap();
        a.cmp(edi, MAX_CPUS).unwrap();
        a.jae(skip).unwrap();
        a.mov(al, byte_ptr(esi + MADT_LAPIC_ID)).unwrap();
        a.mov(byte_ptr(edi + self.cpu_ids), al).unwrap();
        a.inc(edi).unwrap();
        a.here(&mut skip);
        a.add(esi, ecx).unwrap();
        a.jmp(entry).unwrap();
        a.here(&mut end);
        a.mov(dword_ptr(self.cpu_count), edi).unwrap();
        a.popad().unwrap();
        a.ret().unwrap();

        a.here(&mut no_rsdp);
        self.fail(a, d, "smp: no ACPI RSDP in 0xE0000-0xFFFFF\n");
        a.here(&mut no_madt);
        self.fail(a, d, "smp: no MADT in the RSDT\n");
    }

    fn emit_ipi(&self, a: &mut Asm, d: &mut Data) {
        // send_ipi: EDX = destination APIC ID, EAX = ICR low; waits for the delivery status.
        let mut l = self.send_ipi;
        let mut poll = a.create_label();
        let mut sent = a.create_label();
        a.here(&mut l);
        a.pushad().unwrap();
        a.shl(edx, 24).unwrap();
        a.mov(dword_ptr(LAPIC_ICR_HIGH), edx).unwrap();
        a.mov(dword_ptr(LAPIC_ICR_LOW), eax).unwrap(); // writing the low half sends
        a.mov(ecx, ICR_POLL_LIMIT).unwrap();
        a.here(&mut poll);
        a.test(dword_ptr(LAPIC_ICR_LOW), ICR_SEND_PENDING).unwrap();
        a.jz(sent).unwrap();
        a.pause().unwrap();
        a.dec(ecx).unwrap();
        a.jnz(poll).unwrap();
        self.fail(a, d, "smp: ICR delivery status stays send-pending\n");
        a.here(&mut sent);
        a.popad().unwrap();
        a.ret().unwrap();

        // start_ap: EAX = APIC ID. The INIT-SIPI-SIPI sequence of Intel SDM Vol. 3A §8.4.4.1
        // ("Typical BSP Initialization Sequence"), addressed to one AP: INIT, 10 ms, SIPI,
        // 200 µs, SIPI, 200 µs. An AP already running ignores the second SIPI.
        let mut l = self.start_ap;
        a.here(&mut l);
        a.pushad().unwrap();
        a.mov(edx, eax).unwrap();
        a.mov(eax, ICR_INIT).unwrap();
        a.call(self.send_ipi).unwrap();
        a.mov(ecx, TICKS_10MS).unwrap();
        a.call(self.timer_start).unwrap();
        a.call(self.timer_wait).unwrap();
        for _ in 0..2 {
            a.mov(eax, ICR_STARTUP | SIPI_VECTOR).unwrap();
            a.call(self.send_ipi).unwrap();
            a.mov(ecx, TICKS_200US).unwrap();
            a.call(self.timer_start).unwrap();
            a.call(self.timer_wait).unwrap();
        }
        a.popad().unwrap();
        a.ret().unwrap();
    }
}

/// Software-enables this CPU's local APIC with spurious vector [`LAPIC_SPURIOUS_VECTOR`] and
/// lets every vector through (TPR 0). LINT0/LINT1 keep what the firmware left.
pub fn enable_lapic(a: &mut Asm) {
    a.mov(dword_ptr(LAPIC_SVR), SVR_ENABLE_VECTOR_FF).unwrap();
    a.mov(dword_ptr(LAPIC_TPR), 0).unwrap();
}

/// Signals the end of the interrupt in service to this CPU's local APIC.
pub fn lapic_eoi(a: &mut Asm) {
    a.mov(dword_ptr(LAPIC_EOI), 0).unwrap();
}

/// Initialises the 8259 pair: IRQ 0-7 on vectors `base`..`base + 8`, IRQ 8-15 on the next 8,
/// the slave cascaded on IRQ 2, then `mask` (bit n set: IRQ n masked). Clobbers AL.
pub fn init_pics(a: &mut Asm, base: u8, mask: u16) {
    assert_eq!(base % 8, 0, "ICW2 takes vector bits 7:3");
    let writes = [
        (PIC_MASTER_CMD, PIC_ICW1),
        (PIC_SLAVE_CMD, PIC_ICW1),
        (PIC_MASTER_DATA, base as u32),
        (PIC_SLAVE_DATA, base as u32 + 8),
        (PIC_MASTER_DATA, PIC_ICW3_MASTER),
        (PIC_SLAVE_DATA, PIC_ICW3_SLAVE),
        (PIC_MASTER_DATA, PIC_ICW4),
        (PIC_SLAVE_DATA, PIC_ICW4),
        (PIC_MASTER_DATA, (mask & 0xff) as u32),
        (PIC_SLAVE_DATA, (mask >> 8) as u32),
    ];
    for (port, value) in writes {
        a.mov(al, value).unwrap();
        a.out(port as u32, al).unwrap();
    }
}

/// Non-specific EOI for ISA IRQ `irq`: to the slave and the master for IRQ 8-15, else the
/// master. Clobbers AL.
pub fn pic_eoi(a: &mut Asm, irq: u8) {
    a.mov(al, PIC_EOI).unwrap();
    if irq >= 8 {
        a.out(PIC_SLAVE_CMD as u32, al).unwrap();
    }
    a.out(PIC_MASTER_CMD as u32, al).unwrap();
}

/// Makes ISA IRQ `irq` level-triggered in the ELCR (as PCI INTx routed to it needs).
/// Clobbers EAX and EDX.
pub fn set_level_triggered(a: &mut Asm, irq: u8) {
    a.mov(edx, (ELCR + u16::from(irq / 8)) as u32).unwrap();
    a.in_(al, dx).unwrap();
    a.or(al, 1u32 << (irq % 8)).unwrap();
    a.out(dx, al).unwrap();
}

/// An IDT whose 256 interrupt gates lead to one handler: gate `v` points at a stub that pushes
/// `v` and jumps to it. The handler thus starts with the vector at [ESP], above it the CPU's
/// frame (an error code first, for the exceptions that push one); it returns from an interrupt
/// with [`Idt::iret`]. One IDT per kernel (its stubs are the named label `idt_stubs`).
pub struct Idt {
    table: u32,
    idtr: u32,
}

impl Idt {
    pub fn new(d: &mut Data) -> Idt {
        let table = d.zeroed(8 * IDT_VECTORS, 8);
        let mut idtr = ((8 * IDT_VECTORS - 1) as u16).to_le_bytes().to_vec();
        idtr.extend_from_slice(&table.to_le_bytes());
        Idt { table, idtr: d.bytes(&idtr, 8) }
    }

    /// Fills the gates and loads IDTR (interrupts stay as they are).
    pub fn load(&self, a: &mut Asm) {
        let mut gate = a.create_label();
        a.pushad().unwrap();
        a.mov(edi, self.table).unwrap();
        let stubs = a.addr("idt_stubs");
        a.mov(eax, stubs).unwrap();
        a.mov(ecx, IDT_VECTORS).unwrap();
        a.here(&mut gate);
        a.mov(edx, eax).unwrap();
        a.and(edx, 0xffffu32).unwrap();
        a.or(edx, CODE_SELECTOR << 16).unwrap();
        a.mov(dword_ptr(edi), edx).unwrap();
        a.mov(edx, eax).unwrap();
        a.and(edx, 0xffff_0000u32).unwrap();
        a.or(edx, IDT_INTERRUPT_GATE).unwrap();
        a.mov(dword_ptr(edi + 4), edx).unwrap();
        a.add(eax, IDT_STUB_SIZE).unwrap();
        a.add(edi, 8u32).unwrap();
        a.dec(ecx).unwrap();
        a.jnz(gate).unwrap();
        a.lidt(ptr(self.idtr)).unwrap();
        a.popad().unwrap();
    }

    /// Emits the stubs, jumping to the named label `handler`. The encodings are spelled out so
    /// every stub has the same size whatever the distance.
    pub fn emit_stubs(&self, a: &mut Asm, handler: &str) {
        let mut stubs = a.named_label("idt_stubs");
        a.here(&mut stubs);
        let base = a.addr("idt_stubs");
        let target = a.addr(handler);
        for v in 0..IDT_VECTORS {
            let next = base.wrapping_add((v + 1) * IDT_STUB_SIZE);
            let mut stub = vec![0x68]; // push imm32
            stub.extend_from_slice(&v.to_le_bytes());
            stub.push(0xe9); // jmp rel32
            stub.extend_from_slice(&target.wrapping_sub(next).to_le_bytes());
            a.db(&stub).unwrap();
        }
    }

    /// Drops the vector the stub pushed and returns from the interrupt.
    pub fn iret(a: &mut Asm) {
        a.add(esp, 4u32).unwrap();
        a.iretd().unwrap();
    }
}

/// Loads the flat data selector into DS, ES, FS, GS and SS.
fn load_data_segments(a: &mut Asm) {
    a.mov(ax, DATA_SELECTOR).unwrap();
    for s in [ds, es, fs, gs, ss] {
        a.mov(s, ax).unwrap();
    }
}

/// The AP start-up page. A SIPI with vector V starts the AP in real mode at V000:0000
/// (CS base V << 12, IP 0), so the 16-bit part is assembled at IP 0 and addresses its data
/// through DS = CS. It loads the GDT in the same page, sets CR0.PE, far-jumps to the 32-bit
/// part, which loads flat segments and jumps to `ap_entry` in the kernel.
fn trampoline(ap_entry: u32) -> Vec<u8> {
    let mut r16 = CodeAssembler::new(16).unwrap();
    r16.cli().unwrap();
    r16.mov(ax, cs).unwrap();
    r16.mov(ds, ax).unwrap();
    r16.lgdt(ptr(TRAMPOLINE_GDTR)).unwrap(); // 16-bit operand size: a 24-bit base, enough here
    r16.mov(eax, cr0).unwrap();
    r16.or(eax, 1).unwrap(); // CR0.PE
    r16.mov(cr0, eax).unwrap();
    r16.jmp_far(CODE_SELECTOR as u16, TRAMPOLINE + TRAMPOLINE_PM32).unwrap();
    let mut page = r16.assemble(0).unwrap();
    assert!(page.len() <= TRAMPOLINE_PM32 as usize);
    page.resize(TRAMPOLINE_PM32 as usize, 0);

    let mut p32 = Asm { a: CodeAssembler::new(32).unwrap(), named: Vec::new(), prev: Default::default() };
    load_data_segments(&mut p32);
    p32.mov(eax, ap_entry).unwrap();
    p32.jmp(eax).unwrap();
    page.extend(p32.a.assemble((TRAMPOLINE + TRAMPOLINE_PM32) as u64).unwrap());
    assert!(page.len() <= TRAMPOLINE_GDTR as usize);
    page.resize(TRAMPOLINE_GDTR as usize, 0);

    page.extend_from_slice(&((8 * GDT.len() - 1) as u16).to_le_bytes());
    page.extend_from_slice(&(TRAMPOLINE + TRAMPOLINE_GDT).to_le_bytes());
    page.resize(TRAMPOLINE_GDT as usize, 0);
    page.extend(GDT.iter().flat_map(|e| e.to_le_bytes()));
    assert_eq!(page.len(), TRAMPOLINE_SIZE as usize);
    page
}

/// puts: ECX = NUL-terminated string, to COM1. Preserves every register.
pub fn emit_puts(a: &mut Asm, mut label: CodeLabel) {
    let mut next = a.create_label();
    let mut end = a.create_label();
    a.here(&mut label);
    a.push(eax).unwrap();
    a.push(ecx).unwrap();
    a.push(edx).unwrap();
    a.mov(edx, COM1 as u32).unwrap();
    a.here(&mut next);
    a.mov(al, byte_ptr(ecx)).unwrap();
    a.test(al, al).unwrap();
    a.jz(end).unwrap();
    a.out(dx, al).unwrap();
    a.inc(ecx).unwrap();
    a.jmp(next).unwrap();
    a.here(&mut end);
    a.pop(edx).unwrap();
    a.pop(ecx).unwrap();
    a.pop(eax).unwrap();
    a.ret().unwrap();
}

/// rng: EAX = the next xorshift32 value (Marsaglia's 13, 17, 5) of the state at `seed`.
/// Preserves everything else.
pub fn emit_xorshift(a: &mut Asm, mut label: CodeLabel, seed: u32) {
    a.here(&mut label);
    a.push(ecx).unwrap();
    a.mov(eax, dword_ptr(seed)).unwrap();
    for (left, n) in [(true, 13), (false, 17), (true, 5)] {
        a.mov(ecx, eax).unwrap();
        if left {
            a.shl(ecx, n).unwrap();
        } else {
            a.shr(ecx, n).unwrap();
        }
        a.xor(eax, ecx).unwrap();
    }
    a.mov(dword_ptr(seed), eax).unwrap();
    a.pop(ecx).unwrap();
    a.ret().unwrap();
}
