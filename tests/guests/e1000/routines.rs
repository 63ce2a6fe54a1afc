//! The kernel's routines: the script interpreter, liveness check, printing, randomness.

use super::*;

/// run: EBX = script; ESI = BAR0. Preserves every register.
pub(super) fn emit_run(a: &mut Asm, d: &mut Data, k: &K) {
    let rt = &k.rt;
    let mut l = k.run;
    let mut next = a.create_label();
    let mut end = a.create_label();
    let mut check_fail = a.create_label();
    let mut fill_fail = a.create_label();
    a.here(&mut l);
    a.pushad().unwrap();
    a.here(&mut next);
    a.mov(eax, dword_ptr(ebx)).unwrap();
    a.mov(ecx, dword_ptr(ebx + 4)).unwrap();
    a.mov(edx, dword_ptr(ebx + 8)).unwrap();
    a.mov(ebp, dword_ptr(ebx + 12)).unwrap();
    a.add(ebx, (OP_WORDS * 4) as u32).unwrap();
    // Operands d and e are now at [EBX - 8] and [EBX - 4].
    let mut labels: Vec<(Op, CodeLabel)> = Vec::new();
    for op in [
        Op::End,
        Op::W32,
        Op::W16,
        Op::W8,
        Op::R32,
        Op::R16,
        Op::R8,
        Op::Delay,
        Op::Alive,
        Op::Hammer,
        Op::Copy,
        Op::Fill,
        Op::Print,
        Op::PrintReg,
        Op::CheckClear,
        Op::CheckSet,
        Op::CheckFill,
        Op::CheckRxLens,
    ] {
        let l = a.create_label();
        a.cmp(eax, op as u32).unwrap();
        a.je(l).unwrap();
        labels.push((op, l));
    }
    rt.print(a, d, "\ne1000: bad script operation 0x");
    rt.print_hex(a);
    rt.fail(a, d, "\n");
    for (op, mut l) in labels {
        a.here(&mut l);
        match op {
            Op::End => {
                a.jmp(end).unwrap();
            }
            Op::W32 => a.mov(dword_ptr(esi + ecx), edx).unwrap(),
            Op::W16 => a.mov(word_ptr(esi + ecx), dx).unwrap(),
            Op::W8 => a.mov(byte_ptr(esi + ecx), dl).unwrap(),
            Op::R32 => a.mov(eax, dword_ptr(esi + ecx)).unwrap(),
            Op::R16 => a.mov(ax, word_ptr(esi + ecx)).unwrap(),
            Op::R8 => a.mov(al, byte_ptr(esi + ecx)).unwrap(),
            Op::Delay => {
                let mut ms = a.create_label();
                a.test(ecx, ecx).unwrap();
                a.jz(next).unwrap();
                a.here(&mut ms);
                rt.delay(a, TICKS_1MS);
                a.dec(ecx).unwrap();
                a.jnz(ms).unwrap();
            }
            Op::Alive => a.call(k.alive).unwrap(),
            Op::Hammer => {
                let mut again = a.create_label();
                a.xor(eax, eax).unwrap();
                a.test(edx, edx).unwrap();
                a.jz(next).unwrap();
                a.here(&mut again);
                a.push(eax).unwrap();
                a.and(eax, dword_ptr(ebx - 8)).unwrap();
                a.or(eax, dword_ptr(ebx - 4)).unwrap();
                a.mov(dword_ptr(esi + ecx), eax).unwrap();
                a.mov(eax, dword_ptr(esi + STATUS)).unwrap();
                a.pop(eax).unwrap();
                a.add(eax, ebp).unwrap();
                a.dec(edx).unwrap();
                a.jnz(again).unwrap();
            }
            Op::Copy => {
                a.push(esi).unwrap();
                a.mov(esi, ecx).unwrap();
                a.mov(edi, edx).unwrap();
                a.mov(ecx, ebp).unwrap();
                a.rep().movsb().unwrap();
                a.pop(esi).unwrap();
            }
            Op::Fill => {
                a.mov(edi, ecx).unwrap();
                a.mov(ecx, edx).unwrap();
                a.mov(eax, ebp).unwrap();
                a.rep().stosd().unwrap();
            }
            Op::Print => a.call(k.puts).unwrap(),
            Op::PrintReg => {
                a.call(k.puts).unwrap();
                a.mov(eax, dword_ptr(esi + edx)).unwrap();
                rt.print_hex(a);
            }
            Op::CheckClear => {
                a.test(dword_ptr(ecx), edx).unwrap();
                a.jnz(check_fail).unwrap();
            }
            Op::CheckSet => {
                a.test(dword_ptr(ecx), edx).unwrap();
                a.jz(check_fail).unwrap();
            }
            Op::CheckFill => {
                a.mov(edi, ecx).unwrap();
                a.mov(ecx, edx).unwrap();
                a.mov(eax, ebp).unwrap();
                a.repe().scasd().unwrap();
                a.jne(fill_fail).unwrap();
            }
            Op::CheckRxLens => {
                let mut desc = a.create_label();
                let mut skip = a.create_label();
                a.here(&mut desc);
                a.test(byte_ptr(ecx + 12), DESC_DD).unwrap();
                a.jz(skip).unwrap();
                a.movzx(eax, word_ptr(ecx + 8)).unwrap();
                a.cmp(eax, ebp).unwrap();
                a.ja(check_fail).unwrap();
                a.here(&mut skip);
                a.add(ecx, 16u32).unwrap();
                a.dec(edx).unwrap();
                a.jnz(desc).unwrap();
            }
        }
        a.jmp(next).unwrap();
    }
    a.here(&mut end);
    a.popad().unwrap();
    a.ret().unwrap();

    a.here(&mut fill_fail);
    a.lea(ecx, ptr(edi - 4)).unwrap();
    a.here(&mut check_fail);
    rt.print(a, d, "\ne1000: check failed: RAM at 0x");
    a.mov(eax, ecx).unwrap();
    rt.print_hex(a);
    rt.print(a, d, " holds 0x");
    a.mov(eax, dword_ptr(ecx)).unwrap();
    rt.print_hex(a);
    rt.print(a, d, " (operation ");
    a.mov(eax, dword_ptr(ebx - 24)).unwrap();
    rt.print_dec(a);
    rt.print(a, d, ", operands 0x");
    a.mov(eax, dword_ptr(ebx - 20)).unwrap();
    rt.print_hex(a);
    rt.print(a, d, " 0x");
    a.mov(eax, dword_ptr(ebx - 16)).unwrap();
    rt.print_hex(a);
    rt.print(a, d, " 0x");
    a.mov(eax, dword_ptr(ebx - 12)).unwrap();
    rt.print_hex(a);
    rt.fail(a, d, ")\n");
}

