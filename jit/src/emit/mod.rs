//! Cranelift IR for one block: guest registers in variables, lazy flags tracked at compile
//! time, interpreter calls for what is not emitted natively.

mod atomic;
mod bits;
pub(crate) mod exits;
mod flags;
mod float;
mod mem;
mod muldiv;
mod ops;
mod system;
mod vector;

use crate::chain::{block_signature, EXIT_NEXT, LINK_FIELDS};
use crate::layout::ExecStatus;
use crate::{BlockSpec, Layout};
use cranelift_codegen::ir::{types, Block, FuncRef, Function, GlobalValue, InstBuilder, InstructionData, MemFlagsData, Opcode, SigRef, Type, Value};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use flags::Flags;

/// Per chain cell and field, the symbol whose value is that field of the block's link (see
/// `chain::link_symbol`).
/// and per cell the landing its jump leads to while unlinked (patched to the target's entry
/// when linked).
#[derive(Clone, Copy)]
pub(crate) struct LinkSymbols {
    pub fields: [[GlobalValue; LINK_FIELDS]; crate::CHAIN_CELLS],
    pub landings: [FuncRef; crate::CHAIN_CELLS],
    /// Per exit, what its code calls when it finds the link missing (see `exits`).
    pub unlinked_exits: [FuncRef; crate::CHAIN_EXITS],
}

