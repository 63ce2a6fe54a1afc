use super::*;
use crate::testing::SharedLine;
use ferrite_persist::{load, save, Persist, RestoreError};

fn uart() -> (Uart<SharedLine, Vec<u8>>, SharedLine) {
    let line = SharedLine::default();
    (Uart::new(line.clone(), Vec::new()), line)
}

/// 115200 8N1 with FIFOs at trigger 8, five bytes received, an overrun latched, modem
/// status changed and RX/line-status interrupts enabled.
fn busy_uart() -> (Uart<SharedLine, Vec<u8>>, SharedLine) {
    let (mut u, line) = uart();
    u.write_reg(LCR, LCR_DLAB | 3);
    u.write_reg(RBR_THR, 1);
    u.write_reg(IER, 0);
    u.write_reg(LCR, 3);
    u.write_reg(IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX | 0x80);
    u.write_reg(MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
    u.write_reg(SCR, 0x5a);
    u.write_reg(IER, IER_RDA | IER_RLS | IER_MS);
    assert_eq!(u.receive(&[1u8; 20]), 16);
    assert_eq!(u.read_reg(IIR_FCR) & 0x0f, IIR_RLS);
    u.set_modem_status(MSR_DSR | MSR_CTS);
    assert_eq!(u.read_reg(RBR_THR), 1);
    u.receive(b"");
    assert!(line.level());
    (u, line)
}

#[test]
fn a_restored_uart_carries_on_like_the_original() {
    let (mut a, aline) = busy_uart();
    let (mut b, bline) = uart();
    load(&mut b, &save(&a, "com1")).unwrap();
    assert!(bline.level(), "the IRQ is re-driven");
    assert_eq!(b.divisor(), 1);
    for reg in [IIR_FCR, LSR, IIR_FCR, MSR, IER, LCR, MCR, SCR, MSR] {
        assert_eq!(a.read_reg(reg), b.read_reg(reg), "register {reg}");
        assert_eq!(aline.level(), bline.level());
    }
    for _ in 0..16 {
        assert_eq!((a.read_reg(RBR_THR), a.read_reg(IIR_FCR)), (b.read_reg(RBR_THR), b.read_reg(IIR_FCR)));
        assert_eq!(aline.level(), bline.level());
    }
    a.write_reg(RBR_THR, b'x');
    b.write_reg(RBR_THR, b'x');
    assert_eq!(b.output(), b"x");
}

#[test]
fn a_corrupt_state_is_refused_and_changes_nothing() {
    let (a, _) = busy_uart();
    let (mut b, bline) = uart();
    let fresh = b.save();
    let mut s = a.save();
    s.rx_fifo = vec![0; 17];
    assert!(matches!(b.restore(s), Err(RestoreError::Invalid { field: "rx_fifo", .. })));
    let mut s = a.save();
    s.fcr = 0;
    s.rx_fifo = vec![1, 2];
    assert!(b.restore(s).is_err(), "two bytes in a holding register of one");
    let mut s = a.save();
    s.ier = 0xff;
    assert!(b.restore(s).is_err());
    assert_eq!(b.save(), fresh);
    assert_eq!(bline.drives(), 0);
}
