use super::*;
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Clone, Default)]
struct Recorder(Rc<RefCell<Vec<bool>>>);

impl IrqLine for Recorder {
    fn set_level(&self, level: bool) {
        self.0.borrow_mut().push(level);
    }
}

impl Recorder {
    fn level(&self) -> bool {
        self.0.borrow().last().copied().unwrap_or(false)
    }
    fn rising_edges(&self) -> usize {
        self.0.borrow().iter().filter(|&&l| l).count()
    }
}

type Kbc = I8042<Recorder, Recorder>;

fn new_kbc() -> (Kbc, Recorder, Recorder) {
    let (k, a) = (Recorder::default(), Recorder::default());
    (I8042::new(k.clone(), a.clone()), k, a)
}

/// Reads everything in the output buffer, as Linux's i8042_flush() does.
fn drain(kbc: &mut Kbc) -> Vec<u8> {
    let mut v = Vec::new();
    while kbc.read_status() & STATUS_OBF != 0 {
        v.push(kbc.read_data());
        assert!(v.len() < 100);
    }
    v
}

/// Controller command with an optional parameter, returning the reply bytes.
fn command(kbc: &mut Kbc, cmd: u8, param: Option<u8>) -> Vec<u8> {
    kbc.write_command(cmd);
    if let Some(p) = param {
        kbc.write_data(p);
    }
    drain(kbc)
}

fn keyboard(kbc: &mut Kbc, bytes: &[u8]) -> Vec<u8> {
    for &b in bytes {
        kbc.write_data(b);
    }
    drain(kbc)
}

#[test]
fn power_on_state() {
    let (kbc, k, a) = new_kbc();
    assert_eq!(kbc.read_status(), STATUS_UNLOCKED);
    assert!(kbc.a20());
    assert!(!kbc.reset_requested());
    assert!(kbc.translation());
    assert!(!k.level() && !a.level());
}

#[test]
fn self_test_and_interface_tests() {
    let (mut kbc, _, _) = new_kbc();
    kbc.write_command(CMD_SELF_TEST);
    assert_eq!(
        kbc.read_status(),
        STATUS_UNLOCKED | STATUS_CMD | STATUS_SYS | STATUS_OBF
    );
    assert_eq!(kbc.read_data(), SELF_TEST_OK);
    assert_eq!(kbc.read_status() & STATUS_OBF, 0);
    assert_eq!(command(&mut kbc, CMD_KBD_TEST, None), [0x00]);
    assert_eq!(command(&mut kbc, CMD_AUX_TEST, None), [0x00]);
    assert_eq!(command(&mut kbc, CMD_PASSWORD_INSTALLED, None), [0xf1]);
    assert_eq!(command(&mut kbc, CMD_READ_TEST, None), [0x00]);
    assert_eq!(command(&mut kbc, CMD_READ_INPUT, None), [0x80]);
}

#[test]
fn command_byte_read_write() {
    let (mut kbc, _, _) = new_kbc();
    assert_eq!(
        command(&mut kbc, CMD_READ_RAM, None),
        [CTR_KBD_INT | CTR_XLATE]
    );
    assert!(command(&mut kbc, CMD_WRITE_RAM, Some(0x65)).is_empty());
    assert_eq!(command(&mut kbc, CMD_READ_RAM, None), [0x65]);
    assert_ne!(
        kbc.read_status() & STATUS_SYS,
        0,
        "status SYS follows command byte bit 2"
    );
    assert_eq!(kbc.read_status() & STATUS_CMD, STATUS_CMD);
    // Other controller RAM bytes.
    command(&mut kbc, 0x7f, Some(0x99));
    assert_eq!(command(&mut kbc, 0x3f, None), [0x99]);
    command(&mut kbc, CMD_WRITE_RAM, Some(0x00));
    assert!(!kbc.translation());
}

#[test]
fn keyboard_reset_and_irq1() {
    let (mut kbc, k, a) = new_kbc();
    kbc.write_data(KBD_RESET);
    assert!(k.level(), "IRQ1 with a keyboard byte waiting");
    assert_eq!(
        kbc.read_status() & (STATUS_OBF | STATUS_AUX_OBF | STATUS_CMD),
        STATUS_OBF
    );
    assert_eq!(kbc.read_data(), KBD_ACK);
    assert!(k.level(), "next byte loaded");
    assert_eq!(kbc.read_data(), KBD_BAT_OK);
    assert!(!k.level());
    assert_eq!(k.rising_edges(), 2, "one edge per byte");
    assert!(!a.level());
}

