//! The host's MXCSR around compiled code, which runs SSE arithmetic on the host's own SSE
//! unit: the same instructions as the guest's, so the same results and exception flags,
//! provided the host runs them under the guest's controls. Compiled code checks that the
//! guest's controls are `NATIVE_MXCSR`'s (the host's, and Rust's, defaults) before such an
//! instruction and leaves it to the interpreter otherwise. The flags the host raises are the
//! guest's: cleared when compiled code starts, and folded into the guest's MXCSR whenever
//! Rust code may look at it (an interpreter call from compiled code, the end of compiled
//! code). Elsewhere these are no-ops: only on an x86-64 host does compiled code run SSE.

use ferrite_jit::{MXCSR_FLAGS as FLAGS, NATIVE_MXCSR as NATIVE_CONTROLS};

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn read() -> u32 {
    let mut v: u32 = 0;
    // SAFETY: STMXCSR writes the 4-byte MXCSR to `v`, a live local; SSE is part of x86-64.
    unsafe { core::arch::asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack, preserves_flags)) };
    v
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn write(v: u32) {
    // SAFETY: LDMXCSR reads 4 bytes from `v`, a live local; callers pass only
    // NATIVE_CONTROLS, which sets no reserved bit (that would raise #GP).
    unsafe { core::arch::asm!("ldmxcsr [{}]", in(reg) &v, options(nostack, readonly, preserves_flags)) };
}

/// Before compiled code runs: no flags pending (what Rust code raised is not the guest's),
/// and the native controls in place.
#[inline]
pub(crate) fn enter() {
    #[cfg(target_arch = "x86_64")]
    if read() != NATIVE_CONTROLS {
        write(NATIVE_CONTROLS);
    }
}

/// After compiled code, or before Rust code that may read the guest's MXCSR: folds the flags
/// the host raised into `mxcsr` and clears them.
#[inline]
pub(crate) fn leave(mxcsr: &mut u32) {
    #[cfg(target_arch = "x86_64")]
    {
        let v = read();
        if v != NATIVE_CONTROLS {
            *mxcsr |= v & FLAGS;
            write(NATIVE_CONTROLS);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = mxcsr;
}
