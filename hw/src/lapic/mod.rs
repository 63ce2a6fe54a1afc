//! Local APIC (Intel SDM Vol. 3A, chapter 11 "Advanced Programmable Interrupt Controller").
//!
//! One [`Lapic`] per vCPU. It is a pure register model: the xAPIC page at
//! [`LAPIC_BASE`] (see [`Lapic::mmio_read`]/[`Lapic::mmio_write`]), the x2APIC MSRs
//! 0x800-0x8FF ([`Lapic::msr_read`]/[`Lapic::msr_write`]), IA32_APIC_BASE and
//! IA32_TSC_DEADLINE. Time enters only as `now: Nanos` arguments.
//!
//! # Timer clock
//! The APIC timer counts at [`APIC_BUS_HZ`] = 1 GHz before the divide configuration, i.e.
//! one bus clock per nanosecond of guest time (CPUID leaf 0x15/0x16 may advertise it; Linux
//! calibrates it against the PIT anyway). TSC-deadline mode compares against the TSC: the
//! machine passes the current TSC value with each IA32_TSC_DEADLINE write
//! ([`Lapic::write_tsc_deadline`]) and the LAPIC converts the distance to nanoseconds at
//! the TSC frequency set by [`Lapic::set_tsc_hz`] (default 1 GHz, i.e. TSC == ns).
//!
//! # What the machine does
//! * Drive the timer: call [`Lapic::update`] whenever `now` reaches
//!   [`Lapic::next_event`] (and before checking for interrupts).
//! * Deliver messages: after any MMIO/MSR write, drain [`Lapic::drain_output`]. Each
//!   [`LapicOutput::Ipi`] goes to every LAPIC for which [`Ipi::targets`] is true, through
//!   [`Lapic::deliver`] (for lowest-priority, to one of them). Each [`LapicOutput::Eoi`]
//!   (EOI of a level-triggered vector) goes to every IOAPIC's `eoi(vector)`. IOAPIC
//!   messages likewise go to every LAPIC whose [`Lapic::matches_destination`] is true.
//! * NMI/SMI/INIT/SIPI: poll [`Lapic::take_nmi`], [`Lapic::take_smi`],
//!   [`Lapic::take_init`], [`Lapic::take_sipi`] and act on the vCPU.
//! * PIC and LAPIC together (virtual-wire mode, MP spec 3.6.2.2): the 8259's INTR output is
//!   wired to LINT0 of every LAPIC. When the CPU can take an interrupt:
//!   ```text
//!   if (lapic.accepts_pic_interrupts() && pic.intr_asserted()) || lapic.take_extint() {
//!       vector = pic.acknowledge();            // INTA cycle to the 8259, APIC bypassed
//!   } else if lapic.has_interrupt().is_some() {
//!       vector = lapic.acknowledge();          // IRR -> ISR
//!   }
//!   ```
//!   [`Lapic::accepts_pic_interrupts`] is true when the APIC is globally disabled (the PIC
//!   then drives INTR directly) or LVT LINT0 is unmasked in ExtINT mode. The BSP resets
//!   with LINT0 = ExtINT unmasked (virtual wire, as a BIOS would leave it), so guests that
//!   never touch the APIC see the PIC. Other LINT0/LINT1 modes (fixed, NMI) are driven
//!   with [`Lapic::set_lint`].

mod regs;
mod timer;
mod x2apic;
mod state;
pub use state::{LapicState, LapicTimerState};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod state_tests;

pub use regs::*;

use crate::{MmioDevice, Nanos};
use timer::Timer;

/// APIC timer input clock: 1 GHz, one tick per nanosecond (before the divider).
pub const APIC_BUS_HZ: u64 = 1_000_000_000;

/// Most messages held in the output queue; beyond this new ones are dropped (a machine
/// that drains after every exit never gets near it).
pub const OUTPUT_QUEUE_LIMIT: usize = 1024;

/// Delivery mode of an interrupt message (SDM 11.6.1, ICR bits 10:8; the IOAPIC uses the
/// same encoding in its redirection entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    Init,
    StartUp,
    ExtInt,
}

impl DeliveryMode {
    /// Decodes the three-bit field; 0b011 is reserved.
    pub fn from_bits(bits: u32) -> Option<Self> {
        Some(match bits & 7 {
            0 => Self::Fixed,
            1 => Self::LowestPriority,
            2 => Self::Smi,
            4 => Self::Nmi,
            5 => Self::Init,
            6 => Self::StartUp,
            7 => Self::ExtInt,
            _ => return None,
        })
    }

