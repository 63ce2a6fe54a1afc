//! Interrupt statistics for the monitor's `info irq`: rising edges at each input of an
//! interrupt controller, counted as the lines reach it (QEMU counts the same).

use std::fmt::Write;

/// Counts for a controller with `N` inputs.
pub struct InputStats<const N: usize> {
    level: [bool; N],
    count: [u64; N],
}

impl<const N: usize> Default for InputStats<N> {
    fn default() -> Self {
        InputStats { level: [false; N], count: [0; N] }
    }
}

impl<const N: usize> InputStats<N> {
    /// Input `input` goes to `level`.
    pub fn note(&mut self, input: usize, level: bool) {
        if let Some(old) = self.level.get_mut(input) {
            if level && !*old {
                self.count[input] += 1;
            }
            *old = level;
        }
    }

    /// QEMU's lines: `IRQ statistics for NAME:`, then ` N: COUNT` for each input that fired.
    pub fn report(&self, name: &str) -> String {
        let mut out = format!("IRQ statistics for {name}:\n");
        for (i, c) in self.count.iter().enumerate().filter(|(_, &c)| c > 0) {
            let _ = writeln!(out, "{i:2}: {c}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rising_edges_are_counted() {
        let mut s = InputStats::<16>::default();
        for level in [true, true, false, true, false] {
            s.note(0, level);
        }
        s.note(14, true);
        s.note(99, true);
        assert_eq!(s.report("isa-i8259"), "IRQ statistics for isa-i8259:\n 0: 2\n14: 1\n");
    }
}
