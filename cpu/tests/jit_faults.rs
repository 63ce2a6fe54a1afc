//! The translator's memory accesses against the interpreter: runs of PUSHes and POPs and
//! groups of accesses at one base (one soft-TLB probe each) on one page and across two, and
//! page faults in the middle of compiled blocks, which must leave exactly the interpreter's
//! state (the instructions before retired, those after not, CR2, error code, RIP).

mod int_harness;
mod jit_harness;
use ferrite_cpu::state::reg::*;
use ferrite_cpu::JitMode;
use iced_x86::code_asm::*;
use iced_x86::IcedError;
use int_harness::*;
use jit_harness::*;

#[test]
fn a_page_fault_after_a_loops_inner_branch_is_precise() {
    page_fault_after_warm_up(&[], CODE + 12, |a| {
        let (mut top, mut out) = (a.create_label(), a.create_label());
        a.set_label(&mut top)?;
        a.add(eax, 1)?;
        a.cmp(eax, 100)?;
        a.je(out)?;
        a.mov(qword_ptr(rsi + rax * 8), rax)?;
        a.add(ebx, 2)?;
        a.jmp(top)?;
        a.set_label(&mut out)?;
        a.nop()
    });
}

/// The page the fault tests write to, unmapped once the code has run.
const FAULT_PAGE: u64 = DATA + 0x3000;

/// Runs `code` (RSI at `FAULT_PAGE`, `regs` preset, RAX and RBX zero) interpreted and compiled,
/// the compiled one warmed up first with the page mapped so the fault hits compiled code; then
/// with the page unmapped both must take the #PF of the write to `FAULT_PAGE + 8` at
/// `fault_rip` with RAX = 1 retired before it, RBX = 0 from after it, and the same flags.
/// Returns both machines.
fn page_fault_after_warm_up(regs: &[(usize, u64)], fault_rip: u64, code: impl Fn(&mut CodeAssembler) -> Result<(), IcedError>) -> [Vm; 2] {
    let start: Vec<_> = [(RSI, FAULT_PAGE), (RAX, 0), (RBX, 0)].into_iter().chain(regs.iter().copied()).collect();
    let runs = fault_after_warm_up(&start, |_| {}, code);
    for v in &runs {
        assert_eq!(v.gpr(RAX), 1, "instructions before the fault retired");
        assert_eq!(v.gpr(RBX), 0, "the instruction after it did not run");
        assert_eq!(v.cpu.state.cr2, FAULT_PAGE + 8);
        // Error code (write, not present), then the faulting instruction's RIP.
        assert_eq!(v.frame(0), 2);
        assert_eq!(v.frame(1), fault_rip);
    }
    assert_eq!(runs[0].flags(), runs[1].flags());
    assert!(runs[1].cpu.jit_stats().compiled_runs > 0);
    runs
}

#[test]
fn a_page_fault_in_the_middle_of_a_compiled_block_is_precise() {
    let runs = page_fault_after_warm_up(&[(RCX, 7)], CODE + 9, |a| {
        a.mov(eax, 1)?;
        a.add(rcx, 5)?;
        a.mov(qword_ptr(rsi + 8), rcx)?;
        a.mov(ebx, 2)?;
        Ok(())
    });
    for v in &runs {
        assert_eq!(v.gpr(RCX), 12);
    }
}

/// Runs of PUSHes and POPs (which compiled code clears with one probe per run) match the
/// interpreter where the run lies on one page and where it crosses into the next.
#[test]
fn runs_of_pushes_and_pops_on_one_page_and_across_two_match_the_interpreter() {
    let regs = [(RAX, 0x1111), (RBX, 0x2222), (RCX, 0x3333), (RDX, 0x4444), (RSP, DATA + 0x1010)];
    let vm = both(&regs, |a| {
        // Four quadwords below DATA + 0x1010: two on each page.
        a.push(rax)?;
        a.push(rbx)?;
        a.push(rcx)?;
        a.push(0x55)?;
        a.pop(rsi)?;
        a.pop(rdi)?;
        a.pop(r8)?;
        a.pop(r9)?;
        // Four within one page.
        a.mov(rsp, DATA as i64 + 0x800)?;
        a.push(rdx)?;
        a.push(rsi)?;
        a.push(rdi)?;
        a.push(r8)?;
        a.pop(r10)?;
        a.pop(r11)?;
        a.pop(r12)?;
        a.pop(r13)?;
        Ok(())
    });
    assert_eq!([RSI, RDI, 8, 9].map(|r| vm.gpr(r)), [0x55, 0x3333, 0x2222, 0x1111]);
    assert_eq!([10, 11, 12, 13].map(|r| vm.gpr(r)), [0x2222, 0x3333, 0x55, 0x4444]);
}

