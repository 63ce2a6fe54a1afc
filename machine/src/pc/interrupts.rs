//! Interrupt routing, shared by every vCPU thread, the timer thread and devices: device lines
//! → PIC (ISA IRQs) and IOAPIC (GSIs, PCI PIRQs); IOAPIC, IPI and MSI messages → the local
//! APICs; EOIs → IOAPIC; and each vCPU's INTR line, an atomic the CPU reads at every block
//! boundary, kept equal to "this CPU has an interrupt to take" after every change.
//!
//! Locks: the interrupt controllers (`Intc`: PIC + IOAPIC) may be held while a LAPIC is locked,
//! never the other way round; a LAPIC's lock is never held while another LAPIC is locked.

use super::irq_stats::InputStats;
use crate::irq::IrqLevels;
use ferrite_hw::ioapic::Ioapic;
use ferrite_hw::lapic::{DeliveryMode, InterruptMessage, Ipi, Lapic, LapicOutput};
use ferrite_hw::pic::PicPair;
use ferrite_hw::NoIrq;
use ferrite_cpu::Attention;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;

/// GSI lines 16-19 in `IrqLevels` are PCI PIRQA-D (they also reach IOAPIC pins 16-19).
pub const PIRQ_LINE_BASE: u8 = 16;

/// ISA IRQ → IOAPIC input (the MADT's interrupt source override puts IRQ0 on GSI 2).
pub fn isa_irq_to_gsi(irq: u8) -> u8 {
    if irq == 0 {
        2
    } else {
        irq
    }
}

pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking device thread must not take the machine down with poisoned locks.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The 8259 pair, the IOAPIC and the PIIX3's PIRQ routing.
pub struct Intc {
    pub pic: PicPair<NoIrq>,
    pub ioapic: Ioapic,
    /// PIRQA-D → ISA IRQ (PIIX3 PIRQRC registers), `None` when disabled.
    pub pirq_routes: [Option<u8>; 4],
    /// The level of each PIRQ line (PCI INTx after the swizzle).
    pub pirq_levels: [bool; 4],
    /// Rising edges at the PIC's and the IOAPIC's inputs (`info irq`).
    pub pic_stats: InputStats<16>,
    pub ioapic_stats: InputStats<{ ferrite_hw::ioapic::IOAPIC_PINS }>,
}

impl Intc {
    /// PIC input `irq` goes to `level`.
    fn pic_input(&mut self, irq: u8, level: bool) {
        self.pic_stats.note(irq as usize, level);
        self.pic.set_irq(irq, level);
    }

    /// IOAPIC input `pin` goes to `level` (inputs it does not have are not wired).
    fn ioapic_input(&mut self, pin: u8, level: bool) {
        if (pin as usize) < ferrite_hw::ioapic::IOAPIC_PINS {
            self.ioapic_stats.note(pin as usize, level);
            self.ioapic.set_irq(pin as usize, level);
        }
    }
}

/// What one vCPU shares with the rest of the machine.
pub struct CpuLink {
    pub lapic: Mutex<Lapic>,
    /// Guest-physical base of the LAPIC's MMIO page (u64::MAX: disabled), readable without
    /// locking the LAPIC.
    lapic_base: AtomicU64,
    /// An ExtINT message is latched: the vector comes from the PIC.
    extint: AtomicBool,
    /// The vCPU's flags (its `Cpu::attention`): `kick`, its exit request, makes `run` return
    /// at the next block; `intr` is its INTR line (an interrupt is waiting for this CPU).
    pub attention: Arc<Attention>,
    /// The host thread running this vCPU, to wake it from HLT.
    thread: Mutex<Option<Thread>>,
    /// Gets the vCPU out of KVM_RUN while it runs there (see `accel::kvm`).
    kicker: Mutex<Option<Box<dyn Kick>>>,
}

/// Interrupts a vCPU that runs guest code outside ferrite's control (KVM_RUN).
pub trait Kick: Send + Sync {
    fn kick(&self);
}

