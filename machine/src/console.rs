//! The serial console on the user's terminal: raw mode while the guest runs (restored on
//! drop), a reader thread feeding keystrokes to the UART, and QEMU's escape sequences
//! (Ctrl-A X quits, Ctrl-A Ctrl-A sends a literal Ctrl-A).

use std::io::Read;
use std::sync::mpsc::{channel, Receiver, TryRecvError};

const CTRL_A: u8 = 0x01;

/// What the console asks of the machine.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// Bytes for the guest.
    Input(Vec<u8>),
    /// The user typed Ctrl-A X.
    Quit,
}

/// Turns the terminal's byte stream into guest input and commands.
#[derive(Default)]
pub struct EscapeDecoder {
    after_ctrl_a: bool,
}

impl EscapeDecoder {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<ConsoleEvent> {
        let mut out = Vec::new();
        let mut input = Vec::new();
        for &b in bytes {
            if self.after_ctrl_a {
                self.after_ctrl_a = false;
                match b {
                    b'x' | b'X' => {
                        if !input.is_empty() {
                            out.push(ConsoleEvent::Input(std::mem::take(&mut input)));
                        }
                        out.push(ConsoleEvent::Quit);
                        return out;
                    }
                    CTRL_A => input.push(CTRL_A),
                    // Other escapes (monitor, help) are not supported: ignore them.
                    _ => {}
                }
            } else if b == CTRL_A {
                self.after_ctrl_a = true;
            } else {
                input.push(b);
            }
        }
        if !input.is_empty() {
            out.push(ConsoleEvent::Input(input));
        }
        out
    }
}

/// Puts the terminal in raw mode for as long as it lives.
pub struct RawTerminal {
    saved: libc::termios,
}

impl RawTerminal {
    /// `None` when stdin is not a terminal (pipes, CI): then input is passed through as is.
    pub fn enable() -> Option<Self> {
        // SAFETY: isatty/tcgetattr/tcsetattr on fd 0 with a properly sized termios struct
        // that we own; failures are reported through return values and handled.
        unsafe {
            if libc::isatty(0) != 1 {
                return None;
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            // Keep output post-processing so the guest's "\n" still returns the carriage.
            t.c_oflag |= libc::OPOST;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(RawTerminal { saved })
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the attributes saved from the same fd in `enable`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.saved);
        }
    }
}

/// Reads stdin on a thread; the machine polls `try_events` between CPU slices.
pub struct ConsoleInput {
    rx: Receiver<Vec<u8>>,
    decoder: EscapeDecoder,
    /// Only a terminal gets the Ctrl-A escapes; piped input reaches the guest verbatim.
    escapes: bool,
}

impl ConsoleInput {
    pub fn spawn(escapes: bool) -> Self {
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name("console-input".into())
            .spawn(move || {
                let mut buf = [0u8; 256];
                let mut stdin = std::io::stdin();
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tx.send(buf[..n].to_vec()).is_err() {
                                break;
                            }
                        }
                    }
                }
            })
            .expect("spawning the console thread");
        ConsoleInput { rx, decoder: EscapeDecoder::default(), escapes }
    }

    /// Pending console events, without blocking.
    pub fn try_events(&mut self) -> Vec<ConsoleEvent> {
        let mut out = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(bytes) => {
                    if self.escapes {
                        out.extend(self.decoder.feed(&bytes));
                    } else {
                        out.push(ConsoleEvent::Input(bytes));
                    }
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return out,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_a_x_quits_and_ctrl_a_ctrl_a_is_literal() {
        let mut d = EscapeDecoder::default();
        assert_eq!(d.feed(b"ls\r"), vec![ConsoleEvent::Input(b"ls\r".to_vec())]);
        assert_eq!(d.feed(&[CTRL_A, CTRL_A, b'a']), vec![ConsoleEvent::Input(vec![CTRL_A, b'a'])]);
        assert_eq!(d.feed(&[b'q', CTRL_A]), vec![ConsoleEvent::Input(b"q".to_vec())]);
        assert_eq!(d.feed(b"x"), vec![ConsoleEvent::Quit]);
    }
}