/// Runs `code` from `start` (after `setup`) interpreted and compiled, the compiled one warmed
/// up first with `FAULT_PAGE` mapped so the fault hits compiled code; then both must stop at
/// the #PF once the page is unmapped. Returns both machines.
fn fault_after_warm_up(start: &[(usize, u64)], setup: impl Fn(&mut Vm), code: impl Fn(&mut CodeAssembler) -> Result<(), IcedError>) -> [Vm; 2] {
    [JitMode::Off, JitMode::Always].map(|mode| {
        let mut v = vm(mode);
        v.budget = CHAINING;
        setup(&mut v);
        v.preset(start, 0);
        v.code(&code);
        if mode == JitMode::Always {
            v.finish();
            v.preset(start, 0);
            v.cpu.state.rip = CODE;
        }
        v.unmap(FAULT_PAGE);
        assert_eq!(v.run(), Stop::Exception(14));
        v
    })
}

/// A #PF in compiled code after register writes only (the block leaves as if it had not
/// begun, and the interpreter runs it again from its start) and after a write to memory (the
/// block stores its state at the faulting read): the write is done once, as when interpreted.
#[test]
fn a_page_fault_after_register_writes_or_a_memory_write_is_precise() {
    for write_first in [false, true] {
        let start = [(RSI, FAULT_PAGE), (RDI, DATA), (RAX, 0), (RBX, 0), (RCX, 3)];
        let runs = fault_after_warm_up(&start, |v| v.write(DATA, &10u64.to_le_bytes()), |a| {
            if write_first {
                a.add(qword_ptr(rdi), 1)?;
            }
            a.mov(eax, 5)?;
            a.add(rcx, rax)?;
            a.mov(rbx, qword_ptr(rsi))?;
            a.mov(eax, 7)?;
            Ok(())
        });
        for (runs_of_write, v) in [1, 2].into_iter().zip(&runs) {
            assert_eq!([RAX, RBX, RCX].map(|r| v.gpr(r)), [5, 0, 8], "write first: {write_first}");
            // Once per run of the code (the compiled machine's warm-up is a run too).
            let value: u64 = 10 + if write_first { runs_of_write } else { 0 };
            assert_eq!(v.read(DATA, 8), value.to_le_bytes(), "write first: {write_first}");
            assert_eq!(v.cpu.state.cr2, FAULT_PAGE);
            assert_eq!(v.frame(1), CODE + if write_first { 12 } else { 8 });
        }
        assert!(runs[1].cpu.jit_stats().compiled_runs > 0);
    }
}

/// A run of POPs reaching an unmapped page takes the #PF at the POP that reads it, the POPs
/// before it retired, in compiled code as in the interpreter: a run that crosses into the
/// page, and one that lies on it (whose one probe let it through while it was mapped).
#[test]
fn a_page_fault_inside_a_run_of_pops_is_precise() {
    // (RSP, RIP of the faulting POP, RCX and RDX after it)
    for (stack, fault_rip, popped) in [(FAULT_PAGE - 16, CODE + 7, [0xaa, 0xbb]), (FAULT_PAGE, CODE + 5, [0, 0])] {
        let start = [(RSP, stack), (RAX, 0), (RBX, 0), (RCX, 0), (RDX, 0), (RDI, 0x77)];
        let below = [0xaau64.to_le_bytes(), 0xbbu64.to_le_bytes()].concat();
        let runs = fault_after_warm_up(&start, |v| v.write(FAULT_PAGE - 16, &below), |a| {
            a.mov(eax, 1)?;
            a.pop(rcx)?;
            a.pop(rdx)?;
            a.pop(rdi)?;
            a.mov(ebx, 2)?;
            Ok(())
        });
        for v in &runs {
            assert_eq!([RAX, RCX, RDX, RDI, RBX].map(|r| v.gpr(r)), [1, popped[0], popped[1], 0x77, 0], "RSP {stack:#x}");
            assert_eq!(v.cpu.state.cr2, FAULT_PAGE);
            // Error code (read, not present), then the faulting POP's RIP.
            assert_eq!(v.frame(0), 0);
            assert_eq!(v.frame(1), fault_rip);
        }
        assert!(runs[1].cpu.jit_stats().compiled_runs > 0);
    }
}

