//! SMP test kernels: atomic counters on every CPU, cross-modifying code, and reset through 0xCF9.

use super::rt::Rt;
use super::{exit, multiboot_kernel, Asm, Data, COM1, EXIT_FAIL, EXIT_OK};
use iced_x86::code_asm::*;

/// How far into its 64-byte line the misaligned counter starts: its four bytes cross a 4-byte
/// and an 8-byte boundary, but not a cache line or a page.
const MISALIGNED_OFFSET: u32 = 6;
/// How long the BSP waits, after its own share of the work, for the APs to finish theirs.
const WORK_DONE_TIMEOUT_MS: u32 = 60_000;

/// Every CPU runs `iterations` rounds of five ways to increment a shared counter (LOCK ADD,
/// LOCK XADD, a LOCK CMPXCHG retry loop, a plain increment under an XCHG spinlock, LOCK INC of a
/// misaligned dword); the BSP then checks each counter is `cpus * iterations` and prints
/// `smp: N cpus, counters ok` (or what went wrong). Exit code [`EXIT_OK`] or [`EXIT_FAIL`].
pub fn atomic_counters(iterations: u32) -> Vec<u8> {
    multiboot_kernel(|a, d| {
        let rt = Rt::new(a, d);
        let names = ["lock add", "lock xadd", "lock cmpxchg", "xchg spinlock", "misaligned lock inc"];
        let c = Counters {
            add: d.var(),
            xadd: d.var(),
            cmpxchg: d.var(),
            under_lock: d.var(),
            misaligned: d.zeroed(64, 64) + MISALIGNED_OFFSET,
            lock: d.var(),
            xadd_backwards: d.var(),
        };
        let go = d.var();
        let done = d.var();
        let mut work = a.create_label();

        rt.bsp_entry(a);
        rt.start_aps(a, d);
        // Everyone starts together, so the CPUs really contend.
        a.mov(dword_ptr(go), 1).unwrap();
        a.call(work).unwrap();
        let mut late = a.create_label();
        rt.wait_until(a, WORK_DONE_TIMEOUT_MS, late, |a, ok| {
            a.mov(eax, dword_ptr(done)).unwrap();
            a.cmp(eax, dword_ptr(rt.started)).unwrap();
            a.jae(ok).unwrap();
        });
        rt.check_started(a, d);

        // EBP = expected value, EDI = 1 once a counter is wrong.
        a.mov(ebp, dword_ptr(rt.cpu_count)).unwrap();
        a.imul_3(ebp, ebp, iterations as i32).unwrap();
        a.xor(edi, edi).unwrap();
        for (name, addr) in names.iter().zip([c.add, c.xadd, c.cmpxchg, c.under_lock, c.misaligned]) {
            let mut right = a.create_label();
            a.mov(eax, dword_ptr(addr)).unwrap();
            a.cmp(eax, ebp).unwrap();
            a.je(right).unwrap();
            rt.print(a, d, &format!("smp: {name} counter is 0x"));
            rt.print_hex(a);
            rt.print(a, d, ", expected 0x");
            a.mov(eax, ebp).unwrap();
            rt.print_hex(a);
            rt.print(a, d, "\n");
            a.mov(edi, 1u32).unwrap();
            a.here(&mut right);
        }
        let mut monotonic = a.create_label();
        a.mov(eax, dword_ptr(c.xadd_backwards)).unwrap();
        a.test(eax, eax).unwrap();
        a.jz(monotonic).unwrap();
        rt.print(a, d, "smp: lock xadd returned a smaller value than before 0x");
        rt.print_hex(a);
        rt.print(a, d, " times\n");
        a.mov(edi, 1u32).unwrap();
        a.here(&mut monotonic);
        let mut failed = a.create_label();
        a.test(edi, edi).unwrap();
        a.jnz(failed).unwrap();
        rt.print(a, d, "smp: ");
        a.mov(eax, dword_ptr(rt.cpu_count)).unwrap();
        rt.print_dec(a);
        rt.print(a, d, " cpus, counters ok\n");
        exit(a, EXIT_OK);
        a.here(&mut failed);
        exit(a, EXIT_FAIL);
        a.here(&mut late);
        rt.print(a, d, "smp: only 0x");
        a.mov(eax, dword_ptr(done)).unwrap();
        rt.print_hex(a);
        rt.print(a, d, " of 0x");
        a.mov(eax, dword_ptr(rt.started)).unwrap();
        rt.print_hex(a);
        rt.fail(a, d, " APs finished their work\n");

        // APs: wait for the start signal, work, report, halt with interrupts off.
        rt.ap_entry(a);
        let mut wait = a.create_label();
        let mut park = a.create_label();
        a.here(&mut wait);
        a.pause().unwrap();
        a.cmp(dword_ptr(go), 0).unwrap();
        a.je(wait).unwrap();
        a.call(work).unwrap();
        a.lock().inc(dword_ptr(done)).unwrap();
        a.here(&mut park);
        a.cli().unwrap();
        a.hlt().unwrap();
        a.jmp(park).unwrap();

        a.here(&mut work);
        c.emit_work(a, iterations);
        rt.emit(a, d);
    })
}

