//! Host atomics at arbitrary host addresses, for guest locked read-modify-writes and for the
//! page walker's accessed/dirty updates.
//!
//! Guest RAM is shared by every vCPU thread through host pointers, and guest operands need
//! not be aligned: a guest `lock add [rax+1], ecx` is legal and atomic on x86. Rust's
//! `AtomicU*::from_ptr` requires natural alignment, so these primitives use the host's own
//! locked instructions (`lock cmpxchg`, `lock xadd`, `xchg`), which accept any address on
//! x86-64. An operand that straddles a host cache line is a "split lock": still atomic, but
//! slow on the host (the processor locks the bus), exactly as it is for the guest on
//! hardware.
//!
//! Every function takes a raw host pointer; callers guarantee it points at `size` bytes of
//! mapped, writable host memory (guest RAM reached through the TLB or `CpuBus::phys_page`).
//! Other threads may access those bytes at the same time, with plain or locked accesses:
//! that is the point.

#[cfg(not(target_arch = "x86_64"))]
compile_error!("ferrite's guest atomics use x86-64 host instructions (lock cmpxchg, cmpxchg16b)");

use core::arch::asm;

/// Reads `size` (1, 2, 4 or 8) bytes at `p` with one host load, outside the compiler's view
/// of memory (the bytes may change under it at any time). The value may be stale by the time
/// it is used: it is a first guess for a compare-exchange loop, never a result.
///
/// # Safety
/// `p..p+size` must be readable host memory.
#[inline(always)]
pub(crate) unsafe fn load(p: *const u8, size: u8) -> u64 {
    let v: u64;
    // SAFETY: the caller guarantees the bytes are readable; x86-64 loads accept any alignment.
    // The zero-extending forms write the whole 64-bit register.
    unsafe {
        match size {
            1 => asm!("movzx {v:e}, byte ptr [{p}]", p = in(reg) p, v = out(reg) v,
                      options(nostack, readonly, preserves_flags)),
            2 => asm!("movzx {v:e}, word ptr [{p}]", p = in(reg) p, v = out(reg) v,
                      options(nostack, readonly, preserves_flags)),
            4 => asm!("mov {v:e}, dword ptr [{p}]", p = in(reg) p, v = out(reg) v,
                      options(nostack, readonly, preserves_flags)),
            _ => asm!("mov {v}, qword ptr [{p}]", p = in(reg) p, v = out(reg) v,
                      options(nostack, readonly, preserves_flags)),
        }
    }
    v
}

/// Atomically replaces the `size` (1, 2, 4 or 8) bytes at `p` with `new` if they equal
/// `expected` (both taken modulo the operand size). `Ok(expected)` when the store happened,
/// `Err(current)` with the value found otherwise (nothing written).
///
/// # Safety
/// `p..p+size` must be writable host memory.
#[inline(always)]
pub(crate) unsafe fn compare_exchange(p: *mut u8, size: u8, expected: u64, new: u64) -> Result<u64, u64> {
    let mask = crate::flags::size_mask(size);
    let (expected, new) = (expected & mask, new & mask);
    // The accumulator holds `expected` in and, on failure, the memory value out. The byte and
    // word forms write only AL/AX, over upper bits that are zero already (`expected` is
    // masked); the dword form zero-extends into RAX.
    let mut acc = expected;
    // SAFETY: the caller guarantees the bytes are writable host memory; `lock cmpxchg` takes
    // any alignment on x86-64.
    unsafe {
        match size {
            1 => asm!("lock cmpxchg byte ptr [{p}], {new}", p = in(reg) p, new = in(reg_byte) new as u8,
                      inout("rax") acc, options(nostack)),
            2 => asm!("lock cmpxchg word ptr [{p}], {new:x}", p = in(reg) p, new = in(reg) new,
                      inout("rax") acc, options(nostack)),
            4 => asm!("lock cmpxchg dword ptr [{p}], {new:e}", p = in(reg) p, new = in(reg) new,
                      inout("rax") acc, options(nostack)),
            _ => asm!("lock cmpxchg qword ptr [{p}], {new}", p = in(reg) p, new = in(reg) new,
                      inout("rax") acc, options(nostack)),
        }
    }
    let seen = acc;
    if seen == expected {
        Ok(seen)
    } else {
        Err(seen)
    }
}

