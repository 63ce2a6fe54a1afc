//! Leaving a block: the state is stored, the chain's instruction count grows, and unless the
//! run loop is needed (see `stop_unless_free`) the block jumps to the block its exit is
//! linked to, through a direct jump the CPU patches (see `chain::LinkCell`). An exit whose
//! link is missing or no longer holds tail-calls the link stub (see `chain::Entry`), which
//! asks the CPU to link it and goes on there: the block itself makes no call on this path, so
//! blocks that call nothing else save no registers.

use super::Emit;
use crate::chain::{
    ChainCell, CELL_INDIRECT_BEFORE, EXIT_INDIRECT, EXIT_INNER, EXIT_NEXT, EXIT_TAKEN, INDIRECT_TABLE_BITS, INDIRECT_TABLE_SLOTS, LINK_GUARD,
    LINK_RIP, LINK_TARGET, LOCAL_LINK, LOOP_EXITS, translated_link,
};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, Block, InstBuilder, Value};

/// Whether a direct exit of a block of `bitness` whose first instruction is at `block_rip`
/// to `target` is a link within the block's first page, which the CPU makes with guard
/// `LOCAL_LINK` and compiled code follows without checking guards: in 64-bit code, where RIP is
/// the linear address, to a target whose first instruction cannot reach the next page (only a
/// block's first instruction may cross a page boundary, so such a block lies in the page).
pub fn local_exit(bitness: u32, block_rip: u64, target: u64) -> bool {
    const MAX_INSN: u64 = 15;
    bitness == 64 && block_rip >> 12 == target >> 12 && (target & 0xfff) <= 0x1000 - MAX_INSN
}

/// A link an exit follows: one of the block's own cells (`EXIT_TAKEN`, ...), whose fields its
/// code holds, or a cell of the indirect table at this address.
#[derive(Clone, Copy)]
enum Guard {
    Local,
    Global,
    Translated,
}

/// CS's index in `Layout::seg_base`.
const CS: usize = 1;

#[derive(Clone, Copy)]
enum Cell {
    Own(usize),
    Table(Value),
}

impl Emit<'_, '_> {
    /// Leaves the block for the computed address `rip` (an indirect branch), chaining into
    /// the block its exit is linked to if that is the one for `rip`.
    pub fn finish_indirect(&mut self, rip: Value, retired: u64) {
        self.store_all(rip);
        self.chain_exit(EXIT_INDIRECT, retired, rip, None);
    }

    /// Leaves the block for the fixed address `target` through exit `exit`.
    pub fn finish_direct(&mut self, target: u64, exit: usize, retired: u64) {
        let t = self.iconst(target);
        self.store_all(t);
        self.chain_exit(exit, retired, t, Some(target));
    }

    /// A conditional branch: to `taken` through `EXIT_TAKEN` if `c`, else to `next` through
    /// `EXIT_NEXT`; the state is stored once for both ways.
    pub fn finish_branch(&mut self, c: Value, taken: u64, next: u64, retired: u64) {
        let (t, n) = (self.iconst(taken), self.iconst(next));
        let rip = self.b.ins().select(c, t, n);
        self.store_all(rip);
        if !self.spec.chain {
            let r = self.iconst(retired);
            self.leave(r);
            return;
        }
        self.count_and_check(retired, Some(taken));
        let (to_taken, to_next) = (self.link(EXIT_TAKEN, Some(taken)), self.link(EXIT_NEXT, Some(next)));
        self.b.ins().brif(c, to_taken, &[t.into()], to_next, &[n.into()]);
    }

