//! BT BTS BTR BTC (register and immediate offsets, signed bit displacements into memory),
//! BSF BSR, LZCNT/TZCNT (and their BSR/BSF behaviour on CPUs without the feature), POPCNT.

mod int_harness;

use ferrite_cpu::state::flags::*;
use ferrite_cpu::state::reg::*;
use ferrite_cpu::CpuModel;
use iced_x86::code_asm::*;
use iced_x86::IcedError;
use int_harness::*;

const R8: usize = 8;
const R9: usize = 9;
const R10: usize = 10;

fn exec(build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>, regs: &[(usize, u64)], status: u64) -> Vm {
    let mut vm = Vm::new(Mode::Long);
    vm.code(build);
    vm.preset(regs, status);
    vm.finish();
    vm
}

#[test]
fn bt_family_registers() {
    let others = ZF | SF | OF | PF | AF;
    let vm = exec(|a| a.bt(eax, 3), &[(RAX, 0x8)], others);
    assert_eq!(vm.status(), others | CF);
    // Register offsets into a register are taken modulo the operand width.
    let vm = exec(|a| a.bt(eax, ebx), &[(RAX, 0x8), (RBX, 35)], 0);
    assert_eq!(vm.status(), CF);
    let vm = exec(|a| a.bts(eax, 31), &[(RAX, 0xffff_ffff_0000_0000)], CF);
    assert_eq!((vm.gpr(RAX), vm.status()), (0x8000_0000, 0));
    let vm = exec(|a| a.btr(rax, 63), &[(RAX, 0x8000_0000_0000_0001)], 0);
    assert_eq!((vm.gpr(RAX), vm.status()), (1, CF));
    let vm = exec(|a| a.btc(ax, 15), &[(RAX, 0x1234_0000)], 0);
    assert_eq!((vm.gpr(RAX), vm.status()), (0x1234_8000, 0));
}

#[test]
fn bt_register_offset_reaches_outside_the_operand() {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| {
        // Bit 35 of [rbx]: dword at rbx+4, bit 3 -> CF=1, then set bit 2 of the same dword.
        a.bt(dword_ptr(rbx), ecx)?;
        a.setc(r8b)?;
        a.bts(dword_ptr(rbx), edx)?;
        // -1: dword at rbx-4, bit 31.
        a.btr(dword_ptr(rbx), esi)?;
        a.setc(r9b)?;
        // Word offset -16: word at rbx-2, bit 0.
        a.btc(word_ptr(rbx), di)?;
        // Qword offset 130: qword at rbx+16, bit 2.
        a.bts(qword_ptr(rbx), r10)?;
        // An immediate offset stays inside the operand (35 & 31 = 3).
        a.bts(dword_ptr(rbx), 35)
    });
    let base = DATA + 0x100;
    vm.write(base - 4, &0x8000_0000u32.to_le_bytes());
    vm.write(base + 4, &0x8u32.to_le_bytes());
    vm.preset(&[(RBX, base), (RCX, 35), (RDX, 34), (RSI, 0xffff_ffff), (RDI, 0xfff0), (R10, 130)], 0);
    vm.finish();
    assert_eq!(vm.gpr(R8) & 0xff, 1);
    assert_eq!(vm.gpr(R9) & 0xff, 1);
    assert_eq!(vm.read(base + 4, 4), &0xcu32.to_le_bytes());
    assert_eq!(vm.read(base - 4, 4), &[0, 0, 1, 0]);
    assert_eq!(vm.read(base + 16, 8), &4u64.to_le_bytes());
    assert_eq!(vm.read(base, 4), &8u32.to_le_bytes());
    assert_eq!(vm.status() & CF, 0);
}

