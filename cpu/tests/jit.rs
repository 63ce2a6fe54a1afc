//! The translator against the interpreter: the same 64-bit programs run with every block
//! compiled (`jit=always`), one block per run-loop turn and chained, and interpreted only,
//! and must leave identical registers, flags and memory; loops compiled as one block, code
//! that rewrites itself, code a device rewrites. Chaining between blocks has its own file
//! (`jit_chaining.rs`), memory accesses and page faults in compiled code theirs
//! (`jit_faults.rs`).

mod int_harness;
mod jit_harness;
use ferrite_cpu::state::reg::*;
use ferrite_cpu::{JitConfig, JitMode};
use iced_x86::code_asm::*;
use iced_x86::{BlockEncoderOptions, IcedError};
use int_harness::*;
use jit_harness::*;

/// SETcc of each of the 16 conditions, into memory.
const SETTERS: [fn(&mut CodeAssembler, AsmMemoryOperand) -> Result<(), IcedError>; 16] = [
    |a, m| a.seto(m),
    |a, m| a.setno(m),
    |a, m| a.setb(m),
    |a, m| a.setae(m),
    |a, m| a.sete(m),
    |a, m| a.setne(m),
    |a, m| a.setbe(m),
    |a, m| a.seta(m),
    |a, m| a.sets(m),
    |a, m| a.setns(m),
    |a, m| a.setp(m),
    |a, m| a.setnp(m),
    |a, m| a.setl(m),
    |a, m| a.setge(m),
    |a, m| a.setle(m),
    |a, m| a.setg(m),
];

#[test]
fn loops_with_memory_calls_and_conditions_match_the_interpreter() {
    let on = both(&[(RSI, DATA), (RCX, 200), (RDX, 0x1234_5678_9abc_def0)], |a| {
        let mut top = a.create_label();
        let mut skip = a.create_label();
        let mut func = a.create_label();
        let mut done = a.create_label();
        a.xor(eax, eax)?;
        a.xor(ebx, ebx)?;
        a.set_label(&mut top)?;
        // A running sum in memory, byte/word/dword/qword stores and loads.
        a.mov(qword_ptr(rsi + rcx * 8), rdx)?;
        a.add(rax, qword_ptr(rsi + rcx * 8))?;
        a.mov(byte_ptr(rsi + rcx + 0x1000), dl)?;
        a.movzx(r8d, byte_ptr(rsi + rcx + 0x1000))?;
        a.movsx(r9, word_ptr(rsi + rcx * 2))?;
        a.sub(r9, r8)?;
        a.xor(rdx, r9)?;
        a.rol(rdx, 7)?;
        a.inc(dword_ptr(rsi + 0x1800))?;
        a.cmp(rcx, 100)?;
        a.jb(skip)?;
        a.call(func)?;
        a.set_label(&mut skip)?;
        a.test(cl, 3)?;
        a.setne(bl)?;
        a.cmove(r10, rax)?;
        a.lea(r11, ptr(rbx + rcx * 4 + 16))?;
        a.push(r11)?;
        a.pop(r12)?;
        a.dec(rcx)?;
        a.jnz(top)?;
        a.jmp(done)?;
        a.set_label(&mut func)?;
        a.or(qword_ptr(rsi + 0x1808), rax)?;
        a.and(r13, rdx)?;
        a.adc(r14, rdx)?;
        a.ret()?;
        a.set_label(&mut done)?;
        a.nop()?;
        Ok(())
    });
    assert!(on.cpu.jit_stats().chained_runs > 100, "{:?}", on.cpu.jit_stats());
}

#[test]
fn one_block_loops_keep_registers_and_flags_across_runs_and_match_the_interpreter() {
    // Three loops of one block each, run inside the block's code while chaining. The first
    // carries CF from RCL (DEC keeps it) into the next run's ADC, and writes 8, 16 and 32-bit
    // parts of registers. The second runs SSE instructions the interpreter executes between
    // native ones, and CPUID, which the interpreter runs: what it writes only the next run
    // reads.
    let on = both(&[(RSI, DATA), (RCX, 300), (RBX, 0x8000_0000_0000_0001), (RDX, 0x1234_5678)], |a| {
        let mut first = a.create_label();
        let mut second = a.create_label();
        let mut third = a.create_label();
        enable_sse(a)?;
        a.mov(ecx, 300)?;
        a.set_label(&mut first)?;
        a.adc(rax, rbx)?;
        a.rcl(rdx, 1)?;
        a.add(r8w, dx)?;
        a.xor(ah, cl)?;
        a.mov(r9d, eax)?;
        a.mov(qword_ptr(rsi + rcx * 8), r9)?;
        a.dec(rcx)?;
        a.jnz(first)?;
        a.movq(xmm1, rbx)?;
        a.mov(r13d, 100)?;
        a.set_label(&mut second)?;
        a.add(r11, rbx)?;
        a.add(r11, r10)?;
        a.imul_3(r12, r11, 3)?;
        a.mov(qword_ptr(rsi + r13 * 8 + 0x1000), r12)?;
        a.paddq(xmm0, xmm1)?;
        a.movq(r10, xmm0)?;
        a.mov(eax, r13d)?;
        a.cpuid()?;
        a.sub(r13d, 1)?;
        a.jnz(second)?;
        // The third overwrites every flag before anything may see them, so its branch back
        // leaves them unstored; ADC reads the CF its ADD left.
        a.mov(r13d, 100)?;
        a.set_label(&mut third)?;
        a.ror(r14, 3)?;
        a.add(r14, r13)?;
        a.adc(r15, r14)?;
        a.mov(qword_ptr(rsi + r13 * 8 + 0x800), r15)?;
        a.dec(r13d)?;
        a.jnz(third)?;
        Ok(())
    });
    // Both loops ran mostly inside their blocks' code.
    assert!(on.cpu.jit_stats().chained_runs > 300, "{:?}", on.cpu.jit_stats());
}

#[test]
fn loops_with_branches_inside_run_as_one_block_and_match_the_interpreter() {
    // The first loop (run three times) leaves through a branch in its middle, as SHA-256's
    // rounds do, takes a second one to a store out of line that jumps back into it, and
    // branches back with a JMP; ADC after the first branch reads the CF its CMP left pending
    // across it. The second has one inner branch more than a block holds, and the third skips
    // part of itself: their blocks end at their first branch.
    let on = both(&[(RSI, DATA), (RBX, 0x8000_0000_0000_0003), (RDX, 0x1234_5678_9abc_def0)], |a| {
        let (mut outer, mut first, mut out) = (a.create_label(), a.create_label(), a.create_label());
        let (mut store, mut stored) = (a.create_label(), a.create_label());
        let (mut second, mut third, mut fourth, mut skip) = (a.create_label(), a.create_label(), a.create_label(), a.create_label());
        a.mov(r15d, 3)?;
        a.set_label(&mut outer)?;
        a.xor(r10d, r10d)?;
        a.set_label(&mut first)?;
        a.mov(r8, qword_ptr(rsi + r10 * 8))?;
        a.add(r8, rdx)?;
        a.rol(rdx, 5)?;
        a.cmp(r10, 250)?;
        a.je(out)?;
        a.adc(r9, r8)?;
        a.test(r10b, 3)?;
        a.jz(store)?;
        a.set_label(&mut stored)?;
        a.add(r10, 1)?;
        a.sbb(r11, rbx)?;
        a.jmp(first)?;
        a.set_label(&mut store)?;
        a.mov(qword_ptr(rsi + r10 * 8 + 0x800), r9)?;
        a.jmp(stored)?;
        a.set_label(&mut out)?;
        a.sub(r15d, 1)?;
        a.jnz(outer)?;
        a.mov(ecx, 200)?;
        a.set_label(&mut second)?;
        a.add(r12, rcx)?;
        for (bit, counter) in [(1, r13), (2, r14), (4, r15)] {
            let mut past = a.create_label();
            a.test(cl, bit)?;
            a.jz(past)?;
            a.inc(counter)?;
            a.set_label(&mut past)?;
        }
        a.sub(ecx, 1)?;
        a.jz(third)?;
        a.jmp(second)?;
        a.set_label(&mut third)?;
        a.mov(ecx, 100)?;
        a.set_label(&mut fourth)?;
        a.cmp(ecx, 50)?;
        a.ja(skip)?;
        a.add(r12, rcx)?;
        a.set_label(&mut skip)?;
        a.sub(ecx, 1)?;
        a.jnz(fourth)?;
        a.nop()?;
        Ok(())
    });
    let stats = on.cpu.jit_stats();
    // The first loop ran as one block: its inner branches' exits were linked.
    assert!(stats.links[ferrite_jit::EXIT_INNER] > 0 && stats.links[ferrite_jit::EXIT_INNER + 1] > 0, "{stats:?}");
}

