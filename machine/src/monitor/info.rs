//! `info pci`, `info network` and `info irq`, in QEMU's layout, and `info jit`.

use crate::config::NicModel;
use crate::pc::interrupts::lock;
use crate::Machine;
use ferrite_hw::pci::{BarKind, DevFn};
use std::fmt::Write;

/// The class names QEMU prints for the classes a PC board has.
fn class_name(class: u16) -> String {
    match class {
        0x0100 => "SCSI controller".into(),
        0x0101 => "IDE controller".into(),
        0x0180 => "Storage controller".into(),
        0x0200 => "Ethernet controller".into(),
        0x0300 => "VGA controller".into(),
        0x0600 => "Host bridge".into(),
        0x0601 => "ISA bridge".into(),
        0x0680 => "Bridge".into(),
        0x0780 => "Communication controller".into(),
        0x00ff => "Class 00ff".into(),
        c => format!("Class {c:04x}"),
    }
}

impl Machine {
    /// `info pci`: every function on bus 0 with its IDs, interrupt pin and BARs.
    pub(crate) fn info_pci(&self) -> String {
        let mut out = String::new();
        let pci = self.board.pci_ports();
        let mut host = lock(&pci.host);
        for n in 0..=255u8 {
            let devfn = DevFn(n);
            if !host.bus.contains(devfn) {
                continue;
            }
            let id = host.bus.config_read(devfn, 0, 4);
            let class = (host.bus.config_read(devfn, 0x08, 4) >> 16) as u16;
            let (line, pin) = (host.bus.config_read(devfn, 0x3c, 1), host.bus.config_read(devfn, 0x3d, 1));
            let _ = writeln!(out, "  Bus  0, device {:3}, function {}:", devfn.device(), devfn.function());
            let _ = writeln!(out, "    {}: PCI device {:04x}:{:04x}", class_name(class), id & 0xffff, id >> 16);
            if pin != 0 {
                let _ = writeln!(out, "      IRQ {line}, pin {}", (b'A' + (pin as u8 - 1).min(3)) as char);
            }
            for bar in host.bus.bars(devfn).into_iter().flatten() {
                let end = bar.address + bar.size.saturating_sub(1);
                let _ = match bar.kind {
                    BarKind::Io => writeln!(out, "      BAR{}: I/O at 0x{:04x} [0x{end:04x}].", bar.index, bar.address),
                    BarKind::Mem32 { prefetchable } => {
                        writeln!(out, "      BAR{}: 32 bit {}memory at 0x{:08x} [0x{end:08x}].", bar.index, if prefetchable { "prefetchable " } else { "" }, bar.address)
                    }
                    BarKind::Mem64 { prefetchable } => {
                        writeln!(out, "      BAR{}: 64 bit {}memory at 0x{:016x} [0x{end:016x}].", bar.index, if prefetchable { "prefetchable " } else { "" }, bar.address)
                    }
                };
            }
        }
        out
    }

    /// `info network`: each card and its backend.
    pub(crate) fn info_network(&self) -> String {
        let mut out = String::new();
        for (i, nic) in self.nics.iter().enumerate() {
            let cfg = nic.config();
            let model = match cfg.model {
                NicModel::E1000 => "e1000",
                NicModel::VirtioNet(_) => "virtio-net-pci",
            };
            let mac: Vec<String> = cfg.mac.iter().map(|b| format!("{b:02x}")).collect();
            let _ = writeln!(out, "{model}.{i}: index=0,type=nic,model={model},macaddr={}", mac.join(":"));
            match &cfg.netdev {
                Some(d) => {
                    let _ = writeln!(out, " \\ {}: index=0,type={}", d.id, d.options.kind_name());
                }
                None => out.push_str(" \\ (no backend)\n"),
            }
        }
        out
    }

    /// `info irq`: rising edges at each IOAPIC and PIC input since the board was built (the
    /// last reset or loadvm; none are counted while KVM's own interrupt controllers serve
    /// the guest).
    pub(crate) fn info_irq(&self) -> String {
        let ic = lock(&self.board.irq.intc);
        ic.ioapic_stats.report("ioapic") + &ic.pic_stats.report("isa-i8259")
    }

    /// `info jit`: each vCPU's translator counters (QEMU answers as below under KVM).
    pub(crate) fn info_jit(&mut self) -> String {
        if self.vcpus.iter().any(|v| v.kvm_vm().is_some()) {
            return "JIT information is only available with accel=tcg\n".into();
        }
        self.vcpus.iter_mut().enumerate().map(|(i, v)| format!("CPU#{i}\n{}", v.cpu.jit_report())).collect()
    }
}
