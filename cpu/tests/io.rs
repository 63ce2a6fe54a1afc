//! IN OUT INS OUTS: port and size decoding, REP forms, and the I/O permission rules
//! (CPL > IOPL or virtual-8086 mode: TSS bitmap, #GP(0) when denied or out of the TSS).

mod int_harness;

use ferrite_cpu::state::flags::*;
use ferrite_cpu::state::reg::*;
use ferrite_cpu::state::{seg_attr, Seg, Segment};
use iced_x86::code_asm::*;
use int_harness::*;

#[test]
fn in_out_sizes_and_ports() {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| {
        a.out(0x80, al)?;
        a.out(dx, ax)?;
        a.out(dx, eax)?;
        a.in_(al, 0x60)?;
        a.mov(rbx, rax)?;
        a.in_(eax, dx)
    });
    vm.bus.io_read_value = 0xa1b2_c3d4;
    vm.preset(&[(RAX, 0xffff_ffff_1234_5678), (RDX, 0x3f8)], 0);
    vm.finish();
    assert_eq!(vm.bus.io_writes, vec![(0x80, 1, 0x78), (0x3f8, 2, 0x5678), (0x3f8, 4, 0x1234_5678)]);
    // IN AL merges; IN EAX zero-extends RAX.
    assert_eq!(vm.gpr(RBX), 0xffff_ffff_1234_56d4);
    assert_eq!(vm.gpr(RAX), 0xa1b2_c3d4);
}

#[test]
fn rep_outs_and_ins_real_mode() {
    let mut vm = Vm::new(Mode::Real);
    vm.code(|a| {
        a.rep().outsw()?;
        a.mov(cx, 3)?;
        a.rep().insb()
    });
    let base = REAL_DATA;
    vm.cpu.state.seg_mut(Seg::Ds).selector = (base >> 4) as u16;
    vm.cpu.state.seg_mut(Seg::Ds).base = base;
    vm.cpu.state.seg_mut(Seg::Es).selector = (base >> 4) as u16;
    vm.cpu.state.seg_mut(Seg::Es).base = base;
    vm.write(base, &[0x01, 0x02, 0x03, 0x04]);
    vm.bus.io_read_value = 0x99;
    vm.preset(&[(RSI, 0), (RDI, 0x10), (RCX, 2), (RDX, 0x1f0)], 0);
    vm.finish();
    assert_eq!(vm.bus.io_writes, vec![(0x1f0, 2, 0x0201), (0x1f0, 2, 0x0403)]);
    assert_eq!(vm.read(base + 0x10, 4), &[0x99, 0x99, 0x99, 0]);
    assert_eq!((vm.gpr(RSI), vm.gpr(RDI), vm.gpr(RCX) & 0xffff), (4, 0x13, 0));
}

/// Sets bit `port` of the TSS I/O permission bitmap.
fn deny(vm: &mut Vm, port: u16) {
    let at = IO_BITMAP + port as u64 / 8;
    let b = vm.read(at, 1)[0] | 1 << (port & 7);
    vm.write(at, &[b]);
}

