//! Interrupt routing on the board: device lines → PIC (ISA IRQs) and IOAPIC (GSIs); IOAPIC
//! messages → local APIC; local APIC EOIs → IOAPIC; and the CPU's INTR/INTA cycle, which
//! takes the PIC's vector while LINT0 is in ExtINT (virtual-wire) mode and the APIC's
//! otherwise.

use super::{isa_irq_to_gsi, PcBoard};
use ferrite_hw::lapic::LapicOutput;

impl PcBoard {
    /// Propagates changed line levels and controller messages until nothing moves.
    pub(crate) fn sync_interrupts(&mut self) {
        for (line, level, pulsed) in self.irqs.take_changes() {
            // A line that went high and low again since the last look is an edge.
            let edge_only = pulsed && !level;
            if line < 16 {
                if edge_only {
                    self.pic.set_irq(line, true);
                }
                self.pic.set_irq(line, level);
            }
            let gsi = if line < 16 { isa_irq_to_gsi(line) } else { line };
            if (gsi as usize) < ferrite_hw::ioapic::IOAPIC_PINS {
                if edge_only {
                    self.ioapic.set_irq(gsi as usize, true);
                }
                self.ioapic.set_irq(gsi as usize, level);
            }
        }
        self.route_apic_messages();
    }

    fn route_apic_messages(&mut self) {
        // A few rounds settle any ping-pong (EOI → IOAPIC re-delivering a level interrupt).
        for _ in 0..4 {
            let mut moved = false;
            let msgs: Vec<_> = self.ioapic.drain_messages().collect();
            for m in msgs {
                moved = true;
                if self.lapic.matches_destination(m.destination, m.logical) {
                    self.lapic.deliver(&m);
                }
            }
            let outs: Vec<_> = self.lapic.drain_output().collect();
            for o in outs {
                moved = true;
                match o {
                    LapicOutput::Eoi(v) => self.ioapic.eoi(v),
                    LapicOutput::Ipi(ipi) => {
                        // One CPU: an IPI can only target ourselves.
                        if ipi.targets(&self.lapic) {
                            self.lapic.deliver(&ipi.message);
                        }
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn pic_routed(&self) -> bool {
        self.lapic.accepts_pic_interrupts()
    }

    pub(crate) fn intr_pending(&mut self) -> bool {
        if self.irqs.any_changed() {
            self.sync_interrupts();
        }
        (self.pic_routed() && self.pic.has_interrupt()) || self.lapic.has_interrupt().is_some()
    }

    pub(crate) fn intr_acknowledge(&mut self) -> Option<u8> {
        let v = if (self.pic_routed() && self.pic.has_interrupt()) || self.lapic.take_extint() {
            Some(self.pic.acknowledge())
        } else if self.lapic.has_interrupt().is_some() {
            Some(self.lapic.acknowledge())
        } else {
            None
        };
        self.sync_interrupts();
        v
    }

    /// An NMI the local APIC accepted (LINT1, NMI IPI), for the CPU.
    pub fn take_nmi(&mut self) -> bool {
        self.lapic.take_nmi()
    }
}

impl PcBoard {
    /// Whether an interrupt is waiting for the CPU (to cut a halt's sleep short).
    pub fn interrupt_ready(&mut self) -> bool {
        self.intr_pending()
    }
}