#[test]
fn no_irq1_when_disabled_in_command_byte() {
    let (mut kbc, k, _) = new_kbc();
    command(&mut kbc, CMD_WRITE_RAM, Some(CTR_XLATE));
    kbc.write_data(KBD_ECHO);
    assert!(!k.level());
    assert_eq!(drain(&mut kbc), [KBD_ECHO]);
}

#[test]
fn keyboard_identify() {
    let (mut kbc, _, _) = new_kbc();
    assert_eq!(keyboard(&mut kbc, &[KBD_IDENTIFY]), [KBD_ACK, 0xab, 0x41]);
    command(&mut kbc, CMD_WRITE_RAM, Some(CTR_KBD_INT));
    assert_eq!(keyboard(&mut kbc, &[KBD_IDENTIFY]), [KBD_ACK, 0xab, 0x83]);
}

#[test]
fn keyboard_leds_typematic_and_scancode_set() {
    let (mut kbc, _, _) = new_kbc();
    assert_eq!(
        keyboard(&mut kbc, &[KBD_SET_LEDS, 0x07]),
        [KBD_ACK, KBD_ACK]
    );
    assert_eq!(kbc.leds(), 7);
    assert_eq!(
        keyboard(&mut kbc, &[KBD_TYPEMATIC, 0x20]),
        [KBD_ACK, KBD_ACK]
    );
    assert_eq!(
        keyboard(&mut kbc, &[KBD_SCANCODE_SET, 0]),
        [KBD_ACK, KBD_ACK, 0x41]
    );
    assert_eq!(
        keyboard(&mut kbc, &[KBD_SCANCODE_SET, 1]),
        [KBD_ACK, KBD_ACK]
    );
    assert_eq!(kbc.scancode_set(), 1);
    assert_eq!(
        keyboard(&mut kbc, &[KBD_SCANCODE_SET, 0]),
        [KBD_ACK, KBD_ACK, 1]
    );
    // A command in place of an argument aborts the pending one.
    assert_eq!(
        keyboard(&mut kbc, &[KBD_SET_LEDS, KBD_ECHO]),
        [KBD_ACK, KBD_ECHO]
    );
    assert_eq!(kbc.leds(), 7);
    assert_eq!(keyboard(&mut kbc, &[KBD_DEFAULTS]), [KBD_ACK]);
    assert_eq!((kbc.leds(), kbc.scancode_set()), (0, 2));
}

#[test]
fn scanning_enable_disable_and_keystrokes() {
    let (mut kbc, _, _) = new_kbc();
    assert_eq!(kbc.push_scancodes(&[0x1e, 0x9e]), 2);
    assert_eq!(drain(&mut kbc), [0x1e, 0x9e]);
    assert_eq!(keyboard(&mut kbc, &[KBD_DISABLE]), [KBD_ACK]);
    assert_eq!(kbc.push_scancodes(&[0x1e]), 0);
    assert_eq!(keyboard(&mut kbc, &[KBD_ENABLE]), [KBD_ACK]);
    assert_eq!(
        kbc.push_scancodes(&[0u8; 40]),
        16,
        "the keyboard buffers 16 bytes"
    );
    assert_eq!(drain(&mut kbc).len(), 16);
}

#[test]
fn echo_resend_and_unknown_commands() {
    let (mut kbc, _, _) = new_kbc();
    assert_eq!(keyboard(&mut kbc, &[KBD_ECHO]), [KBD_ECHO]);
    assert_eq!(keyboard(&mut kbc, &[KBD_RESEND]), [KBD_ECHO]);
    assert_eq!(keyboard(&mut kbc, &[0x12]), [KBD_RESEND]);
    assert_eq!(keyboard(&mut kbc, &[0xf8]), [KBD_ACK]);
}

#[test]
fn keyboard_interface_disable_holds_keyboard_bytes() {
    let (mut kbc, _, _) = new_kbc();
    kbc.write_command(CMD_KBD_DISABLE);
    kbc.push_scancodes(&[0x1c]);
    assert_eq!(kbc.read_status() & STATUS_OBF, 0);
    // Controller replies still come through.
    let ctr = command(&mut kbc, CMD_READ_RAM, None);
    assert_eq!(ctr, [CTR_KBD_INT | CTR_XLATE | CTR_KBD_DISABLE]);
    kbc.write_command(CMD_KBD_ENABLE);
    assert_eq!(drain(&mut kbc), [0x1c]);
    // Writing to the keyboard also re-enables its interface.
    kbc.write_command(CMD_KBD_DISABLE);
    assert_eq!(keyboard(&mut kbc, &[KBD_ECHO]), [KBD_ECHO]);
    assert_eq!(
        command(&mut kbc, CMD_READ_RAM, None)[0] & CTR_KBD_DISABLE,
        0
    );
}

