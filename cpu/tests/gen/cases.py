#!/usr/bin/env python3
"""Generates cpu/tests/sse_cases.rs: the instruction list of the native differential test
(one `case!` per instruction form and immediate). Run from cpu/tests/gen."""

out = []
def group(name, gen, insns, cmp="Exact"):
    out.append(f"pub fn {name}() -> Vec<Case> {{\n    vec![")
    for i in insns:
        out.append(f'        case!({gen}, {cmp}, "{i}"),')
    out.append("    ]\n}\n")

INT_XMM = """paddb paddw paddd paddq psubb psubw psubd psubq paddsb paddsw paddusb paddusw psubsb psubsw
psubusb psubusw pmullw pmulhw pmulhuw pmulld pmuludq pmuldq pmaddwd pmaddubsw pmulhrsw psadbw pavgb pavgw
pminub pmaxub pminuw pmaxuw pminud pmaxud pminsb pmaxsb pminsw pmaxsw pminsd pmaxsd pabsb pabsw pabsd
psignb psignw psignd phaddw phaddd phaddsw phsubw phsubd phsubsw pand pandn por pxor andps andnps orps
xorps andpd andnpd orpd xorpd pshufb punpcklbw punpcklwd punpckldq punpcklqdq punpckhbw punpckhwd
punpckhdq punpckhqdq unpcklps unpckhps unpcklpd unpckhpd packsswb packssdw packuswb packusdw pcmpeqb
pcmpeqw pcmpeqd pcmpeqq pcmpgtb pcmpgtw pcmpgtd pcmpgtq phminposuw pmovsxbw pmovsxbd pmovsxbq pmovsxwd
pmovsxwq pmovsxdq pmovzxbw pmovzxbd pmovzxbq pmovzxwd pmovzxwq pmovzxdq movshdup movsldup movddup
movaps movups movapd movupd movdqa movdqu movhlps movlhps movss movsd movq ptest""".split()
xmm = [f"{m} xmm0, xmm1" for m in INT_XMM]
xmm += ["pblendvb xmm1, xmm2, xmm0", "blendvps xmm1, xmm2, xmm0", "blendvpd xmm1, xmm2, xmm0"]
# Memory forms (rdi points at the 32-byte harness buffer, 16-byte aligned).
xmm += [f"{m} xmm0, [rdi]" for m in ["paddb", "pshufb", "pmovsxbw", "pmovzxdq", "ptest", "punpckhdq", "movddup", "movaps", "movdqa", "pcmpgtq"]]
xmm += ["movups xmm0, [rdi + 1]", "movdqu xmm0, [rdi + 7]", "lddqu xmm0, [rdi + 3]", "movntdqa xmm0, [rdi]",
        "movaps [rdi], xmm1", "movups [rdi + 5], xmm1", "movntdq [rdi], xmm1", "movntps [rdi], xmm1",
        "movss xmm0, [rdi]", "movsd xmm0, [rdi]", "movss [rdi + 2], xmm1", "movsd [rdi + 2], xmm1",
        "movlps xmm0, [rdi]", "movhps xmm0, [rdi]", "movlpd xmm0, [rdi]", "movhpd xmm0, [rdi]",
        "movlps [rdi], xmm1", "movhps [rdi + 4], xmm1", "movq [rdi], xmm1", "movq xmm0, [rdi]",
        "movd [rdi], xmm1", "movd xmm0, [rdi]", "maskmovdqu xmm1, xmm2", "movnti [rdi], eax", "movnti [rdi], rax",
        "pinsrb xmm0, [rdi], 3", "pinsrw xmm0, [rdi], 7", "pinsrd xmm0, [rdi], 2", "pinsrq xmm0, [rdi], 1",
        "pextrb [rdi], xmm1, 5", "pextrw [rdi], xmm1, 3", "pextrd [rdi], xmm1, 1", "pextrq [rdi], xmm1, 1",
        "extractps [rdi], xmm1, 2", "insertps xmm0, [rdi], 0x35", "pmovzxbq xmm0, [rdi]", "stmxcsr [rdi]",
        "movd eax, xmm1", "movq rax, xmm1", "movd xmm0, ecx", "movq xmm0, rcx", "movmskps eax, xmm1",
        "movmskpd eax, xmm1", "pmovmskb eax, xmm1", "movmskps rax, xmm1", "pmovmskb rax, xmm1"]
