//! The Cranelift module that holds compiled blocks, and the compile step.

use crate::arena::CodeArena;
use crate::chain::{block_signature, link_stub_signature, link_symbol, Entry, EXIT_INDIRECT, LINK_FIELDS, LINK_TARGET};
use crate::emit::LinkSymbols;
use crate::{CHAIN_CELLS, CHAIN_EXITS};
use crate::emit::emit_block;
use crate::perf_map::PerfMap;
use crate::{JitError, Layout};
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::ir::{types, ExternalName, InstBuilder, MemFlagsData, UserFuncName};
use cranelift_codegen::FinalizedRelocTarget;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{DataId, FuncId, Linkage, Module};
use iced_x86::Instruction;

/// A decoded block and the CPU mode its code is compiled for.
#[derive(Clone, Copy)]
pub struct BlockSpec<'a> {
    pub insns: &'a [Instruction],
    /// 16, 32 or 64: the code size the block was decoded with.
    pub bitness: u32,
    /// Compiled for CPL 3 (user TLB context) or CPL 0-2.
    pub user: bool,
    /// The CPU's identity for the block, which the frame names while it runs (for the
    /// interpreter helper and for linking its exits).
    pub block: usize,
    /// Whether the block's exits chain (through links in its code, see
    /// [`LinkCell`](crate::LinkCell)); without, the block always returns.
    pub chain: bool,
    /// Bit `i`: instruction `i` is not what the guest's CPU model runs there (it raises #UD,
    /// or runs as another instruction), so the interpreter runs it, and afterwards nothing
    /// of the state is assumed known. Blocks hold at most 64 instructions.
    pub opaque: u64,
    /// Whether accesses at one base may share a probe (see `emit::mem::ProbeGroup`); a
    /// block whose group met a page boundary is compiled again without.
    pub groups: bool,
    /// The quick tier: compiled without Cranelift's optimizations (a third less compile
    /// time, slower code), and counting its runs down at `countdown` (see below).
    pub quick: bool,
    /// With `quick`: the address of a `u32` the block decrements on every run (a loop's
    /// every round); at zero it leaves before its first instruction, and the CPU has it
    /// compiled again at full speed (the count wraps, and the quick code runs on meanwhile).
    pub countdown: usize,
}

/// A compiled block.
#[derive(Clone, Copy, Debug)]
pub struct Compiled {
    /// Per chain cell and field (see `LinkCell::attach`), where the code holds it, or 0.
    pub sites: [[usize; LINK_FIELDS]; CHAIN_CELLS],
    /// Per chain cell, where its jump leads while unlinked.
    pub unlinked: [usize; CHAIN_CELLS],
    /// Entry point: `fn(cpu: *mut u8, frame: *mut u8) -> u64` in the `tail` convention
    /// (called through [`Entry`](crate::Entry)).
    pub entry: usize,
    /// Host code bytes.
    pub code_bytes: usize,
    /// Instructions emitted natively (the rest call the interpreter).
    pub native: u32,
    /// Cranelift IR instructions the block was built with (what compiling costs scales with).
    pub ir_insts: u32,
}

pub struct Translator {
    layout: Layout,
    code_bytes_max: usize,
    module: Option<JITModule>,
    ctx: Context,
    fctx: FunctionBuilderContext,
    code_bytes: usize,
    perf: Option<PerfMap>,
    /// The module's link symbols and landings.
    links: Links,
    /// The ISA at `opt_level=none`, for the quick tier.
    quick_isa: cranelift_codegen::isa::OwnedTargetIsa,
}

/// Room for the code of one block past a module's budget (the CPU flushes the cache only once
/// a block has taken it over its cap).
const ARENA_SLACK: usize = 64 << 20;

/// A module whose code goes to a dense arena of `code_bytes` plus slack (see `arena`).
pub(crate) fn new_module(code_bytes: usize) -> Result<JITModule, JitError> {
    let isa = new_isa("speed")?;
    let arena = CodeArena::new(code_bytes.saturating_add(ARENA_SLACK)).map_err(|e| JitError::Isa(format!("no memory for code: {e}")))?;
    let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    builder.memory_provider(Box::new(arena));
    // Unlinked: 0 (and no lookup in the process's symbols for every block).
    for (cell, field) in link_fields() {
        builder.symbol(link_symbol(cell, field), std::ptr::null());
    }
    Ok(JITModule::new(builder))
}

/// The host's ISA at Cranelift's `opt_level` (`speed`: the module's; `none`: the quick tier's).
fn new_isa(opt_level: &str) -> Result<cranelift_codegen::isa::OwnedTargetIsa, JitError> {
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| JitError::Isa(e.to_string()));
    set(&mut flags, "opt_level", opt_level)?;
    set(&mut flags, "enable_verifier", if cfg!(debug_assertions) { "true" } else { "false" })?;
    set(&mut flags, "is_pic", "false")?;
    // Cranelift's tail calls (block chaining) rely on frame pointers.
    set(&mut flags, "preserve_frame_pointers", "true")?;
    cranelift_native::builder()
        .map_err(|e| JitError::Isa(e.to_string()))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| JitError::Isa(e.to_string()))
}