impl CpuLink {
    pub fn new(lapic: Lapic, attention: Arc<Attention>) -> Self {
        let base = lapic.mmio_base().unwrap_or(u64::MAX);
        CpuLink {
            lapic: Mutex::new(lapic),
            lapic_base: AtomicU64::new(base),
            extint: AtomicBool::new(false),
            attention,
            thread: Mutex::new(None),
            kicker: Mutex::new(None),
        }
    }

    #[inline]
    pub fn intr(&self) -> bool {
        self.attention.intr.load(Ordering::Acquire)
    }

    #[inline]
    pub fn lapic_base(&self) -> u64 {
        self.lapic_base.load(Ordering::Relaxed)
    }

    pub fn set_thread(&self, t: Option<Thread>) {
        *lock(&self.thread) = t;
    }

    /// Installs (or removes) what gets the vCPU out of KVM_RUN.
    pub fn set_kicker(&self, k: Option<Box<dyn Kick>>) {
        *lock(&self.kicker) = k;
    }

    /// Wakes the vCPU's thread if it sleeps in HLT, or brings it out of KVM_RUN.
    pub fn wake(&self) {
        if let Some(t) = lock(&self.thread).as_ref() {
            t.unpark();
        }
        if let Some(k) = lock(&self.kicker).as_ref() {
            k.kick();
        }
    }

    /// Makes the vCPU return from `run` at its next block boundary, and wakes it.
    pub fn kick(&self) {
        self.attention.kick.store(true, Ordering::Release);
        self.wake();
    }
}

pub struct Interrupts {
    pub intc: Mutex<Intc>,
    pub cpus: Vec<CpuLink>,
    pub irqs: Arc<IrqLevels>,
    /// The PIC's INTR output.
    pic_intr: AtomicBool,
    /// KVM's in-kernel PIC, IOAPIC and LAPICs, when they serve the guest instead of these.
    external: std::sync::OnceLock<Arc<dyn ExternalIrqchip>>,
}

/// Interrupt controllers outside ferrite (KVM's in-kernel ones).
///
/// With `kernel-irqchip=on` ([`ExternalIrqchip::has_pic_and_ioapic`]) device lines arrive as
/// GSIs (0-15: ISA IRQs to the PIC and, IRQ0 on pin 2, the IOAPIC; 16 and up: IOAPIC pins),
/// MSIs as messages. With `split` only the local APICs are outside: ferrite's PIC and IOAPIC
/// serve the lines, the IOAPIC's messages go out as MSIs, and the PIC's vector is injected
/// by the vCPU that takes it ([`Interrupts::acknowledge`]).
pub trait ExternalIrqchip: Send + Sync {
    fn has_pic_and_ioapic(&self) -> bool;
    fn set_gsi(&self, gsi: u32, level: bool);
    fn send_msi(&self, address: u64, data: u32);
    /// `split`: the IOAPIC's entries changed (what each pin sends, `None` while masked). The
    /// outside LAPICs must know which vectors are level-triggered so that their EOIs come
    /// back to [`Interrupts::ioapic_eoi`].
    fn ioapic_entries_changed(&self, messages: &[Option<InterruptMessage>]);
}

impl Interrupts {
    /// Hands device interrupts to `chip` from now on.
    pub fn use_external(&self, chip: Arc<dyn ExternalIrqchip>) {
        let _ = self.external.set(chip);
    }

    /// The outside local APICs of `kernel-irqchip=split`.
    fn external_lapics(&self) -> Option<&dyn ExternalIrqchip> {
        self.external.get().filter(|c| !c.has_pic_and_ioapic()).map(|c| c.as_ref())
    }

    /// After a write to the IOAPIC: `split` tells the outside LAPICs its entries.
    pub fn ioapic_written(&self, ic: &Intc) {
        if let Some(chip) = self.external_lapics() {
            let masked = |p| ic.ioapic.redirection(p) & ferrite_hw::ioapic::RTE_MASKED != 0;
            let messages: Vec<_> =
                (0..ferrite_hw::ioapic::IOAPIC_PINS).map(|p| ic.ioapic.message(p).filter(|_| !masked(p))).collect();
            chip.ioapic_entries_changed(&messages);
        }
    }

