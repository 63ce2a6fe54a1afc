//! Keys by the names QEMU's monitor uses (QAPI's QKeyCode: `ctrl`, `alt`, `delete`, `a`,
//! `ret`, `f1`...) with their make codes in scancode set 2 (what an MF2 keyboard sends by
//! default) and set 1 (what a keyboard switched to set 1 sends, and what the 8042 turns set 2
//! into while its translation is on). References: IBM PS/2 Hardware Interface Technical
//! Reference, "Keyboard" (scan code sets 1 and 2); the 8042's set 2 → set 1 translation is
//! the same key-for-key correspondence.

/// Prefix of the extended keys' codes (both sets).
pub const EXTENDED: u8 = 0xe0;
/// Set 2: precedes a break (release) code.
pub const BREAK_SET2: u8 = 0xf0;
/// Set 1: a break code is the make code with this bit.
pub const BREAK_SET1: u8 = 0x80;

/// A key on the MF2 keyboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub set1: u8,
    pub set2: u8,
    /// Sent after an 0xE0 prefix.
    pub extended: bool,
}

const fn k(name: &'static str, set1: u8, set2: u8) -> Key {
    Key { name, set1, set2, extended: false }
}

const fn e(name: &'static str, set1: u8, set2: u8) -> Key {
    Key { name, set1, set2, extended: true }
}

/// Every key `sendkey` knows (Print Screen and Pause, whose codes are sequences of their
/// own, are left out).
pub const KEYS: &[Key] = &[
    k("esc", 0x01, 0x76), k("1", 0x02, 0x16), k("2", 0x03, 0x1e), k("3", 0x04, 0x26), k("4", 0x05, 0x25),
    k("5", 0x06, 0x2e), k("6", 0x07, 0x36), k("7", 0x08, 0x3d), k("8", 0x09, 0x3e), k("9", 0x0a, 0x46),
    k("0", 0x0b, 0x45), k("minus", 0x0c, 0x4e), k("equal", 0x0d, 0x55), k("backspace", 0x0e, 0x66),
    k("tab", 0x0f, 0x0d), k("q", 0x10, 0x15), k("w", 0x11, 0x1d), k("e", 0x12, 0x24), k("r", 0x13, 0x2d),
    k("t", 0x14, 0x2c), k("y", 0x15, 0x35), k("u", 0x16, 0x3c), k("i", 0x17, 0x43), k("o", 0x18, 0x44),
    k("p", 0x19, 0x4d), k("bracket_left", 0x1a, 0x54), k("bracket_right", 0x1b, 0x5b), k("ret", 0x1c, 0x5a),
    k("ctrl", 0x1d, 0x14), k("a", 0x1e, 0x1c), k("s", 0x1f, 0x1b), k("d", 0x20, 0x23), k("f", 0x21, 0x2b),
    k("g", 0x22, 0x34), k("h", 0x23, 0x33), k("j", 0x24, 0x3b), k("k", 0x25, 0x42), k("l", 0x26, 0x4b),
    k("semicolon", 0x27, 0x4c), k("apostrophe", 0x28, 0x52), k("grave_accent", 0x29, 0x0e), k("shift", 0x2a, 0x12),
    k("backslash", 0x2b, 0x5d), k("z", 0x2c, 0x1a), k("x", 0x2d, 0x22), k("c", 0x2e, 0x21), k("v", 0x2f, 0x2a),
    k("b", 0x30, 0x32), k("n", 0x31, 0x31), k("m", 0x32, 0x3a), k("comma", 0x33, 0x41), k("dot", 0x34, 0x49),
    k("slash", 0x35, 0x4a), k("shift_r", 0x36, 0x59), k("kp_multiply", 0x37, 0x7c), k("alt", 0x38, 0x11),
    k("spc", 0x39, 0x29), k("caps_lock", 0x3a, 0x58), k("f1", 0x3b, 0x05), k("f2", 0x3c, 0x06), k("f3", 0x3d, 0x04),
    k("f4", 0x3e, 0x0c), k("f5", 0x3f, 0x03), k("f6", 0x40, 0x0b), k("f7", 0x41, 0x83), k("f8", 0x42, 0x0a),
    k("f9", 0x43, 0x01), k("f10", 0x44, 0x09), k("num_lock", 0x45, 0x77), k("scroll_lock", 0x46, 0x7e),
    k("kp_7", 0x47, 0x6c), k("kp_8", 0x48, 0x75), k("kp_9", 0x49, 0x7d), k("kp_subtract", 0x4a, 0x7b),
    k("kp_4", 0x4b, 0x6b), k("kp_5", 0x4c, 0x73), k("kp_6", 0x4d, 0x74), k("kp_add", 0x4e, 0x79), k("kp_1", 0x4f, 0x69),
    k("kp_2", 0x50, 0x72), k("kp_3", 0x51, 0x7a), k("kp_0", 0x52, 0x70), k("kp_decimal", 0x53, 0x71),
    k("less", 0x56, 0x61), k("f11", 0x57, 0x78), k("f12", 0x58, 0x07),
    e("kp_enter", 0x1c, 0x5a), e("ctrl_r", 0x1d, 0x14), e("kp_divide", 0x35, 0x4a), e("alt_r", 0x38, 0x11),
    e("home", 0x47, 0x6c), e("up", 0x48, 0x75), e("pgup", 0x49, 0x7d), e("left", 0x4b, 0x6b), e("right", 0x4d, 0x74),
    e("end", 0x4f, 0x69), e("down", 0x50, 0x72), e("pgdn", 0x51, 0x7a), e("insert", 0x52, 0x70),
    e("delete", 0x53, 0x71), e("meta_l", 0x5b, 0x1f), e("meta_r", 0x5c, 0x27), e("menu", 0x5d, 0x2f),
];

