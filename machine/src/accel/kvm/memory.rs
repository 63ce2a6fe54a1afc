//! Guest memory as KVM memory slots: the same host mappings the TCG vCPUs and the devices use
//! (`GuestMemory::host_regions`), RAM writable, ROM and write-protected PAM segments
//! read-only (writes exit as MMIO, where the board drops them or sends them to shadow RAM);
//! holes and device memory have no slot, so accesses there exit to the device model. The
//! slots follow the PAM registers: after a guest I/O exit that changed the layout, the vCPU
//! that made it re-syncs them before running on.

use super::KvmError;
use ferrite_memory::{GuestMemory, HostRegion};
use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY};
use kvm_ioctls::VmFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// One installed slot (host address as an integer: the table is shared between threads).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Slot {
    gpa: u64,
    len: u64,
    host: u64,
    read_only: bool,
}

impl From<&HostRegion> for Slot {
    fn from(r: &HostRegion) -> Self {
        Slot { gpa: r.gpa, len: r.len, host: r.host as u64, read_only: r.read_only }
    }
}

pub struct Slots {
    /// Slot number → what it maps (`None`: free).
    table: Mutex<SlotTable>,
    /// The layout generation the slots were last synced to (`u64::MAX`: never), read without
    /// the lock on every port write.
    synced: AtomicU64,
}

struct SlotTable {
    slots: Vec<Option<Slot>>,
    dirty_log: bool,
}

impl Slots {
    pub fn new() -> Self {
        Slots {
            table: Mutex::new(SlotTable { slots: Vec::new(), dirty_log: false }),
            synced: AtomicU64::new(u64::MAX),
        }
    }

    /// Brings KVM's slots in line with `mem`'s layout if it changed since the last sync.
    pub fn sync(&self, vm: &VmFd, mem: &GuestMemory) -> Result<(), KvmError> {
        if self.synced.load(Ordering::Acquire) == mem.layout_generation() {
            return Ok(());
        }
        let mut t = crate::pc::interrupts::lock(&self.table);
        let generation = mem.layout_generation();
        // Another vCPU may have synced while this one waited for the lock.
        if self.synced.load(Ordering::Acquire) == generation {
            return Ok(());
        }
        let wanted: Vec<Slot> = mem.host_regions().iter().map(Slot::from).collect();
        // Slots that no longer match go first, so no two slots ever overlap.
        for n in 0..t.slots.len() {
            if let Some(s) = t.slots[n].filter(|s| !wanted.contains(s)) {
                set_region(vm, n as u32, &Slot { len: 0, ..s }, false)?;
                t.slots[n] = None;
            }
        }
        for s in wanted {
            if t.slots.contains(&Some(s)) {
                continue;
            }
            let n = match t.slots.iter().position(Option::is_none) {
                Some(n) => n,
                None => {
                    t.slots.push(None);
                    t.slots.len() - 1
                }
            };
            set_region(vm, n as u32, &s, t.dirty_log)?;
            t.slots[n] = Some(s);
        }
        self.synced.store(generation, Ordering::Release);
        Ok(())
    }

    /// Starts KVM's dirty logging on the writable slots (migration, snapshots).
    pub fn start_dirty_log(&self, vm: &VmFd) -> Result<(), KvmError> {
        let mut t = crate::pc::interrupts::lock(&self.table);
        t.dirty_log = true;
        for (n, s) in t.slots.iter().enumerate() {
            if let Some(s) = s.filter(|s| !s.read_only) {
                set_region(vm, n as u32, &s, true)?;
            }
        }
        Ok(())
    }

