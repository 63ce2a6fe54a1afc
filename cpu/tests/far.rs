//! Far control transfers, IRET and task switches on flat memory with hand-built GDT, IDT,
//! TSS and page tables. Expected values follow the SDM pseudo-code of JMP, CALL, RET, IRET
//! and the task-switch rules of Vol. 3 chapter 7.

use ferrite_cpu::segment::Descriptor;
use ferrite_cpu::state::{cr0, cr4, efer, flags, reg, Seg, TableReg};
use ferrite_cpu::testing::FlatBus;
use ferrite_cpu::{Cpu, RunExit};
use iced_x86::code_asm::*;

const GDT: u64 = 0x1000;
const IDT: u64 = 0x2000;

fn w16(bus: &mut FlatBus, addr: u64, v: u16) {
    bus.load(addr, &v.to_le_bytes());
}
fn w32(bus: &mut FlatBus, addr: u64, v: u32) {
    bus.load(addr, &v.to_le_bytes());
}
fn w64(bus: &mut FlatBus, addr: u64, v: u64) {
    bus.load(addr, &v.to_le_bytes());
}
fn r16(bus: &FlatBus, addr: u64) -> u16 {
    bus.read_u64(addr) as u16
}
fn r32(bus: &FlatBus, addr: u64) -> u32 {
    bus.read_u64(addr) as u32
}

/// A code/data/system segment descriptor: access byte (P, DPL, S, type) and the flags
/// nibble (G, D/B, L, AVL).
fn seg_desc(base: u32, limit: u32, access: u8, flags: u8) -> u64 {
    (limit as u64 & 0xffff)
        | ((base as u64 & 0xff_ffff) << 16)
        | ((access as u64) << 40)
        | (((limit as u64 >> 16) & 0xf) << 48)
        | (((flags & 0xf) as u64) << 52)
        | ((base as u64 >> 24) << 56)
}

/// A call/interrupt/trap/task gate (low 8 bytes).
fn gate_desc(sel: u16, offset: u32, access: u8, params: u8) -> u64 {
    (offset as u64 & 0xffff)
        | ((sel as u64) << 16)
        | ((params as u64 & 0x1f) << 32)
        | ((access as u64) << 40)
        | ((offset as u64 >> 16) << 48)
}

const FLAT_CODE0: (u32, u32, u8, u8) = (0, 0xfffff, 0x9a, 0xc);
const FLAT_DATA0: (u32, u32, u8, u8) = (0, 0xfffff, 0x92, 0xc);
const FLAT_CODE3: (u32, u32, u8, u8) = (0, 0xfffff, 0xfa, 0xc);
const FLAT_DATA3: (u32, u32, u8, u8) = (0, 0xfffff, 0xf2, 0xc);

fn flat(d: (u32, u32, u8, u8)) -> u64 {
    seg_desc(d.0, d.1, d.2, d.3)
}

fn asm(bits: u32, at: u64, f: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    let mut a = CodeAssembler::new(bits).unwrap();
    f(&mut a);
    a.assemble(at).unwrap()
}

fn code_len(bits: u32, f: impl FnOnce(&mut CodeAssembler)) -> u64 {
    asm(bits, 0, f).len() as u64
}

fn put_code(bus: &mut FlatBus, bits: u32, at: u64, f: impl FnOnce(&mut CodeAssembler)) -> usize {
    let code = asm(bits, at, f);
    bus.load(at, &code);
    code.len()
}

/// A CPU in protected mode with the GDT `gdt` at `GDT` and an IDT at `IDT`.
fn protected_cpu(bus: &mut FlatBus, gdt: &[u64]) -> Cpu {
    for (i, d) in gdt.iter().enumerate() {
        w64(bus, GDT + 8 * i as u64, *d);
    }
    let mut cpu = Cpu::default();
    cpu.state.gdtr = TableReg { base: GDT, limit: (gdt.len() * 8 - 1) as u16 };
    cpu.state.idtr = TableReg { base: IDT, limit: 0x7ff };
    cpu.state.cr0 |= cr0::PE;
    cpu.state.gpr[reg::RDX] = 0;
    cpu
}

/// Loads a segment register's cache straight from the GDT image in memory.
fn set_seg(cpu: &mut Cpu, bus: &FlatBus, seg: Seg, sel: u16) {
    let mut s = Descriptor(bus.read_u64(GDT + (sel & 0xfff8) as u64)).to_segment(sel);
    s.attrs |= 1;
    *cpu.state.seg_mut(seg) = s;
}

fn set_tr(cpu: &mut Cpu, bus: &FlatBus, sel: u16) {
    cpu.state.tr = Descriptor(bus.read_u64(GDT + (sel & 0xfff8) as u64)).to_segment(sel);
}

fn set_idt(bus: &mut FlatBus, vector: u64, gate: u64) {
    w64(bus, IDT + vector * 8, gate);
}

fn cpl(cpu: &Cpu) -> u8 {
    cpu.state.cpl()
}

fn run(cpu: &mut Cpu, bus: &mut FlatBus, n: u64) {
    assert_eq!(cpu.run(bus, n), RunExit::Budget);
}

