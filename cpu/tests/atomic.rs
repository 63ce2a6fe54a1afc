//! CMPXCHG CMPXCHG8B CMPXCHG16B XADD: success and failure paths, which registers are written
//! (and zero-extended), write-back of memory on failure, alignment, and LOCK validity.

mod int_harness;

use ferrite_cpu::state::flags::*;
use ferrite_cpu::state::reg::*;
use iced_x86::code_asm::*;
use iced_x86::IcedError;
use int_harness::*;

fn exec(
    build: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
    mem: &[u8],
    regs: &[(usize, u64)],
    status: u64,
) -> Vm {
    let mut vm = Vm::new(Mode::Long);
    vm.code(build);
    vm.write(DATA, mem);
    vm.preset(regs, status);
    vm.preset(&[(RBX, DATA)], status);
    vm.finish();
    vm
}

#[test]
fn cmpxchg_memory() {
    // Match: memory takes ECX, ZF = 1, RAX untouched (upper half too).
    let vm = exec(
        |a| a.lock().cmpxchg(dword_ptr(rbx), ecx),
        &5u32.to_le_bytes(),
        &[(RAX, 0xffff_ffff_0000_0005), (RCX, 9)],
        0,
    );
    assert_eq!(vm.read(DATA, 4), &9u32.to_le_bytes());
    assert_eq!((vm.gpr(RAX), vm.status()), (0xffff_ffff_0000_0005, ZF | PF));
    // Mismatch: EAX takes the memory value (zero-extending RAX); flags of 5 - 7.
    let vm =
        exec(|a| a.cmpxchg(dword_ptr(rbx), ecx), &7u32.to_le_bytes(), &[(RAX, 0xffff_ffff_0000_0005), (RCX, 9)], 0);
    assert_eq!(vm.read(DATA, 4), &7u32.to_le_bytes());
    assert_eq!((vm.gpr(RAX), vm.status()), (7, CF | AF | SF));
    // Byte form with AL.
    let vm = exec(|a| a.cmpxchg(byte_ptr(rbx), cl), &[0x42], &[(RAX, 0x1142), (RCX, 0x77)], 0);
    assert_eq!((vm.read(DATA, 1)[0], vm.gpr(RAX)), (0x77, 0x1142));
}

#[test]
fn cmpxchg_register() {
    // Match: the destination register takes the source (zero-extended).
    let vm =
        exec(|a| a.cmpxchg(edx, ecx), &[], &[(RAX, 3), (RDX, 0xaaaa_aaaa_0000_0003), (RCX, 0xbbbb_bbbb_0000_0009)], 0);
    assert_eq!((vm.gpr(RDX), vm.gpr(RAX), vm.status() & ZF), (9, 3, ZF));
    // Mismatch: the SDM's pseudo-code writes DEST back with its own value (DEST := TEMP), which
    // for a 32-bit register zero-extends it; EAX takes the value. KVM's emulator agrees.
    let vm =
        exec(|a| a.cmpxchg(edx, ecx), &[], &[(RAX, 0xcccc_cccc_0000_0003), (RDX, 0xaaaa_aaaa_0000_0004), (RCX, 9)], 0);
    assert_eq!((vm.gpr(RDX), vm.gpr(RAX), vm.status() & ZF), (4, 4, 0));
    // 64-bit.
    let vm = exec(|a| a.cmpxchg(rdx, rcx), &[], &[(RAX, 1 << 40), (RDX, 1 << 40), (RCX, 5)], 0);
    assert_eq!(vm.gpr(RDX), 5);
}

#[test]
fn cmpxchg_faults_as_a_write_even_when_it_fails() {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| a.cmpxchg(dword_ptr(rbx), ecx));
    vm.write(DATA, &7u32.to_le_bytes());
    vm.write_protect(DATA);
    // Supervisor writes honour read-only pages only with CR0.WP.
    vm.cpu.state.cr0 |= ferrite_cpu::state::cr0::WP;
    vm.preset(&[(RAX, 5), (RBX, DATA)], 0);
    assert_eq!(vm.run(), Stop::Exception(14));
    // Present + write.
    assert_eq!(vm.frame(0), 3);
    assert_eq!(vm.gpr(RAX), 5);
}

