//! MOVS CMPS SCAS LODS STOS: REP prefixes, direction, address sizes, segment overrides,
//! restart after a fault in the middle of a REP loop, and yielding for interrupts and
//! single-step traps between iterations.

mod int_harness;

use ferrite_cpu::state::flags::*;
use ferrite_cpu::state::reg::*;
use ferrite_cpu::state::Seg;
use ferrite_cpu::testing::LineBus;
use std::sync::atomic::Ordering;
use iced_x86::code_asm::*;
use int_harness::*;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
}

#[test]
fn rep_movsb_forward_copies_across_pages() {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| a.rep().movsb());
    let src = pattern(10_000, 3);
    vm.write(DATA + 0x123, &src);
    vm.preset(&[(RSI, DATA + 0x123), (RDI, DATA + 0x8001), (RCX, 10_000)], 0);
    vm.finish();
    assert_eq!(vm.read(DATA + 0x8001, 10_000), &src[..]);
    assert_eq!((vm.gpr(RCX), vm.gpr(RSI), vm.gpr(RDI)), (0, DATA + 0x123 + 10_000, DATA + 0x8001 + 10_000));
}

#[test]
fn rep_movsd_backward() {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| {
        a.std()?;
        a.rep().movsd()
    });
    vm.write(DATA, &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0]);
    vm.preset(&[(RSI, DATA + 12), (RDI, DATA + 0x100 + 12), (RCX, 4)], 0);
    vm.finish();
    assert_eq!(vm.read(DATA + 0x100, 16), vm.read(DATA, 16).to_vec().as_slice());
    assert_eq!((vm.gpr(RSI), vm.gpr(RDI), vm.gpr(RCX)), (DATA - 4, DATA + 0x100 - 4, 0));
}

/// REP MOVS over several pages, element by element as on hardware in both directions: apart
/// (copied a page run at a time), overlapping so that each element is read before the copy
/// writes there (as memmove: the kernel's own relocation copies downwards to a higher
/// address), and overlapping the other way (elements then read what the copy wrote).
#[test]
fn rep_movs_across_pages_is_element_wise_both_ways() {
    let cases = [(8usize, 0x5000i64), (8, 0x1804), (8, -0x1804), (1, 3), (1, -3), (4, -0x2000), (2, 6), (2, -6)];
    for (size, distance, down) in cases.into_iter().flat_map(|(s, d)| [(s, d, true), (s, d, false)]) {
        let mut vm = Vm::new(Mode::Long);
        vm.code(|a| {
            if down {
                a.std()?;
            }
            match size {
                1 => a.rep().movsb(),
                2 => a.rep().movsw(),
                4 => a.rep().movsd(),
                _ => a.rep().movsq(),
            }
        });
        let len = 0x3000 + 40;
        let base = DATA + 0x2000;
        let init = pattern(0xc000, 5);
        vm.write(DATA, &init);
        let count = (len / size) as u64;
        // Going down, the highest element of each range first.
        let src = if down { base + len as u64 - size as u64 } else { base };
        let dst = src.wrapping_add(distance as u64);
        vm.preset(&[(RSI, src), (RDI, dst), (RCX, count)], 0);
        vm.finish();
        let mut model = init.clone();
        let (mut from, mut to) = ((src - DATA) as usize, (dst - DATA) as usize);
        for _ in 0..count {
            let element = model[from..from + size].to_vec();
            model[to..to + size].copy_from_slice(&element);
            (from, to) = if down { (from.wrapping_sub(size), to.wrapping_sub(size)) } else { (from + size, to + size) };
        }
        assert_eq!(vm.read(DATA, 0xc000), &model[..], "size {size}, distance {distance:#x}, down {down}");
        let end = if down { (size as u64 * count).wrapping_neg() } else { size as u64 * count };
        assert_eq!((vm.gpr(RSI), vm.gpr(RDI), vm.gpr(RCX)), (src.wrapping_add(end), dst.wrapping_add(end), 0));
    }
}

