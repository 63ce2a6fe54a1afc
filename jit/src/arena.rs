//! Where compiled code lives: one mapping per module, filled densely.
//!
//! cranelift-jit's own providers start a fresh page for every `finalize_definitions`, so a
//! block compiled alone (as every block is, when it turns hot) took a page or more: ten
//! thousand blocks of a Linux boot spread over 40 MiB of pages, and code that walks through many
//! of them (the kernel's fork and exec paths) ran mostly on instruction-TLB misses. Here
//! blocks follow each other in one read-write-execute mapping (as QEMU's code buffer is),
//! reserved up front and committed by the kernel as code is written. x86 keeps instruction
//! fetch coherent with stores, and a block's entry reaches the vCPU only through the compile
//! thread's channel after its bytes are written, so finalizing has nothing to do.

use cranelift_jit::{BranchProtection, JITMemoryKind, JITMemoryProvider};
use cranelift_module::ModuleResult;
use std::io;

/// A module dropped without `free_memory` keeps its code mapped, as cranelift-jit's own
/// providers do, since compiled code may still run.
pub(crate) struct CodeArena {
    base: *mut u8,
    size: usize,
    used: usize,
}

// SAFETY: the arena is a plain memory range owned by one module, used by one thread at a time
// (the module's owner); the pointer is not shared by the arena itself.
unsafe impl Send for CodeArena {}

impl CodeArena {
    /// Reserves `size` bytes of address space (nothing is committed until written).
    pub fn new(size: usize) -> io::Result<Self> {
        // SAFETY: an anonymous private mapping at an address the kernel picks; no existing
        // memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Transparent huge pages where the host allows them: a boot's blocks span megabytes,
        // and chains through the kernel's code touch many of them (instruction TLB misses). A
        // refusal only costs that speed.
        // SAFETY: advice on the mapping just made; it changes no contents.
        unsafe { libc::madvise(base, size, libc::MADV_HUGEPAGE) };
        Ok(CodeArena { base: base as *mut u8, size, used: 0 })
    }
}

impl JITMemoryProvider for CodeArena {
    fn allocate(&mut self, size: usize, align: u64, _kind: JITMemoryKind) -> io::Result<*mut u8> {
        let align = (align as usize).max(1);
        let start = self.used.div_ceil(align) * align;
        if self.base.is_null() || start + size > self.size {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "the code arena is full"));
        }
        self.used = start + size;
        // SAFETY: `start + size` is within the mapping.
        Ok(unsafe { self.base.add(start) })
    }

    unsafe fn free_memory(&mut self) {
        if !self.base.is_null() {
            // SAFETY: the mapping made in `new`; the caller guarantees no code in it runs.
            unsafe { libc::munmap(self.base as *mut libc::c_void, self.size) };
            self.base = std::ptr::null_mut();
        }
    }

    fn finalize(&mut self, _branch_protection: BranchProtection) -> ModuleResult<()> {
        Ok(())
    }
}
