#!/usr/bin/env python3
"""Generates cpu/tests/avx_cases/mod.rs: the VEX forms the native differential test runs
(one `case!` per form and immediate), 128- and 256-bit. Run from cpu/tests/gen."""

out = []
def group(name, gen, insns, cmp="Exact"):
    out.append(f"pub fn {name}() -> Vec<Case> {{\n    vec![")
    for i in insns:
        out.append(f'        case!({gen}, {cmp}, "{i}"),')
    out.append("    ]\n}\n")

def both(m, ops3=True, mem=False):
    """The VEX.256 and VEX.128 register forms (three operands, or two), and a memory form."""
    f = []
    for r in ["ymm", "xmm"]:
        f.append(f"{m} {r}0, {r}1, {r}2" if ops3 else f"{m} {r}0, {r}1")
    if mem:
        f.append(f"{m} ymm0, ymm1, [rdi]" if ops3 else f"{m} ymm0, [rdi]")
    return f

# What glibc's AVX2 string and memory functions use.
glibc = ["vmovdqu ymm0, [rdi]", "vmovdqu [rdi], ymm1", "vmovdqa ymm0, [rdi]", "vmovdqa [rdi], ymm1",
         "vmovdqu ymm0, ymm1", "vmovdqu xmm0, [rdi + 3]", "vmovdqu [rdi + 5], xmm1", "vmovdqa xmm0, xmm1",
         "vmovntdq [rdi], ymm1", "vmovups ymm0, [rdi + 1]", "vmovaps [rdi], ymm2", "vlddqu ymm0, [rdi]",
         "vpmovmskb eax, ymm1", "vpmovmskb eax, xmm1", "vpmovmskb rax, ymm2", "vmovmskps eax, ymm1", "vmovmskpd eax, ymm1",
         "vpbroadcastb ymm0, xmm1", "vpbroadcastb xmm0, [rdi]", "vpbroadcastw ymm0, xmm1", "vpbroadcastd ymm0, [rdi]",
         "vpbroadcastq xmm0, xmm1", "vbroadcastss ymm0, xmm1", "vbroadcastss xmm0, [rdi]", "vbroadcastsd ymm0, [rdi]",
         "vbroadcasti128 ymm0, [rdi]", "vbroadcastf128 ymm0, [rdi]",
         "vzeroupper", "vzeroall", "vptest ymm0, ymm1", "vptest xmm0, [rdi]", "vptest ymm0, [rdi]",
         "vmovd xmm0, eax", "vmovq xmm0, rcx", "vmovd eax, xmm1", "vmovq rax, xmm1", "vmovq xmm0, xmm1",
         "vmovq xmm0, [rdi]", "vmovq [rdi], xmm1", "vmovss xmm0, xmm1, xmm2", "vmovss xmm0, [rdi]", "vmovss [rdi], xmm1",
         "vmovsd xmm0, xmm1, xmm2", "vmovsd xmm0, [rdi]", "vmovsd [rdi + 8], xmm1", "vmovlps xmm0, xmm1, [rdi]",
         "vmovhps xmm0, xmm1, [rdi]", "vmovhps [rdi], xmm1", "vmovhlps xmm0, xmm1, xmm2", "vmovlhps xmm0, xmm1, xmm2",
         "vpextrb eax, xmm1, 5", "vpextrq rax, xmm1, 1", "vpinsrb xmm0, xmm1, eax, 7", "vpinsrq xmm0, xmm1, rax, 1",
         "vinsertps xmm0, xmm1, xmm2, 0x35", "vinsertps xmm0, xmm1, [rdi], 0x9c", "vextractps eax, xmm1, 2",
         "vpcmpistri xmm1, xmm2, 0x0c", "vpcmpestrm xmm1, [rdi], 0x44", "vstmxcsr [rdi]"]
group("glibc", "Bytes", glibc)