#[test]
fn output_port_a20_and_reset() {
    let (mut kbc, _, _) = new_kbc();
    command(&mut kbc, CMD_WRITE_OUTPUT, Some(0x01));
    assert!(!kbc.a20());
    assert!(!kbc.reset_requested());
    assert_eq!(command(&mut kbc, CMD_READ_OUTPUT, None), [0x01]);
    // SeaBIOS/DOS: 0xd1, 0xdf enables A20.
    command(&mut kbc, CMD_WRITE_OUTPUT, Some(0xdf));
    assert!(kbc.a20());
    kbc.write_command(CMD_A20_OFF);
    assert!(!kbc.a20());
    kbc.write_command(CMD_A20_ON);
    assert!(kbc.a20());
    // OBF shows in output port bit 4 while a byte waits.
    kbc.write_data(KBD_ECHO);
    kbc.write_command(CMD_READ_OUTPUT);
    assert_eq!(kbc.read_data(), KBD_ECHO);
    assert_eq!(
        kbc.read_data() & (OUT_KBD_OBF | OUT_A20),
        OUT_KBD_OBF | OUT_A20
    );

    kbc.write_command(0xff); // pulse nothing
    assert!(!kbc.reset_requested());
    kbc.write_command(CMD_PULSE_RESET);
    assert!(kbc.reset_requested());
    assert!(kbc.take_reset_request());
    assert!(!kbc.reset_requested());
    command(&mut kbc, CMD_WRITE_OUTPUT, Some(0x02));
    assert!(kbc.take_reset_request(), "output port bit 0 low resets");
    kbc.reset();
    assert!(kbc.a20());
    assert_eq!(kbc.read_status(), STATUS_UNLOCKED);
}

#[test]
fn aux_port_present_but_empty() {
    let (mut kbc, k, a) = new_kbc();
    command(
        &mut kbc,
        CMD_WRITE_RAM,
        Some(CTR_KBD_INT | CTR_AUX_INT | CTR_XLATE),
    );
    // 0xd3 loops a byte back as if the mouse sent it, on IRQ12.
    kbc.write_command(CMD_WRITE_AUX_OBUF);
    kbc.write_data(0x5a);
    assert_eq!(
        kbc.read_status() & (STATUS_OBF | STATUS_AUX_OBF),
        STATUS_OBF | STATUS_AUX_OBF
    );
    assert!(a.level() && !k.level());
    assert_eq!(kbc.read_data(), 0x5a);
    assert!(!a.level());
    // Bytes for the mouse time out and come back as 0xfe.
    kbc.write_command(CMD_WRITE_AUX);
    kbc.write_data(0xf2);
    let status = kbc.read_status();
    assert_eq!(status & 0xe1, STATUS_TIMEOUT | STATUS_AUX_OBF | STATUS_OBF);
    assert_eq!(kbc.read_data(), 0xfe);
    assert_eq!(kbc.read_status() & STATUS_TIMEOUT, 0);
    // 0xd2 appears as keyboard data.
    kbc.write_command(CMD_WRITE_KBD_OBUF);
    kbc.write_data(0x33);
    assert!(k.level());
    assert_eq!(kbc.read_status() & STATUS_AUX_OBF, 0);
    assert_eq!(kbc.read_data(), 0x33);
}