    /// A conditional branch before the block's last instruction (a loop's, see
    /// `LOOP_EXITS`): to `taken` through the next inner exit if `c`; the path not taken goes
    /// on with what the compiler knew before the branch.
    pub fn inner_branch(&mut self, c: Value, taken: u64, retired: u64) {
        let (leave, stay) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(c, leave, &[], stay, &[]);
        self.b.switch_to_block(leave);
        let exit = EXIT_INNER + self.inner_exits;
        self.inner_exits += 1;
        if exit < EXIT_INNER + LOOP_EXITS {
            self.finish_direct(taken, exit, retired);
        } else {
            // More than the block has cells for: back to the run loop.
            let t = self.iconst(taken);
            self.store_all(t);
            let r = self.iconst(retired);
            self.leave(r);
        }
        self.b.switch_to_block(stay);
    }

    /// The end of a path whose state is stored with RIP = `rip` (the fixed `target` of a
    /// direct exit), leaving through `exit`.
    pub(super) fn chain_exit(&mut self, exit: usize, retired: u64, rip: Value, target: Option<u64>) {
        if !self.spec.chain {
            let r = self.iconst(retired);
            self.leave(r);
            return;
        }
        self.count_and_check(retired, target);
        let link = self.link(exit, target);
        self.b.ins().jump(link, &[rip.into()]);
    }

    /// Counts `retired` and stops the chain if the run loop is needed, for an exit to the
    /// fixed `target` (besides the next instruction), or an indirect one.
    fn count_and_check(&mut self, retired: u64, target: Option<u64>) {
        let r = self.iconst(retired);
        let total = self.count_retired(r);
        let stop = self.stop_block();
        let watch = target.is_none_or(|t| !self.forward(t));
        self.stop_unless_free(total, stop, watch);
    }

    /// Whether a direct exit to `target` goes forward: past the block's first instruction.
    /// Every cycle of blocks has an exit that does not (the one into its lowest block), so a
    /// chain runs only finitely many forward exits in a row, and they may leave the attention
    /// word to the next other exit.
    fn forward(&self, target: u64) -> bool {
        target > self.spec.insns[0].ip()
    }

    fn stop_block(&mut self) -> Block {
        *self.stop.get_or_insert_with(|| self.b.create_block())
    }

    /// The code that follows exit `exit`'s link (created on first use, emitted at the end),
    /// with the new RIP as its parameter; `target` is a direct exit's fixed RIP.
    fn link(&mut self, exit: usize, target: Option<u64>) -> Block {
        let local = target.is_some_and(|t| local_exit(self.spec.bitness, self.spec.insns[0].ip(), t));
        self.local_links[exit] = Some(self.local_links[exit].unwrap_or(true) && local);
        if let Some(b) = self.links[exit] {
            return b;
        }
        let b = self.b.create_block();
        self.b.append_block_param(b, types::I64);
        self.links[exit] = Some(b);
        b
    }

    /// Emits the link code of every exit used, and the stop block.
    pub(super) fn emit_links(&mut self) {
        for exit in 0..self.links.len() {
            if let Some(b) = self.links[exit] {
                self.emit_link(exit, b);
            }
        }
        if let Some(stop) = self.stop {
            self.b.switch_to_block(stop);
            let zero = self.iconst(0);
            self.b.ins().return_(&[zero]);
        }
    }

    /// Tail-calls the linked block if exit `exit`'s cell holds a link that is still valid
    /// (see `follow_cell`), for the indirect exit either of its two cells whose RIP is this
    /// one, or then (in 64-bit code, where RIP is the linear address) the CPU's indirect
    /// table's; otherwise the link stub.
    fn emit_link(&mut self, exit: usize, link: Block) {
        self.b.switch_to_block(link);
        let rip = self.b.block_params(link)[0];
        if exit != EXIT_INDIRECT && self.local_links[exit] == Some(true) {
            // A link within the block's first page always holds (see `local_exit`).
            self.jump_own(exit, true);
            return;
        }
        let missing = self.b.create_block();
        if exit == EXIT_INDIRECT {
            let second = self.b.create_block();
            self.follow_cell(Cell::Own(EXIT_INDIRECT), Some(rip), second, true);
            self.b.switch_to_block(second);
            let table = (self.spec.bitness == 64).then(|| self.b.create_block());
            self.follow_cell(Cell::Own(CELL_INDIRECT_BEFORE), Some(rip), table.unwrap_or(missing), true);
            if let Some(table) = table {
                self.b.switch_to_block(table);
                let cell = self.indirect_cell(rip);
                self.follow_cell(Cell::Table(cell), Some(rip), missing, false);
            }
        } else {
            // In 64-bit code the CPU gives a direct exit to another page no `LOCAL_LINK`.
            self.follow_cell(Cell::Own(exit), None, missing, self.spec.bitness != 64);
        }
        self.b.switch_to_block(missing);
        self.name_block();
        let leave = self.link_symbols.expect("links only with chaining").unlinked_exits[exit];
        self.b.ins().return_call(leave, &[self.cpu, self.frame]);
    }

