//! The TCG accelerator: ferrite's own CPU (interpreter and JIT) runs the guest code against
//! one vCPU's view of the board.

use super::VmExit;
use ferrite_cpu::RunExit;

/// Instructions per `run` of the CPU. Only a bound: the machine reaches a vCPU at once through
/// its exit handle, so nothing waits for it to end.
pub const SLICE: u64 = 1 << 22;

pub fn exit(e: RunExit) -> VmExit {
    match e {
        RunExit::Halted => VmExit::Halted,
        RunExit::Budget | RunExit::Kicked => VmExit::Kicked,
        RunExit::Shutdown => VmExit::Shutdown,
        RunExit::Debug => VmExit::Debug,
    }
}