/// The shared counters of [`atomic_counters`].
struct Counters {
    add: u32,
    xadd: u32,
    cmpxchg: u32,
    under_lock: u32,
    misaligned: u32,
    /// The spinlock guarding `under_lock`: 0 free, 1 held.
    lock: u32,
    /// Times LOCK XADD returned less than this CPU's previous result (impossible when atomic).
    xadd_backwards: u32,
}

impl Counters {
    /// The work loop, as a subroutine.
    fn emit_work(&self, a: &mut Asm, iterations: u32) {
        let mut round = a.create_label();
        let mut xadd_ok = a.create_label();
        let mut retry = a.create_label();
        let mut acquire = a.create_label();
        let mut spin = a.create_label();
        let mut held = a.create_label();
        a.pushad().unwrap();
        a.mov(ecx, iterations).unwrap();
        a.xor(ebx, ebx).unwrap(); // the counter as this CPU's last LOCK XADD left it
        a.here(&mut round);

        a.lock().add(dword_ptr(self.add), 1).unwrap();

        a.mov(eax, 1u32).unwrap();
        a.lock().xadd(dword_ptr(self.xadd), eax).unwrap();
        a.cmp(eax, ebx).unwrap();
        a.jae(xadd_ok).unwrap();
        a.lock().inc(dword_ptr(self.xadd_backwards)).unwrap();
        a.here(&mut xadd_ok);
        a.lea(ebx, ptr(eax + 1)).unwrap();

        // On failure CMPXCHG loads the current value into EAX, so just retry.
        a.mov(eax, dword_ptr(self.cmpxchg)).unwrap();
        a.here(&mut retry);
        a.lea(edx, ptr(eax + 1)).unwrap();
        a.lock().cmpxchg(dword_ptr(self.cmpxchg), edx).unwrap();
        a.jne(retry).unwrap();

        // XCHG with memory is locked without a prefix. Spin reading until the lock looks free.
        a.here(&mut acquire);
        a.mov(eax, 1u32).unwrap();
        a.xchg(dword_ptr(self.lock), eax).unwrap();
        a.test(eax, eax).unwrap();
        a.jz(held).unwrap();
        a.here(&mut spin);
        a.pause().unwrap();
        a.cmp(dword_ptr(self.lock), 0).unwrap();
        a.jne(spin).unwrap();
        a.jmp(acquire).unwrap();
        a.here(&mut held);
        // A deliberately separate load and store: only the lock keeps them atomic.
        a.mov(eax, dword_ptr(self.under_lock)).unwrap();
        a.inc(eax).unwrap();
        a.mov(dword_ptr(self.under_lock), eax).unwrap();
        a.mov(dword_ptr(self.lock), 0).unwrap(); // release: a plain store suffices on x86 (TSO)

        a.lock().inc(dword_ptr(self.misaligned)).unwrap();

        a.dec(ecx).unwrap();
        a.jnz(round).unwrap();
        a.popad().unwrap();
        a.ret().unwrap();
    }
}

/// Value the patched function returns before and after the BSP rewrites it.
const OLD_VALUE: u32 = 1;
const NEW_VALUE: u32 = 2;
/// Calls each AP must have made (returning the old value) before the BSP patches the code:
/// enough for a translator to have compiled the function and chained the loop.
const CALLS_BEFORE_PATCH: u32 = 100_000;
const CALLS_TIMEOUT_MS: u32 = 20_000;
/// How long the APs get to notice the new code.
const PATCH_SEEN_TIMEOUT_MS: u32 = 5_000;
/// Where the function's `mov eax, imm32` starts in its page: the immediate is then 4-aligned,
/// so the patching store is a single aligned dword.
const FUNCTION_OFFSET: u32 = 3;

