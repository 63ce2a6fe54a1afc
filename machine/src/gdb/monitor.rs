//! gdb's `monitor` commands (`monitor help` lists them).

use crate::Machine;
use ferrite_cpu::state::{cr0, cr4, flags, seg_attr, CpuState, Seg, Segment};
use gdbstub::target::ext::monitor_cmd::{outputln, ConsoleOutput, MonitorCmd};
use std::fmt::Write;

const HELP: &str = "\
ferrite monitor commands:
  info registers        all CPU registers, like QEMU's `info registers`
  info mode | mode      the CPU mode (real, virtual-8086, protected 16/32-bit, long mode
                        compatibility/64-bit), CPL and paging
  phys [on|off]         gdb memory accesses use physical addresses (on) or virtual addresses
                        through the guest's page tables (off, the default)
  gva2gpa ADDR          translate a virtual (linear) address with the current page tables
  disas [ADDR [COUNT]]  disassemble COUNT (10) instructions at linear ADDR (the current
                        instruction) as the CPU's current mode decodes them; gdb's own
                        disassembler always decodes 64-bit code
  step-interrupts [on|off]
                        deliver interrupts during single-steps (default off: masked, like QEMU)
  system_reset          reset the machine (the CPU stays stopped; breakpoints are kept)
  help                  this text";

/// "64-bit long mode, CPL 0, paging 4-level" and the like.
pub fn mode_summary(st: &CpuState) -> String {
    let cs = st.seg(Seg::Cs);
    let mode = if !st.protected() {
        "real mode".to_string()
    } else if st.v86() {
        "virtual-8086 mode".to_string()
    } else if st.long_mode_active() {
        if cs.long() {
            "64-bit long mode".to_string()
        } else {
            format!("long mode, {}-bit compatibility mode", if cs.default_big() { 32 } else { 16 })
        }
    } else {
        format!("{}-bit protected mode", if cs.default_big() { 32 } else { 16 })
    };
    let paging = if !st.paging() {
        "off"
    } else if st.long_mode_active() {
        "4-level"
    } else if st.cr4 & cr4::PAE != 0 {
        "PAE"
    } else {
        "32-bit"
    };
    format!("{mode}, CPL {}, paging {paging}", st.cpl())
}

