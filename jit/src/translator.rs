//! The Cranelift module that holds compiled blocks, and the compile step.

use crate::arena::CodeArena;
use crate::chain::block_signature;
use crate::emit::emit_block;
use crate::perf_map::PerfMap;
use crate::{JitError, Layout};
use cranelift_codegen::ir::UserFuncName;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::Module;
use iced_x86::Instruction;

/// A decoded block and the CPU mode its code is compiled for.
pub struct BlockSpec<'a> {
    pub insns: &'a [Instruction],
    /// 16, 32 or 64: the code size the block was decoded with.
    pub bitness: u32,
    /// Compiled for CPL 3 (user TLB context) or CPL 0-2.
    pub user: bool,
    /// The CPU's identity for the block, which the frame names while it runs (for the
    /// interpreter helper and for linking its exits).
    pub block: usize,
    /// Addresses of the block's [`ChainCell`](crate::ChainCell)s, one per exit
    /// (`EXIT_TAKEN`, `EXIT_NEXT`); `None` builds a block that always returns.
    pub chain: Option<[usize; crate::CHAIN_CELLS]>,
    /// Bit `i`: instruction `i` is not what the guest's CPU model runs there (it raises #UD,
    /// or runs as another instruction), so the interpreter runs it, and afterwards nothing
    /// of the state is assumed known. Blocks hold at most 64 instructions.
    pub opaque: u64,
}

/// A compiled block.
#[derive(Clone, Copy, Debug)]
pub struct Compiled {
    /// Entry point: `fn(cpu: *mut u8, frame: *mut u8) -> u64` in the `tail` convention
    /// (called through [`Entry`](crate::Entry)).
    pub entry: usize,
    /// Host code bytes.
    pub code_bytes: usize,
    /// Instructions emitted natively (the rest call the interpreter).
    pub native: u32,
}

pub struct Translator {
    layout: Layout,
    code_bytes_max: usize,
    module: Option<JITModule>,
    ctx: Context,
    fctx: FunctionBuilderContext,
    code_bytes: usize,
    perf: Option<PerfMap>,
}

/// Room for the code of one block past a module's budget (the CPU flushes the cache only once
/// a block has taken it over its cap).
const ARENA_SLACK: usize = 64 << 20;

/// A module whose code goes to a dense arena of `code_bytes` plus slack (see `arena`).
pub(crate) fn new_module(code_bytes: usize) -> Result<JITModule, JitError> {
    let mut flags = settings::builder();
    // Latency over peak code quality: blocks are small and compiled while the guest runs.
    let set = |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| JitError::Isa(e.to_string()));
    set(&mut flags, "opt_level", "speed")?;
    set(&mut flags, "enable_verifier", if cfg!(debug_assertions) { "true" } else { "false" })?;
    set(&mut flags, "is_pic", "false")?;
    // Cranelift's tail calls (block chaining) rely on frame pointers.
    set(&mut flags, "preserve_frame_pointers", "true")?;
    let isa = cranelift_native::builder()
        .map_err(|e| JitError::Isa(e.to_string()))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| JitError::Isa(e.to_string()))?;
    let arena = CodeArena::new(code_bytes.saturating_add(ARENA_SLACK)).map_err(|e| JitError::Isa(format!("no memory for code: {e}")))?;
    let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    builder.memory_provider(Box::new(arena));
    Ok(JITModule::new(builder))
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
        let module = new_module(code_bytes)?;
        let ctx = module.make_context();
        let perf = if perf_map { PerfMap::open().ok() } else { None };
        Ok(Translator { layout, code_bytes_max: code_bytes, module: Some(module), ctx, fctx: FunctionBuilderContext::new(), code_bytes: 0, perf })
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
        self.module = Some(new_module(self.code_bytes_max)?);
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
        let isa = module.isa();
        let native = emit_block(&mut self.ctx.func, &mut self.fctx, &self.layout, spec, isa.default_call_conv(), isa.frontend_config());
        let dump = dump_wanted(rip);
        self.ctx.set_disasm(dump);
        let id = module.declare_anonymous_function(&self.ctx.func.signature).map_err(|e| err(&e))?;
        module.define_function(id, &mut self.ctx).map_err(|e| err(&e))?;
        let code_bytes = self.ctx.compiled_code().map_or(0, |c| c.code_buffer().len());
        if dump {
            let text = self.ctx.compiled_code().and_then(|c| c.vcode.clone()).unwrap_or_default();
            let guest: String = spec.insns.iter().map(|i| format!("  {:#x} {i}\n", i.ip())).collect();
            eprintln!("ferrite: jit: block {rip:#x}, {code_bytes} bytes\n{guest}{text}");
        }
        module.clear_context(&mut self.ctx);
        module.finalize_definitions().map_err(|e| err(&e))?;
        let entry = module.get_finalized_function(id) as usize;
        self.code_bytes += code_bytes;
        if let Some(p) = &mut self.perf {
            p.record(entry, code_bytes, rip);
        }
        Ok(Compiled { entry, code_bytes, native })
    }
}
