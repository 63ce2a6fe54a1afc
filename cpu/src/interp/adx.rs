//! ADX: ADCX and ADOX, unsigned additions that carry through CF or OF alone, so two carry
//! chains can interleave (SDM Vol. 2, ADCX/ADOX). No other flag changes.

use super::Handler;
use crate::bus::CpuBus;
use crate::exception::Result;
use crate::flags::size_mask;
use crate::state::flags::{CF, OF};
use crate::Cpu;
use iced_x86::{Instruction, Mnemonic};

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    Some(match insn.mnemonic() {
        Mnemonic::Adcx => |c, b, i| add_carry_through(c, b, i, CF),
        Mnemonic::Adox => |c, b, i| add_carry_through(c, b, i, OF),
        _ => return None,
    })
}

/// `dest ← dest + src + flag`, and `flag` ← the carry out of the operand size.
fn add_carry_through(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction, flag: u64) -> Result<()> {
    let size = cpu.op_size(insn, 0);
    let m = size_mask(size);
    let src = cpu.read_op(bus, insn, 1)? & m;
    let dst = cpu.reg(insn.op0_register()) & m;
    let carry_in = cpu.flag(flag) as u128;
    let sum = dst as u128 + src as u128 + carry_in;
    cpu.set_reg(insn.op0_register(), sum as u64 & m);
    let carry_out = sum >> (size as u32 * 8) != 0;
    cpu.set_arith_flags(flag, if carry_out { flag } else { 0 });
    Ok(())
}
