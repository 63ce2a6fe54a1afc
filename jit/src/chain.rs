//! Chaining: a compiled block that ends in a direct jump (or falls through) continues into
//! the compiled block it leads to without returning to the CPU's run loop, through a tail call
//! the block makes itself once the CPU has linked that exit.
//!
//! Blocks use Cranelift's `tail` calling convention so a chain of any length runs in one host
//! stack frame; [`Entry`] is the one `extern "C"` function the CPU calls to start a chain.

use crate::translator::new_module;
use crate::JitError;
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, Signature, UserFuncName, Value};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Module, ModuleError};
use std::cell::Cell;

/// A cell of the CPU's indirect table (see `INDIRECT_TABLE_BITS`), as compiled code reads it:
/// the entry of the block it links to, and when the link holds. Owned by the CPU and written
/// only by the vCPU thread.
#[repr(C)]
#[derive(Debug, Default)]
pub struct ChainCell {
    /// The target block's entry point, or 0 while unlinked. The CPU clears every cell that
    /// holds a block's entry when that block stops being compiled, so compiled code jumps to
    /// it without a second load.
    pub target: Cell<usize>,
    /// What the link holds under (never `LOCAL_LINK` here: see [`LinkCell`]).
    pub guard: Cell<u64>,
    /// The RIP the link leads to.
    pub rip: Cell<u64>,
}

impl ChainCell {
    /// Writes the whole cell (all zeros: unlinked).
    pub fn set(&self, target: usize, guard: u64, rip: u64) {
        self.target.set(target);
        self.guard.set(guard);
        self.rip.set(rip);
    }
}

/// The fields of a link, in the order of `LinkCell::sites` (and of a `ChainCell`'s words):
/// the target's entry (0 while unlinked), its guard, the RIP it leads to.
pub const LINK_FIELDS: usize = 3;
pub const LINK_TARGET: usize = 0;
pub const LINK_GUARD: usize = 1;
pub const LINK_RIP: usize = 2;

/// A link's guard: when compiled code may follow it. A link within the exiting block's first
/// page always holds (its physical page follows from the block's own).
pub const LOCAL_LINK: u64 = 0;
/// The guard of a link to a block on a global page (the kernel's code): this bit and the
/// CPU's global link generation (`Layout::global_link_generation`), which moves only when
/// global translations may have changed, so such links outlive address-space switches.
pub const GLOBAL_LINK: u64 = 1 << 63;

/// The guard of a link to a block on physical page `paddr` of a non-global page: it holds
/// while the soft TLB translates the target's linear page for instruction fetch to that
/// physical page. A process's links thus hold in every address space that maps the same code
/// at the same place (each fork and exec of one program), and go with the translation (a CR3
/// write that drops it, INVLPG, a fill that finds another page).
pub fn translated_link(paddr: u64) -> u64 {
    paddr & !0xfff | 1
}

/// One exit of a compiled block and where it leads, held in the block's own code (patched when
/// the CPU links the exit): the target is the displacement of a direct jump (to a landing that
/// asks for the link while unlinked), the guard and RIP 64-bit immediates. Following a
/// link reads no data and jumps directly, as QEMU's patched jumps do. Compiled code of one
/// vCPU runs only on that vCPU's thread, which is the one that patches it, between blocks.
#[derive(Debug, Default)]
pub struct LinkCell {
    target: Cell<usize>,
    /// `LOCAL_LINK`, a `GLOBAL_LINK` generation or a `translated_link`: a link to another page
    /// holds only while the translation it was looked up with does.
    guard: Cell<u64>,
    /// The RIP the link leads to: fixed for direct exits; for the indirect exit's two cells,
    /// the targets last seen (see `CELL_INDIRECT_BEFORE`).
    rip: Cell<u64>,
    /// Per field, the address of its immediate in the block's code, or 0 where the code does
    /// not read it (see [`Compiled::sites`](crate::Compiled::sites)).
    sites: Cell<[usize; LINK_FIELDS]>,
    /// Where the target's jump leads while unlinked.
    unlinked: Cell<usize>,
}

impl LinkCell {
    pub fn target(&self) -> usize {
        self.target.get()
    }

    pub fn guard(&self) -> u64 {
        self.guard.get()
    }

    pub fn rip(&self) -> u64 {
        self.rip.get()
    }

    /// Writes the whole link (all zeros: unlinked), in the code too.
    pub fn set(&self, target: usize, guard: u64, rip: u64) {
        self.target.set(target);
        self.guard.set(guard);
        self.rip.set(rip);
        self.write_sites();
    }