#[test]
fn real_mode_far_jmp_call_retf_iret() {
    let mut bus = FlatBus::new(1 << 20);
    // IVT entry 0x40 -> 3000:0000.
    w32(&mut bus, 0x40 * 4, 0x3000_0000);
    let main_len = put_code(&mut bus, 16, 0x7c00, |a| {
        a.call_far(0x1000, 0x0010).unwrap();
        a.mov(word_ptr(0x500), 0x0020u32).unwrap();
        a.mov(word_ptr(0x502), 0x1000u32).unwrap();
        a.push(0x7777).unwrap();
        a.call(dword_ptr(0x500)).unwrap();
        a.int(0x40).unwrap();
        a.jmp_far(0x2000, 0x0000).unwrap();
    });
    put_code(&mut bus, 16, 0x10010, |a| {
        a.mov(ax, 0x1234u32).unwrap();
        a.retf().unwrap();
    });
    put_code(&mut bus, 16, 0x10020, |a| {
        a.mov(cx, cs).unwrap();
        a.retf_1(2).unwrap();
    });
    put_code(&mut bus, 16, 0x30000, |a| {
        a.mov(dx, 0x4242u32).unwrap();
        a.iret().unwrap();
    });
    put_code(&mut bus, 16, 0x20000, |a| {
        a.mov(bx, cs).unwrap();
    });
    let mut cpu = Cpu::default();
    let code_seg = cpu.state.seg_mut(Seg::Cs);
    code_seg.selector = 0;
    code_seg.base = 0;
    cpu.state.rip = 0x7c00;
    cpu.state.gpr[reg::RSP] = 0x7000;
    cpu.state.gpr[reg::RDX] = 0;

    run(&mut cpu, &mut bus, 1);
    assert_eq!(cpu.state.seg(Seg::Cs).selector, 0x1000);
    assert_eq!(cpu.state.seg(Seg::Cs).base, 0x10000);
    assert_eq!(cpu.state.rip, 0x10);
    assert_eq!(cpu.state.gpr[reg::RSP], 0x6ffc);
    assert_eq!(r16(&bus, 0x6ffc), 0x7c05, "return IP");
    assert_eq!(r16(&bus, 0x6ffe), 0, "return CS");

    run(&mut cpu, &mut bus, 12);
    assert_eq!(cpu.state.gpr[reg::RAX] & 0xffff, 0x1234);
    assert_eq!(cpu.state.gpr[reg::RCX] & 0xffff, 0x1000);
    assert_eq!(cpu.state.gpr[reg::RDX] & 0xffff, 0x4242);
    assert_eq!(cpu.state.seg(Seg::Cs).selector, 0x2000);
    assert_eq!(cpu.state.seg(Seg::Cs).base, 0x20000);
    assert_eq!(cpu.state.rip, 0);
    // RETF 2 released the pushed word.
    assert_eq!(cpu.state.gpr[reg::RSP], 0x7000);
    run(&mut cpu, &mut bus, 1);
    assert_eq!(cpu.state.gpr[reg::RBX] & 0xffff, 0x2000);
    assert!(main_len > 0);
}

#[test]
fn real_mode_far_jmp_beyond_cs_limit_faults() {
    let mut bus = FlatBus::new(1 << 20);
    // #GP handler (IVT 13) at 0000:0600 records that it ran.
    w32(&mut bus, 13 * 4, 0x0000_0600);
    put_code(&mut bus, 16, 0x600, |a| a.mov(si, 0x0d0du32).unwrap());
    // JMP m16:32 with an offset past the 64 KiB real-mode limit.
    w32(&mut bus, 0x500, 0x1_0000);
    w16(&mut bus, 0x504, 0x2000);
    put_code(&mut bus, 16, 0x7c00, |a| {
        a.jmp(fword_ptr(0x500)).unwrap();
    });
    let mut cpu = Cpu::default();
    let code_seg = cpu.state.seg_mut(Seg::Cs);
    code_seg.selector = 0;
    code_seg.base = 0;
    cpu.state.rip = 0x7c00;
    cpu.state.gpr[reg::RSP] = 0x7000;
    run(&mut cpu, &mut bus, 1);
    assert_eq!(cpu.state.gpr[reg::RSI] & 0xffff, 0x0d0d);
    // The frame returns to the faulting JMP.
    assert_eq!(r16(&bus, 0x6ffa), 0x7c00);
}

/// GDT of the ring-transition tests: flat ring-0/ring-3 code and data, a busy 32-bit TSS at
/// 0x3000 and a 32-bit call gate (DPL 3, two parameters) to ring-0 code at 0x9000.
fn ring_gdt() -> Vec<u64> {
    vec![
        0,
        flat(FLAT_CODE0),                 // 0x08
        flat(FLAT_DATA0),                 // 0x10
        flat(FLAT_CODE3),                 // 0x18
        flat(FLAT_DATA3),                 // 0x20
        seg_desc(0x3000, 0x67, 0x8b, 0),  // 0x28 TSS (busy)
        gate_desc(0x08, 0x9000, 0xec, 2), // 0x30 call gate, DPL 3
        gate_desc(0x08, 0x9000, 0xe4, 2), // 0x38 16-bit call gate, DPL 3
        seg_desc(0, 0xfffff, 0x9e, 0xc),  // 0x40 conforming code, DPL 0
    ]
}

fn ring3_cpu(bus: &mut FlatBus) -> Cpu {
    let mut cpu = protected_cpu(bus, &ring_gdt());
    set_seg(&mut cpu, bus, Seg::Cs, 0x1b);
    for s in [Seg::Ss, Seg::Ds, Seg::Es] {
        set_seg(&mut cpu, bus, s, 0x23);
    }
    set_tr(&mut cpu, bus, 0x28);
    w32(bus, 0x3004, 0x8000); // ESP0
    w32(bus, 0x3008, 0x10); // SS0
    cpu.state.gpr[reg::RSP] = 0x6000;
    cpu.state.rip = 0x5000;
    cpu
}

#[test]
fn call_gate_ring3_to_ring0_with_parameters_and_back() {
    let mut bus = FlatBus::new(1 << 20);
    put_code(&mut bus, 32, 0x5000, |a| {
        a.push(0x1111_1111).unwrap();
        a.push(0x2222_2222).unwrap();
        a.call_far(0x33, 0).unwrap();
        a.mov(esi, 0x99u32).unwrap();
    });
    put_code(&mut bus, 32, 0x9000, |a| {
        a.mov(eax, dword_ptr(esp + 8)).unwrap();
        a.mov(ebx, dword_ptr(esp + 12)).unwrap();
        a.mov(ecx, ss).unwrap();
        a.mov(edx, esp).unwrap();
        a.mov(di, 0x10u32).unwrap();
        a.mov(ds, di).unwrap();
        a.retf_1(8).unwrap();
    });
    let mut cpu = ring3_cpu(&mut bus);
    assert_eq!(cpl(&cpu), 3);

    run(&mut cpu, &mut bus, 3);
    assert_eq!(cpl(&cpu), 0);
    assert_eq!(cpu.state.seg(Seg::Cs).selector, 0x08);
    assert_eq!(cpu.state.seg(Seg::Ss).selector, 0x10);
    assert_eq!(cpu.state.rip, 0x9000);
    assert_eq!(cpu.state.gpr[reg::RSP], 0x8000 - 24);
    // Inner stack: SS, ESP, the two parameters in their order, CS, EIP.
    assert_eq!(r32(&bus, 0x7ffc), 0x23);
    assert_eq!(r32(&bus, 0x7ff8), 0x5ff8);
    assert_eq!(r32(&bus, 0x7ff4), 0x1111_1111);
    assert_eq!(r32(&bus, 0x7ff0), 0x2222_2222);
    assert_eq!(r32(&bus, 0x7fec), 0x1b);
    assert_eq!(r32(&bus, 0x7fe8), 0x5000 + 5 + 5 + 7);

    run(&mut cpu, &mut bus, 8);
    assert_eq!(cpu.state.gpr[reg::RAX], 0x2222_2222);
    assert_eq!(cpu.state.gpr[reg::RBX], 0x1111_1111);
    assert_eq!(cpu.state.gpr[reg::RCX], 0x10);
    assert_eq!(cpu.state.gpr[reg::RDX], 0x7fe8);
    assert_eq!(cpu.state.gpr[reg::RSI], 0x99);
    assert_eq!(cpl(&cpu), 3);
    assert_eq!(cpu.state.seg(Seg::Cs).selector, 0x1b);
    assert_eq!(cpu.state.seg(Seg::Ss).selector, 0x23);
    // RETF 8 released the parameters on both stacks.
    assert_eq!(cpu.state.gpr[reg::RSP], 0x6000);
    // DS held a DPL-0 segment: nulled on the return to ring 3; ES (DPL 3) kept.
    assert_eq!(cpu.state.seg(Seg::Ds).selector, 0);
    assert!(cpu.state.seg(Seg::Ds).unusable());
    assert_eq!(cpu.state.seg(Seg::Es).selector, 0x23);
}