INT = """paddb paddw paddd paddq psubb psubw psubd psubq paddsb paddsw paddusb paddusw psubsb psubsw
psubusb psubusw pmullw pmulhw pmulhuw pmulld pmuludq pmuldq pmaddwd pmaddubsw pmulhrsw psadbw pavgb pavgw
pminub pmaxub pminuw pmaxuw pminud pmaxud pminsb pmaxsb pminsw pmaxsw pminsd pmaxsd psignb psignw psignd
phaddw phaddd phaddsw phsubw phsubd phsubsw pand pandn por pxor andps andnps orps xorps andpd andnpd orpd
xorpd pshufb punpcklbw punpcklwd punpckldq punpcklqdq punpckhbw punpckhwd punpckhdq punpckhqdq unpcklps
unpckhps unpcklpd unpckhpd packsswb packssdw packuswb packusdw pcmpeqb pcmpeqw pcmpeqd pcmpeqq pcmpgtb
pcmpgtw pcmpgtd pcmpgtq""".split()
ints = []
for m in INT:
    ints += both("v" + m)
ints += [f"v{m} ymm0, ymm1, [rdi]" for m in ["paddb", "pcmpeqb", "pminub", "pshufb", "punpckhdq", "packuswb"]]
for m in ["pabsb", "pabsw", "pabsd", "movshdup", "movsldup", "movddup"]:
    ints += both("v" + m, ops3=False)
for m in ["pmovsxbw", "pmovsxbd", "pmovsxbq", "pmovsxwd", "pmovsxwq", "pmovsxdq",
          "pmovzxbw", "pmovzxbd", "pmovzxbq", "pmovzxwd", "pmovzxwq", "pmovzxdq"]:
    ints += [f"v{m} ymm0, xmm1", f"v{m} xmm0, xmm1", f"v{m} ymm0, [rdi]"]
ints += ["vphminposuw xmm0, xmm1"]
IMMS = [0, 1, 3, 0x1b, 0x4e, 0x80, 0xa5, 0xe4, 0xff]
for m in ["pshufd", "pshufhw", "pshuflw", "permilps", "permilpd", "permq", "permpd"]:
    for r in (["ymm"] if m in ["permq", "permpd"] else ["ymm", "xmm"]):
        ints += [f"v{m} {r}0, {r}1, {i}" for i in IMMS]
for m in ["shufps", "shufpd", "pblendw", "blendps", "blendpd", "pblendd", "mpsadbw", "perm2i128", "perm2f128", "dpps"]:
    for r in (["ymm"] if m.startswith("perm") else ["ymm", "xmm"]):
        if m == "dpps":
            continue
        ints += [f"v{m} {r}0, {r}1, {r}2, {i}" for i in IMMS + [0x2d, 0x88, 0x12]]
ints += [f"vpalignr {r}0, {r}1, {r}2, {i}" for r in ["ymm", "xmm"] for i in [0, 1, 4, 8, 15, 16, 17, 31, 32]]
for m in ["permd", "permps", "permilps", "permilpd"]:
    ints += [f"v{m} ymm0, ymm1, ymm2", f"v{m} ymm0, ymm1, [rdi]"]
ints += ["vpermilps xmm0, xmm1, xmm2", "vpermilpd xmm0, xmm1, xmm2"]
ints += ["vinserti128 ymm0, ymm1, xmm2, 0", "vinserti128 ymm0, ymm1, [rdi], 1", "vinsertf128 ymm0, ymm1, xmm2, 1",
         "vextracti128 xmm0, ymm1, 1", "vextracti128 xmm0, ymm1, 0", "vextractf128 [rdi], ymm1, 1", "vextractf128 xmm0, ymm2, 1"]
ints += ["vpblendvb ymm0, ymm1, ymm2, ymm0", "vpblendvb xmm0, xmm1, [rdi], xmm2", "vblendvps ymm0, ymm1, ymm2, ymm1",
         "vblendvpd ymm0, ymm1, [rdi], ymm2", "vblendvps xmm0, xmm1, xmm2, xmm0"]
ints += ["vtestps ymm0, ymm1", "vtestps xmm0, [rdi]", "vtestpd ymm0, ymm1", "vtestpd xmm0, xmm1"]
ints += ["vmaskmovps ymm0, ymm1, [rdi]", "vmaskmovpd xmm0, xmm1, [rdi]", "vpmaskmovd ymm0, ymm2, [rdi]",
         "vpmaskmovq xmm0, xmm1, [rdi]", "vmaskmovps [rdi], ymm1, ymm2", "vpmaskmovq [rdi], ymm2, ymm1",
         "vpmaskmovd [rdi], xmm1, xmm0", "vmaskmovpd [rdi], ymm0, ymm1", "vmaskmovdqu xmm1, xmm2"]
