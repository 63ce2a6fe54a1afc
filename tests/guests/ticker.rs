//! A kernel that counts rounds of PIT interrupts and checks that the TSC never goes back: for
//! tests that move a running machine between processes and accelerators. IRQ 0 through the
//! 8259 at 100 Hz, a handler that counts ticks, a main loop that halts until the next round
//! (every [`TICKS_PER_ROUND`] ticks) and prints `round N`; after [`ROUNDS`] rounds it prints
//! `done` and exits with [`EXIT_OK`]. A TSC read lower than the one before prints
//! `tsc went back` and exits with [`super::EXIT_FAIL`].

use super::rt::{self, Idt, Rt};
use super::{exit, multiboot_kernel, EXIT_OK};
use iced_x86::code_asm::*;

pub const ROUNDS: u32 = 60;
pub const TICKS_PER_ROUND: u32 = 10;
/// The PIT's input clock over 100 Hz.
const PIT_100HZ: u32 = 11_932;
const VECTOR_BASE: u8 = 0x20;
/// The master 8259's spurious IRQ 7.
const SPURIOUS: u32 = VECTOR_BASE as u32 + 7;

/// The numbers of the `round N` lines in `serial`, in order.
pub fn rounds(serial: &str) -> Vec<u32> {
    serial.lines().filter_map(|l| l.strip_prefix("round ")?.trim().parse().ok()).collect()
}

pub fn kernel() -> Vec<u8> {
    multiboot_kernel(|a, d| {
        let rt = Rt::new(a, d);
        let idt = Idt::new(d);
        let (ticks, round, target, tsc_lo, tsc_hi) = (d.var(), d.var(), d.var(), d.var(), d.var());
        let mut handler = a.named_label("irq_handler");
        rt.bsp_entry(a);
        rt::init_pics(a, VECTOR_BASE, 0xfffe);
        idt.load(a);
        // Channel 0, lobyte/hibyte, mode 2 (rate generator).
        a.mov(al, 0x34u32).unwrap();
        a.out(0x43u32, al).unwrap();
        a.mov(al, PIT_100HZ & 0xff).unwrap();
        a.out(0x40u32, al).unwrap();
        a.mov(al, PIT_100HZ >> 8).unwrap();
        a.out(0x40u32, al).unwrap();
        a.rdtsc().unwrap();
        a.mov(dword_ptr(tsc_lo), eax).unwrap();
        a.mov(dword_ptr(tsc_hi), edx).unwrap();
        a.sti().unwrap();

        let mut next_round = a.create_label();
        let mut wait = a.create_label();
        let mut forward = a.create_label();
        let mut back = a.create_label();
        a.here(&mut next_round);
        a.inc(dword_ptr(round)).unwrap();
        a.mov(eax, dword_ptr(round)).unwrap();
        a.imul_3(eax, eax, TICKS_PER_ROUND as i32).unwrap();
        a.mov(dword_ptr(target), eax).unwrap();
        a.here(&mut wait);
        a.hlt().unwrap();
        a.rdtsc().unwrap();
        a.cmp(edx, dword_ptr(tsc_hi)).unwrap();
        a.jb(back).unwrap();
        a.ja(forward).unwrap();
        a.cmp(eax, dword_ptr(tsc_lo)).unwrap();
        a.jb(back).unwrap();
        a.here(&mut forward);
        a.mov(dword_ptr(tsc_lo), eax).unwrap();
        a.mov(dword_ptr(tsc_hi), edx).unwrap();
        a.mov(eax, dword_ptr(ticks)).unwrap();
        a.cmp(eax, dword_ptr(target)).unwrap();
        a.jb(wait).unwrap();
        rt.print(a, d, "round ");
        a.mov(eax, dword_ptr(round)).unwrap();
        rt.print_dec(a);
        rt.print(a, d, "\n");
        a.cmp(dword_ptr(round), ROUNDS).unwrap();
        a.jb(next_round).unwrap();
        a.cli().unwrap();
        rt.print(a, d, "done\n");
        exit(a, EXIT_OK);
        a.here(&mut back);
        a.cli().unwrap();
        rt.fail(a, d, "tsc went back\n");

        // The handler: [ESP] = vector, after PUSHAD at [ESP + 32].
        let mut tick = a.create_label();
        let mut out = a.create_label();
        a.here(&mut handler);
        a.pushad().unwrap();
        a.mov(eax, dword_ptr(esp + 32)).unwrap();
        a.cmp(eax, VECTOR_BASE as u32).unwrap();
        a.je(tick).unwrap();
        a.cmp(eax, SPURIOUS).unwrap();
        a.je(out).unwrap();
        rt.print(a, d, "\nunexpected interrupt or exception, vector 0x");
        rt.print_hex2(a);
        rt.fail(a, d, "\n");
        a.here(&mut tick);
        a.inc(dword_ptr(ticks)).unwrap();
        rt::pic_eoi(a, 0);
        a.here(&mut out);
        a.popad().unwrap();
        Idt::iret(a);

        idt.emit_stubs(a, "irq_handler");
        rt.emit(a, d);
    })
}