#[test]
fn flags_after_every_operation_and_width_match_the_interpreter() {
    // Each comparison feeds every condition through SETcc into memory.
    let values = [0u64, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff_ffff, 0x8000_0000_0000_0000, u64::MAX];
    for (i, &x) in values.iter().enumerate() {
        for &y in &values[i..] {
            both(&[(RAX, x), (RBX, y), (RDI, DATA)], |a| {
                // ADC and SBB take the carry the operation before them left.
                let ops: [fn(&mut CodeAssembler) -> Result<(), IcedError>; 15] = [
                    |a| a.cmp(al, bl),
                    |a| a.cmp(ax, bx),
                    |a| a.cmp(eax, ebx),
                    |a| a.cmp(rax, rbx),
                    |a| a.add(cl, bl),
                    |a| a.sub(rcx, rbx),
                    |a| a.adc(rcx, rbx),
                    |a| a.add(edx, ebx),
                    |a| a.sbb(edx, ebx),
                    |a| a.sbb(cl, bl),
                    |a| a.test(rax, rbx),
                    |a| a.adc(dx, bx),
                    |a| a.inc(ax),
                    |a| a.sbb(rdx, rbx),
                    |a| a.dec(rax),
                ];
                for (k, op) in ops.iter().enumerate() {
                    a.mov(rcx, rax)?;
                    a.mov(rdx, rax)?;
                    op(a)?;
                    for (c, set) in SETTERS.iter().enumerate() {
                        set(a, byte_ptr(rdi + (k * 16 + c) as i32))?;
                    }
                }
                Ok(())
            });
        }
    }
}

#[test]
fn bit_tests_keep_the_other_flags_and_match_the_interpreter() {
    // Each operation leaves a different record pending; a BT form then sets CF and keeps the
    // rest (AF included, which PUSHFQ shows), and every condition is read back after it.
    let setups: [fn(&mut CodeAssembler) -> Result<(), IcedError>; 8] = [
        |a| a.cmp(eax, ebx),
        |a| a.add(cl, bl),
        |a| a.inc(dx),
        |a| a.imul_2(rdx, rbx),
        |a| a.shl(ecx, 3),
        |a| a.test(rax, rbx),
        |a| a.sbb(rdx, rbx),
        // Flags the interpreter left (BSF runs there).
        |a| a.bsf(rdx, rbx),
    ];
    let tests: [fn(&mut CodeAssembler) -> Result<(), IcedError>; 10] = [
        |a| a.bt(eax, 3),
        |a| a.bt(rax, rbx),
        |a| a.bts(ecx, 31),
        |a| a.btr(dx, bx),
        |a| a.btc(rcx, 63),
        |a| a.bt(dword_ptr(rdi + 0x1800), 5),
        |a| a.bts(qword_ptr(rdi + 0x1800), r9),
        // Negative register offsets reach below the operand.
        |a| a.btr(word_ptr(rdi + 0x1810), r8w),
        |a| a.btc(dword_ptr(rdi + 0x1810), r8d),
        |a| a.bt(qword_ptr(rdi + 0x1810), r8),
    ];
    for (x, y) in [(0u64, 0u64), (0x7f, 1), (0x8000_0000, 0xffff_ffff), (u64::MAX, 0x8000_0000_0000_0001), (0x1234_5678, 77)] {
        both(&[(RAX, x), (RBX, y), (RDI, DATA), (8, (-77i64) as u64), (9, 100)], |a| {
            a.mov(qword_ptr(rdi + 0x1800), rax)?;
            a.mov(qword_ptr(rdi + 0x1808), rbx)?;
            for (k, setup) in setups.iter().enumerate() {
                for (t, test) in tests.iter().enumerate() {
                    let at = ((k * tests.len() + t) * 24) as i32;
                    a.mov(rcx, rax)?;
                    a.mov(rdx, rbx)?;
                    setup(a)?;
                    test(a)?;
                    for (c, set) in SETTERS.iter().enumerate() {
                        set(a, byte_ptr(rdi + at + c as i32))?;
                    }
                    a.pushfq()?;
                    a.pop(qword_ptr(rdi + at + 16))?;
                    a.mov(qword_ptr(rdi + 0x1000 + (at / 3)), rcx)?;
                }
            }
            Ok(())
        });
    }
}

#[test]
fn flags_a_block_leaves_stored_and_the_next_block_reads_match_the_interpreter() {
    // Each operation ends its block (a jump to the next instruction) with its record stored;
    // the next block starts with PUSHFQ or a BT, which fold that record into RFLAGS (ADD, SUB,
    // ADC, SBB, CMP and the logic operations at each width, and others).
    let ops: [fn(&mut CodeAssembler) -> Result<(), IcedError>; 20] = [
        |a| a.add(cl, bl),
        |a| a.add(cx, bx),
        |a| a.add(ecx, ebx),
        |a| a.add(rcx, rbx),
        |a| a.sub(cl, bl),
        |a| a.sub(cx, bx),
        |a| a.sub(ecx, ebx),
        |a| a.sub(rcx, rbx),
        |a| a.adc(cl, bl),
        |a| a.adc(rcx, rbx),
        |a| a.sbb(cx, bx),
        |a| a.sbb(ecx, ebx),
        |a| a.cmp(rcx, rbx),
        |a| a.and(cl, bl),
        |a| a.or(cx, bx),
        |a| a.xor(ecx, ebx),
        |a| a.test(rcx, rbx),
        |a| a.inc(cx),
        |a| a.imul_2(rcx, rbx),
        |a| a.shl(ecx, 3),
    ];
    let pairs = [(0u64, 0u64), (0x7f, 1), (0x80, 0x80), (0xffff, 1), (0x8000_0000, 0xffff_ffff), (u64::MAX, 0x8000_0000_0000_0001), (0x1234_5678, 77), (1, 2)];
    for (x, y) in pairs {
        both(&[(RAX, x), (RBX, y), (RDI, DATA)], |a| {
            for (k, op) in ops.iter().enumerate() {
                for bt_first in [false, true] {
                    let at = ((k * 2 + bt_first as usize) * 16) as i32;
                    // ADC and SBB take the carry the case before left.
                    a.mov(rcx, rax)?;
                    op(a)?;
                    let mut next = a.create_label();
                    a.jmp(next)?;
                    a.set_label(&mut next)?;
                    if bt_first {
                        a.bt(eax, 7)?;
                    }
                    a.pushfq()?;
                    a.pop(qword_ptr(rdi + at))?;
                    a.mov(qword_ptr(rdi + at + 8), rcx)?;
                }
            }
            Ok(())
        });
    }
}