    pub fn bits(self) -> u32 {
        match self {
            Self::Fixed => 0,
            Self::LowestPriority => 1,
            Self::Smi => 2,
            Self::Nmi => 4,
            Self::Init => 5,
            Self::StartUp => 6,
            Self::ExtInt => 7,
        }
    }
}

/// An interrupt message on the (virtual) APIC bus, from an IOAPIC or a LAPIC's ICR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InterruptMessage {
    pub vector: u8,
    pub mode: DeliveryMode,
    /// Destination mode: `false` physical (APIC ID), `true` logical (matched against LDR).
    pub logical: bool,
    /// APIC ID or logical mask. 0xFF (xAPIC) / 0xFFFF_FFFF (x2APIC) is a broadcast.
    pub destination: u32,
    /// Trigger mode: level-triggered fixed interrupts set the TMR bit and make the EOI
    /// come back as [`LapicOutput::Eoi`].
    pub level_triggered: bool,
}

/// The MSI address window (SDM Vol. 3, 11.11.1): 0xFEEx_xxxx.
pub const MSI_ADDRESS_BASE: u64 = 0xFEE0_0000;

impl InterruptMessage {
    /// Decodes a message-signalled interrupt (SDM Vol. 3, 11.11.1-2: destination ID in
    /// address bits 19:12, destination mode in bit 2; vector, delivery mode and trigger
    /// mode in the data). `None` outside the MSI window or for a reserved delivery mode.
    pub fn from_msi(address: u64, data: u32) -> Option<Self> {
        if address >> 20 != MSI_ADDRESS_BASE >> 20 {
            return None;
        }
        Some(InterruptMessage {
            vector: data as u8,
            mode: DeliveryMode::from_bits(data >> 8)?,
            logical: address & (1 << 2) != 0,
            destination: ((address >> 12) & 0xFF) as u32,
            level_triggered: data & (1 << 15) != 0,
        })
    }

    /// The MSI address and data carrying this message (the inverse of [`Self::from_msi`]
    /// for 8-bit destinations; the data's level bit 14 says "asserted").
    pub fn to_msi(&self) -> (u64, u32) {
        let address = MSI_ADDRESS_BASE | u64::from(self.destination & 0xFF) << 12 | u64::from(self.logical) << 2;
        let data = u32::from(self.vector) | self.mode.bits() << 8 | 1 << 14 | u32::from(self.level_triggered) << 15;
        (address, data)
    }
}

/// ICR destination shorthand (SDM 11.6.1, bits 19:18).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Shorthand {
    /// Use the destination field.
    None,
    SelfOnly,
    AllIncludingSelf,
    AllExcludingSelf,
}

/// An inter-processor interrupt sent through the ICR, for the machine to deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ipi {
    /// APIC ID of the sender.
    pub source: u32,
    pub shorthand: Shorthand,
    pub message: InterruptMessage,
}

impl Ipi {
    /// Whether `target` (any LAPIC of the machine, the sender included) receives this IPI.
    pub fn targets(&self, target: &Lapic) -> bool {
        match self.shorthand {
            Shorthand::None => {
                target.matches_destination(self.message.destination, self.message.logical)
            }
            Shorthand::SelfOnly => target.id() == self.source,
            Shorthand::AllIncludingSelf => true,
            Shorthand::AllExcludingSelf => target.id() != self.source,
        }
    }
}

/// What a LAPIC asks the machine to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LapicOutput {
    /// Deliver this IPI.
    Ipi(Ipi),
    /// EOI of a level-triggered vector: broadcast to the IOAPICs (`Ioapic::eoi`).
    Eoi(u8),
}

/// One local APIC.
#[derive(Clone, Debug)]
pub struct Lapic {
    apic_base: u64,
    id: u32,
    tpr: u8,
    ldr: u32,
    dfr: u32,
    svr: u32,
    isr: VectorSet,
    tmr: VectorSet,
    irr: VectorSet,
    /// ESR as last latched by a write (SDM 11.5.3).
    esr: u32,
    /// Errors collected since the last ESR write.
    esr_pending: u32,
    icr_low: u32,
    icr_high: u32,
    lvt: [u32; LVT_COUNT],
    timer: Timer,
    tsc_hz: u64,
    lint_level: [bool; 2],
    pending_nmi: bool,
    pending_smi: bool,
    pending_init: bool,
    pending_sipi: Option<u8>,
    pending_extint: bool,
    output: Vec<LapicOutput>,
}