    fn write_sites(&self) {
        let [jump, guard, rip] = self.sites.get();
        let mut guard_value = self.guard.get();
        if jump != 0 {
            let displacement = |to: usize| i32::try_from(to.wrapping_sub(jump + 4) as isize).ok();
            let (target, unlinked) = (self.target.get(), self.unlinked.get());
            // Blocks and landings share one arena, well within a jump's reach. A target out
            // of it would leave the exit to the landing, which links through the stub, with
            // an unlinked cell's guard: code that follows any other guard jumps without
            // naming its block first (see `emit::exits`).
            let d = match (target != 0).then(|| displacement(target)).flatten() {
                Some(d) => Some(d),
                None => {
                    guard_value = LOCAL_LINK;
                    displacement(unlinked)
                }
            };
            if let Some(d) = d {
                // SAFETY: as below.
                unsafe { (jump as *mut i32).write_unaligned(d) };
            }
        }
        for (site, value) in [(guard, guard_value), (rip, self.rip.get())] {
            if site != 0 {
                // SAFETY: `attach`'s caller keeps every site writable until `detach`; only
                // this thread runs or writes that code.
                unsafe { (site as *mut u64).write_unaligned(value) };
            }
        }
    }

    /// Makes the block's code at `sites` hold this link from now on (and writes it there);
    /// the target's jump leads to `unlinked` while there is no link.
    ///
    /// # Safety
    /// Each non-zero site is the address of the field's bytes in compiled code (4 for the
    /// target, 8 for the others) that only this thread runs, and stays mapped until `detach`;
    /// `unlinked` is code in the same mapping.
    pub unsafe fn attach(&self, sites: [usize; LINK_FIELDS], unlinked: usize) {
        self.sites.set(sites);
        self.unlinked.set(unlinked);
        self.write_sites();
    }

    /// The code no longer follows this link (it is unlinked, or its memory goes).
    pub fn detach(&self) {
        self.sites.set([0; LINK_FIELDS]);
    }
}

/// The name of the symbol whose value compiled code takes for field `field` of cell `cell`:
/// an import resolved to 0 (unlinked), so each use leaves an absolute relocation at the
/// immediate to patch (see `LinkCell`).
pub(crate) fn link_symbol(cell: usize, field: usize) -> String {
    format!("ferrite.link.{cell}.{field}")
}

/// The exits a block has cells for: the branch target, the next instruction, the conditional
/// branches a loop's block runs through before its branch back (see `LOOP_EXITS`), and an
/// indirect branch's (RET, JMP/CALL through a register or memory) last target.
pub const CHAIN_EXITS: usize = 3 + LOOP_EXITS;
/// Exit index of a direct branch's target (JMP, CALL, a taken Jcc).
pub const EXIT_TAKEN: usize = 0;
/// Exit index of the instruction after the block (a Jcc not taken, a block cut short).
pub const EXIT_NEXT: usize = 1;
/// Exit index of the first conditional branch inside a block (the others follow).
pub const EXIT_INNER: usize = 2;
/// The most conditional branches a block holds before its last instruction: a loop's block
/// goes on past them when the path they fall through to branches back to its start within
/// its page, so the whole loop runs in one block with its registers in host registers.
pub const LOOP_EXITS: usize = 2;
/// Exit index of an indirect branch.
pub const EXIT_INDIRECT: usize = EXIT_INNER + LOOP_EXITS;
/// The cell of the indirect branch's target before its last one: with `EXIT_INDIRECT`'s, a
/// two-entry cache, the latest first (returns to two call sites, a dispatch alternating
/// between two handlers). Not an exit of its own.
pub const CELL_INDIRECT_BEFORE: usize = EXIT_INDIRECT + 1;
/// A block's cells: one per exit, and the indirect branch's second entry.
pub const CHAIN_CELLS: usize = CHAIN_EXITS + 1;

/// The CPU's table of indirect-branch targets, shared by all 64-bit blocks of one privilege
/// (supervisor slots first, then user ones): where an indirect exit looks after its own two
/// cells, as a function returning to many call sites outruns them. Cells there hold as a
/// block's cells do, with a guard (never `LOCAL_LINK`) and the RIP they lead to.
pub const INDIRECT_TABLE_BITS: u32 = 12;
pub const INDIRECT_TABLE_SLOTS: usize = 1 << INDIRECT_TABLE_BITS;

/// The slot of `rip` in the indirect table of privilege `user` (compiled code computes the
/// same).
pub fn indirect_slot(rip: u64, user: bool) -> usize {
    (rip ^ (rip >> INDIRECT_TABLE_BITS)) as usize % INDIRECT_TABLE_SLOTS + if user { INDIRECT_TABLE_SLOTS } else { 0 }
}

/// The signature every compiled block has: `(cpu, frame) -> u64`, in the `tail` convention.
pub(crate) fn block_signature() -> Signature {
    let mut sig = Signature::new(CallConv::Tail);
    sig.params.extend([AbiParam::new(types::I64), AbiParam::new(types::I64)]);
    sig.returns.push(AbiParam::new(types::I64));
    sig
}

