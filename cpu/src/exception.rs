//! Guest faults as values: an instruction that faults returns `Err(Exception)`, and the
//! execution loop delivers it through the IVT/IDT (see `interrupt.rs`).

/// Exception vectors (SDM Vol. 3, Table 6-1).
pub mod vector {
    pub const DE: u8 = 0;
    pub const DB: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BP: u8 = 3;
    pub const OF: u8 = 4;
    pub const BR: u8 = 5;
    pub const UD: u8 = 6;
    pub const NM: u8 = 7;
    pub const DF: u8 = 8;
    pub const TS: u8 = 10;
    pub const NP: u8 = 11;
    pub const SS: u8 = 12;
    pub const GP: u8 = 13;
    pub const PF: u8 = 14;
    pub const MF: u8 = 16;
    pub const AC: u8 = 17;
    pub const MC: u8 = 18;
    pub const XM: u8 = 19;
}

/// Page-fault error code bits (SDM Vol. 3, 4.7).
pub mod pf {
    pub const PRESENT: u32 = 1 << 0;
    pub const WRITE: u32 = 1 << 1;
    pub const USER: u32 = 1 << 2;
    pub const RSVD: u32 = 1 << 3;
    pub const FETCH: u32 = 1 << 4;
    /// A protection-key violation (SDM Vol. 3, 4.7).
    pub const PK: u32 = 1 << 5;
}

/// Something that stops an instruction before it retires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// An architectural exception to deliver to the guest. For #PF, CR2 is already written.
    Exception { vector: u8, error_code: Option<u32> },
    /// Three faults in a row (or a fault the CPU cannot deliver at all): the machine shuts down.
    TripleFault,
}

impl Fault {
    pub const fn exc(vector: u8) -> Fault {
        Fault::Exception { vector, error_code: None }
    }
    pub const fn exc_code(vector: u8, code: u32) -> Fault {
        Fault::Exception { vector, error_code: Some(code) }
    }
    /// #GP(0), the most common fault.
    pub const fn gp0() -> Fault {
        Fault::exc_code(vector::GP, 0)
    }
    pub const fn gp(selector_code: u32) -> Fault {
        Fault::exc_code(vector::GP, selector_code)
    }
    pub const fn ud() -> Fault {
        Fault::exc(vector::UD)
    }
    pub const fn ss(code: u32) -> Fault {
        Fault::exc_code(vector::SS, code)
    }
    pub const fn np(code: u32) -> Fault {
        Fault::exc_code(vector::NP, code)
    }
    pub const fn ts(code: u32) -> Fault {
        Fault::exc_code(vector::TS, code)
    }
    pub const fn de() -> Fault {
        Fault::exc(vector::DE)
    }
}

pub type Result<T> = core::result::Result<T, Fault>;

/// Exceptions whose delivery pushes an error code.
pub fn pushes_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21)
}

/// Class for the double-fault rules (SDM Vol. 3, Table 6-4/6-5).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultClass {
    Benign,
    Contributory,
    PageFault,
    DoubleFault,
}

pub fn fault_class(vector: u8) -> FaultClass {
    match vector {
        0 | 10 | 11 | 12 | 13 => FaultClass::Contributory,
        14 => FaultClass::PageFault,
        8 => FaultClass::DoubleFault,
        _ => FaultClass::Benign,
    }
}
