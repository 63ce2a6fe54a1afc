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
}

fn new_uart() -> (Uart<Recorder, Vec<u8>>, Recorder) {
    let line = Recorder::default();
    (Uart::new(line.clone(), Vec::new()), line)
}

#[test]
fn reset_state() {
    let (mut u, line) = new_uart();
    assert_eq!(u.read_reg(IIR_FCR), IIR_NONE);
    assert_eq!(u.read_reg(LSR), LSR_THRE | LSR_TEMT);
    assert_eq!(u.read_reg(IER), 0);
    assert_eq!(u.read_reg(MSR), MSR_DCD | MSR_DSR | MSR_CTS);
    assert!(!line.level());
    assert_eq!(u.divisor(), 12);
}

#[test]
fn transmitted_bytes_reach_the_backend() {
    let (mut u, _) = new_uart();
    for &b in b"hello\n" {
        assert_ne!(
            u.read_reg(LSR) & LSR_THRE,
            0,
            "polling driver waits for THRE"
        );
        u.write_reg(RBR_THR, b);
    }
    assert_eq!(u.output(), b"hello\n");
}

#[test]
fn divisor_latch_behind_dlab() {
    let (mut u, _) = new_uart();
    u.write_reg(LCR, LCR_DLAB | 0x03);
    u.write_reg(RBR_THR, 0x01);
    u.write_reg(IER, 0x00);
    assert_eq!(u.read_reg(RBR_THR), 0x01);
    assert_eq!(u.read_reg(IER), 0x00);
    assert_eq!(u.divisor(), 1, "115200 baud");
    u.write_reg(LCR, 0x03); // 8N1
    assert_eq!(u.read_reg(LCR), 0x03);
    u.write_reg(RBR_THR, b'x');
    u.write_reg(IER, 0xff);
    assert_eq!(u.read_reg(IER), 0x0f, "IER bits 4-7 read as zero");
    assert_eq!(u.output(), b"x");
    assert_eq!(u.divisor(), 1);
}

