//! SHL/SAL SHR SAR ROL ROR RCL RCR SHLD SHRD: results and flags from the SDM pseudo-code,
//! with the undefined flags as Intel cores produce them (see `interp/shift.rs`).

mod int_harness;

use ferrite_cpu::state::flags::*;
use ferrite_cpu::state::reg::*;
use iced_x86::code_asm::*;
use iced_x86::IcedError;
use int_harness::*;

/// Runs one snippet in 64-bit mode with registers and status flags preset.
fn exec(build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>, regs: &[(usize, u64)], status: u64) -> Vm {
    let mut vm = Vm::new(Mode::Long);
    vm.code(build);
    vm.preset(regs, status);
    vm.finish();
    vm
}

#[test]
fn zero_count_keeps_flags_but_zero_extends() {
    let vm = exec(|a| a.shl(eax, cl), &[(RAX, 0xffff_ffff_8000_0001), (RCX, 0)], STATUS);
    assert_eq!(vm.gpr(RAX), 0x8000_0001);
    assert_eq!(vm.status(), STATUS);
    // A 64-bit count of 64 masks to 0: nothing at all changes.
    let vm = exec(|a| a.shl(rax, cl), &[(RAX, 0x8000_0000_0000_0001), (RCX, 64)], CF);
    assert_eq!((vm.gpr(RAX), vm.status()), (0x8000_0000_0000_0001, CF));
    // 16-bit registers are merged, so a zero count leaves the upper bits alone.
    let vm = exec(|a| a.rol(ax, cl), &[(RAX, 0xdead_beef_0000_1234), (RCX, 0)], 0);
    assert_eq!(vm.gpr(RAX), 0xdead_beef_0000_1234);
}

#[test]
fn shl_count_one_and_masked_counts() {
    // 0x81 << 1 = 0x02: CF = old bit 7, OF = CF ^ MSB(result) = 1.
    let vm = exec(|a| a.shl(al, 1), &[(RAX, 0x81)], 0);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0x02, CF | OF));
    // Count 33 masks to 1: 0x40000000 -> 0x80000000, OF = bit31 ^ bit30 = 1, PF of 0x00.
    let vm = exec(|a| a.shl(eax, cl), &[(RAX, 0xffff_ffff_4000_0000), (RCX, 33)], CF);
    assert_eq!((vm.gpr(RAX), vm.status()), (0x8000_0000, OF | SF | PF));
    // 64-bit operands mask to 6 bits: 65 -> 1.
    let vm = exec(|a| a.shl(rax, cl), &[(RAX, 0x8000_0000_0000_0001), (RCX, 65)], 0);
    assert_eq!((vm.gpr(RAX), vm.status()), (2, CF | OF));
}

#[test]
fn shl_counts_beyond_the_width() {
    // Byte shifted by 8: all gone, CF = old bit 0; AF is cleared (Intel).
    let vm = exec(|a| a.shl(al, cl), &[(RAX, 0x01), (RCX, 8)], AF);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0, CF | ZF | PF));
    // By 9: CF = 0 too; OF from the first step (bit7 ^ bit6 of 0xff = 0).
    let vm = exec(|a| a.shl(al, cl), &[(RAX, 0xff), (RCX, 9)], CF | OF);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0, ZF | PF));
    // Word shifted by 16: CF = old bit 0, OF = bit15 ^ bit14.
    let vm = exec(|a| a.shl(ax, cl), &[(RAX, 0x8001), (RCX, 16)], 0);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0, CF | OF | ZF | PF));
}

#[test]
fn shr_and_sar() {
    // SHR by 1: OF = old MSB.
    let vm = exec(|a| a.shr(al, 1), &[(RAX, 0x81)], 0);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0x40, CF | OF));
    // SHR by 3: CF = old bit 2; OF is still the old MSB on Intel.
    let vm = exec(|a| a.shr(al, 3), &[(RAX, 0x84)], 0);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0x10, CF | OF));
    // SAR by 1 of 0x81: 0xc0, OF = 0.
    let vm = exec(|a| a.sar(al, 1), &[(RAX, 0x81)], OF);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0xc0, CF | SF | PF));
    // SAR of a word by 31: sign everywhere, CF = sign.
    let vm = exec(|a| a.sar(ax, cl), &[(RAX, 0x8000), (RCX, 31)], 0);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0xffff, CF | SF | PF));
    // SAR of a positive dword by 4.
    let vm = exec(|a| a.sar(eax, 4), &[(RAX, 0x7fff_fff0)], 0);
    assert_eq!((vm.gpr(RAX), vm.status()), (0x07ff_ffff, PF));
}

