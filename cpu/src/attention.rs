//! What other threads tell one vCPU: stop, an interrupt waits, code changed. The flags share
//! one 8-byte word so that compiled code looks at all of them with a single load at each
//! block boundary, and goes on when it reads zero (see `tier`).

use ferrite_memory::CodeWatcher;
use std::sync::atomic::{AtomicBool, Ordering};

/// A vCPU's flags, set from any thread. Each is its own byte: setters store it alone.
#[repr(C, align(8))]
#[derive(Debug, Default)]
pub struct Attention {
    /// The exit request: `run` and `step` return `RunExit::Kicked` at the next block
    /// boundary. Set by anyone (a device, another vCPU, the machine); cleared by its owner,
    /// never by the CPU.
    pub kick: AtomicBool,
    /// The INTR line, for a machine whose interrupt controllers drive it here (see
    /// `CpuBus::intr_in_attention`): an external interrupt waits. It counts only with
    /// RFLAGS.IF set, so compiled code that finds it alone checks IF before stopping.
    pub intr: AtomicBool,
    /// The code tracker logged an event this vCPU has not replayed yet (see `coherence`).
    pub(crate) code: AtomicBool,
    /// The rest of the word compiled code loads.
    _unused: [u8; 5],
}

impl Attention {
    /// The bits of the word (read as a little-endian `u64`) that hold `intr`.
    pub(crate) fn intr_bits() -> u64 {
        0xff << (8 * std::mem::offset_of!(Attention, intr))
    }

    /// Clears the code flag, and says whether it was set: the caller then replays events.
    pub(crate) fn take_code(&self) -> bool {
        self.code.load(Ordering::Relaxed) && self.code.swap(false, Ordering::AcqRel)
    }
}

impl CodeWatcher for Attention {
    fn code_changed(&self) {
        self.code.store(true, Ordering::Release);
    }
}

const _: () = assert!(std::mem::size_of::<Attention>() == 8, "compiled code loads the flags as one u64");
