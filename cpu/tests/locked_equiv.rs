//! The LOCK-prefixed forms compute exactly what the plain forms compute: same memory, same
//! registers, same flags, same faults. Locked forms update memory with host atomics (or, for
//! device memory and page-crossing operands, a serialised fallback), plain forms with a read
//! and a write, so each pair runs on two fresh machines from one random state and the
//! results are compared. The native-comparison harness cannot see atomicity; this checks
//! that the atomic paths lost nothing else.

mod int_harness;

use ferrite_cpu::state::reg::*;
use iced_x86::code_asm::*;
use iced_x86::IcedError;
use int_harness::*;

/// xorshift64*: a fixed seed keeps failures reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Values that exercise the flag edges half of the time.
    fn operand(&mut self) -> u64 {
        const EDGES: [u64; 10] = [0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0x7fff_ffff, 0x8000_0000, !0];
        match self.next() % 4 {
            0 => EDGES[(self.next() % EDGES.len() as u64) as usize],
            1 => EDGES[(self.next() % EDGES.len() as u64) as usize].wrapping_neg(),
            _ => self.next(),
        }
    }
}

/// Emits one instruction with its memory operand at [rsi]; the argument is a random
/// immediate for the forms that take one.
type Build = Box<dyn Fn(&mut CodeAssembler, i32) -> Result<(), IcedError>>;

fn forms() -> Vec<(String, Build)> {
    let mut v: Vec<(String, Build)> = Vec::new();
    macro_rules! form {
        ($name:expr, |$a:ident, $imm:ident| $body:expr) => {
            v.push(($name.to_string(), Box::new(move |$a: &mut CodeAssembler, $imm: i32| $body)))
        };
    }
    macro_rules! binary {
        ($($op:ident)*) => {$(
            form!(concat!(stringify!($op), " m8, r8"), |a, _i| a.$op(byte_ptr(rsi), cl));
            form!(concat!(stringify!($op), " m16, r16"), |a, _i| a.$op(word_ptr(rsi), cx));
            form!(concat!(stringify!($op), " m32, r32"), |a, _i| a.$op(dword_ptr(rsi), ecx));
            form!(concat!(stringify!($op), " m64, r64"), |a, _i| a.$op(qword_ptr(rsi), rcx));
            form!(concat!(stringify!($op), " m8, imm"), |a, i| a.$op(byte_ptr(rsi), i as i8 as i32));
            form!(concat!(stringify!($op), " m16, imm"), |a, i| a.$op(word_ptr(rsi), i as i16 as i32));
            form!(concat!(stringify!($op), " m16, imm8"), |a, i| a.$op(word_ptr(rsi), i as i8 as i32));
            form!(concat!(stringify!($op), " m32, imm"), |a, i| a.$op(dword_ptr(rsi), i));
            form!(concat!(stringify!($op), " m64, imm8"), |a, i| a.$op(qword_ptr(rsi), i as i8 as i32));
            form!(concat!(stringify!($op), " m64, imm32"), |a, i| a.$op(qword_ptr(rsi), i));
        )*};
    }
    binary!(add adc sub sbb and or xor);
    macro_rules! unary {
        ($($op:ident)*) => {$(
            form!(concat!(stringify!($op), " m8"), |a, _i| a.$op(byte_ptr(rsi)));
            form!(concat!(stringify!($op), " m16"), |a, _i| a.$op(word_ptr(rsi)));
            form!(concat!(stringify!($op), " m32"), |a, _i| a.$op(dword_ptr(rsi)));
            form!(concat!(stringify!($op), " m64"), |a, _i| a.$op(qword_ptr(rsi)));
        )*};
    }
    unary!(inc dec neg not);
    macro_rules! bits {
        ($($op:ident)*) => {$(
            form!(concat!(stringify!($op), " m16, r16"), |a, _i| a.$op(word_ptr(rsi), cx));
            form!(concat!(stringify!($op), " m32, r32"), |a, _i| a.$op(dword_ptr(rsi), ecx));
            form!(concat!(stringify!($op), " m64, r64"), |a, _i| a.$op(qword_ptr(rsi), rcx));
            form!(concat!(stringify!($op), " m16, imm8"), |a, i| a.$op(word_ptr(rsi), i & 0xff));
            form!(concat!(stringify!($op), " m32, imm8"), |a, i| a.$op(dword_ptr(rsi), i & 0xff));
            form!(concat!(stringify!($op), " m64, imm8"), |a, i| a.$op(qword_ptr(rsi), i & 0xff));
        )*};
    }
    bits!(bts btr btc);
    macro_rules! exchange {
        ($($op:ident)*) => {$(
            form!(concat!(stringify!($op), " m8, r8"), |a, _i| a.$op(byte_ptr(rsi), cl));
            form!(concat!(stringify!($op), " m8, ah"), |a, _i| a.$op(byte_ptr(rsi), ah));
            form!(concat!(stringify!($op), " m16, r16"), |a, _i| a.$op(word_ptr(rsi), cx));
            form!(concat!(stringify!($op), " m32, r32"), |a, _i| a.$op(dword_ptr(rsi), ecx));
            form!(concat!(stringify!($op), " m64, r64"), |a, _i| a.$op(qword_ptr(rsi), rcx));
            form!(concat!(stringify!($op), " m32, eax"), |a, _i| a.$op(dword_ptr(rsi), eax));
        )*};
    }
    exchange!(xadd cmpxchg xchg);
    form!("cmpxchg8b m64", |a, _i| a.cmpxchg8b(qword_ptr(rsi)));
    form!("cmpxchg16b m128", |a, _i| a.cmpxchg16b(xmmword_ptr(rsi)));
    v
}

