//! The serial console on the user's terminal: raw mode while the guest runs (restored on
//! drop), a reader thread feeding keystrokes to the UART, and QEMU's escape sequences
//! (Ctrl-A X quits, Ctrl-A C switches between the console and the human monitor when they
//! share the terminal, Ctrl-A Ctrl-A sends a literal Ctrl-A).

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
    /// The user typed Ctrl-A C.
    SwitchMonitor,
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
                    b'c' | b'C' => {
                        if !input.is_empty() {
                            out.push(ConsoleEvent::Input(std::mem::take(&mut input)));
                        }
                        out.push(ConsoleEvent::SwitchMonitor);
                    }
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

/// The human monitor on the terminal (`-serial mon:stdio`, `-nographic`, `-monitor stdio`): a
/// line editor (echo, backspace, Ctrl-U, up/down through the history) whose lines run on a
/// thread of their own, since commands wait for the machine thread that feeds the editor.
pub struct StdioMonitor {
    line: Vec<u8>,
    history: Vec<String>,
    /// Position while browsing the history (`history.len()`: the line being typed).
    browse: usize,
    /// Bytes of an escape sequence (arrow keys) being read.
    escape: Vec<u8>,
    lines: std::sync::mpsc::Sender<String>,
}

/// The monitor's prompt on the terminal.
pub const STDIO_PROMPT: &str = "(ferrite) ";
const HISTORY: usize = 100;

impl StdioMonitor {
    /// Starts the thread that runs commands with `execute` and prints their answers.
    pub fn spawn(execute: impl Fn(&str) -> String + Send + 'static) -> Self {
        let (lines, rx) = std::sync::mpsc::channel::<String>();
        let _ = std::thread::Builder::new().name("stdio-monitor".into()).spawn(move || {
            for line in rx {
                let reply = execute(&line).replace('\n', "\r\n");
                print_flush(&format!("{reply}{STDIO_PROMPT}"));
            }
        });
        StdioMonitor { line: Vec::new(), history: Vec::new(), browse: 0, escape: Vec::new(), lines }
    }

    /// The monitor takes the terminal: a banner and the prompt.
    pub fn enter(&self) {
        print_flush(&format!("\r\nferrite monitor - type 'help' for more information\r\n{STDIO_PROMPT}"));
    }

    fn replace_line(&mut self, text: String) {
        let erase = "\x08 \x08".repeat(self.line.len());
        print_flush(&format!("{erase}{text}"));
        self.line = text.into_bytes();
    }

    /// Keystrokes typed while the monitor has the terminal.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if !self.escape.is_empty() || b == 0x1b {
                self.escape.push(b);
                match self.escape.as_slice() {
                    [0x1b] | [0x1b, b'['] | [0x1b, b'O'] => continue,
                    [0x1b, b'[' | b'O', b'A'] if self.browse > 0 => {
                        self.browse -= 1;
                        self.replace_line(self.history[self.browse].clone());
                    }
                    [0x1b, b'[' | b'O', b'B'] if self.browse < self.history.len() => {
                        self.browse += 1;
                        let text = self.history.get(self.browse).cloned().unwrap_or_default();
                        self.replace_line(text);
                    }
                    _ => {}
                }
                self.escape.clear();
                continue;
            }
            match b {
                b'\r' | b'\n' => {
                    print_flush("\r\n");
                    let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                    if !line.trim().is_empty() && self.history.last() != Some(&line) {
                        self.history.push(line.clone());
                        if self.history.len() > HISTORY {
                            self.history.remove(0);
                        }
                    }
                    self.browse = self.history.len();
                    let _ = self.lines.send(line);
                }
                0x7f | 0x08 => {
                    if self.line.pop().is_some() {
                        print_flush("\x08 \x08");
                    }
                }
                0x15 => self.replace_line(String::new()),
                0x20..=0x7e if self.line.len() < 4096 => {
                    self.line.push(b);
                    print_flush(&(b as char).to_string());
                }
                _ => {}
            }
        }
    }
}

fn print_flush(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
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
        assert_eq!(d.feed(&[b'a', CTRL_A, b'c']), vec![ConsoleEvent::Input(b"a".to_vec()), ConsoleEvent::SwitchMonitor]);
    }

    #[test]
    fn the_monitor_line_editor_edits_and_recalls() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut m = StdioMonitor { line: Vec::new(), history: Vec::new(), browse: 0, escape: Vec::new(), lines: tx };
        m.feed(b"info statux\x7fs\r");
        m.feed(b"stop\r");
        m.feed(b"\x1b[A\x1b[A\r");
        m.feed(b"junk\x15cont\r");
        let got: Vec<String> = rx.try_iter().collect();
        assert_eq!(got, ["info status", "stop", "info status", "cont"]);
    }
}