#[test]
fn call_gate_16bit_copies_words() {
    let mut bus = FlatBus::new(1 << 20);
    put_code(&mut bus, 32, 0x5000, |a| {
        a.push(0x1111_2222).unwrap();
        a.call_far(0x3b, 0).unwrap();
    });
    let mut cpu = ring3_cpu(&mut bus);
    run(&mut cpu, &mut bus, 2);
    assert_eq!(cpl(&cpu), 0);
    // A 16-bit gate pushes words: SS, SP, two parameter words, CS, IP.
    assert_eq!(cpu.state.gpr[reg::RSP], 0x8000 - 12);
    assert_eq!(r16(&bus, 0x7ffe), 0x23);
    assert_eq!(r16(&bus, 0x7ffc), 0x5ffc);
    assert_eq!(r16(&bus, 0x7ffa), 0x1111);
    assert_eq!(r16(&bus, 0x7ff8), 0x2222);
    assert_eq!(r16(&bus, 0x7ff6), 0x1b);
    assert_eq!(r16(&bus, 0x7ff4), (0x5000 + 5 + 7) as u16);
}

#[test]
fn iret_to_ring3_and_flag_rules() {
    let mut bus = FlatBus::new(1 << 20);
    let mut cpu = protected_cpu(&mut bus, &ring_gdt());
    set_seg(&mut cpu, &bus, Seg::Cs, 0x08);
    set_seg(&mut cpu, &bus, Seg::Ss, 0x10);
    set_seg(&mut cpu, &bus, Seg::Ds, 0x10);
    set_seg(&mut cpu, &bus, Seg::Es, 0x23);
    set_tr(&mut cpu, &bus, 0x28);
    cpu.state.gpr[reg::RSP] = 0x8000;
    cpu.state.rip = 0x9000;
    put_code(&mut bus, 32, 0x9000, |a| {
        a.push(0x23).unwrap();
        a.push(0x6000).unwrap();
        a.push(0x0202 | 0x0001).unwrap(); // IF, CF; IOPL 0
        a.push(0x1b).unwrap();
        a.push(0x5000).unwrap();
        a.iretd().unwrap();
    });
    // Ring 3: an IRET to the same level trying to clear IF and raise IOPL.
    let len = code_len(32, |a| {
        a.push(0x3002).unwrap();
        a.push(0x1b).unwrap();
        a.push(0x7fff_0000).unwrap(); // same length as the real offset
        a.iretd().unwrap();
    }) as u32;
    put_code(&mut bus, 32, 0x5000, |a| {
        a.push(0x3002).unwrap();
        a.push(0x1b).unwrap();
        a.push((0x5000 + len) as i32).unwrap();
        a.iretd().unwrap();
        a.mov(esi, 7u32).unwrap();
    });

    run(&mut cpu, &mut bus, 6);
    assert_eq!(cpl(&cpu), 3);
    assert_eq!(cpu.state.seg(Seg::Cs).selector, 0x1b);
    assert_eq!(cpu.state.seg(Seg::Ss).selector, 0x23);
    assert_eq!(cpu.state.gpr[reg::RSP], 0x6000);
    assert_eq!(cpu.state.rip, 0x5000);
    let fl = cpu.rflags();
    assert_eq!(fl & (flags::IF | flags::CF | flags::IOPL), flags::IF | flags::CF);
    assert_eq!(cpu.state.seg(Seg::Ds).selector, 0, "DPL-0 DS nulled");
    assert_eq!(cpu.state.seg(Seg::Es).selector, 0x23);

    run(&mut cpu, &mut bus, 5);
    assert_eq!(cpu.state.gpr[reg::RSI], 7);
    let fl = cpu.rflags();
    // CPL 3 > IOPL 0: IF kept; CPL != 0: IOPL kept; CF cleared from the image.
    assert_eq!(fl & (flags::IF | flags::CF | flags::IOPL), flags::IF);
    assert_eq!(cpu.state.gpr[reg::RSP], 0x6000);
}

/// GDT/IDT for the virtual-8086 tests: ring-0 flat code/data, a busy TSS (ESP0 = 0x8000),
/// INT 0x30 and #GP gates to ring-0 handlers at 0x9100 and 0x9200.
fn v86_setup(bus: &mut FlatBus, iopl: u32) -> Cpu {
    let gdt = vec![0, flat(FLAT_CODE0), flat(FLAT_DATA0), seg_desc(0x3000, 0x67, 0x8b, 0)];
    let mut cpu = protected_cpu(bus, &gdt);
    set_seg(&mut cpu, bus, Seg::Cs, 0x08);
    set_seg(&mut cpu, bus, Seg::Ss, 0x10);
    set_seg(&mut cpu, bus, Seg::Ds, 0x10);
    set_tr(&mut cpu, bus, 0x18);
    w32(bus, 0x3004, 0x8000);
    w32(bus, 0x3008, 0x10);
    set_idt(bus, 0x30, gate_desc(0x08, 0x9100, 0xee, 0));
    set_idt(bus, 13, gate_desc(0x08, 0x9200, 0x8e, 0));
    cpu.state.gpr[reg::RSP] = 0x8000;
    cpu.state.rip = 0x9000;
    // The monitor enters virtual-8086 mode at 2000:0100 with SS:SP = 3000:0100.
    let eflags = 0x2_0202 | (iopl << 12);
    put_code(bus, 32, 0x9000, |a| {
        a.push(0).unwrap(); // GS
        a.push(0).unwrap(); // FS
        a.push(0x2000).unwrap(); // DS
        a.push(0x2000).unwrap(); // ES
        a.push(0x3000).unwrap(); // SS
        a.push(0x0100).unwrap(); // ESP
        a.push(eflags as i32).unwrap();
        a.push(0x2000).unwrap(); // CS
        a.push(0x0100).unwrap(); // EIP
        a.iretd().unwrap();
    });
    put_code(bus, 16, 0x20100, |a| {
        a.mov(ax, 0x1234u32).unwrap();
        a.int(0x30).unwrap();
        a.mov(bx, 0x5678u32).unwrap();
    });
    put_code(bus, 32, 0x9100, |a| {
        a.mov(ecx, dword_ptr(esp + 8)).unwrap();
        a.mov(edx, ds).unwrap();
        a.iretd().unwrap();
    });
    put_code(bus, 32, 0x9200, |a| {
        a.pop(edi).unwrap();
        a.mov(esi, dword_ptr(esp)).unwrap();
    });
    cpu
}

