//! SSE4.2 CRC32: accumulates a CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) over an
//! 8/16/32/64-bit source, as the SDM's bit-reflected pseudo-code does. A general-purpose
//! instruction: no CR0/CR4 checks.

use super::*;

pub(super) fn lookup(insn: &Instruction) -> Option<Handler> {
    (insn.mnemonic() == Mnemonic::Crc32).then_some(crc32 as Handler)
}

/// CRC-32C polynomial, bit-reflected.
const POLY: u32 = 0x82f6_3b78;

/// Byte-at-a-time table.
static TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

pub(super) fn crc32c(mut crc: u32, data: u64, bytes: u8) -> u32 {
    for k in 0..bytes {
        let b = (data >> (8 * k)) as u8;
        crc = (crc >> 8) ^ TABLE[((crc as u8) ^ b) as usize];
    }
    crc
}

fn crc32(cpu: &mut Cpu, bus: &mut dyn CpuBus, insn: &Instruction) -> Result<()> {
    let size = cpu.op_size(insn, 1);
    let src = cpu.read_op(bus, insn, 1)?;
    let d = insn.op0_register();
    let crc = crc32c(cpu.reg(d) as u32, src, size);
    // The 64-bit forms zero-extend the 32-bit CRC into the full register.
    cpu.set_reg(d, crc as u64);
    Ok(())
}