#[test]
fn rotates_touch_only_cf_and_of() {
    let others = ZF | SF | PF | AF;
    // ROL 0x81 by 1: 0x03, CF = new bit 0, OF = CF ^ new MSB = 1.
    let vm = exec(|a| a.rol(al, 1), &[(RAX, 0x81)], others);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0x03, others | CF | OF));
    // ROL a byte by 8: value unchanged, but CF = bit 0 and OF = bit7 ^ bit6 (first step).
    let vm = exec(|a| a.rol(al, cl), &[(RAX, 0x41), (RCX, 8)], 0);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0x41, CF | OF));
    let vm = exec(|a| a.rol(eax, 4), &[(RAX, 0x1234_5678)], 0);
    assert_eq!((vm.gpr(RAX), vm.status()), (0x2345_6781, CF));
    // ROR 0x01 by 1: 0x80, CF = new MSB, OF = MSB ^ MSB-1 of the result = 1.
    let vm = exec(|a| a.ror(al, 1), &[(RAX, 0x01)], 0);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0x80, CF | OF));
    // ROR 0x04 by 3: 0x80; OF from the first step = old bit7 ^ old bit0 = 0 (AMD: 1).
    let vm = exec(|a| a.ror(al, 3), &[(RAX, 0x04)], 0);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0x80, CF));
    let vm = exec(|a| a.ror(rax, 8), &[(RAX, 0x0102_0304_0506_0708)], 0);
    assert_eq!((vm.gpr(RAX), vm.status()), (0x0801_0203_0405_0607, 0));
}

#[test]
fn rotates_through_carry() {
    // RCL by 1 with CF = 1: CF enters bit 0, old bit 7 leaves to CF.
    let vm = exec(|a| a.rcl(al, 1), &[(RAX, 0x80)], CF);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0x01, CF | OF));
    // Byte counts are taken modulo 9: 9 changes nothing, 10 acts as 1.
    let vm = exec(|a| a.rcl(al, cl), &[(RAX, 0x5a), (RCX, 9)], CF);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0x5a, CF));
    let vm = exec(|a| a.rcl(al, cl), &[(RAX, 0x80), (RCX, 10)], ZF);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0x00, ZF | CF | OF));
    // Word counts modulo 17.
    let vm = exec(|a| a.rcr(ax, cl), &[(RAX, 0x1234), (RCX, 17)], CF);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0x1234, CF));
    // RCR by 1: OF = old CF ^ old MSB.
    let vm = exec(|a| a.rcr(al, 1), &[(RAX, 0x81)], 0);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0x40, CF | OF));
    // RCR by 2 with CF = 1: 0x01 -> 0x80 (CF=1) -> 0xc0 (CF=0); OF from the first step = 1.
    let vm = exec(|a| a.rcr(al, 2), &[(RAX, 0x01)], CF);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.status()), (0xc0, OF));
    // 64-bit RCL by 63.
    let vm = exec(|a| a.rcl(rax, 63), &[(RAX, 0x2)], 0);
    // 65-bit CF:RAX = 0:...010 rotated left by 63 = right by 2: bit 1 -> CF position? bit (1+63) mod 65 = 64 = CF.
    assert_eq!((vm.gpr(RAX), vm.status() & CF), (0, CF));
}

#[test]
fn double_precision_shifts() {
    let vm = exec(|a| a.shld(eax, ebx, 4), &[(RAX, 0x1234_5678), (RBX, 0x9abc_def0)], 0);
    assert_eq!((vm.gpr(RAX), vm.status()), (0x2345_6789, CF));
    let vm = exec(|a| a.shrd(eax, ebx, 4), &[(RAX, 0x1234_5678), (RBX, 0x9abc_def1)], 0);
    assert_eq!((vm.gpr(RAX), vm.status()), (0x1123_4567, CF | OF));
    // 16-bit counts above 16 shift dst:src:dst (Intel P6 and later).
    let vm = exec(|a| a.shld(ax, bx, cl), &[(RAX, 0x1234), (RBX, 0xabcd), (RCX, 20)], 0);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0xbcd1, SF | PF));
    let vm = exec(|a| a.shrd(ax, bx, cl), &[(RAX, 0x1234), (RBX, 0xabcd), (RCX, 20)], 0);
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0x4abc, CF | OF));
    // 64-bit.
    let vm = exec(|a| a.shld(rax, rbx, cl), &[(RAX, 1), (RBX, 0x8000_0000_0000_0000), (RCX, 63)], 0);
    assert_eq!(vm.gpr(RAX), 0xc000_0000_0000_0000);
    // Count 0: flags kept, 32-bit destination zero-extended.
    let vm = exec(|a| a.shrd(eax, ebx, cl), &[(RAX, 0xffff_ffff_0000_0001), (RBX, 5), (RCX, 32)], CF | ZF);
    assert_eq!((vm.gpr(RAX), vm.status()), (1, CF | ZF));
}

#[test]
fn memory_destination() {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| {
        a.shl(dword_ptr(rbx), cl)?;
        a.rcr(word_ptr(rbx + 4), 1)
    });
    vm.write(DATA, &[0x01, 0, 0, 0x40, 0x03, 0x00]);
    vm.preset(&[(RBX, DATA), (RCX, 1)], CF);
    vm.finish();
    // SHL: 0x40000001 -> 0x80000002 with CF = 0; then RCR 0x0003 with that CF: 0x0001,
    // CF = old bit 0 = 1, OF = old CF ^ old MSB = 0.
    assert_eq!(vm.read(DATA, 6), &[0x02, 0, 0, 0x80, 0x01, 0x00]);
    assert_eq!(vm.status() & (CF | OF), CF);
}

#[test]
fn real_mode_word_shift() {
    let mut vm = Vm::new(Mode::Real);
    vm.code(|a| a.sal(ax, 1));
    vm.preset(&[(RAX, 0x4000)], 0);
    vm.finish();
    assert_eq!((vm.gpr(RAX) & 0xffff, vm.status()), (0x8000, OF | SF | PF));
}