#[test]
fn non_fifo_mode_holds_one_byte() {
    let (mut u, _) = new_uart();
    assert_eq!(u.rx_space(), 1);
    assert_eq!(u.receive(b"a"), 1);
    assert!(!u.can_receive());
    assert_eq!(u.read_reg(LSR) & LSR_DR, LSR_DR);
    assert_eq!(u.read_reg(RBR_THR), b'a');
    assert_eq!(u.read_reg(LSR) & LSR_DR, 0);
    assert_eq!(u.receive(b"bc"), 1, "only the holding register's worth");
    assert_eq!(u.read_reg(LSR) & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
    assert_eq!(u.read_reg(LSR) & LSR_OE, 0, "reading LSR clears OE");
    assert_eq!(u.read_reg(RBR_THR), b'b');
}

#[test]
fn fifo_mode_takes_sixteen_bytes() {
    let (mut u, _) = new_uart();
    u.write_reg(IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX | FCR_CLEAR_TX | 0xc0);
    assert_eq!(u.read_reg(IIR_FCR), IIR_FIFO_ON | IIR_NONE);
    assert_eq!(u.rx_space(), 16);
    assert_eq!(u.receive(&[7u8; 20]), 16);
    assert_eq!(
        u.read_reg(LSR),
        LSR_DR | LSR_OE | LSR_THRE | LSR_TEMT | LSR_FIFO_ERR
    );
    for _ in 0..16 {
        assert_eq!(u.read_reg(RBR_THR), 7);
    }
    assert_eq!(u.read_reg(LSR) & LSR_DR, 0);
    assert_eq!(u.read_reg(RBR_THR), 0, "empty FIFO reads 0");
}

#[test]
fn receive_interrupts_follow_trigger_level() {
    let (mut u, line) = new_uart();
    u.write_reg(IIR_FCR, FCR_ENABLE | 0x40); // trigger at 4
    u.write_reg(IER, IER_RDA);
    assert!(!line.level());
    u.receive(b"abc");
    assert!(line.level());
    assert_eq!(
        u.read_reg(IIR_FCR),
        IIR_FIFO_ON | IIR_TIMEOUT,
        "below trigger: timeout"
    );
    u.receive(b"d");
    assert_eq!(u.read_reg(IIR_FCR), IIR_FIFO_ON | IIR_RDA);
    for &b in b"abcd" {
        assert_eq!(u.read_reg(RBR_THR), b);
    }
    assert_eq!(u.read_reg(IIR_FCR), IIR_FIFO_ON | IIR_NONE);
    assert!(!line.level());
    // Trigger levels 1, 8 and 14.
    for (fcr, level) in [(0x01u8, 1usize), (0x81, 8), (0xc1, 14)] {
        u.write_reg(IIR_FCR, fcr | FCR_CLEAR_RX);
        u.receive(&vec![0; level - 1]);
        if level > 1 {
            assert_eq!(u.read_reg(IIR_FCR) & 0x0f, IIR_TIMEOUT);
        }
        u.receive(&[0]);
        assert_eq!(u.read_reg(IIR_FCR) & 0x0f, IIR_RDA, "trigger {level}");
    }
}

#[test]
fn interrupt_priorities() {
    let (mut u, line) = new_uart();
    u.write_reg(IIR_FCR, FCR_ENABLE);
    u.write_reg(IER, IER_RDA | IER_THRE | IER_RLS | IER_MS);
    u.set_modem_status(MSR_DSR | MSR_CTS); // carrier lost: modem status interrupt
    u.receive(&[1u8; 17]); // one byte too many: overrun
    assert_eq!(u.read_reg(IIR_FCR) & 0x0f, IIR_RLS, "line status first");
    u.read_reg(LSR);
    assert_eq!(u.read_reg(IIR_FCR) & 0x0f, IIR_RDA, "then received data");
    while u.read_reg(LSR) & LSR_DR != 0 {
        u.read_reg(RBR_THR);
    }
    assert_eq!(u.read_reg(IIR_FCR) & 0x0f, IIR_THRE, "then THR empty");
    // That read cleared THRE as the source.
    assert_eq!(u.read_reg(IIR_FCR) & 0x0f, IIR_MS, "then modem status");
    assert!(line.level());
    assert_eq!(u.read_reg(MSR), MSR_DSR | MSR_CTS | MSR_DDCD);
    assert_eq!(u.read_reg(IIR_FCR) & 0x0f, IIR_NONE);
    assert!(!line.level());
}

#[test]
fn thre_interrupt_rearms_when_enabled_with_thr_empty() {
    // serial8250_do_startup()'s UART_BUG_THRE probe.
    let (mut u, line) = new_uart();
    u.write_reg(IER, IER_THRE);
    assert!(line.level());
    let iir1 = u.read_reg(IIR_FCR);
    assert_eq!(iir1 & 0x0f, IIR_THRE);
    assert!(!line.level(), "reading IIR cleared THRE");
    u.write_reg(IER, 0);
    u.write_reg(IER, IER_THRE);
    let iir = u.read_reg(IIR_FCR);
    u.write_reg(IER, 0);
    assert_eq!(iir & IIR_NONE, 0, "an interrupt is pending again");
    // Rewriting IER with THRE already on does not re-raise it.
    u.write_reg(IER, IER_THRE);
    u.read_reg(IIR_FCR);
    u.write_reg(IER, IER_THRE | IER_RDA);
    assert_eq!(u.read_reg(IIR_FCR), IIR_NONE);
}

#[test]
fn each_transmitted_byte_raises_thre_again() {
    let (mut u, line) = new_uart();
    u.write_reg(IER, IER_THRE);
    u.read_reg(IIR_FCR);
    assert!(!line.level());
    u.write_reg(RBR_THR, b'A');
    assert!(line.level());
    assert_eq!(u.read_reg(IIR_FCR), IIR_THRE);
    assert_eq!(*line.0.borrow(), vec![true, false, true, false]);
    assert_eq!(u.output(), b"A");
}

#[test]
fn loopback_mode() {
    let (mut u, _) = new_uart();
    // serial8250's autoconfig loopback check: LOOP | OUT2 | RTS must read back 0x90.
    u.write_reg(MCR, MCR_LOOP | 0x0a);
    assert_eq!(u.read_reg(MSR) & 0xf0, MSR_DCD | MSR_CTS);
    u.write_reg(MCR, MCR_LOOP | MCR_DTR | MCR_OUT1);
    assert_eq!(
        u.read_reg(MSR),
        MSR_DSR | MSR_RI | MSR_DDCD | MSR_DCTS | MSR_DDSR
    );
    u.write_reg(MCR, MCR_LOOP | MCR_DTR);
    assert_eq!(u.read_reg(MSR), MSR_DSR | MSR_TERI, "RI trailing edge");
    assert_eq!(u.rx_space(), 0);
    assert_eq!(u.receive(b"zz"), 0, "serial input disconnected in loopback");
    u.write_reg(RBR_THR, 0x5a);
    assert!(u.output().is_empty(), "nothing leaves the chip");
    assert_eq!(u.read_reg(LSR) & LSR_DR, LSR_DR);
    assert_eq!(u.read_reg(RBR_THR), 0x5a);
    u.write_reg(MCR, 0);
    assert_eq!(u.read_reg(MSR) & 0xf0, MSR_DCD | MSR_DSR | MSR_CTS);
}

#[test]
fn fcr_enable_toggle_clears_fifo() {
    let (mut u, _) = new_uart();
    u.write_reg(IIR_FCR, FCR_ENABLE);
    u.receive(b"abc");
    u.write_reg(IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX);
    assert_eq!(u.read_reg(LSR) & LSR_DR, 0);
    u.receive(b"abc");
    u.write_reg(IIR_FCR, 0);
    assert_eq!(u.read_reg(LSR) & LSR_DR, 0, "disabling FIFOs resets them");
    assert_eq!(u.read_reg(IIR_FCR) & IIR_FIFO_ON, 0);
}

#[test]
fn scratch_register() {
    let (mut u, _) = new_uart();
    u.write_reg(SCR, 0xa5);
    assert_eq!(u.read_reg(SCR), 0xa5);
    u.write_reg(SCR, 0x5a);
    assert_eq!(PioDevice::read(&mut u, SCR, 1), 0x5a);
    PioDevice::write(&mut u, RBR_THR, 1, 0x1234_5641);
    assert_eq!(u.output(), b"A");
}

#[test]
fn failing_backend_does_not_break_the_device() {
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("gone"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut u = Uart::new(crate::NoIrq, Broken);
    u.write_reg(RBR_THR, b'x');
    assert_ne!(u.read_reg(LSR) & LSR_THRE, 0);
}

#[test]
fn any_guest_input_is_safe() {
    let (mut u, _) = new_uart();
    let mut seed = 0x9e37_79b9u32;
    for _ in 0..50_000 {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let r = seed >> 4;
        match r % 4 {
            0 | 1 => u.write_reg((r >> 4) as u16, (r >> 8) as u8),
            2 => {
                u.read_reg((r >> 4) as u16);
            }
            _ => {
                u.receive(&[r as u8; 5]);
                u.set_modem_status((r >> 8) as u8);
            }
        }
    }
    for offset in 0..=u16::MAX {
        PioDevice::write(&mut u, offset, 4, u32::MAX);
        PioDevice::read(&mut u, offset, 4);
    }
}
