//! Rules every VEX-encoded instruction shares (SDM Vol. 2, 2.3).
//!
//! The decoder already refuses what the encoding itself forbids: a LOCK, 66, F2, F3 or REX
//! prefix before VEX, and VEX.L or VEX.vvvv where an instruction does not allow them (iced
//! reports INVALID and the dispatcher raises #UD). What depends on the CPU's mode is here.

use crate::exception::{Fault, Result};
use crate::Cpu;

/// VEX prefixes are not recognised in real-address or virtual-8086 mode: #UD.
#[inline(always)]
pub(super) fn check_mode(cpu: &Cpu) -> Result<()> {
    let st = &cpu.state;
    if !st.protected() || st.v86() {
        return Err(Fault::ud());
    }
    Ok(())
}