fn parse_addr(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn on_off(arg: &str) -> Option<bool> {
    match arg {
        "on" | "1" | "yes" => Some(true),
        "off" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// QEMU's descriptor-cache line: selector, base, limit, flags (descriptor bits 8-23 of the
/// high dword) and a short decoding.
fn seg_line(out: &mut String, name: &str, s: &Segment, st: &CpuState) {
    let flags = (s.attrs & 0xf0ff) << 8;
    let _ = write!(out, "{name:<3}={:04x} {:016x} {:08x} {flags:08x}", s.selector, s.base, s.limit);
    if !st.protected() || st.v86() || s.unusable() || s.attrs & seg_attr::P == 0 {
        out.push('\n');
        return;
    }
    let _ = write!(out, " DPL={}", s.dpl());
    if s.attrs & seg_attr::S == 0 {
        out.push_str(" SYS\n");
        return;
    }
    if s.is_code() {
        let bits = if s.long() { "64" } else if s.default_big() { "32" } else { "16" };
        let _ = writeln!(
            out,
            " CS{bits} [{}{}{}]",
            if s.attrs & seg_attr::TYPE_EXPAND_DOWN != 0 { 'C' } else { '-' },
            if s.attrs & seg_attr::TYPE_WRITABLE != 0 { 'R' } else { '-' },
            if s.attrs & seg_attr::TYPE_ACCESSED != 0 { 'A' } else { '-' },
        );
    } else {
        let _ = writeln!(
            out,
            " DS{} [{}{}{}]",
            if s.default_big() { "" } else { "16" },
            if s.attrs & seg_attr::TYPE_EXPAND_DOWN != 0 { 'E' } else { '-' },
            if s.attrs & seg_attr::TYPE_WRITABLE != 0 { 'W' } else { '-' },
            if s.attrs & seg_attr::TYPE_ACCESSED != 0 { 'A' } else { '-' },
        );
    }
}

impl Machine {
    /// `count` instructions from linear `addr` (default: the current instruction), decoded for
    /// the current code size; branch targets are shown as CS offsets, like RIP.
    pub fn disassemble(&mut self, addr: Option<u64>, count: usize) -> String {
        use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
        let st = &self.vcpus[self.debug.current].cpu.state;
        let cs_base = st.seg(Seg::Cs).base;
        let bitness = st.code_bitness();
        let pc = cs_base.wrapping_add(st.rip) & if st.long_mode_active() { !0 } else { 0xffff_ffff };
        let start = addr.unwrap_or(pc);
        let mut bytes = vec![0u8; count * 15];
        let n = self.debug_read(start, &mut bytes);
        bytes.truncate(n);
        let mut o = String::new();
        if n == 0 {
            let _ = writeln!(o, "cannot read memory at {start:#x}");
            return o;
        }
        let mut decoder = Decoder::with_ip(bitness, &bytes, start.wrapping_sub(cs_base), DecoderOptions::NONE);
        let mut formatter = IntelFormatter::new();
        let mut text = String::new();
        let mut offset = 0usize;
        for _ in 0..count {
            if !decoder.can_decode() {
                break;
            }
            let insn = decoder.decode();
            text.clear();
            formatter.format(&insn, &mut text);
            let lin = start.wrapping_add(offset as u64);
            let hex: String = bytes[offset..offset + insn.len()].iter().map(|b| format!("{b:02x}")).collect();
            let mark = if lin == pc { "=>" } else { "  " };
            let _ = writeln!(o, "{mark} {lin:#x}:  {hex:<20} {text}");
            offset += insn.len();
        }
        let _ = writeln!(o, "({bitness}-bit code, CS base {cs_base:#x})");
        o
    }

    /// The register dump of `monitor info registers`.
    pub fn info_registers(&self) -> String {
        self.info_registers_of(self.debug.current)
    }

    /// QEMU's `info registers` for vCPU `cur`.
    pub fn info_registers_of(&self, cur: usize) -> String {
        let st = &self.vcpus[cur].cpu.state;
        let g = &st.gpr;
        let rfl = self.vcpus[cur].cpu.rflags();
        let mut o = String::new();
        let names = ["RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "RSP"];
        let order = [0, 3, 1, 2, 6, 7, 5, 4];
        for row in 0..2 {
            for col in 0..4 {
                let i = row * 4 + col;
                let _ = write!(o, "{}={:016x}{}", names[i], g[order[i]], if col == 3 { "\n" } else { " " });
            }
        }
        for row in 0..2 {
            for col in 0..4 {
                let r = 8 + row * 4 + col;
                let name = format!("R{r}");
                let _ = write!(o, "{name:<3}={:016x}{}", g[r], if col == 3 { "\n" } else { " " });
            }
        }
        let flag = |f: u64, c: char| if rfl & f != 0 { c } else { '-' };
        let _ = writeln!(
            o,
            "RIP={:016x} RFL={:08x} [{}{}{}{}{}{}{}] CPL={} II={} A20={} HLT={}",
            st.rip,
            rfl,
            flag(flags::DF, 'D'),
            flag(flags::OF, 'O'),
            flag(flags::SF, 'S'),
            flag(flags::ZF, 'Z'),
            flag(flags::AF, 'A'),
            flag(flags::PF, 'P'),
            flag(flags::CF, 'C'),
            st.cpl(),
            0,
            u8::from(self.board.wiring.a20_open()),
            u8::from(self.vcpus[cur].cpu.halted),
        );
        for (name, s) in [("ES", Seg::Es), ("CS", Seg::Cs), ("SS", Seg::Ss), ("DS", Seg::Ds), ("FS", Seg::Fs), ("GS", Seg::Gs)] {
            seg_line(&mut o, name, st.seg(s), st);
        }
        seg_line(&mut o, "LDT", &st.ldtr, st);
        seg_line(&mut o, "TR", &st.tr, st);
        let _ = writeln!(o, "GDT=     {:016x} {:08x}", st.gdtr.base, st.gdtr.limit);
        let _ = writeln!(o, "IDT=     {:016x} {:08x}", st.idtr.base, st.idtr.limit);
        let _ = writeln!(o, "CR0={:08x} CR2={:016x} CR3={:016x} CR4={:08x}", st.cr0, st.cr2, st.cr3, st.cr4);
        let _ = writeln!(o, "DR0={:016x} DR1={:016x} DR2={:016x} DR3={:016x}", st.dr[0], st.dr[1], st.dr[2], st.dr[3]);
        let _ = writeln!(o, "DR6={:016x} DR7={:016x}", st.dr[6], st.dr[7]);
        let _ = writeln!(o, "EFER={:016x} KernelGSbase={:016x} CR8={:x}", st.efer, st.msr.kernel_gs_base, st.cr8);
        let f = &st.fpu;
        let _ = writeln!(
            o,
            "FCW={:04x} FSW={:04x} [ST={}] FTW={:04x} MXCSR={:08x}",
            f.fcw,
            f.fsw,
            (f.fsw >> 11) & 7,
            f.ftw,
            f.mxcsr
        );
        for i in 0..8 {
            let r = &f.st[i];
            let mant = u64::from_le_bytes([r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]]);
            let exp = u16::from_le_bytes([r[8], r[9]]);
            let _ = write!(o, "FPR{i}={mant:016x} {exp:04x}{}", if i % 2 == 1 { "\n" } else { " " });
        }
        for i in 0..16 {
            let x = f.xmm[i];
            let _ = write!(
                o,
                "XMM{i:02}={:08x} {:08x} {:08x} {:08x}{}",
                (x >> 96) as u32,
                (x >> 64) as u32,
                (x >> 32) as u32,
                x as u32,
                if i % 2 == 1 { "\n" } else { " " }
            );
        }
        o
    }
}

impl MonitorCmd for Machine {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), Self::Error> {
        let cmd = String::from_utf8_lossy(cmd);
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.as_slice() {
            [] | ["help"] => outputln!(out, "{HELP}"),
            ["info", "registers"] | ["info", "reg"] => {
                let dump = self.info_registers();
                for line in dump.lines() {
                    outputln!(out, "{line}");
                }
            }
            ["info", "mode"] | ["mode"] => {
                let st = &self.vcpus[self.debug.current].cpu.state;
                outputln!(out, "{}", mode_summary(st));
                outputln!(
                    out,
                    "CR0={:#x} (PE={} PG={}) CR4={:#x} EFER={:#x} CS={:#06x} code {}-bit",
                    st.cr0,
                    u8::from(st.cr0 & cr0::PE != 0),
                    u8::from(st.cr0 & cr0::PG != 0),
                    st.cr4,
                    st.efer,
                    st.seg(Seg::Cs).selector,
                    st.code_bitness()
                );
                outputln!(out, "gdb addresses are {}", if self.debug.phys { "physical" } else { "virtual (linear)" });
            }
            ["phys"] => outputln!(out, "phys {}", if self.debug.phys { "on" } else { "off" }),
            ["phys", arg] => match on_off(arg) {
                Some(v) => {
                    self.debug.phys = v;
                    outputln!(out, "gdb addresses are now {}", if v { "physical" } else { "virtual (linear)" });
                }
                None => outputln!(out, "usage: monitor phys on|off"),
            },
            ["disas", rest @ ..] if rest.len() <= 2 => {
                let addr = rest.first().map(|a| parse_addr(a));
                let count = rest.get(1).map(|c| parse_addr(c));
                match (addr, count) {
                    (Some(None), _) | (_, Some(None)) => outputln!(out, "usage: monitor disas [ADDR [COUNT]]"),
                    (addr, count) => {
                        let text = self.disassemble(addr.flatten(), count.flatten().unwrap_or(10).min(1000) as usize);
                        for line in text.lines() {
                            outputln!(out, "{line}");
                        }
                    }
                }
            }
            ["gva2gpa", addr] | ["translate", addr] => match parse_addr(addr) {
                Some(a) => {
                    let (cpu, bus) = self.current_cpu();
                    match cpu.debug_translate(bus, a) {
                        Some(p) => outputln!(out, "gpa: {p:#x}"),
                        None => outputln!(out, "{a:#x} is not mapped"),
                    }
                }
                None => outputln!(out, "usage: monitor gva2gpa ADDR"),
            },
            ["step-interrupts"] => {
                outputln!(out, "step-interrupts {}", if self.debug.step_irqs { "on" } else { "off" })
            }
            ["step-interrupts", arg] => match on_off(arg) {
                Some(v) => {
                    self.debug.step_irqs = v;
                    outputln!(out, "interrupts are {} during single-steps", if v { "delivered" } else { "masked" });
                }
                None => outputln!(out, "usage: monitor step-interrupts on|off"),
            },
            ["system_reset"] => match self.reset() {
                Ok(()) => outputln!(out, "machine reset; CPU at {:#x}", self.vcpus[0].cpu.state.rip),
                Err(e) => outputln!(out, "reset failed: {e}"),
            },
            _ => outputln!(out, "unknown command '{}'; try 'monitor help'", cmd.trim()),
        }
        Ok(())
    }
}