fn user_io(
    build: impl FnOnce(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>,
    setup: impl FnOnce(&mut Vm),
) -> Vm {
    let mut vm = Vm::user(Mode::Long);
    vm.code(build);
    vm.preset(&[(RDX, 0x3f8)], 0);
    setup(&mut vm);
    vm
}

#[test]
fn bitmap_allows_clear_ports() {
    let mut vm = user_io(
        |a| {
            a.out(dx, ax)?;
            a.in_(al, dx)
        },
        |vm| deny(vm, 0x3fa),
    );
    vm.finish();
    assert_eq!(vm.bus.io_writes, vec![(0x3f8, 2, 0)]);
}

#[test]
fn bitmap_denial_raises_gp0() {
    // A word access at 0x3f8 also touches 0x3f9, whose bit is set.
    let mut vm = user_io(|a| a.out(dx, ax), |vm| deny(vm, 0x3f9));
    assert_eq!(vm.run(), Stop::Exception(13));
    assert_eq!((vm.frame(0), vm.frame(1)), (0, CODE));
    assert!(vm.bus.io_writes.is_empty());
    // The same through INS: nothing is read or stored.
    let mut vm = user_io(|a| a.insb(), |vm| deny(vm, 0x3f8));
    vm.preset(&[(RDI, DATA)], 0);
    assert_eq!(vm.run(), Stop::Exception(13));
    assert_eq!(vm.gpr(RDI), DATA);
}

#[test]
fn bitmap_reads_two_bytes_within_the_limit() {
    // Port 0xffff: a byte access uses the last map byte only; a word access needs bit 0 of
    // the trailing 0xff byte, which denies it.
    let mut vm = user_io(|a| a.in_(al, dx), |vm| vm.cpu.state.gpr[RDX] = 0xffff);
    vm.finish();
    let mut vm = user_io(|a| a.in_(ax, dx), |vm| vm.cpu.state.gpr[RDX] = 0xffff);
    assert_eq!(vm.run(), Stop::Exception(13));
    // A map that ends before the port's byte (TSS limit) denies everything past it.
    let mut vm = user_io(|a| a.in_(al, dx), |vm| vm.cpu.state.tr.limit = 0x68 + 0x10);
    assert_eq!(vm.run(), Stop::Exception(13));
    // A 16-bit TSS has no bitmap at all.
    let mut vm = user_io(|a| a.in_(al, dx), |vm| vm.cpu.state.tr.attrs = 0x83);
    assert_eq!(vm.run(), Stop::Exception(13));
}

#[test]
fn iopl_lets_cpl3_skip_the_bitmap() {
    let mut vm = user_io(
        |a| a.out(dx, al),
        |vm| {
            deny(vm, 0x3f8);
            let f = vm.cpu.rflags();
            vm.cpu.set_rflags(f | IOPL);
        },
    );
    vm.finish();
    assert_eq!(vm.bus.io_writes.len(), 1);
    // Kernel mode never consults the map.
    let mut vm = Vm::new(Mode::Protected32);
    vm.code(|a| a.out(dx, al));
    deny(&mut vm, 0x3f8);
    vm.preset(&[(RDX, 0x3f8)], 0);
    vm.finish();
}

/// Enters virtual-8086 mode with IOPL 3 at CS:IP = (CODE >> 4):0.
fn v86(vm: &mut Vm) {
    let attrs =
        seg_attr::P | seg_attr::S | seg_attr::TYPE_WRITABLE | seg_attr::TYPE_ACCESSED | (3 << seg_attr::DPL_SHIFT);
    let real = |sel: u16| Segment { selector: sel, attrs, limit: 0xffff, base: (sel as u64) << 4 };
    let st = &mut vm.cpu.state;
    st.seg[Seg::Cs as usize] = real((CODE >> 4) as u16);
    st.seg[Seg::Ss as usize] = real(0x7000);
    for s in [Seg::Ds, Seg::Es, Seg::Fs, Seg::Gs] {
        st.seg[s as usize] = real(0);
    }
    st.rip = 0;
    st.gpr[RSP] = 0xfff0;
    // Ring-0 stack for the exception: ESP0 and SS0 in the TSS.
    vm.write(TSS + 4, &(STACK_TOP as u32).to_le_bytes());
    vm.write(TSS + 8, &(SEL_DATA as u32).to_le_bytes());
    let f = vm.cpu.rflags();
    vm.cpu.set_rflags(f | VM | IOPL);
}

#[test]
fn v86_always_checks_the_bitmap() {
    let mut vm = Vm::new(Mode::Protected32);
    vm.set_code(&[0xee]); // out dx, al
    v86(&mut vm);
    vm.preset(&[(RDX, 0x3f8)], 0);
    deny(&mut vm, 0x3f8);
    // IOPL is 3, yet the map is consulted and denies the port.
    assert_eq!(vm.run(), Stop::Exception(13));
    // Frame on the ring-0 stack: error code 0, then IP 0 of the OUT.
    assert_eq!((vm.frame(0), vm.frame(1)), (0, 0));
    assert!(vm.bus.io_writes.is_empty());

    let mut vm = Vm::new(Mode::Protected32);
    vm.set_code(&[0xee]);
    v86(&mut vm);
    vm.preset(&[(RDX, 0x3f0)], 0);
    deny(&mut vm, 0x3f8);
    // Port 0x3f0's bit is clear: allowed.
    vm.finish();
    assert_eq!(vm.bus.io_writes, vec![(0x3f0, 1, 0)]);
}