#[test]
fn linux_i8042_probe_sequence() {
    let (mut kbc, _, a) = new_kbc();
    // i8042_controller_check / i8042_flush.
    assert_ne!(kbc.read_status(), 0xff);
    drain(&mut kbc);
    // i8042_controller_selftest.
    assert_eq!(command(&mut kbc, CMD_SELF_TEST, None), [0x55]);
    // i8042_controller_init: read CTR twice, it must be stable.
    let c1 = command(&mut kbc, CMD_READ_RAM, None)[0];
    let c2 = command(&mut kbc, CMD_READ_RAM, None)[0];
    assert_eq!(c1, c2);
    let ctr = (c1 & !CTR_KBD_DISABLE & !CTR_AUX_INT) | CTR_KBD_INT | CTR_AUX_DISABLE;
    command(&mut kbc, CMD_WRITE_RAM, Some(ctr));
    // i8042_check_aux: loopback, then the bit assignment test.
    kbc.write_command(CMD_WRITE_AUX_OBUF);
    kbc.write_data(0x5a);
    assert_ne!(kbc.read_status() & STATUS_AUX_OBF, 0);
    assert_eq!(kbc.read_data(), 0x5a);
    kbc.write_command(CMD_AUX_DISABLE);
    assert_ne!(
        command(&mut kbc, CMD_READ_RAM, None)[0] & CTR_AUX_DISABLE,
        0
    );
    kbc.write_command(CMD_AUX_ENABLE);
    assert_eq!(
        command(&mut kbc, CMD_READ_RAM, None)[0] & CTR_AUX_DISABLE,
        0
    );
    // The AUX IRQ delivery test.
    command(
        &mut kbc,
        CMD_WRITE_RAM,
        Some(ctr & !CTR_AUX_DISABLE | CTR_AUX_INT),
    );
    kbc.write_command(CMD_WRITE_AUX_OBUF);
    kbc.write_data(0xa5);
    assert!(a.level());
    assert_eq!(drain(&mut kbc), [0xa5]);
    // atkbd: get ID, set LEDs, enable.
    assert_eq!(keyboard(&mut kbc, &[KBD_IDENTIFY]), [KBD_ACK, 0xab, 0x41]);
    assert_eq!(keyboard(&mut kbc, &[KBD_SET_LEDS, 0]), [KBD_ACK, KBD_ACK]);
    assert_eq!(keyboard(&mut kbc, &[KBD_ENABLE]), [KBD_ACK]);
    // psmouse: GETID to an empty port fails at once.
    kbc.write_command(CMD_WRITE_AUX);
    kbc.write_data(0xf2);
    assert_ne!(kbc.read_status() & STATUS_TIMEOUT, 0);
    assert_eq!(drain(&mut kbc), [0xfe]);
}

#[test]
fn pio_offsets() {
    let mut kbc = I8042::default();
    PioDevice::write(&mut kbc, OFFSET_STATUS, 1, CMD_SELF_TEST as u32);
    assert_eq!(
        PioDevice::read(&mut kbc, OFFSET_STATUS, 1) as u8 & STATUS_OBF,
        STATUS_OBF
    );
    assert_eq!(PioDevice::read(&mut kbc, OFFSET_DATA, 1), 0x55);
    assert_eq!(PioDevice::read(&mut kbc, 1, 1), 0xff);
    PioDevice::write(&mut kbc, 2, 1, 0);
    assert_eq!(PioDevice::read(&mut kbc, OFFSET_DATA, 1), 0, "empty buffer");
}

#[test]
fn any_guest_input_is_safe() {
    let (mut kbc, _, _) = new_kbc();
    let mut seed = 0x0bad_f00du32;
    for _ in 0..50_000 {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let r = seed >> 4;
        match r % 5 {
            0 => kbc.write_command((r >> 8) as u8),
            1 => kbc.write_data((r >> 8) as u8),
            2 => {
                kbc.read_data();
            }
            3 => {
                kbc.push_scancodes(&[r as u8; 3]);
            }
            _ => {
                kbc.read_status();
                kbc.take_reset_request();
            }
        }
    }
    for offset in 0..16u16 {
        for v in [0u32, 0xd4, 0xfe, u32::MAX] {
            PioDevice::write(&mut kbc, offset, 4, v);
            PioDevice::read(&mut kbc, offset, 4);
        }
    }
}

#[test]
fn key_events_follow_the_translation_bit_and_the_keyboards_set() {
    let (mut kbc, k, _) = new_kbc();
    let delete = keys::Key::by_name("delete").unwrap();
    // Power-on: set 2 on the keyboard, translated by the controller.
    assert!(kbc.key_event(delete, true) && kbc.key_event(delete, false));
    assert!(k.level(), "IRQ1 rises with the first byte");
    assert_eq!(drain(&mut kbc), [0xe0, 0x53, 0xe0, 0xd3]);
    // Translation off: the keyboard's own set 2 reaches the system.
    command(&mut kbc, CMD_WRITE_RAM, Some(CTR_KBD_INT));
    kbc.key_event(delete, false);
    assert_eq!(drain(&mut kbc), [0xe0, 0xf0, 0x71]);
    // A keyboard switched to set 1 sends set 1.
    assert_eq!(keyboard(&mut kbc, &[KBD_SCANCODE_SET, 1]), [KBD_ACK, KBD_ACK]);
    kbc.key_event(delete, true);
    assert_eq!(drain(&mut kbc), [0xe0, 0x53]);
    // Scanning off: nothing is queued.
    assert_eq!(keyboard(&mut kbc, &[KBD_DISABLE]), [KBD_ACK]);
    assert!(!kbc.key_event(delete, true));
    assert!(drain(&mut kbc).is_empty());
}