ints += ["vaesenc xmm0, xmm1, xmm2", "vaesenclast xmm0, xmm1, [rdi]", "vaesdec xmm0, xmm1, xmm2", "vaesdeclast xmm0, xmm1, xmm2",
         "vaesimc xmm0, xmm1", "vaeskeygenassist xmm0, xmm1, 0x1b", "vpclmulqdq xmm0, xmm1, xmm2, 0x11", "vpclmulqdq xmm0, xmm1, [rdi], 0x10"]
group("integer", "Bytes", ints)

shifts = []
for m in ["psllw", "psrlw", "psraw", "pslld", "psrld", "psrad", "psllq", "psrlq"]:
    for r in ["ymm", "xmm"]:
        shifts += [f"v{m} {r}0, {r}1, xmm2", f"v{m} {r}0, {r}1, [rdi]"]
        shifts += [f"v{m} {r}0, {r}1, {i}" for i in [0, 1, 7, 15, 16, 31, 32, 63, 64, 200]]
for m in ["pslldq", "psrldq"]:
    shifts += [f"v{m} {r}0, {r}1, {i}" for r in ["ymm", "xmm"] for i in [0, 1, 5, 15, 16, 255]]
for m in ["psllvd", "psllvq", "psrlvd", "psrlvq", "psravd"]:
    shifts += both("v" + m, mem=True)
group("shifts", "Shift", shifts)

def fp(sfx, w):
    f = []
    for m in ["add", "sub", "mul", "div", "min", "max"]:
        f += both(f"v{m}p{sfx}", mem=True) + [f"v{m}s{sfx} xmm0, xmm1, xmm2", f"v{m}s{sfx} xmm0, xmm1, [rdi]"]
    f += both(f"vsqrtp{sfx}", ops3=False) + [f"vsqrts{sfx} xmm0, xmm1, xmm2"]
    for m in ["hadd", "hsub", "addsub"]:
        f += both(f"v{m}p{sfx}")
    for i in list(range(32)):
        f += [f"vcmpp{sfx} ymm0, ymm1, ymm2, {i}", f"vcmps{sfx} xmm0, xmm1, xmm2, {i}"]
    f += [f"vcmpp{sfx} xmm0, xmm1, [rdi], 17"]
    for i in [0, 1, 2, 3, 4, 8, 9, 12]:
        f += [f"vroundp{sfx} ymm0, ymm1, {i}", f"vrounds{sfx} xmm0, xmm1, xmm2, {i}"]
    f += [f"vcomis{sfx} xmm0, xmm1", f"vucomis{sfx} xmm0, [rdi]"]
    f += [f"vcvt{x}s{sfx}2si {r}, xmm1" for x in ["", "t"] for r in ["eax", "rax"]]
    return f
ps = fp("s", 32) + ["vcvtps2pd ymm0, xmm1", "vcvtps2pd xmm0, xmm1", "vcvtps2pd ymm0, [rdi]", "vcvtps2dq ymm0, ymm1",
                    "vcvttps2dq ymm0, ymm1", "vcvtss2sd xmm0, xmm1, xmm2", "vcvtdq2ps ymm0, ymm1"]
ps += [f"vdpps {r}0, {r}1, {r}2, {i}" for r in ["ymm", "xmm"] for i in [0xff, 0x31, 0xf1, 0x55]]
group("float32", "F32", ps)
pd = fp("d", 64) + ["vcvtpd2ps xmm0, ymm1", "vcvtpd2ps xmm0, xmm1", "vcvtpd2dq xmm0, ymm1", "vcvttpd2dq xmm0, ymm1",
                    "vcvtpd2ps xmm0, ymmword ptr [rdi]", "vcvtsd2ss xmm0, xmm1, xmm2", "vdppd xmm0, xmm1, xmm2, 0x33"]
group("float64", "F64", pd)
group("approx", "F32", ["vrcpps ymm0, ymm1", "vrcpps xmm0, xmm1", "vrsqrtps ymm0, ymm1", "vrsqrtps xmm0, [rdi]",
                        "vrcpss xmm0, xmm1, xmm2", "vrsqrtss xmm0, xmm1, xmm2"], "Approx")