impl Lapic {
    /// A LAPIC after power-on reset, with APIC ID `id`; `bsp` sets IA32_APIC_BASE.BSP and
    /// puts LINT0 in virtual-wire ExtINT mode (see the module docs).
    pub fn new(id: u32, bsp: bool) -> Self {
        let mut lapic = Self {
            apic_base: LAPIC_BASE | APIC_BASE_ENABLE | if bsp { APIC_BASE_BSP } else { 0 },
            id,
            tpr: 0,
            ldr: 0,
            dfr: 0xFFFF_FFFF,
            svr: 0xFF,
            isr: VectorSet::default(),
            tmr: VectorSet::default(),
            irr: VectorSet::default(),
            esr: 0,
            esr_pending: 0,
            icr_low: 0,
            icr_high: 0,
            lvt: [LVT_MASKED; LVT_COUNT],
            timer: Timer::default(),
            tsc_hz: APIC_BUS_HZ,
            lint_level: [false; 2],
            pending_nmi: false,
            pending_smi: false,
            pending_init: false,
            pending_sipi: None,
            pending_extint: false,
            output: Vec::new(),
        };
        lapic.reset_registers();
        lapic
    }

    /// Register state after RESET/INIT (SDM 11.4.7.1): everything but the APIC ID and
    /// IA32_APIC_BASE returns to its power-up value. Pending NMI/SMI/SIPI latches clear.
    pub fn reset_registers(&mut self) {
        self.tpr = 0;
        self.ldr = 0;
        self.dfr = 0xFFFF_FFFF;
        self.svr = 0xFF;
        self.isr = VectorSet::default();
        self.tmr = VectorSet::default();
        self.irr = VectorSet::default();
        self.esr = 0;
        self.esr_pending = 0;
        self.icr_low = 0;
        self.icr_high = 0;
        self.lvt = [LVT_MASKED; LVT_COUNT];
        if self.is_bsp() {
            // Virtual wire: ExtINT through LINT0, as the BIOS programs it (MP spec 3.6.2.2).
            self.lvt[LVT_LINT0] = DeliveryMode::ExtInt.bits() << 8;
        }
        self.timer = Timer::default();
        self.pending_nmi = false;
        self.pending_smi = false;
        self.pending_sipi = None;
        self.pending_extint = false;
        if self.x2apic_mode() {
            self.ldr = x2apic::logical_id(self.id);
        }
    }

    /// APIC ID (the full 32-bit x2APIC ID; xAPIC shows bits 7:0 in ID[31:24]).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// IA32_APIC_BASE.BSP.
    pub fn is_bsp(&self) -> bool {
        self.apic_base & APIC_BASE_BSP != 0
    }

    /// IA32_APIC_BASE.EN: when clear the APIC is off and the PIC drives INTR directly.
    pub fn hw_enabled(&self) -> bool {
        self.apic_base & APIC_BASE_ENABLE != 0
    }

    /// SVR.APIC_ENABLE (and globally enabled).
    pub fn sw_enabled(&self) -> bool {
        self.hw_enabled() && self.svr & SVR_APIC_ENABLE != 0
    }

    /// Physical address the xAPIC page is decoded at, or `None` when the MMIO view is off
    /// (APIC globally disabled or in x2APIC mode).
    pub fn mmio_base(&self) -> Option<u64> {
        (self.hw_enabled() && !self.x2apic_mode()).then_some(self.apic_base & APIC_BASE_ADDR_MASK)
    }

    /// Sets the TSC frequency used to convert IA32_TSC_DEADLINE into nanoseconds.
    pub fn set_tsc_hz(&mut self, hz: u64) {
        self.tsc_hz = hz.max(1);
    }

