//! Saved state of virtio-net behind its transport (snapshots and migration): what the driver
//! set through the control queue and the configuration space (the address, the receive
//! modes, the MAC tables) and the link state.
//!
//! Not carried, because the device has none of it or derives it again: VLAN filtering,
//! all-unicast/no-multicast/no-unicast/no-broadcast modes, announcements and multiqueue are
//! not offered, so there is nothing to save; the header length, mergeable buffers and the
//! control queue's commands follow from the negotiated features, which the transport carries
//! and hands back when it re-activates the device. The packet counters are the host's, not
//! the guest's.
//!
//! Load this section before the transport's, into a freshly built device: the transport's
//! restore re-activates the device, which keeps what was loaded here (a reset would not).

use super::filter::{MacTable, RxFilter, MAC_TABLE_ENTRIES};
use super::VirtioNet;
use ferrite_persist::{check_max, Persist, RestoreError};
use serde::{Deserialize, Serialize};

/// One MAC filter table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MacTableState {
    pub entries: Vec<[u8; 6]>,
    /// The driver's list was longer than the table: every address of the kind matches.
    pub overflow: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtioNetState {
    /// The address the guest sees in `mac` (set by the driver, or the configured one).
    pub mac: [u8; 6],
    pub link_up: bool,
    pub promisc: bool,
    pub allmulti: bool,
    pub unicast: MacTableState,
    pub multicast: MacTableState,
}

impl MacTableState {
    fn save(t: &MacTable) -> Self {
        MacTableState { entries: t.entries.clone(), overflow: t.overflow }
    }

    /// The table, if the device could have built it.
    fn check(self, entries: &'static str, overflow: &'static str) -> Result<MacTable, RestoreError> {
        check_max(entries, self.entries.len(), MAC_TABLE_ENTRIES)?;
        if self.overflow && !self.entries.is_empty() {
            return Err(RestoreError::invalid(overflow, "an overflowed table keeps no entries"));
        }
        Ok(MacTable { entries: self.entries, overflow: self.overflow })
    }
}

impl Persist for VirtioNet {
    const SECTION: &'static str = "virtio-net";
    const VERSION: u32 = 1;
    type State = VirtioNetState;

    fn save(&self) -> VirtioNetState {
        let st = self.shared.lock();
        VirtioNetState {
            mac: st.mac,
            link_up: st.link_up,
            promisc: st.filter.promisc,
            allmulti: st.filter.allmulti,
            unicast: MacTableState::save(&st.filter.unicast),
            multicast: MacTableState::save(&st.filter.multicast),
        }
    }

    /// Takes the state over as it stands; the driver already knows it, so nothing is
    /// signalled (a pending configuration interrupt is the transport's).
    fn restore(&mut self, s: VirtioNetState) -> Result<(), RestoreError> {
        let filter = RxFilter {
            promisc: s.promisc,
            allmulti: s.allmulti,
            unicast: s.unicast.check("unicast.entries", "unicast.overflow")?,
            multicast: s.multicast.check("multicast.entries", "multicast.overflow")?,
        };
        let mut st = self.shared.lock();
        st.mac = s.mac;
        st.link_up = s.link_up;
        st.filter = filter;
        Ok(())
    }
}