group("from_int", "Int", ["vcvtdq2pd ymm0, xmm1", "vcvtdq2pd xmm0, xmm1", "vcvtdq2ps ymm0, ymm1", "vcvtsi2ss xmm0, xmm1, eax",
                          "vcvtsi2sd xmm0, xmm1, rax", "vcvtsi2ss xmm0, xmm1, qword ptr [rdi]", "vcvtsi2sd xmm0, xmm1, dword ptr [rdi]"])

def fma(sfx):
    f = []
    for kind in ["fmadd", "fmsub", "fnmadd", "fnmsub", "fmaddsub", "fmsubadd"]:
        for order in ["132", "213", "231"]:
            m = f"v{kind}{order}"
            f += [f"{m}p{sfx} ymm0, ymm1, ymm2", f"{m}p{sfx} xmm0, xmm1, xmm2"]
            if not kind.endswith(("sub", "add")) or kind in ["fmsub", "fnmsub", "fmadd", "fnmadd"]:
                if kind not in ["fmaddsub", "fmsubadd"]:
                    f += [f"{m}s{sfx} xmm0, xmm1, xmm2"]
    f += [f"vfmadd231p{sfx} ymm0, ymm1, [rdi]", f"vfnmsub132s{sfx} xmm0, xmm1, [rdi]", f"vfmsub213p{sfx} xmm0, xmm1, [rdi]"]
    return f
group("fma32", "F32", fma("s"))
group("fma64", "F64", fma("d"))
group("fma_edges", "Edge64", ["vfmadd231pd ymm0, ymm1, ymm2", "vfmsub132sd xmm0, xmm1, xmm2", "vfnmadd213pd xmm0, xmm1, xmm2"])
group("fma_edges32", "Edge32", ["vfmadd231ps ymm0, ymm1, ymm2", "vfnmsub132ss xmm0, xmm1, xmm2", "vfmsub213ps xmm0, xmm1, xmm2"])

halves = ["vcvtph2ps ymm0, xmm1", "vcvtph2ps xmm0, xmm1", "vcvtph2ps ymm0, [rdi]", "vcvtph2ps xmm0, qword ptr [rdi]"]
group("from_half", "Bytes", halves)
to_half = []
for i in [0, 1, 2, 3, 4, 7]:
    to_half += [f"vcvtps2ph xmm0, ymm1, {i}", f"vcvtps2ph xmm0, xmm1, {i}"]
to_half += ["vcvtps2ph [rdi], ymm1, 0", "vcvtps2ph qword ptr [rdi + 8], xmm1, 4"]
group("to_half", "F32", to_half)
group("to_half_edges", "Edge32", ["vcvtps2ph xmm0, ymm1, 0", "vcvtps2ph xmm0, ymm1, 1", "vcvtps2ph xmm0, ymm1, 2", "vcvtps2ph xmm0, ymm1, 3", "vcvtps2ph xmm0, ymm1, 4"])

# Gathers: xmm1/ymm1 hold small indices (see Gen::Gather), xmm2/ymm2 the mask.
gathers = []
for m, idx, dst in [("vpgatherdd", "ymm", "ymm"), ("vpgatherdd", "xmm", "xmm"), ("vgatherdps", "ymm", "ymm"),
                    ("vpgatherdq", "xmm", "ymm"), ("vpgatherdq", "xmm", "xmm"), ("vgatherdpd", "xmm", "ymm"),
                    ("vpgatherqd", "ymm", "xmm"), ("vpgatherqd", "xmm", "xmm"), ("vgatherqps", "ymm", "xmm"),
                    ("vpgatherqq", "ymm", "ymm"), ("vpgatherqq", "xmm", "xmm"), ("vgatherqpd", "ymm", "ymm")]:
    gathers.append(f"{m} {dst}0, [rdi + {idx}1], {dst}2")
gathers += ["vpgatherdd ymm0, [rdi + ymm1 * 1 + 2], ymm2", "vpgatherqq ymm0, [rdi + ymm1 - 8], ymm2"]
group("gathers", "Gather", gathers)

open("../avx_cases/mod.rs", "w").write(
    "//! Generated by tests/gen/avx_cases.py: the VEX forms the native differential test runs.\n\n"
    "use super::*;\n\n" + "\n".join(out))