    /// Field `field` (`LINK_GUARD`, `LINK_RIP`) of `cell`: the immediate the CPU
    /// patches for the block's own cells, a load for the indirect table's.
    fn link_field(&mut self, cell: Cell, field: usize) -> Value {
        match cell {
            Cell::Own(i) => {
                let symbols = self.link_symbols.expect("links only with chaining");
                self.b.ins().symbol_value(types::I64, symbols.fields[i][field])
            }
            Cell::Table(at) => self.b.ins().load(types::I64, super::state_flags(), at, 8 * field as i32),
        }
    }

    /// Goes to the block `cell` links to: for the block's own cells a direct jump the CPU
    /// patches (to a landing that asks for the link while unlinked, see `LinkCell`), for the
    /// indirect table's a jump to the entry it holds, if any, else to `otherwise`.
    fn jump_to_target(&mut self, cell: Cell, otherwise: Block, may_land: bool) {
        match cell {
            Cell::Own(i) => self.jump_own(i, may_land),
            Cell::Table(at) => {
                let live = self.b.create_block();
                let target = self.b.ins().load(types::I64, super::state_flags(), at, 8 * LINK_TARGET as i32);
                self.b.ins().brif(target, live, &[], otherwise, &[]);
                self.b.switch_to_block(live);
                self.b.ins().return_call_indirect(self.block_sig, target, &[self.cpu, self.frame]);
            }
        }
    }

    /// The patched jump of the block's own cell `i`; `may_land`: it may lead to the cell's
    /// landing, which asks the CPU to link this block's exit (so the block names itself).
    /// A jump guarded by a guard that an unlinked cell fails (any but `LOCAL_LINK`) leads to
    /// a target (see `LinkCell`).
    fn jump_own(&mut self, i: usize, may_land: bool) {
        if may_land {
            self.name_block();
        }
        let landing = self.link_symbols.expect("links only with chaining").landings[i];
        self.b.ins().return_call(landing, &[self.cpu, self.frame]);
    }

