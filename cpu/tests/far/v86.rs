//! Virtual-8086 mode: entering it by IRET, leaving it by INT, and IRET inside it.

use super::*;

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