#[test]
fn iret_to_v86_and_int_back_to_monitor() {
    let mut bus = FlatBus::new(1 << 20);
    let mut cpu = v86_setup(&mut bus, 3);
    run(&mut cpu, &mut bus, 10);
    assert!(cpu.state.v86());
    assert_eq!(cpl(&cpu), 3);
    assert_eq!(cpu.state.seg(Seg::Cs).selector, 0x2000);
    assert_eq!(cpu.state.seg(Seg::Cs).base, 0x20000);
    assert_eq!(cpu.state.seg(Seg::Ss).base, 0x30000);
    assert_eq!(cpu.state.seg(Seg::Ds).base, 0x20000);
    assert_eq!(cpu.state.seg(Seg::Fs).selector, 0);
    assert_eq!(cpu.state.gpr[reg::RSP], 0x100);
    assert_eq!(cpu.state.rip, 0x100);
    assert_eq!(cpu.state.code_bitness(), 16);

    // MOV AX, then INT 0x30 into the monitor.
    run(&mut cpu, &mut bus, 2);
    assert!(!cpu.state.v86());
    assert_eq!(cpl(&cpu), 0);
    assert_eq!(cpu.state.seg(Seg::Cs).selector, 0x08);
    assert_eq!(cpu.state.gpr[reg::RSP], 0x8000 - 36);
    assert_eq!(r32(&bus, 0x7fdc), 0x105, "EIP after INT");
    assert_eq!(r32(&bus, 0x7fe0), 0x2000);
    assert_ne!(r32(&bus, 0x7fe4) & flags::VM as u32, 0);
    assert_eq!(r32(&bus, 0x7fe8), 0x100);
    assert_eq!(r32(&bus, 0x7fec), 0x3000);
    assert_eq!(r32(&bus, 0x7ff0), 0x2000);
    assert_eq!(r32(&bus, 0x7ff4), 0x2000);

    // The monitor looks at the frame and IRETs back.
    run(&mut cpu, &mut bus, 4);
    assert_ne!(cpu.state.gpr[reg::RCX] & flags::VM, 0);
    assert_eq!(cpu.state.gpr[reg::RDX], 0, "DS was nulled on entry");
    assert!(cpu.state.v86());
    assert_eq!(cpu.state.gpr[reg::RAX] & 0xffff, 0x1234);
    assert_eq!(cpu.state.gpr[reg::RBX] & 0xffff, 0x5678);
    assert_eq!(cpu.state.seg(Seg::Ds).selector, 0x2000);
    assert_eq!(cpu.state.gpr[reg::RSP], 0x100);
}

#[test]
fn v86_int_with_iopl0_traps_to_monitor() {
    let mut bus = FlatBus::new(1 << 20);
    let mut cpu = v86_setup(&mut bus, 0);
    run(&mut cpu, &mut bus, 11);
    assert!(cpu.state.v86());
    // INT 0x30 at IOPL 0 raises #GP(0), delivered to the ring-0 #GP handler.
    run(&mut cpu, &mut bus, 2);
    assert!(!cpu.state.v86());
    assert_eq!(cpu.state.gpr[reg::RDI], 0, "error code");
    assert_eq!(cpu.state.gpr[reg::RSI], 0x103, "faulting INT");
}

#[test]
fn v86_iret_needs_iopl3() {
    let mut bus = FlatBus::new(1 << 20);
    let mut cpu = v86_setup(&mut bus, 0);
    // Replace the v86 code with PUSHF/PUSH CS/PUSH IP/IRET.
    put_code(&mut bus, 16, 0x20100, |a| {
        a.iret().unwrap();
    });
    run(&mut cpu, &mut bus, 10);
    run(&mut cpu, &mut bus, 2);
    assert_eq!(cpu.state.gpr[reg::RSI], 0x100, "IRET at IOPL 0 traps");

    let mut bus = FlatBus::new(1 << 20);
    let mut cpu = v86_setup(&mut bus, 3);
    put_code(&mut bus, 16, 0x20100, |a| {
        a.push(0x0001).unwrap(); // flags image: CF, and IOPL 0 which must not load
        a.push(0x2000).unwrap();
        a.push(0x0110).unwrap();
        a.iret().unwrap();
    });
    put_code(&mut bus, 16, 0x20110, |a| a.mov(bx, 0x4321u32).unwrap());
    run(&mut cpu, &mut bus, 10 + 5);
    assert!(cpu.state.v86());
    assert_eq!(cpu.state.gpr[reg::RBX] & 0xffff, 0x4321);
    let fl = cpu.rflags();
    assert_eq!(fl & flags::IOPL, flags::IOPL, "IOPL unchanged");
    assert_eq!(fl & (flags::CF | flags::IF), flags::CF, "IF loaded (IOPL 3)");
}