/// Whether the host has CMPXCHG16B (every x86-64 processor since the first generations;
/// detected once and cached by std).
#[inline]
pub(crate) fn has_cmpxchg16b() -> bool {
    std::is_x86_feature_detected!("cmpxchg16b")
}

/// Atomically replaces the 16 bytes at `p` with `new` if they equal `expected`, with the
/// same results as `compare_exchange`.
///
/// # Safety
/// `p..p+16` must be writable host memory, `p` must be 16-byte aligned (the instruction
/// raises #GP otherwise), and the host must have CMPXCHG16B (`has_cmpxchg16b`).
#[inline]
pub(crate) unsafe fn compare_exchange16(p: *mut u8, expected: u128, new: u128) -> Result<u128, u128> {
    let (mut lo, mut hi) = (expected as u64, (expected >> 64) as u64);
    // SAFETY: guaranteed by the caller (writable, aligned, instruction present). RBX is
    // reserved by the compiler, so the low half of `new` travels in another register and is
    // swapped into RBX only around the instruction; RBX is restored before the block ends.
    unsafe {
        asm!(
            "xchg {new_lo}, rbx",
            "lock cmpxchg16b xmmword ptr [{p}]",
            "mov rbx, {new_lo}",
            p = in(reg) p,
            new_lo = inout(reg) new as u64 => _,
            in("rcx") (new >> 64) as u64,
            inout("rax") lo,
            inout("rdx") hi,
            options(nostack),
        );
    }
    let seen = (hi as u128) << 64 | lo as u128;
    if seen == expected {
        Ok(seen)
    } else {
        Err(seen)
    }
}

/// Atomically stores `new` into the `size` (1, 2, 4 or 8) bytes at `p` and returns the
/// previous value (XCHG with a memory operand is locked without a prefix).
///
/// # Safety
/// `p..p+size` must be writable host memory.
#[inline(always)]
pub(crate) unsafe fn swap(p: *mut u8, size: u8, new: u64) -> u64 {
    let mut v = new;
    // SAFETY: the caller guarantees the bytes are writable; `xchg` with memory is locked and
    // takes any alignment. The 8- and 16-bit forms leave the register's upper bits alone,
    // masked below.
    unsafe {
        match size {
            1 => asm!("xchg byte ptr [{p}], {v:l}", p = in(reg) p, v = inout(reg_abcd) v,
                      options(nostack, preserves_flags)),
            2 => asm!("xchg word ptr [{p}], {v:x}", p = in(reg) p, v = inout(reg) v,
                      options(nostack, preserves_flags)),
            4 => asm!("xchg dword ptr [{p}], {v:e}", p = in(reg) p, v = inout(reg) v,
                      options(nostack, preserves_flags)),
            _ => asm!("xchg qword ptr [{p}], {v}", p = in(reg) p, v = inout(reg) v,
                      options(nostack, preserves_flags)),
        }
    }
    v & crate::flags::size_mask(size)
}