    /// An EOI for a level-triggered vector reached the IOAPIC (from a LAPIC, or under
    /// `split` from KVM's): remote IRR clears, a still-asserted line sends again.
    pub fn ioapic_eoi(&self, vector: u8) {
        let mut ic = lock(&self.intc);
        ic.ioapic.eoi(vector);
        self.controllers_changed(ic);
    }

    /// PCI INTx line `pirq` went to `level`: the ISA IRQ the PIIX3 routes it to and that IRQ's
    /// level (PIRQs routed to one IRQ share it: high while any is).
    fn pirq_change(ic: &mut Intc, pirq: usize, level: bool) -> Option<(u8, bool)> {
        ic.pirq_levels[pirq] = level;
        let irq = ic.pirq_routes[pirq]?;
        Some((irq, (0..4).any(|p| ic.pirq_routes[p] == Some(irq) && ic.pirq_levels[p])))
    }

    /// [`Interrupts::sync`] with the controllers outside ferrite.
    fn sync_external(&self, chip: &dyn ExternalIrqchip) {
        let mut ic = lock(&self.intc);
        for (line, level, other) in self.irqs.take_changes() {
            let set = |gsi: u8, level: bool| {
                if other {
                    chip.set_gsi(gsi as u32, !level);
                }
                chip.set_gsi(gsi as u32, level);
            };
            if (PIRQ_LINE_BASE..PIRQ_LINE_BASE + 4).contains(&line) {
                if let Some((irq, shared)) = Self::pirq_change(&mut ic, (line - PIRQ_LINE_BASE) as usize, level) {
                    set(irq, shared);
                }
            }
            set(line, level);
        }
    }

    pub fn new(cpus: Vec<CpuLink>, irqs: Arc<IrqLevels>) -> Self {
        Interrupts {
            intc: Mutex::new(Intc {
                pic: PicPair::new(NoIrq),
                ioapic: Ioapic::new(0),
                pirq_routes: [None; 4],
                pirq_levels: [false; 4],
                pic_stats: Default::default(),
                ioapic_stats: Default::default(),
            }),
            cpus,
            irqs,
            pic_intr: AtomicBool::new(false),
            external: std::sync::OnceLock::new(),
        }
    }

    /// Recomputes vCPU `i`'s INTR line from its LAPIC and the PIC, waking it if raised.
    pub fn update_intr(&self, i: usize) {
        let link = &self.cpus[i];
        if self.external_lapics().is_some() {
            // Only the PIC's output is ferrite's to inject; KVM's LAPIC decides whether its
            // LINT0 takes it.
            let level = self.pic_intr.load(Ordering::Acquire);
            link.attention.intr.store(level, Ordering::Release);
            if level {
                link.wake();
            }
            return;
        }
        let l = lock(&link.lapic);
        link.lapic_base.store(l.mmio_base().unwrap_or(u64::MAX), Ordering::Relaxed);
        let level = l.has_interrupt().is_some()
            || (l.accepts_pic_interrupts() && self.pic_intr.load(Ordering::Acquire))
            || link.extint.load(Ordering::Acquire);
        drop(l);
        link.attention.intr.store(level, Ordering::Release);
        if level {
            link.wake();
        }
    }

    /// After a change to the PIC: publish its output to every CPU that may take it.
    fn pic_changed(&self, ic: &Intc) {
        let level = ic.pic.has_interrupt();
        if self.pic_intr.swap(level, Ordering::AcqRel) != level {
            for i in 0..self.cpus.len() {
                self.update_intr(i);
            }
        }
    }