IMMS = [0, 1, 2, 3, 5, 0x1b, 0x4e, 0x7f, 0x80, 0xa5, 0xe4, 0xff]
for m in ["pshufd", "pshufhw", "pshuflw", "shufps", "shufpd", "pblendw", "blendps", "blendpd", "insertps", "mpsadbw"]:
    xmm += [f"{m} xmm0, xmm1, {i}" for i in IMMS]
xmm += [f"palignr xmm0, xmm1, {i}" for i in [0, 1, 4, 8, 15, 16, 17, 24, 31, 32, 200]]
for m, n in [("pinsrb", 16), ("pinsrw", 8), ("pinsrd", 4)]:
    xmm += [f"{m} xmm0, eax, {i}" for i in range(n)]
xmm += [f"pinsrq xmm0, rax, {i}" for i in range(2)]
for m, n in [("pextrb", 16), ("pextrw", 8), ("pextrd", 4), ("extractps", 4)]:
    xmm += [f"{m} eax, xmm1, {i}" for i in range(n)]
xmm += [f"pextrq rax, xmm1, {i}" for i in range(2)] + ["pextrb rax, xmm1, 9", "pextrw rax, xmm1, 6", "extractps rax, xmm1, 3"]
group("int_xmm", "Bytes", xmm)

shifts = []
for m in ["psllw", "psrlw", "psraw", "pslld", "psrld", "psrad", "psllq", "psrlq"]:
    shifts += [f"{m} xmm0, xmm1", f"{m} mm0, mm1"]
    shifts += [f"{m} xmm0, {i}" for i in [0, 1, 7, 15, 16, 31, 32, 63, 64, 200]]
    shifts += [f"{m} mm0, {i}" for i in [0, 3, 15, 16, 33, 64, 255]]
for m in ["pslldq", "psrldq"]:
    shifts += [f"{m} xmm0, {i}" for i in [0, 1, 5, 8, 15, 16, 255]]
group("shifts", "Shift", shifts)

INT_MM = """paddb paddw paddd paddq psubb psubw psubd psubq paddsb paddsw paddusb paddusw psubsb psubsw
psubusb psubusw pmullw pmulhw pmulhuw pmuludq pmaddwd pmaddubsw pmulhrsw psadbw pavgb pavgw pminub
pmaxub pminsw pmaxsw pabsb pabsw pabsd psignb psignw psignd phaddw phaddd phaddsw phsubw phsubd phsubsw
pand pandn por pxor pshufb punpcklbw punpcklwd punpckldq punpckhbw punpckhwd punpckhdq packsswb packssdw
packuswb pcmpeqb pcmpeqw pcmpeqd pcmpgtb pcmpgtw pcmpgtd movq""".split()
mmx = [f"{m} mm0, mm1" for m in INT_MM]
mmx += [f"{m} mm0, [rdi]" for m in ["paddb", "pshufb", "punpckhbw", "movq"]]
mmx += [f"pshufw mm0, mm1, {i}" for i in IMMS] + [f"palignr mm0, mm1, {i}" for i in [0, 1, 3, 7, 8, 9, 15, 16, 200]]
mmx += [f"pinsrw mm0, eax, {i}" for i in range(4)] + [f"pextrw eax, mm1, {i}" for i in range(4)]
mmx += ["pinsrw mm0, [rdi], 2", "pmovmskb eax, mm1", "movd eax, mm1", "movd mm0, ecx", "movq rax, mm1",
        "movq mm0, rcx", "movd [rdi], mm1", "movq [rdi], mm1", "movd mm0, [rdi]", "movntq [rdi], mm1",
        "movq2dq xmm0, mm1", "movdq2q mm0, xmm1", "maskmovq mm0, mm1", "cvtpi2ps xmm0, mm1", "cvtpi2pd xmm0, mm1",
        "cvtpi2ps xmm0, [rdi]", "cvtpi2pd xmm0, [rdi]"]
group("mmx", "Bytes", mmx)

def fp(sfx, gen, w):
    f = []
    for m in ["add", "sub", "mul", "div", "min", "max", "sqrt"]:
        f += [f"{m}p{sfx} xmm0, xmm1", f"{m}s{sfx} xmm0, xmm1"]
    f += [f"{m}p{sfx} xmm0, xmm1" for m in ["hadd", "hsub", "addsub"]]
    f += [f"{m}p{sfx} xmm0, [rdi]" for m in ["add", "div", "sqrt"]] + [f"{m}s{sfx} xmm0, [rdi]" for m in ["mul", "sqrt", "max"]]
    for i in range(8):
        f += [f"cmpp{sfx} xmm0, xmm1, {i}", f"cmps{sfx} xmm0, xmm1, {i}"]
    for i in range(16):
        f += [f"roundp{sfx} xmm0, xmm1, {i}", f"rounds{sfx} xmm0, xmm1, {i}"]
    f += [f"comis{sfx} xmm0, xmm1", f"ucomis{sfx} xmm0, xmm1", f"comis{sfx} xmm0, [rdi]"]
    f += [f"cvt{x}s{sfx}2si {r}, xmm1" for x in ["", "t"] for r in ["eax", "rax"]]
    f += [f"cvts{sfx}2si eax, [rdi]", f"cvtts{sfx}2si rax, [rdi]"]
    return f