/// Scratch pages for the fault cases (4 KiB pages of the harness's page table).
const READ_ONLY: u64 = DATA + 0x2000;
const UNMAPPED: u64 = DATA + 0x3000;
/// Linear 4 MiB, mapped (by a 2 MiB page) to physical memory past the end of RAM: device
/// memory that reads all ones and ignores writes.
const MMIO: u64 = 4 << 20;

/// Where the operand lives: each kind takes a different path through the locked handlers.
const ADDRESSES: [(&str, u64); 9] = [
    ("aligned", DATA + 0x40),
    ("unaligned", DATA + 0x41),
    ("across a cache line", DATA + 0x7e),
    ("across a page", DATA + 0xffd),
    ("16-aligned at a page end", DATA + 0xff0),
    ("device memory", MMIO + 0x40),
    ("read-only page", READ_ONLY + 0x40),
    ("unmapped page", UNMAPPED + 0x40),
    ("non-canonical", 0x8000_0000_0000_0040),
];

/// Bytes compared after each run: all the data pages an operand (or a bit offset) reaches.
const COMPARED: std::ops::Range<u64> = DATA - 0x100..DATA + 0x4000;

struct Outcome {
    stop: Stop,
    gpr: [u64; 16],
    rflags: u64,
    cr2: u64,
    frame: u64,
    memory: Vec<u8>,
}

fn run(build: &Build, lock: bool, imm: i32, regs: &[(usize, u64)], status: u64, mem: &[u8]) -> Outcome {
    let mut vm = Vm::new(Mode::Long);
    vm.code(|a| {
        if lock {
            let _ = a.lock();
        }
        build(a, imm)
    });
    let insn = iced_x86::Decoder::new(64, vm.read(CODE, 16), iced_x86::DecoderOptions::NONE).decode();
    assert_eq!(insn.has_lock_prefix(), lock, "{insn}");
    vm.write(COMPARED.start, mem);
    // PD entry 2: a 2 MiB page at linear 4 MiB onto physical 4 MiB, past the 4 MiB of RAM.
    vm.write(PD + 16, &(MMIO | 0x83).to_le_bytes());
    vm.write_protect(READ_ONLY);
    vm.unmap(UNMAPPED);
    vm.cpu.state.cr0 |= ferrite_cpu::state::cr0::WP;
    vm.preset(regs, status);
    let stop = vm.run();
    Outcome {
        stop,
        gpr: vm.cpu.state.gpr,
        rflags: vm.flags(),
        cr2: vm.cpu.state.cr2,
        frame: if stop == Stop::Done { 0 } else { vm.frame(0) },
        memory: vm.read(COMPARED.start, (COMPARED.end - COMPARED.start) as usize).to_vec(),
    }
}