fn link_fields() -> impl Iterator<Item = (usize, usize)> {
    (0..CHAIN_CELLS).flat_map(|c| (0..LINK_FIELDS).map(move |f| (c, f)))
}

/// What a module's blocks use for their links (see `LinkCell`).
#[derive(Clone, Copy)]
struct Links {
    /// Per cell and field, the symbol whose value the field is (see `chain::link_symbol`);
    /// the target's is unused (blocks jump to their landing instead).
    data: [[DataId; LINK_FIELDS]; CHAIN_CELLS],
    /// Per cell, the function an unlinked jump of the cell leads to: it tail-calls the
    /// link stub for the cell's exit (the block named itself in the frame).
    landings: [FuncId; CHAIN_CELLS],
    /// Per exit, a function like its cell's landing, for the code that finds the exit's link
    /// missing: a call of the landing itself would be a second site to patch.
    unlinked_exits: [FuncId; CHAIN_EXITS],
}

/// Declares the link symbols in `module` and defines the landings.
fn declare_links(module: &mut JITModule, layout: &Layout, fctx: &mut FunctionBuilderContext) -> Result<Links, JitError> {
    let err = |e: &dyn std::fmt::Display| JitError::Isa(e.to_string());
    let mut data = [[DataId::from_u32(0); LINK_FIELDS]; CHAIN_CELLS];
    for (cell, field) in link_fields() {
        data[cell][field] = module.declare_data(&link_symbol(cell, field), Linkage::Import, false, false).map_err(|e| err(&e))?;
    }
    // Local to the module, so blocks reach them (and the landings their targets) with a
    // direct jump.
    let mut to_stub = |index: usize, exit: usize| {
        Entry::define(module, fctx, block_signature(), index as u32, |b, params, _| {
            let (cpu, frame) = (params[0], params[1]);
            let stub_sig = b.import_signature(link_stub_signature());
            let stub = b.ins().load(types::I64, MemFlagsData::trusted(), frame, layout.frame.link_stub);
            let exit = b.ins().iconst(types::I64, exit as i64);
            b.ins().return_call_indirect(stub_sig, stub, &[cpu, frame, exit]);
        })
        .map_err(|e| err(&e))
    };
    let mut landings = [FuncId::from_u32(0); CHAIN_CELLS];
    for (cell, landing) in landings.iter_mut().enumerate() {
        *landing = to_stub(cell, cell.min(EXIT_INDIRECT))?;
    }
    let mut unlinked_exits = [FuncId::from_u32(0); CHAIN_EXITS];
    for (exit, f) in unlinked_exits.iter_mut().enumerate() {
        *f = to_stub(CHAIN_CELLS + exit, exit)?;
    }
    Ok(Links { data, landings, unlinked_exits })
}

/// `FERRITE_JIT_DUMP=all` or `=RIP[,RIP...]` (hex): print the guest instructions and the host
/// code of those blocks on stderr as they compile.
fn dump_wanted(rip: u64) -> bool {
    static WANTED: std::sync::OnceLock<Option<Vec<u64>>> = std::sync::OnceLock::new();
    let wanted = WANTED.get_or_init(|| {
        let v = std::env::var("FERRITE_JIT_DUMP").ok()?;
        if v == "all" {
            return Some(Vec::new());
        }
        Some(v.split(',').filter_map(|x| u64::from_str_radix(x.trim().trim_start_matches("0x"), 16).ok()).collect())
    });
    wanted.as_ref().is_some_and(|w| w.is_empty() || w.contains(&rip))
}

impl Translator {
    /// `code_bytes`: the host code the CPU lets the cache hold. `perf_map`: also name every
    /// block in `/tmp/perf-PID.map`.
    pub fn new(layout: Layout, code_bytes: usize, perf_map: bool) -> Result<Self, JitError> {
        let mut module = new_module(code_bytes)?;
        let mut fctx = FunctionBuilderContext::new();
        let links = declare_links(&mut module, &layout, &mut fctx)?;
        let ctx = module.make_context();
        let perf = if perf_map { PerfMap::open().ok() } else { None };
        let quick_isa = new_isa("none")?;
        Ok(Translator { layout, code_bytes_max: code_bytes, module: Some(module), ctx, fctx, code_bytes: 0, perf, links, quick_isa })
    }

    /// Host code bytes held since the last reset.
    pub fn code_bytes(&self) -> usize {
        self.code_bytes
    }

    /// Frees every compiled block.
    ///
    /// # Safety
    /// No entry point returned so far may run or be called afterwards.
    pub unsafe fn reset(&mut self) -> Result<(), JitError> {
        if let Some(m) = self.module.take() {
            // SAFETY: the caller guarantees that no code of this module runs or will run.
            unsafe { m.free_memory() };
        }
        let mut module = new_module(self.code_bytes_max)?;
        self.links = declare_links(&mut module, &self.layout, &mut self.fctx)?;
        self.module = Some(module);
        self.code_bytes = 0;
        Ok(())
    }