#[test]
fn sse_moves_and_xor_match_the_interpreter() {
    let on = both(&[(RAX, 0x0123_4567_89ab_cdef), (RBX, 0xfedc_ba98_7654_3210), (RDI, DATA), (RSI, DATA + 0x803)], |a| {
        enable_sse(a)?;
        // Patterns in memory, then every register filled from them.
        for k in 0..8 {
            a.mov(qword_ptr(rdi + 0x100 + k * 8), rax)?;
            a.rol(rax, 13)?;
            a.xor(rax, rbx)?;
        }
        for (k, x) in [xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13, xmm14, xmm15].into_iter().enumerate() {
            a.movdqu(x, xmmword_ptr(rdi + 0x100 + (k % 4) as i32 * 8))?;
        }
        // Scalar loads zero the rest; register moves keep it.
        a.movsd_2(xmm0, qword_ptr(rdi + 0x108))?;
        a.movss(xmm1, dword_ptr(rdi + 0x10c))?;
        a.movsd_2(xmm2, xmm3)?;
        a.movss(xmm4, xmm5)?;
        a.movsd_2(qword_ptr(rdi + 0x200), xmm6)?;
        a.movss(dword_ptr(rdi + 0x20c), xmm7)?;
        // MOVD/MOVQ both ways, to and from registers and memory.
        a.movq(xmm8, rax)?;
        a.movd(xmm9, ebx)?;
        a.movq(xmm10, qword_ptr(rdi + 0x110))?;
        a.movd(xmm11, dword_ptr(rdi + 0x114))?;
        a.movq(xmm12, xmm13)?;
        a.movq(rcx, xmm14)?;
        a.movd(edx, xmm15)?;
        a.movq(qword_ptr(rdi + 0x210), xmm0)?;
        a.movd(dword_ptr(rdi + 0x218), xmm1)?;
        // Aligned and unaligned 128-bit moves, XOR from registers and memory.
        a.movaps(xmm3, xmmword_ptr(rdi + 0x120))?;
        a.movups(xmm5, xmmword_ptr(rsi))?;
        a.movdqa(xmmword_ptr(rdi + 0x230), xmm5)?;
        a.movdqu(xmmword_ptr(rsi + 0x40), xmm3)?;
        a.movapd(xmm6, xmm2)?;
        a.xorps(xmm7, xmm7)?;
        a.xorpd(xmm6, xmm4)?;
        a.pxor(xmm13, xmmword_ptr(rdi + 0x100))?;
        for (k, x) in [xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13, xmm14, xmm15].into_iter().enumerate() {
            a.movdqu(xmmword_ptr(rdi + 0x400 + k as i32 * 16), x)?;
        }
        Ok(())
    });
    assert!(on.cpu.jit_stats().native_insns > 40, "{:?}", on.cpu.jit_stats());
}

#[test]
fn sse_faults_in_compiled_code_are_the_interpreters() {
    // A misaligned MOVAPS raises #GP; with CR0.TS set, the first SSE instruction raises #NM.
    for (ts, addr, vector) in [(false, DATA + 8, 13u8), (true, DATA, 7)] {
        let stops = [JitMode::Off, JitMode::Always].map(|mode| {
            let mut v = vm(mode);
            v.preset(&[(RDI, addr)], 0);
            v.code(|a| {
                enable_sse(a)?;
                a.mov(eax, 1)?;
                a.movaps(xmm0, xmmword_ptr(rdi))?;
                a.mov(ebx, 2)?;
                Ok(())
            });
            if ts {
                v.cpu.state.cr0 |= 1 << 3;
            }
            (v.run(), v.gpr(RAX), v.gpr(RBX))
        });
        assert_eq!(stops[0], (Stop::Exception(vector), 1, 0));
        assert_eq!(stops[0], stops[1]);
    }
}

#[test]
fn accumulator_sign_extensions_match_the_interpreter() {
    for x in [0u64, 0x7f, 0x80, 0x8000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff_ffff_ff80, 0x1234_5678_8765_4321] {
        both(&[(RDI, DATA), (11, x)], |a| {
            let ops: [fn(&mut CodeAssembler) -> Result<(), IcedError>; 6] =
                [|a| a.cbw(), |a| a.cwde(), |a| a.cdqe(), |a| a.cwd(), |a| a.cdq(), |a| a.cqo()];
            for (k, op) in ops.iter().enumerate() {
                a.mov(rax, r11)?;
                a.mov(rdx, 0x5555_5555_5555_5555u64)?;
                op(a)?;
                a.mov(qword_ptr(rdi + k as i32 * 16), rax)?;
                a.mov(qword_ptr(rdi + k as i32 * 16 + 8), rdx)?;
            }
            Ok(())
        });
    }
}

#[test]
fn a_store_into_the_running_block_takes_effect_at_the_next_instruction() {
    // The MOV rewrites the immediate of the instruction after it, which is in the same
    // block: the block must stop after the store and the new bytes must run.
    let on = both(&[(RDI, CODE)], |a| {
        a.mov(eax, 1)?;
        a.mov(byte_ptr(rdi + 10), 0x55)?;
        a.mov(ebx, 0x11)?; // at CODE + 9: its immediate is at CODE + 10
        a.add(eax, ebx)?;
        Ok(())
    });
    assert_eq!(on.gpr(RBX), 0x55);
    assert_eq!(on.gpr(RAX), 0x56);
}

#[test]
fn code_rewritten_by_a_device_runs_fresh() {
    let mut v = vm(JitMode::Always);
    v.code(|a| a.mov(eax, 0x1111u32));
    v.finish();
    assert_eq!(v.gpr(RAX), 0x1111);
    // DMA-style update behind the CPU's back, then the same code again.
    v.write(CODE + 1, &0x2222u32.to_le_bytes());
    v.cpu.invalidate_code(CODE + 1, 4);
    v.cpu.state.rip = CODE;
    v.finish();
    assert_eq!(v.gpr(RAX), 0x2222);
}

#[test]
fn code_rewritten_after_its_idle_blocks_were_dropped_runs_fresh() {
    // A block alone on its page (INC EAX, then a jump) leads to 20,000 blocks run once (INC
    // EAX, JMP to the next): enough decodes for the code cache to drop the idle ones, the
    // first among them. The program then turns the first INC into a DEC and runs it all again:
    // the old block must not come back (from the jump cache, where no other block took its
    // slot).
    const BLOCKS: u32 = 20_000;
    for mode in [JitMode::Off, JitMode::On] {
        let mut v = vm(mode);
        v.code(|a| {
            let mut start = a.create_label();
            let mut chain = a.create_label();
            let mut done = a.create_label();
            a.xor(eax, eax)?;
            a.xor(ebx, ebx)?;
            a.jmp(start)?;
            a.set_label(&mut start)?;
            a.inc(eax)?;
            a.jmp(chain)?;
            a.db(&[0xcc; 4096])?;
            a.set_label(&mut chain)?;
            for _ in 0..BLOCKS - 1 {
                let mut next = a.create_label();
                a.inc(eax)?;
                a.jmp(next)?;
                a.set_label(&mut next)?;
            }
            a.test(ebx, ebx)?;
            a.jnz(done)?;
            a.inc(ebx)?;
            a.lea(rdi, ptr(start))?;
            a.mov(byte_ptr(rdi + 1), 0xc8)?; // FF C0 (INC EAX) → FF C8 (DEC EAX)
            a.jmp(start)?;
            a.set_label(&mut done)?;
            a.nop()
        });
        v.budget = 1 << 20;
        v.finish();
        let stats = v.cpu.jit_stats();
        assert!(stats.blocks_evicted > 1000, "{mode:?}: {stats:?}");
        assert_eq!(v.gpr(RAX), u64::from(2 * BLOCKS - 2), "{mode:?}: the first block ran its old code");
    }
}

