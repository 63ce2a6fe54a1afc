//! `kernel-irqchip=on`: KVM's in-kernel PIC, IOAPIC and local APICs serve the guest; ferrite's
//! devices raise GSIs (KVM_IRQ_LINE) and send MSIs (KVM_SIGNAL_MSI) into them. The GSI routes
//! follow the PC as ferrite's ACPI tables describe it: ISA IRQ n to PIC pin n and IOAPIC pin
//! n, except IRQ0 (the PIT), which the MADT overrides to IOAPIC pin 2; GSIs 16-23 are IOAPIC
//! pins only (PCI INTx).

use super::{KvmError, KvmVm};
use crate::pc::interrupts::{isa_irq_to_gsi, ExternalIrqchip};
use kvm_bindings::{
    kvm_irq_routing_entry, kvm_msi, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
    KVM_IRQ_ROUTING_IRQCHIP,
};
use std::sync::Arc;

/// IOAPIC pins of KVM's in-kernel IOAPIC.
const IOAPIC_PINS: u32 = 24;

fn route(gsi: u32, chip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry { gsi, type_: KVM_IRQ_ROUTING_IRQCHIP, ..Default::default() };
    e.u.irqchip.irqchip = chip;
    e.u.irqchip.pin = pin;
    e
}

/// Creates the in-kernel controllers (before any vCPU) with the PC's GSI routes.
pub fn create(vm: &KvmVm) -> Result<(), KvmError> {
    vm.vm.create_irq_chip().map_err(|e| KvmError::ioctl("KVM_CREATE_IRQCHIP", e))?;
    let mut routes = Vec::new();
    for gsi in 0..IOAPIC_PINS {
        if gsi < 16 {
            let (chip, pin) = if gsi < 8 { (KVM_IRQCHIP_PIC_MASTER, gsi) } else { (KVM_IRQCHIP_PIC_SLAVE, gsi - 8) };
            routes.push(route(gsi, chip, pin));
            routes.push(route(gsi, KVM_IRQCHIP_IOAPIC, isa_irq_to_gsi(gsi as u8) as u32));
        } else {
            routes.push(route(gsi, KVM_IRQCHIP_IOAPIC, gsi));
        }
    }
    let table = KvmIrqRouting::from_entries(&routes)
        .map_err(|_| KvmError::ioctl("KVM_SET_GSI_ROUTING", kvm_ioctls::Error::new(libc::E2BIG)))?;
    vm.vm.set_gsi_routing(&table).map_err(|e| KvmError::ioctl("KVM_SET_GSI_ROUTING", e))
}

/// The board's view of the in-kernel controllers.
pub struct KernelIrqchip(pub Arc<KvmVm>);

impl ExternalIrqchip for KernelIrqchip {
    fn set_gsi(&self, gsi: u32, level: bool) {
        if gsi < IOAPIC_PINS {
            if let Err(e) = self.0.vm.set_irq_line(gsi, level) {
                eprintln!("ferrite: KVM_IRQ_LINE({gsi}) failed: {e}");
            }
        }
    }

    fn send_msi(&self, address: u64, data: u32) {
        let msi = kvm_msi { address_lo: address as u32, address_hi: (address >> 32) as u32, data, ..Default::default() };
        if let Err(e) = self.0.vm.signal_msi(msi) {
            eprintln!("ferrite: KVM_SIGNAL_MSI failed: {e}");
        }
    }
}
