//! [`CpuState`] in KVM's register structures and back (feature `kvm`): the KVM accelerator
//! loads a vCPU from it and reads it back whenever the machine looks, and the differential
//! tests load KVM's emulator the same way, so there is one translation.

use crate::interp::x87::xsave::{fxsave_image, load_fxsave_image};
use crate::msr::index;
use crate::state::{CpuState, Msrs, Seg, Segment, TableReg};
use crate::PendingEvents;
use kvm_bindings::{
    kvm_debugregs, kvm_dtable, kvm_regs, kvm_segment, kvm_sregs, kvm_vcpu_events, kvm_xsave, KVM_VCPUEVENT_VALID_NMI_PENDING,
    KVM_VCPUEVENT_VALID_SHADOW,
};

pub fn to_kvm_segment(s: &Segment) -> kvm_segment {
    let a = s.attrs;
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: (a & 0xf) as u8,
        present: (a >> 7 & 1) as u8,
        dpl: (a >> 5 & 3) as u8,
        db: (a >> 14 & 1) as u8,
        s: (a >> 4 & 1) as u8,
        l: (a >> 13 & 1) as u8,
        g: (a >> 15 & 1) as u8,
        avl: (a >> 12 & 1) as u8,
        unusable: (a >> 16 & 1) as u8,
        padding: 0,
    }
}

pub fn from_kvm_segment(k: &kvm_segment) -> Segment {
    let attrs = k.type_ as u32
        | (k.s as u32) << 4
        | (k.dpl as u32) << 5
        | (k.present as u32) << 7
        | (k.avl as u32) << 12
        | (k.l as u32) << 13
        | (k.db as u32) << 14
        | (k.g as u32) << 15
        | (k.unusable as u32) << 16;
    Segment { selector: k.selector, base: k.base, limit: k.limit, attrs }
}

/// The segment registers in `kvm_sregs` field order with their `Seg` index.
const SEGMENTS: [Seg; 6] = [Seg::Cs, Seg::Ds, Seg::Es, Seg::Fs, Seg::Gs, Seg::Ss];

fn sregs_segment(s: &mut kvm_sregs, seg: Seg) -> &mut kvm_segment {
    match seg {
        Seg::Cs => &mut s.cs,
        Seg::Ds => &mut s.ds,
        Seg::Es => &mut s.es,
        Seg::Fs => &mut s.fs,
        Seg::Gs => &mut s.gs,
        Seg::Ss => &mut s.ss,
    }
}

/// Fills the system registers of `s` from `st` (the interrupt bitmap is cleared: pending
/// interrupts travel separately).
pub fn to_kvm_sregs(st: &CpuState, s: &mut kvm_sregs) {
    for seg in SEGMENTS {
        *sregs_segment(s, seg) = to_kvm_segment(st.seg(seg));
    }
    s.tr = to_kvm_segment(&st.tr);
    s.ldt = to_kvm_segment(&st.ldtr);
    s.gdt = kvm_dtable { base: st.gdtr.base, limit: st.gdtr.limit, padding: [0; 3] };
    s.idt = kvm_dtable { base: st.idtr.base, limit: st.idtr.limit, padding: [0; 3] };
    s.cr0 = st.cr0;
    s.cr2 = st.cr2;
    s.cr3 = st.cr3;
    s.cr4 = st.cr4;
    s.cr8 = st.cr8;
    s.efer = st.efer;
    s.apic_base = st.msr.apic_base;
    s.interrupt_bitmap = [0; 4];
}

pub fn from_kvm_sregs(s: &kvm_sregs, st: &mut CpuState) {
    let mut s = *s;
    for seg in SEGMENTS {
        st.seg[seg as usize] = from_kvm_segment(sregs_segment(&mut s, seg));
    }
    st.tr = from_kvm_segment(&s.tr);
    st.ldtr = from_kvm_segment(&s.ldt);
    st.gdtr = TableReg { base: s.gdt.base, limit: s.gdt.limit };
    st.idtr = TableReg { base: s.idt.base, limit: s.idt.limit };
    st.cr0 = s.cr0;
    st.cr2 = s.cr2;
    st.cr3 = s.cr3;
    st.cr4 = s.cr4;
    st.cr8 = s.cr8;
    st.efer = s.efer;
    st.msr.apic_base = s.apic_base;
}

/// General registers, RIP and RFLAGS (`rflags` must be architectural: see `Cpu::rflags`).
pub fn to_kvm_regs(st: &CpuState, rflags: u64) -> kvm_regs {
    let g = &st.gpr;
    kvm_regs {
        rax: g[0],
        rcx: g[1],
        rdx: g[2],
        rbx: g[3],
        rsp: g[4],
        rbp: g[5],
        rsi: g[6],
        rdi: g[7],
        r8: g[8],
        r9: g[9],
        r10: g[10],
        r11: g[11],
        r12: g[12],
        r13: g[13],
        r14: g[14],
        r15: g[15],
        rip: st.rip,
        rflags,
    }
}

