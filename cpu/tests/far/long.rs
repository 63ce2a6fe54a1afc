//! IA-32e mode: IRETQ to compatibility mode, far JMP/CALL/RETF between 64-bit and
//! compatibility code, and a 64-bit call gate from ring 3.

use super::*;

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