    /// Messages for the machine (IPIs, level-triggered EOIs), oldest first.
    pub fn drain_output(&mut self) -> std::vec::Drain<'_, LapicOutput> {
        self.output.drain(..)
    }

    fn push_output(&mut self, out: LapicOutput) {
        if self.output.len() < OUTPUT_QUEUE_LIMIT {
            self.output.push(out);
        }
    }

    // ---- priorities and the IRR/ISR machinery (SDM 11.8) ----

    /// Processor priority (SDM 11.8.3.1).
    pub fn ppr(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xF0
        }
    }

    /// Arbitration priority (SDM 11.6.2.4, Figure 11-15).
    fn apr(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0);
        let irrv = self.irr.highest().unwrap_or(0);
        if self.tpr >> 4 >= (isrv >> 4).max(irrv >> 4) {
            self.tpr
        } else {
            (self.tpr & 0xF0).max(isrv & 0xF0).max(irrv & 0xF0)
        }
    }

    /// Task priority register.
    pub fn tpr(&self) -> u8 {
        self.tpr
    }

    /// Sets the TPR (also what a MOV to CR8 does: CR8 = TPR[7:4], SDM 11.8.6).
    pub fn set_tpr(&mut self, tpr: u8) {
        self.tpr = tpr;
    }

    /// Accepts a fixed interrupt into the IRR; `level_triggered` sets its TMR bit so that the
    /// EOI is reported. Vectors 0-15 are illegal (ESR bit 6). Dropped while the APIC is
    /// software- or hardware-disabled (SDM 11.4.7.2).
    pub fn accept_interrupt(&mut self, vector: u8, level_triggered: bool) {
        if !self.sw_enabled() {
            return;
        }
        if vector < 16 {
            self.signal_error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return;
        }
        self.irr.set(vector);
        if level_triggered {
            self.tmr.set(vector);
        } else {
            self.tmr.clear(vector);
        }
    }

    /// The highest pending vector whose priority class is above the PPR, if the APIC is
    /// software-enabled: what the CPU would take when it can.
    pub fn has_interrupt(&self) -> Option<u8> {
        if !self.sw_enabled() {
            return None;
        }
        let v = self.irr.highest()?;
        (v >> 4 > self.ppr() >> 4).then_some(v)
    }

    /// Interrupt acknowledge: moves the vector of [`Self::has_interrupt`] from IRR to ISR and
    /// returns it, or returns the spurious vector (SVR[7:0]) if nothing is deliverable any
    /// more (SDM 11.9).
    pub fn acknowledge(&mut self) -> u8 {
        match self.has_interrupt() {
            Some(v) => {
                self.irr.clear(v);
                self.isr.set(v);
                v
            }
            None => self.svr as u8,
        }
    }

    /// End of interrupt (write to the EOI register): retires the highest ISR vector. If it
    /// was level-triggered, queues [`LapicOutput::Eoi`] for the IOAPICs (SDM 11.8.5).
    pub fn eoi(&mut self) {
        let Some(v) = self.isr.highest() else { return };
        self.isr.clear(v);
        if self.tmr.contains(v) {
            self.tmr.clear(v);
            self.push_output(LapicOutput::Eoi(v));
        }
        for pin in [LVT_LINT0, LVT_LINT1] {
            if self.lvt[pin] & LVT_REMOTE_IRR != 0 && self.lvt[pin] as u8 == v {
                self.lvt[pin] &= !LVT_REMOTE_IRR;
            }
        }
    }

    /// Records an APIC error and raises the LVT error interrupt if unmasked (SDM 11.5.3).
    fn signal_error(&mut self, bits: u32) {
        self.esr_pending |= bits;
        let lvt = self.lvt[LVT_ERROR];
        let vector = lvt as u8;
        if lvt & LVT_MASKED == 0 && vector >= 16 && self.sw_enabled() {
            self.irr.set(vector);
            self.tmr.clear(vector);
        }
    }

    /// Raises the interrupt programmed in a local vector table entry (fixed, NMI, SMI,
    /// INIT or ExtINT delivery), as an edge.
    fn fire_lvt(&mut self, index: usize) {
        let lvt = self.lvt[index];
        if lvt & LVT_MASKED != 0 || !self.hw_enabled() {
            return;
        }
        let mode = if index == LVT_TIMER || index == LVT_ERROR {
            Some(DeliveryMode::Fixed)
        } else {
            DeliveryMode::from_bits(lvt >> 8)
        };
        match mode {
            Some(DeliveryMode::Fixed) => self.accept_interrupt(lvt as u8, false),
            Some(DeliveryMode::Nmi) => self.pending_nmi = true,
            Some(DeliveryMode::Smi) => self.pending_smi = true,
            Some(DeliveryMode::Init) => self.pending_init = true,
            Some(DeliveryMode::ExtInt) => self.pending_extint = true,
            _ => {}
        }
    }

    /// Drives the LINT0 (`pin` 0) or LINT1 (`pin` 1) input, as a logical (already
    /// polarity-corrected) level. Fixed mode honours the LVT trigger mode with remote IRR;
    /// NMI, SMI and INIT fire on a rising edge. ExtINT on LINT0 needs no call: see
    /// [`Self::accepts_pic_interrupts`].
    pub fn set_lint(&mut self, pin: usize, level: bool) {
        let Some(old) = self.lint_level.get(pin).copied() else {
            return;
        };
        self.lint_level[pin] = level;
        let index = LVT_LINT0 + pin;
        let lvt = self.lvt[index];
        let mode = DeliveryMode::from_bits(lvt >> 8);
        match mode {
            Some(DeliveryMode::Fixed) if lvt & LVT_LEVEL != 0 => {
                if level && lvt & (LVT_REMOTE_IRR | LVT_MASKED) == 0 && self.sw_enabled() {
                    self.accept_interrupt(lvt as u8, true);
                    if self.irr.contains(lvt as u8) {
                        self.lvt[index] |= LVT_REMOTE_IRR;
                    }
                }
            }
            Some(DeliveryMode::ExtInt) => {}
            _ => {
                if level && !old {
                    self.fire_lvt(index);
                }
            }
        }
    }

    /// Raises the thermal-sensor LVT interrupt.
    pub fn thermal_interrupt(&mut self) {
        self.fire_lvt(LVT_THERMAL);
    }

    /// Raises the performance-counter overflow LVT interrupt.
    pub fn perf_interrupt(&mut self) {
        self.fire_lvt(LVT_PERF);
    }

    /// True when the 8259's INTR reaches this CPU: the APIC is globally disabled, or LINT0
    /// is an unmasked ExtINT entry (virtual-wire mode).
    pub fn accepts_pic_interrupts(&self) -> bool {
        let lint0 = self.lvt[LVT_LINT0];
        !self.hw_enabled()
            || (lint0 & LVT_MASKED == 0
                && DeliveryMode::from_bits(lint0 >> 8) == Some(DeliveryMode::ExtInt))
    }

    /// Takes a latched ExtINT message (from an IOAPIC entry in ExtINT mode): the machine
    /// must then run an INTA cycle on the 8259 to get the vector.
    pub fn take_extint(&mut self) -> bool {
        std::mem::take(&mut self.pending_extint)
    }

    /// Takes a pending NMI.
    pub fn take_nmi(&mut self) -> bool {
        std::mem::take(&mut self.pending_nmi)
    }

    /// Takes a pending SMI.
    pub fn take_smi(&mut self) -> bool {
        std::mem::take(&mut self.pending_smi)
    }

    /// Takes a pending INIT: the machine resets the vCPU into wait-for-SIPI (APs) or
    /// restarts it (BSP). The LAPIC registers were already reset on delivery.
    pub fn take_init(&mut self) -> bool {
        std::mem::take(&mut self.pending_init)
    }

    /// Takes a pending start-up IPI vector: an AP waiting for SIPI starts at
    /// `vector << 12` (CS = vector << 8, IP = 0). The machine ignores it otherwise.
    pub fn take_sipi(&mut self) -> Option<u8> {
        self.pending_sipi.take()
    }

    /// Whether a message with this destination addresses this LAPIC (SDM 11.6.2): physical
    /// mode compares the APIC ID, logical mode the LDR in flat or cluster model (DFR), or
    /// the x2APIC cluster/bitmap LDR.
    pub fn matches_destination(&self, destination: u32, logical: bool) -> bool {
        if !self.hw_enabled() {
            return false;
        }
        if self.x2apic_mode() {
            if destination == 0xFFFF_FFFF {
                return true;
            }
            return if logical {
                destination >> 16 == self.ldr >> 16 && destination & self.ldr & 0xFFFF != 0
            } else {
                destination == self.id
            };
        }
        let dest = destination & 0xFF;
        if dest == 0xFF {
            return true;
        }
        if !logical {
            return dest == self.id & 0xFF;
        }
        let ldr = self.ldr >> 24;
        if self.dfr >> 28 == 0xF {
            // Flat model: 8-bit mask.
            dest & ldr != 0
        } else {
            // Cluster model: cluster in bits 7:4 (15 = all clusters), members in 3:0.
            (dest >> 4 == 0xF || dest >> 4 == ldr >> 4) && dest & ldr & 0xF != 0
        }
    }

    /// Delivers a message that addresses this LAPIC (the machine has checked
    /// [`Self::matches_destination`] or [`Ipi::targets`]).
    pub fn deliver(&mut self, msg: &InterruptMessage) {
        if !self.hw_enabled() {
            return;
        }
        match msg.mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                self.accept_interrupt(msg.vector, msg.level_triggered)
            }
            DeliveryMode::Nmi => self.pending_nmi = true,
            DeliveryMode::Smi => self.pending_smi = true,
            DeliveryMode::Init => {
                self.reset_registers();
                self.pending_init = true;
            }
            DeliveryMode::StartUp => self.pending_sipi = Some(msg.vector),
            DeliveryMode::ExtInt => self.pending_extint = true,
        }
    }

    /// Sends the IPI described by ICR (SDM 11.6.1). Self-only fixed IPIs are accepted
    /// locally; everything else is queued for the machine.
    fn send_ipi(&mut self) {
        let low = self.icr_low;
        let Some(mode) = DeliveryMode::from_bits(low >> ICR_DELIVERY_MODE_SHIFT) else {
            return;
        };
        let vector = low as u8;
        let shorthand = match (low >> ICR_SHORTHAND_SHIFT) & 3 {
            0 => Shorthand::None,
            1 => Shorthand::SelfOnly,
            2 => Shorthand::AllIncludingSelf,
            _ => Shorthand::AllExcludingSelf,
        };
        // INIT level de-assert only resynchronises arbitration IDs; modern CPUs ignore it
        // (SDM 11.6.1, "INIT Level De-assert").
        if mode == DeliveryMode::Init && low & ICR_LEVEL_ASSERT == 0 {
            return;
        }
        if matches!(mode, DeliveryMode::Fixed | DeliveryMode::LowestPriority) && vector < 16 {
            self.signal_error(ESR_SEND_ILLEGAL_VECTOR);
            return;
        }
        let destination = if self.x2apic_mode() {
            self.icr_high
        } else {
            self.icr_high >> 24
        };
        let message = InterruptMessage {
            vector,
            mode,
            logical: low & ICR_DEST_LOGICAL != 0,
            destination,
            level_triggered: low & ICR_TRIGGER_LEVEL != 0 && mode == DeliveryMode::Fixed,
        };
        if shorthand == Shorthand::SelfOnly && mode == DeliveryMode::Fixed {
            self.accept_interrupt(vector, message.level_triggered);
            return;
        }
        let ipi = Ipi {
            source: self.id,
            shorthand,
            message,
        };
        self.push_output(LapicOutput::Ipi(ipi));
    }

    // ---- register file ----

    /// Reads the 32-bit register at `reg` (16-byte aligned offset in the xAPIC page).
    /// `None` for reserved or write-only offsets.
    fn read_reg(&mut self, reg: u32, now: Nanos) -> Option<u32> {
        let index = ((reg >> 4) & 7) as usize;
        Some(match reg {
            REG_ID => (self.id & 0xFF) << 24,
            REG_VERSION => LAPIC_VERSION,
            REG_TPR => u32::from(self.tpr),
            REG_APR => u32::from(self.apr()),
            REG_PPR => u32::from(self.ppr()),
            REG_EOI | REG_RRD => 0,
            REG_LDR => self.ldr,
            REG_DFR => self.dfr,
            REG_SVR => self.svr,
            0x100..=0x170 => self.isr.0[index],
            0x180..=0x1F0 => self.tmr.0[index],
            0x200..=0x270 => self.irr.0[index],
            REG_ESR => self.esr,
            REG_ICR_LOW => self.icr_low,
            REG_ICR_HIGH => self.icr_high,
            REG_LVT_TIMER..=REG_LVT_ERROR => self.lvt[((reg - REG_LVT_TIMER) >> 4) as usize],
            REG_TIMER_INITIAL => self.timer.initial,
            REG_TIMER_CURRENT => self.timer_current(now),
            REG_TIMER_DIVIDE => self.timer.dcr,
            _ => return None,
        })
    }

    /// Writes the 32-bit register at `reg`. Returns `false` for reserved or read-only
    /// offsets (the write is dropped).
    fn write_reg(&mut self, reg: u32, value: u32, now: Nanos) -> bool {
        match reg {
            REG_ID => self.id = value >> 24,
            REG_TPR => self.tpr = value as u8,
            REG_EOI => self.eoi(),
            REG_LDR => self.ldr = value & 0xFF00_0000,
            REG_DFR => self.dfr = value | 0x0FFF_FFFF,
            REG_SVR => self.write_svr(value),
            REG_ESR => self.esr = std::mem::take(&mut self.esr_pending),
            REG_ICR_LOW => {
                self.icr_low = value & ICR_LOW_WRITABLE;
                self.send_ipi();
            }
            REG_ICR_HIGH => self.icr_high = value & 0xFF00_0000,
            REG_LVT_TIMER..=REG_LVT_ERROR => {
                self.write_lvt(((reg - REG_LVT_TIMER) >> 4) as usize, value, now)
            }
            REG_TIMER_INITIAL => self.write_initial_count(value, now),
            REG_TIMER_DIVIDE => self.write_divide(value, now),
            _ => return false,
        }
        true
    }

    fn write_svr(&mut self, value: u32) {
        self.svr = value & SVR_WRITABLE;
        if self.svr & SVR_APIC_ENABLE == 0 {
            // Software disable masks every LVT entry (SDM 11.4.7.2).
            for lvt in &mut self.lvt {
                *lvt |= LVT_MASKED;
            }
        }
    }

    fn write_lvt(&mut self, index: usize, value: u32, now: Nanos) {
        let writable = match index {
            LVT_TIMER => LVT_TIMER_WRITABLE,
            LVT_LINT0 | LVT_LINT1 => LVT_LINT_WRITABLE,
            LVT_ERROR => LVT_ERROR_WRITABLE,
            _ => LVT_TP_WRITABLE,
        };
        let old = self.lvt[index];
        if index == LVT_TIMER {
            self.timer_rebase(now);
        }
        let mut new = (value & writable) | (old & LVT_REMOTE_IRR);
        if self.svr & SVR_APIC_ENABLE == 0 {
            // While software-disabled the mask bits cannot be cleared (SDM 11.4.7.2).
            new |= LVT_MASKED;
        }
        if new & LVT_LEVEL == 0 {
            new &= !LVT_REMOTE_IRR;
        }
        self.lvt[index] = new;
        if index == LVT_TIMER {
            self.timer_lvt_written(old, now);
        }
    }

    /// Reads the xAPIC page at `offset` (0..0x1000), `size` 1, 2, 4 or 8 bytes. Registers
    /// are 32 bits wide on 16-byte boundaries; narrower reads return the addressed bytes of
    /// that dword, bytes 4-15 of each slot read as zero. Reserved registers read 0 and set
    /// ESR "illegal register address".
    pub fn mmio_read(&mut self, offset: u64, size: u8, now: Nanos) -> u64 {
        if self.mmio_base().is_none() {
            return 0;
        }
        let reg = (offset & 0xFF0) as u32;
        let byte = (offset & 0xF) as u32;
        let value = match self.read_reg(reg, now) {
            Some(v) => v,
            None => {
                self.signal_error(ESR_ILLEGAL_REGISTER);
                0
            }
        };
        if byte >= 4 {
            return 0;
        }
        let v = u64::from(value >> (byte * 8));
        match size {
            1 => v & 0xFF,
            2 => v & 0xFFFF,
            _ => v,
        }
    }

    /// Writes the xAPIC page. Only dword writes (4 bytes, or 8 bytes taken as their low
    /// dword) at the start of a 16-byte slot reach a register; other writes are dropped.
    pub fn mmio_write(&mut self, offset: u64, size: u8, value: u64, now: Nanos) {
        if self.mmio_base().is_none() || offset & 0xF != 0 || !(size == 4 || size == 8) {
            return;
        }
        let reg = (offset & 0xFF0) as u32;
        if !self.write_reg(reg, value as u32, now) {
            self.signal_error(ESR_ILLEGAL_REGISTER);
        }
    }

    /// An [`MmioDevice`] view of the xAPIC page at time `now`, for buses that want one.
    pub fn mmio(&mut self, now: Nanos) -> LapicMmio<'_> {
        LapicMmio { lapic: self, now }
    }
}

/// [`Lapic`] borrowed at a fixed time, implementing [`MmioDevice`].
pub struct LapicMmio<'a> {
    pub lapic: &'a mut Lapic,
    pub now: Nanos,
}

impl MmioDevice for LapicMmio<'_> {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        self.lapic.mmio_read(offset, size, self.now)
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        self.lapic.mmio_write(offset, size, value, self.now)
    }
}