#[test]
fn blocks_that_keep_running_stay_through_the_sweeps() {
    // 40 chunks of 500 blocks run once (INC EAX, JMP to the next), each followed by 100
    // rounds of a loop of two blocks: the sweeps between chunks drop idle blocks, never the
    // loop's, which runs between any two. The interpreter alone must keep the same blocks as
    // with the JIT, where the loop is compiled and no sweep looks at it.
    const CHUNKS: u32 = 40;
    const CHUNK: u32 = 500;
    let stats = [JitMode::Off, JitMode::On].map(|mode| {
        let mut v = vm(mode);
        v.code(|a| {
            let mut hot = a.create_label();
            let mut done = a.create_label();
            a.xor(eax, eax)?;
            a.xor(ebx, ebx)?;
            a.jmp(done)?;
            a.set_label(&mut hot)?;
            a.mov(ecx, 100)?;
            let mut round = a.create_label();
            let mut half = a.create_label();
            a.set_label(&mut round)?;
            a.inc(ebx)?;
            a.jmp(half)?;
            a.set_label(&mut half)?;
            a.dec(ecx)?;
            a.jnz(round)?;
            a.ret()?;
            a.set_label(&mut done)?;
            for _ in 0..CHUNKS {
                for _ in 0..CHUNK {
                    let mut next = a.create_label();
                    a.inc(eax)?;
                    a.jmp(next)?;
                    a.set_label(&mut next)?;
                }
                a.call(hot)?;
            }
            a.nop()
        });
        v.budget = 1 << 20;
        v.finish();
        assert_eq!((v.gpr(RAX), v.gpr(RBX)), (u64::from(CHUNKS * CHUNK), u64::from(CHUNKS * 100)), "{mode:?}");
        v.cpu.jit_stats()
    });
    let [off, on] = stats;
    assert!(on.blocks_evicted > 1000, "{on:?}");
    assert_eq!((off.blocks_decoded, off.blocks_evicted), (on.blocks_decoded, on.blocks_evicted), "interpreted: {off:?}");
}

/// Shifts and rotates by an immediate: native where a register-only ALU instruction
/// overwrites their flags before anything reads them, interpreted where their flags live on
/// (a Jcc, ADC, INC's carried CF, a memory operand that may fault, the end of the block).
#[test]
fn shifts_and_rotates_with_dead_and_live_flags_match_the_interpreter() {
    let values = [0u64, 1, 0x80, 0x8001, 0x8000_0001, 0xdead_beef_0123_4567, u64::MAX];
    for &x in &values {
        let vm = both(&[(RAX, x), (RBX, x.rotate_left(13)), (RDI, DATA)], |a| {
            let mut over = a.create_label();
            let ops: [fn(&mut CodeAssembler) -> Result<(), IcedError>; 16] = [
                |a| a.ror(eax, 7),
                |a| a.rol(rbx, 13),
                |a| a.shl(cx, 9),
                |a| a.shr(dl, 3),
                |a| a.sar(rax, 63),
                |a| a.shl(ah, 1),
                |a| a.ror(bx, 17), // 16-bit rotate by more than the width
                |a| a.shr(cl, 12), // 8-bit shift past the width
                |a| a.sar(dx, 20),
                |a| a.rol(r8b, 9),
                |a| a.shl(r9, 40),
                |a| a.shr(r10d, 31),
                |a| a.ror(r11, 1),
                |a| a.rol(esi, 31),
                |a| a.sar(ecx, 5),
                |a| a.shl(edx, 0x21), // masked to 1
            ];
            for (k, op) in ops.iter().enumerate() {
                a.mov(rcx, rax)?;
                a.mov(rdx, rbx)?;
                a.mov(r8, rax)?;
                a.mov(r9, rbx)?;
                a.mov(r10, rax)?;
                a.mov(r11, rbx)?;
                a.mov(rsi, rax)?;
                op(a)?;
                match k % 4 {
                    // Dead: an ALU instruction overwrites every flag (a move in between).
                    0 => {
                        a.mov(r12, rax)?;
                        a.add(r12, rbx)?;
                    }
                    // Live: ADC reads CF.
                    1 => a.adc(r12, rcx)?,
                    // Live: INC keeps CF.
                    2 => a.inc(r13)?,
                    // Live: a condition reads them.
                    _ => a.setb(byte_ptr(rdi + k as i32))?,
                }
                a.xor(r14, rcx)?;
                a.add(r14, rdx)?;
                a.add(r14, r8)?;
                a.xor(r14, r9)?;
                a.add(r14, r10)?;
                a.xor(r14, r11)?;
                a.add(r14, rsi)?;
                a.mov(qword_ptr(rdi + 0x100 + 8 * k as i32), r14)?;
            }
            // Live at the end of a block: the Jcc reads them.
            a.ror(rax, 3)?;
            a.jc(over)?;
            a.inc(r15)?;
            a.set_label(&mut over)?;
            a.shl(rbx, 2)?;
            Ok(())
        });
        let _ = vm;
    }
    // Shifts whose flags die are emitted natively (all four instructions here).
    let vm = both(&[(RAX, 0x1234_5678), (RBX, 3)], |a| {
        a.ror(eax, 7)?;
        a.add(eax, ebx)?;
        a.shl(rbx, 3)?;
        a.xor(ebx, eax)?;
        Ok(())
    });
    assert!(vm.cpu.jit_stats().native_insns >= 4, "{:?}", vm.cpu.jit_stats());
}

/// PUSH of a memory operand, RSP-relative ones included (the address is formed before the
/// push), matches the interpreter.
#[test]
fn push_of_memory_matches_the_interpreter() {
    let vm = both(&[(RSI, DATA), (RCX, 0x55)], |a| {
        a.mov(qword_ptr(rsi + 0x40), rcx)?;
        a.push(qword_ptr(rsi + 0x40))?;
        a.push(qword_ptr(rsp))?;
        a.push(qword_ptr(rsp + 8))?;
        a.pop(rax)?;
        a.pop(rbx)?;
        a.pop(rdx)?;
        a.add(rax, rbx)?;
        Ok(())
    });
    assert!(vm.cpu.jit_stats().native_insns >= 8, "{:?}", vm.cpu.jit_stats());
}

/// Each operation of `ops` with its flags stored after it (PUSHFQ; POP to memory), so every
/// one's flags are compared, not only the last.
fn with_flags_stored(a: &mut CodeAssembler, ops: &[&dyn Fn(&mut CodeAssembler) -> Result<(), IcedError>]) -> Result<(), IcedError> {
    for (k, op) in ops.iter().enumerate() {
        op(a)?;
        a.pushfq()?;
        a.pop(qword_ptr(rsi + 0x800 + 8 * k as i32))?;
    }
    Ok(())
}

