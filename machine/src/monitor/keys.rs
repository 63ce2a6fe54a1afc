//! `sendkey` (HMP) and `send-key` (QMP): the keys go down on the PS/2 keyboard in order, stay
//! down for the hold time, and come up in reverse order, as QEMU sends them.

use crate::Machine;
use ferrite_hw::i8042::keys::Key;
use std::time::Duration;

/// QEMU's default hold time.
pub const DEFAULT_HOLD: Duration = Duration::from_millis(100);

/// A key by QEMU's name (`ctrl`, `delete`...) or number (`0x1d`: its set-1 code, 0x80 for
/// an extended key).
pub fn key(name: &str) -> Option<Key> {
    match name.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok().and_then(Key::by_number),
        None => Key::by_name(name),
    }
}

/// HMP's KEYS: names joined by `-` (`ctrl-alt-delete`), with QEMU's error for a bad one.
pub fn parse_keys(spec: &str) -> Result<Vec<Key>, String> {
    spec.split('-').map(|name| key(name).ok_or_else(|| format!("invalid parameter: {name}"))).collect()
}

impl Machine {
    /// Presses `keys` now and releases them `hold` later (on a thread of its own, so the
    /// monitor answers at once).
    pub fn send_keys(&self, keys: Vec<Key>, hold: Duration) {
        for k in &keys {
            self.board.key_event(*k, true);
        }
        let board = self.board.clone();
        let _ = std::thread::Builder::new().name("sendkey".into()).spawn(move || {
            std::thread::sleep(hold);
            for k in keys.iter().rev() {
                board.key_event(*k, false);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lists_as_hmp_spells_them() {
        let names: Vec<&str> = parse_keys("ctrl-alt-delete").unwrap().iter().map(|k| k.name).collect();
        assert_eq!(names, ["ctrl", "alt", "delete"]);
        assert_eq!(parse_keys("0x1d-0x9d").unwrap().iter().map(|k| k.name).collect::<Vec<_>>(), ["ctrl", "ctrl_r"]);
        assert_eq!(parse_keys("ctrl-foo").unwrap_err(), "invalid parameter: foo");
        assert!(parse_keys("0xzz").is_err());
    }
}
