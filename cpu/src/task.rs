//! Hardware task switching (SDM Vol. 3, chapter 7): JMP/CALL to a TSS or task gate, IRET
//! with NT set, and interrupts through task gates.

use crate::bus::CpuBus;
use crate::exception::{Fault, Result};
use crate::Cpu;

impl Cpu {
    /// An interrupt or exception through a task gate naming TSS selector `sel`.
    pub(crate) fn task_switch_via_gate(&mut self, _bus: &mut dyn CpuBus, sel: u16, _ret: u64, _err: Option<u32>, ext: u32) -> Result<()> {
        // Task switching is not implemented yet: report the gate's TSS as invalid.
        Err(Fault::ts(crate::segment::sel_code(sel) + ext))
    }
}