/// Backward REP STOS fills page runs down to a page that is not mapped, faults there with
/// rCX counting what is left, and completes once it is mapped.
#[test]
fn rep_stos_backward_fills_down_to_a_fault_and_resumes() {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| {
        a.std()?;
        a.rep().stosq()
    });
    vm.unmap(DATA + 0x1000);
    let top = DATA + 0x3ff8;
    vm.preset(&[(RAX, 0x1122_3344_5566_7788), (RDI, top), (RCX, 0x600)], 0);
    assert_eq!(vm.run(), Stop::Exception(14));
    assert_eq!(vm.cpu.state.cr2, DATA + 0x1ff8);
    // Two pages of 512 qwords done; the REP STOS is where it resumes.
    assert_eq!((vm.gpr(RCX), vm.gpr(RDI)), (0x600 - 0x400, DATA + 0x1ff8));
    assert!(vm.read(DATA + 0x2000, 0x2000).chunks(8).all(|q| q == 0x1122_3344_5566_7788u64.to_le_bytes()));
    map_back_and_resume(&mut vm, DATA + 0x1000);
    assert_eq!((vm.gpr(RCX), vm.gpr(RDI)), (0, DATA + 0xff8));
    assert!(vm.read(DATA + 0x1000, 0x3000).chunks(8).all(|q| q == 0x1122_3344_5566_7788u64.to_le_bytes()));
}

/// Overlapping forward copies behave element by element, as on hardware.
#[test]
fn overlapping_copies_are_element_wise() {
    for (size, build) in [(1usize, 0u8), (4, 1)] {
        let mut vm = Vm::new(Mode::Long);
        vm.code(|a| if build == 0 { a.rep().movsb() } else { a.rep().movsd() });
        let init = pattern(64, 1);
        vm.write(DATA, &init);
        let count = 8u64;
        vm.preset(&[(RSI, DATA), (RDI, DATA + 1), (RCX, count)], 0);
        vm.finish();
        let mut model = init.clone();
        for i in 0..count as usize {
            let chunk: Vec<u8> = model[i * size..i * size + size].to_vec();
            model[1 + i * size..1 + i * size + size].copy_from_slice(&chunk);
        }
        assert_eq!(vm.read(DATA, 64), &model[..], "element size {size}");
    }
}

#[test]
fn rep_stos_fills_and_zero_count_does_nothing() {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| {
        a.rep().stosq()?;
        a.mov(rdi, rbx)?;
        a.mov(ecx, 5000)?;
        a.rep().stosb()?;
        a.xor(ecx, ecx)?;
        a.rep().stosd()
    });
    vm.preset(&[(RAX, 0x1122_3344_5566_7788), (RDI, DATA + 8), (RCX, 3), (RBX, DATA + 0xff0)], ZF);
    vm.finish();
    assert_eq!(vm.read(DATA + 8, 24), [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11].repeat(3).as_slice());
    assert!(vm.read(DATA + 0xff0, 5000).iter().all(|&b| b == 0x88));
    assert_eq!(vm.read(DATA + 0xff0 + 5000, 4), &[0, 0, 0, 0]);
    assert_eq!(vm.gpr(RDI), DATA + 0xff0 + 5000);
}

#[test]
fn repe_cmpsb_stops_at_the_first_difference() {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| a.repe().cmpsb());
    vm.write(DATA, b"abcdefgh");
    vm.write(DATA + 0x40, b"abcdeXgh");
    vm.preset(&[(RSI, DATA), (RDI, DATA + 0x40), (RCX, 8)], 0);
    vm.finish();
    // Stops after comparing 'f' with 'X' (0x66 - 0x58 = 0x0e: no borrow, AF from 6 - 8).
    assert_eq!((vm.gpr(RCX), vm.gpr(RSI), vm.gpr(RDI)), (2, DATA + 6, DATA + 0x46));
    assert_eq!(vm.status(), AF);
}

#[test]
fn repne_scasb_finds_the_terminator() {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| a.repne().scasb());
    vm.write(DATA, b"hello\0world");
    vm.preset(&[(RAX, 0), (RDI, DATA), (RCX, !0)], 0);
    vm.finish();
    assert_eq!((vm.gpr(RCX), vm.gpr(RDI)), (!0 - 6, DATA + 6));
    assert_eq!(vm.status() & ZF, ZF);
    // REPE SCASW over equal words runs out of count with ZF = 1.
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| a.repe().scasw());
    vm.write(DATA, &[0x34, 0x12, 0x34, 0x12]);
    vm.preset(&[(RAX, 0x1234), (RDI, DATA), (RCX, 2)], 0);
    vm.finish();
    assert_eq!((vm.gpr(RCX), vm.status() & ZF), (0, ZF));
}