#[test]
fn cmpxchg8b() {
    let mem = 0x1111_2222_3333_4444u64.to_le_bytes();
    let others = CF | SF | OF;
    // Match: memory takes ECX:EBX, only ZF changes.
    let vm2 = {
        let mut vm = Vm::new(Mode::Long);
        vm.code(|a| a.cmpxchg8b(qword_ptr(rsi)));
        vm.write(DATA, &mem);
        vm.preset(&[(RSI, DATA), (RDX, 0x1111_2222), (RAX, 0x3333_4444), (RCX, 0xaaaa), (RBX, 0xbbbb)], others);
        vm.finish();
        vm
    };
    assert_eq!(vm2.read(DATA, 8), &0x0000_aaaa_0000_bbbbu64.to_le_bytes()[..]);
    assert_eq!(vm2.status(), others | ZF);
    // Mismatch: EDX:EAX take the memory value, zero-extended; memory unchanged.
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| a.cmpxchg8b(qword_ptr(rsi)));
    vm.write(DATA, &mem);
    vm.preset(&[(RSI, DATA), (RDX, 0xffff_ffff_0000_0000), (RAX, 0xffff_ffff_0000_0001)], ZF | PF);
    vm.finish();
    assert_eq!((vm.gpr(RDX), vm.gpr(RAX), vm.status()), (0x1111_2222, 0x3333_4444, PF));
    assert_eq!(vm.read(DATA, 8), &mem);
}

#[test]
fn cmpxchg16b_alignment_and_results() {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| {
        a.lock().cmpxchg16b(xmmword_ptr(rsi))?;
        a.mov(r8, rax)?;
        a.mov(r9, rdx)?;
        a.cmpxchg16b(xmmword_ptr(rsi))
    });
    vm.write(DATA, &1u64.to_le_bytes());
    vm.write(DATA + 8, &2u64.to_le_bytes());
    vm.preset(&[(RSI, DATA), (RAX, 1), (RDX, 2), (RBX, 10), (RCX, 20)], 0);
    vm.finish();
    // First: match, memory = RCX:RBX. Second: mismatch (RDX:RAX = 2:1), loads 20:10.
    assert_eq!((vm.gpr(8), vm.gpr(9)), (1, 2));
    assert_eq!((vm.gpr(RAX), vm.gpr(RDX), vm.status() & ZF), (10, 20, 0));
    assert_eq!(vm.read(DATA, 16)[..9], [10, 0, 0, 0, 0, 0, 0, 0, 20]);
    // Misaligned: #GP(0), memory untouched.
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| a.cmpxchg16b(xmmword_ptr(rsi)));
    vm.preset(&[(RSI, DATA + 8)], 0);
    assert_eq!(vm.run(), Stop::Exception(13));
    assert_eq!(vm.frame(0), 0);
}

#[test]
fn xadd_forms() {
    let vm =
        exec(|a| a.lock().xadd(dword_ptr(rbx), ecx), &0xffff_fffeu32.to_le_bytes(), &[(RCX, 0xdddd_dddd_0000_0003)], 0);
    assert_eq!(vm.read(DATA, 4), &1u32.to_le_bytes());
    assert_eq!(vm.gpr(RCX), 0xffff_fffe);
    assert_eq!(vm.status(), CF | AF);
    // Register form: source gets the old destination, destination the sum.
    let vm = exec(|a| a.xadd(al, cl), &[], &[(RAX, 0x7f), (RCX, 1)], 0);
    assert_eq!((vm.gpr(RAX) & 0xff, vm.gpr(RCX) & 0xff, vm.status()), (0x80, 0x7f, OF | SF | AF));
    // Same register twice: the sum wins.
    let vm = exec(|a| a.xadd(rdx, rdx), &[], &[(RDX, 21)], 0);
    assert_eq!(vm.gpr(RDX), 42);
}

#[test]
fn invalid_lock_prefixes_are_ud() {
    // lock add eax, ecx (register destination); lock bt [rax], ecx (BT cannot be locked);
    // lock cmpxchg eax, ecx.
    for bytes in [&[0xf0, 0x01, 0xc8][..], &[0xf0, 0x0f, 0xa3, 0x08], &[0xf0, 0x0f, 0xb1, 0xc8]] {
        let mut vm = Vm::new(Mode::Long);
        vm.set_code(bytes);
        assert_eq!(vm.run(), Stop::Exception(6), "{bytes:02x?}");
    }
    // cmpxchg8b with a register operand.
    let mut vm = Vm::new(Mode::Long);
    vm.set_code(&[0x0f, 0xc7, 0xc8]);
    assert_eq!(vm.run(), Stop::Exception(6));
}
