//! Hardware task switches: JMP/CALL to a TSS, #DF through a task gate, IRET with NT.

use super::*;

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

/// Task B with a #TS handler (IDT 10 -> ring-0 code at 0x9400 that pops the error code into
/// EAX and reads the saved EIP into EBX); B's ring-0 stack is 0x10:0x7800.
fn ts_handler(bus: &mut FlatBus) {
    set_idt(bus, 10, gate_desc(0x08, 0x9400, 0x8e, 0));
    put_code(bus, 32, 0x9400, |a| {
        a.pop(eax).unwrap();
        a.mov(ebx, dword_ptr(esp)).unwrap();
    });
    w32(bus, 0x3104, 0x7800);
    w32(bus, 0x3108, 0x10);
}

#[test]
fn task_switch_fault_after_commit_is_raised_in_the_new_task() {
    let mut bus = FlatBus::new(1 << 20);
    let mut cpu = task_setup(&mut bus);
    ts_handler(&mut bus);
    // B's SS names a code segment: #TS(SS) after the commit point.
    w16(&mut bus, 0x3150, 0x08);
    run(&mut cpu, &mut bus, 3);
    assert_eq!(cpu.state.tr.selector, 0x20, "the switch completed");
    assert_eq!(tss_type(&bus, 0x18), 0x9);
    assert_eq!(cpu.state.gpr[reg::RAX], 0x08, "#TS(SS selector)");
    assert_eq!(cpu.state.gpr[reg::RBX], 0x9100, "raised at the new task's first instruction");
    // Delivered through B's ring-0 stack: the frame holds B's SS selector and ESP.
    assert_eq!(cpu.state.gpr[reg::RSP], 0x7800 - 20);
    assert_eq!(r32(&bus, 0x7800 - 8), 0x7000);
    assert_eq!(r32(&bus, 0x7800 - 4), 0x08);
    assert_eq!(r32(&bus, 0x3020), 0x900c, "A was saved");
}

#[test]
fn task_switch_to_short_tss_faults_in_the_old_task() {
    let mut bus = FlatBus::new(1 << 20);
    let mut cpu = task_setup(&mut bus);
    ts_handler(&mut bus);
    w64(&mut bus, GDT + 0x20, seg_desc(0x3100, 0x50, 0x89, 0));
    run(&mut cpu, &mut bus, 3);
    assert_eq!(cpu.state.tr.selector, 0x18);
    assert_eq!(cpu.state.gpr[reg::RAX], 0x20, "#TS(new TSS)");
    assert_eq!(cpu.state.gpr[reg::RBX], 0x9005, "raised at the JMP");
    assert_eq!(tss_type(&bus, 0x18), 0xb, "nothing changed");
    assert_eq!(tss_type(&bus, 0x20), 0x9);
    assert_eq!(r32(&bus, 0x3020), 0, "A not saved");
}

/// A TSS with its T bit set raises a #DB trap with DR6.BT once the switch to it completes,
/// before the new task's first instruction; the switch clears DR7's local enables L0-L3 and
/// LE and keeps the global ones (SDM Vol. 3, 18.2.3, 18.2.4, 18.3.1.5).
#[test]
fn task_switch_to_a_tss_with_the_t_bit_traps_with_bt() {
    let mut bus = FlatBus::new(1 << 20);
    let mut cpu = task_setup(&mut bus);
    w16(&mut bus, 0x3100 + 0x64, 1);
    set_idt(&mut bus, 1, gate_desc(0x08, 0x9f80, 0x8e, 0));
    put_code(&mut bus, 32, 0x9f80, |a| a.hlt().unwrap());
    cpu.state.dr[7] = 0x400 | 0x1 | 0x8 | 0x100; // L0, G1, LE
    assert_eq!(cpu.run(&mut bus, 100), ferrite_cpu::RunExit::Halted);
    assert_eq!(cpu.state.tr.selector, 0x20);
    assert_eq!(cpu.state.rip, 0x9f81, "in the #DB handler");
    let top = cpu.state.gpr[reg::RSP];
    assert_eq!(r32(&bus, top), 0x9100, "before the new task's first instruction");
    assert_eq!(cpu.state.dr[6] & (1 << 15), 1 << 15, "BT");
    assert_eq!(cpu.state.dr[7] & 0x1ff, 0x8, "local enables cleared, G1 kept");
    assert_eq!(cpu.state.gpr[reg::RCX], 0, "the new task ran nothing");
}