#[test]
fn cmpxchg_xadd_xchg_and_locked_operations_match_the_interpreter() {
    // RSI: DATA, whose first qwords hold the operands; matches and mismatches of every
    // size, locked and not, a misaligned locked one (the interpreter's), and a 32-bit match
    // that must keep RAX's upper half.
    let vm = both(&[(RSI, DATA), (RBX, 0x8000_0000_8000_80ff), (RCX, 0x1234_5678_9abc_def0), (RDX, 0x7fff_ffff_ffff_ffff)], |a| {
        a.mov(rax, 0x0102_0304_0506_0708u64)?;
        a.mov(qword_ptr(rsi), rax)?;
        a.mov(qword_ptr(rsi + 8), rdx)?;
        a.mov(qword_ptr(rsi + 16), rbx)?;
        a.mov(qword_ptr(rsi + 24), rcx)?;
        with_flags_stored(
            a,
            &[
                &|a| a.cmpxchg(byte_ptr(rsi), bl),
                &|a| a.cmpxchg(byte_ptr(rsi), cl),
                &|a| a.lock().cmpxchg(word_ptr(rsi + 2), bx),
                &|a| a.lock().cmpxchg(word_ptr(rsi + 2), cx),
                &|a| a.cmpxchg(dword_ptr(rsi + 8), ecx),
                &|a| {
                    a.mov(eax, dword_ptr(rsi + 8))?;
                    a.bts(rax, 40)?;
                    a.lock().cmpxchg(dword_ptr(rsi + 8), ebx)?;
                    a.mov(qword_ptr(rsi + 48), rax)
                },
                &|a| a.lock().cmpxchg(qword_ptr(rsi + 16), rcx),
                &|a| {
                    a.mov(rax, qword_ptr(rsi + 16))?;
                    a.lock().cmpxchg(qword_ptr(rsi + 16), rdx)
                },
                &|a| a.lock().cmpxchg(dword_ptr(rsi + 1), ecx),
                &|a| a.xadd(byte_ptr(rsi + 3), ah),
                &|a| a.lock().xadd(word_ptr(rsi + 4), bx),
                &|a| a.xadd(dword_ptr(rsi + 12), edx),
                &|a| a.lock().xadd(qword_ptr(rsi + 24), rdx),
                &|a| a.xchg(qword_ptr(rsi + 32), rcx),
                &|a| a.xchg(byte_ptr(rsi + 5), bh),
                &|a| a.lock().add(dword_ptr(rsi + 8), 0x7fff_ffff),
                &|a| a.lock().sub(qword_ptr(rsi + 16), rdx),
                &|a| a.lock().and(word_ptr(rsi + 2), 0x8001),
                &|a| a.lock().or(byte_ptr(rsi + 6), cl),
                &|a| a.lock().xor(qword_ptr(rsi + 24), rbx),
                &|a| a.lock().inc(dword_ptr(rsi + 12)),
                &|a| {
                    a.mov(qword_ptr(rsi + 40), 0)?;
                    a.lock().dec(qword_ptr(rsi + 40))
                },
                &|a| a.lock().dec(byte_ptr(rsi + 7)),
            ],
        )?;
        Ok(())
    });
    assert!(vm.cpu.jit_stats().native_insns >= 40, "{:?}", vm.cpu.jit_stats());
}

#[test]
fn interrupt_and_alignment_flag_changes_and_pushfq_match_the_interpreter() {
    // CPL 0: CLI and STI, with IF clear and set (the second STI changes nothing), STAC and
    // CLAC (the TLB context they pick is used right after), and PUSHFQ of pending
    // arithmetic flags, each image stored.
    let vm = both(&[(RSI, DATA), (RBX, 0x8000_0000_0000_0001)], |a| {
        with_flags_stored(
            a,
            &[
                &|a| a.cli(),
                &|a| {
                    a.sti()?;
                    a.nop()
                },
                &|a| a.sti(),
                &|a| {
                    a.stac()?;
                    a.mov(rax, qword_ptr(rsi))
                },
                &|a| {
                    a.clac()?;
                    a.mov(qword_ptr(rsi + 8), rax)
                },
                &|a| a.add(rbx, rbx),
                &|a| a.sub(ebx, 1),
                &|a| a.cli(),
            ],
        )
    });
    assert!(vm.cpu.jit_stats().native_insns >= 20, "{:?}", vm.cpu.jit_stats());
}