/// Long mode with identity-mapped 2 MiB (user-accessible) and a GDT with 64-bit ring-0 and
/// ring-3 code, a compatibility-mode code segment, data, a 64-bit TSS and a 64-bit call gate.
fn long_mode_cpu(bus: &mut FlatBus) -> Cpu {
    w64(bus, 0x10000, 0x11007);
    w64(bus, 0x11000, 0x12007);
    w64(bus, 0x12000, 0x87);
    let gdt = vec![
        0,
        seg_desc(0, 0xfffff, 0x9a, 0xa),  // 0x08 64-bit code, DPL 0
        flat(FLAT_DATA0),                 // 0x10
        seg_desc(0, 0xfffff, 0x9a, 0xc),  // 0x18 32-bit (compatibility) code
        seg_desc(0, 0xfffff, 0xfa, 0xa),  // 0x20 64-bit code, DPL 3
        flat(FLAT_DATA3),                 // 0x28
        seg_desc(0x3000, 0x67, 0x8b, 0),  // 0x30 64-bit TSS (busy), low half
        0,                                // 0x38 high half
        gate_desc(0x08, 0x9800, 0xec, 0), // 0x40 64-bit call gate, DPL 3
        0,                                // 0x48 high half: offset 63:32 = 0
    ];
    let mut cpu = protected_cpu(bus, &gdt);
    cpu.state.cr3 = 0x10000;
    cpu.state.cr4 |= cr4::PAE;
    cpu.state.efer = efer::LME | efer::LMA;
    cpu.state.cr0 |= cr0::PG;
    cpu.state.idtr.limit = 0xfff;
    set_seg(&mut cpu, bus, Seg::Cs, 0x08);
    set_seg(&mut cpu, bus, Seg::Ss, 0x10);
    set_tr(&mut cpu, bus, 0x30);
    w64(bus, 0x3004, 0x8000); // RSP0
    cpu.state.gpr[reg::RSP] = 0x7000;
    cpu.state.rip = 0x9000;
    cpu
}

#[test]
fn long_mode_iretq_to_compat_and_far_transfers_back() {
    let mut bus = FlatBus::new(4 << 20);
    let mut cpu = long_mode_cpu(&mut bus);
    put_code(&mut bus, 64, 0x9000, |a| {
        a.mov(rax, rsp).unwrap();
        a.push(0x10).unwrap();
        a.push(rax).unwrap();
        a.pushfq().unwrap();
        a.push(0x18).unwrap();
        a.push(0xa000).unwrap();
        a.iretq().unwrap();
    });
    put_code(&mut bus, 32, 0xa000, |a| {
        a.mov(ecx, 0x32u32).unwrap();
        a.jmp_far(0x08, 0xb000).unwrap();
    });
    put_code(&mut bus, 64, 0xb000, |a| {
        a.mov(rdx, 0x1_2345_6789u64).unwrap();
        a.mov(dword_ptr(0x600), 0xc000u32).unwrap();
        a.mov(word_ptr(0x604), 0x18u32).unwrap();
        a.call(fword_ptr(0x600)).unwrap(); // m16:32 into compatibility mode
        a.mov(r8, 0x88u64).unwrap();
        a.mov(qword_ptr(0x610), 0xd000).unwrap();
        a.mov(word_ptr(0x618), 0x08u32).unwrap();
        a.call(tword_ptr(0x610)).unwrap(); // m16:64 to 64-bit code
        a.mov(r9, 0x99u64).unwrap();
    });
    put_code(&mut bus, 32, 0xc000, |a| {
        a.mov(esi, 0x51u32).unwrap();
        a.retf().unwrap();
    });
    put_code(&mut bus, 64, 0xd000, |a| {
        a.mov(edi, 0x64u32).unwrap();
        a.retf().unwrap(); // RETFQ
    });

    run(&mut cpu, &mut bus, 7);
    assert!(!cpu.state.in_64bit());
    assert_eq!(cpu.state.code_bitness(), 32);
    assert_eq!(cpu.state.seg(Seg::Cs).selector, 0x18);
    assert_eq!(cpu.state.seg(Seg::Ss).selector, 0x10);
    assert_eq!(cpu.state.gpr[reg::RSP], 0x7000);
    assert_eq!(cpu.state.rip, 0xa000);

    run(&mut cpu, &mut bus, 2);
    assert!(cpu.state.in_64bit());
    assert_eq!(cpu.state.rip, 0xb000);

    // MOV RDX, two MOVs, CALL m16:32 (pushes 4+4 bytes), then in compatibility mode.
    run(&mut cpu, &mut bus, 4);
    assert!(!cpu.state.in_64bit());
    assert_eq!(cpu.state.gpr[reg::RSP], 0x7000 - 8);
    assert_eq!(r32(&bus, 0x6ffc), 0x08);

    run(&mut cpu, &mut bus, 2 + 1 + 3);
    assert!(cpu.state.in_64bit());
    assert_eq!(cpu.state.gpr[reg::RSP], 0x7000 - 16, "CALL m16:64 pushes 8+8 bytes");
    assert_eq!(bus.read_u64(0x6ff8), 0x08);

    run(&mut cpu, &mut bus, 3);
    assert_eq!(cpu.state.gpr[reg::RCX], 0x32);
    assert_eq!(cpu.state.gpr[reg::RDX], 0x1_2345_6789);
    assert_eq!(cpu.state.gpr[reg::RSI], 0x51);
    assert_eq!(cpu.state.gpr[8], 0x88);
    assert_eq!(cpu.state.gpr[reg::RDI], 0x64);
    assert_eq!(cpu.state.gpr[9], 0x99);
    assert_eq!(cpu.state.gpr[reg::RSP], 0x7000);
    assert!(cpu.state.in_64bit());
}

#[test]
fn long_mode_call_gate_from_ring3_and_retfq_back() {
    let mut bus = FlatBus::new(4 << 20);
    let mut cpu = long_mode_cpu(&mut bus);
    set_seg(&mut cpu, &bus, Seg::Cs, 0x23);
    set_seg(&mut cpu, &bus, Seg::Ss, 0x2b);
    cpu.state.gpr[reg::RSP] = 0x6000;
    cpu.state.rip = 0xe000;
    w16(&mut bus, 0x628, 0x43);
    let call_len = code_len(64, |a| a.call(tword_ptr(0x620)).unwrap());
    put_code(&mut bus, 64, 0xe000, |a| {
        a.call(tword_ptr(0x620)).unwrap();
        a.mov(r10, 0x10u64).unwrap();
    });
    put_code(&mut bus, 64, 0x9800, |a| {
        a.mov(rax, ss).unwrap();
        a.mov(rbx, rsp).unwrap();
        a.retf().unwrap();
    });
    assert_eq!(cpl(&cpu), 3);
    run(&mut cpu, &mut bus, 1);
    assert_eq!(cpl(&cpu), 0);
    assert!(cpu.state.in_64bit());
    assert!(cpu.state.seg(Seg::Ss).unusable(), "null SS in 64-bit mode");
    assert_eq!(cpu.state.gpr[reg::RSP], 0x8000 - 32);
    assert_eq!(bus.read_u64(0x7ff8), 0x2b);
    assert_eq!(bus.read_u64(0x7ff0), 0x6000);
    assert_eq!(bus.read_u64(0x7fe8), 0x23);
    assert_eq!(bus.read_u64(0x7fe0), 0xe000 + call_len);

    run(&mut cpu, &mut bus, 4);
    assert_eq!(cpu.state.gpr[reg::RAX], 0);
    assert_eq!(cpu.state.gpr[reg::RBX], 0x7fe0);
    assert_eq!(cpl(&cpu), 3);
    assert_eq!(cpu.state.seg(Seg::Cs).selector, 0x23);
    assert_eq!(cpu.state.seg(Seg::Ss).selector, 0x2b);
    assert_eq!(cpu.state.gpr[reg::RSP], 0x6000);
    assert_eq!(cpu.state.gpr[10], 0x10);
}