ps = fp("s", "F32", 32)
ps += ["cvtps2pd xmm0, xmm1", "cvtps2dq xmm0, xmm1", "cvttps2dq xmm0, xmm1", "cvtps2pi mm0, xmm1",
       "cvttps2pi mm0, xmm1", "cvtss2sd xmm0, xmm1", "cvtss2sd xmm0, [rdi]", "cvtps2pd xmm0, [rdi]"]
ps += [f"dpps xmm0, xmm1, {i}" for i in [0xff, 0x31, 0xf1, 0x7f, 0x55, 0xa3, 0x0f, 0xf0, 0x12, 0xc8]]
group("float32", "F32", ps)
pd = fp("d", "F64", 64)
pd += ["cvtpd2ps xmm0, xmm1", "cvtpd2dq xmm0, xmm1", "cvttpd2dq xmm0, xmm1", "cvtpd2pi mm0, xmm1",
       "cvttpd2pi mm0, xmm1", "cvtsd2ss xmm0, xmm1", "cvtsd2ss xmm0, [rdi]", "cvtpd2ps xmm0, [rdi]"]
pd += [f"dppd xmm0, xmm1, {i}" for i in [0x33, 0x31, 0x13, 0x22, 0x03, 0x30, 0x11, 0xff]]
group("float64", "F64", pd)
edges32 = [f"{m} xmm0, xmm1" for m in ["mulps", "mulss", "divps", "divss", "addps", "subps", "sqrtps", "cvtps2dq", "haddps"]]
edges32 += ["dpps xmm0, xmm1, 0xff"]
edges64 = [f"{m} xmm0, xmm1" for m in ["mulpd", "mulsd", "divpd", "divsd", "addpd", "subpd", "sqrtpd", "cvtpd2dq", "haddpd"]]
edges64 += ["dppd xmm0, xmm1, 0x33", "cvtpd2ps xmm0, xmm1", "cvtsd2ss xmm0, xmm1"]
out.append("pub fn edges() -> Vec<Case> {\n    let mut v = edges32();\n    v.extend(edges64());\n    v\n}\n")
group("edges32", "Edge32", edges32)
group("edges64", "Edge64", edges64)
group("approx", "F32", ["rcpps xmm0, xmm1", "rcpss xmm0, xmm1", "rsqrtps xmm0, xmm1", "rsqrtss xmm0, xmm1"], "Approx")

ints = ["cvtdq2ps xmm0, xmm1", "cvtdq2pd xmm0, xmm1", "cvtpi2ps xmm0, mm1", "cvtpi2pd xmm0, mm1",
        "cvtsi2ss xmm0, eax", "cvtsi2ss xmm0, rax", "cvtsi2sd xmm0, eax", "cvtsi2sd xmm0, rax",
        "cvtsi2ss xmm0, dword ptr [rdi]", "cvtsi2sd xmm0, qword ptr [rdi]", "cvtdq2ps xmm0, [rdi]"]
group("from_int", "Int", ints)

strs = []
for m in ["pcmpestri", "pcmpestrm", "pcmpistri", "pcmpistrm"]:
    strs += [f"{m} xmm0, xmm1, {i}" for i in range(128)]
    strs += [f"{m} xmm0, [rdi + 3], 0x0c", f"{m} xmm0, [rdi], 0x44"]
group("strings", "Str", strs)

crc = ["crc32 eax, cl", "crc32 eax, ch", "crc32 eax, cx", "crc32 eax, ecx", "crc32 rax, rcx", "crc32 rax, cl",
       "crc32 eax, byte ptr [rdi]", "crc32 eax, word ptr [rdi]", "crc32 eax, dword ptr [rdi]", "crc32 rax, qword ptr [rdi]"]
group("crc", "Bytes", crc)

open("../sse_cases/mod.rs", "w").write(
    "//! Generated by tests/gen/cases.py: the instruction forms the native differential test runs.\n\n"
    "use super::*;\n\n" + "\n".join(out))