#[test]
fn bit_scans() {
    // Non-zero source: index, every flag cleared except PF = parity(index).
    let vm = exec(|a| a.bsf(eax, ebx), &[(RBX, 0x100)], STATUS);
    assert_eq!((vm.gpr(RAX), vm.status()), (8, 0));
    let vm = exec(|a| a.bsf(ecx, edx), &[(RDX, 0x8)], 0);
    assert_eq!((vm.gpr(RCX), vm.status()), (3, PF));
    let vm = exec(|a| a.bsr(eax, ebx), &[(RBX, 0x8000_0001)], 0);
    assert_eq!(vm.gpr(RAX), 31);
    let vm = exec(|a| a.bsr(rax, rbx), &[(RBX, 1 << 40)], 0);
    assert_eq!(vm.gpr(RAX), 40);
    // Zero source: destination untouched (all 64 bits), ZF = PF = 1, the rest cleared.
    let vm = exec(|a| a.bsf(eax, ebx), &[(RAX, 0xdead_beef_cafe_f00d), (RBX, 0)], CF | OF | SF | AF);
    assert_eq!((vm.gpr(RAX), vm.status()), (0xdead_beef_cafe_f00d, ZF | PF));
    let vm = exec(|a| a.bsr(ax, bx), &[(RAX, 0x1234), (RBX, 0xffff_0000)], 0);
    assert_eq!((vm.gpr(RAX), vm.status()), (0x1234, ZF | PF));
}

#[test]
fn lzcnt_with_the_feature() {
    assert!(CpuModel::max().has("lzcnt"));
    let vm = exec(|a| a.lzcnt(eax, ebx), &[(RBX, 0xffff)], STATUS);
    assert_eq!((vm.gpr(RAX), vm.status()), (16, 0));
    let vm = exec(|a| a.lzcnt(eax, ebx), &[(RBX, 0)], 0);
    assert_eq!((vm.gpr(RAX), vm.status()), (32, CF));
    let vm = exec(|a| a.lzcnt(rax, rbx), &[(RBX, 1)], 0);
    assert_eq!((vm.gpr(RAX), vm.status()), (63, PF));
    let vm = exec(|a| a.lzcnt(ax, bx), &[(RAX, 0x5555_0000), (RBX, 0x8000)], 0);
    assert_eq!((vm.gpr(RAX), vm.status()), (0x5555_0000, ZF | PF));
}

#[test]
fn lzcnt_tzcnt_without_the_feature_are_bsr_bsf() {
    // qemu64 has no LZCNT: F3 0F BD runs as BSR.
    let mut vm = Vm::new(Mode::Long);
    vm.cpu.model = CpuModel::qemu64();
    vm.code(|a| a.lzcnt(eax, ebx));
    vm.preset(&[(RBX, 0xffff)], 0);
    vm.finish();
    assert_eq!(vm.gpr(RAX), 15);
    // Without BMI1 (qemu64), TZCNT is BSF: a zero source keeps the destination.
    let bsf = |regs: &[(usize, u64)]| {
        let mut vm = Vm::new(Mode::Long);
        vm.cpu.model = CpuModel::qemu64();
        vm.code(|a| a.tzcnt(eax, ebx));
        vm.preset(regs, 0);
        vm.finish();
        vm
    };
    let vm = bsf(&[(RAX, 77), (RBX, 0)]);
    assert_eq!((vm.gpr(RAX), vm.status()), (77, ZF | PF));
    assert_eq!(bsf(&[(RBX, 0x50)]).gpr(RAX), 4);
    // With BMI1 (the default model) it counts: 32 for a zero source, with CF.
    let vm = exec(|a| a.tzcnt(eax, ebx), &[(RAX, 77), (RBX, 0)], 0);
    assert_eq!((vm.gpr(RAX), vm.status() & CF), (32, CF));
}

#[test]
fn popcnt_flags() {
    let vm = exec(|a| a.popcnt(eax, ebx), &[(RBX, 0xf0f0)], STATUS);
    assert_eq!((vm.gpr(RAX), vm.status()), (8, 0));
    let vm = exec(|a| a.popcnt(rax, rbx), &[(RAX, 5), (RBX, 0)], STATUS);
    assert_eq!((vm.gpr(RAX), vm.status()), (0, ZF));
    let vm = exec(|a| a.popcnt(ax, bx), &[(RAX, 0xaaaa_0000), (RBX, 0xffff_ffff)], 0);
    assert_eq!(vm.gpr(RAX), 0xaaaa_0010);
    // A model without POPCNT raises #UD.
    let mut vm = Vm::new(Mode::Long);
    vm.cpu.model = CpuModel::qemu64();
    vm.code(|a| a.popcnt(eax, ebx));
    assert_eq!(vm.run(), Stop::Exception(6));
}