/// Three 32-bit TSSs: A (current, 0x18 at 0x3000), B (0x20 at 0x3100), C (0x28 at 0x3200,
/// reached by a task gate on #DF). IDT vector 13 is not present, so a #GP escalates to #DF.
fn task_setup(bus: &mut FlatBus) -> Cpu {
    let gdt = vec![
        0,
        flat(FLAT_CODE0),                // 0x08
        flat(FLAT_DATA0),                // 0x10
        seg_desc(0x3000, 0x67, 0x8b, 0), // 0x18 A, busy
        seg_desc(0x3100, 0x67, 0x89, 0), // 0x20 B, available
        seg_desc(0x3200, 0x67, 0x89, 0), // 0x28 C, available
    ];
    let mut cpu = protected_cpu(bus, &gdt);
    set_seg(&mut cpu, bus, Seg::Cs, 0x08);
    for s in [Seg::Ss, Seg::Ds, Seg::Es] {
        set_seg(&mut cpu, bus, s, 0x10);
    }
    set_tr(&mut cpu, bus, 0x18);
    cpu.state.gpr[reg::RSP] = 0x8000;
    cpu.state.rip = 0x9000;
    for (base, entry, stack, bx_val) in [(0x3100u64, 0x9100u32, 0x7000u32, 0xb0b0u32), (0x3200, 0x9200, 0x6000, 0xc0c0)]
    {
        w32(bus, base + 0x20, entry);
        w32(bus, base + 0x24, 0x2);
        w32(bus, base + 0x34, bx_val);
        w32(bus, base + 0x38, stack);
        w16(bus, base + 0x48, 0x10);
        w16(bus, base + 0x4c, 0x08);
        w16(bus, base + 0x50, 0x10);
        w16(bus, base + 0x54, 0x10);
    }
    set_idt(bus, 8, gate_desc(0x28, 0, 0x85, 0));
    set_idt(bus, 13, gate_desc(0x08, 0x9f00, 0x0e, 0));
    put_code(bus, 32, 0x9000, |a| {
        a.mov(eax, 0xaaaau32).unwrap();
        a.jmp_far(0x20, 0).unwrap();
        a.mov(esi, 0x5151u32).unwrap();
        a.jmp_far(0, 0).unwrap(); // #GP(0) -> #NP on the absent gate -> #DF
    });
    put_code(bus, 32, 0x9100, |a| {
        a.mov(ecx, 0xbbbbu32).unwrap();
        a.jmp_far(0x18, 0).unwrap();
    });
    put_code(bus, 32, 0x9200, |a| {
        a.pop(edx).unwrap();
        a.mov(edi, 0xdfu32).unwrap();
        a.iretd().unwrap();
    });
    cpu
}

fn tss_type(bus: &FlatBus, sel: u64) -> u8 {
    bus.ram[(GDT + sel + 5) as usize] & 0xf
}

#[test]
fn task_switch_by_jmp_and_back() {
    let mut bus = FlatBus::new(1 << 20);
    let mut cpu = task_setup(&mut bus);
    run(&mut cpu, &mut bus, 2);
    assert_eq!(cpu.state.tr.selector, 0x20);
    assert_eq!(cpu.state.tr.base, 0x3100);
    assert_eq!(tss_type(&bus, 0x20), 0xb, "new task busy");
    assert_eq!(tss_type(&bus, 0x18), 0x9, "JMP frees the old task");
    assert_eq!(cpu.state.rip, 0x9100);
    assert_eq!(cpu.state.gpr[reg::RBX], 0xb0b0);
    assert_eq!(cpu.state.gpr[reg::RSP], 0x7000);
    assert_eq!(cpu.state.gpr[reg::RAX], 0);
    assert_ne!(cpu.state.cr0 & cr0::TS, 0);
    assert_eq!(cpu.rflags() & flags::NT, 0);
    // The old task's state was saved.
    assert_eq!(r32(&bus, 0x3020), 0x900c, "saved EIP");
    assert_eq!(r32(&bus, 0x3028), 0xaaaa, "saved EAX");
    assert_eq!(r32(&bus, 0x3038), 0x8000, "saved ESP");
    assert_eq!(r16(&bus, 0x304c), 0x08, "saved CS");
    assert_eq!(r16(&bus, 0x3100), 0, "JMP writes no back link");

    run(&mut cpu, &mut bus, 2);
    assert_eq!(cpu.state.tr.selector, 0x18);
    assert_eq!(cpu.state.rip, 0x900c);
    assert_eq!(cpu.state.gpr[reg::RAX], 0xaaaa);
    assert_eq!(cpu.state.gpr[reg::RCX], 0);
    assert_eq!(cpu.state.gpr[reg::RSP], 0x8000);
    assert_eq!(r32(&bus, 0x312c), 0xbbbb, "B's ECX saved");
    assert_eq!(tss_type(&bus, 0x18), 0xb);
    assert_eq!(tss_type(&bus, 0x20), 0x9);
}