/// Every helper the generated code calls (`Layout::exec`, `Layout::flags`, the CPU's link
/// function): `extern "C" fn(pointer, u64) -> u64` in the host convention `call_conv`.
pub(crate) fn helper_signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params.extend([AbiParam::new(types::I64), AbiParam::new(types::I64)]);
    sig.returns.push(AbiParam::new(types::I64));
    sig
}

/// The fill stub's signature: `(cpu, frame, lin, request)`, in the `preserve_all` convention
/// (see `Entry::define_fill_stub`).
pub(crate) fn fill_stub_signature() -> Signature {
    let mut sig = Signature::new(CallConv::PreserveAll);
    sig.params.extend([0; 4].map(|_| AbiParam::new(types::I64)));
    sig
}

/// The link stub's signature: `(cpu, frame, exit) -> u64`, in the `tail` convention.
pub(crate) fn link_stub_signature() -> Signature {
    let mut sig = block_signature();
    sig.params.push(AbiParam::new(types::I64));
    sig
}

/// `extern "C" fn(entry, cpu, frame)`: calls the block at `entry`, which may chain on, and
/// returns when the chain ends; the link stub blocks tail-call at an exit without a valid
/// link; and the fill stub they call when a TLB probe misses. Compiled once per vCPU, in a
/// module never reset.
pub struct Entry {
    _module: JITModule,
    func: usize,
    link_stub: usize,
    fill_stub: usize,
}

/// See [`Entry::function`].
pub type EntryFn = unsafe extern "C" fn(usize, *mut u8, *mut u8) -> u64;

impl Entry {
    /// `link` and `tlb_fill`: the CPU's helpers of those names in [`crate::Layout`].
    pub fn new(link: usize, tlb_fill: usize) -> Result<Self, JitError> {
        let err = |e: &dyn std::fmt::Display| JitError::Compile { rip: 0, message: e.to_string() };
        // Three small functions: the arena's slack holds them.
        let mut module = new_module(0)?;
        let mut fctx = FunctionBuilderContext::new();
        let id = Self::define_trampoline(&mut module, &mut fctx).map_err(|e| err(&e))?;
        let stub = Self::define_link_stub(&mut module, &mut fctx, link).map_err(|e| err(&e))?;
        let fill = Self::define_fill_stub(&mut module, &mut fctx, tlb_fill).map_err(|e| err(&e))?;
        module.finalize_definitions().map_err(|e| err(&e))?;
        let func = module.get_finalized_function(id) as usize;
        let link_stub = module.get_finalized_function(stub) as usize;
        let fill_stub = module.get_finalized_function(fill) as usize;
        Ok(Entry { _module: module, func, link_stub, fill_stub })
    }