/// Every AP calls a `mov eax, imm32; ret` function in a page of its own, in a loop, storing the
/// result per CPU. Once each AP has seen the old value [`CALLS_BEFORE_PATCH`] times, the BSP
/// rewrites the immediate with a plain store and waits for every AP to return the new value.
/// Prints `xmc: N cpus, every AP ran the new code` and exits with [`EXIT_OK`], or says which AP
/// missed it and exits with [`EXIT_FAIL`].
pub fn cross_modifying_code() -> Vec<u8> {
    multiboot_kernel(|a, d| {
        let rt = Rt::new(a, d);
        let mut func = vec![0u8; FUNCTION_OFFSET as usize];
        func.push(0xb8); // mov eax, imm32
        func.extend_from_slice(&OLD_VALUE.to_le_bytes());
        func.push(0xc3); // ret
        let function = d.bytes(&func, 0x1000) + FUNCTION_OFFSET;
        let imm = function + 1;
        d.zeroed(0, 0x1000); // nothing else shares the function's page
        let results = d.zeroed(4 * super::rt::MAX_CPUS, 64);
        let calls = d.zeroed(4 * super::rt::MAX_CPUS, 64);

        rt.bsp_entry(a);
        rt.start_aps(a, d);
        let mut two = a.create_label();
        a.cmp(dword_ptr(rt.cpu_count), 2).unwrap();
        a.jae(two).unwrap();
        rt.fail(a, d, "xmc: needs at least 2 cpus\n");
        a.here(&mut two);

        rt.for_each_ap(a, |a| {
            let mut slow = a.create_label();
            let mut old_ok = a.create_label();
            rt.wait_until(a, CALLS_TIMEOUT_MS, slow, |a, ok| {
                a.cmp(dword_ptr(esi * 4 + calls), CALLS_BEFORE_PATCH).unwrap();
                a.jae(ok).unwrap();
            });
            a.cmp(dword_ptr(esi * 4 + results), OLD_VALUE).unwrap();
            a.je(old_ok).unwrap();
            report_ap(&rt, a, d, results, calls, "returned");
            a.here(&mut slow);
            report_ap(&rt, a, d, results, calls, "is too slow, returned");
            a.here(&mut old_ok);
        });

        // Cross-modify: a plain store into the code the APs are executing.
        a.mov(dword_ptr(imm), NEW_VALUE).unwrap();

        rt.for_each_ap(a, |a| {
            let mut stale = a.create_label();
            let mut seen = a.create_label();
            rt.wait_until(a, PATCH_SEEN_TIMEOUT_MS, stale, |a, ok| {
                a.cmp(dword_ptr(esi * 4 + results), NEW_VALUE).unwrap();
                a.je(ok).unwrap();
            });
            a.jmp(seen).unwrap();
            a.here(&mut stale);
            report_ap(&rt, a, d, results, calls, "still runs the old code, returned");
            a.here(&mut seen);
        });
        rt.check_started(a, d);
        rt.print(a, d, "xmc: ");
        a.mov(eax, dword_ptr(rt.cpu_count)).unwrap();
        rt.print_dec(a);
        rt.print(a, d, " cpus, every AP ran the new code\n");
        exit(a, EXIT_OK); // the APs are still calling the function

        rt.ap_entry(a);
        let mut again = a.create_label();
        a.here(&mut again);
        a.call(function as u64).unwrap();
        a.mov(dword_ptr(ebx * 4 + results), eax).unwrap();
        a.inc(dword_ptr(ebx * 4 + calls)).unwrap(); // only this AP writes its slot
        a.jmp(again).unwrap();

        rt.emit(a, d);
    })
}

/// Prints "xmc: cpu <ESI> <what> 0x<result> after 0x<calls> calls" and fails.
fn report_ap(rt: &Rt, a: &mut Asm, d: &mut Data, results: u32, calls: u32, what: &str) {
    rt.print(a, d, "xmc: cpu ");
    a.mov(eax, esi).unwrap();
    rt.print_dec(a);
    rt.print(a, d, &format!(" {what} 0x"));
    a.mov(eax, dword_ptr(esi * 4 + results)).unwrap();
    rt.print_hex(a);
    rt.print(a, d, " after 0x");
    a.mov(eax, dword_ptr(esi * 4 + calls)).unwrap();
    rt.print_hex(a);
    rt.fail(a, d, " calls\n");
}

/// PIIX3 reset control register at I/O port 0xCF9 (82371SB PIIX3 datasheet, "RC—Reset Control
/// Register"): bit 1 SYS_RST selects a hard reset, a 0-to-1 transition of bit 2 RST_CPU starts it.
const RESET_CONTROL: u16 = 0xcf9;
const RESET_HARD: u32 = 0x06;
/// What the reset kernel prints before and (wrongly) after the reset.
pub const BEFORE_RESET: &str = "before-reset\n";
pub const AFTER_RESET: u8 = b'X';

/// Prints [`BEFORE_RESET`], writes 0x06 to port 0xCF9, then writes [`AFTER_RESET`] to COM1 and
/// exits with [`EXIT_FAIL`]. Only a register move separates the two OUTs (an OUT to COM1 needs
/// DX = 0x3F8). Uses no stack (multiboot gives none).
pub fn reset_through_cf9() -> Vec<u8> {
    multiboot_kernel(|a, d| {
        let mut text = BEFORE_RESET.as_bytes().to_vec();
        text.push(AFTER_RESET); // REP OUTSB leaves ESI here
        let message = d.bytes(&text, 1);
        let mut start = a.named_label("start");
        a.here(&mut start);
        super::check_multiboot_magic(a);
        a.cld().unwrap();
        a.mov(esi, message).unwrap();
        a.mov(ecx, BEFORE_RESET.len() as u32).unwrap();
        a.mov(dx, COM1 as u32).unwrap();
        a.rep().outsb().unwrap();
        a.mov(edi, COM1 as u32).unwrap();
        a.mov(dx, RESET_CONTROL as u32).unwrap();
        a.mov(al, RESET_HARD).unwrap();
        a.out(dx, al).unwrap();
        a.mov(edx, edi).unwrap();
        a.outsb().unwrap();
        exit(a, EXIT_FAIL);
    })
}