    /// Folds the pages KVM saw the guest write since the last call into the machine's own
    /// dirty log (where DMA and loaders already record theirs).
    pub fn collect_dirty_log(&self, vm: &VmFd, mem: &GuestMemory) -> Result<(), KvmError> {
        let t = crate::pc::interrupts::lock(&self.table);
        if !t.dirty_log {
            return Ok(());
        }
        for (n, s) in t.slots.iter().enumerate() {
            let Some(s) = s.filter(|s| !s.read_only) else { continue };
            let bitmap = vm
                .get_dirty_log(n as u32, s.len as usize)
                .map_err(|e| KvmError::ioctl("KVM_GET_DIRTY_LOG", e))?;
            for (w, word) in bitmap.iter().enumerate() {
                let mut bits = *word;
                while bits != 0 {
                    let page = (w * 64) as u64 + bits.trailing_zeros() as u64;
                    mem.tracking().dirty.set_range(s.gpa + page * 4096, 4096);
                    bits &= bits - 1;
                }
            }
        }
        Ok(())
    }
}

fn set_region(vm: &VmFd, slot: u32, s: &Slot, log_dirty: bool) -> Result<(), KvmError> {
    let mut flags = 0;
    if s.read_only {
        flags |= KVM_MEM_READONLY;
    } else if log_dirty {
        flags |= KVM_MEM_LOG_DIRTY_PAGES;
    }
    let region = kvm_userspace_memory_region {
        slot,
        flags,
        guest_phys_addr: s.gpa,
        memory_size: s.len,
        userspace_addr: s.host,
    };
    // SAFETY: the host range is part of a mapping owned by the machine's GuestMemory, which
    // outlives the VM (the VM is dropped with the board that holds both), and is never
    // unmapped while the VM exists.
    unsafe { vm.set_user_memory_region(region) }.map_err(|e| KvmError::ioctl("KVM_SET_USER_MEMORY_REGION", e))
}

#[cfg(test)]
mod tests {
    use super::super::KvmVm;
    use ferrite_memory::GuestMemory;
    use std::sync::Arc;

    /// A guest store under KVM lands in the shared RAM and, once the dirty log runs, in the
    /// machine's dirty log; a write-protected legacy segment (read-only slot) keeps its bytes.
    #[test]
    fn guest_stores_reach_the_shared_ram_and_the_dirty_log() {
        if super::super::usable().is_err() {
            println!("SKIPPED: /dev/kvm is not usable here");
            return;
        }
        let mem = Arc::new(GuestMemory::new(0x20_0000, 0).unwrap());
        // Real mode at 0:1000: mov byte [0x5000], 0x5a; mov byte [0xc0000], 0x77; hlt
        mem.write(0x1000, &[0xc6, 0x06, 0x00, 0x50, 0x5a, 0xb8, 0x00, 0xc0, 0x8e, 0xd8, 0xc6, 0x06, 0x00, 0x00, 0x77, 0xf4]).unwrap();
        mem.write(0xc_0000, &[0x11]).unwrap();
        let mut attrs = [ferrite_memory::LegacyAttr::RAM; ferrite_memory::LEGACY_SEGMENTS];
        attrs[1] = ferrite_memory::LegacyAttr { read_ram: true, write_ram: false };
        mem.set_legacy(&attrs);
        mem.take_dirty();
        let vm = KvmVm::new(mem.clone(), crate::config::KernelIrqchip::Off, true).unwrap();
        vm.start_dirty_log().unwrap();
        let mut vcpu = vm.vm.create_vcpu(0).unwrap();
        let mut sregs = vcpu.get_sregs().unwrap();
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        vcpu.set_sregs(&sregs).unwrap();
        vcpu.set_regs(&kvm_bindings::kvm_regs { rip: 0x1000, rflags: 2, ..Default::default() }).unwrap();
        loop {
            match vcpu.run().unwrap() {
                kvm_ioctls::VcpuExit::Hlt => break,
                // The store to the read-only slot comes out as MMIO: the board would drop it.
                kvm_ioctls::VcpuExit::MmioWrite(addr, data) => assert_eq!((addr, data), (0xc_0000, &[0x77][..])),
                other => panic!("unexpected exit {other:?}"),
            }
        }
        assert_eq!(mem.read_u32(0x5000).unwrap() & 0xff, 0x5a);
        assert_eq!(mem.read_u32(0xc_0000).unwrap() & 0xff, 0x11);
        vm.collect_dirty_log().unwrap();
        let dirty = mem.take_dirty();
        assert!(dirty.contains(&5), "page 5 is dirty: {dirty:?}");
    }
}