/// alive: STATUS must not read all ones and the configuration ID must still be 8086:100e.
pub(super) fn emit_alive(a: &mut Asm, d: &mut Data, k: &K) {
    let rt = &k.rt;
    let mut l = k.alive;
    let mut dead = a.create_label();
    let mut gone = a.create_label();
    a.here(&mut l);
    a.push(eax).unwrap();
    a.mov(eax, dword_ptr(esi + STATUS)).unwrap();
    a.cmp(eax, u32::MAX).unwrap();
    a.je(dead).unwrap();
    a.mov(eax, dword_ptr(k.cfg)).unwrap();
    k.rt.pci_read(a);
    a.cmp(eax, E1000_VENDOR_DEVICE).unwrap();
    a.jne(gone).unwrap();
    a.inc(dword_ptr(k.alive_count)).unwrap();
    a.pop(eax).unwrap();
    a.ret().unwrap();
    a.here(&mut dead);
    rt.fail(a, d, "\ne1000: STATUS reads 0xffffffff: the card stopped answering\n");
    a.here(&mut gone);
    rt.print(a, d, "\ne1000: configuration dword 0 reads 0x");
    rt.print_hex(a);
    rt.fail(a, d, ", no longer 8086:100e\n");
}

/// rebase: both ring bases back to [`OUTSIDE_RAM`] (after a write that may have reset them).
pub(super) fn emit_rebase(a: &mut Asm, k: &K) {
    let mut l = k.rebase;
    a.here(&mut l);
    a.mov(dword_ptr(esi + RDBAL), OUTSIDE_RAM).unwrap();
    a.mov(dword_ptr(esi + TDBAL), OUTSIDE_RAM).unwrap();
    a.ret().unwrap();
}