#[test]
fn lods_backward_and_32bit_zero_extension() {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| {
        a.std()?;
        a.lodsw()?;
        a.cld()?;
        a.lodsd()
    });
    vm.write(DATA, &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66]);
    vm.preset(&[(RAX, !0), (RSI, DATA + 2)], 0);
    vm.finish();
    // LODSW at DATA+2 (0x4433), RSI -> DATA; LODSD at DATA zero-extends RAX.
    assert_eq!((vm.gpr(RAX), vm.gpr(RSI)), (0x4433_2211, DATA + 4));
}

#[test]
fn address_size_32_in_64bit_mode() {
    let mut vm = Vm::new(Mode::Long);
    // a32 rep movsb: ESI/EDI/ECX, written back zero-extended.
    vm.set_code(&[0x67, 0xf3, 0xa4]);
    vm.write(DATA, b"xyz");
    vm.preset(
        &[
            (RSI, 0xffff_0000_0000_0000 | DATA),
            (RDI, 0x1234_0000_0000_0000 | (DATA + 0x10)),
            (RCX, 0x7777_0000_0000_0003),
        ],
        0,
    );
    vm.finish();
    assert_eq!(vm.read(DATA + 0x10, 3), b"xyz");
    assert_eq!((vm.gpr(RSI), vm.gpr(RDI), vm.gpr(RCX)), (DATA + 3, DATA + 0x13, 0));
}

#[test]
fn real_mode_wrap_and_segment_override() {
    let mut vm = Vm::new(Mode::Real);
    // rep movsb with SI wrapping from 0xffff to 0; then es: movsb (source from ES).
    vm.code(|a| {
        a.rep().movsb()?;
        a.db(&[0x26, 0xa4])
    });
    let ds_base = REAL_DATA;
    let es_base = REAL_DATA + 0x10000;
    vm.cpu.state.seg_mut(Seg::Ds).selector = (ds_base >> 4) as u16;
    vm.cpu.state.seg_mut(Seg::Ds).base = ds_base;
    vm.cpu.state.seg_mut(Seg::Es).selector = (es_base >> 4) as u16;
    vm.cpu.state.seg_mut(Seg::Es).base = es_base;
    vm.write(ds_base + 0xffff, b"A");
    vm.write(ds_base, b"B");
    vm.write(es_base + 0x0001, b"E");
    vm.preset(&[(RSI, 0xabcd_ffff), (RDI, 0x100), (RCX, 0x5555_0002)], 0);
    vm.finish();
    // SI wraps within 16 bits; the upper half of ESI/ECX is kept.
    assert_eq!(vm.read(es_base + 0x100, 3), b"ABE");
    assert_eq!((vm.gpr(RSI), vm.gpr(RDI), vm.gpr(RCX)), (0xabcd_0002, 0x103, 0x5555_0000));
}

/// Maps `page` (unmapped for a #PF) back and returns to the faulting instruction, which then
/// runs to the end.
fn map_back_and_resume(vm: &mut Vm, page: u64) {
    vm.write(PT + 8 * (page >> 12), &(page | 7).to_le_bytes());
    vm.cpu.state.rip = vm.frame(1);
    vm.cpu.state.gpr[RSP] = STACK_TOP;
    vm.finish();
}

/// A fault in the middle of REP MOVS leaves rCX/rSI/rDI counting the completed iterations,
/// reports the REP instruction as the faulting RIP, and resumes from there.
#[test]
fn fault_mid_rep_restarts() {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| a.rep().movsq());
    let src = pattern(64, 9);
    vm.write(DATA + 0x100, &src);
    let dst = DATA + 0x2000 - 16;
    vm.unmap(DATA + 0x2000);
    vm.preset(&[(RSI, DATA + 0x100), (RDI, dst), (RCX, 8)], 0);
    assert_eq!(vm.run(), Stop::Exception(14));
    // Error code: write to a not-present page at CPL 0; return address: the REP MOVS.
    assert_eq!((vm.frame(0), vm.frame(1)), (2, CODE));
    assert_eq!(vm.cpu.state.cr2, DATA + 0x2000);
    assert_eq!((vm.gpr(RCX), vm.gpr(RSI), vm.gpr(RDI)), (6, DATA + 0x110, DATA + 0x2000));
    assert_eq!(vm.read(dst, 16), &src[..16]);
    // Map the page back and return to the instruction: the copy completes.
    map_back_and_resume(&mut vm, DATA + 0x2000);
    assert_eq!(vm.read(dst, 64), &src[..]);
    assert_eq!(vm.gpr(RCX), 0);
}