/// Atomically adds `v` to the `size` (1, 2, 4 or 8) bytes at `p` (wrapping at the operand
/// size) and returns the previous value: one `lock xadd`, which never retries.
///
/// # Safety
/// `p..p+size` must be writable host memory.
#[inline(always)]
pub(crate) unsafe fn fetch_add(p: *mut u8, size: u8, v: u64) -> u64 {
    let mut r = v;
    // SAFETY: as in `swap`; `lock xadd` takes any alignment.
    unsafe {
        match size {
            1 => asm!("lock xadd byte ptr [{p}], {r:l}", p = in(reg) p, r = inout(reg_abcd) r,
                      options(nostack)),
            2 => asm!("lock xadd word ptr [{p}], {r:x}", p = in(reg) p, r = inout(reg) r,
                      options(nostack)),
            4 => asm!("lock xadd dword ptr [{p}], {r:e}", p = in(reg) p, r = inout(reg) r,
                      options(nostack)),
            _ => asm!("lock xadd qword ptr [{p}], {r}", p = in(reg) p, r = inout(reg) r,
                      options(nostack)),
        }
    }
    r & crate::flags::size_mask(size)
}

/// Atomically replaces the `size` (1, 2, 4 or 8) bytes at `p` with `f(old)` and returns
/// `old`, the value the update was computed from. A compare-exchange loop: `f` may run more
/// than once (when another thread changes the bytes in between) and must be a pure function
/// of its argument. Its result is taken modulo the operand size.
///
/// # Safety
/// `p..p+size` must be writable host memory.
#[inline(always)]
pub(crate) unsafe fn atomic_rmw(p: *mut u8, size: u8, mut f: impl FnMut(u64) -> u64) -> u64 {
    // SAFETY: the caller's guarantee covers both the first load and every attempt.
    let mut old = unsafe { load(p, size) };
    loop {
        // SAFETY: as above.
        match unsafe { compare_exchange(p, size, old, f(old)) } {
            Ok(v) => return v,
            Err(seen) => old = seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_exchange_all_sizes_unaligned() {
        let mut buf = [0u8; 32];
        let base = buf.as_mut_ptr();
        // SAFETY: offset 3 (+ 9 bytes below) lies inside the 32-byte buffer.
        let p = unsafe { base.add(3) };
        for size in [1u8, 2, 4, 8] {
            let m = crate::flags::size_mask(size);
            // SAFETY: 9 bytes from offset 3 lie inside the 32-byte buffer.
            unsafe {
                p.copy_from(0x1122_3344_5566_7788u64.to_le_bytes().as_ptr(), 8);
                assert_eq!(load(p, size), 0x1122_3344_5566_7788 & m);
                assert_eq!(compare_exchange(p, size, 5, 6), Err(0x1122_3344_5566_7788 & m));
                assert_eq!(compare_exchange(p, size, 0x1122_3344_5566_7788, !0), Ok(0x1122_3344_5566_7788 & m));
                assert_eq!(load(p, size), m);
                // The bytes after the operand are untouched.
                assert_eq!(
                    load(p.add(size as usize), 1),
                    if size == 8 { 0 } else { (0x1122_3344_5566_7788u64 >> (8 * size)) & 0xff }
                );
                assert_eq!(swap(p, size, 0x0102_0304_0506_0708), m);
                assert_eq!(fetch_add(p, size, m), 0x0102_0304_0506_0708 & m);
                assert_eq!(load(p, size), 0x0102_0304_0506_0707 & m);
                assert_eq!(atomic_rmw(p, size, |v| v ^ 0xff), 0x0102_0304_0506_0707 & m);
                assert_eq!(load(p, size), 0x0102_0304_0506_07f8 & m);
            }
        }
    }

    #[test]
    fn compare_exchange_16_bytes() {
        #[repr(align(16))]
        struct A([u8; 16]);
        let mut a = A([0; 16]);
        assert!(has_cmpxchg16b());
        let p = a.0.as_mut_ptr();
        // SAFETY: a 16-byte aligned, 16-byte buffer.
        unsafe {
            assert_eq!(compare_exchange16(p, 1, 2), Err(0));
            assert_eq!(compare_exchange16(p, 0, u128::MAX - 1), Ok(0));
            assert_eq!(compare_exchange16(p, u128::MAX - 1, 1 << 100 | 7), Ok(u128::MAX - 1));
        }
        assert_eq!(u128::from_le_bytes(a.0), 1 << 100 | 7);
    }
}