    /// Goes to the block `cell` links to if the link holds (see `chain::LinkCell::guard`) and,
    /// with `rip`, the link leads to that RIP; otherwise goes on at `otherwise`. A cell links
    /// only to compiled code (see `LinkCell`). `may_be_local`: the cell may hold a
    /// `LOCAL_LINK`, which is also an unlinked cell's guard; without it, an unlinked cell
    /// fails every guard tested.
    fn follow_cell(&mut self, cell: Cell, rip: Option<Value>, otherwise: Block, may_be_local: bool) {
        if let Some(rip) = rip {
            let guards = self.b.create_block();
            let link_rip = self.link_field(cell, LINK_RIP);
            let here = self.b.ins().icmp(IntCC::Equal, link_rip, rip);
            self.b.ins().brif(here, guards, &[], otherwise, &[]);
            self.b.switch_to_block(guards);
        }
        // A branch per kind of guard, the likeliest first (a kernel's links lead mostly to
        // its global pages, a process's to its own): shorter code than folding the
        // comparisons into one flag.
        let guard = self.link_field(cell, LINK_GUARD);
        let live = self.b.create_block();
        let order = if self.spec.user { [Guard::Local, Guard::Translated, Guard::Global] } else { [Guard::Global, Guard::Local, Guard::Translated] };
        let tested = |g: &&Guard| may_be_local || !matches!(g, Guard::Local);
        let last = order.iter().filter(tested).count() - 1;
        for (i, &kind) in order.iter().filter(tested).enumerate() {
            let holds = match kind {
                Guard::Local => self.b.ins().icmp_imm_s(IntCC::Equal, guard, LOCAL_LINK as i64),
                Guard::Global => {
                    let g = self.load_state(types::I64, self.l.global_link_generation);
                    self.b.ins().icmp(IntCC::Equal, guard, g)
                }
                Guard::Translated => {
                    let rip = match rip {
                        Some(rip) => rip,
                        None => self.link_field(cell, LINK_RIP),
                    };
                    self.translation_holds(guard, rip)
                }
            };
            let next = if i == last { otherwise } else { self.b.create_block() };
            self.b.ins().brif(holds, live, &[], next, &[]);
            if next != otherwise {
                self.b.switch_to_block(next);
            }
        }
        self.b.switch_to_block(live);
        self.jump_to_target(cell, otherwise, may_be_local);
    }

    /// Whether the soft TLB translates the code page of `rip` (for this block's privilege) to
    /// the physical page `guard` names (see `chain::translated_link`).
    fn translation_holds(&mut self, guard: Value, rip: Value) -> Value {
        let l = self.l;
        // In 64-bit code RIP is the linear address. Elsewhere CS's base is added (a sum past
        // 4 GiB outside long mode matches no tag: the link is only looked up again).
        let lin = if self.spec.bitness == 64 {
            rip
        } else {
            let base = self.load_state(types::I64, l.seg_base[CS]);
            self.b.ins().iadd(base, rip)
        };
        let tlb = self.load_state(types::I64, l.tlb);
        let ctx = if self.spec.user { l.ctx_user } else { l.ctx_supervisor };
        let code_table = (ctx + l.code_tables) as i64;
        let table = self.b.ins().iadd_imm_s(tlb, (code_table * l.tlb_entry_size as i64) << l.tlb_bits);
        let offset = self.tlb_slot_offset(lin);
        let entry = self.b.ins().iadd(table, offset);
        let tag = self.b.ins().load(types::I64, super::state_flags(), entry, l.tlb_exec);
        let page = self.b.ins().band_imm_s(lin, !0xfff);
        let tag_ok = self.b.ins().icmp(IntCC::Equal, tag, page);
        let paddr = self.b.ins().load(types::I64, super::state_flags(), entry, l.tlb_paddr);
        let key = self.b.ins().bor_imm_s(paddr, translated_link(0) as i64);
        let same_page = self.b.ins().icmp(IntCC::Equal, key, guard);
        self.b.ins().band(tag_ok, same_page)
    }

    /// The address of `rip`'s cell in the indirect table of this block's privilege (as
    /// `chain::indirect_slot` computes it).
    fn indirect_cell(&mut self, rip: Value) -> Value {
        let folded = self.b.ins().ushr_imm_s(rip, INDIRECT_TABLE_BITS as i64);
        let folded = self.b.ins().bxor(rip, folded);
        let slot = self.b.ins().band_imm_s(folded, INDIRECT_TABLE_SLOTS as i64 - 1);
        let offset = self.b.ins().imul_imm_s(slot, std::mem::size_of::<ChainCell>() as i64);
        let base = self.load_frame(self.l.frame.indirect_table);
        let base = if self.spec.user { self.b.ins().iadd_imm_s(base, (INDIRECT_TABLE_SLOTS * std::mem::size_of::<ChainCell>()) as i64) } else { base };
        self.b.ins().iadd(base, offset)
    }
}