#[test]
fn swapgs_and_fences_match_the_interpreter() {
    // GS's base and KERNEL_GS_BASE point at two halves of DATA; SWAPGS between GS accesses
    // picks the other half, fences and PAUSE between them change nothing, and the MSR is read
    // back after the second SWAPGS.
    let kernel = DATA + 0x100;
    let vm = both(&[(RSI, DATA), (RBX, 0x1122_3344_5566_7788)], |a| {
        for (msr, base) in [(0xc000_0101u32, DATA), (0xc000_0102, kernel)] {
            a.mov(ecx, msr)?;
            a.mov(eax, base as u32)?;
            a.mov(edx, (base >> 32) as u32)?;
            a.wrmsr()?;
        }
        a.mov(qword_ptr(rsi + 0x108), rbx)?;
        a.swapgs()?;
        a.mov(rax, qword_ptr(8).gs())?;
        a.lfence()?;
        a.mov(qword_ptr(0x10).gs(), rax)?;
        a.mfence()?;
        a.sfence()?;
        a.pause()?;
        a.swapgs()?;
        a.mov(qword_ptr(0x18).gs(), rax)?;
        a.mov(ecx, 0xc000_0102u32)?;
        a.rdmsr()?;
        a.mov(dword_ptr(rsi + 0x20), eax)?;
        a.mov(dword_ptr(rsi + 0x24), edx)
    });
    let stats = vm.cpu.jit_stats();
    assert!(stats.native_insns >= 12, "{stats:?}");
    assert_eq!(vm.read(DATA + 0x110, 8), 0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(vm.read(DATA + 0x18, 8), 0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(vm.read(DATA + 0x20, 8), kernel.to_le_bytes());
}

#[test]
fn mul_and_div_match_the_interpreter() {
    // MUL of 32 and 64 bits with and without a high half, from a register and from memory;
    // DIV with RDX zero (native), with a 128-bit dividend and a 32-bit one whose EDX is
    // non-zero (the first the interpreter's), from memory; a shift whose flags are dead but
    // for DIV, which keeps them. Every result and the flags after each are stored.
    let vm = both(&[(RSI, DATA), (RBX, 0xffff_ffff_ffff_fff1), (RCX, 0x1234_5678_9abc)], |a| {
        a.mov(qword_ptr(rsi + 0x100), rcx)?;
        a.mov(qword_ptr(rsi + 0x108), 7)?;
        let ops: [&dyn Fn(&mut CodeAssembler) -> Result<(), IcedError>; 8] = [
            &|a| {
                a.mov(rax, rbx)?;
                a.mul(rcx)
            },
            &|a| {
                a.mov(eax, 3)?;
                a.mul(qword_ptr(rsi + 0x108))
            },
            &|a| {
                a.mov(eax, ebx)?;
                a.mul(ecx)
            },
            &|a| {
                a.mov(rax, 1_000_003u64)?;
                a.xor(edx, edx)?;
                a.div(qword_ptr(rsi + 0x108))
            },
            &|a| {
                a.mov(rax, rbx)?;
                a.mov(edx, 2)?;
                a.div(rcx)
            },
            &|a| {
                a.mov(eax, 0x89ab_cdefu32)?;
                a.mov(edx, 5)?;
                a.mov(edi, 0x10000)?;
                a.div(edi)
            },
            &|a| {
                a.add(rbx, rbx)?;
                a.rol(rcx, 3)?;
                a.xor(edx, edx)?;
                a.mov(rax, rcx)?;
                a.div(rcx)
            },
            &|a| a.mov(rdi, rdx),
        ];
        for (k, op) in ops.iter().enumerate() {
            op(a)?;
            a.mov(qword_ptr(rsi + 0x200 + 16 * k as i32), rax)?;
            a.mov(qword_ptr(rsi + 0x208 + 16 * k as i32), rdx)?;
        }
        with_flags_stored(a, &ops)
    });
    assert!(vm.cpu.jit_stats().native_insns >= 40, "{:?}", vm.cpu.jit_stats());
}

#[test]
fn leave_and_moves_from_segment_registers_match_the_interpreter() {
    // A frame set up and left (LEAVE reads the saved RBP where RBP points); MOV from DS and
    // SS into registers of every size (over ones) and into memory.
    let vm = both(&[(RSI, DATA), (RBX, u64::MAX)], |a| {
        a.push(rbp)?;
        a.mov(rbp, rsp)?;
        a.sub(rsp, 0x40)?;
        a.mov(qword_ptr(rbp - 8), rbx)?;
        a.mov(rax, rbx)?;
        a.mov(rcx, rbx)?;
        a.mov(rdx, rbx)?;
        a.mov(ax, ds)?;
        a.mov(ecx, ss)?;
        a.mov(rdx, ds)?;
        a.mov(word_ptr(rsi + 0x10), ss)?;
        a.leave()?;
        a.mov(qword_ptr(rsi + 0x18), rsp)?;
        a.mov(qword_ptr(rsi + 0x20), rbp)
    });
    assert!(vm.cpu.jit_stats().native_insns >= 14, "{:?}", vm.cpu.jit_stats());
}

#[test]
fn rotates_whose_flags_live_on_match_the_interpreter() {
    // ROL and ROR of every size by 1, by more, and by the width (the value stays, CF and OF
    // change), after flags of every kind (pending arithmetic, a compare, RFLAGS itself). All
    // but STC and the POPs to memory run natively.
    let vm = both(&[(RSI, DATA), (RBX, 0x8000_0000_0000_0001), (RCX, 0x4000_0000_8000_0003), (RDX, 0xc3)], |a| {
        with_flags_stored(
            a,
            &[
                &|a| {
                    a.add(rbx, rbx)?;
                    a.rol(rbx, 1)
                },
                &|a| a.ror(ecx, 7),
                &|a| {
                    a.cmp(edx, 0xc3)?;
                    a.rol(dx, 3)
                },
                &|a| a.ror(dl, 1),
                &|a| a.rol(dl, 8),
                &|a| {
                    a.stc()?;
                    a.rol(rcx, 63)
                },
                &|a| a.ror(rbx, 33),
            ],
        )
    });
    assert!(vm.cpu.jit_stats().native_insns >= 16, "{:?}", vm.cpu.jit_stats());
}

/// An instruction the guest's CPU model lacks raises #UD in compiled code too, even one the
/// translator emits natively for other models, and the state before it is intact.
#[test]
fn instructions_the_model_lacks_raise_ud_in_compiled_code() {
    for (model, code) in [
        ("max,-cmov", (|a: &mut CodeAssembler| a.cmove(rax, rbx)) as fn(&mut CodeAssembler) -> Result<(), IcedError>),
        ("max,-sse2", |a| a.pxor(xmm0, xmm1)),
    ] {
        let mut v = vm(JitMode::Always);
        v.cpu.model = ferrite_cpu::CpuModel::parse(model).unwrap();
        v.code(|a| {
            a.mov(rax, 1u64)?;
            a.add(rax, rax)?;
            code(a)
        });
        assert_eq!(v.run(), Stop::Exception(6), "{model}");
        assert_eq!(v.gpr(RAX), 2, "{model}");
        assert!(v.cpu.jit_stats().compiled_runs > 0, "{model}: {:?}", v.cpu.jit_stats());
    }
}

/// Prefetch hints are emitted natively as nothing: they touch no memory and never fault,
/// even at an address with no page or a non-canonical one.
#[test]
fn prefetch_hints_compile_to_nothing() {
    let vm = both(&[(RAX, 0x7fff_ffff_f000), (RBX, 0x8000_0000_0000_0000)], |a| {
        a.prefetchw(byte_ptr(rax))?;
        a.prefetcht0(byte_ptr(rbx))?;
        a.prefetchnta(byte_ptr(rax + 64))?;
        a.add(rax, rbx)?;
        Ok(())
    });
    assert!(vm.cpu.jit_stats().native_insns >= 4, "{:?}", vm.cpu.jit_stats());
}

/// Compiled blocks give way to the interpreter while the guest's own breakpoints or
/// alignment checking are in effect (SDM Vol. 3, 18.3 and 6.15): a block warmed up under
/// the JIT still stops at an instruction breakpoint (a fault at the instruction), a data
/// breakpoint (a trap after the store) and a misaligned user access (#AC).
#[test]
fn guest_breakpoints_and_alignment_checks_stop_compiled_code() {
    let snippet = |a: &mut CodeAssembler| {
        a.mov(eax, 1)?; // 5 bytes
        a.mov(qword_ptr(rsi + 8), rax)?; // 4 bytes
        a.mov(ebx, 2)?;
        Ok(())
    };
    let warm = |user: bool| {
        let mut v = if user { Vm::user(Mode::Long) } else { Vm::new(Mode::Long) };
        v.cpu.set_jit(JitConfig { mode: JitMode::Always, ..JitConfig::default() });
        v.preset(&[(RSI, DATA)], 0);
        v.code(snippet);
        v.finish();
        assert!(v.cpu.jit_stats().compiled_runs > 0);
        v.preset(&[(RAX, 0), (RBX, 0)], 0);
        v.cpu.state.rip = CODE;
        v
    };
    // DR1: instruction breakpoint on the store.
    let mut v = warm(false);
    v.cpu.state.dr[1] = CODE + 5;
    v.cpu.state.dr[7] = 0x400 | 1 << 2;
    assert_eq!(v.run(), Stop::Exception(1));
    assert_eq!((v.frame(0), v.gpr(RAX)), (CODE + 5, 1));
    assert_eq!(v.cpu.state.dr[6] & 0xf, 2);
    // DR0: 8-byte write breakpoint on the stored qword.
    let mut v = warm(false);
    v.cpu.state.dr[0] = DATA + 8;
    v.cpu.state.dr[7] = 0x400 | 1 | 1 << 16 | 2 << 18;
    assert_eq!(v.run(), Stop::Exception(1));
    assert_eq!((v.frame(0), v.gpr(RBX)), (CODE + 9, 0));
    assert_eq!(v.cpu.state.dr[6] & 0xf, 1);
    // #AC: CR0.AM, EFLAGS.AC, CPL 3, the store at an address 4 mod 8.
    let mut v = warm(true);
    v.cpu.state.cr0 |= 1 << 18;
    v.cpu.state.gpr[RSI] = DATA + 4;
    let f = v.cpu.rflags();
    v.cpu.set_rflags(f | 1 << 18);
    assert_eq!(v.run(), Stop::Exception(17));
    assert_eq!((v.frame(0), v.frame(1)), (0, CODE + 5));
}

/// Shifts and rotates by CL, every count that matters for each width (zero, the width and
/// past it, the 5/6-bit masks), where their flags die and where they live on.
#[test]
fn live_flags_of_shifts_by_cl_match_the_interpreter() {
    // A zero count leaves the compare's flags; others set the shift's. Every condition and
    // PUSHFQ read them after each.
    for count in [0u64, 1, 5, 31, 32, 33, 63, 64] {
        both(&[(RAX, 0x8765_4321_fedc_ba98), (RBX, 0x8000_0000_0000_0001), (RCX, count), (RDI, DATA)], |a| {
            let ops: [fn(&mut CodeAssembler) -> Result<(), IcedError>; 6] = [
                |a| a.shl(rdx, cl),
                |a| a.shr(edx, cl),
                |a| a.sar(rdx, cl),
                |a| a.sar(edx, cl),
                |a| a.shl(edx, cl),
                |a| a.shr(rdx, cl),
            ];
            for (k, op) in ops.iter().enumerate() {
                let at = k as i32 * 32;
                a.mov(rdx, rax)?;
                a.cmp(rax, rbx)?;
                op(a)?;
                for (c, set) in SETTERS.iter().enumerate() {
                    set(a, byte_ptr(rdi + at + c as i32))?;
                }
                a.pushfq()?;
                a.pop(qword_ptr(rdi + at + 16))?;
                a.mov(qword_ptr(rdi + at + 24), rdx)?;
            }
            Ok(())
        });
    }
}

#[test]
fn shifts_and_rotates_by_cl_match_the_interpreter() {
    for count in [0u64, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 0xff] {
        let vm = both(&[(RAX, 0x8765_4321_fedc_ba98), (RBX, 0x8000_0000_0000_0001), (RCX, count), (RDI, DATA)], |a| {
            let ops: [fn(&mut CodeAssembler) -> Result<(), IcedError>; 12] = [
                |a| a.shl(rax, cl),
                |a| a.shr(eax, cl),
                |a| a.sar(bx, cl),
                |a| a.rol(bl, cl),
                |a| a.ror(rbx, cl),
                |a| a.rol(dx, cl),
                |a| a.ror(edx, cl),
                |a| a.sar(rdx, cl),
                |a| a.shl(dl, cl),
                |a| a.shr(dh, cl),
                |a| a.rol(r8d, cl),
                |a| a.ror(r9b, cl),
            ];
            for (k, op) in ops.iter().enumerate() {
                a.mov(rdx, rax)?;
                a.xor(rdx, rbx)?;
                a.mov(r8, rdx)?;
                a.mov(r9, rbx)?;
                op(a)?;
                if k % 2 == 0 {
                    a.add(r10, rdx)?; // dead: every flag overwritten
                } else {
                    a.adc(r10, rdx)?; // live: CF read
                }
                a.xor(r10, rax)?;
                a.add(r10, rbx)?;
                a.xor(r10, r8)?;
                a.add(r10, r9)?;
                a.mov(qword_ptr(rdi + 8 * k as i32), r10)?;
            }
            Ok(())
        });
        let _ = vm;
    }
    // A shift by CL whose flags die is compiled (both instructions native).
    let vm = both(&[(RAX, 5), (RBX, 3), (RCX, 4)], |a| {
        a.shl(rax, cl)?;
        a.add(rax, rbx)?;
        Ok(())
    });
    assert!(vm.cpu.jit_stats().native_insns >= 2, "{:?}", vm.cpu.jit_stats());
}

/// Every condition right after each of `ops` (the translator evaluates it), and all of
/// RFLAGS after a block boundary (the CPU computes it from the stored record), must match the
/// interpreter, for operands RCX (the destination, from each value) and RBX (its rotation).
fn check_pending_flags(values: &[u64], ops: &[fn(&mut CodeAssembler) -> Result<(), IcedError>]) {
    for &x in values {
        both(&[(RAX, x), (RBX, x.rotate_left(29) ^ 0x35), (RDI, DATA)], |a| {
            a.mov(qword_ptr(rdi + 0x800), rbx)?;
            for (k, op) in ops.iter().enumerate() {
                a.mov(rcx, rax)?;
                op(a)?;
                for (c, set) in SETTERS.iter().enumerate() {
                    set(a, byte_ptr(rdi + (k * 16 + c) as i32))?;
                }
                a.mov(rcx, rax)?;
                op(a)?;
                let mut next = a.create_label();
                a.jmp(next)?;
                a.set_label(&mut next)?;
                a.pushfq()?;
                a.pop(rdx)?;
                a.mov(qword_ptr(rdi + 0x400 + 8 * k as i32), rdx)?;
                a.mov(qword_ptr(rdi + 0x600 + 8 * k as i32), rcx)?;
            }
            Ok(())
        });
    }
}

#[test]
fn flags_of_shifts_left_pending_match_the_interpreter() {
    // SHL/SHR/SAR by an immediate below the width leave their flags pending.
    let values = [0u64, 1, 0x7f, 0x80, 0xc0, 0x4000, 0x8000, 0x4000_0000, 0x8000_0001, 0xdead_beef_0123_4567, u64::MAX, 1 << 62];
    check_pending_flags(&values, &[
        |a| a.shl(cl, 1),
        |a| a.shl(cl, 7),
        |a| a.shr(cl, 1),
        |a| a.sar(cl, 6),
        |a| a.shl(cx, 3),
        |a| a.shr(cx, 15),
        |a| a.sar(cx, 1),
        |a| a.shl(ecx, 1),
        |a| a.shr(ecx, 17),
        |a| a.sar(ecx, 31),
        |a| a.shl(rcx, 63),
        |a| a.sar(rcx, 2),
    ]);
}

#[test]
fn imul_and_not_match_the_interpreter() {
    // IMUL's flags stay pending (overflow or not, each width, register, memory and immediate
    // sources); NOT changes none.
    let values = [0u64, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0x1_0000_0001, 0x8000_0000_0000_0000, u64::MAX, 0xdead_beef_0123_4567];
    check_pending_flags(&values, &[
        |a| a.imul_2(cx, bx),
        |a| a.imul_2(ecx, ebx),
        |a| a.imul_2(rcx, rbx),
        |a| a.imul_2(rcx, rcx),
        |a| a.imul_2(ecx, dword_ptr(rdi + 0x800)),
        |a| a.imul_2(rcx, qword_ptr(rdi + 0x800)),
        |a| a.imul_3(cx, bx, -3),
        |a| a.imul_3(ecx, ecx, 0x7fff_ffff),
        |a| a.imul_3(rcx, rbx, -0x8000_0000),
        |a| a.imul_3(rcx, qword_ptr(rdi + 0x800), 3),
        |a| a.not(ecx),
        |a| a.not(cl),
        |a| a.not(qword_ptr(rdi + 0x800)),
    ]);
}

#[test]
fn rotates_whose_flags_later_rotates_overwrite_match_the_interpreter() {
    // Rotates write CF and OF only: one is native where later instructions overwrite both
    // before anything reads them (SHA-256's ROR, ROR, XOR), and interpreted where CF or OF
    // survives to a reader (a register SETcc): through INC (keeps CF), through a shift by CL
    // (which writes nothing for a count of zero), or to the end of the block.
    for &(x, count) in &[(0x8000_0001u64, 0u64), (0x1234_5678_9abc_def0, 3), (u64::MAX, 0), (1, 31)] {
        both(&[(RAX, x), (RBX, x.rotate_left(7)), (RCX, count), (RDI, DATA)], |a| {
            let mut end = a.create_label();
            a.mov(edx, eax)?;
            a.ror(edx, 6)?;
            a.mov(esi, eax)?;
            a.ror(esi, 11)?;
            a.xor(edx, esi)?;
            a.ror(eax, 25)?;
            a.xor(edx, eax)?;
            a.mov(dword_ptr(rdi), edx)?;
            a.rol(ebx, 3)?;
            a.ror(ebx, 5)?;
            a.inc(r8d)?;
            a.setb(r10b)?;
            a.add(r13d, r8d)?;
            a.rol(eax, 9)?;
            a.shl(r9d, cl)?;
            a.seto(r11b)?;
            a.setb(r12b)?;
            a.add(r13d, eax)?;
            a.ror(ebx, 1)?;
            a.ror(eax, 2)?;
            a.jmp(end)?;
            a.set_label(&mut end)?;
            a.pushfq()?;
            a.pop(qword_ptr(rdi + 16))
        });
    }
}

#[test]
fn neg_and_bswap_match_the_interpreter() {
    let values = [0u64, 1, 0x80, 0x8000, 0x8000_0000, 0x8000_0000_0000_0000, u64::MAX, 0x0123_4567_89ab_cdef];
    check_pending_flags(&values, &[
        |a| a.neg(cl),
        |a| a.neg(cx),
        |a| a.neg(ecx),
        |a| a.neg(rcx),
        |a| a.neg(dword_ptr(rdi + 0x800)),
        |a| a.bswap(ecx),
        |a| a.bswap(rcx),
    ]);
}

#[test]
fn interpreted_instructions_between_native_ones_keep_or_refresh_registers_and_flags() {
    // SSE and x87 instructions run in the interpreter without touching the general registers
    // or the flags, so the native code around them keeps both in variables; MUL, CPUID, RDTSC
    // and CMPXCHG (interpreted) write registers and flags the native code must read back.
    let on = both(&[(RSI, DATA), (RCX, 50), (RBX, 0x1234_5678_9abc_def1), (RDI, 7)], |a| {
        let mut top = a.create_label();
        // CR4.OSFXSR and OSXMMEXCPT: SSE on.
        a.mov(rax, cr4)?;
        a.or(rax, 0x600)?;
        a.mov(cr4, rax)?;
        a.set_label(&mut top)?;
        a.add(rbx, rdi)?;
        a.cvtsi2sd(xmm0, rbx)?;
        a.mulsd(xmm0, xmm0)?;
        a.movq(qword_ptr(rsi + 8), xmm0)?;
        a.setc(al)?;
        a.adc(rdi, rbx)?;
        a.mov(rax, rbx)?;
        a.mul(rcx)?;
        a.add(r8, rdx)?;
        a.xor(r9, rax)?;
        a.mov(eax, 1)?;
        a.cpuid()?;
        a.add(r10, rcx)?;
        a.mov(r11, rax)?;
        a.mov(rcx, qword_ptr(rsi + 0x10))?;
        a.mov(rax, r9)?;
        a.cmpxchg(qword_ptr(rsi + 0x18), rdi)?;
        a.setz(byte_ptr(rsi + 0x20))?;
        a.add(r12, rax)?;
        a.mov(qword_ptr(rsi + 0x10), rcx)?;
        a.mov(rcx, r13)?;
        a.inc(r13)?;
        a.cmp(r13, 50)?;
        a.jne(top)
    });
    assert_eq!(on.gpr(13), 50);
}

/// A loop (compiled as one block) and a block outside it run their quick-tier code until its
/// count runs out, then are compiled again at full speed: both tiers, and the run that
/// crosses from one to the other, leave what the interpreter leaves. Also with the compile
/// thread (`jit=on`), where the interpreter runs a promoted block until its new code arrives.
#[test]
fn blocks_move_from_the_quick_tier_to_full_speed_with_the_same_results() {
    let run = |config: JitConfig| {
        let mut v = Vm::new(Mode::Long);
        v.cpu.set_jit(config);
        v.budget = CHAINING;
        v.preset(&[(RSI, DATA), (RAX, 0x1234_5678_9abc_def0)], 0);
        v.write(DATA, &0x0f0f_1234_5555_aaaau64.to_le_bytes());
        v.code(|a| {
            let (mut outer, mut inner) = (a.create_label(), a.create_label());
            a.mov(r8d, 200)?;
            a.set_label(&mut outer)?;
            a.mov(ecx, 50)?;
            a.set_label(&mut inner)?;
            a.add(rax, qword_ptr(rsi))?;
            a.add(qword_ptr(rsi + 8), rcx)?;
            a.rol(rax, 3)?;
            a.dec(ecx)?;
            a.jnz(inner)?;
            a.xor(rbx, rax)?;
            a.dec(r8d)?;
            a.jnz(outer)
        });
        v.finish();
        v
    };
    let off = run(JitConfig { mode: JitMode::Off, ..JitConfig::default() });
    for mode in [JitMode::Always, JitMode::On] {
        let quick = JitConfig { mode, threshold: 10, promote_runs: 100, ..JitConfig::default() };
        let v = run(quick);
        same_machine(&off, &v);
        // With the compile thread, how much runs compiled depends on its pace.
        if mode == JitMode::Always {
            let stats = v.cpu.jit_stats();
            assert!(stats.promoted >= 2, "{stats:?}");
        }
    }
}

/// The page walker's accessed and dirty updates are writes like any other: a page table that
/// shares its page with code (here the 8 bytes of a PTE are the immediate of a
/// `mov rax, imm64`) changes that code, and the next run of it sees the new bytes, whether
/// the interpreter or compiled code's TLB fill walked.
#[test]
fn accessed_and_dirty_updates_in_a_page_holding_code_reach_that_code() {
    const PTE: u64 = DATA | 7;
    // 4-6 MiB: a page table in the code page, whose entry 1 is the immediate at CODE + 8.
    const ALIAS: u64 = (4 << 20) + 4096;
    let (_, chained) = three_ways(|mode, budget| {
        let mut v = vm_in(mode, budget);
        v.preset(&[(RDX, DATA + 0x100)], 0);
        let mut a = CodeAssembler::new(64).unwrap();
        let (mut top, mut imm) = (a.create_label(), a.create_label());
        let mut build = || -> Result<(), IcedError> {
            a.mov(ecx, 2)?;
            a.set_label(&mut top)?;
            a.nop()?;
            a.db(&[0x48, 0xb8])?; // mov rax, imm64
            a.set_label(&mut imm)?;
            a.dq(&[PTE])?;
            a.mov(qword_ptr(rdx + rcx * 8), rax)?;
            a.mov(r8, ALIAS)?;
            a.mov(qword_ptr(r8), rcx)?;
            a.dec(ecx)?;
            a.jnz(top)
        };
        build().unwrap();
        let r = a.assemble_options(CODE, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS).unwrap();
        assert_eq!(r.label_ip(&imm).unwrap(), CODE + 8);
        v.set_code(&r.inner.code_buffer);
        v.write(PD + 16, &(CODE | 7).to_le_bytes());
        v.finish();
        v
    });
    // Round one read the PTE as written; its store through the PTE set A and D in it.
    assert_eq!(chained.read(DATA + 0x100 + 16, 8), PTE.to_le_bytes());
    assert_eq!(chained.read(DATA + 0x100 + 8, 8), (PTE | 0x60).to_le_bytes());
}
