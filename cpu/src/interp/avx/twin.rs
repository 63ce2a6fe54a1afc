//! VEX forms of SSE operations run the SSE family's handlers: each VEX encoding is matched,
//! by iced's code name, to the legacy encoding of the same operation ("twin"), the lookup
//! picks the twin's handler, and that handler, given the VEX instruction, reads its sources
//! (VEX.vvvv and r/m), checks AVX availability and writes all 256 bits by the encoding (see
//! `sse::xmm_op`). 256-bit forms apply the 128-bit operation to each lane, which is the
//! definition of every AVX/AVX2 form admitted here.

use super::super::sse::{lookup_any, vvvv_operand};
use super::super::Handler;
use iced_x86::{Code, EncodingKind, Instruction, Mnemonic};
use std::collections::HashMap;
use std::sync::OnceLock;

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    let code = twin(insn)?;
    if !lane_wise(insn, code) {
        return None;
    }
    let mut legacy = *insn;
    legacy.set_code(code);
    lookup_any(&legacy)
}

/// 256-bit forms whose upper lane uses other immediate bits than the lower, or whose
/// destination is narrower than a source: not the 128-bit operation twice (`permute` and
/// `convert` implement them).
fn lane_wise(insn: &Instruction, twin: Code) -> bool {
    let name = format!("{:?}", insn.code());
    if !name.contains("ymm") {
        return true;
    }
    let mut t = Instruction::default();
    t.set_code(twin);
    let narrowing = operands(&name).first().is_some_and(|o| o.starts_with("xmm"));
    let to_gpr = matches!(t.mnemonic(), Mnemonic::Movmskps | Mnemonic::Movmskpd | Mnemonic::Pmovmskb | Mnemonic::Ptest);
    let per_lane_imm = matches!(t.mnemonic(), Mnemonic::Blendps | Mnemonic::Blendpd | Mnemonic::Shufpd | Mnemonic::Mpsadbw);
    (!narrowing || to_gpr) && !per_lane_imm
}

/// The operand part of a code name ("VEX_Vpaddb_ymm_ymm_ymmm256" → ["ymm", "ymm", "ymmm256"]).
fn operands(name: &str) -> Vec<&str> {
    name.split('_').skip(2).collect()
}

/// The legacy code with the VEX code's mnemonic (without the V) and operands (without the
/// VEX.vvvv register, YMM read as XMM).
fn twin(insn: &Instruction) -> Option<Code> {
    let name = format!("{:?}", insn.code());
    let rest = name.strip_prefix("VEX_V")?;
    let mut parts = rest.split('_');
    let mnemonic = parts.next()?.to_ascii_lowercase();
    let vvvv = vvvv_operand(insn);
    let ops: Vec<String> = parts
        .take(insn.op_count() as usize)
        .enumerate()
        .filter(|&(k, _)| Some(k) != vvvv)
        .map(|(_, o)| o.replace("ymmm256", "xmmm128").replace("ymm", "xmm").replace("m256", "m128"))
        .collect();
    let key = std::iter::once(mnemonic).chain(ops).collect::<Vec<_>>().join("_").to_ascii_lowercase();
    legacy_codes().get(&key).copied()
}

/// Every legacy code by its lower-case name, and by the names with each "xmmmNN" operand
/// (register or memory) split into its register ("xmm") and memory ("mNN") forms, as VEX
/// code names often list them separately. An exact name wins over a split one.
fn legacy_codes() -> &'static HashMap<String, Code> {
    static CODES: OnceLock<HashMap<String, Code>> = OnceLock::new();
    CODES.get_or_init(|| {
        let mut map = HashMap::new();
        let legacy: Vec<(Code, String)> = Code::values()
            .filter(|&c| {
                let mut i = Instruction::default();
                i.set_code(c);
                i.encoding() == EncodingKind::Legacy
            })
            .map(|c| (c, format!("{c:?}").to_ascii_lowercase()))
            .collect();
        for (code, name) in &legacy {
            map.insert(name.clone(), *code);
        }
        for (code, name) in &legacy {
            for variant in split_forms(name) {
                map.entry(variant).or_insert(*code);
            }
        }
        map
    })
}

fn split_forms(name: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for (k, part) in name.split('_').enumerate() {
        let choices: Vec<String> = match part.strip_prefix("xmmm") {
            Some(bits) if k > 0 => vec![part.to_string(), "xmm".into(), format!("m{bits}")],
            _ => vec![part.to_string()],
        };
        out = out
            .iter()
            .flat_map(|prefix| choices.iter().map(move |c| if prefix.is_empty() { c.clone() } else { format!("{prefix}_{c}") }))
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions};

    fn twin_of(bytes: &[u8]) -> Option<Code> {
        twin(&Decoder::new(64, bytes, DecoderOptions::NONE).decode())
    }

    #[test]
    fn twins() {
        // VPADDB ymm0, ymm1, ymm2; VPSLLW ymm1, ymm2, 3 (vvvv is the destination); VMOVSS
        // xmm0, [rax]; VMOVDQU [rax], ymm0.
        assert_eq!(twin_of(&[0xc5, 0xf5, 0xfc, 0xc2]), Some(Code::Paddb_xmm_xmmm128));
        assert_eq!(twin_of(&[0xc5, 0xf5, 0x71, 0xf2, 0x03]), Some(Code::Psllw_xmm_imm8));
        assert_eq!(twin_of(&[0xc5, 0xfa, 0x10, 0x00]), Some(Code::Movss_xmm_xmmm32));
        assert_eq!(twin_of(&[0xc5, 0xfe, 0x7f, 0x00]), Some(Code::Movdqu_xmmm128_xmm));
    }
}
