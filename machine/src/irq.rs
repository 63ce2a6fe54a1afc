//! Interrupt wiring: devices drive numbered lines through `LineHandle` (an `IrqLine`); the
//! board folds changed levels into the interrupt controllers after each device access.

use ferrite_hw::IrqLine;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Levels of the 24 GSIs (ISA IRQs 0–15 plus the PCI lines 16–23) and which changed since the
/// board last looked.
#[derive(Default, Debug)]
pub struct IrqLevels {
    levels: AtomicU32,
    changed: AtomicU32,
    /// Lines that were high at some point since the board last looked.
    pulsed: AtomicU32,
    /// Lines that were low at some point since the board last looked.
    dipped: AtomicU32,
}

impl IrqLevels {
    pub fn set(&self, line: u8, level: bool) {
        let bit = 1u32 << (line & 31);
        let old = if level { self.levels.fetch_or(bit, Ordering::SeqCst) } else { self.levels.fetch_and(!bit, Ordering::SeqCst) };
        // A pulse (high then low, or low then high, before anyone looked) must still be seen
        // as an edge: mark the line changed on every transition, and remember both phases.
        if (old & bit != 0) != level || level {
            self.changed.fetch_or(bit, Ordering::SeqCst);
        }
        let phase = if level { &self.pulsed } else { &self.dipped };
        phase.fetch_or(bit, Ordering::SeqCst);
    }

    /// Lines that changed since the last call, with their current level and whether they were
    /// at the other level at some point in between: a high pulse reads as low-now-but-was-high,
    /// and a low dip (the 8254's rate generator, whose OUT is high but for one clock) as
    /// high-now-but-was-low. Receivers replay the other level first, so they see the edge.
    pub fn take_changes(&self) -> Vec<(u8, bool, bool)> {
        let changed = self.changed.swap(0, Ordering::SeqCst);
        if changed == 0 {
            return Vec::new();
        }
        let pulsed = self.pulsed.fetch_and(!changed, Ordering::SeqCst);
        let dipped = self.dipped.fetch_and(!changed, Ordering::SeqCst);
        let levels = self.levels.load(Ordering::SeqCst);
        (0..32u8)
            .filter(|i| changed & (1 << i) != 0)
            .map(|i| {
                let high = levels & (1 << i) != 0;
                let other = if high { dipped } else { pulsed };
                (i, high, other & (1 << i) != 0)
            })
            .collect()
    }

    pub fn any_changed(&self) -> bool {
        self.changed.load(Ordering::Relaxed) != 0
    }
}

/// One device's interrupt wire to GSI `line`.
#[derive(Clone, Debug)]
pub struct LineHandle {
    levels: Arc<IrqLevels>,
    line: u8,
}

impl LineHandle {
    pub fn new(levels: &Arc<IrqLevels>, line: u8) -> Self {
        LineHandle { levels: levels.clone(), line }
    }
}

impl IrqLine for LineHandle {
    fn set_level(&self, level: bool) {
        self.levels.set(self.line, level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulses_and_dips_between_looks_read_as_edges() {
        let l = IrqLevels::default();
        // A high pulse: low now, but was high.
        l.set(3, true);
        l.set(3, false);
        assert_eq!(l.take_changes(), vec![(3, false, true)]);
        // The 8254's rate generator: high, a one-clock dip, high again.
        l.set(0, true);
        assert_eq!(l.take_changes(), vec![(0, true, false)]);
        l.set(0, false);
        l.set(0, true);
        assert_eq!(l.take_changes(), vec![(0, true, true)]);
        // A plain level change is no pulse.
        l.set(0, false);
        assert_eq!(l.take_changes(), vec![(0, false, false)]);
        assert!(!l.any_changed());
    }
}