/// Accesses relative to one base register (which compiled code clears with one probe per
/// group) match the interpreter where the group lies on one page and where it crosses into
/// the next: reads, writes and read-modify-writes, with other instructions between them.
#[test]
fn accesses_at_one_base_on_one_page_and_across_two_match_the_interpreter() {
    let vm = both(&[(RSI, DATA + 0x100), (RDI, DATA + 0xff8), (RCX, 9)], |a| {
        a.mov(qword_ptr(rsi), 5)?;
        a.mov(qword_ptr(rsi + 8), rcx)?;
        a.mov(dword_ptr(rsi + 16), 7)?;
        a.mov(rax, qword_ptr(rsi))?;
        a.add(rcx, 3)?;
        a.mov(rbx, qword_ptr(rsi + 8))?;
        a.add(rax, qword_ptr(rsi + 16))?;
        // Across two pages.
        a.mov(qword_ptr(rdi), rax)?;
        a.mov(qword_ptr(rdi + 8), rbx)?;
        a.inc(qword_ptr(rsi + 24))?;
        a.add(qword_ptr(rsi + 32), rax)?;
        a.movzx(edx, byte_ptr(rdi + 8))?;
        a.cmp(qword_ptr(rdi), rbx)?;
        Ok(())
    });
    assert_eq!([RAX, RBX, RCX, RDX].map(|r| vm.gpr(r)), [12, 9, 12, 9]);
}

/// A loop whose group of accesses at one base crosses a page boundary leaves its compiled
/// code once, at the group's first access, and is compiled again with a probe per access:
/// its other runs take no side exit.
#[test]
fn a_group_of_accesses_across_two_pages_is_compiled_again_without_the_group() {
    let vm = both(&[(RDI, DATA + 0xff8), (RCX, 200)], |a| {
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.mov(rax, qword_ptr(rdi))?;
        a.add(rax, qword_ptr(rdi + 8))?;
        a.add(rax, rcx)?;
        a.mov(qword_ptr(rdi + 16), rax)?;
        a.dec(rcx)?;
        a.jnz(top)?;
        Ok(())
    });
    let stats = vm.cpu.jit_stats();
    assert_eq!(stats.ungrouped, 1, "{stats:?}");
    assert!(stats.side_exits <= 2, "{stats:?}");
}

/// A group of reads at one base reaching an unmapped page takes the #PF at the read of that
/// page, the read before it retired, in compiled code as in the interpreter: a group that
/// crosses into the page, and one that lies on it.
#[test]
fn a_page_fault_inside_a_group_of_accesses_at_one_base_is_precise() {
    // (RSI, RIP of the faulting read, RCX after it)
    for (base, fault_rip, first) in [(FAULT_PAGE - 8, CODE + 8, 0xaa), (FAULT_PAGE, CODE + 5, 0)] {
        let start = [(RSI, base), (RAX, 0), (RBX, 0), (RCX, 0), (RDX, 0x77)];
        let runs = fault_after_warm_up(&start, |v| v.write(FAULT_PAGE - 8, &0xaau64.to_le_bytes()), |a| {
            a.mov(eax, 1)?;
            a.mov(rcx, qword_ptr(rsi))?;
            a.mov(rdx, qword_ptr(rsi + 8))?;
            a.mov(ebx, 2)?;
            Ok(())
        });
        for v in &runs {
            assert_eq!([RAX, RCX, RDX, RBX].map(|r| v.gpr(r)), [1, first, 0x77, 0], "RSI {base:#x}");
            assert_eq!(v.cpu.state.cr2, FAULT_PAGE);
            assert_eq!(v.frame(0), 0);
            assert_eq!(v.frame(1), fault_rip);
        }
        assert!(runs[1].cpu.jit_stats().compiled_runs > 0);
    }
}