    /// Propagates changed device line levels into the controllers, and what the controllers
    /// send on to the LAPICs. Cheap when nothing changed.
    pub fn sync(&self) {
        if !self.irqs.any_changed() {
            return;
        }
        if let Some(chip) = self.external.get().filter(|c| c.has_pic_and_ioapic()) {
            return self.sync_external(chip.as_ref());
        }
        let mut ic = lock(&self.intc);
        for (line, level, other) in self.irqs.take_changes() {
            // A line that went to the other level and back since the last look made an edge:
            // the controllers see the other level first.
            let drive = |ic: &mut Intc, pic_irq: Option<u8>, gsi: u8| {
                if let Some(irq) = pic_irq {
                    if other {
                        ic.pic_input(irq, !level);
                    }
                    ic.pic_input(irq, level);
                }
                if other {
                    ic.ioapic_input(gsi, !level);
                }
                ic.ioapic_input(gsi, level);
            };
            if line < 16 {
                drive(&mut ic, Some(line), isa_irq_to_gsi(line));
            } else if (PIRQ_LINE_BASE..PIRQ_LINE_BASE + 4).contains(&line) {
                // PCI INTx: level, to the PIIX3's routed ISA IRQ (on the PIC and the IOAPIC
                // pin of that number, as the ACPI link devices tell the OS) and to IOAPIC pins
                // 16-19. PIRQs routed to one IRQ share it: the IRQ is high while any is.
                let pirq = (line - PIRQ_LINE_BASE) as usize;
                if let Some((irq, shared)) = Self::pirq_change(&mut ic, pirq, level) {
                    if other && !level {
                        ic.pic_input(irq, true);
                    }
                    ic.pic_input(irq, shared);
                    ic.ioapic_input(irq, shared);
                }
                drive(&mut ic, None, line);
            } else {
                drive(&mut ic, None, line);
            }
        }
        self.controllers_changed(ic);
    }

    /// After a restore: the lines the devices re-drove reach the restored controllers (whose
    /// saved pin levels make them no new edges), then every CPU's INTR line is recomputed.
    pub fn restored(&self) {
        self.sync();
        let ic = lock(&self.intc);
        self.pic_intr.store(ic.pic.has_interrupt(), Ordering::Release);
        self.controllers_changed(ic);
        for i in 0..self.cpus.len() {
            self.update_intr(i);
        }
    }

    /// Delivers what the IOAPIC queued and publishes the PIC's output; consumes the lock.
    pub fn controllers_changed(&self, mut ic: MutexGuard<'_, Intc>) {
        let msgs: Vec<_> = ic.ioapic.drain_messages().collect();
        self.pic_changed(&ic);
        for m in &msgs {
            self.deliver(m, None);
        }
    }

    /// Delivers an APIC-bus message to the LAPICs it addresses (all matching for fixed,
    /// the lowest-priority one for lowest-priority delivery), or through `ipi`'s shorthand.
    pub fn deliver(&self, msg: &InterruptMessage, ipi: Option<&Ipi>) {
        if let Some(chip) = self.external_lapics() {
            // Only the IOAPIC sends here under `split` (ferrite's LAPICs see no guest access).
            let (address, data) = msg.to_msi();
            return chip.send_msi(address, data);
        }
        let targets = |l: &Lapic| match ipi {
            Some(ipi) => ipi.targets(l),
            None => l.matches_destination(msg.destination, msg.logical),
        };
        if msg.mode == DeliveryMode::LowestPriority {
            // Arbitration: the matching CPU with the lowest processor priority wins.
            let winner = (0..self.cpus.len())
                .filter_map(|i| {
                    let l = lock(&self.cpus[i].lapic);
                    targets(&l).then(|| (l.ppr(), i))
                })
                .min();
            if let Some((_, i)) = winner {
                lock(&self.cpus[i].lapic).deliver(msg);
                self.after_delivery(i, msg.mode);
            }
            return;
        }
        for i in 0..self.cpus.len() {
            let mut l = lock(&self.cpus[i].lapic);
            if targets(&l) {
                l.deliver(msg);
                drop(l);
                self.after_delivery(i, msg.mode);
            }
        }
    }