pub fn from_kvm_regs(r: &kvm_regs, st: &mut CpuState) {
    st.gpr = [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15,
    ];
    st.rip = r.rip;
    st.rflags = r.rflags;
}

/// XSTATE_BV bits of the components carried here: x87, SSE, and AVX (the upper halves of
/// the YMM registers, at offset 576 of the standard format).
const XSTATE_X87_SSE: u64 = 0b11;
const XSTATE_AVX: u64 = crate::xstate::AVX;
const YMM_HI_WORD: usize = 576 / 4;
/// PKRU (component 9) at its standard-format offset.
const XSTATE_PKRU: u64 = crate::xstate::PKRU;
const PKRU_WORD: usize = 2688 / 4;

/// The x87/SSE/AVX/PKRU state as an XSAVE image (legacy area, header, YMM upper halves,
/// PKRU; KVM keeps the rest). AVX and PKRU are included while XCR0 enables them.
pub fn to_kvm_xsave(st: &CpuState, x: &mut kvm_xsave) {
    let image = fxsave_image(&st.fpu);
    for (i, word) in image.chunks_exact(4).enumerate() {
        x.region[i] = u32::from_le_bytes(word.try_into().expect("4-byte chunk"));
    }
    // XSTATE_BV (bytes 512-519): which components the image holds.
    let mut bv = (x.region[128] as u64 | (x.region[129] as u64) << 32) | XSTATE_X87_SSE;
    if st.xcr0 & XSTATE_AVX != 0 {
        for (i, hi) in st.fpu.ymm_hi.iter().enumerate() {
            for (j, word) in hi.to_le_bytes().chunks_exact(4).enumerate() {
                x.region[YMM_HI_WORD + 4 * i + j] = u32::from_le_bytes(word.try_into().expect("4-byte chunk"));
            }
        }
        bv |= XSTATE_AVX;
    }
    if st.xcr0 & XSTATE_PKRU != 0 {
        x.region[PKRU_WORD] = st.pkru;
        x.region[PKRU_WORD + 1] = 0;
        bv |= XSTATE_PKRU;
    }
    x.region[128] = bv as u32;
    x.region[129] = (bv >> 32) as u32;
}

pub fn from_kvm_xsave(x: &kvm_xsave, st: &mut CpuState) {
    let mut image = [0u8; 512];
    for (i, word) in image.chunks_exact_mut(4).enumerate() {
        word.copy_from_slice(&x.region[i].to_le_bytes());
    }
    load_fxsave_image(&mut st.fpu, &image);
    // A component missing from XSTATE_BV is in its initial state (zeros).
    let avx = x.region[128] as u64 & XSTATE_AVX != 0;
    for (i, hi) in st.fpu.ymm_hi.iter_mut().enumerate() {
        let mut b = [0u8; 16];
        if avx {
            for j in 0..4 {
                b[4 * j..4 * j + 4].copy_from_slice(&x.region[YMM_HI_WORD + 4 * i + j].to_le_bytes());
            }
        }
        *hi = u128::from_le_bytes(b);
    }
    st.pkru = if x.region[128] as u64 & XSTATE_PKRU != 0 { x.region[PKRU_WORD] } else { 0 };
}

pub fn to_kvm_debugregs(st: &CpuState) -> kvm_debugregs {
    kvm_debugregs { db: [st.dr[0], st.dr[1], st.dr[2], st.dr[3]], dr6: st.dr[6], dr7: st.dr[7], flags: 0, reserved: [0; 9] }
}

pub fn from_kvm_debugregs(d: &kvm_debugregs, st: &mut CpuState) {
    st.dr[..4].copy_from_slice(&d.db);
    st.dr[6] = d.dr6;
    st.dr[7] = d.dr7;
}

/// KVM's interrupt shadow after STI (`kvm_vcpu_events.interrupt.shadow`; ferrite's CPU keeps
/// one kind of shadow for STI and MOV SS, which block interrupts alike).
const SHADOW_STI: u8 = 2;

/// The events between instructions in KVM's terms, as ferrite's CPU keeps them. An
/// acknowledged external interrupt KVM has not delivered yet stays pending; a software
/// interrupt or exception KVM was delivering is not carried: RIP still points at the
/// instruction that raised it (a fault, INT n, INT3), which raises it again. A #DB trap caught
/// in delivery would be lost the same way (only under a guest debugger).
pub fn from_kvm_events(e: &kvm_vcpu_events) -> PendingEvents {
    let nmi_injected = e.nmi.injected != 0;
    PendingEvents {
        interrupt_shadow: e.interrupt.shadow != 0,
        nmi_pending: e.nmi.pending != 0 || nmi_injected,
        // An NMI caught in delivery is delivered again, which blocks NMIs anew.
        nmi_blocked: e.nmi.masked != 0 && !nmi_injected,
        injected_interrupt: (e.interrupt.injected != 0 && e.interrupt.soft == 0).then_some(e.interrupt.nr),
    }
}

