//! RDRAND and RDSEED (SDM Vol. 2): random numbers from the host. CF = 1 reports a valid
//! number; OF, SF, ZF, AF and PF are cleared. The host's own RDRAND/RDSEED supply them when it
//! has the instructions (RDSEED may run dry, and then the guest sees CF = 0 and retries, as
//! on hardware); otherwise the kernel's entropy pool does.

use super::Handler;
use crate::exception::Result;
use crate::flags::size_mask;
use crate::state::flags::{ARITH, CF};
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Rdrand => |c, _, i| deliver(c, i, host_rdrand()),
        Mnemonic::Rdseed => |c, _, i| deliver(c, i, host_rdseed()),
        _ => return None,
    })
}

/// Writes the number (0 when none was available) and the flags.
fn deliver(cpu: &mut Cpu, insn: &Instruction, v: Option<u64>) -> Result<()> {
    let r = insn.op0_register();
    let size = cpu.op_size(insn, 0);
    cpu.set_reg(r, v.unwrap_or(0) & size_mask(size));
    cpu.set_arith_flags(ARITH, if v.is_some() { CF } else { 0 });
    Ok(())
}

#[cfg(target_arch = "x86_64")]
fn host_rdrand() -> Option<u64> {
    if !std::arch::is_x86_feature_detected!("rdrand") {
        return pool();
    }
    let mut v = 0u64;
    // SAFETY: the host CPU reports RDRAND, checked just above.
    (0..10).find_map(|_| (unsafe { core::arch::x86_64::_rdrand64_step(&mut v) } == 1).then_some(v))
}

#[cfg(target_arch = "x86_64")]
fn host_rdseed() -> Option<u64> {
    if !std::arch::is_x86_feature_detected!("rdseed") {
        return pool();
    }
    let mut v = 0u64;
    // SAFETY: the host CPU reports RDSEED, checked just above.
    (unsafe { core::arch::x86_64::_rdseed64_step(&mut v) } == 1).then_some(v)
}

#[cfg(not(target_arch = "x86_64"))]
fn host_rdrand() -> Option<u64> {
    pool()
}

#[cfg(not(target_arch = "x86_64"))]
fn host_rdseed() -> Option<u64> {
    pool()
}

/// Eight bytes from the kernel's entropy pool.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn pool() -> Option<u64> {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).ok()?;
    Some(u64::from_le_bytes(b))
}
