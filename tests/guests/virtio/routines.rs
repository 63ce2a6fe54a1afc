//! The kernel's routines: the script interpreter, printing a string at an address, randomness.

use super::*;

/// run: EBX = script. Preserves every register (so `Op::Call` nests).
pub(super) fn emit_run(a: &mut Asm, d: &mut Data, k: &K) {
    let rt = &k.rt;
    let mut l = k.run;
    let mut next = a.create_label();
    let mut end = a.create_label();
    let mut wait_fail = a.create_label();
    let mut compare_fail = a.create_label();
    a.here(&mut l);
    a.pushad().unwrap();
    a.here(&mut next);
    a.mov(eax, dword_ptr(ebx)).unwrap();
    a.mov(ecx, dword_ptr(ebx + 4)).unwrap();
    a.mov(edx, dword_ptr(ebx + 8)).unwrap();
    a.mov(ebp, dword_ptr(ebx + 12)).unwrap();
    a.add(ebx, (OP_WORDS * 4) as u32).unwrap();
    // Operands b-e are now at [EBX - 16] .. [EBX - 4].
    let mut labels: Vec<(Op, CodeLabel)> = Vec::new();
    for op in [
        Op::End,
        Op::W8,
        Op::W16,
        Op::W32,
        Op::R32,
        Op::Copy,
        Op::Fill,
        Op::Delay,
        Op::Print,
        Op::WaitEq,
        Op::WaitNe,
        Op::Compare,
        Op::Tally,
        Op::Inc,
        Op::Call,
        Op::Fuzz,
    ] {
        let l = a.create_label();
        a.cmp(eax, op as u32).unwrap();
        a.je(l).unwrap();
        labels.push((op, l));
    }
    rt.print(a, d, "\nvirtio: bad script operation 0x");
    rt.print_hex(a);
    rt.fail(a, d, "\n");
    for (op, mut l) in labels {
        a.here(&mut l);
        match op {
            Op::End => a.jmp(end).unwrap(),
            Op::W8 => a.mov(byte_ptr(ecx), dl).unwrap(),
            Op::W16 => a.mov(word_ptr(ecx), dx).unwrap(),
            Op::W32 => a.mov(dword_ptr(ecx), edx).unwrap(),
            Op::R32 => a.mov(eax, dword_ptr(ecx)).unwrap(),
            Op::Copy => {
                a.mov(esi, ecx).unwrap();
                a.mov(edi, edx).unwrap();
                a.mov(ecx, ebp).unwrap();
                a.rep().movsb().unwrap();
            }
            Op::Fill => {
                a.mov(edi, ecx).unwrap();
                a.mov(ecx, edx).unwrap();
                a.mov(eax, ebp).unwrap();
                a.rep().stosd().unwrap();
            }
            Op::Delay => {
                let mut ms = a.create_label();
                a.test(ecx, ecx).unwrap();
                a.jz(next).unwrap();
                a.here(&mut ms);
                rt.delay(a, TICKS_1MS);
                a.dec(ecx).unwrap();
                a.jnz(ms).unwrap();
            }
            Op::Print => a.call(k.puts).unwrap(),
            Op::WaitEq | Op::WaitNe => {
                a.mov(esi, ecx).unwrap();
                rt.wait_until(a, WAIT_MS, wait_fail, |a, ok| {
                    a.mov(eax, dword_ptr(esi)).unwrap();
                    a.and(eax, edx).unwrap();
                    a.cmp(eax, ebp).unwrap();
                    if matches!(op, Op::WaitEq) {
                        a.je(ok).unwrap();
                    } else {
                        a.jne(ok).unwrap();
                    }
                });
            }
            Op::Compare => {
                a.mov(esi, ecx).unwrap();
                a.mov(edi, edx).unwrap();
                a.mov(ecx, ebp).unwrap();
                a.repe().cmpsb().unwrap();
                a.jne(compare_fail).unwrap();
            }
            Op::Tally => {
                a.test(dword_ptr(ecx), edx).unwrap();
                a.jz(next).unwrap();
                a.inc(dword_ptr(ebp)).unwrap();
            }
            Op::Inc => a.inc(dword_ptr(ecx)).unwrap(),
            Op::Call => {
                a.push(ebx).unwrap();
                a.mov(ebx, ecx).unwrap();
                a.call(k.run).unwrap();
                a.pop(ebx).unwrap();
            }
            Op::Fuzz => emit_fuzz(a, k),
        }
        a.jmp(next).unwrap();
    }
    a.here(&mut end);
    a.popad().unwrap();
    a.ret().unwrap();

    // ESI = the address waited on; the message is operand e.
    a.here(&mut wait_fail);
    a.mov(ecx, dword_ptr(ebx - 4)).unwrap();
    a.call(k.puts).unwrap();
    rt.print(a, d, " (reads 0x");
    a.mov(eax, dword_ptr(esi)).unwrap();
    rt.print_hex(a);
    rt.print(a, d, " at 0x");
    a.mov(eax, esi).unwrap();
    rt.print_hex(a);
    rt.fail(a, d, ")\n");

    // ESI is one past the first differing byte; the message is operand d.
    a.here(&mut compare_fail);
    a.mov(ecx, dword_ptr(ebx - 8)).unwrap();
    a.call(k.puts).unwrap();
    rt.print(a, d, " (first difference at 0x");
    a.lea(eax, ptr(esi - 1)).unwrap();
    rt.print_hex(a);
    rt.fail(a, d, ")\n");
}

