//! Error codes of faulting far transfers and returns.

use super::*;

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
fn iret_to_absent_code_segment() {
    let extra = [seg_desc(0, 0xfffff, 0x1a, 0xc)]; // 0x20 code, not present
    let pushes = |a: &mut CodeAssembler| {
        a.push(0x2).unwrap();
        a.push(0x20).unwrap();
        a.push(0x1234).unwrap();
    };
    let at = 0x9000 + code_len(32, pushes) as u32;
    let (cpu, bus) = fault_case(&extra, 3, |a| {
        pushes(a);
        a.iretd().unwrap();
    });
    assert_fault(&cpu, &bus, 11, 0x20, at, 0x8000 - 12);
}