/// Long loops give up the CPU with RIP still at the instruction, then continue.
#[test]
fn long_rep_loops_yield() {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| a.rep().stosb());
    let n = 1u64 << 20;
    vm.preset(&[(RAX, 0x5a), (RDI, DATA), (RCX, n)], 0);
    vm.cpu.run(&mut vm.bus, 1);
    let left = vm.gpr(RCX);
    assert!(left > 0 && left < n, "rcx={left:#x}");
    assert_eq!(vm.cpu.state.rip, CODE);
    assert_eq!(vm.gpr(RDI), DATA + (n - left));
    vm.finish();
    assert!(vm.read(DATA, n as usize).iter().all(|&b| b == 0x5a));
    // The element-by-element path (LODS) yields too.
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| a.rep().lodsb());
    vm.preset(&[(RSI, DATA), (RCX, 10_000)], 0);
    vm.cpu.run(&mut vm.bus, 1);
    assert!(vm.gpr(RCX) > 0 && vm.gpr(RCX) < 10_000);
    assert_eq!(vm.cpu.state.rip, CODE);
    vm.finish();
    assert_eq!(vm.gpr(RSI), DATA + 10_000);
}

/// With TF set, the single-step trap comes after each iteration, returning to the REP.
#[test]
fn single_step_traps_after_each_iteration() {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| a.rep().movsb());
    vm.preset(&[(RSI, DATA), (RDI, DATA + 0x100), (RCX, 5)], 0);
    let f = vm.cpu.rflags();
    vm.cpu.set_rflags(f | TF);
    assert_eq!(vm.run(), Stop::Exception(1));
    assert_eq!((vm.frame(0), vm.gpr(RCX)), (CODE, 4));
    assert_ne!(vm.cpu.state.dr[6] & (1 << 14), 0);
}

/// A bus whose interrupt line can be raised.
#[test]
fn interrupt_taken_between_iterations() {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| a.rep().lodsb());
    vm.preset(&[(RSI, DATA), (RCX, 100_000)], 0);
    let f = vm.cpu.rflags();
    vm.cpu.set_rflags(f | IF);
    let attention = vm.cpu.attention();
    let mut bus = LineBus { ram: &mut vm.bus, attention: &attention, vector: 0x20 };
    vm.cpu.run(&mut bus, 1);
    let left = vm.cpu.state.gpr[RCX];
    assert!(left > 0 && left < 100_000);
    attention.intr.store(true, Ordering::Release);
    vm.cpu.run(&mut bus, 1);
    assert_eq!(vm.run(), Stop::Exception(0x20));
    // Interrupt frame: RIP, CS, RFLAGS... pointing back at the REP with the count so far.
    assert_eq!(vm.frame(0), CODE);
    assert_eq!(vm.gpr(RCX), left);
}

/// Real mode: a word access past the 64 KiB limit raises #GP (through the IVT) in the middle
/// of REP MOVSW, with CX/SI/DI counting the completed words.
#[test]
fn real_mode_limit_fault_mid_rep() {
    let mut vm = Vm::new(Mode::Real);
    vm.code(|a| a.rep().movsw());
    let base = REAL_DATA;
    vm.cpu.state.seg_mut(Seg::Ds).selector = (base >> 4) as u16;
    vm.cpu.state.seg_mut(Seg::Ds).base = base;
    vm.cpu.state.seg_mut(Seg::Es).selector = (base >> 4) as u16;
    vm.cpu.state.seg_mut(Seg::Es).base = base;
    vm.preset(&[(RSI, 0xfff7), (RDI, 0x100), (RCX, 8)], 0);
    assert_eq!(vm.run(), Stop::Exception(13));
    // Real-mode frame: IP, CS, FLAGS; IP is the REP MOVSW.
    assert_eq!(vm.frame(0), 0);
    assert_eq!((vm.gpr(RCX), vm.gpr(RSI), vm.gpr(RDI)), (4, 0xffff, 0x108));
}
