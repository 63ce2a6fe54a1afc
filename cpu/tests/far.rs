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

// The tests/far/ files are modules of this test crate (not test crates of their own).
#[path = "far/faults.rs"]
mod faults;
#[path = "far/long.rs"]
mod long;
#[path = "far/task.rs"]
mod task;
#[path = "far/v86.rs"]
mod v86;

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