impl Key {
    /// The key QEMU calls `name`.
    pub fn by_name(name: &str) -> Option<Key> {
        KEYS.iter().copied().find(|k| k.name == name)
    }

    /// The key with QEMU's key number `n` (its set-1 make code, plus 0x80 for an extended
    /// key: `0x1d` is ctrl, `0x9d` ctrl_r).
    pub fn by_number(n: u32) -> Option<Key> {
        let extended = n & 0x80 != 0;
        KEYS.iter().copied().find(|k| n <= 0xff && k.set1 == (n & 0x7f) as u8 && k.extended == extended)
    }

    /// What the keyboard sends when the key goes down (`down`) or up, in scancode set `set`
    /// (1, or else 2).
    pub fn scancodes(self, set: u8, down: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(3);
        if self.extended {
            out.push(EXTENDED);
        }
        match (set, down) {
            (1, true) => out.push(self.set1),
            (1, false) => out.push(self.set1 | BREAK_SET1),
            (_, true) => out.push(self.set2),
            (_, false) => out.extend([BREAK_SET2, self.set2]),
        }
        out
    }
}

/// The 8042's translation of set-2 bytes from the keyboard into set 1: each code becomes its
/// key's set-1 code, a break prefix sets bit 7 of the code after it, 0xE0 passes as it is.
pub fn translate(set2: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(set2.len());
    let mut released = false;
    for &b in set2 {
        match b {
            BREAK_SET2 => released = true,
            EXTENDED => out.push(EXTENDED),
            code => {
                let set1 = KEYS.iter().find(|k| k.set2 == code).map_or(code, |k| k.set1);
                out.push(if std::mem::take(&mut released) { set1 | BREAK_SET1 } else { set1 });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_alt_delete_in_both_sets() {
        let keys: Vec<Key> = ["ctrl", "alt", "delete"].iter().map(|n| Key::by_name(n).unwrap()).collect();
        let press: Vec<u8> = keys.iter().flat_map(|k| k.scancodes(2, true)).collect();
        let release: Vec<u8> = keys.iter().rev().flat_map(|k| k.scancodes(2, false)).collect();
        assert_eq!(press, [0x14, 0x11, 0xe0, 0x71]);
        assert_eq!(release, [0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14]);
        assert_eq!(translate(&press), [0x1d, 0x38, 0xe0, 0x53]);
        assert_eq!(translate(&release), [0xe0, 0xd3, 0xb8, 0x9d]);
        let set1: Vec<u8> = keys.iter().rev().flat_map(|k| k.scancodes(1, false)).collect();
        assert_eq!(set1, translate(&release), "a set-1 keyboard sends what the 8042 makes of set 2");
    }

    #[test]
    fn every_key_translates_to_its_set1_code_and_names_are_unique() {
        for k in KEYS {
            for down in [true, false] {
                assert_eq!(translate(&k.scancodes(2, down)), k.scancodes(1, down), "{}", k.name);
            }
            assert_eq!(KEYS.iter().filter(|o| o.name == k.name).count(), 1, "{}", k.name);
            let number = u32::from(k.set1) | if k.extended { 0x80 } else { 0 };
            assert_eq!(Key::by_number(number), Some(*k));
        }
        assert_eq!(Key::by_name("f7").unwrap().scancodes(2, false), [0xf0, 0x83]);
        assert_eq!(Key::by_name("nope"), None);
    }
}