#[test]
fn locked_forms_compute_what_plain_forms_compute() {
    let mut rng = Rng(0x10c4_ed00_5eed_0001);
    let mut checked = 0;
    for (name, build) in forms() {
        for (place, addr) in ADDRESSES {
            let faults = matches!(place, "read-only page" | "unmapped page" | "non-canonical");
            for _ in 0..if faults { 1 } else { 6 } {
                let mem: Vec<u8> = (0..COMPARED.end - COMPARED.start).map(|_| rng.next() as u8).collect();
                let at = (addr.wrapping_sub(COMPARED.start)) as usize;
                let mut regs: Vec<(usize, u64)> =
                    [RAX, RBX, RCX, RDX].into_iter().map(|r| (r, rng.operand())).collect();
                if name.starts_with("bt") && name.contains(", r") {
                    // Register bit offsets reach outside the operand: keep them in the
                    // compared bytes (within +-16 bytes).
                    regs[2].1 = (rng.next() % 256).wrapping_sub(128);
                }
                if name.starts_with("cmpxchg") && rng.next().is_multiple_of(2) {
                    // The accumulator (EDX:EAX, RDX:RAX for CMPXCHG8B/16B) matches memory
                    // (all ones outside RAM, as device memory reads).
                    let stored = |i: usize| match mem.get(at + i..at + i + 8) {
                        Some(b) => u64::from_le_bytes(b.try_into().unwrap()),
                        None => !0,
                    };
                    match name.as_str() {
                        "cmpxchg8b m64" => {
                            regs[0].1 = stored(0) & 0xffff_ffff;
                            regs[3].1 = stored(0) >> 32;
                        }
                        "cmpxchg16b m128" => {
                            regs[0].1 = stored(0);
                            regs[3].1 = stored(8);
                        }
                        _ => regs[0].1 = stored(0),
                    }
                }
                regs.push((RSI, addr));
                let status = rng.next() & STATUS;
                let imm = rng.operand() as i32;
                let plain = run(&build, false, imm, &regs, status, &mem);
                let locked = run(&build, true, imm, &regs, status, &mem);
                let what = format!("{name} ({place}, regs {regs:x?}, flags {status:#x}, imm {imm:#x})");
                assert_eq!(locked.stop, plain.stop, "stop: {what}");
                assert_eq!(locked.gpr, plain.gpr, "registers: {what}");
                assert_eq!(locked.rflags, plain.rflags, "flags: {what}");
                assert_eq!((locked.cr2, locked.frame), (plain.cr2, plain.frame), "fault: {what}");
                assert!(locked.memory == plain.memory, "memory: {what}");
                if faults {
                    assert!(matches!(plain.stop, Stop::Exception(13 | 14)), "{what}: {:?}", plain.stop);
                    assert!(locked.memory == mem, "memory changed by a fault: {what}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 3000, "{checked}");
}

/// XCHG with memory is locked with or without the prefix, so the pair above compares the
/// locked path with itself; check its results directly (both registers and memory), on the
/// host-atomic path and on the serialised one.
#[test]
fn xchg_with_memory_swaps() {
    for addr in [DATA + 0x41, DATA + 0xffd, MMIO + 0x40] {
        for lock in [false, true] {
            let mut vm = Vm::new(Mode::Long);
            vm.code(|a| {
                if lock {
                    let _ = a.lock();
                }
                a.xchg(qword_ptr(rsi), rcx)?;
                a.xchg(word_ptr(rsi + 8), dx)
            });
            vm.write(PD + 16, &(MMIO | 0x83).to_le_bytes());
            vm.write(DATA + 0x41, &0x1111_2222_3333_4444u64.to_le_bytes());
            vm.write(DATA + 0x49, &0x5555u16.to_le_bytes());
            vm.write(DATA + 0xffd, &0x1111_2222_3333_4444u64.to_le_bytes());
            vm.write(DATA + 0x1005, &0x5555u16.to_le_bytes());
            vm.preset(&[(RSI, addr), (RCX, 0xaaaa_bbbb_cccc_dddd), (RDX, 0x9999_8888_7777_6666)], 0);
            vm.finish();
            if addr == MMIO + 0x40 {
                // Device memory reads as all ones and drops the writes.
                assert_eq!((vm.gpr(RCX), vm.gpr(RDX)), (!0, 0x9999_8888_7777_ffff));
                continue;
            }
            assert_eq!((vm.gpr(RCX), vm.gpr(RDX)), (0x1111_2222_3333_4444, 0x9999_8888_7777_5555), "{addr:#x}");
            assert_eq!(vm.read(addr, 8), &0xaaaa_bbbb_cccc_ddddu64.to_le_bytes(), "{addr:#x}");
            assert_eq!(vm.read(addr + 8, 2), &0x6666u16.to_le_bytes(), "{addr:#x}");
        }
    }
}

/// A locked write into a page holding decoded code drops the stale decodings, as a plain
/// write does: the modified instruction runs as modified.
#[test]
fn locked_write_to_code_is_seen() {
    let mut vm = Vm::new(Mode::Long);
    // LOCK ADD on the immediate byte of the next instruction turns "mov al, 0x10" (b0 10)
    // into "mov al, 0x11" after both were decoded as one block.
    vm.code(|a| {
        let mut imm = a.create_label();
        a.lock().add(byte_ptr(imm), 1)?;
        a.db(&[0xb0])?;
        a.set_label(&mut imm)?;
        a.db(&[0x10])
    });
    vm.finish();
    assert_eq!(vm.gpr(RAX) & 0xff, 0x11);
}

/// The same comparison for a few forms in protected mode (32-bit addressing, segment limit
/// checks) and real mode (16-bit addressing, paging off), where the operand addresses take
/// other paths through `linear` and the TLB.
#[test]
fn locked_forms_in_legacy_modes() {
    type Legacy = fn(&mut CodeAssembler) -> Result<(), IcedError>;
    let forms32: [Legacy; 6] = [
        |a| a.add(dword_ptr(esi), ecx),
        |a| a.sbb(word_ptr(esi), cx),
        |a| a.xadd(byte_ptr(esi), cl),
        |a| a.cmpxchg(dword_ptr(esi), ecx),
        |a| a.btc(dword_ptr(esi), ecx),
        |a| a.cmpxchg8b(qword_ptr(esi)),
    ];
    let forms16: [Legacy; 6] = [
        |a| a.add(word_ptr(si), cx),
        |a| a.sbb(dword_ptr(si), ecx),
        |a| a.neg(byte_ptr(si)),
        |a| a.cmpxchg(word_ptr(si), cx),
        |a| a.bts(word_ptr(si), cx),
        |a| a.xchg(word_ptr(si), cx),
    ];
    let mut rng = Rng(0x1e9a_c700_0000_0002);
    let mut completed = 0;
    for (mode, forms, addrs) in [
        (Mode::Protected32, forms32, [DATA + 0x41, DATA + 0xffe, 0xffff_fffe]),
        // DS = 0: 0xfffe and up run into the 64 KiB segment limit.
        (Mode::Real, forms16, [0xc041, 0xcffe, 0xfffe]),
    ] {
        for build in forms {
            for addr in addrs {
                let mem: Vec<u8> = (0..32).map(|_| rng.next() as u8).collect();
                let regs: Vec<(usize, u64)> = [RAX, RBX, RCX, RDX]
                    .into_iter()
                    .map(|r| (r, rng.operand() & 0xffff_ffff))
                    .chain([(RSI, addr)])
                    .collect();
                let status = rng.next() & STATUS;
                let outcome = |lock: bool| {
                    let mut vm = Vm::new(mode);
                    vm.code(|a| {
                        if lock {
                            let _ = a.lock();
                        }
                        build(a)
                    });
                    if addr < 0xffff_0000 {
                        vm.write(addr - 16, &mem);
                    }
                    vm.preset(&regs, status);
                    let stop = vm.run();
                    let bytes = if addr < 0xffff_0000 { vm.read(addr - 16, 32).to_vec() } else { vec![] };
                    (stop, vm.cpu.state.gpr, vm.flags(), bytes)
                };
                let (plain, locked) = (outcome(false), outcome(true));
                assert_eq!(locked, plain, "{mode:?} form at {addr:#x}, regs {regs:x?}");
                completed += (plain.0 == Stop::Done) as usize;
            }
        }
    }
    // Everything within the segment limits ran to the end; some operands at the limit did
    // not fit and faulted (both ways alike).
    assert!((2 * 6 * 2..2 * 6 * 3).contains(&completed), "{completed}");
}
