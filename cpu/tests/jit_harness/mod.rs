//! What the translator's tests share: a long-mode machine with a given JIT mode, and a
//! program run interpreted, compiled block by block and compiled with chaining, whose
//! machines must match.
#![allow(dead_code)]

use super::int_harness::*;
use ferrite_cpu::{JitConfig, JitMode};
use iced_x86::code_asm::*;
use iced_x86::IcedError;

pub fn vm(mode: JitMode) -> Vm {
    let mut vm = Vm::new(Mode::Long);
    vm.cpu.set_jit(JitConfig { mode, ..JitConfig::default() });
    vm
}

/// Run-loop budget that lets compiled blocks chain.
pub const CHAINING: u64 = 100_000;

/// `vm(mode)` with a run-loop budget. Runs of compiled code one block at a time use the
/// translator's quick tier, chained ones its full-speed tier, so the ways (`THREE_WAYS`) hold
/// both against the interpreter.
pub fn vm_in(mode: JitMode, budget: u64) -> Vm {
    let mut vm = Vm::new(Mode::Long);
    vm.budget = budget;
    vm.cpu.set_jit(JitConfig { mode, quick_first: budget != CHAINING, ..JitConfig::default() });
    vm
}

/// The JIT modes and run-loop budgets a program runs under to hold the translator against
/// the interpreter: interpreted, compiled one block at a time (the quick tier, see `vm_in`),
/// compiled with chaining (full speed).
pub const THREE_WAYS: [(JitMode, u64); 3] = [(JitMode::Off, 64), (JitMode::Always, 64), (JitMode::Always, CHAINING)];

/// Runs `run(mode, budget)` the three ways (see `THREE_WAYS`), checks that the machines
/// end alike, and returns the interpreted one and the chained one.
pub fn three_ways(run: impl FnMut(JitMode, u64) -> Vm) -> (Vm, Vm) {
    let mut run = run;
    let [off, compiled, chained] = THREE_WAYS.map(|(mode, budget)| run(mode, budget));
    same_machine(&off, &compiled);
    same_machine(&off, &chained);
    (off, chained)
}

/// Runs `code` from the same state interpreted, compiled one block at a time and compiled
/// with chaining; returns the chained run's machine after checking that all three match and
/// that compiled code did run.
pub fn both(regs: &[(usize, u64)], code: impl Fn(&mut CodeAssembler) -> Result<(), IcedError>) -> Vm {
    let runs = THREE_WAYS.map(|(mode, budget)| {
        let mut v = vm_in(mode, budget);
        v.preset(regs, 0);
        v.code(&code);
        assert_eq!(v.run(), Stop::Done, "{mode:?}: rip={:#x}", v.cpu.state.rip);
        v
    });
    let [off, compiled, chained] = runs;
    for on in [&compiled, &chained] {
        same_machine(&off, on);
        let stats = on.cpu.jit_stats();
        assert!(stats.compiled_runs > 0 && stats.native_insns > 0, "{stats:?}");
    }
    chained
}

pub fn same_machine(a: &Vm, b: &Vm) {
    for r in 0..16 {
        assert_eq!(a.gpr(r), b.gpr(r), "register {r}");
    }
    assert_eq!(a.flags(), b.flags(), "rflags");
    assert_eq!(a.read(DATA, 0x2000), b.read(DATA, 0x2000), "memory");
    assert_eq!(a.read(STACK_TOP - 0x100, 0x100), b.read(STACK_TOP - 0x100, 0x100), "stack");
}

/// CR4.OSFXSR, which the harness's long mode leaves clear.
pub fn enable_sse(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(rcx, cr4)?;
    a.or(rcx, 1 << 9)?;
    a.mov(cr4, rcx)
}