#[test]
fn double_fault_through_task_gate_and_iret_back() {
    let mut bus = FlatBus::new(1 << 20);
    let mut cpu = task_setup(&mut bus);
    run(&mut cpu, &mut bus, 4);
    assert_eq!(cpu.state.tr.selector, 0x18);
    // MOV ESI retires, JMP 0:0 faults into the #DF task, whose POP EDX takes the error code.
    run(&mut cpu, &mut bus, 2);
    assert_eq!(cpu.state.tr.selector, 0x28);
    assert_eq!(cpu.state.gpr[reg::RDX], 0, "#DF error code");
    assert_eq!(cpu.state.gpr[reg::RSP], 0x6000);
    assert_ne!(cpu.rflags() & flags::NT, 0, "nested task");
    assert_eq!(r16(&bus, 0x3200), 0x18, "back link");
    assert_eq!(tss_type(&bus, 0x18), 0xb, "the interrupted task stays busy");
    assert_eq!(tss_type(&bus, 0x28), 0xb);
    assert_eq!(r32(&bus, 0x3020), 0x9011, "A saved at the faulting JMP");
    assert_eq!(r32(&bus, 0x3040), 0x5151, "A's ESI");

    // IRET with NT = 1 returns to task A.
    run(&mut cpu, &mut bus, 2);
    assert_eq!(cpu.state.tr.selector, 0x18);
    assert_eq!(cpu.state.rip, 0x9011);
    assert_eq!(cpu.state.gpr[reg::RSI], 0x5151);
    assert_eq!(cpu.state.gpr[reg::RDI], 0);
    assert_eq!(tss_type(&bus, 0x28), 0x9, "IRET frees the nested task");
    assert_eq!(tss_type(&bus, 0x18), 0xb);
    assert_eq!(r32(&bus, 0x3244), 0xdf, "C's EDI saved");
    assert_eq!(r32(&bus, 0x3224) & flags::NT as u32, 0, "IRET clears NT in the saved image");
    assert_eq!(cpu.rflags() & flags::NT, 0);
}

#[test]
fn task_switch_by_call_nests_and_iret_returns() {
    let mut bus = FlatBus::new(1 << 20);
    let mut cpu = task_setup(&mut bus);
    put_code(&mut bus, 32, 0x9000, |a| {
        a.call_far(0x20, 0).unwrap();
        a.mov(esi, 0x77u32).unwrap();
    });
    put_code(&mut bus, 32, 0x9100, |a| {
        a.iretd().unwrap();
    });
    run(&mut cpu, &mut bus, 1);
    assert_eq!(cpu.state.tr.selector, 0x20);
    assert_ne!(cpu.rflags() & flags::NT, 0);
    assert_eq!(r16(&bus, 0x3100), 0x18);
    assert_eq!(tss_type(&bus, 0x18), 0xb);
    run(&mut cpu, &mut bus, 2);
    assert_eq!(cpu.state.tr.selector, 0x18);
    assert_eq!(cpu.state.gpr[reg::RSI], 0x77);
    assert_eq!(tss_type(&bus, 0x20), 0x9);
}

/// Runs `code` at 0x9000 in ring 0 with handlers for #NP and #GP that pop the error code
/// into EAX and record the vector in EBX. Returns the CPU after `n` retired instructions
/// (the faulting one does not retire).
fn fault_case(extra_gdt: &[u64], n: u64, code: impl FnOnce(&mut CodeAssembler)) -> (Cpu, FlatBus) {
    let mut bus = FlatBus::new(1 << 20);
    let mut gdt = vec![0, flat(FLAT_CODE0), flat(FLAT_DATA0), seg_desc(0x3000, 0x67, 0x8b, 0)];
    gdt.extend_from_slice(extra_gdt);
    let mut cpu = protected_cpu(&mut bus, &gdt);
    set_seg(&mut cpu, &bus, Seg::Cs, 0x08);
    set_seg(&mut cpu, &bus, Seg::Ss, 0x10);
    set_seg(&mut cpu, &bus, Seg::Ds, 0x10);
    set_tr(&mut cpu, &bus, 0x18);
    cpu.state.gpr[reg::RSP] = 0x8000;
    cpu.state.rip = 0x9000;
    set_idt(&mut bus, 11, gate_desc(0x08, 0x9500, 0x8e, 0));
    set_idt(&mut bus, 13, gate_desc(0x08, 0x9600, 0x8e, 0));
    put_code(&mut bus, 32, 0x9500, |a| {
        a.pop(eax).unwrap();
        a.mov(ebx, 11u32).unwrap();
    });
    put_code(&mut bus, 32, 0x9600, |a| {
        a.pop(eax).unwrap();
        a.mov(ebx, 13u32).unwrap();
    });
    put_code(&mut bus, 32, 0x9000, code);
    run(&mut cpu, &mut bus, n + 2);
    (cpu, bus)
}

fn assert_fault(cpu: &Cpu, bus: &FlatBus, vector: u64, code: u64, at: u32, sp_before: u64) {
    assert_eq!(cpu.state.gpr[reg::RBX], vector, "vector");
    assert_eq!(cpu.state.gpr[reg::RAX], code, "error code");
    // The frame (EIP, CS, EFLAGS) sits right below the faulting instruction's ESP.
    assert_eq!(cpu.state.gpr[reg::RSP], sp_before - 12);
    assert_eq!(r32(bus, sp_before - 12), at, "faulting EIP");
}

#[test]
fn far_transfer_error_codes() {
    let extra = [
        seg_desc(0, 0xfffff, 0x1a, 0xc), // 0x20 code, not present
        gate_desc(0x08, 0x100, 0x8c, 0), // 0x28 call gate, DPL 0
        gate_desc(0x08, 0x100, 0x0c, 0), // 0x30 call gate, not present
        gate_desc(0x10, 0x100, 0x8c, 0), // 0x38 call gate to a data segment
        gate_desc(0x00, 0x100, 0x8c, 0), // 0x40 call gate with a null target
        seg_desc(0, 0xfffff, 0xf2, 0xc), // 0x48 DPL-3 data
    ];
    let (cpu, bus) = fault_case(&extra, 0, |a| a.jmp_far(0x20, 0).unwrap());
    assert_fault(&cpu, &bus, 11, 0x20, 0x9000, 0x8000);
    let (cpu, bus) = fault_case(&extra, 0, |a| a.call_far(0x2b, 0).unwrap());
    assert_fault(&cpu, &bus, 13, 0x28, 0x9000, 0x8000);
    let (cpu, bus) = fault_case(&extra, 0, |a| a.call_far(0x30, 0).unwrap());
    assert_fault(&cpu, &bus, 11, 0x30, 0x9000, 0x8000);
    let (cpu, bus) = fault_case(&extra, 0, |a| a.call_far(0x38, 0).unwrap());
    assert_fault(&cpu, &bus, 13, 0x10, 0x9000, 0x8000);
    let (cpu, bus) = fault_case(&extra, 0, |a| a.call_far(0x40, 0).unwrap());
    assert_fault(&cpu, &bus, 13, 0, 0x9000, 0x8000);
    // A busy TSS is not a valid JMP target.
    let (cpu, bus) = fault_case(&extra, 0, |a| a.jmp_far(0x18, 0).unwrap());
    assert_fault(&cpu, &bus, 13, 0x18, 0x9000, 0x8000);
    // Data segment as a far JMP target.
    let (cpu, bus) = fault_case(&extra, 0, |a| a.jmp_far(0x10, 0).unwrap());
    assert_fault(&cpu, &bus, 13, 0x10, 0x9000, 0x8000);
    // Offset beyond the limit of the target code segment.
    let small = [seg_desc(0, 0xfff, 0x9a, 0x4)]; // 0x20: 4 KiB code
    let (cpu, bus) = fault_case(&small, 0, |a| a.jmp_far(0x20, 0x1000).unwrap());
    assert_fault(&cpu, &bus, 13, 0, 0x9000, 0x8000);
}

