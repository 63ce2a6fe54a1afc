//! Receive filtering (5.1.6.5.1-2): promiscuous and all-multicast modes and the MAC table
//! the driver programs through the control queue. The power-on state is promiscuous, as in
//! QEMU, so a driver without `VIRTIO_NET_F_CTRL_RX` receives everything.

/// Entries kept per MAC table; a longer table means "accept every address of that kind".
pub const MAC_TABLE_ENTRIES: usize = 64;
const BROADCAST: [u8; 6] = [0xFF; 6];

/// A list of addresses, or "all of them" when the driver's list was too long.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MacTable {
    pub entries: Vec<[u8; 6]>,
    pub overflow: bool,
}

impl MacTable {
    /// A table from the driver's list (kept if it fits, else overflowed).
    pub fn from_list(list: Vec<[u8; 6]>) -> Self {
        if list.len() > MAC_TABLE_ENTRIES {
            Self::overflowed()
        } else {
            MacTable { entries: list, overflow: false }
        }
    }

    /// A table that matches every address.
    pub fn overflowed() -> Self {
        MacTable { entries: Vec::new(), overflow: true }
    }

    fn matches(&self, addr: &[u8; 6]) -> bool {
        self.overflow || self.entries.contains(addr)
    }
}

/// Which destination addresses the device delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RxFilter {
    pub promisc: bool,
    pub allmulti: bool,
    pub unicast: MacTable,
    pub multicast: MacTable,
}

impl Default for RxFilter {
    fn default() -> Self {
        RxFilter { promisc: true, allmulti: false, unicast: MacTable::default(), multicast: MacTable::default() }
    }
}

impl RxFilter {
    /// Whether a frame for `dst` reaches a card with address `mac`.
    pub fn accepts(&self, dst: &[u8; 6], mac: &[u8; 6]) -> bool {
        if self.promisc || *dst == BROADCAST {
            return true;
        }
        if dst[0] & 1 != 0 {
            self.allmulti || self.multicast.matches(dst)
        } else {
            dst == mac || self.unicast.matches(dst)
        }
    }
}
