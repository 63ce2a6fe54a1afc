//! RDPKRU and WRPKRU (SDM Vol. 2 "RDPKRU", "WRPKRU"; Vol. 3, 4.6.2), and the PKRU update
//! every writer of the register (these, XRSTOR, XRSTORS) goes through.

use super::Handler;
use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::state::{cr4, reg};
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Rdpkru => rdpkru,
        Mnemonic::Wrpkru => wrpkru,
        _ => return None,
    })
}

/// Both exist at every privilege level only while CR4.PKE is set, and take ECX = 0.
fn check(cpu: &Cpu) -> Result<()> {
    if cpu.state.cr4 & cr4::PKE == 0 {
        return Err(Fault::ud());
    }
    if cpu.state.gpr[reg::RCX] as u32 != 0 {
        return Err(Fault::gp0());
    }
    Ok(())
}

/// EDX:EAX = 0:PKRU, the upper halves of RAX and RDX cleared.
fn rdpkru(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    check(cpu)?;
    cpu.state.gpr[reg::RAX] = cpu.state.pkru as u64;
    cpu.state.gpr[reg::RDX] = 0;
    Ok(())
}

/// PKRU = EAX; EDX must be 0.
fn wrpkru(cpu: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> Result<()> {
    check(cpu)?;
    if cpu.state.gpr[reg::RDX] as u32 != 0 {
        return Err(Fault::gp0());
    }
    cpu.set_pkru(cpu.state.gpr[reg::RAX] as u32);
    Ok(())
}

impl Cpu {
    /// Writes PKRU. Architecturally the TLB keeps its entries, but the soft TLB's tags
    /// encode the rights PKRU granted at fill time, so the entries of every key whose AD or
    /// WD bit changed are dropped (in every PCID's table).
    pub(crate) fn set_pkru(&mut self, v: u32) {
        let changed = self.state.pkru ^ v;
        self.state.pkru = v;
        if changed == 0 {
            return;
        }
        let keys = (0..16).filter(|k| (changed >> (2 * k)) & 3 != 0).fold(0u16, |m, k| m | 1 << k);
        self.catch_up_code();
        for t in self.live_tlbs() {
            t.flush_keys(keys);
        }
    }
}