#[test]
fn far_return_error_codes() {
    let extra = [seg_desc(0, 0xfffff, 0xfa, 0xc), seg_desc(0, 0xfffff, 0xf2, 0xc)]; // 0x20 code3, 0x28 data3
                                                                                    // RETF to a null CS.
    let (cpu, bus) = fault_case(&extra, 2, |a| {
        a.push(0).unwrap();
        a.push(0x1234).unwrap();
        a.retf().unwrap();
    });
    assert_fault(&cpu, &bus, 13, 0, 0x9000 + 7, 0x8000 - 8);
    // IRET to ring 3 whose SS has RPL 0: #GP(SS selector).
    let pushes = |a: &mut CodeAssembler| {
        a.push(0x28).unwrap();
        a.push(0x6000).unwrap();
        a.push(0x2).unwrap();
        a.push(0x23).unwrap();
        a.push(0x5000).unwrap();
    };
    let at = 0x9000 + code_len(32, pushes) as u32;
    let (cpu, bus) = fault_case(&extra, 5, |a| {
        pushes(a);
        a.iretd().unwrap();
    });
    assert_fault(&cpu, &bus, 13, 0x28, at, 0x8000 - 20);
    // RETF to a non-conforming CS whose DPL differs from its RPL.
    let (cpu, bus) = fault_case(&extra, 2, |a| {
        a.push(0x0b).unwrap();
        a.push(0x1234).unwrap();
        a.retf().unwrap();
    });
    assert_fault(&cpu, &bus, 13, 0x08, 0x9000 + 2 + 5, 0x8000 - 8);
}

#[test]
fn conforming_code_keeps_cpl() {
    let mut bus = FlatBus::new(1 << 20);
    put_code(&mut bus, 32, 0x5000, |a| {
        a.call_far(0x40, 0x9400).unwrap();
        a.mov(esi, 3u32).unwrap();
    });
    put_code(&mut bus, 32, 0x9400, |a| {
        a.mov(eax, cs).unwrap();
        a.retf().unwrap();
    });
    let mut cpu = ring3_cpu(&mut bus);
    run(&mut cpu, &mut bus, 2);
    // CS.RPL takes the CPL; no stack switch.
    assert_eq!(cpu.state.gpr[reg::RAX], 0x43);
    assert_eq!(cpl(&cpu), 3);
    assert_eq!(cpu.state.gpr[reg::RSP], 0x6000 - 8);
    run(&mut cpu, &mut bus, 2);
    assert_eq!(cpu.state.seg(Seg::Cs).selector, 0x1b);
    assert_eq!(cpu.state.gpr[reg::RSI], 3);
    assert_eq!(cpu.state.gpr[reg::RSP], 0x6000);
}

#[test]
fn jmp_to_16bit_tss() {
    let mut bus = FlatBus::new(1 << 20);
    let mut cpu = task_setup(&mut bus);
    // A 16-bit TSS at 0x3300 as GDT entry 0x30.
    w64(&mut bus, GDT + 0x30, seg_desc(0x3300, 0x2b, 0x81, 0));
    cpu.state.gdtr.limit = 0x37;
    w16(&mut bus, 0x330e, 0x9300); // IP
    w16(&mut bus, 0x3310, 0x0002); // FLAGS
    w16(&mut bus, 0x3312, 0x1234); // AX
    w16(&mut bus, 0x331a, 0x5000); // SP
    w16(&mut bus, 0x3322, 0x10); // ES
    w16(&mut bus, 0x3324, 0x08); // CS
    w16(&mut bus, 0x3326, 0x10); // SS
    w16(&mut bus, 0x3328, 0x10); // DS
    set_seg(&mut cpu, &bus, Seg::Fs, 0x10);
    put_code(&mut bus, 32, 0x9000, |a| a.jmp_far(0x30, 0).unwrap());
    run(&mut cpu, &mut bus, 1);
    assert_eq!(cpu.state.tr.selector, 0x30);
    assert_eq!(tss_type(&bus, 0x30), 0x3, "busy 16-bit TSS");
    assert_eq!(cpu.state.rip, 0x9300);
    assert_eq!(cpu.state.gpr[reg::RAX], 0xffff_1234);
    assert_eq!(cpu.state.gpr[reg::RSP], 0xffff_5000);
    assert_eq!(cpu.state.seg(Seg::Fs).selector, 0, "a 16-bit TSS has no FS/GS");
    assert_eq!(cpu.state.seg(Seg::Ss).selector, 0x10);
}

#[test]
fn iret_unblocks_nmi() {
    let mut bus = FlatBus::new(1 << 20);
    // NMI handler at 0000:0600 counts in SI and returns.
    w32(&mut bus, 2 * 4, 0x0000_0600);
    put_code(&mut bus, 16, 0x600, |a| {
        a.inc(si).unwrap();
        a.iret().unwrap();
    });
    put_code(&mut bus, 16, 0x7c00, |a| {
        for _ in 0..8 {
            a.nop().unwrap();
        }
    });
    let mut cpu = Cpu::default();
    let code_seg = cpu.state.seg_mut(Seg::Cs);
    code_seg.selector = 0;
    code_seg.base = 0;
    cpu.state.rip = 0x7c00;
    cpu.state.gpr[reg::RSP] = 0x7000;
    cpu.inject_nmi();
    run(&mut cpu, &mut bus, 1); // NMI delivered, INC SI
    cpu.inject_nmi(); // blocked until the IRET
                      // IRET; the pending NMI is taken at the next boundary, inside this run.
    run(&mut cpu, &mut bus, 1);
    assert_eq!(cpu.state.rip, 0x600);
    assert_eq!(bus.read_u64(0x7000 - 6) as u16, 0x7c00, "the second NMI interrupts the main code");
    run(&mut cpu, &mut bus, 1); // INC SI
    assert_eq!(cpu.state.gpr[reg::RSI] & 0xffff, 2);
}
