//! The XSAVE-managed state components this CPU implements and the layout of the XSAVE area
//! (SDM Vol. 1, 13.2 and 13.4): what CPUID leaf 0DH reports and where XSAVE/XSAVEC/XSAVES and
//! the two forms of XRSTOR put each component.

use crate::cpuid::CpuModel;

pub const X87: u64 = 1 << 0;
pub const SSE: u64 = 1 << 1;
pub const AVX: u64 = 1 << 2;
pub const PKRU: u64 = 1 << 9;
/// XCOMP_BV bit 63: the area uses the compacted format.
pub const COMPACTED: u64 = 1 << 63;

/// The legacy region (FXSAVE image) and the XSAVE header.
pub const LEGACY_LEN: usize = 512;
pub const HEADER_LEN: usize = 64;
/// Where the extended region starts in both formats.
pub const EXTENDED: usize = LEGACY_LEN + HEADER_LEN;

/// An extended-region component (bit 2 and up).
#[derive(Clone, Copy, Debug)]
pub struct Component {
    pub bit: u32,
    pub size: usize,
    /// Offset in the standard format (CPUID.(EAX=0DH,ECX=i):EBX).
    pub offset: usize,
    /// Starts on a 64-byte boundary in the compacted format (CPUID.(EAX=0DH,ECX=i):ECX[1]).
    pub align64: bool,
}

/// AVX: YMM0_H-YMM15_H; PKRU: the 4-byte register in an 8-byte component.
pub const COMPONENTS: [Component; 2] = [
    Component { bit: 2, size: 256, offset: 576, align64: false },
    Component { bit: 9, size: 8, offset: 2688, align64: false },
];

/// The user components (XCR0 bits) the model supports.
pub fn supported_xcr0(model: &CpuModel) -> u64 {
    let mut m = X87 | SSE;
    if model.has("avx") {
        m |= AVX;
    }
    if model.has("pku") {
        m |= PKRU;
    }
    m
}

/// The supervisor components (IA32_XSS bits) the model supports: none is implemented.
pub fn supported_xss(_: &CpuModel) -> u64 {
    0
}

pub fn component(bit: u32) -> Option<&'static Component> {
    COMPONENTS.iter().find(|c| c.bit == bit)
}

/// Size of a standard-format area holding the components of `mask`.
pub fn standard_size(mask: u64) -> usize {
    COMPONENTS.iter().filter(|c| mask & (1 << c.bit) != 0).map(|c| c.offset + c.size).max().unwrap_or(EXTENDED)
}

/// Offsets of the extended components of `xcomp_bv` in the compacted format, in bit order
/// (SDM Vol. 1, 13.4.3), and the total size.
pub fn compacted_layout(xcomp_bv: u64) -> (Vec<(Component, usize)>, usize) {
    let mut at = EXTENDED;
    let mut out = Vec::new();
    for c in COMPONENTS.iter().filter(|c| xcomp_bv & (1 << c.bit) != 0) {
        if c.align64 {
            at = at.next_multiple_of(64);
        }
        out.push((*c, at));
        at += c.size;
    }
    (out, at)
}

/// Where each extended component of `mask` lives: the standard or the compacted layout.
pub fn layout(mask: u64, compacted: bool) -> (Vec<(Component, usize)>, usize) {
    if compacted {
        compacted_layout(mask)
    } else {
        let v: Vec<_> = COMPONENTS.iter().filter(|c| mask & (1 << c.bit) != 0).map(|c| (*c, c.offset)).collect();
        (v, standard_size(mask))
    }
}

/// CPUID leaf 0DH, sub-leaf `sub`, for a model with XSAVE, given XCR0 and IA32_XSS.
pub fn cpuid_leaf(model: &CpuModel, sub: u32, xcr0: u64, xss: u64, sub1_eax: u32) -> [u32; 4] {
    let user = supported_xcr0(model);
    let sup = supported_xss(model);
    match sub {
        0 => [user as u32, standard_size(xcr0) as u32, standard_size(user) as u32, (user >> 32) as u32],
        1 => {
            // EBX: the compacted area for XCR0 | IA32_XSS (XSAVES), when XSAVES exists.
            let size = if model.has("xsaves") { compacted_layout(xcr0 | xss).1 as u32 } else { 0 };
            [sub1_eax, size, sup as u32, (sup >> 32) as u32]
        }
        i if (user | sup) & (1u64 << i.min(63)) != 0 && i >= 2 => match component(i) {
            Some(c) => {
                let supervisor = sup & (1 << i) != 0;
                let offset = if supervisor { 0 } else { c.offset as u32 };
                [c.size as u32, offset, supervisor as u32 | (c.align64 as u32) << 1, 0]
            }
            None => [0; 4],
        },
        _ => [0; 4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(standard_size(X87 | SSE), 576);
        assert_eq!(standard_size(X87 | SSE | AVX), 832);
        assert_eq!(standard_size(X87 | SSE | PKRU), 2696);
        assert_eq!(compacted_layout(X87 | SSE | AVX | PKRU).1, 840);
        let (l, size) = compacted_layout(X87 | PKRU);
        assert_eq!((l[0].1, size), (576, 584));
    }
}
