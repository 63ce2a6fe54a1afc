//! KVM's in-kernel interrupt controllers.
//!
//! `kernel-irqchip=on`: KVM's PIC, IOAPIC and local APICs serve the guest; ferrite's devices
//! raise GSIs (KVM_IRQ_LINE) and send MSIs (KVM_SIGNAL_MSI) into them. The GSI routes follow
//! the PC as ferrite's ACPI tables describe it: ISA IRQ n to PIC pin n and IOAPIC pin n,
//! except IRQ0 (the PIT), which the MADT overrides to IOAPIC pin 2; GSIs 16-23 are IOAPIC pins
//! only (PCI INTx).
//!
//! `kernel-irqchip=split` (KVM_CAP_SPLIT_IRQCHIP): only the local APICs are KVM's. Ferrite's
//! PIC and IOAPIC take the device lines; the IOAPIC's messages reach KVM's LAPICs as MSIs, and
//! the PIC's vector is injected by the vCPU (KVM_INTERRUPT, which KVM then passes through
//! LINT0). For the EOIs of level-triggered IOAPIC vectors to come back (KVM_EXIT_IOAPIC_EOI),
//! KVM must know the IOAPIC's entries: GSIs 0-23 are reserved for it and routed as the MSIs
//! its unmasked entries send (KVM reads only their trigger mode, vector and destination).

use super::{KvmError, KvmVm};
use crate::pc::interrupts::{isa_irq_to_gsi, ExternalIrqchip};
use ferrite_hw::lapic::InterruptMessage;
use kvm_bindings::{
    kvm_enable_cap, kvm_irq_routing_entry, kvm_msi, KvmIrqRouting, KVM_CAP_SPLIT_IRQCHIP, KVM_IRQCHIP_IOAPIC,
    KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
};
use std::sync::{Arc, Mutex};

/// IOAPIC pins (KVM's in-kernel IOAPIC, or the GSIs reserved for ferrite's under `split`).
const IOAPIC_PINS: u32 = ferrite_hw::ioapic::IOAPIC_PINS as u32;

fn chip_route(gsi: u32, chip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry { gsi, type_: KVM_IRQ_ROUTING_IRQCHIP, ..Default::default() };
    e.u.irqchip.irqchip = chip;
    e.u.irqchip.pin = pin;
    e
}

fn msi_route(gsi: u32, address: u64, data: u32) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry { gsi, type_: KVM_IRQ_ROUTING_MSI, ..Default::default() };
    e.u.msi.address_lo = address as u32;
    e.u.msi.address_hi = (address >> 32) as u32;
    e.u.msi.data = data;
    e
}

fn set_routes(vm: &KvmVm, routes: &[kvm_irq_routing_entry]) -> Result<(), KvmError> {
    let table = KvmIrqRouting::from_entries(routes)
        .map_err(|_| KvmError::ioctl("KVM_SET_GSI_ROUTING", kvm_ioctls::Error::new(libc::E2BIG)))?;
    vm.vm.set_gsi_routing(&table).map_err(|e| KvmError::ioctl("KVM_SET_GSI_ROUTING", e))
}

/// `on`: creates the in-kernel controllers (before any vCPU) with the PC's GSI routes.
pub fn create(vm: &KvmVm) -> Result<(), KvmError> {
    vm.vm.create_irq_chip().map_err(|e| KvmError::ioctl("KVM_CREATE_IRQCHIP", e))?;
    let mut routes = Vec::new();
    for gsi in 0..IOAPIC_PINS {
        if gsi < 16 {
            let (chip, pin) = if gsi < 8 { (KVM_IRQCHIP_PIC_MASTER, gsi) } else { (KVM_IRQCHIP_PIC_SLAVE, gsi - 8) };
            routes.push(chip_route(gsi, chip, pin));
            routes.push(chip_route(gsi, KVM_IRQCHIP_IOAPIC, isa_irq_to_gsi(gsi as u8) as u32));
        } else {
            routes.push(chip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi));
        }
    }
    set_routes(vm, &routes)
}

/// `split`: in-kernel local APICs only (before any vCPU), GSIs 0-23 reserved for the IOAPIC.
pub fn create_split(vm: &KvmVm) -> Result<(), KvmError> {
    if !vm.kvm.check_extension(kvm_ioctls::Cap::SplitIrqchip) {
        return Err(KvmError::MissingCapability("SPLIT_IRQCHIP (for kernel-irqchip=split)"));
    }
    let mut cap = kvm_enable_cap { cap: KVM_CAP_SPLIT_IRQCHIP, ..Default::default() };
    cap.args[0] = u64::from(IOAPIC_PINS);
    vm.vm.enable_cap(&cap).map_err(|e| KvmError::ioctl("KVM_ENABLE_CAP(SPLIT_IRQCHIP)", e))
}

/// The board's view of KVM's in-kernel controllers.
pub struct KvmIrqchip {
    vm: Arc<KvmVm>,
    /// `split`: the IOAPIC routes KVM was last given (re-sent only when they change).
    ioapic_routes: Mutex<Vec<Option<(u64, u32)>>>,
}

impl KvmIrqchip {
    pub fn new(vm: Arc<KvmVm>) -> Self {
        KvmIrqchip { vm, ioapic_routes: Mutex::new(Vec::new()) }
    }
}

impl ExternalIrqchip for KvmIrqchip {
    fn has_pic_and_ioapic(&self) -> bool {
        self.vm.irqchip.pic_in_kernel()
    }

    fn set_gsi(&self, gsi: u32, level: bool) {
        if gsi < IOAPIC_PINS {
            if let Err(e) = self.vm.vm.set_irq_line(gsi, level) {
                eprintln!("ferrite: KVM_IRQ_LINE({gsi}) failed: {e}");
            }
        }
    }

    fn send_msi(&self, address: u64, data: u32) {
        let msi = kvm_msi { address_lo: address as u32, address_hi: (address >> 32) as u32, data, ..Default::default() };
        if let Err(e) = self.vm.vm.signal_msi(msi) {
            eprintln!("ferrite: KVM_SIGNAL_MSI failed: {e}");
        }
    }

    fn ioapic_entries_changed(&self, messages: &[Option<InterruptMessage>]) {
        let msis: Vec<Option<(u64, u32)>> = messages.iter().map(|m| m.map(|m| m.to_msi())).collect();
        let mut last = crate::pc::interrupts::lock(&self.ioapic_routes);
        if *last == msis {
            return;
        }
        // Masked pins keep no route; the others are routed as the MSI they send.
        let table: Vec<_> =
            msis.iter().enumerate().filter_map(|(gsi, m)| m.map(|(a, d)| msi_route(gsi as u32, a, d))).collect();
        match set_routes(&self.vm, &table) {
            Ok(()) => *last = msis,
            Err(e) => eprintln!("ferrite: {e}"),
        }
    }
}