    /// Defines function number `index` of the module with `signature`, its one block built
    /// by `body` from the parameters and the host's calling convention.
    pub(crate) fn define(
        module: &mut JITModule,
        fctx: &mut FunctionBuilderContext,
        signature: Signature,
        index: u32,
        body: impl FnOnce(&mut FunctionBuilder, &[Value], CallConv),
    ) -> Result<FuncId, ModuleError> {
        let mut ctx = module.make_context();
        ctx.func.signature = signature;
        ctx.func.name = UserFuncName::user(1, index);
        let call_conv = module.isa().default_call_conv();
        let frontend = module.isa().frontend_config();
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, fctx);
            let start = b.create_block();
            b.append_block_params_for_function_params(start);
            b.switch_to_block(start);
            let params = b.block_params(start).to_vec();
            body(&mut b, &params, call_conv);
            b.seal_all_blocks();
            b.finalize(frontend);
        }
        let id = module.declare_anonymous_function(&ctx.func.signature)?;
        module.define_function(id, &mut ctx)?;
        module.clear_context(&mut ctx);
        Ok(id)
    }

    /// `extern "C" fn(entry, cpu, frame) -> u64`: calls the block at `entry` (see
    /// `function`).
    fn define_trampoline(module: &mut JITModule, fctx: &mut FunctionBuilderContext) -> Result<FuncId, ModuleError> {
        let mut sig = Signature::new(module.isa().default_call_conv());
        sig.params.extend([0; 3].map(|_| AbiParam::new(types::I64)));
        sig.returns.push(AbiParam::new(types::I64));
        Self::define(module, fctx, sig, 0, |b, params, _| {
            let block_sig = b.import_signature(block_signature());
            let call = b.ins().call_indirect(block_sig, params[0], &params[1..3]);
            let r = b.inst_results(call)[0];
            b.ins().return_(&[r]);
        })
    }

    /// `stub(cpu, frame, lin, request)` in the `preserve_all` convention: calls
    /// `tlb_fill(frame, lin, request)`, which leaves its answer in the frame. A block's probe
    /// calls it on a miss: as the call clobbers no register and takes the two pointers where
    /// every block receives them, the guest registers a block holds stay where they are, and
    /// blocks save none on entry for it. (The answer stays in the frame: a value returned
    /// in a register would be one the stub's epilogue restores.)
    fn define_fill_stub(module: &mut JITModule, fctx: &mut FunctionBuilderContext, tlb_fill: usize) -> Result<FuncId, ModuleError> {
        Self::define(module, fctx, fill_stub_signature(), 2, |b, params, call_conv| {
            let mut sig = Signature::new(call_conv);
            sig.params.extend([0; 3].map(|_| AbiParam::new(types::I64)));
            let fill_sig = b.import_signature(sig);
            let f = b.ins().iconst(types::I64, tlb_fill as i64);
            b.ins().call_indirect(fill_sig, f, &params[1..4]);
            b.ins().return_(&[]);
        })
    }

    /// The fill stub's address (see `define_fill_stub`), valid while `self` lives.
    pub fn fill_stub(&self) -> usize {
        self.fill_stub
    }

    /// `stub(cpu, frame, exit)`: calls `link(frame, exit)` and tail-calls the entry it
    /// returns, or returns 0 (the chain ends). Blocks reach it by a tail call, so the call
    /// to the CPU happens in this one frame rather than in every block's.
    fn define_link_stub(module: &mut JITModule, fctx: &mut FunctionBuilderContext, link: usize) -> Result<FuncId, ModuleError> {
        Self::define(module, fctx, link_stub_signature(), 1, |b, params, call_conv| {
            let [cpu, frame, exit] = [params[0], params[1], params[2]];
            let link_sig = b.import_signature(helper_signature(call_conv));
            let block_sig = b.import_signature(block_signature());
            let f = b.ins().iconst(types::I64, link as i64);
            let call = b.ins().call_indirect(link_sig, f, &[frame, exit]);
            let entry = b.inst_results(call)[0];
            let (go, stop) = (b.create_block(), b.create_block());
            b.ins().brif(entry, go, &[], stop, &[]);
            b.switch_to_block(go);
            b.ins().return_call_indirect(block_sig, entry, &[cpu, frame]);
            b.switch_to_block(stop);
            let zero = b.ins().iconst(types::I64, 0);
            b.ins().return_(&[zero]);
        })
    }

    /// The link stub's address (see `define_link_stub`), valid while `self` lives.
    pub fn link_stub(&self) -> usize {
        self.link_stub
    }

    /// The trampoline: `f(entry, cpu, frame)` runs the compiled block at `entry` (and
    /// whatever it chains to) and returns when the chain ends. Valid while `self` lives.
    ///
    /// Calling it requires `entry` to be a block compiled for the layout `cpu` and `frame`
    /// follow, whose code is alive, as is the code of every block reachable through the
    /// chain cells it names.
    pub fn function(&self) -> EntryFn {
        // SAFETY: `func` is this module's finalized trampoline, with this signature.
        unsafe { std::mem::transmute::<usize, EntryFn>(self.func) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_cell_patches_its_jump_and_immediates_until_detached() {
        // Stand-in code, only ever touched through raw pointers as compiled code is: a jump's
        // displacement at 1, the guard's immediate at 8 and the RIP's at 20.
        let code = Box::into_raw(Box::new([0u8; 32])) as *mut u8;
        let base = code as usize;
        let (jump, guard, rip) = (base + 1, base + 8, base + 20);
        let (unlinked, target) = (base + 0x40, base + 0x1000);
        let cell = LinkCell::default();
        // SAFETY (both): reads within the 32 bytes at `code`, alive until the end.
        let displacement = || unsafe { (jump as *const i32).read_unaligned() };
        let word = |at: usize| unsafe { (at as *const u64).read_unaligned() };
        // SAFETY: the sites lie in the 32 bytes at `code`, alive until after `detach`.
        unsafe { cell.attach([jump, guard, rip], unlinked) };
        // Unlinked: the jump leads to the landing (displacement from the jump's end).
        assert_eq!(displacement(), 0x40 - 5);
        cell.set(target, 7, 0xffff_8000_1234);
        assert_eq!(displacement(), 0x1000 - 5);
        assert_eq!((word(guard), word(rip)), (7, 0xffff_8000_1234));
        cell.set(0, 0, 0);
        assert_eq!((displacement(), word(guard), word(rip)), (0x40 - 5, 0, 0));
        // Detached: the code is left alone, the cell still tells where it led.
        cell.detach();
        cell.set(target, 9, 0x40);
        assert_eq!((displacement(), word(guard)), (0x40 - 5, 0));
        assert_eq!((cell.target(), cell.guard(), cell.rip()), (target, 9, 0x40));
        // SAFETY: the box made above, no longer used.
        drop(unsafe { Box::from_raw(code as *mut [u8; 32]) });
    }
}