/// Writes `p` into `e` (as read from KVM, so what ferrite does not model stays as KVM had it,
/// but a hardware interrupt KVM held that ferrite's CPU has since delivered goes).
pub fn to_kvm_events(p: &PendingEvents, e: &mut kvm_vcpu_events) {
    e.flags = KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_NMI_PENDING;
    e.interrupt.shadow = if p.interrupt_shadow { SHADOW_STI } else { 0 };
    e.nmi.injected = 0;
    e.nmi.pending = u8::from(p.nmi_pending);
    e.nmi.masked = u8::from(p.nmi_blocked);
    match p.injected_interrupt {
        Some(v) => {
            e.interrupt.injected = 1;
            e.interrupt.nr = v;
            e.interrupt.soft = 0;
        }
        None if e.interrupt.soft == 0 => e.interrupt.injected = 0,
        None => {}
    }
}

/// The MSRs a vCPU's state carries through KVM (EFER and the APIC base travel in the sregs;
/// the TSC is the accelerator's own clock).
pub const MSRS: &[u32] = &[
    index::STAR,
    index::LSTAR,
    index::CSTAR,
    index::SFMASK,
    index::KERNEL_GS_BASE,
    index::SYSENTER_CS,
    index::SYSENTER_ESP,
    index::SYSENTER_EIP,
    index::TSC_AUX,
    index::PAT,
    index::MISC_ENABLE,
    index::MTRR_DEF_TYPE,
    index::TSC_ADJUST,
    index::XSS,
];

fn msr_field(m: &mut Msrs, msr: u32) -> Option<&mut u64> {
    Some(match msr {
        index::STAR => &mut m.star,
        index::LSTAR => &mut m.lstar,
        index::CSTAR => &mut m.cstar,
        index::SFMASK => &mut m.sfmask,
        index::KERNEL_GS_BASE => &mut m.kernel_gs_base,
        index::SYSENTER_CS => &mut m.sysenter_cs,
        index::SYSENTER_ESP => &mut m.sysenter_esp,
        index::SYSENTER_EIP => &mut m.sysenter_eip,
        index::TSC_AUX => &mut m.tsc_aux,
        index::PAT => &mut m.pat,
        index::MISC_ENABLE => &mut m.misc_enable,
        index::MTRR_DEF_TYPE => &mut m.mtrr_def_type,
        index::TSC_ADJUST => &mut m.tsc_adjust,
        index::XSS => &mut m.xss,
        _ => return None,
    })
}

/// The value of one of [`MSRS`] in `st`.
pub fn msr_value(st: &CpuState, msr: u32) -> Option<u64> {
    let mut m = st.msr;
    msr_field(&mut m, msr).copied()
}

pub fn set_msr_value(st: &mut CpuState, msr: u32, value: u64) {
    if let Some(slot) = msr_field(&mut st.msr, msr) {
        *slot = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PKRU travels at offset 2688 of the standard-format image (CPUID.(EAX=0DH,ECX=9):EBX)
    /// with XSTATE_BV[9], while XCR0 enables it.
    #[test]
    fn pkru_in_the_xsave_image() {
        let mut st = CpuState::reset();
        st.xcr0 = 0x207;
        st.pkru = 0x5555_5554;
        st.fpu.ymm_hi[15] = 7;
        let mut x = kvm_xsave::default();
        to_kvm_xsave(&st, &mut x);
        assert_eq!(x.region[2688 / 4], 0x5555_5554);
        assert_eq!(x.region[128], 0x207);
        let mut back = CpuState::reset();
        from_kvm_xsave(&x, &mut back);
        assert_eq!((back.pkru, back.fpu.ymm_hi[15]), (0x5555_5554, 7));
        // Without XSTATE_BV[9], PKRU is in its initial state (0).
        x.region[128] &= !(1 << 9);
        from_kvm_xsave(&x, &mut back);
        assert_eq!(back.pkru, 0);
    }

    #[test]
    fn new_msrs_are_carried() {
        let mut st = CpuState::reset();
        set_msr_value(&mut st, index::TSC_ADJUST, 42);
        assert_eq!(msr_value(&st, index::TSC_ADJUST), Some(42));
        assert_eq!(msr_value(&st, index::XSS), Some(0));
        assert!(MSRS.contains(&index::TSC_ADJUST) && MSRS.contains(&index::XSS));
    }
}