    pub fn compile(&mut self, spec: &BlockSpec) -> Result<Compiled, JitError> {
        let rip = spec.insns.first().map_or(0, |i| i.ip());
        let err = |e: &dyn std::fmt::Display| JitError::Compile { rip, message: e.to_string() };
        let module = self.module.as_mut().expect("a module outside reset");
        module.clear_context(&mut self.ctx);
        self.ctx.func.signature = block_signature();
        self.ctx.func.name = UserFuncName::user(0, rip as u32);
        let links = spec.chain.then(|| LinkSymbols {
            fields: self.links.data.map(|cell| cell.map(|d| module.declare_data_in_func(d, &mut self.ctx.func))),
            landings: self.links.landings.map(|f| module.declare_func_in_func(f, &mut self.ctx.func)),
            unlinked_exits: self.links.unlinked_exits.map(|f| module.declare_func_in_func(f, &mut self.ctx.func)),
        });
        let isa = module.isa();
        let native = emit_block(&mut self.ctx.func, &mut self.fctx, &self.layout, spec, links, isa.default_call_conv(), isa.frontend_config());
        let ir_insts = ir_size(&self.ctx.func);
        let dump = dump_wanted(rip);
        self.ctx.set_disasm(dump);
        let id = module.declare_anonymous_function(&self.ctx.func.signature).map_err(|e| err(&e))?;
        if spec.quick {
            // `define_function` compiles for the module's ISA: compile for the other one,
            // then hand the module the code and its relocations as it would.
            self.ctx.compile(&*self.quick_isa, &mut Default::default()).map_err(|e| err(&format!("{:?}", e.inner)))?;
            let code = self.ctx.compiled_code().expect("just compiled");
            let align = (code.buffer.alignment as u64).max(self.quick_isa.function_alignment().minimum as u64).max(self.quick_isa.symbol_alignment());
            let relocs: Vec<_> = code.buffer.relocs().iter().map(|r| cranelift_module::ModuleReloc::from_mach_reloc(r, &self.ctx.func, id)).collect();
            module.define_function_bytes(id, align, code.code_buffer(), &relocs).map_err(|e| err(&e))?;
        } else {
            module.define_function(id, &mut self.ctx).map_err(|e| err(&e))?;
        }
        let code_bytes = self.ctx.compiled_code().map_or(0, |c| c.code_buffer().len());
        let offsets = link_offsets(&self.ctx, &self.links).map_err(|m| err(&m))?;
        if dump {
            let text = self.ctx.compiled_code().and_then(|c| c.vcode.clone()).unwrap_or_default();
            let guest: String = spec.insns.iter().map(|i| format!("  {:#x} {i}\n", i.ip())).collect();
            eprintln!("ferrite: jit: block {rip:#x}, {code_bytes} bytes\n{guest}{text}");
        }
        module.clear_context(&mut self.ctx);
        module.finalize_definitions().map_err(|e| err(&e))?;
        let entry = module.get_finalized_function(id) as usize;
        let sites = offsets.map(|cell| cell.map(|o| o.map_or(0, |o| entry + o as usize)));
        let unlinked = self.links.landings.map(|f| module.get_finalized_function(f) as usize);
        self.code_bytes += code_bytes;
        if let Some(p) = &mut self.perf {
            p.record(entry, code_bytes, rip);
        }
        Ok(Compiled { entry, code_bytes, native, ir_insts, sites, unlinked })
    }
}

/// The instructions in `func`'s layout.
fn ir_size(func: &cranelift_codegen::ir::Function) -> u32 {
    func.layout.blocks().map(|b| func.layout.block_insts(b).count() as u32).sum()
}

/// Where the block just compiled holds each link field: the offset of the one absolute
/// relocation to its symbol. A field Cranelift copied to two places would need both
/// patched, which `LinkCell` does not do: such a block is refused (never seen).
fn link_offsets(ctx: &Context, links: &Links) -> Result<[[Option<u32>; LINK_FIELDS]; CHAIN_CELLS], String> {
    let mut offsets = [[None; LINK_FIELDS]; CHAIN_CELLS];
    let Some(code) = ctx.compiled_code() else { return Ok(offsets) };
    let names = ctx.func.params.user_named_funcs();
    for r in code.buffer.relocs() {
        let FinalizedRelocTarget::ExternalName(ExternalName::User(name)) = &r.target else { continue };
        let name = &names[*name];
        // Data (namespace 1): a field's immediate; a function (0): a landing, whose jump is
        // the target's.
        let found = match name.namespace {
            0 => (0..CHAIN_CELLS).find(|&c| links.landings[c].as_u32() == name.index).map(|c| (c, LINK_TARGET)),
            1 => link_fields().find(|&(c, f)| links.data[c][f].as_u32() == name.index),
            _ => None,
        };
        let Some((cell, field)) = found else { continue };
        let (kind, addend) = if field == LINK_TARGET { (Reloc::X86CallPCRel4, -4) } else { (Reloc::Abs8, 0) };
        if r.kind != kind || r.addend != addend || offsets[cell][field].replace(r.offset).is_some() {
            return Err(format!("link field {cell}.{field} is not one 64-bit immediate"));
        }
    }
    Ok(offsets)
}