    fn after_delivery(&self, i: usize, mode: DeliveryMode) {
        match mode {
            // The vCPU thread takes these from its LAPIC when its `run` returns.
            DeliveryMode::Nmi | DeliveryMode::Init | DeliveryMode::StartUp | DeliveryMode::Smi => self.cpus[i].kick(),
            DeliveryMode::ExtInt => {
                self.cpus[i].extint.store(true, Ordering::Release);
                self.update_intr(i);
            }
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => self.update_intr(i),
        }
    }

    /// Routes what LAPIC `i` produced (IPIs, EOIs of level-triggered vectors) and refreshes
    /// its INTR line. Call after every access to the LAPIC.
    pub fn lapic_changed(&self, i: usize) {
        let outs: Vec<LapicOutput> = lock(&self.cpus[i].lapic).drain_output().collect();
        for o in outs {
            match o {
                LapicOutput::Eoi(v) => self.ioapic_eoi(v),
                LapicOutput::Ipi(ipi) => self.deliver(&ipi.message, Some(&ipi)),
            }
        }
        self.update_intr(i);
    }

    /// The INTA cycle of vCPU `i`: the PIC's vector while its INTR reaches this CPU (virtual
    /// wire, or a latched ExtINT), else the LAPIC's highest deliverable vector.
    pub fn acknowledge(&self, i: usize) -> Option<u8> {
        let link = &self.cpus[i];
        if self.external_lapics().is_some() {
            let mut ic = lock(&self.intc);
            // Another vCPU may have taken it since this one saw the line.
            let v = ic.pic.has_interrupt().then(|| ic.pic.acknowledge());
            self.controllers_changed(ic);
            self.update_intr(i);
            return v;
        }
        let mut l = lock(&link.lapic);
        let extint = l.take_extint() | link.extint.swap(false, Ordering::AcqRel);
        let from_pic = extint || (l.accepts_pic_interrupts() && self.pic_intr.load(Ordering::Acquire));
        let v = if from_pic {
            drop(l);
            let mut ic = lock(&self.intc);
            let v = ic.pic.acknowledge();
            self.controllers_changed(ic);
            Some(v)
        } else if l.has_interrupt().is_some() {
            let v = l.acknowledge();
            drop(l);
            Some(v)
        } else {
            None
        };
        self.update_intr(i);
        v
    }

    /// A message-signalled interrupt (PCI MSI/MSI-X, Intel SDM Vol. 3 11.11): the address
    /// selects the destination, the data the vector and delivery mode.
    pub fn send_msi(&self, address: u64, data: u32) {
        if address >> 20 != ferrite_hw::lapic::MSI_ADDRESS_BASE >> 20 {
            return;
        }
        if let Some(chip) = self.external.get() {
            return chip.send_msi(address, data);
        }
        if let Some(msg) = InterruptMessage::from_msi(address, data) {
            self.deliver(&msg, None);
        }
    }
}

impl ferrite_hw::pci::MsiSink for Interrupts {
    fn send_msi(&self, address: u64, data: u32) {
        Interrupts::send_msi(self, address, data)
    }
}

/// A device's interrupt line that devices may drive from their own threads (I/O completions,
/// received frames) as well as from vCPU accesses: it folds the new level into the interrupt
/// controllers at once, since no vCPU device access follows to do it.
pub struct SyncedLine {
    line: crate::irq::LineHandle,
    irq: Arc<Interrupts>,
}

impl SyncedLine {
    /// Line `line` of `irq`'s levels.
    pub fn new(irq: &Arc<Interrupts>, line: u8) -> Self {
        SyncedLine { line: crate::irq::LineHandle::new(&irq.irqs, line), irq: irq.clone() }
    }
}

impl ferrite_hw::IrqLine for SyncedLine {
    fn set_level(&self, level: bool) {
        self.line.set_level(level);
        self.irq.sync();
    }
}
