use super::*;
use crate::testing::SharedLine;
use ferrite_persist::{load, save, Persist, RestoreError};

type Kbc = I8042<SharedLine, SharedLine>;

fn kbc() -> (Kbc, SharedLine, SharedLine) {
    let (k, a) = (SharedLine::default(), SharedLine::default());
    (I8042::new(k.clone(), a.clone()), k, a)
}

/// Mid-conversation: a keyboard reply and keystrokes queued behind a controller reply, the
/// keyboard waiting for a LED argument, the controller waiting for an output-port byte.
fn busy_kbc() -> (Kbc, SharedLine, SharedLine) {
    let (mut c, k, a) = kbc();
    c.write_command(CMD_SELF_TEST);
    c.write_command(CMD_WRITE_RAM);
    c.write_data(CTR_KBD_INT | CTR_AUX_INT | CTR_SYS | CTR_XLATE);
    c.write_data(KBD_SET_LEDS);
    c.push_scancodes(&[0x1e, 0x9e, 0x30]);
    c.write_command(CMD_READ_RAM);
    c.write_command(CMD_WRITE_OUTPUT);
    assert!(k.level());
    (c, k, a)
}

#[test]
fn a_restored_controller_carries_on_like_the_original() {
    let (mut a, ak, aa) = busy_kbc();
    let (mut b, bk, ba) = kbc();
    load(&mut b, &save(&a, "i8042")).unwrap();
    assert_eq!((bk.level(), ba.level()), (ak.level(), aa.level()), "IRQ1/IRQ12 re-driven");
    a.write_data(OUT_RESET);
    b.write_data(OUT_RESET);
    assert_eq!(b.a20(), a.a20());
    a.write_data(0x04);
    b.write_data(0x04);
    assert_eq!(b.leds(), 4);
    a.write_command(CMD_WRITE_AUX);
    b.write_command(CMD_WRITE_AUX);
    a.write_data(0xf4);
    b.write_data(0xf4);
    for _ in 0..10 {
        assert_eq!(a.read_status(), b.read_status());
        assert_eq!(a.read_data(), b.read_data());
        assert_eq!((ak.level(), aa.level()), (bk.level(), ba.level()));
    }
}

#[test]
fn a_corrupt_state_is_refused_and_changes_nothing() {
    let (a, _, _) = busy_kbc();
    let (mut b, bk, ba) = kbc();
    let fresh = b.save();
    let mut s = a.save();
    s.keyboard_queue = vec![0; 17];
    assert!(matches!(b.restore(s), Err(RestoreError::Invalid { field: "keyboard_queue", .. })));
    let mut s = a.save();
    s.keyboard.scancode_set = 4;
    assert!(b.restore(s).is_err());
    let mut s = a.save();
    s.pending_command = Some(CMD_SELF_TEST);
    assert!(b.restore(s).is_err());
    assert_eq!(b.save(), fresh);
    assert_eq!(bk.drives() + ba.drives(), 0);
}