/// Builds `func`'s body for `spec`, its links taken from `links` (with chaining). Returns the
/// number of instructions emitted natively.
pub(crate) fn emit_block(
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    layout: &Layout,
    spec: &BlockSpec,
    links: Option<LinkSymbols>,
    call_conv: CallConv,
    frontend: TargetFrontendConfig,
) -> u32 {
    let mut plan: Vec<Option<ops::Native>> = spec.insns.iter().map(|i| ops::classify(i, spec.bitness)).collect();
    for (i, p) in plan.iter_mut().enumerate() {
        if spec.opaque >> i & 1 != 0 {
            *p = None;
        }
    }
    ops::keep_dead_flag_shifts(&mut plan, spec.insns);
    let loop_regs = loop_registers(spec, &plan);
    let probe_groups = if spec.groups { mem::probe_groups(spec.insns, &plan) } else { Vec::new() };
    let mut b = FunctionBuilder::new(func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let cpu = b.block_params(entry)[0];
    let frame = b.block_params(entry)[1];
    let helper_sig = b.import_signature(crate::chain::helper_signature(call_conv));
    let fill_sig = b.import_signature(crate::chain::fill_stub_signature());
    let block_sig = b.import_signature(block_signature());
    let regs = std::array::from_fn(|_| b.declare_var(types::I64));
    let cc = flags::CcVars::declare(&mut b);
    let tlb_context_var = b.declare_var(types::I64);
    let mut e = Emit {
        b,
        l: layout,
        spec,
        cpu,
        frame,
        regs,
        loaded: 0,
        dirty: 0,
        flags: Flags::Memory,
        effects: false,
        cc,
        helper_sig,
        fill_sig,
        block_sig,
        tlb_context_var,
        tlb_context_known: false,
        sse_checked: false,
        mxcsr_checked: false,
        head: None,
        loop_regs,
        link_symbols: links,
        links: [None; crate::CHAIN_EXITS],
        local_links: [None; crate::CHAIN_EXITS],
        inner_exits: 0,
        stop: None,
        side_tail: None,
        probe_groups,
        probe_group: None,
    };
    e.enter();
    let n = spec.insns.len();
    let mut native = 0;
    let mut ended = false;
    for (i, (insn, p)) in spec.insns.iter().zip(&plan).enumerate() {
        match p {
            Some(op) => {
                native += 1;
                ended = e.native(i, insn, op);
            }
            None => {
                e.interpret(i);
                ended = i + 1 == n;
            }
        }
    }
    if !ended {
        let last = spec.insns[n - 1];
        e.finish_direct(last.next_ip(), EXIT_NEXT, n as u64);
    }
    e.emit_links();
    e.emit_side_tail();
    e.b.seal_all_blocks();
    e.b.finalize(frontend);
    native
}

pub(crate) struct Emit<'a, 'f> {
    pub b: FunctionBuilder<'f>,
    pub l: &'a Layout,
    pub spec: &'a BlockSpec<'a>,
    pub cpu: Value,
    pub frame: Value,
    /// The 16 general-purpose registers.
    pub regs: [Variable; 16],
    /// Registers whose variable holds the current value on every path to the point being
    /// emitted; the others are loaded from the CPU structure at their first use, so a block
    /// loads only what it reads before writing.
    pub loaded: u16,
    /// Registers written since they were last stored (a subset of `loaded`).
    pub dirty: u16,
    pub flags: Flags,
    /// Whether the path to the point being emitted has stored to the CPU structure or guest
    /// memory, or called a helper (see `side_exit`).
    pub effects: bool,
    pub cc: flags::CcVars,
    /// The helpers' signature (see `chain::helper_signature`).
    pub helper_sig: SigRef,
    /// The fill stub's (see `chain::fill_stub_signature`).
    pub fill_sig: SigRef,
    /// Every block's signature, for chaining.
    pub block_sig: SigRef,
    /// The soft TLB table of the block's context (see `tlb_context`), once computed.
    pub tlb_context_var: Variable,
    pub tlb_context_known: bool,
    /// SSE instructions were found available (CR0, CR4) on this path; forgotten when the
    /// interpreter runs an instruction, which may change the control registers.
    pub sse_checked: bool,
    /// The guest's MXCSR was found to have the controls compiled code runs SSE arithmetic
    /// under (see `float`), on this path; forgotten like `sse_checked`.
    pub mxcsr_checked: bool,
    /// The start of a block that loops (see `loop_regs`), for its branches back.
    pub head: Option<Block>,
    /// For a block that branches back to its own start: the registers it uses and those it
    /// writes (see `LoopRegs`).
    loop_regs: Option<LoopRegs>,
    /// With chaining: the symbols of the block's links.
    link_symbols: Option<LinkSymbols>,
    /// Per exit (`EXIT_TAKEN`, `EXIT_NEXT`, `EXIT_INDIRECT`), the code that follows its link,
    /// once a path uses it (see `exits`).
    links: [Option<Block>; crate::CHAIN_EXITS],
    /// Per exit, once a path uses it: whether every path's target is a local one (see
    /// `exits::local_exit`).
    local_links: [Option<bool>; crate::CHAIN_EXITS],
    /// The conditional branches inside the block emitted so far (see `exits::inner_branch`).
    inner_exits: usize,
    /// The shared `return 0` of paths that stop the chain.
    stop: Option<Block>,
    /// The shared end of side exits (see `side_exit`), whose parameter is the value for
    /// `FrameLayout::side_exit`.
    side_tail: Option<Block>,
    /// Per instruction, its access's place in a probe group (see `mem::ProbeGroup`).
    probe_groups: Vec<Option<mem::ProbeGroup>>,
    /// The group being emitted: its first instruction and the host address of its lowest byte.
    probe_group: Option<(usize, Value)>,
}

/// Flags for accesses to the CPU structure (aligned, never trapping).
pub(crate) fn state_flags() -> MemFlagsData {
    MemFlagsData::trusted()
}

impl Emit<'_, '_> {
    pub fn iconst(&mut self, v: u64) -> Value {
        self.b.ins().iconst(types::I64, v as i64)
    }

    pub fn load_state(&mut self, ty: Type, offset: i32) -> Value {
        self.b.ins().load(ty, state_flags(), self.cpu, offset)
    }

    pub fn store_state(&mut self, v: Value, offset: i32) {
        self.effects = true;
        self.b.ins().store(state_flags(), v, self.cpu, offset);
    }

    /// The full 64-bit value of register `idx`, loaded at its first use.
    fn gpr(&mut self, idx: usize) -> Value {
        if self.loaded & (1 << idx) == 0 {
            let v = self.load_state(types::I64, self.l.gpr + 8 * idx as i32);
            self.b.def_var(self.regs[idx], v);
            self.loaded |= 1 << idx;
        }
        self.b.use_var(self.regs[idx])
    }

    /// Emits the stores that make the CPU structure current (dirty registers, pending
    /// flags, RIP = `rip`), without changing what the compiler believes is stored: used on
    /// side paths as well as on the main path.
    fn store_all(&mut self, rip: Value) {
        // Paths that store everything end there: the main path's `effects` stay as they were.
        let effects = self.effects;
        for r in 0..16 {
            if self.dirty & (1 << r) != 0 {
                let v = self.b.use_var(self.regs[r]);
                self.store_state(v, self.l.gpr + 8 * r as i32);
            }
        }
        self.store_flags();
        self.store_state(rip, self.l.rip);
        self.effects = effects;
    }

    /// On entry: counts the block's run (each loop back to the start counts as one).
    fn enter(&mut self) {
        let f = self.l.frame;
        if let Some(regs) = self.loop_regs {
            // A loop keeps the registers it uses in variables from one run to the next: they
            // are loaded before its start, not at their first use in it.
            for r in (0..16).filter(|r| regs.used >> r & 1 != 0) {
                let v = self.load_state(types::I64, self.l.gpr + 8 * r as i32);
                self.b.def_var(self.regs[r], v);
            }
            let ctx = self.compute_tlb_context();
            self.b.def_var(self.tlb_context_var, ctx);
            // Where a branch back to the block's start loops (a run of its own).
            let head = self.b.create_block();
            self.b.ins().jump(head, &[]);
            self.b.switch_to_block(head);
            self.head = Some(head);
            // As every branch back leaves them (see `loop_back`): what the block writes may
            // differ from the CPU structure, the flags are there (or dead: see `LoopRegs`).
            self.loaded = regs.used;
            self.dirty = regs.written;
            self.tlb_context_known = true;
        }
        let runs = self.load_frame(f.runs);
        let runs = self.b.ins().iadd_imm_s(runs, 1);
        self.store_frame(runs, f.runs);
        if self.spec.quick && self.spec.countdown != 0 {
            self.count_down();
        }
    }

    /// The quick tier's run count (see `BlockSpec::countdown`): at zero, the block leaves
    /// before its first instruction (a side exit, which stores what a loop's earlier rounds
    /// left in variables), and the CPU sees the zero.
    fn count_down(&mut self) {
        let at = self.iconst(self.spec.countdown as u64);
        let left = self.b.ins().load(types::I32, MemFlagsData::trusted(), at, 0);
        let left = self.b.ins().iadd_imm_s(left, -1);
        self.b.ins().store(MemFlagsData::trusted(), left, at, 0);
        self.guard(0, left);
    }

    /// Names this block in the frame, for whatever the CPU does next with it (the interpreter
    /// helper, a side exit, linking an exit): paths that need it store it first.
    fn name_block(&mut self) {
        let block = self.iconst(self.spec.block as u64);
        self.store_frame(block, self.l.frame.block);
    }

    fn load_frame(&mut self, offset: i32) -> Value {
        self.b.ins().load(types::I64, state_flags(), self.frame, offset)
    }

    fn store_frame(&mut self, v: Value, offset: i32) {
        self.b.ins().store(state_flags(), v, self.frame, offset);
    }

    /// Adds `retired` to the chain's count; returns the new count.
    fn count_retired(&mut self, retired: Value) -> Value {
        let f = self.l.frame.retired;
        let total = self.load_frame(f);
        let total = self.b.ins().iadd(total, retired);
        self.store_frame(total, f);
        total
    }

    /// Returns to the CPU with `retired` more instructions done (the state already stored).
    fn leave(&mut self, retired: Value) {
        self.count_retired(retired);
        let zero = self.iconst(0);
        self.b.ins().return_(&[zero]);
    }

    /// Branches to `stop` unless the chain may go on with `total` instructions retired: the
    /// budget allows it and, if `watch`, the attention word has no kick, deliverable interrupt
    /// or code change (what the run loop looks at between blocks). Continues in a new block
    /// otherwise.
    fn stop_unless_free(&mut self, total: Value, stop: Block, watch: bool) {
        use cranelift_codegen::ir::condcodes::IntCC;
        let f = self.l.frame;
        let checks = self.b.create_block();
        let limit = self.load_frame(f.limit);
        let over = self.b.ins().icmp(IntCC::UnsignedGreaterThan, total, limit);
        self.b.ins().brif(over, stop, &[], checks, &[]);
        self.b.switch_to_block(checks);
        if !watch {
            return;
        }
        let (closer, free) = (self.b.create_block(), self.b.create_block());
        let word = self.load_frame(f.attention);
        let word = self.b.ins().load(types::I64, state_flags(), word, 0);
        self.b.ins().brif(word, closer, &[], free, &[]);
        // Something is set: anything but the INTR line stops the chain, and the line does
        // with RFLAGS.IF (bit 9) set.
        self.b.switch_to_block(closer);
        self.b.set_cold_block(closer);
        let others = self.b.ins().band_imm_s(word, !self.l.attention_intr as i64);
        let rflags = self.load_state(types::I64, self.l.rflags);
        let enabled = self.b.ins().band_imm_s(rflags, 1 << 9);
        let any = self.b.ins().bor(others, enabled);
        self.b.ins().brif(any, stop, &[], free, &[]);
        self.b.switch_to_block(free);
    }

    /// Whether a branch to `target` loops back to the block's own start inside its code.
    pub fn loops_to(&self, target: u64) -> bool {
        self.head.is_some() && target == self.spec.insns[0].ip()
    }

    /// Back to the block's start at `target`: counts `retired` and runs the block again
    /// without leaving its code, its registers still in variables, unless the run loop is
    /// needed (see `stop_unless_free`): then stores the state and returns. The path the
    /// caller emits next (a branch's other way) starts from what was known before.
    pub fn loop_back(&mut self, retired: u64, target: u64) {
        let head = self.head.expect("loops_to");
        let regs = self.loop_regs.expect("loops_to");
        let known = (self.loaded, self.dirty, self.tlb_context_known);
        // What the start expects (see `enter`): registers the interpreter wrote are loaded
        // again, and pending flags go to the CPU structure unless the block overwrites them
        // first (the stop path below stores them).
        let stale = regs.used & !self.loaded;
        for r in (0..16).filter(|r| stale >> r & 1 != 0) {
            let v = self.load_state(types::I64, self.l.gpr + 8 * r as i32);
            self.b.def_var(self.regs[r], v);
        }
        self.loaded |= regs.used;
        if !self.tlb_context_known {
            let ctx = self.compute_tlb_context();
            self.b.def_var(self.tlb_context_var, ctx);
        }
        if !regs.flags_dead {
            self.store_flags();
        }
        let r = self.iconst(retired);
        let total = self.count_retired(r);
        let stop = self.b.create_block();
        self.stop_unless_free(total, stop, true);
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(stop);
        let t = self.iconst(target);
        self.store_all(t);
        let zero = self.iconst(0);
        self.b.ins().return_(&[zero]);
        (self.loaded, self.dirty, self.tlb_context_known) = known;
    }

    /// Runs instruction `i` through the interpreter on the current path. Afterwards the
    /// path continues (status Next) or the function returns.
    fn call_exec(&mut self, i: usize) -> Value {
        let ip = self.spec.insns[i].ip();
        let ip = self.iconst(ip);
        self.store_all(ip);
        self.name_block();
        self.effects = true;
        let f = self.iconst(self.l.exec as u64);
        let idx = self.iconst(i as u64);
        let call = self.b.ins().call_indirect(self.helper_sig, f, &[self.frame, idx]);
        self.b.inst_results(call)[0]
    }

    /// Returns `i` (fault) or `i + 1` instructions retired from a status that is not Next.
    fn return_after(&mut self, i: usize, status: Value) {
        let faulted = self.b.ins().icmp_imm_s(cranelift_codegen::ir::condcodes::IntCC::Equal, status, ExecStatus::Fault as i64);
        let a = self.iconst(i as u64);
        let b = self.iconst(i as u64 + 1);
        let r = self.b.ins().select(faulted, a, b);
        self.leave(r);
    }

    /// After the block's last instruction ran in the interpreter: status Next means it went
    /// on to the next instruction, a fixed target to chain to.
    fn end_after_exec(&mut self, i: usize, status: Value) {
        let (next, other) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(status, other, &[], next, &[]);
        self.b.switch_to_block(next);
        let rip = self.iconst(self.spec.insns[i].next_ip());
        self.chain_exit(EXIT_NEXT, i as u64 + 1, rip, Some(self.spec.insns[i].next_ip()));
        self.b.switch_to_block(other);
        self.return_after(i, status);
    }

    /// Runs instruction `i` through the interpreter; returns from the function unless it
    /// retired with status Next and is not the block's last, in which case the path goes on
    /// (returns true).
    fn exec_then_continue(&mut self, i: usize) -> bool {
        let status = self.call_exec(i);
        if i + 1 == self.spec.insns.len() {
            self.end_after_exec(i, status);
            return false;
        }
        let cont = self.b.create_block();
        let exit = self.b.create_block();
        self.b.ins().brif(status, exit, &[], cont, &[]);
        self.b.switch_to_block(exit);
        self.return_after(i, status);
        self.b.switch_to_block(cont);
        true
    }

    /// An instruction the translator does not emit: the interpreter runs it.
    /// Everything was stored before the call; afterwards only what the instruction writes
    /// (as iced lists its registers and flags) is read back, so an SSE or x87 instruction
    /// between integer ones costs no reloads and leaves the pending flags in variables.
    fn interpret(&mut self, i: usize) {
        if !self.exec_then_continue(i) {
            return;
        }
        let insn = &self.spec.insns[i];
        self.dirty = 0;
        self.loaded &= !written_gprs(insn);
        if self.spec.opaque >> i & 1 != 0 {
            self.loaded = 0;
            self.flags = Flags::Memory;
        }
        self.tlb_context_known = false;
        self.sse_checked = false;
        self.mxcsr_checked = false;
        if insn.rflags_modified() != 0 {
            self.flags = Flags::Memory;
        }
    }

    /// Leaves the block before instruction `i` unless `ok` (a fault, device memory, a
    /// page holding code, a non-canonical target): the state is stored as it stands before
    /// the instruction, and the CPU runs that one instruction in the interpreter (see
    /// `FrameLayout::side_exit`). Native instructions guard every access before changing any
    /// state, so nothing of the instruction has happened yet. A side exit joins nothing
    /// again, which keeps the block's code straight and quick to compile.
    pub fn guard(&mut self, i: usize, ok: Value) {
        let fast = self.b.create_block();
        let slow = self.b.create_block();
        self.b.ins().brif(ok, fast, &[], slow, &[]);
        self.side_exit(i, slow);
        self.b.switch_to_block(fast);
    }

    /// Emits `slow`, a cold block that leaves before instruction `i` (see `guard`): it stores
    /// the state as it stands there and goes on to the side exits' shared end, which tells
    /// the CPU which instruction to run and returns (less code to compile per access).
    pub(super) fn side_exit(&mut self, i: usize, slow: Block) {
        self.b.set_cold_block(slow);
        self.b.switch_to_block(slow);
        // Before anything of the block shows in memory (the CPU structure, guest memory),
        // the state there is the block's start: leaving before its first instruction needs
        // no store (the interpreter runs the block's start again). Not in a loop's block,
        // whose start a run may have passed more than once.
        let i = if self.effects || self.loop_regs.is_some() {
            let ip = self.iconst(self.spec.insns[i].ip());
            self.store_all(ip);
            i
        } else {
            0
        };
        let tail = *self.side_tail.get_or_insert_with(|| {
            let tail = self.b.create_block();
            self.b.append_block_param(tail, types::I64);
            tail
        });
        let index = self.iconst(i as u64 + 1);
        self.b.ins().jump(tail, &[index.into()]);
    }

    /// Emits the side exits' shared end, if one jumps there: instruction `index - 1` is left
    /// to the CPU, the instructions before it retired.
    pub(super) fn emit_side_tail(&mut self) {
        let Some(tail) = self.side_tail else { return };
        self.b.set_cold_block(tail);
        self.b.switch_to_block(tail);
        let index = self.b.block_params(tail)[0];
        self.store_frame(index, self.l.frame.side_exit);
        self.name_block();
        let retired = self.b.ins().iadd_imm_s(index, -1);
        self.leave(retired);
    }

    /// Reads a register (any width, zero-extended).
    pub fn reg(&mut self, r: iced_x86::Register) -> Value {
        let (idx, size, high) = crate::operand::gpr_slot(r).expect("classified as a GPR");
        let v = self.gpr(idx);
        let v = if high { self.b.ins().ushr_imm_s(v, 8) } else { v };
        self.mask(v, size)
    }

    /// Writes a register with x86's merge rules (8/16-bit writes keep the other bits, 32-bit
    /// writes clear the upper half).
    pub fn set_reg(&mut self, r: iced_x86::Register, v: Value) {
        let (idx, size, high) = crate::operand::gpr_slot(r).expect("classified as a GPR");
        let new = match (size, high) {
            (8, _) => v,
            (4, _) => self.mask(v, 4),
            (1, true) => {
                let old = self.gpr(idx);
                let lo = self.mask(v, 1);
                let sh = self.b.ins().ishl_imm_s(lo, 8);
                let kept = self.b.ins().band_imm_s(old, !0xff00i64);
                self.b.ins().bor(kept, sh)
            }
            _ => {
                let old = self.gpr(idx);
                let m = mask_of(size);
                let lo = self.b.ins().band_imm_s(v, m as i64);
                let kept = self.b.ins().band_imm_s(old, !m as i64);
                self.b.ins().bor(kept, lo)
            }
        };
        self.b.def_var(self.regs[idx], new);
        self.loaded |= 1 << idx;
        self.dirty |= 1 << idx;
    }

    pub fn mask(&mut self, v: Value, size: u8) -> Value {
        if self.zero_extended_from(v).is_some_and(|from| from <= size) {
            return v;
        }
        match size {
            8.. => v,
            // Not an AND with 0xffff_ffff, which x86 cannot encode as an immediate: a
            // truncation Cranelift narrows the producing operation into (a 32-bit op zero-extends
            // for free).
            4 => {
                let n = self.narrow(v, 4);
                self.widen(n, 4)
            }
            _ => self.b.ins().band_imm_s(v, mask_of(size) as i64),
        }
    }

    /// Sign-extends the low `size` bytes of `v` to 64 bits.
    pub fn sext(&mut self, v: Value, size: u8) -> Value {
        if size >= 8 {
            return v;
        }
        let n = self.narrow(v, size);
        self.b.ins().sextend(types::I64, n)
    }

    /// `v` as a value of the operand's width (for host operations of that width).
    pub fn narrow(&mut self, v: Value, size: u8) -> Value {
        if size >= 8 {
            return v;
        }
        match self.extended_from(v) {
            Some(x) if self.b.func.dfg.value_type(x) == int_type(size) => x,
            _ => self.b.ins().ireduce(int_type(size), v),
        }
    }

    /// The narrow value `v` is a zero extension of, if its definition says so.
    fn extended_from(&self, v: Value) -> Option<Value> {
        let dfg = &self.b.func.dfg;
        let inst = dfg.value_def(v).inst()?;
        match dfg.insts[inst] {
            InstructionData::Unary { opcode: Opcode::Uextend, arg } => Some(arg),
            _ => None,
        }
    }

    /// The width in bytes `v`'s upper bits are known zero above, from its definition: a
    /// zero extension, a zero-extending load or a constant. Masks and truncations of such
    /// values are left out, as compile time scales with the IR built.
    fn zero_extended_from(&self, v: Value) -> Option<u8> {
        let dfg = &self.b.func.dfg;
        if dfg.value_type(v) != types::I64 {
            return None;
        }
        let inst = dfg.value_def(v).inst()?;
        match dfg.insts[inst] {
            InstructionData::Unary { opcode: Opcode::Uextend, arg } => Some(dfg.value_type(arg).bytes() as u8),
            InstructionData::Load { opcode: Opcode::Uload8, .. } => Some(1),
            InstructionData::Load { opcode: Opcode::Uload16, .. } => Some(2),
            InstructionData::Load { opcode: Opcode::Uload32, .. } => Some(4),
            InstructionData::UnaryImm { opcode: Opcode::Iconst, imm } => {
                let k = imm.bits() as u64;
                Some(if k <= 0xff { 1 } else if k <= 0xffff { 2 } else if k <= 0xffff_ffff { 4 } else { 8 })
            }
            _ => None,
        }
    }

    /// A value `narrow` made, zero-extended back to 64 bits.
    pub fn widen(&mut self, v: Value, size: u8) -> Value {
        if size >= 8 { v } else { self.b.ins().uextend(types::I64, v) }
    }
}

/// The Cranelift integer type of a `size`-byte operand.
pub(super) fn int_type(size: u8) -> Type {
    match size {
        1 => types::I8,
        2 => types::I16,
        4 => types::I32,
        _ => types::I64,
    }
}

/// The general-purpose registers (bit per index) `insn` may write, implicitly or not.
fn written_gprs(insn: &iced_x86::Instruction) -> u16 {
    use iced_x86::OpAccess;
    gprs(insn, |a| matches!(a, OpAccess::Write | OpAccess::ReadWrite | OpAccess::CondWrite | OpAccess::ReadCondWrite))
}

/// The general-purpose registers (bit per index) `insn` accesses in a way `wanted` accepts.
fn gprs(insn: &iced_x86::Instruction, wanted: impl Fn(iced_x86::OpAccess) -> bool) -> u16 {
    let mut factory = iced_x86::InstructionInfoFactory::new();
    let info = factory.info(insn);
    let mut m = 0u16;
    for u in info.used_registers() {
        if let (true, Some((idx, _, _))) = (wanted(u.access()), crate::operand::gpr_slot(u.register())) {
            m |= 1 << idx;
        }
    }
    m
}

/// The registers a block that loops keeps in variables (`used`), and those that may differ
/// from the CPU structure at its start on later runs (`written`); `flags_dead`: the block
/// overwrites the arithmetic flags before anything may observe them, so a branch back need
/// not store them.
#[derive(Clone, Copy)]
struct LoopRegs {
    used: u16,
    written: u16,
    flags_dead: bool,
}

/// A block that ends with a native branch back to its own start (with chaining): its
/// registers (see `LoopRegs`).
fn loop_registers(spec: &BlockSpec, plan: &[Option<ops::Native>]) -> Option<LoopRegs> {
    let last = spec.insns.last()?;
    let branch = matches!(plan.last(), Some(Some(ops::Native::Jmp | ops::Native::Jcc)));
    if !spec.chain || !branch || last.near_branch_target() != spec.insns[0].ip() {
        return None;
    }
    let used = spec.insns.iter().fold(0, |m, i| m | gprs(i, |_| true));
    let written = spec.insns.iter().fold(0, |m, i| m | written_gprs(i));
    Some(LoopRegs { used, written, flags_dead: ops::flags_die(plan, spec.insns, 0, ops::ARITH_FLAGS) })
}

pub(crate) fn mask_of(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}
