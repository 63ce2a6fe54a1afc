//! Saved state of the IOAPIC (snapshots and migration).

use super::*;
use ferrite_persist::{check_max, Persist, RestoreError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoapicState {
    /// IOAPIC ID (bits 3:0).
    pub id: u8,
    pub ioregsel: u8,
    /// The 24 redirection entries, remote IRR included.
    pub redirection: [u64; IOAPIC_PINS],
    /// Input pin levels, bit per pin.
    pub input_levels: u32,
    /// Messages for the LAPICs not yet drained by the machine.
    pub pending_messages: Vec<InterruptMessage>,
}

impl Persist for Ioapic {
    const SECTION: &'static str = "ioapic";
    const VERSION: u32 = 1;
    type State = IoapicState;

    fn save(&self) -> IoapicState {
        IoapicState {
            id: self.id,
            ioregsel: self.ioregsel,
            redirection: self.redir,
            input_levels: self.lines,
            pending_messages: self.messages.clone(),
        }
    }

    /// The IOAPIC drives no line itself: pending messages are handed over by
    /// [`Ioapic::drain_messages`] as usual.
    fn restore(&mut self, s: IoapicState) -> Result<(), RestoreError> {
        check_max("id", s.id, 0xF)?;
        check_max("input_levels", s.input_levels, (1 << IOAPIC_PINS) - 1)?;
        check_max("pending_messages", s.pending_messages.len(), MESSAGE_QUEUE_LIMIT)?;
        if let Some(pin) = s.redirection.iter().position(|&rte| rte & !(RTE_WRITABLE | RTE_REMOTE_IRR) != 0) {
            return Err(RestoreError::invalid("redirection", format!("entry {pin} sets read-only bits")));
        }
        self.id = s.id;
        self.ioregsel = s.ioregsel;
        self.redir = s.redirection;
        self.lines = s.input_levels;
        self.messages = s.pending_messages;
        Ok(())
    }
}