/// Fuzz: ECX = window, EDX = writes, EBP = seed. Each round picks a dword-aligned offset, a
/// value, and a kind: a byte, word or dword write (at a random lane) or a dword read. A dword
/// written to a queue address field (`Q_DESC..Q_USED + 8`, 4.1.4.3) gets bit 31 set, so a
/// queue can never be pointed into RAM (where the device would overwrite the kernel).
fn emit_fuzz(a: &mut Asm, k: &K) {
    let mut again = a.create_label();
    let mut safe = a.create_label();
    let mut byte = a.create_label();
    let mut word = a.create_label();
    let mut dword = a.create_label();
    let mut done = a.create_label();
    let mut out = a.create_label();
    a.mov(dword_ptr(k.seed), ebp).unwrap();
    a.mov(edi, ecx).unwrap();
    a.mov(ebp, edx).unwrap();
    a.test(ebp, ebp).unwrap();
    a.jz(out).unwrap();
    a.here(&mut again);
    a.call(k.rng).unwrap();
    a.mov(ecx, eax).unwrap();
    a.and(ecx, (MODERN_BAR_SIZE - 4) & !3).unwrap();
    a.call(k.rng).unwrap();
    a.mov(edx, eax).unwrap();
    a.lea(eax, ptr(ecx - Q_DESC)).unwrap();
    a.cmp(eax, Q_USED + 8 - Q_DESC).unwrap();
    a.jae(safe).unwrap();
    a.or(edx, 0x8000_0000u32).unwrap();
    a.here(&mut safe);
    a.call(k.rng).unwrap();
    a.mov(esi, eax).unwrap();
    a.shr(esi, 8).unwrap();
    a.and(esi, 3u32).unwrap(); // the lane
    a.and(eax, 3u32).unwrap(); // the kind
    a.cmp(eax, 1u32).unwrap();
    a.jb(byte).unwrap();
    a.je(word).unwrap();
    a.cmp(eax, 2u32).unwrap();
    a.je(dword).unwrap();
    a.mov(eax, dword_ptr(edi + ecx)).unwrap();
    a.jmp(done).unwrap();
    a.here(&mut byte);
    a.add(ecx, esi).unwrap();
    a.mov(byte_ptr(edi + ecx), dl).unwrap();
    a.jmp(done).unwrap();
    a.here(&mut word);
    a.and(esi, 2u32).unwrap();
    a.add(ecx, esi).unwrap();
    a.mov(word_ptr(edi + ecx), dx).unwrap();
    a.jmp(done).unwrap();
    a.here(&mut dword);
    a.mov(dword_ptr(edi + ecx), edx).unwrap();
    a.here(&mut done);
    a.dec(ebp).unwrap();
    a.jnz(again).unwrap();
    a.here(&mut out);
}
