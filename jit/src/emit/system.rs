//! CLI, STI, CLAC, STAC and PUSHFQ in 64-bit code, which the Linux kernel runs around every
//! lock and copy from user memory, SWAPGS, which it runs on every entry from user mode and
//! return to it, and MFENCE: native where they only change or read flags or GS's base, the
//! interpreter's otherwise (CLI and STI that IOPL forbids, CLAC, STAC and SWAPGS outside
//! CPL 0, STI that opens the interrupt window while something waits).

use super::Emit;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use iced_x86::{Code, Instruction};

const IF: i64 = 1 << 9;
const IOPL_SHIFT: i64 = 12;
const RF: i64 = 1 << 16;
const VM: i64 = 1 << 17;
const AC: i64 = 1 << 18;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SysOp {
    Cli,
    Sti,
    Clac,
    Stac,
    Pushfq,
    Swapgs,
    Mfence,
}

pub(super) fn classify(insn: &Instruction, bitness: u32) -> Option<SysOp> {
    if bitness != 64 {
        return None;
    }
    Some(match insn.code() {
        Code::Cli => SysOp::Cli,
        Code::Sti => SysOp::Sti,
        Code::Clac => SysOp::Clac,
        Code::Stac => SysOp::Stac,
        Code::Pushfq => SysOp::Pushfq,
        Code::Swapgs => SysOp::Swapgs,
        Code::Mfence => SysOp::Mfence,
        _ => return None,
    })
}

impl Emit<'_, '_> {
    pub(super) fn system(&mut self, i: usize, op: SysOp) {
        match op {
            SysOp::Cli | SysOp::Sti => {
                // SDM CLI/STI: IF changes at CPL <= IOPL; otherwise the interpreter raises
                // #GP (or changes VIF).
                let cpl = self.cpl();
                let rflags = self.load_state(types::I64, self.l.rflags);
                let iopl = self.b.ins().ushr_imm_s(rflags, IOPL_SHIFT);
                let iopl = self.b.ins().band_imm_s(iopl, 3);
                let allowed = self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, cpl, iopl);
                self.guard(i, allowed);
                if op == SysOp::Cli {
                    let cleared = self.b.ins().band_imm_s(rflags, !IF);
                    self.store_state(cleared, self.l.rflags);
                } else {
                    self.sti(i, rflags);
                }
            }
            SysOp::Clac | SysOp::Stac => {
                // #UD outside CPL 0: the interpreter's.
                self.guard_ring0(i);
                let rflags = self.load_state(types::I64, self.l.rflags);
                let new = if op == SysOp::Clac { self.b.ins().band_imm_s(rflags, !AC) } else { self.b.ins().bor_imm_s(rflags, AC) };
                self.store_state(new, self.l.rflags);
                // AC picks the supervisor's TLB context under SMAP.
                self.tlb_context_known = false;
            }
            SysOp::Swapgs => {
                // #GP outside CPL 0: the interpreter's. Compiled code reads GS's base from
                // the state at every GS access, so nothing else changes.
                self.guard_ring0(i);
                let (gs, kernel) = (self.l.seg_base[5], self.l.kernel_gs_base);
                let (user_base, kernel_base) = (self.load_state(types::I64, gs), self.load_state(types::I64, kernel));
                self.store_state(kernel_base, gs);
                self.store_state(user_base, kernel);
            }
            // Orders this thread's earlier stores before its later loads for other vCPU
            // threads too, as the interpreter's host fence does.
            SysOp::Mfence => {
                self.b.ins().fence();
            }
            SysOp::Pushfq => {
                // The image never shows VM or RF (SDM PUSHF).
                self.materialize_flags();
                let rflags = self.load_state(types::I64, self.l.rflags);
                let image = self.b.ins().band_imm_s(rflags, !(RF | VM));
                self.push(i, image);
            }
        }
    }

    /// STI, allowed: with IF already set it changes nothing. Setting IF opens the interrupt
    /// window after the next instruction, which compiled code runs without looking for
    /// interrupts in between, so the block goes on when nothing waits (the attention word is
    /// zero) and the next instruction is its own; otherwise the interpreter runs STI, which
    /// then ends the block right after that instruction.
    fn sti(&mut self, i: usize, rflags: Value) {
        let (closed, open, done) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        let enabled = self.b.ins().band_imm_s(rflags, IF);
        self.b.ins().brif(enabled, done, &[], closed, &[]);
        self.b.switch_to_block(closed);
        let slow = self.b.create_block();
        if i + 1 < self.spec.insns.len() {
            let word = self.load_frame(self.l.frame.attention);
            let word = self.b.ins().load(types::I64, super::state_flags(), word, 0);
            self.b.ins().brif(word, slow, &[], open, &[]);
        } else {
            self.b.ins().jump(slow, &[]);
        }
        self.side_exit(i, slow);
        self.b.switch_to_block(open);
        let set = self.b.ins().bor_imm_s(rflags, IF);
        self.store_state(set, self.l.rflags);
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
    }

    /// Instruction `i` goes to the interpreter outside CPL 0.
    fn guard_ring0(&mut self, i: usize) {
        let cpl = self.cpl();
        let ring0 = self.b.ins().icmp_imm_s(IntCC::Equal, cpl, 0);
        self.guard(i, ring0);
    }

    /// The CPL: SS's DPL.
    fn cpl(&mut self) -> Value {
        let attrs = self.b.ins().uload32(super::state_flags(), self.cpu, self.l.ss_attrs);
        let dpl = self.b.ins().ushr_imm_s(attrs, self.l.dpl_shift as i64);
        self.b.ins().band_imm_s(dpl, 3)
    }
}
