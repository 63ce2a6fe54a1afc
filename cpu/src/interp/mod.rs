//! The interpreter: one module per instruction family. Each family maps the mnemonics it
//! implements to handlers; the decoder stores the handler beside the decoded instruction so
//! dispatch is one indirect call.

use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::Cpu;
use iced_x86::{Code, Instruction};

mod adx;
mod alu;
mod atomic;
mod avx;
mod bcd;
mod bits;
mod bmi;
mod cacheline;
mod control;
mod datamov;
mod far;
mod flagops;
mod io;
mod movbe;
mod muldiv;
mod random;
mod shift;
mod sse;
mod string;
mod system;
mod vex;
pub(crate) mod x87;

/// An instruction's semantics. Runs with `state.rip` at the instruction and `cpu.next_rip`
/// past it; branches overwrite `next_rip`. A handler that returns `Err` must leave the
/// architectural state as it was (faults are restartable).
pub(crate) type Handler = fn(&mut Cpu, &mut dyn CpuBus, &Instruction) -> Result<()>;

/// A family's claim on an instruction (by mnemonic, or by operands where one mnemonic spans
/// families, as MOV to control registers does).
type Lookup = fn(&Instruction) -> Option<Handler>;

/// Every family, asked in turn.
const FAMILIES: &[Lookup] = &[
    alu::lookup,
    atomic::lookup,
    datamov::lookup,
    control::lookup,
    flagops::lookup,
    shift::lookup,
    muldiv::lookup,
    bits::lookup,
    bmi::lookup,
    adx::lookup,
    movbe::lookup,
    random::lookup,
    cacheline::lookup,
    bcd::lookup,
    string::lookup,
    io::lookup,
    far::lookup,
    system::lookup,
    x87::lookup,
    sse::lookup,
    avx::lookup,
];

pub(crate) fn handler_for(insn: &Instruction, model: &crate::CpuModel) -> Handler {
    if insn.code() == Code::INVALID {
        return undefined;
    }
    if !model.allows(insn) {
        // A CPU without LZCNT/BMI1 ignores their F3 prefix and runs BSR/BSF instead.
        return bits::without_feature(insn).unwrap_or(undefined);
    }
    FAMILIES.iter().find_map(|f| f(insn)).unwrap_or(undefined)
}

/// Encodings this CPU does not implement raise #UD, as on a CPU without the feature.
fn undefined(_: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    Err(Fault::ud())
}
